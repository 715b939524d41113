"""The author's desk: the newsletter's models in Django's admin, by concern.

readers: subscribers, their topics and consent, imports, suppressions, tracking events.
mailings: posts' announcements and digest rounds, their batches, the ledger,
    and when digests go.
post_email: the post editor's email preview and test send.
"""

from . import mailings, post_email, readers

__all__ = ["mailings", "post_email", "readers"]
