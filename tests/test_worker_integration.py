"""The whole path on real parts: a real Celery worker on the configured broker
(Redis when REDIS_URL is set), the real database, anymail's Postmark backend, and a
local fake of Postmark's HTTP API as the only stand-in."""

import os
import re
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.test import Client

from newsletter import delivery
from newsletter.celery import app as celery_app
from newsletter.models import Delivery, Send, Subscriber
from posts.models import Post

from .factories import EMPTY_INLINES, SubscriberFactory, UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(fake_esp):
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        import redis

        # Fails the test, loudly, when the Redis it was told to use is not there.
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
        assert celery_app.conf.broker_url == redis_url
    celery_app.control.purge()  # tasks left by an earlier run name rows gone now
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {condition}")


def publish_in_admin(title: str, slug: str) -> Post:
    author = Client()
    author.force_login(UserFactory())
    response = author.post(
        "/admin/posts/post/add/",
        {
            "title": title,
            "slug": slug,
            "excerpt": "Inspectors found too many cases held by unqualified staff.",
            "body": "## What inspectors found\n\nRisk was **not managed well enough**.",
            "status": "published",
            "published_at_0": "",
            "published_at_1": "",
            "email_subscribers": "on",
            **EMPTY_INLINES,
        },
    )
    assert response.status_code == 302
    return Post.objects.get(slug=slug)


def send_is_done(post: Post):
    return lambda: Send.objects.filter(post=post, status=Send.Status.DONE).exists()


def test_publishing_sends_each_confirmed_subscriber_exactly_one_message(
    worker, fake_esp, monkeypatch
):
    monkeypatch.setattr(delivery, "BATCH_SIZE", 7)  # several batches, one worker
    confirmed = SubscriberFactory.create_batch(30)
    SubscriberFactory.create_batch(10, status=Subscriber.Status.PENDING)
    SubscriberFactory.create_batch(10, status=Subscriber.Status.UNSUBSCRIBED)

    post = publish_in_admin("Suffolk: a service under strain", "suffolk-under-strain")
    wait_for(send_is_done(post))

    assert fake_esp.recipients() == {s.email: 1 for s in confirmed}
    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 30
    for stored in fake_esp.messages:
        message = stored["payload"]
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        assert message["To"].count("@") == 1
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert re.fullmatch(
            r"<http://127\.0\.0\.1:8000/unsubscribe/\S+/>", headers["List-Unsubscribe"]
        )
        assert f"/posts/{post.slug}/" in message["HtmlBody"]
        assert f"/posts/{post.slug}/" in message["TextBody"]


def test_reader_subscribes_confirms_and_gets_one_copy_then_unsubscribes(
    worker, fake_esp
):
    reader = Client()
    response = reader.post("/subscribe/", {"email": "sam@example.org", "name": "Sam"})
    assert response.status_code == 200
    wait_for(lambda: fake_esp.recipients().get("sam@example.org") == 1)
    confirmation = fake_esp.messages[-1]["payload"]["TextBody"]
    confirm_url = re.search(
        r"http://127\.0\.0\.1:8000(/subscribe/confirm/\S+/)", confirmation
    )
    assert reader.post(confirm_url[1]).status_code == 200
    fake_esp.reset()

    post = publish_in_admin("Wales: unpaid work restarts", "wales-unpaid-work")
    wait_for(send_is_done(post))
    assert fake_esp.recipients() == {"sam@example.org": 1}

    message = fake_esp.messages[-1]["payload"]
    headers = {h["Name"]: h["Value"] for h in message["Headers"]}
    one_click = (
        headers["List-Unsubscribe"].strip("<>").removeprefix("http://127.0.0.1:8000")
    )
    response = Client(enforce_csrf_checks=True).post(
        one_click, "List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert Subscriber.objects.get(email="sam@example.org").status == "unsubscribed"
