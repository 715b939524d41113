"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
mailings: posts' announcements and digest rounds, their batches, the ledger,
    and when digests go.
spreadsheets: the desk's CSV cells, safe to open in a spreadsheet.
post_email: the post editor's email preview and test send.
reports: each announced post's report, people and machines apart.
logins: django-axes' login attempts, their clean-up action declaring its permission.
users: the desk's people and roles, where nobody gives a right they lack.
view_on_site: the change pages' "View on site" link, only to what the user may see.
malformed: malformed input to any admin, ours or third-party, answered with a 400
    (a middleware, in settings.MIDDLEWARE).
"""

from django.contrib import admin

from . import logins, mailings, post_email, readers, reports, users

# The publication's desk, not "Django administration": one place for its name.
admin.site.site_header = "On Probation — the desk"
admin.site.site_title = "On Probation desk"
admin.site.index_title = "The desk"

__all__ = ["logins", "mailings", "post_email", "readers", "reports", "users"]
