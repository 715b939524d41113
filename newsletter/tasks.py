"""Celery tasks: a thin layer that takes ids, calls a service and decides on retries."""

import random

from celery import shared_task

from . import delivery, subscriptions


def backoff(retries: int) -> float:
    """Exponential backoff with full jitter: 5 s, 10 s, 20 s, … capped at 10 minutes."""
    return random.uniform(0, min(600, 5 * 2**retries))


@shared_task(bind=True, max_retries=8)
def send_confirmation(self, subscriber_id: int) -> None:
    try:
        subscriptions.send_confirmation(subscriber_id=subscriber_id)
    except Exception as exc:
        if not delivery.provider_refused(exc):
            raise  # possibly sent already: a second copy is worse than none
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc


@shared_task
def plan_send(send_id: int) -> None:
    if delivery.plan_next_page(send_id=send_id):
        plan_send.delay(send_id)


@shared_task(bind=True, max_retries=12)
def send_batch(self, batch_id: int) -> None:
    try:
        delivery.send_batch(batch_id=batch_id)
    except delivery.RetryLater as exc:
        # A 429's Retry-After, else backoff. After the last retry the batch stays
        # queued and the reaper rings again.
        countdown = exc.countdown or backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task
def reap() -> dict[str, int]:
    return delivery.reap()
