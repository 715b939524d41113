"""Batch mode: one provider call per batch, personalised per recipient, in a fixed
number of database queries whatever the batch size."""

import gc
import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.utils import timezone

from benchmarks.fake_esp import postmark_bulk_copy, postmark_messages
from newsletter import delivery, engagement, subscriptions
from newsletter.models import Batch, Delivery, Mailing, Subscriber
from newsletter.tokens import Purpose, read_token

from .factories import PublishedPostFactory, taken_down_once_its_readers_are_read

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def readers(count: int) -> list[Subscriber]:
    return Subscriber.objects.bulk_create(
        Subscriber(email=f"reader{i}@example.org", status=Subscriber.Status.ACTIVE)
        for i in range(count)
    )


def plan(post) -> Mailing:
    delivery.mailing_create_for_post(post=post)
    mailing = Mailing.objects.get(post=post)
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    mailing.refresh_from_db()
    return mailing


@pytest.mark.parametrize("mode", ["auto", "single"])
def test_a_mailing_goes_on_the_broadcast_stream_and_a_confirmation_does_not(
    fake_esp, settings, on_commit, mode
):
    # Postmark keeps bulk mail apart from the mail a reader asked for (its
    # terms require it): a message naming no stream goes on "outbound".
    settings.NEWSLETTER_DELIVERY_MODE = mode
    settings.NEWSLETTER_POSTMARK_BROADCAST_STREAM = "newsletter"
    readers(3)
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    on_commit(subscriptions.subscription_request, email="new@example.org")
    streams = {
        message["To"]: message.get("MessageStream", "outbound")
        for message in postmark_messages(fake_esp.messages)
    }
    assert streams == {
        "reader0@example.org": "newsletter",
        "reader1@example.org": "newsletter",
        "reader2@example.org": "newsletter",
        "new@example.org": "outbound",
    }


def test_postmark_batch_is_one_call_with_each_readers_own_one_click_link(fake_esp):
    audience = readers(12)
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.stats()["accepted_requests"] == 1
    assert fake_esp.recipients() == {s.email: 1 for s in audience}
    for message in postmark_messages(fake_esp.messages):
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        token = re.fullmatch(r"<http://127\.0\.0\.1:8000/unsubscribe/(\S+)/>",
                             headers["List-Unsubscribe"])[1]  # fmt: skip
        assert read_token(token, Purpose.UNSUBSCRIBE).email == message["To"]
    sent = mailing.deliveries.filter(status=Delivery.Status.SENT)
    assert sent.count() == 12
    assert len(set(sent.values_list("esp_message_id", flat=True))) == 12


def test_mailgun_batch_personalises_bodies_and_headers_through_recipient_variables(
    mailgun,
):
    audience = readers(5)
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert mailgun.stats()["accepted_requests"] == 1
    assert mailgun.recipients() == {s.email: 1 for s in audience}
    payload = mailgun.messages[0]["payload"]
    assert "%recipient.unsubscribe_url%" in payload["text"]
    assert "%recipient.unsubscribe_url%" in payload["html"]
    variables = json.loads(payload["recipient-variables"])
    for reader in audience:
        url = variables[reader.email]["unsubscribe_url"]
        token = url.removeprefix("http://127.0.0.1:8000/unsubscribe/").strip("/")
        assert read_token(token, Purpose.UNSUBSCRIBE) == reader
        (received,) = mailgun.deliveries(address=reader.email)
        assert received.headers["List-Unsubscribe"] == f"<{url}>"
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 5


def test_postmark_bulk_api_sends_the_content_once_with_each_readers_own_links(
    settings, fake_esp
):
    settings.ANYMAIL = {**fake_esp.postmark_settings(), "POSTMARK_USE_BULK_API": True}
    audience = readers(4)
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.stats()["accepted_requests"] == 1
    assert fake_esp.recipients() == {s.email: 1 for s in audience}
    payload = fake_esp.messages[0]["payload"]
    assert "{{unsubscribe_url}}" in payload["HtmlBody"]
    assert "{{unsubscribe_url}}" in payload["TextBody"]
    for message in payload["Messages"]:
        url = message["TemplateModel"]["unsubscribe_url"]
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert headers["List-Unsubscribe"] == f"<{url}>"
        token = url.removeprefix("http://127.0.0.1:8000/unsubscribe/").strip("/")
        assert read_token(token, Purpose.UNSUBSCRIBE).email == message["To"]
    sent = mailing.deliveries.filter(status=Delivery.Status.SENT)
    assert sent.count() == 4
    assert "" not in set(sent.values_list("esp_message_id", flat=True))


AUTHORS_BRACES = "Templates {{ like this }}, {{name}} and {{{raw}}} stay {{"


def test_postmark_bulk_api_gives_the_authors_braces_as_written_and_readers_links(
    settings, fake_esp
):
    """Postmark's bulk API reads the subject and bodies as Mustachio templates:
    the author's own braces must reach the reader as written, not be filled in
    (with nothing) as fields, while each reader's own links still are."""
    settings.ANYMAIL = {**fake_esp.postmark_settings(), "POSTMARK_USE_BULK_API": True}
    (reader,) = readers(1)
    post = PublishedPostFactory(
        title=f"Title {AUTHORS_BRACES}", body=f"Body {AUTHORS_BRACES}"
    )
    mailing = plan(post)
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    subject, text, html = bulk_copy_received(fake_esp, reader.email)
    assert subject == f"Title {AUTHORS_BRACES}"
    assert f"Body {AUTHORS_BRACES}" in text
    assert f"Body {AUTHORS_BRACES}" in html
    [unsubscribe] = re.findall(r"/unsubscribe/([^/]+)/", text)
    assert read_token(unsubscribe, Purpose.UNSUBSCRIBE) == reader


# One message each, 10 and 50 readers are one lane, 100 two.
@pytest.mark.parametrize("batch_size", [10, 50, 100])
@pytest.mark.parametrize("esp", ["postmark", "mailgun", "one message each"])
def test_database_queries_per_batch_stay_at_six_whatever_the_batch_size(
    request,
    settings,
    fake_esp,
    monkeypatch,
    django_assert_max_num_queries,
    batch_size,
    esp,
):
    if esp == "mailgun":
        request.getfixturevalue("mailgun")
    if esp == "one message each":
        # A backend that takes a message per reader (SMTP's way), not Postmark's.
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # A slow machine's second would add a read of the mailing, once a second
    # whatever the batch size: not what is counted here.
    monkeypatch.setattr(delivery.sender, "HOLD_READ_SECONDS", 3600)
    settings.NEWSLETTER_BATCH_SIZE = batch_size
    readers(batch_size * 3)
    mailing = plan(PublishedPostFactory())
    first, second, third = mailing.batches.order_by("number")
    # A worker renders the post once per mailing, on its first batch: the post with
    # its inspection, related posts and sponsor, a fixed number of reads, and its
    # links for the counting redirect (two statements, engagement.LinkTracker).
    with django_assert_max_num_queries(6 + 15 + 2):
        delivery.batch_send(batch_id=first.pk)
    # Claim, load, read the readers, whether the mailing still goes out and its post
    # is on the site before the first call, record the outcomes, close.
    with django_assert_max_num_queries(6):
        delivery.batch_send(batch_id=second.pk)
    assert fake_esp.count + len(mail.outbox) == batch_size * 2
    # The last batch also closes the mailing: its row locked, then the update, in
    # a transaction of their own (a savepoint and its release here, in the test's).
    with django_assert_max_num_queries(6 + 2 + 2):
        delivery.batch_send(batch_id=third.pk)
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE
    assert fake_esp.count + len(mail.outbox) == batch_size * 3


def test_one_message_mode_sends_one_message_each_over_one_connection(
    settings, fake_esp
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    audience = readers(4)
    mailing = plan(PublishedPostFactory())
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.stats()["accepted_requests"] == 4
    assert fake_esp.stats()["connections"] == 1
    assert fake_esp.recipients() == {s.email: 1 for s in audience}


def test_one_message_mode_sends_a_full_batch_over_several_connections_once_each(
    settings, fake_esp
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    audience = readers(delivery.SINGLE_MESSAGE_BATCH_SIZE)
    mailing = plan(PublishedPostFactory())
    fake_esp.set_faults(latency_ms=5)  # answers slow enough to be seen overlapping
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    stats = fake_esp.stats()
    assert stats["connections"] == delivery.SEND_LANES
    assert stats["most_in_flight"] > 1
    assert fake_esp.recipients() == {s.email: 1 for s in audience}
    ids = mailing.deliveries.filter(status=Delivery.Status.SENT).values_list(
        "esp_message_id", flat=True
    )
    assert len(set(ids)) == len(audience) and "" not in ids


def test_one_message_mode_sends_no_lane_a_post_taken_down_as_they_start(
    settings, fake_esp, monkeypatch
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    readers(delivery.SINGLE_MESSAGE_BATCH_SIZE)
    post = PublishedPostFactory()
    mailing = plan(post)
    taken_down_once_its_readers_are_read(monkeypatch, post)
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    assert fake_esp.count == 0
    assert set(mailing.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.QUEUED
    }


@pytest.mark.parametrize(
    ("fault", "uncertain"),
    [
        # Refused: that reader and the rest of their lane wait for the retry.
        ("fail_5xx_next", 0),
        # The answer was lost: that reader may have it, and is never resent.
        ("drop_after_accept_next", 1),
    ],
)
def test_one_message_mode_an_error_in_one_lane_sends_nobody_twice(
    settings, fake_esp, fault, uncertain
):
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    audience = readers(delivery.SINGLE_MESSAGE_BATCH_SIZE)
    mailing = plan(PublishedPostFactory())
    batch = mailing.batches.get()
    fake_esp.set_faults(faults_after=10, **{fault: 1})
    with pytest.raises(delivery.RetryLater):
        delivery.batch_send(batch_id=batch.pk)
    left = mailing.deliveries.filter(status=Delivery.Status.UNCERTAIN)
    assert left.count() == uncertain
    assert mailing.deliveries.filter(status=Delivery.Status.QUEUED).exists()
    delivery.batch_send(batch_id=batch.pk)
    assert not mailing.deliveries.filter(status=Delivery.Status.QUEUED).exists()
    # The provider took the one whose answer was lost: one copy each, all told.
    assert fake_esp.recipients() == {s.email: 1 for s in audience}


def test_batch_sizes_follow_the_provider(settings, fake_esp):
    readers(3)
    assert plan(PublishedPostFactory()).batch_size == delivery.POSTMARK_BATCH_SIZE
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    assert plan(PublishedPostFactory()).batch_size == delivery.MAILGUN_BATCH_SIZE
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert plan(PublishedPostFactory()).batch_size == delivery.SINGLE_MESSAGE_BATCH_SIZE


def test_planning_cuts_a_page_into_batches_and_counts_each(settings, monkeypatch):
    monkeypatch.setattr(delivery.planner, "PLANNING_PAGE_SIZE", 7)
    settings.NEWSLETTER_BATCH_SIZE = 3
    audience = readers(16)
    Subscriber.objects.filter(pk=audience[5].pk).update(status="unsubscribed")
    mailing = plan(PublishedPostFactory())
    # Pages of 7 readers, each cut into batches of 3: 3+3+1, 3+3+1, 1.
    sizes = list(mailing.batches.order_by("number").values_list("size", flat=True))
    assert sizes == [3, 3, 1, 3, 3, 1, 1]
    for batch in mailing.batches.all():
        assert batch.deliveries.count() == batch.size
    planned = set(mailing.deliveries.values_list("subscriber_id", flat=True))
    assert planned == {s.pk for s in audience} - {audience[5].pk}


def test_a_publish_reaches_everyone_once_across_many_batches(
    settings, django_capture_on_commit_callbacks
):
    settings.NEWSLETTER_BATCH_SIZE = 4
    audience = readers(10)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.mailing_create_for_post(post=PublishedPostFactory())
    assert sorted(m.to[0] for m in mail.outbox) == sorted(s.email for s in audience)
    assert not Batch.objects.exclude(status=Batch.Status.DONE).exists()
    assert Mailing.objects.get().status == Mailing.Status.DONE


def test_a_starting_worker_loads_the_url_configuration_before_its_first_batch():
    from django.urls import clear_url_caches, get_resolver

    from newsletter.celery import load_the_url_configuration  # on worker_init

    clear_url_caches()
    assert not get_resolver()._populated
    load_the_url_configuration()
    assert get_resolver()._populated


def test_a_starting_worker_freezes_what_start_up_made_out_of_the_collectors_reach():
    from newsletter.celery import freeze_what_start_up_made  # on worker_init

    gc.unfreeze()
    try:
        freeze_what_start_up_made()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_connection_from_task_to_task_while_young(
    monkeypatch,
):
    """Celery's Django fix-up closed the connection around every task, so each
    batch opened a new one; now a worker's tasks keep it for DATABASE_CONN_MAX_AGE,
    as web requests do (newsletter/celery.py)."""
    import time

    from celery.fixups.django import DjangoWorkerFixup
    from celery.signals import task_postrun, task_prerun
    from django.db import connection

    from newsletter.celery import app
    from newsletter.tasks import send_batch

    celery_fixup = DjangoWorkerFixup(app)  # as a starting worker installs it

    def a_task_runs() -> None:
        send_batch.push_request(is_eager=False)  # a worker's, not the caller's
        signal = {"sender": send_batch, "task_id": "1", "args": (), "kwargs": {}}
        try:
            celery_fixup.on_task_prerun(sender=send_batch)
            task_prerun.send(task=send_batch, **signal)
            assert not Batch.objects.exists()  # the task's query
            celery_fixup.on_task_postrun(sender=send_batch)
            task_postrun.send(task=send_batch, retval=None, state="SUCCESS", **signal)
        finally:
            send_batch.pop_request()

    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close()
    a_task_runs()
    kept = connection.connection
    a_task_runs()
    a_task_runs()
    assert kept is not None and connection.connection is kept

    connection.close_at = time.monotonic() - 1  # DATABASE_CONN_MAX_AGE has passed
    a_task_runs()
    assert connection.connection is not kept


def html_received(esp, provider: str, address: str) -> str:
    """The HTML part of one reader's copy, as the provider fills it in."""
    if provider.startswith("postmark"):
        return next(
            message["HtmlBody"]
            for message in postmark_messages(esp.messages)
            if message["To"] == address
        )
    payload = esp.messages[0]["payload"]
    html = payload["html"]
    for name, value in json.loads(payload["recipient-variables"])[address].items():
        html = html.replace(f"%recipient.{name}%", value)
    return html


@pytest.mark.parametrize("provider", ["postmark", "postmark-single", "mailgun"])
def test_a_batch_carries_the_reader_part_only_in_the_copy_of_a_reader_who_agreed(
    request, settings, provider
):
    """Per-reader engagement on: each reader's own part is filled into their
    copy's links (none for a reader who did not agree), by Mailgun in a batch, by
    our Postmark backend in a batch and in one-message mode."""
    esp = request.getfixturevalue("mailgun" if provider == "mailgun" else "fake_esp")
    if provider == "postmark-single":
        settings.NEWSLETTER_DELIVERY_MODE = "single"
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    agreed, other = readers(2)
    Subscriber.objects.filter(pk=agreed.pk).update(engagement_agreed_at=timezone.now())
    report = "https://www.justiceinspectorates.gov.uk/hmiprobation/suffolk/"
    mailing = plan(PublishedPostFactory(body=f"Read [the report]({report})."))
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    parts = {
        reader: set(
            re.findall(
                r'/r/[^"/?]+/(\?reader=[^"]*)?"',
                html_received(esp, provider, reader.email),
            )
        )
        for reader in (agreed, other)
    }
    assert parts == {
        agreed: {engagement.reader_parts([agreed.pk])[agreed.pk]},
        other: {""},
    }


def bulk_copy_received(esp, address: str) -> tuple[str, str, str]:
    """One reader's subject, text and HTML from Postmark's bulk API."""
    copy = postmark_bulk_copy(esp.messages[0]["payload"], address)
    return copy["Subject"], copy["TextBody"], copy["HtmlBody"]


def copy_received(esp, provider: str, address: str) -> tuple[str, str]:
    """One reader's copy, text and HTML, as the provider fills it in."""
    if provider == "postmark-bulk":
        return bulk_copy_received(esp, address)[1:]
    if provider.startswith("postmark"):
        message = next(m for m in postmark_messages(esp.messages) if m["To"] == address)
        return message["TextBody"], message["HtmlBody"]
    payload = esp.messages[0]["payload"]
    text, html = payload["text"], payload["html"]
    for name, value in json.loads(payload["recipient-variables"])[address].items():
        text = text.replace(f"%recipient.{name}%", value)
        html = html.replace(f"%recipient.{name}%", value)
    return text, html


@pytest.mark.parametrize(
    "provider", ["postmark", "postmark-single", "postmark-bulk", "mailgun"]
)
def test_a_posts_email_dates_the_post_in_each_readers_own_time_zone(
    request, settings, provider
):
    """Published at 00:30 on Tuesday 24 November in London, the post is of
    Monday the 23rd in Los Angeles, as a digest would date it there."""
    esp = request.getfixturevalue("mailgun" if provider == "mailgun" else "fake_esp")
    if provider == "postmark-single":
        settings.NEWSLETTER_DELIVERY_MODE = "single"
    if provider == "postmark-bulk":
        settings.ANYMAIL = {**settings.ANYMAIL, "POSTMARK_USE_BULK_API": True}
    london, los_angeles = readers(2)
    Subscriber.objects.filter(pk=los_angeles.pk).update(time_zone="America/Los_Angeles")
    published = datetime(2026, 11, 24, 0, 30, tzinfo=ZoneInfo("Europe/London"))
    mailing = plan(PublishedPostFactory(published_at=published))
    delivery.batch_send(batch_id=mailing.batches.get().pk)
    for reader, day in ((london, 24), (los_angeles, 23)):
        text, html = copy_received(esp, provider, reader.email)
        dated = f"{day} November 2026"
        assert text.startswith(f"On Probation · {dated}\n")
        assert re.findall(r"On Probation</a> · ([^<]+)<", html) == [dated]
