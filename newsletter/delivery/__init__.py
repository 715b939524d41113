"""Sending a post to its audience, exactly once per subscriber.

The database is the source of truth and the broker only rings the doorbell:
1. Publishing creates one Send per post (unique), in the publishing transaction.
2. Planning (planner.py) walks the audience by keyset, a page per step, writing the
   ledger (one Delivery per recipient) into batches; the cursor moves in the same
   transaction.
3. A batch task (sender.py) claims its batch with one conditional UPDATE (the
   claim on its QUEUED rows), renders the post once, hands the recipients to the
   provider (one batch API call, or one message each) within the shared sending
   budget (ratelimit.py), and records each outcome: one write per ledger row.
   Errors that prove the provider took nothing are retried; ambiguous ones leave
   deliveries UNCERTAIN, never resent blindly. Failures in a row pause the send
   (circuit breaker).
4. The reaper (reaper.py) re-rings doorbells the broker lost, turns claims dead
   workers left into UNCERTAIN, and resumes paused sends after their cool-down.
5. The author pauses, resumes, cancels, and resolves uncertain batches (control.py).
"""

from .control import (
    batch_mark_sent,
    batch_resend,
    batch_resolve_with_provider,
    send_cancel,
    send_pause,
    send_resume,
)
from .planner import PLANNING_PAGE_SIZE, plan_next_page, send_create_for_post
from .reaper import reap
from .sender import (
    MAILGUN_BATCH_SIZE,
    MAX_DEFERRAL,
    POSTMARK_BATCH_SIZE,
    SINGLE_MESSAGE_BATCH_SIZE,
    ProviderUnavailable,
    ReaderDeferred,
    RetryLater,
    provider_refused,
    retry_after,
    send_batch,
    smtp_refusal,
    take_from_budget,
)

__all__ = [
    "MAILGUN_BATCH_SIZE",
    "MAX_DEFERRAL",
    "PLANNING_PAGE_SIZE",
    "POSTMARK_BATCH_SIZE",
    "SINGLE_MESSAGE_BATCH_SIZE",
    "ProviderUnavailable",
    "ReaderDeferred",
    "RetryLater",
    "batch_mark_sent",
    "batch_resend",
    "batch_resolve_with_provider",
    "plan_next_page",
    "provider_refused",
    "reap",
    "retry_after",
    "send_batch",
    "send_cancel",
    "send_create_for_post",
    "send_pause",
    "send_resume",
    "smtp_refusal",
    "take_from_budget",
]
