"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
delivery: sends, batches, the ledger, digests and their settings.
post_email: the post editor's email preview and test send.
"""

from . import delivery, post_email, readers

__all__ = ["delivery", "post_email", "readers"]
