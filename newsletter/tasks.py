"""Celery tasks: a thin layer that takes ids, calls a service and decides on retries."""

import logging
import random
from collections.abc import Callable
from datetime import datetime

from celery import shared_task
from django.db import IntegrityError
from django.utils import timezone

from . import delivery, emails, engagement, logins, subscriptions, webhooks

logger = logging.getLogger(__name__)

# An email to one reader (a confirmation, the welcome, a link they asked for) rides
# out a provider's outage of about six hours: once capped, backoff waits 300 s on
# average. A link sent late still works (its age counts from when it is sent), and
# giving up well within the day still frees the once-a-day limits sooner than they
# would free themselves.
ONE_READER_EMAIL_RETRIES = 80


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter: 5 s, 10 s, 20 s, … capped at 10 minutes."""
    return random.uniform(0, min(600, 5 * 2**retries))


def retry_if_provider_refused(
    task,
    exc: Exception,
    *,
    email: str,
    unsent: Callable[[], None] | None = None,
    retrying: Callable[[float], None] | None = None,
    retry_with: dict | None = None,
) -> None:
    """Retry `task` when the provider clearly took nothing; else re-raise.

    `retrying` is told the retry's countdown first; `retry_with`, the retry's
    keyword arguments in place of the message's. After the last retry the
    email is lost: `unsent` undoes what says it is on its way, so that the reader
    may ask again, and the loss is logged, as `email` (its kind and row, never the
    address), for someone to see.
    """
    if not delivery.provider_refused(exc):
        raise exc  # possibly sent already: a second copy is worse than none
    if task.request.retries >= task.max_retries:
        if unsent is not None:
            unsent()
        logger.error("The provider refused the %s until the last retry", email)
        raise exc
    countdown = backoff(task.request.retries)
    if retrying is not None:
        retrying(countdown)
    replaced = {} if retry_with is None else {"args": (), "kwargs": retry_with}
    raise task.retry(exc=exc, countdown=countdown, **replaced) from exc


@shared_task
def subscribe(
    email: str,
    name: str,
    ip_address: str | None,
    topics: list[str] | None = None,
    frequency: str = "instant",
    page: str = "",
) -> None:
    # Queued by the subscribe view rather than run in the request, so that the
    # answer takes as long whatever the address's state: a known address would
    # otherwise answer sooner (no row to write, no email to queue) and give itself
    # away to anyone timing the form.
    subscriptions.subscription_request(
        email=email,
        name=name,
        ip_address=ip_address,
        topics=topics,
        frequency=frequency,
        page=page,
    )


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def send_confirmation(self, consent_id: int) -> None:
    try:
        subscriptions.confirmation_send(consent_id=consent_id)
    except Exception as exc:
        retry_if_provider_refused(
            self,
            exc,
            email=f"confirmation of consent {consent_id}",
            unsent=lambda: subscriptions.confirmation_unsent(consent_id=consent_id),
        )


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def send_welcome(self, subscriber_id: int) -> None:
    try:
        subscriptions.welcome_send(subscriber_id=subscriber_id)
    except Exception as exc:
        # Taken to send (subscriptions.welcome_send): owed again for its retry;
        # after the last, or possibly sent, it stays taken, and is not sent again.
        retry_if_provider_refused(
            self,
            exc,
            email=f"welcome of subscriber {subscriber_id}",
            retrying=lambda countdown: subscriptions.welcome_retry_wait(
                subscriber_id=subscriber_id, countdown=countdown
            ),
        )


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def send_email_change(self, subscriber_id: int, requested_at: str) -> None:
    # The reader's id and the request's time only: the new address is read from
    # the reader's row, which their erasure deletes, not carried in the queue,
    # where a message retried for hours would keep it out of erasure's reach.
    try:
        subscriptions.email_change_send(
            subscriber_id=subscriber_id,
            requested_at=datetime.fromisoformat(requested_at),
        )
    except Exception as exc:
        retry_if_provider_refused(
            self,
            exc,
            email=f"change-of-address link of subscriber {subscriber_id}",
            unsent=lambda: subscriptions.email_change_unsent(
                subscriber_id=subscriber_id,
                requested_at=datetime.fromisoformat(requested_at),
            ),
        )


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def send_one_time_link(
    self, subscriber_id: int, detail: str, requested_at: str
) -> None:
    # `detail` is the request ("export", "change-email", …): a change's new
    # address is read from the reader's row, as for send_email_change.
    try:
        subscriptions.one_time_link_send(
            subscriber_id=subscriber_id,
            detail=detail,
            requested_at=datetime.fromisoformat(requested_at),
        )
    except Exception as exc:
        # Nothing to undo: every request sends a fresh link, so nothing keeps the
        # reader from asking again.
        retry_if_provider_refused(
            self, exc, email=f"one-time link of subscriber {subscriber_id}"
        )


@shared_task
def purge_expired_pending() -> int:
    return subscriptions.pending_purge_expired()


@shared_task
def purge_old_events() -> int:
    return webhooks.events_purge_old(now=timezone.now())


@shared_task
def purge_old_logins() -> int:
    return logins.logins_purge_old(now=timezone.now())


@shared_task
def flush_click_counts() -> int:
    return engagement.click_counts_flush()


@shared_task(bind=True, max_retries=5)
def plan_mailing(self, mailing_id: int) -> None:
    try:
        more = delivery.mailing_plan_page(mailing_id=mailing_id)
    except IntegrityError as exc:
        # A reader the page read erased their data before it committed (the
        # ledger's foreign keys are checked then), and the page rolled back whole:
        # planned again at once, it no longer reads them. Not left to the reaper.
        raise self.retry(exc=exc, countdown=0) from exc
    if more:
        plan_mailing.delay(mailing_id)


@shared_task(bind=True, max_retries=12)
def send_batch(self, batch_id: int) -> None:
    try:
        delivery.batch_send(batch_id=batch_id)
    except delivery.RetryLater as exc:
        # A 429's Retry-After, else backoff. After the last retry the batch stays
        # queued and the reaper rings again.
        countdown = exc.countdown or backoff(self.request.retries)
        if self.request.retries < self.max_retries:
            delivery.batch_retry_wait(batch_id=batch_id, countdown=countdown)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task
def reap() -> dict[str, int]:
    # Welcomes lost with the broker are rung again at the mailings' cadence.
    return delivery.mailings_reap() | subscriptions.welcomes_reap()


@shared_task
def send_post_test(post_id: int, author_id: int) -> None:
    # No retries: the author is watching and can press the button again.
    emails.post_test_send(post_id=post_id, author_id=author_id)


@shared_task
def send_correction_test(post_update_id: int, author_id: int) -> None:
    # No retries, as for a post's test; `author_id` as for it.
    emails.correction_test_send(post_update_id=post_update_id, author_id=author_id)
