"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
delivery: sends, batches, the ledger, digests and their settings.
post_email: the post editor's email preview and test send.
logins: django-axes' login attempts, their clean-up action declaring its permission.
"""

from . import delivery, logins, post_email, readers

__all__ = ["delivery", "logins", "post_email", "readers"]
