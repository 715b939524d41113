"""A reader's request that nothing rings again asks the task queue (Redis) first,
and is refused while it is down. Lost between that question and the ring after the
commit (a restart, a blip), the request was a 500, its email never sent, and what it
wrote kept the reader from asking again (the day's confirmation, the day's change
of address, the one-time link spent): it is taken back, and the reader gets the
same 503 "try again in a minute" page as when the queue was down from the start.
A confirmation asks nothing first: the reader is confirmed, and the reaper rings
their welcome again once the queue is back."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone
from kombu.exceptions import OperationalError

from newsletter.enqueue import QUEUE_UNREACHABLE, tasks
from newsletter.models import Subscriber
from newsletter.subscriptions import subscription_request
from newsletter.tokens import Purpose, make_token

from .factories import SubscriberFactory, admin_subscriber_form, confirm_link

# The ring is made once the request's transaction really commits.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_eager"),
]


@pytest.fixture
def queue_lost():
    """The queue answers the view's question, then takes nothing: call it with a
    task's name; call what it returns to bring the queue back."""
    patch = pytest.MonkeyPatch()

    def refused(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379.")

    def lose(name: str):
        patch.setattr(getattr(tasks, name), "delay", refused)
        return patch.undo

    yield lose
    patch.undo()


@pytest.fixture
def reader():
    return SubscriberFactory(email="reader@example.org")


def preferences(subscriber, suffix: str = "") -> str:
    return f"/preferences/{make_token(subscriber, Purpose.PREFERENCES)}/{suffix}"


def link_in(message, path: str) -> str:
    return re.search(rf"https?://[^/\s]+({path}\S+/)", message.body)[1]


def refused_to_try_again(response) -> bool:
    return response.status_code == 503 and "try again in a minute" in response.text


def test_resubscribing_as_the_queue_is_lost_is_refused_and_can_be_asked_again(
    client, reader, queue_lost
):
    client.post(preferences(reader), {"action": "unsubscribe"})
    consents = reader.consents.count()
    queue_back = queue_lost("send_confirmation")

    assert refused_to_try_again(
        client.post(preferences(reader), {"action": "resubscribe"})
    )
    reader.refresh_from_db()
    assert reader.confirmation_sent_at is None
    assert reader.consents.count() == consents
    assert not mail.outbox

    # Again once the queue is back: not "at most one a day" with nothing sent.
    queue_back()
    again = client.post(preferences(reader), {"action": "resubscribe"})
    assert again.status_code == 200
    [confirmation] = mail.outbox
    assert confirmation.to == ["reader@example.org"]


def test_a_one_time_link_asked_for_as_the_queue_is_lost_is_refused(
    client, reader, queue_lost
):
    queue_back = queue_lost("send_one_time_link")
    assert refused_to_try_again(client.post(preferences(reader, "export/")))
    assert not mail.outbox

    queue_back()
    assert client.post(preferences(reader, "export/")).status_code == 200
    [link] = mail.outbox
    assert link.to == ["reader@example.org"]


def test_a_new_address_confirmed_as_the_queue_is_lost_is_refused_and_the_link_works(
    client, reader, queue_lost
):
    client.post(preferences(reader, "email/"), {"new_email": "new@example.org"})
    [message] = mail.outbox
    link = link_in(message, "/preferences/once/")
    mail.outbox.clear()
    queue_back = queue_lost("send_email_change")

    assert refused_to_try_again(client.post(link))
    reader.refresh_from_db()
    assert reader.email_change_requested_at is None
    assert not mail.outbox

    # The same link, once the queue is back: not spent, nor the day's turn taken.
    queue_back()
    moved = client.post(link)
    assert moved.status_code == 200
    assert "Check the new inbox" in moved.text
    [change] = mail.outbox
    assert change.to == ["new@example.org"]


def test_a_confirmation_as_the_queue_is_lost_confirms_and_welcomes_once_it_is_back(
    client, queue_lost, caplog, settings, monkeypatch
):
    subscription_request(email="sam@example.org")
    [message] = mail.outbox
    link = confirm_link(message)
    queue_back = queue_lost("send_welcome")

    # Confirmed when the welcome's ring fails: the page says so, rather than
    # "nothing has been stored", and the lost ring is logged.
    confirmed = client.post(link)
    assert confirmed.status_code == 200
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE
    assert "subscriber_confirm" in caplog.text
    assert mail.outbox == [message]

    # The queue is back, and beat's reaper goes round a doorbell timeout later.
    queue_back()
    later = timezone.now() + timedelta(
        seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1
    )
    monkeypatch.setattr(timezone, "now", lambda: later)
    tasks.reap.delay()
    tasks.reap.delay()
    [welcome] = mail.outbox[1:]
    assert welcome.subject == "Welcome to On Probation"
    assert welcome.to == ["sam@example.org"]


def test_a_reader_added_at_the_desk_as_the_queue_is_lost_is_refused_not_left_pending(
    admin_client, queue_lost
):
    client = admin_client  # the roles' groups are flushed with every table here
    client.raise_request_exception = False
    form = admin_subscriber_form(email="sam@example.org")
    queue_back = queue_lost("send_confirmation")

    refused = client.post("/admin/newsletter/subscriber/add/", form, follow=True)
    assert refused.status_code == 200
    assert QUEUE_UNREACHABLE in refused.text
    assert "A confirmation email went to" not in refused.text
    assert not Subscriber.objects.exists()

    queue_back()
    added = client.post("/admin/newsletter/subscriber/add/", form)
    assert added.status_code == 302
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING
    [confirmation] = mail.outbox
    assert confirmation.to == ["sam@example.org"]


def test_a_new_address_confirmed_as_redis_is_lost_is_refused_and_the_link_works(
    client, reader, queue_lost, settings
):
    """The broker and the cache are one Redis: lost together, giving the new
    address's day back to the cache failed too, and the reader got a 500 with
    their link spent and their day's change taken."""
    client.post(preferences(reader, "email/"), {"new_email": "new@example.org"})
    [message] = mail.outbox
    link = link_in(message, "/preferences/once/")
    mail.outbox.clear()
    cache = settings.CACHES
    settings.CACHES = {
        "default": {
            "BACKEND": "newsletter.rediscache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    queue_back = queue_lost("send_email_change")

    assert refused_to_try_again(client.post(link))
    reader.refresh_from_db()
    assert reader.email_change_requested_at is None

    settings.CACHES = cache
    queue_back()
    moved = client.post(link)
    assert moved.status_code == 200
    [change] = mail.outbox
    assert change.to == ["new@example.org"]
