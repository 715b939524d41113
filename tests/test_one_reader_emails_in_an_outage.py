"""The emails to one reader (a confirmation, the welcome, a change of address, a
one-time link, a commenter's confirmation) through a provider's outage: retried
for hours while the provider takes nothing, and, if it never does, given up on
in a way someone sees and the reader can recover from."""

import logging
import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from benchmarks.fake_esp import postmark_messages
from newsletter import comment_tasks, tasks
from newsletter.celery import app as celery_app
from newsletter.models import Consent, Subscriber
from newsletter.subscriptions import (
    OneTimeRequest,
    email_change_request,
    one_time_link_request,
    subscription_request,
)
from posts.comments.models import Comment

from .factories import CommentFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

# Every attempt refused: longer than any task keeps trying.
DOWN_FOR_GOOD = 1000


def a_confirmation(email: str) -> tuple:
    with transaction.atomic():  # its email is queued on commit: not sent here
        subscription_request(email=email)
    consent = Consent.objects.get(subscriber__email=email)
    return (
        tasks.send_confirmation.s(consent.pk),
        f"confirmation of consent {consent.pk}",
    )


def a_welcome(email: str) -> tuple:
    reader = SubscriberFactory(email=email, welcome_rung_at=timezone.now())
    return tasks.send_welcome.s(reader.pk), f"welcome of subscriber {reader.pk}"


def a_change_of_address(email: str) -> tuple:
    reader = SubscriberFactory()
    with transaction.atomic():  # its email is queued on commit: not sent here
        email_change_request(subscriber=reader, new_email=email)
    requested_at = Subscriber.objects.get().email_change_requested_at
    return (
        tasks.send_email_change.s(reader.pk, requested_at=requested_at.isoformat()),
        f"change-of-address link of subscriber {reader.pk}",
    )


def a_one_time_link(email: str) -> tuple:
    reader = SubscriberFactory(email=email)
    with transaction.atomic():  # its email is queued on commit: not sent here
        one_time_link_request(subscriber=reader, request=OneTimeRequest.EXPORT)
    requested_at = Subscriber.objects.get().one_time_link_sent_at
    return (
        tasks.send_one_time_link.s(reader.pk, "export", requested_at.isoformat()),
        f"one-time link of subscriber {reader.pk}",
    )


def a_comment_confirmation(email: str) -> tuple:
    CommentFactory(email=email, status=Comment.Status.APPROVED)
    held = CommentFactory(email=email)
    return (
        comment_tasks.email_comment_confirmation.s(held.pk),
        f"confirmation of comment {held.pk}",
    )


@pytest.fixture
def tasks_run_when_queued(celery_eager):
    """Each task runs when it is queued, its retries at once, as a worker would run
    them; one that fails in the end fails in its worker, not in the test."""
    celery_app.conf.task_eager_propagates = False  # celery_eager puts it back


def confirm_link_in(message: dict) -> str:
    path = r"/preferences/email/confirm/\S+/"
    return re.search(rf"https?://[^/\s]+({path})", message["TextBody"])[1]


def waits_before_retries(caplog) -> list[float]:
    """The countdowns Celery logged, one per retry ("… retry: Retry in 12.3s: …")."""
    return [
        float(match[1])
        for record in caplog.records
        if (match := re.search(r"Retry in ([\d.]+)s", record.getMessage()))
    ]


EMAILS_TO_ONE_READER = pytest.mark.parametrize(
    "email_to_one_reader",
    [
        a_confirmation,
        a_welcome,
        a_change_of_address,
        a_one_time_link,
        a_comment_confirmation,
    ],
)


@EMAILS_TO_ONE_READER
def test_an_email_the_provider_refuses_is_tried_again_for_hours(
    email_to_one_reader, fake_esp, caplog
):
    task, _ = email_to_one_reader("reader@example.org")
    fake_esp.set_faults(fail_5xx_next=DOWN_FOR_GOOD, fail_5xx_status=503)
    caplog.set_level(logging.INFO, logger="celery.app.trace")

    assert task.apply(throw=False).failed()

    assert fake_esp.count == 0
    # Full jitter makes the waits random; they add up to about six hours.
    assert sum(waits_before_retries(caplog)) > timedelta(hours=4).total_seconds()


@EMAILS_TO_ONE_READER
def test_an_email_refused_until_the_last_retry_is_given_up_loudly(
    email_to_one_reader, fake_esp, caplog
):
    task, named = email_to_one_reader("reader@example.org")
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)

    last_try = task.apply(retries=task.type.max_retries, throw=False)

    assert last_try.failed()
    assert fake_esp.count == 0
    [gave_up] = [r for r in caplog.records if r.name.startswith("newsletter.")]
    assert gave_up.levelno == logging.ERROR
    assert named in gave_up.getMessage()
    assert "reader@example.org" not in gave_up.getMessage()


def test_a_one_time_link_the_provider_refused_for_hours_arrives_once_and_works(
    client, fake_esp
):
    # Asked for hours ago, as the outage began.
    requested_at = timezone.now() - timedelta(hours=5)
    reader = SubscriberFactory(
        email="reader@example.org", one_time_link_sent_at=requested_at
    )
    fake_esp.set_faults(fail_5xx_next=40, fail_5xx_status=503)

    tasks.send_one_time_link.apply(
        args=[reader.pk, "export", requested_at.isoformat()], throw=False
    )

    assert fake_esp.recipients() == {"reader@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    link = re.search(r"https?://[^/\s]+(/preferences/once/\S+/)", message["TextBody"])
    # The link's hour counts from when it was sent, not from when it was asked for.
    response = client.post(link[1])
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")


def test_a_confirmation_the_provider_may_have_taken_is_neither_sent_again_nor_undone(
    fake_esp,
):
    # The provider took the email and the connection broke before its answer: a
    # second copy is worse than none, and the reader's next request waits its day.
    task, _ = a_confirmation("reader@example.org")
    fake_esp.set_faults(drop_after_accept_next=1)

    assert task.apply(throw=False).failed()

    assert fake_esp.recipients() == {"reader@example.org": 1}
    assert Subscriber.objects.get().confirmation_sent_at is not None


@pytest.mark.parametrize(
    "email_to_one_reader",
    # Not a one-time link, nor a commenter's link to their data: each request
    # sends a fresh link to the address's owner, who may ask again at once.
    [a_confirmation, a_welcome, a_change_of_address, a_comment_confirmation],
)
def test_an_email_the_provider_may_have_taken_is_not_sent_again_when_its_task_is(
    email_to_one_reader, fake_esp
):
    """The provider took the email and its answer was lost (the connection broke,
    or the worker was killed once it had handed it over): the queue, which
    acknowledges a task once it has run, runs it again."""
    task, _ = email_to_one_reader("reader@example.org")
    fake_esp.set_faults(drop_after_accept_next=1)
    assert task.apply(throw=False).failed()

    assert task.apply(throw=False).successful()

    assert fake_esp.recipients() == {"reader@example.org": 1}


@pytest.mark.usefixtures("tasks_run_when_queued")
def test_a_change_of_address_run_after_the_readers_next_request_sends_nothing(
    on_commit, fake_esp
):
    """Its link would have worked: the reader, who now asks for another address,
    could have been moved to the one they no longer want."""
    reader = SubscriberFactory(email="reader@example.org")
    with transaction.atomic():  # its email is queued on commit: held up here
        email_change_request(subscriber=reader, new_email="first@example.org")
    first_requested_at = timezone.now() - timedelta(days=1, minutes=1)
    Subscriber.objects.update(email_change_requested_at=first_requested_at)
    on_commit(email_change_request, subscriber=reader, new_email="second@example.org")

    tasks.send_email_change.apply(
        [reader.pk], {"requested_at": first_requested_at.isoformat()}
    )

    assert fake_esp.recipients() == {"second@example.org": 1}


@pytest.mark.usefixtures("tasks_run_when_queued")
def test_a_one_time_link_run_after_the_readers_next_request_sends_nothing(
    on_commit, django_capture_on_commit_callbacks, fake_esp
):
    """Its link would have worked, bound to the later request: the reader, who
    now asks to delete their data, could have been sent a working link to
    download it, or the other way round."""
    reader = SubscriberFactory(email="reader@example.org")
    with django_capture_on_commit_callbacks() as held_up:  # its task not run yet
        one_time_link_request(subscriber=reader, request=OneTimeRequest.EXPORT)
    on_commit(one_time_link_request, subscriber=reader, request=OneTimeRequest.DELETE)

    for ring in held_up:
        ring()

    assert fake_esp.recipients() == {"reader@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    assert message["Subject"] == "Your link to delete your On Probation data"


@pytest.mark.usefixtures("tasks_run_when_queued")
def test_a_change_of_address_the_provider_never_took_can_be_asked_for_again_at_once(
    client, on_commit, fake_esp
):
    reader = SubscriberFactory(email="reader@example.org")
    fake_esp.set_faults(fail_5xx_next=DOWN_FOR_GOOD, fail_5xx_status=503)
    # Every try refused, until the task gives up.
    on_commit(email_change_request, subscriber=reader, new_email="new@example.org")
    assert fake_esp.count == 0

    # The outage is over: the reader asks again, the same day, for the same address.
    fake_esp.set_faults(fail_5xx_next=0)
    on_commit(email_change_request, subscriber=reader, new_email="new@example.org")

    assert fake_esp.recipients() == {"new@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    assert client.post(confirm_link_in(message)).status_code == 200
    reader.refresh_from_db()
    assert reader.email == "new@example.org"


@pytest.mark.usefixtures("tasks_run_when_queued")
def test_giving_up_a_day_late_on_a_change_of_address_spares_the_next_and_its_link(
    client, on_commit, fake_esp
):
    reader = SubscriberFactory(email="reader@example.org")
    with transaction.atomic():  # its email is queued on commit: held up here
        email_change_request(subscriber=reader, new_email="first@example.org")
    first_requested_at = timezone.now() - timedelta(days=1, minutes=1)
    Subscriber.objects.update(email_change_requested_at=first_requested_at)
    # A day later the reader asks for another address, and its link goes out.
    on_commit(email_change_request, subscriber=reader, new_email="second@example.org")
    second_requested_at = Subscriber.objects.get().email_change_requested_at

    # The first request's email is tried at last, and refused to the end.
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    tasks.send_email_change.apply(
        [reader.pk],
        {"requested_at": first_requested_at.isoformat()},
        retries=tasks.send_email_change.max_retries,
        throw=False,
    )

    assert Subscriber.objects.get().email_change_requested_at == second_requested_at
    [message] = postmark_messages(fake_esp.messages)
    assert client.post(confirm_link_in(message)).status_code == 200
    reader.refresh_from_db()
    assert reader.email == "second@example.org"
