import base64
import json
import threading
import time
from datetime import timedelta
from email.utils import parseaddr
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core import mail
from django.db import connection
from django.db.models.signals import pre_delete
from django.test import Client
from django.utils import timezone

from benchmarks.fake_esp import postmark_messages
from newsletter import delivery, subscriptions, tasks
from newsletter.delivery import planner, sender
from newsletter.models import (
    Batch,
    Delivery,
    Link,
    Mailing,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.reports import post_report

from .factories import (
    CategoryFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
)
from .locks import (
    another_connection_waits_for_a_lock,
    as_erasure_commits,
    in_a_thread,
    until_done_or_waiting_for_a_lock,
)
from .test_webhooks import (
    postmark_bounce,
    postmark_complaint,
    postmark_delivery,
    provider_reports,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

SITE = "http://127.0.0.1:8000"


@pytest.fixture
def audience():
    """Three readers who should get the post, two who must not."""
    return {
        "confirmed": SubscriberFactory.create_batch(3),
        "pending": SubscriberFactory(status=Subscriber.Status.PENDING),
        "unsubscribed": SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED),
    }


def plan(post) -> Mailing:
    """Create and plan the post's mailing without sending (the doorbell is ignored)."""
    delivery.mailing_create_for_post(post=post)
    mailing = Mailing.objects.get(post=post)
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    return mailing


def test_each_confirmed_subscriber_gets_exactly_one_copy(publish, audience):
    post = PostFactory(title="Suffolk: caseloads too high")
    publish(post)
    confirmed = sorted(s.email for s in audience["confirmed"])
    assert sorted(m.to[0] for m in mail.outbox) == confirmed
    assert all(len(m.recipients()) == 1 for m in mail.outbox)
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 3
    mailing = Mailing.objects.get(post=post)
    assert mailing.status == Mailing.Status.DONE
    assert mailing.finished_at is not None


def test_post_email_has_both_parts_a_link_to_the_post_and_one_click_headers(
    publish, audience
):
    post = PostFactory()
    publish(post)
    message = mail.outbox[0]
    html = message.alternatives[0].content
    assert f"http://127.0.0.1:8000/posts/{post.slug}/" in message.body
    # In the HTML, through the counting redirect (tests/test_engagement.py).
    assert "http://127.0.0.1:8000/r/" in html
    assert Link.objects.filter(url=f"http://127.0.0.1:8000/posts/{post.slug}/")
    unsubscribe_url = message.extra_headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert (
        message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    )
    assert unsubscribe_url in message.body
    assert unsubscribe_url in html
    # The header's link unsubscribes exactly this reader, with a bare POST.
    path = unsubscribe_url.removeprefix("http://127.0.0.1:8000")
    response = Client(enforce_csrf_checks=True).post(
        path, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    reader = Subscriber.objects.get(email=message.to[0])
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert Subscriber.objects.confirmed().count() == 2


def test_each_reader_gets_their_own_unsubscribe_link(publish, audience):
    publish(PostFactory())
    links = {m.extra_headers["List-Unsubscribe"] for m in mail.outbox}
    assert len(links) == 3


def test_second_publish_sends_nothing(publish, audience):
    post = PostFactory()
    publish(post)
    publish(post)
    post.title = "Edited after publication"
    post.save()
    publish(post)
    assert len(mail.outbox) == 3
    assert Mailing.objects.count() == 1


def test_a_redelivered_batch_task_sends_nothing_twice(audience):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    delivery.batch_send(batch_id=batch.pk)
    delivery.batch_send(batch_id=batch.pk)
    assert len(mail.outbox) == 3


def test_planning_pages_the_audience_into_batches(settings):
    settings.NEWSLETTER_BATCH_SIZE = 2
    readers = SubscriberFactory.create_batch(5)
    mailing = plan(PublishedPostFactory())
    assert mailing.batches.count() == 3
    planned = sorted(mailing.deliveries.values_list("subscriber_id", flat=True))
    assert planned == sorted(r.pk for r in readers)
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.SENDING
    assert mailing.planned_up_to == max(r.pk for r in readers)
    # Planning again after it finished adds nothing.
    assert delivery.mailing_plan_page(mailing_id=mailing.pk) is False
    assert mailing.deliveries.count() == 5


def test_a_reader_confirming_while_a_page_is_planned_is_counted_in_their_batch(
    monkeypatch,
):
    """The page's batches are sized by one statement and given their readers by
    the next: one who confirmed in between joined a batch that did not count
    them, and the mailing's figures did not add up (skipped: -1)."""
    SubscriberFactory.create_batch(2)
    late = SubscriberFactory(status=Subscriber.Status.PENDING)
    SubscriberFactory()
    sized = planner._batches_create

    def confirmed_meanwhile(*args, **kwargs):
        batch_ids = sized(*args, **kwargs)
        Subscriber.objects.filter(pk=late.pk).update(status=Subscriber.Status.ACTIVE)
        return batch_ids

    monkeypatch.setattr(planner, "_batches_create", confirmed_meanwhile)
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    assert batch.deliveries.count() == 4
    assert batch.size == 4
    delivery.batch_send(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.size, batch.sent) == (4, 4)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_reader_erasing_their_data_while_a_page_is_planned_is_left_out_at_once():
    """The page read the reader before their erasure committed, and its ledger row
    for them failed the page's commit (foreign keys are checked then): planning
    stopped until the reaper rang again, minutes later. The page is planned again
    at once, without them."""
    staying, leaving = SubscriberFactory.create_batch(2)
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.POST, post=PublishedPostFactory()
    )
    # As a worker runs it: a retry runs at once, an error ends in the result.
    planned = as_erasure_commits(
        leaving, lambda: tasks.plan_mailing.apply(args=[mailing.pk], throw=False).get()
    )
    assert planned is None  # no error
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert [m.to[0] for m in mail.outbox] == [staying.email]
    assert list(mailing.deliveries.values_list("subscriber", flat=True)) == [staying.pk]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_page_planned_while_a_reader_erases_their_data_does_not_undo_the_erasure(
    monkeypatch,
):
    """The page wrote the reader's ledger row and committed after the erasure had
    taken away their rows, before it took the reader: the erasure failed (their
    new row still named them), and the reader saw an error. The erasure goes
    through, and the page is planned again without them."""
    staying, leaving = SubscriberFactory.create_batch(2)
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.POST, post=PublishedPostFactory()
    )
    written, erasing, go_on = threading.Event(), threading.Event(), threading.Event()
    plan_page = planner._plan_page

    def written_then_wait(*args):
        planned = plan_page(*args)
        if not written.is_set():  # the first time only, not the page planned again
            written.set()
            go_on.wait(timeout=10)  # before committing
        return planned

    def at_the_readers_own_row(sender, instance, **kwargs) -> None:
        erasing.set()
        go_on.wait(timeout=10)

    monkeypatch.setattr(planner, "_plan_page", written_then_wait)
    pre_delete.connect(at_the_readers_own_row, sender=Subscriber)
    answers = []
    try:
        planning = in_a_thread(
            lambda: tasks.plan_mailing.apply(args=[mailing.pk], throw=False).get(),
            answers,
        )
        assert written.wait(timeout=10)
        eraser = in_a_thread(
            lambda: subscriptions.subscriber_delete(subscriber=leaving), answers
        )
        assert erasing.wait(timeout=10)  # their ledger rows are gone, not them yet
        go_on.set()
        until_done_or_waiting_for_a_lock(planning)
        eraser.join(timeout=10)
        planning.join(timeout=10)
    finally:
        pre_delete.disconnect(at_the_readers_own_row, sender=Subscriber)

    assert answers == [None, None]
    assert not Subscriber.objects.filter(pk=leaving.pk).exists()
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert [m.to[0] for m in mail.outbox] == [staying.email]


def test_a_send_with_no_audience_is_done_at_once():
    mailing = plan(PublishedPostFactory())
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert not mailing.batches.exists()


@pytest.mark.parametrize(
    "leaving",
    [{"status": "unsubscribed"}, {"paused_at": timezone.now()}],
    ids=["unsubscribes", "pauses"],
)
def test_reader_who_leaves_after_planning_is_skipped(audience, leaving):
    mailing = plan(PublishedPostFactory())
    leaver = audience["confirmed"][0]
    Subscriber.objects.filter(pk=leaver.pk).update(**leaving)
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert leaver.email not in [m.to[0] for m in mail.outbox]
    assert len(mail.outbox) == 2
    assert mailing.deliveries.get(subscriber=leaver).status == Delivery.Status.SKIPPED


def test_a_reader_who_erases_their_data_while_their_batch_is_sent_stays_counted(
    audience, monkeypatch
):
    """Their email went out, and their ledger row went with their data before the
    worker wrote that it had: the batch said 2 sent of 3, and 1 skipped (never
    sent), to the reader who had it."""
    mailing = plan(PublishedPostFactory())
    leaving = audience["confirmed"][0]
    hand_over = sender._hand_over

    def erased_meanwhile(*args):
        handed_over = hand_over(*args)
        subscriptions.subscriber_delete(subscriber=leaving)
        return handed_over

    monkeypatch.setattr(sender, "_hand_over", erased_meanwhile)
    delivery.batch_send(batch_id=mailing.batches.get().pk)

    assert len(mail.outbox) == 3
    batch = mailing.batches.get()
    assert (batch.status, batch.size, batch.sent, batch.failed) == (
        Batch.Status.DONE,
        3,
        3,
        0,
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_reader_erasing_as_the_worker_writes_their_email_went_stays_counted(
    audience, monkeypatch
):
    """The erasure counted the reader's row as it read before the worker wrote it
    (queued: not counted), and took it after (sent): counted by neither, the batch
    said 2 sent of 3 once it was counted again."""
    monkeypatch.setattr(planner, "_ring", lambda batch_ids: None)  # sent below
    mailing = plan(PublishedPostFactory())
    leaving = audience["confirmed"][0]
    answered, recorded, erasing, erased = (threading.Event() for _ in range(4))
    worker_goes_on, erasure_goes_on = threading.Event(), threading.Event()
    record, close = sender.record_outcomes, sender.close_batch

    def answered_then_wait(*args, **kwargs):
        answered.set()
        worker_goes_on.wait(timeout=10)
        record(*args, **kwargs)

    def recorded_then_close_once_erased(*args, **kwargs):
        recorded.set()
        erased.wait(timeout=10)
        return close(*args, **kwargs)

    def at_the_readers_own_row(sender, instance, **kwargs) -> None:
        erasing.set()  # their rows counted, not deleted yet
        erasure_goes_on.wait(timeout=10)

    monkeypatch.setattr(sender, "record_outcomes", answered_then_wait)
    monkeypatch.setattr(sender, "close_batch", recorded_then_close_once_erased)
    pre_delete.connect(at_the_readers_own_row, sender=Subscriber)
    answers = []
    try:
        worker = in_a_thread(
            lambda: delivery.batch_send(batch_id=mailing.batches.get().pk), answers
        )
        assert answered.wait(timeout=10)

        def erase() -> None:
            subscriptions.subscriber_delete(subscriber=leaving)
            erased.set()

        eraser = in_a_thread(erase, answers)
        assert erasing.wait(timeout=10)
        worker_goes_on.set()
        deadline = time.monotonic() + 10
        while not (recorded.is_set() or another_connection_waits_for_a_lock()):
            assert time.monotonic() < deadline, "the worker neither wrote nor waited"
            time.sleep(0.05)
        erasure_goes_on.set()
        eraser.join(timeout=10)
        worker.join(timeout=10)
    finally:
        pre_delete.disconnect(at_the_readers_own_row, sender=Subscriber)

    assert answers == [None, None]
    assert len(mail.outbox) == 3
    batch = mailing.batches.get()
    assert (batch.status, batch.size, batch.sent) == (Batch.Status.DONE, 3, 3)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_reader_erasing_as_the_worker_counts_their_batch_is_counted_once(
    audience, monkeypatch
):
    """The worker counted the reader's row as sent, then waited for the batch's
    row, which the erasure held having counted them among its erased: the batch
    added both, and said 4 sent of 3 until it was counted again."""
    monkeypatch.setattr(planner, "_ring", lambda batch_ids: None)  # sent below
    mailing = plan(PublishedPostFactory())
    leaving = audience["confirmed"][0]
    close = sender.close_batch
    counting = []

    def close_as_the_erasure_commits(*args, **kwargs):
        if counting:  # the batch counted again: not this race
            return close(*args, **kwargs)
        counting.append(True)
        return as_erasure_commits(leaving, lambda: close(*args, **kwargs))

    monkeypatch.setattr(sender, "close_batch", close_as_the_erasure_commits)
    delivery.batch_send(batch_id=mailing.batches.get().pk)

    assert len(mail.outbox) == 3
    assert not Subscriber.objects.filter(pk=leaving.pk).exists()
    batch = mailing.batches.get()
    assert (batch.status, batch.size, batch.sent, batch.erased_sent) == (
        Batch.Status.DONE,
        3,
        3,
        1,
    )
    sent_in_the_ledger = mailing.deliveries.filter(status=Delivery.Status.SENT)
    assert batch.sent == sent_in_the_ledger.count() + batch.erased_sent
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_reader_who_stops_following_the_posts_topic_after_planning_is_skipped():
    """Planned while they followed the post's topic (the send waited: paused, a
    backlog, the sending budget), they chose another before their batch went."""
    moved_on = SubscriberFactory(email="moved-on@example.org")
    SubscriberTopic.objects.create(
        subscriber=moved_on, kind="category", value="local-inspections"
    )
    everything = SubscriberFactory(email="everything@example.org")
    post = PublishedPostFactory()
    post.categories.add(CategoryFactory(slug="local-inspections"))
    mailing = plan(post)
    assert mailing.deliveries.count() == 2
    subscriptions.topics_set(subscriber=moved_on, topics=["category:youth-justice"])
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert [m.to[0] for m in mail.outbox] == [everything.email]
    row = mailing.deliveries.get(subscriber=moved_on)
    assert (row.status, row.error) == (
        Delivery.Status.SKIPPED,
        "stopped following it as published before sending",
    )


@pytest.fixture(params=["batch", "single"])
def mode(request, settings, fake_esp):
    """Each provider test runs with Postmark's batch API and one message each."""
    settings.NEWSLETTER_DELIVERY_MODE = "auto" if request.param == "batch" else "single"
    return request.param


def test_sends_through_anymail_to_the_provider_api(fake_esp, mode, audience):
    mailing = plan(PublishedPostFactory(title="Wales: Good, with caveats"))
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    calls = {"batch": 1, "single": 3}[mode]
    assert fake_esp.stats()["accepted_requests"] == calls
    links = set()
    for message in postmark_messages(fake_esp.messages):
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert headers["List-Unsubscribe"].startswith(
            "<http://127.0.0.1:8000/unsubscribe/"
        )
        links.add(headers["List-Unsubscribe"])
    assert len(links) == 3
    ids = set(mailing.deliveries.values_list("esp_message_id", flat=True))
    assert len(ids) == 3 and "" not in ids


def test_postmark_bodies_carry_each_readers_own_links_in_both_modes(
    client, fake_esp, mode, audience
):
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    messages = postmark_messages(fake_esp.messages)
    assert sorted(m["To"] for m in messages) == sorted(
        s.email for s in audience["confirmed"]
    )
    for message in messages:
        text, html = message["TextBody"], message["HtmlBody"]
        assert "{{" not in text + html and "pm:unsubscribe" not in text + html
        links = {
            kind: next(w for w in text.split() if w.startswith(f"{SITE}/{kind}/"))
            for kind in ("unsubscribe", "preferences")
        }
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe"] == f"<{links['unsubscribe']}>"
        assert all(link in html for link in links.values())
        centre = client.get(links["preferences"].removeprefix(SITE))
        assert centre.status_code == 200
        assert message["To"] in centre.content.decode()
    # The body's unsubscribe link is the reader's own, not Postmark's.
    leaver = messages[0]
    link = next(w for w in leaver["TextBody"].split() if "/unsubscribe/" in w)
    assert client.post(link.removeprefix(SITE)).status_code == 200
    assert set(
        Subscriber.objects.filter(status=Subscriber.Status.UNSUBSCRIBED).values_list(
            "email", flat=True
        )
    ) == {audience["unsubscribed"].email, leaver["To"]}


def test_a_long_post_goes_to_postmark_in_as_many_calls_as_its_copies_need(
    fake_esp, audience, monkeypatch
):
    # Postmark refuses a batch call over 50 MB; here over 150 KB, so that the
    # three readers' copies of a ~60 KB post cannot go in one call.
    fake_esp.postmark_batch_bytes = 150_000
    monkeypatch.setattr(sender, "POSTMARK_BATCH_BYTES", 150_000)
    paragraph = "The inspectors found caseloads too high in every team. " * 10
    mailing = plan(PublishedPostFactory(body="\n\n".join([paragraph] * 50)))
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    assert fake_esp.stats()["accepted_requests"] == 2
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


def test_provider_5xx_releases_the_batch_for_a_retry_without_duplicates(
    fake_esp, mode, audience
):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED
    assert fake_esp.count == 0
    assert mailing.deliveries.filter(status=Delivery.Status.QUEUED).count() == 3
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


def test_reader_the_provider_refuses_is_failed_and_the_others_sent(
    fake_esp, mode, audience
):
    mailing = plan(PublishedPostFactory())
    refused, *others = audience["confirmed"]
    fake_esp.mark_inactive(refused.email)  # it hard-bounced at Postmark before
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.recipients() == {s.email: 1 for s in others}
    failed = mailing.deliveries.get(subscriber=refused)
    assert failed.status == Delivery.Status.FAILED
    assert failed.error == "provider: rejected"
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 2
    batch = mailing.batches.get()
    assert (batch.status, batch.sent, batch.failed) == (Batch.Status.DONE, 2, 1)
    mailing.refresh_from_db()
    assert (mailing.status, mailing.consecutive_failures) == (Mailing.Status.DONE, 0)


@pytest.mark.parametrize(
    "refusal",
    [
        {"ErrorCode": 405, "Message": "Not allowed to send: out of credits."},
        {"ErrorCode": 400, "Message": "The 'From' address is not a Sender Signature."},
        {"ErrorCode": 300, "Message": "Invalid 'From' address: 'news@example'."},
    ],
)
def test_the_provider_refusing_the_message_not_the_reader_fails_nobody(
    fake_esp, mode, audience, monkeypatch, refusal
):
    """Postmark refusing a message for the sender's fault (credits spent, a From
    it does not know: the same error for every reader) fails none of them: the
    batch waits for its retry, as after any error answer, counted by the breaker."""
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    monkeypatch.setattr(fake_esp, "_postmark_message", lambda *_: dict(refusal))
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    assert not mailing.deliveries.exclude(status=Delivery.Status.QUEUED).exists()
    batch.refresh_from_db()
    assert (batch.status, batch.failed) == (Batch.Status.QUEUED, 0)
    mailing.refresh_from_db()
    assert mailing.consecutive_failures == 1
    monkeypatch.undo()
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


def test_readers_whose_message_the_provider_took_are_sent_beside_one_it_refused(
    fake_esp, mode, audience, monkeypatch
):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    first, refused, _ = audience["confirmed"]
    answer = fake_esp._postmark_message

    def refusing(message, *args):
        if message["To"] == refused.email:
            return {"ErrorCode": 405, "Message": "Not allowed to send."}
        return answer(message, *args)

    monkeypatch.setattr(fake_esp, "_postmark_message", refusing)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    monkeypatch.undo()
    assert mailing.deliveries.get(subscriber=refused).status == Delivery.Status.QUEUED
    assert mailing.deliveries.get(subscriber=first).status == Delivery.Status.SENT
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 3


def test_rate_limited_by_the_provider_is_retried_after_its_retry_after(
    fake_esp, mode, audience
):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(rate_limit_next=1, retry_after_s=7)
    with pytest.raises(delivery.ProviderUnavailable) as raised:
        delivery.batch_send(batch_id=batch.pk)
    assert 7 <= raised.value.countdown <= 8
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}


def test_connection_dropped_after_the_request_leaves_the_batch_uncertain_never_resent(
    fake_esp, audience
):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(drop_after_accept_next=1)
    delivery.batch_send(batch_id=batch.pk)  # nothing to retry: all of it is uncertain
    batch.refresh_from_db()
    assert batch.status == Batch.Status.UNCERTAIN
    assert batch.uncertain == 3
    assert mailing.deliveries.filter(status=Delivery.Status.UNCERTAIN).count() == 3
    delivery.batch_send(batch_id=batch.pk)
    delivery.mailings_reap()
    # The provider did take it, and nobody resent it blindly.
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_the_providers_events_before_its_lost_answer_is_recorded_settle_the_batch(
    client, settings, fake_esp, audience, monkeypatch
):
    """The provider took the batch, delivered it and told of each message by its
    webhook while the worker still waited for the answer, which was then lost.
    The events prove it took them: the readers are sent, the batch is done, the
    post's report adds up, the bounced address is suppressed, and no one is
    sent a second copy."""
    post = PublishedPostFactory()
    mailing = plan(post)
    batch = mailing.batches.get()
    fake_esp.set_faults(drop_after_accept_next=1)
    hand_over = sender._hand_over

    def reported_before_the_answer_is_recorded(batch, recipients):
        answered = hand_over(batch, recipients)
        delivered, bounced, complained = fake_esp.deliveries()
        provider_reports(client, settings, postmark_delivery(), delivered)
        provider_reports(client, settings, postmark_bounce(), bounced)
        provider_reports(client, settings, postmark_complaint(), complained)
        return answered

    monkeypatch.setattr(sender, "_hand_over", reported_before_the_answer_is_recorded)
    delivery.batch_send(batch_id=batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.uncertain) == (Batch.Status.DONE, 3, 0)
    assert set(mailing.deliveries.values_list("status", "error")) == {
        (Delivery.Status.SENT, "confirmed by the provider's event about it")
    }
    report = post_report(post)
    assert (report["accepted"], report["uncertain"]) == (3, 0)
    assert (report["delivered"], report["bounced_hard"], report["complained"]) == (
        2,
        1,
        1,
    )
    assert Suppression.objects.count() == 2
    delivery.mailings_reap()
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}


def test_the_providers_event_before_a_worker_died_settles_its_reader_when_reaped(
    client, settings, fake_esp, audience
):
    """The worker handed a reader over and died before writing the answer; the
    provider's event about that reader's message came first. When the reaper
    finds the batch, that reader is sent, not uncertain: the author is left to
    settle only the readers nothing is known of."""
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    taken = mailing.deliveries.order_by("pk").first()
    handed_over = SimpleNamespace(
        message_id="answer-never-written",
        metadata={"delivery": str(taken.pk)},
        address=taken.subscriber.email,
    )
    provider_reports(client, settings, postmark_delivery(), handed_over)

    assert delivery.mailings_reap()["stale_claims"] == 1
    taken.refresh_from_db()
    assert (taken.status, taken.last_event) == (Delivery.Status.SENT, "delivered")
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.uncertain) == (
        Batch.Status.UNCERTAIN,
        1,
        2,
    )
    assert fake_esp.count == 0  # never resent blindly


def test_one_message_mode_drop_marks_only_that_message_uncertain(
    fake_esp, settings, audience
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(drop_after_accept_next=1)
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=batch.pk)
    uncertain = mailing.deliveries.get(status=Delivery.Status.UNCERTAIN)
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    uncertain.refresh_from_db()
    assert uncertain.status == Delivery.Status.UNCERTAIN
    batch.refresh_from_db()
    assert batch.status == Batch.Status.UNCERTAIN
    assert (batch.sent, batch.uncertain) == (2, 1)
    # The attempt that went well keeps the reason the batch is uncertain, for
    # whoever reviews it.
    assert "Error posting to" in batch.last_error


@pytest.mark.parametrize(
    ("fault", "then"),
    [
        # The provider refused the second: it waits for the retry, as the third.
        ("fail_5xx_next", (1, 0, 2)),
        # The answer for the second was lost: it may have been taken.
        ("drop_after_accept_next", (1, 1, 1)),
    ],
)
def test_one_message_mode_error_midway_keeps_what_went_before(
    fake_esp, settings, audience, fault, then
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(faults_after=1, **{fault: 1})
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=batch.pk)
    statuses = [Delivery.Status.SENT, Delivery.Status.UNCERTAIN, Delivery.Status.QUEUED]
    assert tuple(mailing.deliveries.filter(status=s).count() for s in statuses) == then
    delivery.batch_send(batch_id=batch.pk)
    assert fake_esp.recipients() == {s.email: 1 for s in audience["confirmed"]}
    assert not mailing.deliveries.filter(status=Delivery.Status.QUEUED).exists()


def test_a_batchs_error_keeps_no_address_of_a_reader_who_erased_their_data(
    smtp, audience
):
    """The batch keeps why its last attempt went wrong for the desk, and an SMTP
    server's reply names the address it deferred: it outlived the reader's
    erasure."""
    deferred = audience["confirmed"][0]
    smtp.refused[deferred.email] = (
        f"452 4.2.2 <{deferred.email}>: Mailbox full".encode()
    )
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=batch.pk)

    subscriptions.subscriber_delete(subscriber=deferred)

    batch.refresh_from_db()
    assert "Mailbox full" in batch.last_error
    assert deferred.email not in batch.last_error


def test_provider_unreachable_is_retried(settings, audience):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    # Port 9 (discard) is closed here: the connection is refused before any request.
    settings.ANYMAIL = {
        "POSTMARK_API_URL": "http://127.0.0.1:9/",
        "POSTMARK_SERVER_TOKEN": "x",
    }
    mailing = plan(PublishedPostFactory())
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert mailing.deliveries.filter(status=Delivery.Status.QUEUED).count() == 3


def test_over_smtp_a_reader_refused_for_good_fails_and_the_others_go_out(
    smtp, audience
):
    refused, *others = audience["confirmed"]
    smtp.refused[refused.email] = b"550 5.1.1 No such user"
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert sorted(smtp.recipients) == sorted(s.email for s in others)
    failed = mailing.deliveries.get(subscriber=refused)
    assert failed.status == Delivery.Status.FAILED
    assert failed.error == "provider: rejected (550 5.1.1 No such user)"
    batch = mailing.batches.get()
    assert (batch.status, batch.sent, batch.failed) == (Batch.Status.DONE, 2, 1)
    mailing.refresh_from_db()
    assert (mailing.status, mailing.consecutive_failures) == (Mailing.Status.DONE, 0)


def test_over_smtp_a_reader_deferred_waits_for_the_retry_and_the_others_go_out(
    smtp, audience
):
    deferred, *others = audience["confirmed"]
    smtp.refused[deferred.email] = b"452 4.2.2 Mailbox full"
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    with pytest.raises(delivery.RetryLater) as raised:
        delivery.batch_send(batch_id=batch.pk)
    assert not isinstance(raised.value, delivery.ProviderUnavailable)
    assert sorted(smtp.recipients) == sorted(s.email for s in others)
    assert mailing.deliveries.get(subscriber=deferred).status == Delivery.Status.QUEUED
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED
    mailing.refresh_from_db()
    assert mailing.consecutive_failures == 0  # the provider is fine; one reader waits
    del smtp.refused[deferred.email]
    delivery.batch_send(batch_id=batch.pk)  # the task's retry
    assert sorted(smtp.recipients) == sorted(s.email for s in audience["confirmed"])
    batch.refresh_from_db()
    assert (batch.status, batch.sent) == (Batch.Status.DONE, 3)


def test_over_smtp_a_reader_deferred_for_days_fails_at_last(smtp, audience):
    deferred, *others = audience["confirmed"]
    smtp.refused[deferred.email] = b"452 4.2.2 Mailbox full"
    mailing = plan(PublishedPostFactory())
    started = timezone.now() - delivery.MAX_DEFERRAL - timedelta(minutes=1)
    Mailing.objects.filter(pk=mailing.pk).update(created_at=started)
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert sorted(smtp.recipients) == sorted(s.email for s in others)
    failed = mailing.deliveries.get(subscriber=deferred)
    assert failed.status == Delivery.Status.FAILED
    assert failed.error == "provider: deferred for over 4 days (452 4.2.2 Mailbox full)"
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_over_smtp_a_message_the_server_rejects_is_retried_never_uncertain(
    smtp, audience
):
    smtp.data_reply = b"554 5.7.1 Message refused"
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    assert smtp.recipients == []
    assert mailing.deliveries.filter(status=Delivery.Status.QUEUED).count() == 3
    mailing.refresh_from_db()
    assert mailing.consecutive_failures == 1
    smtp.data_reply = None
    delivery.batch_send(batch_id=batch.pk)
    assert sorted(smtp.recipients) == sorted(s.email for s in audience["confirmed"])


def test_reaper_frees_a_dead_workers_claim_and_never_resends_its_message(audience):
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    # An earlier attempt recorded one answer; the next worker claimed the batch
    # and died before recording the others: they may have gone out.
    first, *rest = mailing.deliveries.order_by("pk")
    Delivery.objects.filter(pk=first.pk).update(status=Delivery.Status.SENT)
    Batch.objects.filter(pk=batch.pk).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    counts = delivery.mailings_reap()
    assert counts["stale_claims"] == 1
    assert dict(mailing.deliveries.values_list("pk", "status")) == {
        first.pk: Delivery.Status.SENT,
        **{d.pk: Delivery.Status.UNCERTAIN for d in rest},
    }
    batch.refresh_from_db()
    assert (batch.status, batch.sent, batch.uncertain) == (Batch.Status.UNCERTAIN, 1, 2)
    assert mail.outbox == []  # nothing resent blindly


def test_reaper_leaves_a_fresh_claim_alone(audience):
    mailing = plan(PublishedPostFactory())
    Batch.objects.filter(mailing=mailing).update(status=Batch.Status.SENDING)
    assert delivery.mailings_reap() == {
        "stale_claims": 0,
        "batches_rung": 0,
        "batches_cancelled": 0,
        "mailings_rung": 0,
        "mailings_resumed": 0,
    }
    assert mail.outbox == []


def test_reaper_rings_again_for_a_batch_whose_doorbell_was_lost(audience):
    mailing = plan(PublishedPostFactory())
    Batch.objects.filter(mailing=mailing).update(
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1)
    )
    assert delivery.mailings_reap()["batches_rung"] == 1
    assert len(mail.outbox) == 3


def test_reaper_resumes_planning_whose_doorbell_was_lost(
    audience, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory()
    delivery.mailing_create_for_post(post=post)  # on_commit never runs: doorbell lost
    Mailing.objects.update(
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailings_reap()["mailings_rung"] == 1
    assert sorted(parseaddr(m.to[0])[1] for m in mail.outbox) == sorted(
        s.email for s in audience["confirmed"]
    )


def test_post_email_links_each_reader_to_their_own_preference_centre(
    client, publish, audience
):
    publish(PostFactory())
    message = mail.outbox[0]
    html = message.alternatives[0].content
    link = next(
        word
        for word in message.body.split()
        if word.startswith("http://127.0.0.1:8000/preferences/")
    )
    assert link in html
    page = client.get(link.removeprefix("http://127.0.0.1:8000"))
    assert page.status_code == 200
    assert message.to[0] in page.content.decode()


def test_a_tracking_event_finds_a_row_the_provider_gave_no_id_by_its_metadata(
    settings, audience
):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:secret"}
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    mailing = plan(PublishedPostFactory())
    row, other = mailing.deliveries.order_by("pk")[:2]
    Delivery.objects.filter(pk__in=[row.pk, other.pk]).update(
        status=Delivery.Status.SENT
    )
    event = {
        "RecordType": "Delivery",
        "MessageStream": "broadcast",
        "MessageID": "not-one-we-recorded",
        "Recipient": row.subscriber.email,
        "DeliveredAt": "2026-11-26T16:33:54Z",
        "Details": "",
        "Metadata": {"batch": str(row.batch_id), "delivery": str(row.pk)},
    }
    credentials = base64.b64encode(b"hook:secret").decode()
    for address in (other.subscriber.email, row.subscriber.email):
        # The first names another reader's address: it moves no row.
        response = Client().post(
            "/anymail/postmark/tracking/",
            json.dumps({**event, "Recipient": address}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Basic {credentials}",
        )
        assert response.status_code == 200
        assert not Delivery.objects.filter(pk=other.pk).exclude(last_event="").exists()
    row.refresh_from_db()
    assert row.last_event == "delivered"
