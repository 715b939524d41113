"""The desk's suppression list: lifting a suppression, and adding one."""

import pytest
from django.contrib.messages import get_messages
from django.core import mail

from newsletter.models import Subscriber, Suppression
from newsletter.subscriptions import address_suppress, subscriber_unsubscribe
from posts.services import post_publish

from .factories import PostFactory, SubscriberFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

Reason = Suppression.Reason


@pytest.fixture
def author(client):
    client.force_login(UserFactory())
    return client


def lift(author, email: str):
    suppression = Suppression.objects.for_email(email).get()
    return author.post(
        f"/admin/newsletter/suppression/{suppression.pk}/delete/",
        {"post": "yes"},
        follow=True,
    )


def messages_of(page) -> list[str]:
    return [str(message) for message in get_messages(page.wsgi_request)]


@pytest.mark.parametrize(
    "reason", [Reason.HARD_BOUNCE, Reason.SOFT_BOUNCES, Reason.MANUAL]
)
def test_a_reader_whose_suppression_the_desk_lifts_receives_the_next_post(
    author, on_commit, reason
):
    reader = SubscriberFactory(email="sam@example.org", soft_bounces=3)
    address_suppress(email="sam@example.org", reason=reason)

    page = lift(author, "sam@example.org")

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.soft_bounces == 0
    assert reader.unsubscribed_at is None
    assert not Suppression.objects.exists()
    assert messages_of(page) == ["Lifted: its reader receives the newsletter again."]
    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["sam@example.org"]]


def test_a_reader_who_bounced_before_confirming_is_pending_again_when_lifted(author):
    reader = SubscriberFactory(
        email="sam@example.org", status=Subscriber.Status.PENDING, confirmed_at=None
    )
    address_suppress(email="sam@example.org", reason=Reason.HARD_BOUNCE)

    page = lift(author, "sam@example.org")

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.PENDING
    assert "pending again" in messages_of(page)[0]


def test_a_bounce_lifted_after_the_reader_unsubscribed_leaves_them_unsubscribed(
    author, on_commit
):
    """The bounce of an email sent before they left came in after: lifting it
    must not subscribe them again."""
    reader = SubscriberFactory(email="sam@example.org")
    subscriber_unsubscribe(subscriber=reader)
    address_suppress(email="sam@example.org", reason=Reason.HARD_BOUNCE)

    page = lift(author, "sam@example.org")

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert Suppression.objects.get().reason == Reason.UNSUBSCRIBED
    assert (
        "stays suppressed as the reader left it (unsubscribed)"
        in (messages_of(page)[0])
    )
    on_commit(post_publish, post=PostFactory())
    assert mail.outbox == []


def test_lifting_the_bounce_of_an_erased_persons_address_keeps_their_erasure(
    author,
):
    address_suppress(email="gone@example.org", reason=Reason.DELETED)
    address_suppress(email="gone@example.org", reason=Reason.COMPLAINT)

    lift(author, "gone@example.org")

    assert Suppression.objects.get().reason == Reason.DELETED


def test_lifting_a_suppression_of_nobody_deletes_it_and_says_so(author):
    address_suppress(email="stranger@example.org", reason=Reason.MANUAL)
    other = SubscriberFactory(status=Subscriber.Status.SUPPRESSED)

    page = lift(author, "stranger@example.org")

    assert not Suppression.objects.exists()
    other.refresh_from_db()
    assert other.status == Subscriber.Status.SUPPRESSED
    assert "no reader holds the address" in messages_of(page)[0]


def test_lifting_several_at_once_restores_each_reader(author):
    readers = [
        SubscriberFactory(email=f"r{n}@example.org", status=Subscriber.Status.ACTIVE)
        for n in range(2)
    ]
    for reader in readers:
        address_suppress(email=reader.email, reason=Reason.HARD_BOUNCE)

    author.post(
        "/admin/newsletter/suppression/",
        {
            "action": "delete_selected",
            "_selected_action": list(Suppression.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert not Suppression.objects.exists()
    assert set(Subscriber.objects.values_list("status", flat=True)) == {"active"}
