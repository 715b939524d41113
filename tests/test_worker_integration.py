"""The whole path on real parts: a real Celery worker on the configured broker
(Redis when REDIS_URL is set), the real database, anymail's Postmark backend, and a
local fake of Postmark's HTTP API as the only stand-in."""

import os
import re
import time
from datetime import timedelta

import pytest
from django.test import Client

from benchmarks.fake_esp import postmark_messages
from newsletter import delivery, digests
from newsletter.celery import app as celery_app
from newsletter.models import Batch, Delivery, Mailing, Subscriber, SubscriberTopic
from posts.models import Post

from .factories import SubscriberFactory, UserFactory, admin_post_form

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(fake_esp, start_test_worker):
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        import redis

        # Fails the test, loudly, when the Redis it was told to use is not there.
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        assert celery_app.conf.broker_url == redis_url
    with start_test_worker() as worker:
        yield worker


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {condition}; where each "
        f"mailing stood: {mailings_as_they_stand()}"
    )


def mailings_as_they_stand() -> list:
    """Each mailing and its batches, for a timed-out wait to say what was stuck."""
    return [
        (
            mailing.kind,
            mailing.status,
            list(
                mailing.batches.order_by("number").values_list(
                    "number", "status", "attempts", "sent", "uncertain", "last_error"
                )
            ),
        )
        for mailing in Mailing.objects.all()
    ]


def publish_in_admin(title: str, slug: str) -> Post:
    author = Client()
    author.force_login(UserFactory())
    response = author.post(
        "/admin/posts/post/add/",
        admin_post_form(
            title=title,
            slug=slug,
            excerpt="Inspectors found too many cases held by unqualified staff.",
            body="## What inspectors found\n\nRisk was **not managed well enough**.",
            status="published",
        ),
    )
    assert response.status_code == 302
    return Post.objects.get(slug=slug)


def mailing_is_done(post: Post):
    return lambda: Mailing.objects.filter(
        post=post, status=Mailing.Status.DONE
    ).exists()


def test_publishing_sends_each_confirmed_subscriber_exactly_one_message(
    worker, fake_esp, settings
):
    settings.NEWSLETTER_BATCH_SIZE = 7  # several batches, one worker
    confirmed = SubscriberFactory.create_batch(30)
    SubscriberFactory.create_batch(10, status=Subscriber.Status.PENDING)
    SubscriberFactory.create_batch(10, status=Subscriber.Status.UNSUBSCRIBED)

    post = publish_in_admin("Suffolk: a service under strain", "suffolk-under-strain")
    wait_for(mailing_is_done(post))

    assert fake_esp.recipients() == {s.email: 1 for s in confirmed}
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 30
    for message in postmark_messages(fake_esp.messages):
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert message["To"].count("@") == 1
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(
            r"<http://127\.0\.0\.1:8000/unsubscribe/\S+/>", headers["List-Unsubscribe"]
        )
        # The HTML's links go through the counting redirect (test_engagement.py).
        assert "http://127.0.0.1:8000/r/" in message["HtmlBody"]
        assert f"/posts/{post.slug}/" in message["TextBody"]


def test_reader_subscribes_confirms_and_gets_one_copy_then_unsubscribes(
    worker, fake_esp
):
    reader = Client()
    response = reader.post("/subscribe/", {"email": "sam@example.org", "name": "Sam"})
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    wait_for(lambda: fake_esp.recipients().get("sam@example.org") == 1)
    confirmation = fake_esp.messages[-1]["payload"]["TextBody"]
    confirm_url = re.search(
        r"http://127\.0\.0\.1:8000(/subscribe/confirm/\S+/)", confirmation
    )
    confirmed = reader.post(confirm_url[1])
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    wait_for(lambda: fake_esp.recipients().get("sam@example.org") == 2)
    assert fake_esp.messages[-1]["payload"]["Subject"] == "Welcome to On Probation"
    fake_esp.reset()

    post = publish_in_admin("Wales: unpaid work restarts", "wales-unpaid-work")
    wait_for(mailing_is_done(post))
    assert fake_esp.recipients() == {"sam@example.org": 1}

    message = postmark_messages(fake_esp.messages)[-1]
    headers = {h["Name"]: h["Value"] for h in message["Headers"]}
    one_click = (
        headers["List-Unsubscribe"].strip("<>").removeprefix("http://127.0.0.1:8000")
    )
    response = Client(enforce_csrf_checks=True).post(
        one_click, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert Subscriber.objects.get(email="sam@example.org").status == "unsubscribed"


def test_a_provider_outage_is_retried_by_the_worker_and_nobody_gets_two_copies(
    worker, fake_esp, settings
):
    settings.NEWSLETTER_BATCH_SIZE = 4
    confirmed = SubscriberFactory.create_batch(10)
    # Two 429s (Retry-After: 1 s), one 503, one dropped connection after accepting.
    fake_esp.set_faults(
        rate_limit_next=2, retry_after_s=1, fail_5xx_next=1, drop_after_accept_next=1
    )
    post = publish_in_admin("Kent: a service recovering", "kent-recovering")
    wait_for(mailing_is_done(post))

    assert fake_esp.recipients() == {s.email: 1 for s in confirmed}
    mailing = Mailing.objects.get(post=post)
    uncertain = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    assert uncertain.deliveries.filter(status=Delivery.Status.UNCERTAIN).exists()
    assert (
        mailing.deliveries.filter(status=Delivery.Status.SENT).count()
        + (uncertain.uncertain)
        == 10
    )


def test_a_worker_with_threads_sends_one_message_batches_side_by_side_once_each(
    fake_esp, settings, start_test_worker
):
    """One message per reader is paced by the provider's round trip; a worker with
    a pool of threads waits on several batches at once (docs/delivery.md)."""
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    settings.NEWSLETTER_BATCH_SIZE = 3
    fake_esp.set_faults(latency_ms=100)  # a provider some way off
    confirmed = SubscriberFactory.create_batch(24)
    with start_test_worker(pool="threads", concurrency=4):
        post = publish_in_admin("Durham: a thread pool", "durham-thread-pool")
        wait_for(mailing_is_done(post))

    assert fake_esp.recipients() == {s.email: 1 for s in confirmed}
    assert fake_esp.stats()["most_in_flight"] > 1
    mailing = Mailing.objects.get(post=post)
    assert mailing.batches.filter(status=Batch.Status.DONE).count() == 8
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 24


def test_a_digest_round_reaches_each_reader_once_in_batches(worker, fake_esp, settings):
    settings.NEWSLETTER_BATCH_SIZE = 7  # three batches of digests, one call each
    # Due from midnight, so the round is theirs whatever the hour the test runs.
    readers = SubscriberFactory.create_batch(20, digest_hour=0)
    SubscriberTopic.objects.bulk_create(
        SubscriberTopic(subscriber=s, kind="everything", frequency="daily")
        for s in readers
    )
    post = publish_in_admin("Durham: a digest round", "durham-digest-round")
    assert fake_esp.recipients() == {}  # digest readers wait for their round

    # The next slot: a round holds the posts announced by its slot.
    slot = digests.slot_of(post.announced_at) + timedelta(minutes=digests.SLOT_MINUTES)
    mailing = delivery.mailing_create_for_digest(frequency="daily", slot=slot)
    wait_for(
        lambda: Mailing.objects.filter(
            pk=mailing.pk, status=Mailing.Status.DONE
        ).exists()
    )

    assert fake_esp.recipients() == {s.email: 1 for s in readers}
    assert fake_esp.stats()["accepted_requests"] == 3
    assert mailing.deliveries.filter(status=Delivery.Status.SENT).count() == 20
    for message in postmark_messages(fake_esp.messages):
        assert f"/posts/{post.slug}/" in message["TextBody"]
