"""One engine for every email sent to many readers, exactly once per reader.

A mailing is a post's announcement, a digest round or a correction's email to the
readers sent the post (Mailing.Kind); a kind differs only in its audience and in
how a reader's message is rendered. The database is the source of truth and the
broker only rings the doorbell:
1. Creating a mailing is idempotent (one per post, digest period or correction) and
   rings for planning once the transaction commits (planner.py).
2. Planning walks the audience by keyset, a page per step, writing the ledger (one
   Delivery per recipient) into batches; the cursor moves in the same transaction.
3. A batch task (sender.py) claims its batch with one conditional UPDATE (the
   claim on its QUEUED rows), renders (a post or a correction once, a digest per
   reader), hands the recipients to the provider within the shared sending budget
   (ratelimit.py), and records each outcome. Errors that prove the provider took
   nothing are retried; ambiguous ones leave deliveries UNCERTAIN, never resent
   blindly. Failures in a row pause the mailing (circuit breaker).
4. The reaper (reaper.py) re-rings doorbells the broker lost, turns claims dead
   workers left into UNCERTAIN, and resumes paused mailings after their cool-down.
5. The author pauses, resumes, cancels (a correction's email may be sent after
   all), and settles uncertain batches (control.py); the provider's event about
   an uncertain delivery's message settles it as sent.
"""

from .control import (
    SentAgainWhileAsked,
    batch_mark_sent,
    batch_resend,
    batch_settle_with_provider,
    correction_send_again,
    delivery_settle_by_event,
    mailing_cancel,
    mailing_pause,
    mailing_resume,
    mailings_posts_lock,
)
from .planner import (
    PLANNING_PAGE_SIZE,
    mailing_create_for_correction,
    mailing_create_for_digest,
    mailing_create_for_post,
    mailing_plan_page,
    post_audience,
)
from .reaper import mailings_reap
from .sender import (
    MAILGUN_BATCH_SIZE,
    MAX_DEFERRAL,
    POSTMARK_BATCH_SIZE,
    SEND_LANES,
    SINGLE_MESSAGE_BATCH_SIZE,
    ProviderUnavailable,
    ReaderDeferred,
    RetryLater,
    batch_retry_wait,
    batch_send,
    provider_refused,
    retry_after,
    smtp_refusal,
    take_from_budget,
    taken_email_send,
)

__all__ = [
    "MAILGUN_BATCH_SIZE",
    "MAX_DEFERRAL",
    "PLANNING_PAGE_SIZE",
    "POSTMARK_BATCH_SIZE",
    "SEND_LANES",
    "SINGLE_MESSAGE_BATCH_SIZE",
    "ProviderUnavailable",
    "ReaderDeferred",
    "RetryLater",
    "SentAgainWhileAsked",
    "batch_mark_sent",
    "batch_resend",
    "batch_retry_wait",
    "batch_send",
    "batch_settle_with_provider",
    "correction_send_again",
    "delivery_settle_by_event",
    "mailing_cancel",
    "mailing_create_for_correction",
    "mailing_create_for_digest",
    "mailing_create_for_post",
    "mailing_pause",
    "mailing_plan_page",
    "mailing_resume",
    "mailings_posts_lock",
    "mailings_reap",
    "post_audience",
    "provider_refused",
    "retry_after",
    "smtp_refusal",
    "take_from_budget",
    "taken_email_send",
]
