"""A reader's welcome (their preferences link, what to expect) is rung to the task
queue (Redis) once their confirmation commits. Lost with the queue (down then, or
restarted since), it was only logged, and nothing ever sent it. The welcome is
owed from the confirmation until a worker takes it to send, once; the reaper
rings again one still owed a doorbell timeout on, to readers still receiving,
for a day at most."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from newsletter import subscriptions, tasks
from newsletter.models import Subscriber, Suppression
from newsletter.subscriptions import WELCOME_GIVEN_UP_AFTER_HOURS

from .factories import confirm_link
from .test_subscribe import subscribe

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

WELCOME = "Welcome to On Probation"


@pytest.fixture
def confirmed_with_redis_down(client, request, django_capture_on_commit_callbacks):
    """Sam subscribes, then confirms with Redis down: the confirmation page."""
    subscribe(client, "sam@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    request.getfixturevalue("redis_down")
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(link)


def test_a_reader_confirming_with_redis_down_is_welcomed_once_it_is_back(
    confirmed_with_redis_down, reaped_once_redis_is_back
):
    confirmed = confirmed_with_redis_down
    # Confirmed, rather than "try again in a minute": the welcome waits for Redis.
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE
    assert [m.subject for m in mail.outbox] == [
        "Confirm your subscription to On Probation"
    ]

    assert reaped_once_redis_is_back()["welcomes_rung"] == 1
    [welcome] = mail.outbox[1:]
    assert welcome.subject == WELCOME
    assert welcome.to == ["sam@example.org"]
    assert "/preferences/" in welcome.body

    # Sent: the reaper has nothing more to ring.
    assert reaped_once_redis_is_back()["welcomes_rung"] == 0
    assert len(mail.outbox) == 2


def unsubscribed(reader: Subscriber) -> None:
    subscriptions.subscriber_unsubscribe(subscriber=reader)


def suppressed_and_lifted(reader: Subscriber) -> None:
    # The desk lifts it within the day: the reader receives again, unwelcomed.
    subscriptions.address_suppress(email=reader.email, reason=Suppression.Reason.MANUAL)
    subscriptions.suppression_lift(suppression=Suppression.objects.get())


def erased(reader: Subscriber) -> None:
    subscriptions.subscriber_delete(subscriber=reader)


@pytest.mark.parametrize("leaving", [unsubscribed, suppressed_and_lifted, erased])
def test_a_reader_gone_before_their_welcome_went_gets_none(
    confirmed_with_redis_down, reaped_once_redis_is_back, leaving
):
    assert confirmed_with_redis_down.status_code == 200
    reader = Subscriber.objects.get()
    reader_id = reader.pk
    leaving(reader)

    assert reaped_once_redis_is_back()["welcomes_rung"] == 0
    # Nor does the lost ring, found again late, send it.
    tasks.send_welcome.delay(reader_id)
    assert WELCOME not in [m.subject for m in mail.outbox]


def test_a_welcome_still_owed_a_day_after_the_confirmation_is_given_up(
    confirmed_with_redis_down, reaped_once_redis_is_back
):
    assert confirmed_with_redis_down.status_code == 200
    # Redis stays down for a day.
    Subscriber.objects.update(
        confirmed_at=timezone.now()
        - timedelta(hours=WELCOME_GIVEN_UP_AFTER_HOURS, minutes=1)
    )

    reaped = reaped_once_redis_is_back()

    assert reaped["welcomes_rung"] == 0
    assert reaped["welcomes_given_up"] == 1
    reader = Subscriber.objects.get()
    tasks.send_welcome.delay(reader.pk)
    assert WELCOME not in [m.subject for m in mail.outbox]
    assert reader.status == Subscriber.Status.ACTIVE
    # Given up once: not counted again.
    assert reaped_once_redis_is_back()["welcomes_given_up"] == 0


def test_a_welcome_the_provider_may_have_taken_is_never_sent_again(
    client, fake_esp, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The provider took the welcome and the connection broke before its answer,
    as when the worker dies between the two: a second welcome is worse than none,
    so the reaper does not ring it again."""
    subscribe(client, "sam@example.org", django_capture_on_commit_callbacks)
    reader = Subscriber.objects.get()
    fake_esp.set_faults(drop_after_accept_next=1)
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.subscriber_confirm(
            subscriber=reader, consent_id=reader.consents.get().pk
        )
    # The confirmation, then the welcome.
    assert fake_esp.recipients() == {"sam@example.org": 2}

    # The reaper a doorbell timeout later.
    later = timezone.now() + timedelta(
        seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1
    )
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert tasks.reap()["welcomes_rung"] == 0
    assert fake_esp.recipients() == {"sam@example.org": 2}


def test_a_welcome_the_provider_refused_is_rung_again_if_its_retry_is_lost(
    client, fake_esp, monkeypatch, django_capture_on_commit_callbacks
):
    """Taken to send, then clearly refused (a 503): owed again for its retry,
    which the queue loses (here, never run); the reaper rings it, once."""
    subscribe(client, "sam@example.org", django_capture_on_commit_callbacks)
    reader = Subscriber.objects.get()
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.subscriber_confirm(
            subscriber=reader, consent_id=reader.consents.get().pk
        )
    assert fake_esp.recipients() == {"sam@example.org": 1}  # the confirmation

    later = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert tasks.reap()["welcomes_rung"] == 1
    assert tasks.reap()["welcomes_rung"] == 0
    assert fake_esp.recipients() == {"sam@example.org": 2}


def test_a_welcome_still_owed_stays_owed_to_a_reader_resumed_through_the_form(
    confirmed_with_redis_down,
    redis_down,
    reaped_once_redis_is_back,
    client,
    django_capture_on_commit_callbacks,
    settings,
):
    """Sam confirms with Redis down and pauses; back through the subscribe form,
    they are resumed, not joined, so not welcomed again; but the welcome they
    never had is still owed, and goes, once."""
    assert confirmed_with_redis_down.status_code == 200
    redis_down()  # back
    reader = Subscriber.objects.get()
    subscriptions.subscriber_pause(subscriber=reader)
    # Not the day's limit on confirmations: the welcome is given up in a day.
    settings.NEWSLETTER_CONFIRM_RESEND_AFTER_SECONDS = 0
    subscribe(client, "sam@example.org", django_capture_on_commit_callbacks)
    [_, confirmation] = mail.outbox
    with django_capture_on_commit_callbacks(execute=True):
        client.post(confirm_link(confirmation))

    reaped_once_redis_is_back()
    reaped_once_redis_is_back()

    reader.refresh_from_db()
    assert reader.paused_at is None
    assert [m.subject for m in mail.outbox].count(WELCOME) == 1
