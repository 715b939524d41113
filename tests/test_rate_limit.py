"""The sending budget all workers share: in Redis when REDIS_URL is set (a Redis
that is down fails these tests), in a locked file under var/ otherwise."""

import time
import uuid

import pytest
from django.conf import settings as django_settings

from newsletter import delivery
from newsletter.delivery.ratelimit import RateLimited, TokenBucket, _redis
from newsletter.models import Batch, Mailing, Subscriber

from .factories import PublishedPostFactory

backends = ["file"] + (["redis"] if django_settings.REDIS_URL else [])


@pytest.fixture(params=backends)
def store(request, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    if request.param == "file":
        settings.REDIS_URL = ""
    return request.param


def bucket(rate: float, burst: int) -> TokenBucket:
    """A fresh bucket, as seen by one worker."""
    return TokenBucket(name=f"test-{uuid.uuid4().hex}", rate=rate, burst=burst)


def test_two_workers_draw_on_one_budget(store):
    first_worker = bucket(rate=10, burst=10)
    second_worker = TokenBucket(name=first_worker.name, rate=10, burst=10)
    assert first_worker.reserve(10) == 0
    # The burst is spent: the other worker waits for 5 tokens at 10 a second.
    assert 0.4 < second_worker.reserve(5) <= 0.5
    # Reservations queue up behind each other rather than all waiting 0.5 s.
    assert 0.9 < first_worker.reserve(5) <= 1.0


def test_a_reservation_too_far_ahead_is_refused_and_takes_nothing(store):
    limited = bucket(rate=1, burst=5)
    with pytest.raises(RateLimited) as refused:
        limited.reserve(100)
    assert refused.value.wait == pytest.approx(95, abs=1)
    assert limited.reserve(5) == 0  # the refused reservation took no tokens


def test_no_rate_means_no_limit(store):
    assert bucket(rate=0, burst=0).reserve(10**6) == 0


def a_planned_batch_of_forty() -> tuple[Mailing, Batch]:
    """A post's mailing to 40 readers, planned in one batch, not yet sent."""
    Subscriber.objects.bulk_create(
        Subscriber(email=f"r{i}@example.org", status="active") for i in range(40)
    )
    delivery.mailing_create_for_post(post=PublishedPostFactory())
    send = Mailing.objects.get()
    delivery.mailing_plan_page(mailing_id=send.pk)
    return send, send.batches.get()


@pytest.mark.django_db
def test_a_batch_over_budget_goes_back_to_the_queue_untouched(
    store, settings, fake_esp
):
    settings.NEWSLETTER_SEND_RATE = 1
    settings.NEWSLETTER_SEND_BURST = 1
    if store == "redis":
        _redis().delete("newsletter:ratelimit:postmark")
    send, batch = a_planned_batch_of_forty()
    # Another worker's batch took the budget 30 s ahead (the most it grants).
    TokenBucket(name="postmark", rate=1, burst=1).reserve(31)
    with pytest.raises(delivery.RetryLater) as later:
        delivery.batch_send(batch_id=batch.pk)
    # This one's first call, 31 readers (the most the budget grants at once),
    # would wait for 30 s of debt and its own 31 tokens.
    assert later.value.countdown == pytest.approx(61, abs=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED
    assert fake_esp.count == 0
    send.refresh_from_db()
    assert send.consecutive_failures == 0  # our budget, not the provider's fault


@pytest.mark.django_db
def test_a_batch_larger_than_the_budget_ever_grants_goes_in_parts(
    settings, tmp_path, monkeypatch, fake_esp
):
    """At one a second in bursts of one, a reservation is granted 31 tokens at
    most (a full bucket, 30 s of refill): a batch of 40 asking for all of them
    at once was refused at every attempt, however long it waited, and never sent."""
    settings.VAR_DIR = tmp_path
    settings.REDIS_URL = ""  # the file's clock is Python's, which this test moves
    settings.NEWSLETTER_SEND_RATE = 1
    settings.NEWSLETTER_SEND_BURST = 1
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    monkeypatch.setattr(
        time, "sleep", lambda seconds: clock.append(clock.pop() + seconds)
    )
    _, batch = a_planned_batch_of_forty()
    started = clock[0]
    delivery.batch_send(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DONE
    assert fake_esp.count == 40
    assert fake_esp.stats()["accepted_requests"] == 2  # 31 readers, then 9
    assert clock[0] - started == pytest.approx(39, abs=1)  # at one a second
