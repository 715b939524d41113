"""The author's controls (pause, resume, cancel, uncertain batches), the circuit
breaker, and the admin pages that show a mailing's progress."""

import html
import re
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.mail.backends import locmem
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from newsletter import delivery, tasks
from newsletter.admin import mailings as admin_mailings
from newsletter.delivery import control, planner, provider, sender
from newsletter.delivery.ledger import Outcome, close_batch
from newsletter.delivery.postmark import EmailBackend as PostmarkBackend
from newsletter.delivery.sender import close_mailing_if_finished
from newsletter.enqueue import SENT_ONCE_THE_QUEUE_IS_BACK
from newsletter.models import Batch, Delivery, Mailing, Subscriber
from newsletter.subscriptions import email_change_confirm, subscriber_delete
from posts.models import Post, PostUpdate
from posts.services import post_publish

from .factories import (
    PublishedPostFactory,
    StaffFactory,
    UserFactory,
    desk_action,
    taken_down_once_its_readers_are_read,
    uncertain_long_enough_to_ask,
    unpublish_at_the_desk,
)
from .locks import (
    as_it_commits,
    as_taken_down,
    in_a_thread,
    until_another_connection_waits_for_a_lock,
)
from .test_webhooks import (
    SECRET,
    post_postmark,
    postmark_bounce,
    postmark_delivery,
    provider_reports,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


@pytest.fixture
def readers():
    return Subscriber.objects.bulk_create(
        Subscriber(email=f"reader{i}@example.org", status=Subscriber.Status.ACTIVE)
        for i in range(6)
    )


@pytest.fixture
def planned(settings, fake_esp, readers):
    """A mailing of three batches of two, planned, its doorbells not rung."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    delivery.mailing_create_for_post(post=PublishedPostFactory())
    mailing = Mailing.objects.get()
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    return mailing


@pytest.fixture
def author():
    client = Client()
    client.force_login(UserFactory())
    return client


def send_all(mailing: Mailing) -> None:
    for batch_id in mailing.batches.values_list("pk", flat=True):
        delivery.batch_send(batch_id=batch_id)


def died_before_its_request_went_out(batch: Batch) -> None:
    """A worker claimed the batch and died before its request went out: the
    reaper finds its claim stale and the batch uncertain."""
    claimed_at = timezone.now() - timedelta(
        seconds=django_settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1
    )
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.SENDING, touched_at=claimed_at, claimed_at=claimed_at
    )
    delivery.mailings_reap()


def test_a_paused_send_claims_no_batch_and_resuming_sends_the_rest(
    planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    first = planned.batches.order_by("number").first()
    delivery.batch_send(batch_id=first.pk)
    assert delivery.mailing_pause(mailing_id=planned.pk)
    send_all(planned)
    assert fake_esp.count == 2
    assert planned.batches.filter(status=Batch.Status.QUEUED).count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=planned.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


def test_cancelling_stops_a_send_and_the_ledger_says_who_was_skipped(planned, fake_esp):
    first = planned.batches.order_by("number").first()
    delivery.batch_send(batch_id=first.pk)
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    send_all(planned)
    assert fake_esp.count == 2
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.CANCELLED
    skipped = planned.deliveries.filter(status=Delivery.Status.SKIPPED)
    assert skipped.count() == 4
    assert set(skipped.values_list("error", flat=True)) == {"mailing cancelled"}
    assert planned.batches.filter(status=Batch.Status.CANCELLED).count() == 2
    assert not delivery.mailing_resume(mailing_id=planned.pk)


def cancel_while_sending(mailing: Mailing, monkeypatch, *, then=None) -> None:
    """The author cancels while a worker is handing a batch to the provider (the
    provider has answered, the worker not yet recorded it), then `then` happens
    to the worker (it dies, say)."""
    record = sender.record_outcomes

    def cancelled_meanwhile(*args, **kwargs):
        assert delivery.mailing_cancel(mailing_id=mailing.pk)
        if then:
            then()
        return record(*args, **kwargs)

    monkeypatch.setattr(sender, "record_outcomes", cancelled_meanwhile)


def test_cancelling_while_a_batch_goes_out_records_it_as_it_went(
    planned, fake_esp, monkeypatch
):
    first = planned.batches.order_by("number").first()
    cancel_while_sending(planned, monkeypatch)
    delivery.batch_send(batch_id=first.pk)
    first.refresh_from_db()
    assert (first.status, first.sent) == (Batch.Status.DONE, 2)
    assert planned.deliveries.filter(status=Delivery.Status.SENT).count() == 2
    assert planned.deliveries.filter(status=Delivery.Status.SKIPPED).count() == 4
    assert fake_esp.count == 2


def test_a_worker_dying_after_a_cancel_leaves_its_batch_uncertain_not_skipped(
    settings, planned, fake_esp, monkeypatch
):
    """Its readers may have the post: the ledger must not say they were skipped
    (a correction would miss them), and settling with the provider finds them."""
    first = planned.batches.order_by("number").first()

    def dies() -> None:
        raise SystemExit("worker killed after the provider took the batch")

    cancel_while_sending(planned, monkeypatch, then=dies)
    with pytest.raises(SystemExit):
        delivery.batch_send(batch_id=first.pk)
    Batch.objects.filter(pk=first.pk).update(
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1)
    )
    assert delivery.mailings_reap()["stale_claims"] == 1
    first.refresh_from_db()
    assert (first.status, first.uncertain) == (Batch.Status.UNCERTAIN, 2)
    uncertain_long_enough_to_ask(first)
    assert delivery.batch_settle_with_provider(batch_id=first.pk)
    first.refresh_from_db()
    assert (first.status, first.sent) == (Batch.Status.DONE, 2)
    assert set(first.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.SENT
    }
    assert fake_esp.count == 2


def test_a_batch_the_provider_refused_after_a_cancel_is_not_retried(
    planned, fake_esp, monkeypatch
):
    first = planned.batches.order_by("number").first()
    fake_esp.set_faults(fail_5xx_next=1)
    cancel_while_sending(planned, monkeypatch)
    delivery.batch_send(batch_id=first.pk)  # no RetryLater: nothing to retry
    first.refresh_from_db()
    assert first.status == Batch.Status.CANCELLED
    assert planned.deliveries.filter(status=Delivery.Status.SKIPPED).count() == 6
    assert fake_esp.count == 0


def test_settling_a_batch_of_a_cancelled_mailing_skips_what_the_provider_never_took(
    settings, planned, fake_esp, django_capture_on_commit_callbacks
):
    first = planned.batches.order_by("number").first()
    died_before_its_request_went_out(first)
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    uncertain_long_enough_to_ask(first)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.batch_settle_with_provider(batch_id=first.pk)
    first.refresh_from_db()
    assert first.status == Batch.Status.CANCELLED
    assert planned.deliveries.filter(status=Delivery.Status.SKIPPED).count() == 6
    assert not planned.batches.filter(status=Batch.Status.QUEUED).exists()
    assert fake_esp.count == 0
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.CANCELLED


def test_a_batch_back_in_the_queue_as_its_mailing_was_cancelled_is_not_left_waiting(
    author, planned, fake_esp
):
    """Its worker put it back in the queue (a retry) just as the author cancelled,
    after the cancel had skipped the waiting readers and before the worker saw
    the cancel; the broker then lost its retry. The reaper rang only running
    mailings' batches: it waited for good, the mailing's page saying what was
    going out finishes. The reaper finishes it as the cancel would have."""
    first = planned.batches.order_by("number").first()
    Batch.objects.filter(pk=first.pk).update(status=Batch.Status.SENDING)
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    # The worker's close, which did not see the cancel: its readers wait.
    closed = close_batch(
        first.pk, from_status=Batch.Status.SENDING, now=timezone.now(), error="5xx"
    )
    assert closed[0] == Batch.Status.QUEUED

    assert delivery.mailings_reap()["batches_cancelled"] == 1
    first.refresh_from_db()
    assert first.status == Batch.Status.CANCELLED
    assert set(first.deliveries.values_list("status", "error")) == {
        (Delivery.Status.SKIPPED, Delivery.MAILING_CANCELLED)
    }
    figures = mailing_page(author, planned)
    assert (figures["Skipped (never sent)"], figures["ETA"]) == (
        "6",
        "cancelled: nothing more goes",
    )
    assert fake_esp.count == 0


def parted_by_its_lanes(batch: Batch) -> Delivery:
    """Leave `batch` as a send in lanes leaves it when one lane's answer is lost
    (its reader uncertain) and another lane stops early (its reader queued for the
    retry): back in the queue, counted by close_batch. Returns the uncertain row."""
    uncertain, _queued = batch.deliveries.order_by("pk")
    Delivery.objects.filter(pk=uncertain.pk).update(
        status=Delivery.Status.UNCERTAIN, error="connection reset after the request"
    )
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SENDING)
    closed = close_batch(
        batch.pk, from_status=Batch.Status.SENDING, now=timezone.now(), error="reset"
    )
    assert closed[0] == Batch.Status.QUEUED
    return uncertain


FIGURES = ("Planned", "Sent", "Failed", "Uncertain", "Skipped (never sent)")


@pytest.mark.parametrize(
    "settle, sent, status",
    [
        (lambda batch, row: delivery.batch_mark_sent(batch_id=batch.pk), 1, "done"),
        (
            lambda batch, row: delivery.delivery_settle_by_event(
                delivery_id=row.pk, message_id="its-message"
            ),
            1,
            "done",
        ),
        # The fake provider never took it: never sent, then, nor sent now.
        (
            lambda batch, row: delivery.batch_settle_with_provider(batch_id=batch.pk),
            0,
            "cancelled",
        ),
    ],
    ids=["marked sent", "by the provider's event", "asking the provider"],
)
def test_a_cancelled_batch_holding_an_uncertain_reader_is_left_to_settle(
    author, planned, fake_esp, settle, sent, status
):
    """Cancelled while its batch waited for its retry, a reader whose answer was
    lost stayed uncertain for good: the batch was cancelled whole, and neither the
    author nor the provider's events may settle a cancelled batch. The batch is
    the author's to settle, its waiting readers skipped, as a batch uncertain when
    cancelled is."""
    first = planned.batches.order_by("number").first()
    uncertain = parted_by_its_lanes(first)
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    figures = mailing_page(author, planned)
    assert [figures[k] for k in FIGURES] == ["6", "0", "0", "1", "5"]
    assert re.search(r">1 to review</a>$", figures["Uncertain batches"])
    assert not delivery.batch_resend(batch_id=first.pk)  # cancelled: nothing goes

    uncertain_long_enough_to_ask(first)
    assert settle(first, uncertain)
    first.refresh_from_db()
    assert (first.status, first.sent, first.failed, first.uncertain) == (
        status,
        sent,
        0,
        0,
    )
    statuses = list(first.deliveries.values_list("status", flat=True))
    assert statuses.count(Delivery.Status.SKIPPED) == first.size - sent
    figures = mailing_page(author, planned)
    assert [figures[k] for k in FIGURES] == ["6", str(sent), "0", "0", str(6 - sent)]
    assert re.search(r">0 to review</a>$", figures["Uncertain batches"])
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.CANCELLED
    assert fake_esp.count == 0


def test_failures_in_a_row_trip_the_circuit_breaker_and_the_reaper_resumes_later(
    settings, planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    settings.NEWSLETTER_BREAKER_FAILURES = 3
    fake_esp.set_faults(fail_5xx_next=3)
    batch = planned.batches.order_by("number").first()
    for _ in range(3):
        with pytest.raises(delivery.ProviderUnavailable):
            delivery.batch_send(batch_id=batch.pk)
    planned.refresh_from_db()
    assert planned.paused_at is not None
    assert planned.resume_at > timezone.now()
    send_all(planned)  # paused: nothing goes out
    assert fake_esp.count == 0
    Mailing.objects.filter(pk=planned.pk).update(resume_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailings_reap()["mailings_resumed"] == 1
    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    planned.refresh_from_db()
    assert (planned.status, planned.consecutive_failures) == (Mailing.Status.DONE, 0)


def test_the_authors_pause_holds_a_mailing_the_breaker_paused(
    settings, planned, fake_esp, django_capture_on_commit_callbacks
):
    """The breaker's pause ends by itself after the cool-down; the author, seeing
    the provider fail, pauses it until they resume it."""
    settings.NEWSLETTER_BREAKER_FAILURES = 1
    fake_esp.set_faults(fail_5xx_next=1)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=planned.batches.order_by("number")[0].pk)
    paused = delivery.mailing_pause(mailing_id=planned.pk)
    # The breaker's cool-down is over, were its pause still standing.
    Mailing.objects.filter(pk=planned.pk, resume_at__isnull=False).update(
        resume_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery.mailings_reap()
    assert fake_esp.count == 0
    planned.refresh_from_db()
    assert planned.paused_at is not None
    assert (planned.resume_at, planned.pause_reason) == (None, "Paused by the author.")
    assert paused


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_the_authors_pause_as_the_reaper_ends_the_breakers_holds_the_mailing(
    planned, fake_esp
):
    """The author pauses a mailing the breaker paused just as the reaper, its
    cool-down over, resumes it: the reaper, which read the pause as the breaker's,
    waits for the author's and leaves it standing (it lifted it, and the mailing
    went out against the author's word)."""
    # Committed here, planning rang every doorbell and all went out: the last
    # batch is put back as the breaker left it, its readers still to be sent.
    last = planned.batches.order_by("number").last()
    last.deliveries.update(status=Delivery.Status.QUEUED, esp_message_id="")
    Batch.objects.filter(pk=last.pk).update(status=Batch.Status.QUEUED)
    Mailing.objects.filter(pk=planned.pk).update(
        status=Mailing.Status.SENDING,
        paused_at=timezone.now(),
        resume_at=timezone.now(),
        pause_reason="Paused after failed attempts in a row.",
    )
    fake_esp.reset()
    pausing, go_on = threading.Event(), threading.Event()

    def pause_then_wait() -> None:
        with transaction.atomic():
            delivery.mailing_pause(mailing_id=planned.pk)
            pausing.set()
            go_on.wait(timeout=10)

    paused, reaped = [], []
    author = in_a_thread(pause_then_wait, paused)
    assert pausing.wait(timeout=10)
    reaper = in_a_thread(delivery.mailings_reap, reaped)
    until_another_connection_waits_for_a_lock()  # the reaper, for the author's
    go_on.set()
    author.join(timeout=10)
    reaper.join(timeout=10)

    assert paused == [None]
    assert reaped[0]["mailings_resumed"] == 0
    assert fake_esp.count == 0
    planned.refresh_from_db()
    assert planned.paused_at is not None
    assert (planned.resume_at, planned.pause_reason) == (None, "Paused by the author.")


def test_a_cancelled_mailing_is_shown_cancelled_not_paused(author, planned):
    assert delivery.mailing_pause(mailing_id=planned.pk)
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    page = author.get("/admin/newsletter/mailing/").content.decode()
    assert 'field-state">Cancelled</td>' in page


def test_a_mailing_whose_last_batch_went_as_the_author_paused_it_is_shown_done(
    author, planned, monkeypatch
):
    """Paused while its last batch was in flight: that batch finishes and the
    mailing is done, with nothing left to hold or resume. The desk said "Paused",
    "paused until resumed", and resuming it did nothing."""
    *first, last = planned.batches.order_by("number")
    for batch in first:
        delivery.batch_send(batch_id=batch.pk)
    record = sender.record_outcomes

    def paused_as_the_provider_answers(*args, **kwargs):
        assert delivery.mailing_pause(mailing_id=planned.pk)
        return record(*args, **kwargs)

    monkeypatch.setattr(sender, "record_outcomes", paused_as_the_provider_answers)
    delivery.batch_send(batch_id=last.pk)

    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    figures = mailing_page(author, planned)
    assert (figures["Status"], figures["ETA"]) == ("Done", "done")
    listed = author.get("/admin/newsletter/mailing/").content.decode()
    assert 'field-state">Done</td>' in listed


def test_a_success_resets_the_failure_count(settings, planned, fake_esp):
    settings.NEWSLETTER_BREAKER_FAILURES = 2
    fake_esp.set_faults(fail_5xx_next=1)
    first, second, third = planned.batches.order_by("number")
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=first.pk)
    delivery.batch_send(batch_id=second.pk)
    fake_esp.set_faults(fail_5xx_next=1)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=third.pk)
    planned.refresh_from_db()
    assert planned.paused_at is None
    assert planned.consecutive_failures == 1


def test_a_worker_dying_mid_batch_leaves_it_uncertain_for_review(
    settings, planned, fake_esp
):
    batch = planned.batches.order_by("number").first()
    # The worker claimed the batch, then died before recording any answer.
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    assert delivery.mailings_reap()["stale_claims"] == 1
    batch.refresh_from_db()
    assert (batch.status, batch.uncertain) == (Batch.Status.UNCERTAIN, 2)
    assert fake_esp.count == 0  # never resent blindly


def test_a_slow_worker_whose_claim_the_reaper_took_records_what_the_provider_said(
    settings, planned, fake_esp, monkeypatch
):
    """The reaper takes a slow worker's claim for a dead one's (its readers become
    uncertain); the worker then hears the provider took them: the ledger and the
    batch's counts, which the desk shows, say sent, and nothing is sent twice."""
    first = planned.batches.order_by("number").first()
    hand_over = sender._hand_over

    def slow(batch, recipients):
        Batch.objects.filter(pk=batch.pk).update(
            touched_at=timezone.now()
            - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1)
        )
        assert delivery.mailings_reap()["stale_claims"] == 1
        return hand_over(batch, recipients)

    monkeypatch.setattr(sender, "_hand_over", slow)
    delivery.batch_send(batch_id=first.pk)
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)
    assert first.deliveries.filter(status=Delivery.Status.SENT).count() == 2
    monkeypatch.setattr(sender, "_hand_over", hand_over)
    send_all(planned)
    assert sorted(fake_esp.recipients().values()) == [1] * 6
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


class Clock:
    """timezone.now(), moved on by hand."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    return clock


class SlowProvider(locmem.EmailBackend):
    """One message per reader, each taking `seconds` by the clock; `during(n)` runs
    as the nth message goes (beat's reaper, in another process in life)."""

    clock: Clock
    seconds = 0
    during = staticmethod(lambda n: None)
    handed = 0

    def send_messages(self, messages):
        type(self).handed += 1
        self.clock.now += timedelta(seconds=self.seconds)
        self.during(self.handed)
        return super().send_messages(messages)


def copies_to(batch: Batch) -> list[str]:
    """The batch's readers each message in the outbox went to."""
    readers = set(batch.deliveries.values_list("subscriber__email", flat=True))
    return [to for message in mail.outbox for to in message.to if to in readers]


@pytest.fixture
def slow_provider(settings, clock):
    settings.EMAIL_BACKEND = f"{__name__}.SlowProvider"
    SlowProvider.clock, SlowProvider.handed = clock, 0
    mail.outbox = []
    return SlowProvider


def test_a_batch_slower_in_all_than_the_claim_timeout_is_not_taken_while_it_goes(
    settings, planned, slow_provider, monkeypatch
):
    """Each reader's message takes two thirds of the claim timeout: the batch as a
    whole outlasts it, but its worker renews its claim as it goes, so the reaper,
    running meanwhile, leaves it alone and no reader is ever shown uncertain."""
    monkeypatch.setattr(
        slow_provider, "seconds", settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS * 2 / 3
    )
    first = planned.batches.order_by("number").first()
    seen = []

    def reaper_runs(n):
        if n == 2:  # 1⅓ claim timeouts after the claim
            seen.append((delivery.mailings_reap()["stale_claims"], uncertain_readers()))

    def uncertain_readers():
        return first.deliveries.filter(status=Delivery.Status.UNCERTAIN).count()

    monkeypatch.setattr(slow_provider, "during", staticmethod(reaper_runs))
    delivery.batch_send(batch_id=first.pk)
    assert seen == [(0, 0)]
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)
    assert len(copies_to(first)) == len(set(copies_to(first))) == 2


def test_a_worker_whose_claim_the_reaper_took_hands_over_no_more_readers(
    settings, planned, slow_provider, monkeypatch
):
    """A worker stalled past the claim timeout on its first reader: the reaper
    takes the batch for a dead one's, and the author may be settling it. The
    worker records that reader as the provider answered and sends nobody else:
    the second reader stays uncertain, for the author to settle, never twice."""
    monkeypatch.setattr(
        slow_provider, "seconds", settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1
    )
    monkeypatch.setattr(
        slow_provider, "during", staticmethod(lambda n: delivery.mailings_reap())
    )
    first = planned.batches.order_by("number").first()
    delivery.batch_send(batch_id=first.pk)
    assert len(copies_to(first)) == 1
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (
        Batch.Status.UNCERTAIN,
        1,
        1,
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections")
@pytest.mark.django_db(transaction=True)
def test_a_stalled_worker_whose_batch_was_resent_and_claimed_sends_nobody_twice(
    settings, planned, slow_provider, monkeypatch
):
    """A worker stalls past the claim timeout on its batch's first reader: the
    reaper takes the batch for a dead one's, the author sends its uncertain readers
    again, and another worker claims it. The stalled worker goes on: the batch
    being sent by the other is not its claim, and it hands over nobody more; the
    second reader, whom nobody had handed over before, gets one copy, not two."""
    monkeypatch.setattr(
        slow_provider, "seconds", settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1
    )
    # Committed here, planning rang every batch's doorbell and all went out: the
    # first is put back in the queue, still to go.
    first = planned.batches.order_by("number").first()
    first.deliveries.update(status=Delivery.Status.QUEUED, esp_message_id="")
    Batch.objects.filter(pk=first.pk).update(status=Batch.Status.QUEUED)
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    stalled, claimed_again, handed_on = (threading.Event() for _ in range(3))
    second_sends_its_last = threading.Event()
    handed = {}

    def during(_n):
        me = threading.current_thread()
        handed[me] = handed.get(me, 0) + 1
        stalled_one = me is not threading.main_thread()  # the second: this test's
        if stalled_one and handed[me] == 1:
            stalled.set()
            assert claimed_again.wait(timeout=10)
        elif stalled_one:  # a reader more, after its claim was taken
            handed_on.set()
            second_sends_its_last.wait(timeout=10)
        elif handed[me] == 1:  # the second worker, on the first reader
            claimed_again.set()
            # The stalled worker goes on: it hands its next reader over (to
            # wait for this one's), or stops.
            while not handed_on.is_set() and stalled_worker.is_alive():
                handed_on.wait(timeout=0.05)
        else:
            second_sends_its_last.set()

    monkeypatch.setattr(slow_provider, "during", staticmethod(during))
    stalled_worker = in_a_thread(lambda: delivery.batch_send(batch_id=first.pk), [])
    assert stalled.wait(timeout=10)
    assert delivery.mailings_reap()["stale_claims"] == 1
    # Its doorbell, once committed, is the second worker's task (run here).
    assert delivery.batch_resend(batch_id=first.pk)
    stalled_worker.join(timeout=10)

    *_, second_reader = sorted(
        first.deliveries.values_list("subscriber__email", flat=True)
    )
    assert copies_to(first).count(second_reader) == 1
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)


def test_a_slow_provider_in_one_message_mode_keeps_a_live_batch_from_the_reaper(
    settings, planned, fake_esp, clock, monkeypatch
):
    """Postmark, one message per reader: a batch's readers go to our backend in
    one call, a request each, and each request takes two thirds of the claim
    timeout. The claim is renewed between them, so the reaper, running
    meanwhile, leaves the batch alone and every reader has one copy."""
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    first = planned.batches.order_by("number").first()
    post, seen = PostmarkBackend._post, []

    def slow_post(backend, payload, message):
        clock.now += timedelta(
            seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS * 2 / 3
        )
        if payload.reader.addr_spec == "reader1@example.org" and not seen:
            reaped = delivery.mailings_reap()["stale_claims"]
            uncertain = first.deliveries.filter(status=Delivery.Status.UNCERTAIN)
            seen.append((reaped, uncertain.count()))
        return post(backend, payload, message)

    monkeypatch.setattr(PostmarkBackend, "_post", slow_post)
    delivery.batch_send(batch_id=first.pk)
    assert seen == [(0, 0)]
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)
    assert sorted(fake_esp.recipients().values()) == [1] * 6


@pytest.fixture
def one_batch(settings, readers):
    """A mailing of one batch of six, planned, its doorbell not rung."""
    settings.NEWSLETTER_BATCH_SIZE = len(readers)
    delivery.mailing_create_for_post(post=PublishedPostFactory())
    mailing = Mailing.objects.get()
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    return mailing


@pytest.fixture
def one_batch_in_one_message_mode(settings, fake_esp, one_batch):
    """Postmark, one message per reader: one batch of six (one_batch)."""
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    return one_batch


def stopped_by_the_author_as_it_goes(monkeypatch, clock, control, mailing) -> None:
    """Each reader's request takes two seconds by the clock; the author presses
    `control` (pause, cancel) once the second reader's message has gone."""
    post, posted = PostmarkBackend._post, []

    def post_then_press(backend, payload, message):
        answer = post(backend, payload, message)
        clock.now += timedelta(seconds=2)
        posted.append(payload.reader.addr_spec)
        if len(posted) == 2:
            assert control(mailing_id=mailing.pk)
        return answer

    monkeypatch.setattr(PostmarkBackend, "_post", post_then_press)


def test_pausing_stops_a_batch_going_out_one_message_each_and_resuming_sends_the_rest(
    one_batch_in_one_message_mode,
    fake_esp,
    readers,
    clock,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """The worker posted every reader of its batch after the author paused: a
    batch of thousands went on for minutes. It stops before its next reader; the
    others wait in the queue, and resuming sends them each one copy."""
    mailing = one_batch_in_one_message_mode
    stopped_by_the_author_as_it_goes(
        monkeypatch, clock, delivery.mailing_pause, mailing
    )
    batch = mailing.batches.get()
    delivery.batch_send(batch_id=batch.pk)

    assert fake_esp.count == 2
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == (Batch.Status.QUEUED, 2)
    statuses = list(mailing.deliveries.values_list("status", flat=True))
    assert sorted(statuses) == ["queued"] * 4 + ["sent"] * 2
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=mailing.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_cancelling_stops_a_batch_going_out_one_message_each(
    one_batch_in_one_message_mode, fake_esp, clock, monkeypatch
):
    """mailing_cancel promises that nobody not yet handed over gets it: the
    worker's batch stops before its next reader, and its other readers are
    skipped, never sent."""
    mailing = one_batch_in_one_message_mode
    stopped_by_the_author_as_it_goes(
        monkeypatch, clock, delivery.mailing_cancel, mailing
    )
    batch = mailing.batches.get()
    delivery.batch_send(batch_id=batch.pk)

    assert fake_esp.count == 2
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == (Batch.Status.CANCELLED, 2)
    skipped = mailing.deliveries.filter(status=Delivery.Status.SKIPPED)
    assert skipped.count() == 4
    assert set(skipped.values_list("error", flat=True)) == {"mailing cancelled"}
    delivery.batch_send(batch_id=batch.pk)
    delivery.mailings_reap()
    assert fake_esp.count == 2


def test_pausing_stops_every_lane_of_a_batch_going_out_one_message_each(
    one_batch_in_one_message_mode,
    fake_esp,
    readers,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """A batch split into lanes, a thread each: the worker reads that the author
    paused, and every lane stops before its next reader. Each lane waits, after
    its first reader, until the worker has read its mailing again, as the lanes
    of a long batch would still be going then."""
    mailing = one_batch_in_one_message_mode
    monkeypatch.setattr(sender, "LANE_MIN_READERS", 2)  # three lanes of two
    post = PostmarkBackend._post
    read = sender.HandOver.read_if_due
    reads, mailing_read = [], threading.Event()

    def read_by_the_worker(self):
        read(self)
        reads.append(self.held)
        if len(reads) == 1:  # as the lanes start: the author pauses then
            assert delivery.mailing_pause(mailing_id=mailing.pk)
        elif self.held:
            mailing_read.set()

    def post_then_wait(backend, payload, message):
        answer = post(backend, payload, message)
        assert mailing_read.wait(timeout=5)
        return answer

    monkeypatch.setattr(sender.HandOver, "read_if_due", read_by_the_worker)
    monkeypatch.setattr(PostmarkBackend, "_post", post_then_wait)
    batch = mailing.batches.get()
    delivery.batch_send(batch_id=batch.pk)

    assert fake_esp.stats()["connections"] == 3
    assert fake_esp.count == 3  # each lane's first reader
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == (Batch.Status.QUEUED, 3)
    monkeypatch.setattr(sender.HandOver, "read_if_due", read)
    monkeypatch.setattr(PostmarkBackend, "_post", post)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=mailing.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


def taken_down(mailing: Mailing) -> None:
    unpublish_at_the_desk(Post.objects.get(pk=mailing.post_id))


def published_again_and_resumed(mailing: Mailing) -> bool:
    post_publish(post=Post.objects.get(pk=mailing.post_id))
    return delivery.mailing_resume(mailing_id=mailing.pk)


def test_a_post_taken_down_as_its_batch_goes_one_message_each_reaches_no_one_more(
    one_batch, slow_provider, readers, monkeypatch, django_capture_on_commit_callbacks
):
    """A backend that takes a message per reader (SMTP's way), each taking two
    seconds: the author takes the post off the site as the second reader's goes.
    The worker stops before the next reader, its batch back in the queue with the
    paused mailing, saying why; once the post is back and the mailing resumed,
    each reader has one copy."""
    monkeypatch.setattr(slow_provider, "seconds", 2)
    monkeypatch.setattr(
        slow_provider,
        "during",
        staticmethod(lambda n: n == 2 and taken_down(one_batch)),
    )
    batch = one_batch.batches.get()
    delivery.batch_send(batch_id=batch.pk)

    assert len(mail.outbox) == 2
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == (Batch.Status.QUEUED, 2)
    assert "taken off the site" in batch.last_error
    statuses = list(one_batch.deliveries.values_list("status", flat=True))
    assert sorted(statuses) == ["queued"] * 4 + ["sent"] * 2
    with django_capture_on_commit_callbacks(execute=True):
        assert published_again_and_resumed(one_batch)
    assert sorted(copies_to(batch)) == sorted(s.email for s in readers)


def taken_down_as_its_readers_are_read(monkeypatch, slow_provider, mailing) -> None:
    post = Post.objects.get(pk=mailing.post_id)
    taken_down_once_its_readers_are_read(monkeypatch, post)


def paused_as_the_second_goes(monkeypatch, slow_provider, mailing) -> None:
    def pause(n: int) -> None:
        if n == 2:
            assert delivery.mailing_pause(mailing_id=mailing.pk)

    monkeypatch.setattr(slow_provider, "seconds", 2)
    monkeypatch.setattr(slow_provider, "during", staticmethod(pause))


@pytest.mark.parametrize(
    ("stopped", "go_again"),
    [
        (taken_down_as_its_readers_are_read, published_again_and_resumed),
        (
            paused_as_the_second_goes,
            lambda m: delivery.mailing_resume(mailing_id=m.pk),
        ),
    ],
    ids=["post taken down", "paused"],
)
def test_a_mailing_resumed_as_its_stopped_batch_comes_back_is_sent_by_its_retry(
    one_batch,
    slow_provider,
    readers,
    monkeypatch,
    django_capture_on_commit_callbacks,
    stopped,
    go_again,
):
    """The author stops a batch as it goes (takes the post off the site, or
    pauses), then lets the mailing go again while its worker is still putting the
    batch back: the resume's ring finds the batch being sent and passes it by.
    The worker's retry sends it, not the reaper's doorbell minutes later."""
    stopped(monkeypatch, slow_provider, one_batch)
    record = sender.record_outcomes

    def going_again_as_it_is_recorded(*args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):  # rung, in vain
            assert go_again(one_batch)
        return record(*args, **kwargs)

    monkeypatch.setattr(sender, "record_outcomes", going_again_as_it_is_recorded)
    batch = one_batch.batches.get()
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=batch.pk)
    monkeypatch.setattr(sender, "record_outcomes", record)

    delivery.batch_send(batch_id=batch.pk)  # the retry
    assert sorted(copies_to(batch)) == sorted(s.email for s in readers)
    one_batch.refresh_from_db()
    assert one_batch.status == Mailing.Status.DONE


def test_a_batch_waiting_for_the_providers_retry_after_is_not_rung_before_it(
    settings, planned, fake_esp, clock
):
    """Postmark answers 429 with Retry-After longer than the doorbell timeout:
    the reaper, running while the batch waits for its retry, leaves it alone;
    once the retry is due and its doorbell late, it rings, and each reader has
    one copy."""
    settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS = 300
    first = planned.batches.order_by("number").first()
    fake_esp.set_faults(rate_limit_next=1, retry_after_s=500)
    with pytest.raises(delivery.ProviderUnavailable):
        tasks.send_batch(first.pk)  # called as a worker would; retried in 500 s
    # The mailing's other batches are not this story's.
    Batch.objects.exclude(pk=first.pk).update(status=Batch.Status.DONE)

    clock.now += timedelta(seconds=301)  # the doorbell timeout since its return
    assert delivery.mailings_reap()["batches_rung"] == 0
    assert fake_esp.count == 0

    clock.now += timedelta(seconds=500)  # the retry was due, its doorbell is late
    assert delivery.mailings_reap()["batches_rung"] == 1
    first.refresh_from_db()
    assert (first.status, first.sent) == (Batch.Status.DONE, 2)
    assert sorted(fake_esp.recipients().values()) == [1, 1]


def test_resuming_rings_a_batch_waiting_out_the_providers_retry_after_once_due(
    planned, fake_esp, readers, clock, django_capture_on_commit_callbacks
):
    """Postmark answered 429 with Retry-After 500 s, and the author paused the
    mailing and resumed it: resuming rang every queued batch at once, and the one
    waiting went back to Postmark long before it said to. It is rung for when its
    retry is due; the others at once. Each reader has one copy."""
    first, *others = planned.batches.order_by("number")
    fake_esp.set_faults(rate_limit_next=1, retry_after_s=500)
    with pytest.raises(delivery.ProviderUnavailable):
        tasks.send_batch(first.pk)  # called as a worker would; retried in 500 s
    assert delivery.mailing_pause(mailing_id=planned.pk)
    rung = {}

    def ring(args, kwargs=None, *, countdown=None, **options):
        rung[args[0]] = countdown or 0

    with pytest.MonkeyPatch.context() as broker:
        # The broker's side: when each doorbell is to ring.
        broker.setattr(tasks.send_batch, "apply_async", ring)
        with django_capture_on_commit_callbacks(execute=True):
            assert delivery.mailing_resume(mailing_id=planned.pk)
    assert rung[first.pk] >= 500
    assert [rung[batch.pk] for batch in others] == [0, 0]

    clock.now += timedelta(seconds=rung[first.pk])
    for batch_id in rung:
        tasks.send_batch(batch_id)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


def test_an_uncertain_batch_is_resent_only_when_the_author_says_so(
    planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    delivery.mailings_reap()
    assert fake_esp.count == 6  # the dropped call was accepted; nothing resent
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.batch_resend(batch_id=uncertain.pk)
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.DONE
    copies = fake_esp.recipients()
    assert sorted(copies.values()) == [1, 1, 1, 1, 2, 2]
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


def test_an_uncertain_batch_resent_then_cancelled_counts_its_readers_skipped(
    author, planned, fake_esp
):
    """Resending put the batch's readers back in the queue, yet the mailing still
    counted them uncertain, with none to review; cancelled before it went, for
    good, and none of them counted as never sent."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    assert delivery.batch_resend(batch_id=uncertain.pk)  # its doorbell not rung yet
    assert mailing_page(author, planned)["Uncertain"] == "0"
    assert delivery.mailing_cancel(mailing_id=planned.pk)
    figures = mailing_page(author, planned)
    assert [figures[k] for k in ("Sent", "Uncertain", "Skipped (never sent)")] == [
        "4",
        "0",
        "2",
    ]


def test_an_uncertain_batch_the_provider_confirms_is_recorded_as_sent(
    planned, fake_esp
):
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    assert delivery.batch_mark_sent(batch_id=uncertain.pk)
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent, uncertain.uncertain) == ("done", 2, 0)
    assert planned.deliveries.filter(status=Delivery.Status.SENT).count() == 6
    assert fake_esp.count == 6


def test_resolving_with_the_provider_records_what_it_took_as_sent(planned, fake_esp):
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    uncertain_long_enough_to_ask(uncertain)
    assert delivery.batch_settle_with_provider(batch_id=uncertain.pk)
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent) == (Batch.Status.DONE, 2)
    ids = uncertain.deliveries.values_list("esp_message_id", flat=True)
    assert "" not in ids
    assert sorted(fake_esp.recipients().values()) == [1] * 6


def test_asking_the_provider_before_its_search_lists_what_it_took_changes_nothing(
    author, planned, fake_esp, readers, clock, monkeypatch
):
    """Postmark's search lists a message seconds to minutes after taking it:
    asked as the batch turned uncertain, it listed none of the readers it had
    taken, and they were queued and sent a second copy. The desk says when it may
    be asked, changes nothing until then, and settles the batch as sent after."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    listed_from = clock.now + timedelta(minutes=1)
    search = control.accepted_recipients

    def lagging_search(**metadata):
        return search(**metadata) if timezone.now() >= listed_from else []

    monkeypatch.setattr(control, "accepted_recipients", lagging_search)
    clock.now += timedelta(seconds=30)
    askable_from = uncertain.finished_at + provider.SEARCH_LAG
    assert run(author, "batch", "settle", uncertain) == [
        (
            "warning",
            "1 batch not settled: uncertain for less than 5 minutes, and the"
            " provider's search may not list yet what it took. Ask again after"
            f" {timezone.localtime(askable_from):%H:%M:%S}.",
        )
    ]
    assert fake_esp.count == 6
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.uncertain) == (Batch.Status.UNCERTAIN, 2)
    assert uncertain.deliveries.filter(status=Delivery.Status.UNCERTAIN).count() == 2

    clock.now = askable_from
    assert run(author, "batch", "settle", uncertain) == [
        ("success", "Settled 1 batch with the provider.")
    ]
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent) == (Batch.Status.DONE, 2)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


def test_asking_mailgun_records_what_it_took_and_resends_only_what_it_never_took(
    mailgun,
    author,
    planned,
    readers,
    clock,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """A worker died before its batch's request went out; another batch's answer
    was lost after Mailgun took it. Its Events API, its accepted events of the
    time each batch went out kept where they name the batch, a page at a time,
    tells them apart: every reader has exactly one copy."""
    monkeypatch.setattr(provider, "MAILGUN_PAGE", 2)  # every batch's events on pages
    first, second, third = planned.batches.order_by("number")
    died_before_its_request_went_out(first)
    mailgun.set_faults(drop_after_accept_next=1)
    delivery.batch_send(batch_id=second.pk)
    delivery.batch_send(batch_id=third.pk)
    assert mailgun.count == 4
    clock.now += timedelta(minutes=35)
    with django_capture_on_commit_callbacks(execute=True):
        assert run(author, "batch", "settle", first, second) == [
            ("success", "Settled 2 batches with the provider.")
        ]
    assert mailgun.recipients() == {s.email: 1 for s in readers}
    second.refresh_from_db()
    assert (second.status, second.sent, second.uncertain) == (Batch.Status.DONE, 2, 0)
    [taken] = {
        d.message_id
        for d in mailgun.deliveries()
        if d.metadata["batch"] == str(second.pk)
    }
    assert set(second.deliveries.values_list("esp_message_id", flat=True)) == {taken}
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


def test_asking_mailgun_before_its_events_are_settled_changes_nothing(
    mailgun, author, planned, clock
):
    """Mailgun's events reach its store out of order, and a page of them is
    complete only once they are half an hour old: asked sooner, a reader it took
    could be missing from the answer and be sent a second copy."""
    mailgun.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    clock.now += timedelta(minutes=10)
    askable_from = uncertain.finished_at + timedelta(minutes=35)
    assert run(author, "batch", "settle", uncertain) == [
        (
            "warning",
            "1 batch not settled: uncertain for less than 35 minutes, and the"
            " provider's search may not list yet what it took. Ask again after"
            f" {timezone.localtime(askable_from):%H:%M:%S}.",
        )
    ]
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.uncertain) == (Batch.Status.UNCERTAIN, 2)


def test_asking_mailgun_after_it_may_have_dropped_its_events_changes_nothing(
    mailgun, author, planned, clock
):
    """Mailgun keeps its events for a day on its free plan: asked later, an
    empty answer would send every reader a second copy. The desk says how to
    settle the batch by hand."""
    mailgun.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    clock.now += timedelta(days=1, minutes=1)
    author.force_login(UserFactory())  # the day-old login has expired
    assert run(author, "batch", "settle", uncertain) == [
        (
            "error",
            "Could not ask the provider about 1 batch: Mailgun may no longer keep"
            " its record of what it took (a day, on its free plan). Look the"
            " batch's readers up in Mailgun's logs: record the batch as sent if it"
            " took them all, or resend it if not (those it took get a second copy).",
        ),
    ]
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.uncertain) == (Batch.Status.UNCERTAIN, 2)
    assert mailgun.count == 6


def uncertain_at_mailgun_paging_to(next_page, mailgun, planned, clock, monkeypatch):
    """A batch left uncertain that Mailgun may be asked about now, its events'
    pages each leading to next_page(the page just read); and the addresses the
    asking reads, in order."""
    mailgun.set_faults(drop_after_accept_next=1)
    send_all(planned)
    clock.now += timedelta(minutes=35)
    get, asked = requests.Session.get, []

    def paged(session, url, **kwargs):
        asked.append(url)
        response = get(session, url, **kwargs)
        if len(asked) < 50:  # not forever, so that a loop ends
            page = response.json()
            page["paging"]["next"] = next_page(response.url)
            response.json = lambda: page
        return response

    monkeypatch.setattr(requests.Session, "get", paged)
    return planned.batches.get(status=Batch.Status.UNCERTAIN), asked


def test_mailgun_giving_the_page_just_read_as_the_next_one_is_not_asked_forever(
    mailgun, author, planned, clock, monkeypatch
):
    """Mailgun's last page of events leads to an empty one. A next page that is
    the one just read (an API fault) was asked for again and again, holding a
    worker for good and counting its readers over: nothing is settled on it."""
    uncertain, asked = uncertain_at_mailgun_paging_to(
        lambda page_read: page_read, mailgun, planned, clock, monkeypatch
    )
    assert run(author, "batch", "settle", uncertain) == [
        (
            "error",
            "Could not ask the provider about 1 batch: Mailgun's events gave as"
            " the next page one already read. Ask again later, or look the"
            " batch's readers up in Mailgun's logs.",
        ),
    ]
    assert len(asked) == 1  # the page is not asked for again
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.uncertain) == (Batch.Status.UNCERTAIN, 2)
    assert mailgun.count == 6


def test_mailgun_giving_a_next_page_outside_its_api_is_not_given_the_key(
    mailgun, author, planned, clock, monkeypatch
):
    """The session asking Mailgun sends the API key with every request: a next
    page at another host would have had it. Nothing is settled on it."""
    uncertain, asked = uncertain_at_mailgun_paging_to(
        lambda page_read: "https://collector.example/v3/events/p2",
        mailgun,
        planned,
        clock,
        monkeypatch,
    )
    assert run(author, "batch", "settle", uncertain) == [
        (
            "error",
            "Could not ask the provider about 1 batch: Mailgun's events gave as"
            " the next page an address outside its API, not followed. Look the"
            " batch's readers up in Mailgun's logs.",
        ),
    ]
    assert not [url for url in asked if "collector.example" in url]
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.UNCERTAIN


def test_resolving_with_the_provider_resends_only_what_it_never_took(
    settings, planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    first, *others = planned.batches.order_by("number")
    died_before_its_request_went_out(first)
    for batch in others:
        delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.count == 4
    uncertain_long_enough_to_ask(first)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.batch_settle_with_provider(batch_id=first.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    assert planned.deliveries.filter(status=Delivery.Status.SENT).count() == 6


def test_a_batch_sent_again_while_the_provider_is_asked_is_left_to_ask_again(
    settings, author, planned, fake_esp, monkeypatch, django_capture_on_commit_callbacks
):
    """The provider never took the first attempt; while its search was asked, the
    author resent the batch, the provider took it and the answer was lost again.
    The old search's answer was written to the new attempt: its readers, taken
    now but not listed then, were queued and sent a second copy. Nothing is
    written, and the desk says to ask again."""
    first = planned.batches.order_by("number").first()
    readers = set(first.deliveries.values_list("subscriber__email", flat=True))
    died_before_its_request_went_out(first)
    uncertain_long_enough_to_ask(first)
    search = control.accepted_recipients

    def sent_again_meanwhile(**metadata):
        answer = search(**metadata)  # none taken: the first attempt never went
        assert delivery.batch_resend(batch_id=first.pk)
        fake_esp.set_faults(drop_after_accept_next=1)
        delivery.batch_send(batch_id=first.pk)
        return answer

    monkeypatch.setattr(control, "accepted_recipients", sent_again_meanwhile)
    with django_capture_on_commit_callbacks(execute=True):
        assert run(author, "batch", "settle", first) == [
            (
                "warning",
                "1 batch not settled: it was sent again while the provider was"
                " asked; ask again.",
            )
        ]
    assert fake_esp.recipients() == dict.fromkeys(readers, 1)
    first.refresh_from_db()
    assert (first.status, first.uncertain) == (Batch.Status.UNCERTAIN, 2)
    assert first.deliveries.filter(status=Delivery.Status.UNCERTAIN).count() == 2


def test_asking_the_provider_finds_a_reader_who_moved_address_since(
    planned, fake_esp, django_capture_on_commit_callbacks
):
    """The provider took the reader's copy at the address they had then: it is
    theirs, not a copy never taken to send again to their new address."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    mover = uncertain.deliveries.order_by("pk").first().subscriber
    assert email_change_confirm(subscriber=mover, new_email="moved@example.org")
    uncertain_long_enough_to_ask(uncertain)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.batch_settle_with_provider(batch_id=uncertain.pk)
    assert "moved@example.org" not in fake_esp.recipients()
    assert sorted(fake_esp.recipients().values()) == [1] * 6
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent) == (Batch.Status.DONE, 2)


def test_the_providers_events_about_an_uncertain_batch_record_it_as_sent(
    client, settings, planned, fake_esp
):
    """The connection dropped after the provider took the first batch; its
    webhook then tells about each message: none is left for the author to settle
    by hand, and the readers are sent nothing twice."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    # The last worker died before closing the mailing, and the reaper has not
    # come round since.
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    first, second = fake_esp.deliveries()[:2]
    rows = {r.subscriber.email: r for r in uncertain.deliveries.all()}
    assert set(rows) == {first.address, second.address}

    provider_reports(client, settings, postmark_delivery(), first)
    delivered = Delivery.objects.get(pk=rows[first.address].pk)
    assert delivered.status == Delivery.Status.SENT
    assert delivered.esp_message_id == first.message_id
    assert delivered.sent_at is not None
    assert delivered.error == "confirmed by the provider's event about it"
    assert Delivery.objects.get(pk=rows[second.address].pk).status == "uncertain"
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent, uncertain.uncertain) == (
        Batch.Status.UNCERTAIN,
        1,
        1,
    )

    # A deferral: the receiving server asked the provider to try later.
    provider_reports(client, settings, postmark_bounce("Transient"), second)
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.sent, uncertain.uncertain) == (
        Batch.Status.DONE,
        2,
        0,
    )
    assert Delivery.objects.get(pk=rows[second.address].pk).status == "sent"
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    assert planned.deliveries.filter(status=Delivery.Status.SENT).count() == 6
    assert sorted(fake_esp.recipients().values()) == [1] * 6


@pytest.mark.parametrize(
    "bounce_type", ["SMTPApiError", "Blocked"], ids=["failed", "rejected"]
)
def test_a_refusal_the_provider_reports_settles_nothing(
    client, settings, planned, fake_esp, bounce_type
):
    """The provider refused the message, or failed to send it: it may never have
    taken it, so the batch waits for the author."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    taken = fake_esp.deliveries()[0]
    provider_reports(client, settings, postmark_bounce(bounce_type), taken)
    assert set(uncertain.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.UNCERTAIN
    }
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.uncertain) == (Batch.Status.UNCERTAIN, 2)


def test_an_event_about_a_batch_the_author_chose_to_resend_changes_nothing(
    client, settings, planned, fake_esp
):
    """The author resent the batch knowingly before the provider's event came:
    their choice stands, and its worker sends it as they asked."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    assert delivery.batch_resend(batch_id=uncertain.pk)  # its doorbell not rung yet
    provider_reports(client, settings, postmark_delivery(), fake_esp.deliveries()[0])
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.QUEUED
    assert set(uncertain.deliveries.values_list("status", "error")) == {
        (Delivery.Status.QUEUED, "resent by the author")
    }


def test_an_event_about_a_reader_whose_batch_waits_for_its_retry_settles_them(
    client, settings, planned, fake_esp
):
    """One lane's answer was lost while another stopped early: the batch waits
    for its retry holding an uncertain reader. The provider's event about that
    reader's message settles them there and then (it was refused while the batch
    was not uncertain, and never came again), and the retry sends only the
    reader still queued."""
    first = planned.batches.order_by("number").first()
    uncertain = parted_by_its_lanes(first)
    lost = SimpleNamespace(
        message_id="answer-lost-on-the-way",
        metadata={"delivery": str(uncertain.pk)},
        address=uncertain.subscriber.email,
    )

    provider_reports(client, settings, postmark_delivery(), lost)
    uncertain.refresh_from_db()
    assert (uncertain.status, uncertain.esp_message_id) == (
        Delivery.Status.SENT,
        "answer-lost-on-the-way",
    )
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.QUEUED, 1, 0)

    delivery.batch_send(batch_id=first.pk)
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)
    assert uncertain.subscriber.email not in fake_esp.recipients()
    assert len(fake_esp.recipients()) == 1


def test_admin_shows_each_sends_progress(author, planned):
    delivery.batch_send(batch_id=planned.batches.order_by("number").first().pk)
    response = author.get("/admin/newsletter/mailing/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<progress value="2" max="6"' in page
    assert "33%" in page
    response = author.get(f"/admin/newsletter/mailing/{planned.pk}/change/")
    assert response.status_code == 200
    # Kept current by a reload the author can turn off, not by a <meta> refresh.
    page = response.content.decode()
    assert 'id="live-progress" data-seconds="10"' in page
    assert 'http-equiv="refresh"' not in page


def mailing_page(client, mailing: Mailing) -> dict[str, str]:
    """The figures on a mailing's page, by their label."""
    page = client.get(f"/admin/newsletter/mailing/{mailing.pk}/change/")
    assert page.status_code == 200
    return dict(
        re.findall(
            r"<label>([^<:]*):</label>\s*<div class=\"readonly\">(.*?)</div>",
            page.content.decode(),
        )
    )


def test_a_small_mailing_going_out_has_a_rate_and_an_eta(author, planned):
    """Two readers of six in the last five minutes: 0.4 a minute, not the
    "0.0 recipients/s" a small list showed while it went."""
    delivery.batch_send(batch_id=planned.batches.order_by("number").first().pk)
    figures = mailing_page(author, planned)
    assert figures["Rate (recipients/min)"] == "0.4"
    assert figures["ETA"] == "0:10:00"  # the four waiting, at that rate


def test_settling_an_old_uncertain_batch_gives_the_mailing_no_sending_rate(
    author, planned
):
    """Readers whose answer was lost an hour ago, recorded as sent now, made a
    mailing that sent nothing for an hour read 0.4 recipients a minute."""
    send_all(planned)
    first = planned.batches.order_by("number").first()
    first.deliveries.update(status=Delivery.Status.UNCERTAIN)
    Batch.objects.filter(pk=first.pk).update(
        status=Batch.Status.UNCERTAIN, sent=0, uncertain=2
    )
    an_hour_ago = timezone.now() - timedelta(hours=1)
    planned.batches.update(finished_at=an_hour_ago)
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    assert mailing_page(author, planned)["Rate (recipients/min)"] == "0.0"
    assert delivery.batch_mark_sent(batch_id=first.pk)
    figures = mailing_page(author, planned)
    assert (figures["Sent"], figures["Rate (recipients/min)"]) == ("6", "0.0")
    first.refresh_from_db()
    assert first.finished_at == an_hour_ago  # when it went, not when settled


def test_a_reader_who_erased_after_receiving_stays_sent_when_their_batch_is_settled(
    author, planned
):
    """docs/engagement.md: the mailing's page still counts an erased reader's
    email (its batches' counters). Settling their batch recounted it from the
    ledger, which their rows had left: sent 5 of 6, and one 'skipped (never
    sent)', who was sent it."""
    send_all(planned)
    first = planned.batches.order_by("number").first()
    went, lost = first.deliveries.order_by("pk")
    # The answer about the second reader's copy was lost.
    Delivery.objects.filter(pk=lost.pk).update(status=Delivery.Status.UNCERTAIN)
    Batch.objects.filter(pk=first.pk).update(
        status=Batch.Status.UNCERTAIN, sent=1, uncertain=1
    )
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    subscriber_delete(subscriber=went.subscriber)
    assert mailing_page(author, planned)["Sent"] == "5"
    assert delivery.batch_mark_sent(batch_id=first.pk)
    figures = mailing_page(author, planned)
    assert [figures[k] for k in ("Sent", "Uncertain", "Skipped (never sent)")] == [
        "6",
        "0",
        "0",
    ]


@pytest.mark.parametrize("action", ["mark_sent", "settle"])
def test_an_uncertain_batch_whose_uncertain_readers_all_erased_their_data_is_settled(
    author, planned, fake_esp, action
):
    """Every reader of an uncertain batch whose copy was uncertain erased their
    data: their rows went, and the batch stayed uncertain for good. Recording it
    as sent, or asking the provider, answered "its readers were settled
    meanwhile" and changed nothing; the desk asked the author to settle it ever
    after, and the mailing counted them uncertain. It is closed as its ledger
    reads: nothing is left to send, nor to settle."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    for row in uncertain.deliveries.all():
        subscriber_delete(subscriber=row.subscriber)
    fake_esp.reset()
    uncertain_long_enough_to_ask(uncertain)

    done = "Recorded 1 batch as sent." if action == "mark_sent" else "Settled 1"
    [(level, words)] = run(author, "batch", action, uncertain)
    assert (level, words[: len(done)]) == ("success", done)
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.DONE
    assert mailing_page(author, planned)["Uncertain"] == "0"
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    assert fake_esp.count == 0


def test_a_paused_mailing_has_no_eta_until_it_goes_again(
    author, planned, settings, fake_esp
):
    # Two readers went out a minute ago; then the author paused the rest.
    delivery.batch_send(batch_id=planned.batches.order_by("number").first().pk)
    delivery.mailing_pause(mailing_id=planned.pk)
    assert mailing_page(author, planned)["ETA"] == "paused until resumed"

    # The breaker's pause ends by itself, at a time the page gives (London's).
    settings.NEWSLETTER_BREAKER_FAILURES = 1
    delivery.mailing_resume(mailing_id=planned.pk)
    fake_esp.set_faults(fail_5xx_next=1)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=planned.batches.order_by("number")[1].pk)
    planned.refresh_from_db()
    until = timezone.localtime(planned.resume_at)
    assert mailing_page(author, planned)["ETA"] == f"paused until about {until:%H:%M}"


def test_a_cancelled_mailing_says_who_was_never_sent_and_has_no_eta(author, planned):
    delivery.batch_send(batch_id=planned.batches.order_by("number").first().pk)
    delivery.mailing_cancel(mailing_id=planned.pk)
    figures = mailing_page(author, planned)
    planned_sent_skipped = [
        figures[k] for k in ("Planned", "Sent", "Skipped (never sent)")
    ]
    assert planned_sent_skipped == ["6", "2", "4"]
    assert figures["ETA"] == "cancelled: nothing more goes"
    assert planned.deliveries.filter(status=Delivery.Status.SKIPPED).count() == 4
    listed = author.get("/admin/newsletter/mailing/").content.decode()
    assert '<td class="field-skipped">4</td>' in listed


def test_the_administrator_finds_which_readers_failed_and_why(
    author, planned, fake_esp, readers
):
    refused = readers[0]
    fake_esp.mark_inactive(refused.email)  # it hard-bounced at Postmark before
    send_all(planned)
    failed = mailing_page(author, planned)["Failed"]
    assert "1: who, and why" in failed
    ledger = re.search(r'href="([^"]+)"', failed)[1].replace("&amp;", "&")
    page = author.get(ledger)
    assert page.status_code == 200
    assert [row.subscriber for row in page.context["cl"].result_list] == [refused]
    assert '<td class="field-error">provider: rejected</td>' in page.content.decode()


def test_an_editor_is_told_how_many_failed_with_no_link_to_the_ledger(
    client, planned, fake_esp, readers
):
    fake_esp.mark_inactive(readers[0].email)
    send_all(planned)
    client.force_login(StaffFactory(role="Editor"))
    assert mailing_page(client, planned)["Failed"] == "1"
    assert client.get("/admin/newsletter/delivery/").status_code == 403


def test_a_mailing_still_planning_is_not_done(author, settings, readers):
    settings.NEWSLETTER_BATCH_SIZE = 2
    delivery.mailing_create_for_post(post=PublishedPostFactory())
    mailing = Mailing.objects.get()
    figures = mailing_page(author, mailing)
    assert (figures["Planned"], figures["ETA"]) == ("0", "still planning")


def test_an_empty_mailing_shows_its_zeroes(author, planned):
    Batch.objects.all().delete()
    figures = mailing_page(author, planned)
    assert [figures[k] for k in ("Planned", "Sent", "Skipped (never sent)")] == [
        "0",
        "0",
        "0",
    ]
    assert "0%" in figures["Progress"]


@pytest.mark.parametrize(
    ("action", "check"),
    [
        ("pause", lambda mailing: mailing.paused_at is not None),
        ("cancel", lambda mailing: mailing.status == Mailing.Status.CANCELLED),
    ],
)
def test_admin_pauses_and_cancels_sends(author, planned, action, check):
    response = author.post(
        "/admin/newsletter/mailing/",
        {"action": action, "_selected_action": [planned.pk], "post": "yes"},
    )
    assert response.status_code == 302
    planned.refresh_from_db()
    assert check(planned)


def test_cancelling_a_mailing_from_the_list_asks_first_naming_it(author, planned):
    """Cancelled, a post's announcement never reaches the readers it had not
    reached, and cannot be resumed: one Go on the wrong action, over the whole
    list selected, stopped every mailing going out, unasked."""
    planned.refresh_from_db()
    going = planned.status
    cancel = {"action": "cancel", "_selected_action": [planned.pk]}
    asked = author.post("/admin/newsletter/mailing/", cancel)
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Cancel 1 mailing?" in page
    assert f"<li>{html.escape(str(planned))}</li>" in page
    assert '<input type="submit" value="Yes, cancel them">' in page
    planned.refresh_from_db()
    assert planned.status == going

    answered = author.post("/admin/newsletter/mailing/", {**cancel, "post": "yes"})
    assert answered.status_code == 302
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.CANCELLED


def test_admin_resumes_a_paused_send(
    author, planned, fake_esp, django_capture_on_commit_callbacks
):
    delivery.mailing_pause(mailing_id=planned.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = author.post(
            "/admin/newsletter/mailing/",
            {"action": "resume", "_selected_action": [planned.pk]},
        )
    assert response.status_code == 302
    assert fake_esp.count == 6


def test_admin_lists_uncertain_batches_and_resends_one_deliberately(
    author, planned, fake_esp, django_capture_on_commit_callbacks
):
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    response = author.get(
        f"/admin/newsletter/batch/?mailing__id__exact={planned.pk}&status__exact=uncertain"
    )
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = author.post(
            "/admin/newsletter/batch/",
            {"action": "resend", "_selected_action": [uncertain.pk]},
        )
    assert response.status_code == 302
    assert fake_esp.count == 8


@pytest.mark.parametrize(
    "action, done",
    [
        ("resend", "Queued 1 batch to send again."),
        # The provider never took its readers: they are queued again.
        ("settle", "Settled 1 batch with the provider."),
    ],
)
def test_an_uncertain_batch_sent_again_in_a_paused_mailing_says_it_waits_for_the_resume(
    settings,
    author,
    planned,
    fake_esp,
    readers,
    django_capture_on_commit_callbacks,
    action,
    done,
):
    """The author sent an uncertain batch of a mailing they had paused again:
    told "Queued 1 batch to send again", they waited for emails that went only
    once they resumed the mailing."""
    first = planned.batches.order_by("number").first()
    died_before_its_request_went_out(first)
    uncertain_long_enough_to_ask(first)
    assert delivery.mailing_pause(mailing_id=planned.pk)

    with django_capture_on_commit_callbacks(execute=True):
        assert run(author, "batch", action, first) == [
            ("success", done),
            (
                "warning",
                "1 batch queued again waits for its paused mailing to be resumed:"
                " nothing goes until then.",
            ),
        ]
    assert fake_esp.count == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=planned.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


def test_asking_a_provider_without_a_search_changes_nothing_and_says_so(
    author, planned, fake_esp, settings
):
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    uncertain_long_enough_to_ask(uncertain)
    response = author.post(
        "/admin/newsletter/batch/",
        {"action": "settle", "_selected_action": [uncertain.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Could not ask the provider" in response.content.decode()
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.UNCERTAIN


@pytest.fixture
def viewer():
    """Staff who may look at mailings, batches and the ledger, and change nothing."""
    user = UserFactory(is_superuser=False)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="newsletter",
            codename__in=["view_mailing", "view_batch", "view_delivery"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        ("mailing", "pause"),
        ("mailing", "resume"),
        ("mailing", "cancel"),
        ("batch", "settle"),
        ("batch", "mark_sent"),
        ("batch", "resend"),
    ],
)
def test_staff_who_may_only_view_run_no_action(
    viewer, planned, fake_esp, changelist, action
):
    fake_esp.set_faults(drop_after_accept_next=1)
    delivery.batch_send(batch_id=planned.batches.order_by("number").first().pk)
    delivery.mailing_pause(mailing_id=planned.pk)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    planned.refresh_from_db()
    before = (planned.status, planned.paused_at)
    target = planned if changelist == "mailing" else uncertain
    page = viewer.get(f"/admin/newsletter/{changelist}/")
    assert page.status_code == 200
    assert f'value="{action}"' not in page.content.decode()
    response = viewer.post(
        f"/admin/newsletter/{changelist}/",
        {"action": action, "_selected_action": [target.pk]},
    )
    assert response.status_code in (200, 302, 403)
    planned.refresh_from_db()
    assert (planned.status, planned.paused_at) == before
    uncertain.refresh_from_db()
    assert uncertain.status == Batch.Status.UNCERTAIN
    assert fake_esp.count == 2


@pytest.fixture
def uncertain_first(planned, fake_esp):
    """Committed here, planning rang every batch's doorbell and all went out; the
    first's worker then died before the answer, and the provider lost what it had.
    The first batch and its readers' addresses."""
    first = planned.batches.order_by("number").first()
    readers = set(first.deliveries.values_list("subscriber__email", flat=True))
    first.deliveries.update(status=Delivery.Status.UNCERTAIN, esp_message_id="")
    Batch.objects.filter(pk=first.pk).update(status=Batch.Status.UNCERTAIN)
    uncertain_long_enough_to_ask(first)
    fake_esp.reset()
    return first, readers


@pytest.fixture
def requeue_held(monkeypatch):
    """Settling or resending a batch stops once it has put the batch back in the
    queue, not yet committed, and says so (`requeued`); it goes on at `go_on`."""
    requeued, go_on = threading.Event(), threading.Event()
    reopen = control._reopen

    def reopen_then_wait(mailing_id: int) -> None:
        reopen(mailing_id)
        requeued.set()
        go_on.wait(timeout=10)

    monkeypatch.setattr(control, "_reopen", reopen_then_wait)
    return requeued, go_on


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_batch_settled_back_into_the_queue_while_its_mailing_closes_is_sent(
    planned, fake_esp, uncertain_first, requeue_held
):
    """The author settles an uncertain batch with the provider, which never took
    it, while a worker finishing another batch closes the mailing: the mailing
    stays open until the batch is sent (seen in `make chaos`: it was closed, and
    the batch's readers never got the post)."""
    first, readers = uncertain_first
    requeued, go_on = requeue_held
    # Another batch is being sent again, so the mailing is open.
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    settled, closed = [], []

    author = in_a_thread(
        lambda: delivery.batch_settle_with_provider(batch_id=first.pk), settled
    )
    assert requeued.wait(timeout=10)
    worker = in_a_thread(lambda: close_mailing_if_finished(planned.pk), closed)
    worker.join(timeout=0.5)  # waits for the author's lock, or closes at once
    go_on.set()
    author.join(timeout=10)
    worker.join(timeout=10)

    assert (settled, len(closed)) == ([True], 1)
    assert fake_esp.recipients() == dict.fromkeys(readers, 1)
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    assert planned.deliveries.filter(status=Delivery.Status.SENT).count() == 6


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_mailing_whose_last_batch_ends_as_its_planning_ends_is_closed(
    planned, monkeypatch
):
    """The planner's last step turns the mailing from planning to sending while the
    last batch finishes: each looked before the other had committed, the batch
    found no sending mailing to wait for, and the mailing stayed open with every
    batch done until the reaper came (seen in CI: a threaded worker's, 60 s)."""
    *sent, last = planned.batches.order_by("number")
    Batch.objects.filter(pk__in=[b.pk for b in sent]).update(status=Batch.Status.DONE)
    Batch.objects.filter(pk=last.pk).update(status=Batch.Status.SENDING)
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.PLANNING)
    looked, go_on = threading.Event(), threading.Event()

    def planner_looks_then_waits(mailing_id: int) -> None:
        close_mailing_if_finished(mailing_id)  # the last batch not done yet
        looked.set()
        go_on.wait(timeout=10)  # before the planning step commits

    monkeypatch.setattr(planner, "close_mailing_if_finished", planner_looks_then_waits)
    planned_steps, ended = [], []
    planning = in_a_thread(
        lambda: delivery.mailing_plan_page(mailing_id=planned.pk), planned_steps
    )
    assert looked.wait(timeout=10)

    def last_batch_ends() -> None:
        Batch.objects.filter(pk=last.pk).update(status=Batch.Status.DONE)
        close_mailing_if_finished(planned.pk)

    worker = in_a_thread(last_batch_ends, ended)
    until_another_connection_waits_for_a_lock()  # the worker, for the planner's
    go_on.set()
    planning.join(timeout=10)
    worker.join(timeout=10)

    assert (planned_steps, ended) == ([False], [None])
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_recording_a_batch_as_sent_while_it_is_resent_waits_and_is_refused(
    fake_esp, uncertain_first, requeue_held
):
    """Two members of the desk settle the same uncertain batch at once, one by
    resending it, the other by recording it as sent: the second waits for the
    first, as settling does, and is told it could not (it said "recorded", having
    changed nothing, or the two deadlocked)."""
    first, readers = uncertain_first
    requeued, go_on = requeue_held
    resent, recorded = [], []

    resender = in_a_thread(lambda: delivery.batch_resend(batch_id=first.pk), resent)
    assert requeued.wait(timeout=10)
    recorder = in_a_thread(
        lambda: delivery.batch_mark_sent(batch_id=first.pk), recorded
    )
    until_another_connection_waits_for_a_lock()  # the recorder, for the resend's
    go_on.set()
    resender.join(timeout=10)
    recorder.join(timeout=10)

    assert (resent, recorded) == ([True], [False])
    assert fake_esp.recipients() == dict.fromkeys(readers, 1)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_an_event_settling_a_reader_while_the_author_asks_the_provider_is_kept(
    settings, fake_esp, uncertain_first, monkeypatch
):
    """The provider's webhook reports one reader's message while the author asks
    the provider about the batch, and its search does not list that message yet:
    the author's settling waits for the event's, and sends again only what no one
    has heard of (it sent the reader a second copy, or the two deadlocked)."""
    first, _readers = uncertain_first
    row, other = first.deliveries.order_by("pk").select_related("subscriber")
    settling, go_on = threading.Event(), threading.Event()
    plan_again = control._corrections_plan_again

    def plan_again_then_wait(batch_id: int) -> None:
        plan_again(batch_id)
        settling.set()
        go_on.wait(timeout=10)

    monkeypatch.setattr(control, "_corrections_plan_again", plan_again_then_wait)
    delivered = postmark_delivery(row.subscriber.email)
    delivered["Metadata"] = {"batch": str(first.pk), "delivery": str(row.pk)}
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    answered, settled = [], []

    webhook = in_a_thread(
        lambda: post_postmark(Client(), delivered).status_code, answered
    )
    assert settling.wait(timeout=10)
    author = in_a_thread(
        lambda: delivery.batch_settle_with_provider(batch_id=first.pk), settled
    )
    until_another_connection_waits_for_a_lock()  # the author, for the event's
    go_on.set()
    webhook.join(timeout=10)
    author.join(timeout=10)

    assert (answered, len(settled)) == ([200], 1)
    assert fake_esp.recipients() == {other.subscriber.email: 1}
    row.refresh_from_db()
    assert (row.status, row.error) == (
        Delivery.Status.SENT,
        "confirmed by the provider's event about it",
    )
    first.refresh_from_db()
    assert (first.status, first.sent) == (Batch.Status.DONE, 2)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_an_event_arriving_while_the_author_records_the_batch_as_sent_waits(
    settings, fake_esp, uncertain_first, monkeypatch
):
    """The author records the batch as sent as the provider's webhook reports a
    reader's message: the event waits for the author, finds the reader settled and
    records only what became of the message (the two deadlocked, one of them
    failing, when the event wrote the reader's row before locking the batch)."""
    first, _readers = uncertain_first
    row = first.deliveries.order_by("pk").select_related("subscriber").first()
    locked, go_on = threading.Event(), threading.Event()
    lock = control._locked_with_its_mailing

    def lock_then_wait(batch_id: int) -> Batch | None:
        batch = lock(batch_id)
        if not locked.is_set():  # the author's, not the event's after it
            locked.set()
            go_on.wait(timeout=10)
        return batch

    monkeypatch.setattr(control, "_locked_with_its_mailing", lock_then_wait)
    delivered = postmark_delivery(row.subscriber.email)
    delivered["Metadata"] = {"batch": str(first.pk), "delivery": str(row.pk)}
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    recorded, answered = [], []

    author = in_a_thread(lambda: delivery.batch_mark_sent(batch_id=first.pk), recorded)
    assert locked.wait(timeout=10)
    webhook = in_a_thread(
        lambda: post_postmark(Client(), delivered).status_code, answered
    )
    until_another_connection_waits_for_a_lock()  # the event, for the author's
    go_on.set()
    author.join(timeout=10)
    webhook.join(timeout=10)

    assert (recorded, answered) == ([True], [200])
    row.refresh_from_db()
    assert (row.status, row.error, row.last_event) == (
        Delivery.Status.SENT,
        "confirmed with the provider by the author",
        "delivered",
    )
    first.refresh_from_db()
    assert (first.status, first.sent) == (Batch.Status.DONE, 2)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.parametrize("lost", ["before its retry", "in this attempt"])
@pytest.mark.django_db(transaction=True)
def test_an_event_settling_a_reader_as_their_batch_closes_is_counted(
    planned, fake_esp, monkeypatch, lost
):
    """The provider's event settles the uncertain reader of a batch as its worker
    closes it: the worker's recount, waiting for the event's lock, counted the
    reader uncertain as it read them before the event committed, and left the
    batch uncertain with no one in it to settle. The reader's answer was lost in
    the attempt before (the batch's retry holds them) or in this one."""
    first = planned.batches.order_by("number").first()
    # Committed here, planning rang every batch's doorbell and all went out: the
    # first is taken back to before it went.
    first.deliveries.update(
        status=Delivery.Status.QUEUED, esp_message_id="", sent_at=None
    )
    if lost == "before its retry":
        uncertain = parted_by_its_lanes(first)
    else:
        uncertain = first.deliveries.order_by("pk").first()
        Batch.objects.filter(pk=first.pk).update(status=Batch.Status.QUEUED)
    Mailing.objects.filter(pk=planned.pk).update(status=Mailing.Status.SENDING)
    recorded, event_holds_it = threading.Event(), threading.Event()
    record = sender.record_outcomes

    def record_then_wait(outcomes, *args, **kwargs) -> None:
        if lost == "in this attempt":
            outcomes[uncertain.pk] = Outcome(
                Delivery.Status.UNCERTAIN, error="connection reset after the request"
            )
        record(outcomes, *args, **kwargs)
        recorded.set()
        event_holds_it.wait(timeout=10)

    monkeypatch.setattr(sender, "record_outcomes", record_then_wait)
    locked, go_on = threading.Event(), threading.Event()
    lock = control._locked_with_its_mailing

    def lock_then_wait(batch_id: int) -> Batch | None:
        batch = lock(batch_id)
        locked.set()
        go_on.wait(timeout=10)
        return batch

    monkeypatch.setattr(control, "_locked_with_its_mailing", lock_then_wait)
    sent, settled = [], []

    worker = in_a_thread(lambda: delivery.batch_send(batch_id=first.pk), sent)
    assert recorded.wait(timeout=10)  # its queued readers handed over
    event = in_a_thread(
        lambda: delivery.delivery_settle_by_event(
            delivery_id=uncertain.pk, message_id="its-message"
        ),
        settled,
    )
    assert locked.wait(timeout=10)
    event_holds_it.set()  # the worker closes the batch
    until_another_connection_waits_for_a_lock()  # the worker, for the event's
    go_on.set()
    event.join(timeout=10)
    worker.join(timeout=10)

    assert (len(sent), settled) == (1, [True])
    first.refresh_from_db()
    assert (first.status, first.sent, first.uncertain) == (Batch.Status.DONE, 2, 0)


def test_unpublishing_a_post_mid_send_holds_the_rest_of_its_email(
    planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    # The author takes a post down (a wrong fact, a legal worry): readers not yet
    # sent it must not get an email whose link leads to nothing. A pause, not a
    # cancel: published again, the author resumes and nobody is left out.
    post = planned.post
    post_publish(post=post)
    first = planned.batches.order_by("number").first()
    delivery.batch_send(batch_id=first.pk)
    editor = unpublish_at_the_desk(post)
    send_all(planned)
    assert fake_esp.count == 2
    planned.refresh_from_db()
    assert planned.paused_at is not None
    assert "unpublished" in planned.pause_reason
    # Resumed while the post is still down, its emails would lead nowhere.
    with django_capture_on_commit_callbacks(execute=True):
        response = editor.post(
            "/admin/newsletter/mailing/",
            {"action": "resume", "_selected_action": [planned.pk]},
            follow=True,
        )
    page = response.content.decode()
    assert "Resumed" not in page
    assert "1 mailing not resumed: its post is not on the site." in page
    send_all(planned)
    assert fake_esp.count == 2
    post_publish(post=post)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=planned.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


@pytest.mark.parametrize("mode", ["auto", "single"])
def test_a_post_taken_down_as_its_batch_goes_reaches_no_one_until_it_is_back(
    planned,
    fake_esp,
    readers,
    settings,
    monkeypatch,
    django_capture_on_commit_callbacks,
    mode,
):
    """Unpublishing paused the mailing, but the batch a worker had already claimed
    still carried the post to its readers, its link leading nowhere."""
    settings.NEWSLETTER_DELIVERY_MODE = mode
    post = planned.post
    post_publish(post=post)
    first = planned.batches.order_by("number").first()
    taken_down_once_its_readers_are_read(monkeypatch, post)
    delivery.batch_send(batch_id=first.pk)

    assert fake_esp.count == 0
    first.refresh_from_db()
    assert first.status == Batch.Status.QUEUED
    assert set(planned.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.QUEUED
    }
    planned.refresh_from_db()
    assert "unpublished" in planned.pause_reason
    post_publish(post=post)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=planned.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE


@pytest.mark.parametrize("send_again", ["resend", "ask the provider"])
def test_an_uncertain_batch_sent_again_with_its_post_off_the_site_waits_paused(
    settings, planned, fake_esp, readers, django_capture_on_commit_callbacks, send_again
):
    """The post's email had gone out (done), one batch uncertain, when the post
    was taken off the site: unpublishing pauses only a mailing still going out.
    Sent again then, the batch waited unseen in a mailing shown as sending, not
    paused, and went out once the post was back, without the author resuming
    it. It waits in the mailing paused, as the post's emails do."""
    post = planned.post
    post_publish(post=post)
    first, *others = planned.batches.order_by("number")
    died_before_its_request_went_out(first)
    for batch in others:
        delivery.batch_send(batch_id=batch.pk)
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    unpublish_at_the_desk(post)
    uncertain_long_enough_to_ask(first)

    with django_capture_on_commit_callbacks(execute=True):
        if send_again == "resend":
            assert delivery.batch_resend(batch_id=first.pk)
        else:  # the provider never took them: they are to be sent
            assert delivery.batch_settle_with_provider(batch_id=first.pk)

    planned.refresh_from_db()
    assert planned.paused_at is not None
    assert "not published" in planned.pause_reason
    post_publish(post=post)
    delivery.mailings_reap()
    send_all(planned)
    assert fake_esp.count == 4
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=planned.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


@pytest.fixture
def paused(settings, fake_esp, readers):
    """A mailing of three batches of two the author paused before any went:
    committed, for tests on two connections (its batches, rung, wait)."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    with transaction.atomic():
        mailing = delivery.mailing_create_for_post(post=PublishedPostFactory())
        assert delivery.mailing_pause(mailing_id=mailing.pk)
    return mailing


def held_until_resumed(mailing: Mailing, fake_esp, readers, *, rung=()) -> None:
    """Its post off the site, the mailing is held: nothing goes, whatever was
    `rung` for it meanwhile, nor once the post is back, until the author
    resumes it; then every reader gets it once."""
    for ring in rung:
        ring()
    send_all(mailing)
    post_publish(post=Post.objects.get(pk=mailing.post_id))
    send_all(mailing)
    assert fake_esp.count == 0
    assert delivery.mailing_resume(mailing_id=mailing.pk)  # rung as it commits
    assert fake_esp.recipients() == {s.email: 1 for s in readers}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_mailing_resumed_as_its_post_is_taken_down_is_refused(
    author, paused, fake_esp, readers
):
    """The author resumes a paused mailing as an editor takes its post off the
    site: the resume read the post as published before the unpublish committed,
    whose pause found the mailing paused still and left it. Resumed, its batches
    waited queued, not shown paused at the desk, and went out once the post was
    back without the author resuming it. The resume now waits for the
    unpublish, and is refused as for any post off the site."""
    post = paused.post
    resumed = as_taken_down(
        post, author, lambda: delivery.mailing_resume(mailing_id=paused.pk)
    )
    assert resumed is False
    paused.refresh_from_db()
    assert paused.paused_at is not None
    held_until_resumed(paused, fake_esp, readers)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_taken_down_as_its_mailing_is_resumed_holds_the_mailing(
    author, paused, fake_esp, readers, monkeypatch
):
    """An editor takes the post off the site as the author resumes its mailing:
    the unpublish's pause found the mailing paused still, the resume not yet
    committed, and left it. Resumed, its batches waited queued, not shown paused
    at the desk, and went out once the post was back without the author resuming
    it. The unpublish now waits for the resume, and pauses the mailing."""
    post = paused.post
    # A worker busy elsewhere takes up the resumed mailing once the desk is
    # done: rung at the commit (tasks run in-process here), it would race the
    # desk's pause.
    rings = []
    monkeypatch.setattr(control, "ring_once_committed", rings.append)

    resumed, _editor = as_it_commits(
        lambda: delivery.mailing_resume(mailing_id=paused.pk),
        lambda: unpublish_at_the_desk(post, editor=author),
    )

    assert resumed is True
    paused.refresh_from_db()
    assert "unpublished" in paused.pause_reason
    monkeypatch.undo()
    held_until_resumed(paused, fake_esp, readers, rung=rings)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_resuming_mailings_as_an_editor_publishes_their_posts_again_deadlocks_no_one(
    settings, fake_esp, readers, monkeypatch
):
    """The author resumes two mailings held as their posts were taken down, as an
    editor publishes both posts again from their list. The resume locked each
    mailing's post as it came to it, in the mailings' order (the later post's
    first), the publish the posts in theirs: each waited for the other's second,
    and PostgreSQL failed one of the two desks (a 500). The resume now locks its
    posts first, in their order: the publish waits for it, then goes."""
    settings.NEWSLETTER_BATCH_SIZE = 2
    earlier, later = PublishedPostFactory.create_batch(2)
    with transaction.atomic():
        mailings = [  # the later post's emailed first
            delivery.mailing_create_for_post(post=post) for post in (later, earlier)
        ]
        for mailing in mailings:
            assert delivery.mailing_pause(mailing_id=mailing.pk)
    author, editor = Client(raise_request_exception=False), Client()
    author.force_login(UserFactory())
    editor.force_login(UserFactory())
    for post in (later, earlier):
        unpublish_at_the_desk(post, editor=editor)
    editor.raise_request_exception = False

    # The editor publishes the posts again as the author's resume has gone past
    # the first mailing, before its second (the real resume, a step later).
    resume, editors, published = delivery.mailing_resume, [], []

    def then_the_editor_publishes(*, mailing_id: int) -> bool:
        if mailing_id == mailings[1].pk:
            editors.append(
                in_a_thread(
                    lambda: desk_action(editor, "publish", earlier, later), published
                )
            )
            until_another_connection_waits_for_a_lock()
        return resume(mailing_id=mailing_id)

    monkeypatch.setattr(delivery, "mailing_resume", then_the_editor_publishes)
    answer = desk_action(author, "resume", *mailings)
    editors[0].join(timeout=10)
    monkeypatch.undo()

    assert [answer.status_code, published[0].status_code] == [302, 302]
    page = author.get(answer["Location"]).content.decode()
    assert "2 mailings not resumed: its post is not on the site." in page
    assert set(Post.objects.values_list("status", flat=True)) == {Post.Status.PUBLISHED}
    assert fake_esp.count == 0  # held until the author resumes them again
    for mailing in mailings:
        assert delivery.mailing_resume(mailing_id=mailing.pk)
    assert fake_esp.recipients() == {s.email: 2 for s in readers}


def batch_and_ledger_lists(author, query: str = "") -> list[tuple[int, set[int]]]:
    """Each list's queries and the mailings its filter offers (their ids)."""
    pages = []
    for path in ("/admin/newsletter/batch/", "/admin/newsletter/delivery/"):
        with CaptureQueriesContext(connection) as queries:
            response = author.get(path + query)
        assert response.status_code == 200
        offered = re.findall(r"mailing__id__exact=(\d+)", response.content.decode())
        pages.append((len(queries), set(map(int, offered))))
    return pages


def test_the_batch_and_ledger_lists_offer_the_latest_mailings_in_fixed_queries(
    author, planned
):
    """Their filter offered every mailing ever sent, a query each to name it."""
    other = Mailing.objects.create(kind=Mailing.Kind.POST, post=PublishedPostFactory())
    first = batch_and_ledger_lists(author)
    assert [offered for _, offered in first] == [{planned.pk, other.pk}] * 2
    for post in PublishedPostFactory.create_batch(12):
        Mailing.objects.create(kind=Mailing.Kind.POST, post=post)

    after = batch_and_ledger_lists(author)

    assert [count for count, _ in after] == [count for count, _ in first]
    latest = Mailing.objects.all()[: admin_mailings.MailingFilter.LATEST]
    assert [offered for _, offered in after] == [{m.pk for m in latest}] * 2
    # The one a mailing's page links to is offered, and chosen, however old.
    chosen = batch_and_ledger_lists(author, f"?mailing__id__exact={planned.pk}")
    assert all(planned.pk in offered for _, offered in chosen)
    response = author.get(f"/admin/newsletter/batch/?mailing__id__exact={planned.pk}")
    assert response.context_data["cl"].result_count == 3
    # The ledger's rows counted once a page, not a second time for "(N total)".
    with CaptureQueriesContext(connection) as queries:
        author.get(f"/admin/newsletter/delivery/?mailing__id__exact={planned.pk}")
    assert len([q for q in queries if "COUNT(" in q["sql"].upper()]) == 1
    for wrong in ("abc", "-1", "1e308", "9" * 30):
        response = author.get(f"/admin/newsletter/delivery/?mailing__id__exact={wrong}")
        location = "/admin/newsletter/delivery/?e=1"
        assert (response.status_code, response.get("Location")) == (302, location)


def said(response) -> list[tuple[str, str]]:
    """The messages a control's answer page shows, with their level."""
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def run(client, changelist: str, action: str, *rows) -> list[tuple[str, str]]:
    return said(
        client.post(
            f"/admin/newsletter/{changelist}/",
            # Cancelling asks first: answered yes.
            {
                "action": action,
                "_selected_action": [row.pk for row in rows],
                "post": "yes",
            },
            follow=True,
        )
    )


def test_each_mailing_control_says_what_it_did_and_why_it_did_nothing(author, planned):
    """Clicked twice, or on a mailing that has ended, a control answered "Paused
    0 mailing(s).", as if it had worked: the author could not tell a refusal
    from a success."""
    assert run(author, "mailing", "pause", planned) == [
        ("success", "Paused 1 mailing.")
    ]
    assert run(author, "mailing", "pause", planned) == [
        ("warning", "1 mailing not paused: already paused.")
    ]
    assert run(author, "mailing", "resume", planned) == [  # its doorbells not rung
        ("success", "Resumed 1 mailing.")
    ]
    assert run(author, "mailing", "resume", planned) == [
        ("warning", "1 mailing not resumed: not paused.")
    ]
    assert run(author, "mailing", "cancel", planned) == [
        ("success", "Cancelled 1 mailing.")
    ]
    assert run(author, "mailing", "cancel", planned) == [
        ("warning", "1 mailing not cancelled: it had ended (sent or cancelled).")
    ]
    for action, done in (("pause", "paused"), ("resume", "resumed")):
        assert run(author, "mailing", action, planned) == [
            ("warning", f"1 mailing not {done}: it had ended (sent or cancelled).")
        ]


def test_each_batch_control_says_what_it_did_and_why_it_did_nothing(
    author, planned, fake_esp
):
    """Clicked on a batch already settled, or twice, "Recorded 0 batch(es) as
    sent." said nothing of the refusal."""
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(planned)
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    done = planned.batches.filter(status=Batch.Status.DONE).first()
    assert run(author, "batch", "mark_sent", uncertain, done) == [
        ("success", "Recorded 1 batch as sent."),
        ("warning", "1 batch not recorded as sent: not uncertain."),
    ]
    for action, what in (("resend", "queued again"), ("settle", "settled")):
        assert run(author, "batch", action, uncertain) == [
            ("warning", f"1 batch not {what}: not uncertain.")
        ]


def test_asking_the_provider_about_batches_says_which_it_settled_before_it_failed(
    author, planned, fake_esp, monkeypatch
):
    """The provider failing on the second batch asked, the author was told only
    that it could not be asked: not that the first was settled."""
    fake_esp.set_faults(drop_after_accept_next=2)
    send_all(planned)
    first, second = planned.batches.filter(status=Batch.Status.UNCERTAIN)
    search = requests.Session.get

    def unreachable_after_the_first_search(session, *args, **kwargs):
        monkeypatch.setattr(requests.Session, "get", down)
        return search(session, *args, **kwargs)

    def down(session, *args, **kwargs):
        raise requests.ConnectionError("the provider is unreachable")

    monkeypatch.setattr(requests.Session, "get", unreachable_after_the_first_search)
    uncertain_long_enough_to_ask(first, second)
    said = run(author, "batch", "settle", first, second)
    assert said == [
        (
            "error",
            "Could not ask the provider about 1 batch: the provider is unreachable",
        ),
        ("success", "Settled 1 batch with the provider."),
    ]
    statuses = set(
        Batch.objects.filter(pk__in=[first.pk, second.pk]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {Batch.Status.DONE, Batch.Status.UNCERTAIN}


@pytest.mark.parametrize(
    "provider_took, queue_warned",
    [(True, False), (False, True)],
    ids=["everything confirmed", "some never taken"],
)
def test_asking_the_provider_with_the_queue_down_says_so_only_if_something_goes(
    request, author, planned, fake_esp, settings, provider_took, queue_warned
):
    """Everything the provider took, and nothing queued again, the author was
    told all the same that the emails go once the task queue is back."""
    first = planned.batches.order_by("number").first()
    if provider_took:  # its answer lost
        fake_esp.set_faults(drop_after_accept_next=1)
        delivery.batch_send(batch_id=first.pk)
    else:  # its worker died before the request went out
        Batch.objects.filter(pk=first.pk).update(
            status=Batch.Status.SENDING,
            touched_at=timezone.now()
            - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
        )
        delivery.mailings_reap()
    first.refresh_from_db()
    assert first.status == Batch.Status.UNCERTAIN
    uncertain_long_enough_to_ask(first)

    request.getfixturevalue("redis_down")
    said = run(author, "batch", "settle", first)
    assert said[0] == ("success", "Settled 1 batch with the provider.")
    assert (("warning", SENT_ONCE_THE_QUEUE_IS_BACK) in said) == queue_warned


def test_recording_a_batch_as_sent_with_the_queue_down_says_its_correction_waits(
    request, author, planned, fake_esp, readers, django_capture_on_commit_callbacks
):
    """Readers recorded as sent are owed the post's correction, planned again for
    them: with the task queue down, the author was not told it waits for it."""
    fake_esp.set_faults(drop_after_accept_next=1)
    with django_capture_on_commit_callbacks(execute=True):
        send_all(planned)
        update = PostUpdate.objects.create(
            post=planned.post, kind=PostUpdate.Kind.CORRECTION, wrong="A", right="B"
        )
        delivery.mailing_create_for_correction(
            post_update=update, include_uncertain=False
        )
    uncertain = planned.batches.get(status=Batch.Status.UNCERTAIN)
    correction = Mailing.objects.get(kind=Mailing.Kind.CORRECTION)
    assert correction.status == Mailing.Status.DONE
    fake_esp.reset()

    reaped_once_redis_is_back = request.getfixturevalue("reaped_once_redis_is_back")
    assert run(author, "batch", "mark_sent", uncertain) == [
        ("success", "Recorded 1 batch as sent."),
        ("warning", SENT_ONCE_THE_QUEUE_IS_BACK),
    ]
    assert fake_esp.count == 0
    reaped_once_redis_is_back()
    assert fake_esp.recipients() == {
        row.subscriber.email: 1 for row in uncertain.deliveries.all()
    }


def mailing_controls(client, mailing: Mailing) -> tuple[str, dict, list[str]]:
    """The controls a mailing's page offers: where its form posts, the fields it
    sends, and the actions of its buttons."""
    page = client.get(f"/admin/newsletter/mailing/{mailing.pk}/change/")
    assert page.status_code == 200
    form = re.search(
        r'<form id="mailing-controls" method="post" action="([^"]+)">(.*?)</form>',
        page.content.decode(),
        re.S,
    )
    if form is None:
        return "", {}, []
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form[2]))
    return form[1], fields, re.findall(r'name="action" value="(\w+)"', form[2])


def test_a_paused_mailings_page_resumes_it_where_the_desk_says(
    author, planned, fake_esp, django_capture_on_commit_callbacks
):
    """The desk and the post's messages send the author to a paused mailing's page
    to resume it: the page showed its figures and no way to resume it."""
    delivery.mailing_pause(mailing_id=planned.pk)
    url, fields, actions = mailing_controls(author, planned)
    assert actions == ["resume"]
    with django_capture_on_commit_callbacks(execute=True):
        response = author.post(url, {**fields, "action": "resume"}, follow=True)
    assert said(response) == [("success", "Resumed 1 mailing.")]
    assert fake_esp.count == 6
    planned.refresh_from_db()
    assert planned.status == Mailing.Status.DONE
    assert mailing_controls(author, planned)[2] == []  # it has ended


def test_a_control_on_a_mailings_page_comes_back_to_that_page(author, planned):
    """Paused from its page, the author landed on the list of every mailing, not
    on the page that shows what the pause did. From the list, the list."""
    page = f"/admin/newsletter/mailing/{planned.pk}/change/"
    url, fields, actions = mailing_controls(author, planned)
    assert actions == ["pause"]
    response = author.post(url, {**fields, "action": "pause"})
    assert (response.status_code, response["Location"]) == (302, page)
    assert said(author.get(page)) == [("success", "Paused 1 mailing.")]
    assert mailing_controls(author, planned)[2] == ["resume"]

    listed = "/admin/newsletter/mailing/?kind__exact=post"
    response = author.post(
        listed, {"action": "resume", "_selected_action": [planned.pk]}
    )
    assert (response.status_code, response["Location"]) == (302, listed)
    # The page's own field with several selected, or a row that is not a mailing:
    # never an address the request chose.
    for selected in ([planned.pk, planned.pk + 1], ["//evil.example"]):
        response = author.post(
            listed, {**fields, "action": "pause", "_selected_action": selected}
        )
        assert response.status_code in (302, 400)
        assert response.get("Location") in (None, listed)


def test_a_mailings_page_offers_only_the_controls_that_apply_to_those_allowed(
    client, author, planned, viewer
):
    assert mailing_controls(author, planned)[2] == ["pause"]
    client.force_login(StaffFactory(role="Editor"))  # may pause and resume
    assert mailing_controls(client, planned)[2] == ["pause"]
    assert mailing_controls(viewer, planned)[2] == []
    # Its post taken off the site: it cannot be resumed until the post is back.
    unpublish_at_the_desk(planned.post, editor=author)
    assert mailing_controls(author, planned)[2] == []
    post_publish(post=Post.objects.get(pk=planned.post_id))
    assert mailing_controls(client, planned)[2] == ["resume"]
    delivery.mailing_cancel(mailing_id=planned.pk)
    assert mailing_controls(author, planned)[2] == []


def test_a_mailing_cancelled_as_a_batch_goes_out_says_that_batch_stops(author, planned):
    """Cancelled while a worker was sending a batch, the page said "nothing more
    goes" as that batch's readers were still being handed over; then that the
    batch finishes, where it stops within a second."""
    first = planned.batches.order_by("number").first()
    Batch.objects.filter(pk=first.pk).update(status=Batch.Status.SENDING)
    delivery.mailing_cancel(mailing_id=planned.pk)
    assert mailing_page(author, planned)["ETA"] == (
        "cancelled: the batch being sent stops within a second"
    )
