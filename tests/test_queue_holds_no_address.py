"""A reader's address is not in the task queue, nor a desk member's: a task names
them by their row, and reads the address from it when it runs. A message can wait
in the broker for hours (a provider's outage, its retries), where an erasure
cannot reach it; a reader erased meanwhile is sent nothing. A commenter's address
is in the data form's own message only, not in its retries."""

import json
import logging
import re
from datetime import timedelta

import pytest
from celery.app.task import Task
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from benchmarks.fake_esp import postmark_messages
from newsletter import comment_tasks, tasks
from newsletter.celery import app as celery_app
from newsletter.models import Subscriber
from newsletter.subscriptions import commenter_delete, subscriber_delete
from posts.models import PostUpdate

from .factories import (
    CommentFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
)
from .test_preferences import link_in, url

pytestmark = pytest.mark.django_db


class Queue:
    """The messages rung, kept rather than sent: each task's name and arguments,
    as a worker would receive them."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, tuple, dict]] = []

    def run(self) -> list:
        """Run the messages kept, as a worker takes them, and empty the queue."""
        messages, self.messages = self.messages, []
        return [
            celery_app.tasks[name].apply(args, kwargs, throw=False)
            for name, args, kwargs in messages
        ]


@pytest.fixture
def queue(monkeypatch):
    kept = Queue()

    def keep(task, args=None, kwargs=None, **options):
        kept.messages.append((task.name, tuple(args or ()), dict(kwargs or {})))

    monkeypatch.setattr(Task, "apply_async", keep)
    return kept


def names_no_address(queue: Queue) -> bool:
    return all("@" not in json.dumps([a, k]) for _, a, k in queue.messages)


def ask_to_move(client, on_commit, queue, reader, new_email: str) -> None:
    """The form, its one-time link to the reader's own address, then its button:
    the change-of-address email queued."""
    on_commit(client.post, url(reader, "email/"), {"new_email": new_email})
    assert queue.messages and names_no_address(queue)
    [sent] = queue.run()
    assert sent.successful()
    [one_time] = mail.outbox
    mail.outbox.clear()
    response = on_commit(client.post, link_in(one_time, "/preferences/once/"))
    assert "Check the new inbox" in response.text


def test_a_change_of_address_queues_no_address_and_moves_the_reader(
    client, on_commit, queue
):
    reader = SubscriberFactory(email="reader@example.org")

    ask_to_move(client, on_commit, queue, reader, "new@example.org")

    assert queue.messages and names_no_address(queue)
    [sent] = queue.run()
    assert sent.successful()
    [message] = mail.outbox
    assert message.to == ["new@example.org"]
    assert on_commit(client.post, link_in(message, "/preferences/email/confirm/"))
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    # Once its link is sent the address is the link's: no row keeps it waiting.
    assert reader.email_change_to == reader.one_time_link_new_email == ""


def test_a_change_of_address_refused_by_the_provider_goes_on_its_retry(
    client, on_commit, queue, request
):
    reader = SubscriberFactory(email="reader@example.org")
    ask_to_move(client, on_commit, queue, reader, "new@example.org")
    fake_esp = request.getfixturevalue("fake_esp")  # the provider from now on
    fake_esp.set_faults(fail_5xx_next=2, fail_5xx_status=503)

    [sent] = queue.run()  # refused twice, taken on the third try

    assert sent.successful()
    assert fake_esp.recipients() == {"new@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    confirm = re.search(r"/preferences/email/confirm/\S+/", message["TextBody"])[0]
    assert on_commit(client.post, confirm).status_code == 200
    reader.refresh_from_db()
    assert reader.email == "new@example.org"


def test_a_reader_erased_while_their_change_of_address_waits_is_sent_nothing(
    client, on_commit, queue, caplog
):
    reader = SubscriberFactory(email="reader@example.org")
    ask_to_move(client, on_commit, queue, reader, "new@example.org")
    reader_id = reader.pk

    subscriber_delete(subscriber=reader)
    caplog.set_level(logging.INFO, logger="newsletter")
    [ran] = queue.run()

    assert ran.successful()
    assert not mail.outbox
    [said] = [r.getMessage() for r in caplog.records if r.name.startswith("newsletter")]
    assert f"subscriber {reader_id}" in said
    assert "@" not in said


def test_a_reader_erased_while_their_one_time_link_waits_is_sent_nothing(
    client, on_commit, queue
):
    reader = SubscriberFactory(email="reader@example.org")
    on_commit(client.post, url(reader, "email/"), {"new_email": "new@example.org"})

    subscriber_delete(subscriber=reader)
    [ran] = queue.run()

    assert ran.successful()
    assert not mail.outbox


def test_a_new_address_whose_link_never_went_is_forgotten_a_day_later(
    client, on_commit, queue
):
    lost, asking = SubscriberFactory(), SubscriberFactory()
    # Their messages lost with the queue: nothing rings them again.
    ask_to_move(client, on_commit, queue, lost, "lost@example.org")
    queue.messages.clear()
    ask_to_move(client, on_commit, queue, asking, "asking@example.org")
    queue.messages.clear()
    Subscriber.objects.filter(pk=lost.pk).update(
        email_change_requested_at=timezone.now() - timedelta(hours=25)
    )

    tasks.purge_expired_pending.apply()

    assert Subscriber.objects.get(pk=lost.pk).email_change_to == ""
    assert Subscriber.objects.get(pk=asking.pk).email_change_to == "asking@example.org"


def test_a_test_email_names_its_author_by_id_in_the_queue(client, on_commit, queue):
    author = UserFactory(email="editor@example.org")
    client.force_login(author)
    post = PublishedPostFactory()
    update = PostUpdate.objects.create(
        post=post, kind=PostUpdate.Kind.CORRECTION, wrong="Good", right="Outstanding"
    )

    on_commit(client.post, f"/admin/posts/post/{post.pk}/email/test/")
    on_commit(
        client.post,
        reverse("admin:posts_post_correction_test", args=[post.pk, update.pk]),
    )

    assert len(queue.messages) == 2 and names_no_address(queue)
    assert all(ran.successful() for ran in queue.run())
    assert [message.to for message in mail.outbox] == [["editor@example.org"]] * 2


@pytest.fixture
def retries(monkeypatch) -> list:
    """The arguments each retry is queued with, as its message carries them."""
    queued = []
    retry = Task.retry

    def keep(task, args=None, kwargs=None, **options):
        queued.append(
            [
                task.request.args if args is None else args,
                task.request.kwargs if kwargs is None else kwargs,
            ]
        )
        return retry(task, args, kwargs, **options)

    monkeypatch.setattr(Task, "retry", keep)
    return queued


def test_a_commenters_data_link_is_retried_naming_their_comment_not_the_address(
    client, on_commit, queue, request, retries
):
    """The form's own message holds the address it was given, and waits only for
    a worker: the retries, which wait for hours, name the comment."""
    CommentFactory(email="sam@example.org")
    on_commit(client.post, "/comments/data/", {"email": "sam@example.org"})
    fake_esp = request.getfixturevalue("fake_esp")
    fake_esp.set_faults(fail_5xx_next=2, fail_5xx_status=503)

    [ran] = queue.run()

    assert ran.successful()
    assert len(retries) == 2 and "@" not in json.dumps(retries)
    assert fake_esp.recipients() == {"sam@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    link = re.search(r"/comments/data/\S+/", message["TextBody"])[0]
    assert "sam@example.org" in client.get(link).text


@pytest.mark.usefixtures("celery_eager")
def test_a_commenters_data_link_retried_after_they_erased_their_comments_sends_nothing(
    caplog,
):
    comment = CommentFactory(email="sam@example.org")
    commenter_delete(email="sam@example.org")
    caplog.set_level(logging.INFO, logger="newsletter")

    retry = comment_tasks.email_commenter_data_link.apply(
        kwargs={"comment_id": comment.pk}, throw=True
    )

    assert retry.successful()
    assert not mail.outbox
    [said] = [r.getMessage() for r in caplog.records if r.name.startswith("newsletter")]
    assert f"comment {comment.pk} is gone" in said
