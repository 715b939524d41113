"""Each test names the attack it stops: abuse of the subscribe form, forged or
replayed links, header and markup injection, and the production settings."""

import pytest
from django.core import mail

from newsletter.celery import app as celery_app
from newsletter.models import Consent, Subscriber

from .factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def post_subscribe(client, email, *, ip="203.0.113.7", **extra):
    return client.post("/subscribe/", {"email": email, **extra}, REMOTE_ADDR=ip)


def queued_tasks() -> int:
    with celery_app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue="celery").message_count


@pytest.fixture
def broker_queue():
    """The real broker's queue, empty before the test and emptied after it."""
    celery_app.control.purge()
    yield
    celery_app.control.purge()


# Abuse of the subscribe form ------------------------------------------------------


@pytest.mark.usefixtures("celery_eager")
def test_subscription_bombing_of_one_address_is_stopped_and_writes_nothing(
    client, settings
):
    limit = settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS
    for n in range(limit):
        ip = f"198.51.100.{n + 1}"  # from many clients, so only the address limit bites
        assert post_subscribe(client, "victim@example.org", ip=ip).status_code == 200
    consents = Consent.objects.count()

    response = post_subscribe(client, "Victim@Example.org", ip="198.51.100.200")

    assert response.status_code == 429
    assert "Too many requests" in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert Consent.objects.count() == consents


@pytest.mark.usefixtures("celery_eager")
def test_one_client_filling_the_table_with_addresses_is_stopped(client, settings):
    limit = settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT
    for n in range(limit):
        assert post_subscribe(client, f"made-up-{n}@example.org").status_code == 200

    response = post_subscribe(client, "one-more@example.org")

    assert response.status_code == 429
    assert Subscriber.objects.count() == limit
    assert not Subscriber.objects.filter(email="one-more@example.org").exists()


def test_invalid_posts_count_against_the_client_too(client, settings):
    for _ in range(settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT):
        assert post_subscribe(client, "not-an-address").status_code == 400
    assert post_subscribe(client, "real@example.org").status_code == 429
    assert not Subscriber.objects.exists()


def test_rotating_through_one_ipv6_network_counts_as_one_client(client, settings):
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 2
    assert post_subscribe(client, "a@example.org", ip="2001:db8::1").status_code == 200
    assert post_subscribe(client, "b@example.org", ip="2001:db8::ff").status_code == 200
    blocked = post_subscribe(client, "c@example.org", ip="2001:db8::1:2:3:4")
    assert blocked.status_code == 429
    other_network = post_subscribe(client, "d@example.org", ip="2001:db8:0:1::1")
    assert other_network.status_code == 200


def test_a_forged_x_forwarded_for_does_not_escape_the_client_limit(client, settings):
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 2
    for n in range(3):
        response = client.post(
            "/subscribe/",
            {"email": f"x{n}@example.org"},
            REMOTE_ADDR="203.0.113.9",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}",
        )
    assert response.status_code == 429


@pytest.mark.usefixtures("celery_eager")
def test_behind_a_trusted_proxy_clients_are_told_apart_by_x_forwarded_for(
    client, settings
):
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 1
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    for n in range(3):
        response = client.post(
            "/subscribe/",
            {"email": f"x{n}@example.org"},
            REMOTE_ADDR="10.0.0.1",  # the proxy
            HTTP_X_FORWARDED_FOR=f"forged, 203.0.113.{n}",
        )
        assert response.status_code == 200
    assert Consent.objects.get(subscriber__email="x2@example.org").ip_address == (
        "203.0.113.2"
    )


@pytest.mark.usefixtures("broker_queue")
def test_a_bot_filling_the_honeypot_is_told_the_same_and_nothing_is_queued(client):
    bot = post_subscribe(client, "bot-target@example.org", website="http://spam.test")
    assert queued_tasks() == 0
    person = post_subscribe(client, "person@example.org")
    assert bot.status_code == person.status_code == 200
    assert bot.content == person.content


@pytest.mark.usefixtures("celery_eager")
@pytest.mark.parametrize("state", ["new", "pending", "active", "unsubscribed"])
def test_address_enumeration_learns_nothing_from_status_body_or_headers(
    client, django_capture_on_commit_callbacks, state
):
    with django_capture_on_commit_callbacks(execute=True):
        reference = post_subscribe(client, "reference@example.org")
    if state != "new":
        SubscriberFactory(email="probe@example.org", status=state)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_subscribe(client, "probe@example.org")
    assert response.status_code == reference.status_code == 200
    assert response.content == reference.content
    assert sorted(response.headers.keys()) == sorted(reference.headers.keys())


@pytest.mark.usefixtures("broker_queue")
@pytest.mark.parametrize("state", ["new", "pending", "active", "unsubscribed"])
def test_timing_attack_finds_the_same_work_queued_for_every_address_state(
    client, state
):
    # The request itself only validates, counts and queues one task, whatever the
    # state; the database and the email are the worker's business.
    if state != "new":
        SubscriberFactory(email="probe@example.org", status=state)
    before = {s.pk: s.status for s in Subscriber.objects.all()}
    response = post_subscribe(client, "probe@example.org")
    assert response.status_code == 200
    assert queued_tasks() == 1
    assert {s.pk: s.status for s in Subscriber.objects.all()} == before
    assert not Consent.objects.exists()


@pytest.mark.usefixtures("broker_queue")
def test_confirmation_is_queued_never_sent_inline_even_when_the_provider_is_down(
    client, settings
):
    # A real provider backend aimed at a port where nothing listens.
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": "unused",
        "POSTMARK_API_URL": "http://127.0.0.1:9/",
    }
    response = post_subscribe(client, "reader@example.org")
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    assert queued_tasks() == 1
    assert mail.outbox == []
