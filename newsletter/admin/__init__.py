"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
delivery: sends, batches, the ledger, digests and their settings.
post_email: the post editor's email preview and test send.
"""

from django.contrib import admin

from . import delivery, post_email, readers

# The publication's desk, not "Django administration": one place for its name.
admin.site.site_header = "On Probation — the desk"
admin.site.site_title = "On Probation desk"
admin.site.index_title = "The desk"

__all__ = ["delivery", "post_email", "readers"]
