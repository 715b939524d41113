"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
mailings: posts' announcements and digest rounds, their batches, the ledger,
    and when digests go.
post_email: the post editor's email preview and test send.
reports: each announced post's report, people and machines apart.
logins: django-axes' login attempts, their clean-up action declaring its permission.
"""

from . import logins, mailings, post_email, readers, reports

__all__ = ["logins", "mailings", "post_email", "readers", "reports"]
