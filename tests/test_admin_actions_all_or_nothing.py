"""An action of the desk that fails partway changes nothing, as its 400 says
("Nothing was changed.", newsletter/admin/malformed.py): it had paused, unsubscribed
or published the first of the rows selected, and the author was told nothing had.
Asking the provider keeps each batch it settled, and says which."""

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone

from newsletter import delivery, subscriptions
from newsletter.delivery import control
from newsletter.models import Batch, Delivery, Mailing, Subscriber, Suppression
from posts import services
from posts.models import Post

from .factories import (
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
    desk_action,
    uncertain_long_enough_to_ask,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

REFUSED = b"Nothing was changed."


@pytest.fixture
def author():
    client = Client()
    client.force_login(UserFactory())
    return client


def failing_on_the_second(monkeypatch, module, name: str) -> None:
    """`module.name` as it is for the first row, and refusing the second as a
    value the desk cannot use is refused: after the first row was written."""
    real = getattr(module, name)
    calls = []

    def first_then_refused(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise ValueError("a value the desk cannot use")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, first_then_refused)


@pytest.fixture
def two_mailings(settings):
    """Two posts' mailings of two readers, planned, their doorbells not rung."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    SubscriberFactory.create_batch(2)
    for _ in range(2):
        delivery.mailing_create_for_post(post=PublishedPostFactory())
    mailings = list(Mailing.objects.order_by("pk"))
    for mailing in mailings:
        while delivery.mailing_plan_page(mailing_id=mailing.pk):
            pass
    return mailings


def statuses(mailings) -> list[tuple]:
    return [
        Mailing.objects.values_list("status", "paused_at").get(pk=mailing.pk)
        for mailing in mailings
    ]


@pytest.mark.parametrize(
    ("action", "control_name", "paused_first"),
    [
        ("pause", "mailing_pause", False),
        ("resume", "mailing_resume", True),
        ("cancel", "mailing_cancel", False),
    ],
)
def test_a_mailing_control_refused_on_the_second_mailing_leaves_the_first_as_it_was(
    author,
    two_mailings,
    monkeypatch,
    django_capture_on_commit_callbacks,
    action,
    control_name,
    paused_first,
):
    if paused_first:
        for mailing in two_mailings:
            delivery.mailing_pause(mailing_id=mailing.pk)
    before = statuses(two_mailings)
    failing_on_the_second(monkeypatch, delivery, control_name)
    with django_capture_on_commit_callbacks() as rung:
        response = desk_action(author, action, *two_mailings, confirmed=True)
    assert response.status_code == 400
    assert REFUSED in response.content
    assert statuses(two_mailings) == before
    assert rung == []  # a resume rang no batch of a mailing still paused


@pytest.fixture
def two_uncertain(two_mailings):
    """Each mailing's first batch uncertain: sent, its answer lost."""
    batches = [mailing.batches.order_by("number").first() for mailing in two_mailings]
    for batch in batches:
        batch.deliveries.update(status=Delivery.Status.UNCERTAIN)
        # Closed uncertain, as its worker closes it (close_batch).
        Batch.objects.filter(pk=batch.pk).update(
            status=Batch.Status.UNCERTAIN, finished_at=timezone.now()
        )
    return batches


def batch_statuses(batches) -> list[str]:
    return [Batch.objects.get(pk=batch.pk).status for batch in batches]


@pytest.mark.parametrize(
    ("action", "control_name"),
    [("mark_sent", "batch_mark_sent"), ("resend", "batch_resend")],
)
def test_settling_batches_refused_on_the_second_leaves_the_first_uncertain(
    author,
    two_uncertain,
    monkeypatch,
    django_capture_on_commit_callbacks,
    action,
    control_name,
):
    failing_on_the_second(monkeypatch, delivery, control_name)
    with django_capture_on_commit_callbacks() as rung:
        response = desk_action(author, action, *two_uncertain)
    assert response.status_code == 400
    assert REFUSED in response.content
    assert batch_statuses(two_uncertain) == [Batch.Status.UNCERTAIN] * 2
    assert not Delivery.objects.exclude(status=Delivery.Status.UNCERTAIN).filter(
        batch__in=two_uncertain
    )
    assert rung == []


def test_asking_the_provider_keeps_the_batches_it_settled_and_says_which(
    author, two_uncertain, fake_esp, monkeypatch
):
    """Each batch is settled in its own transaction, the provider asked outside
    any: the first stays settled when the second's answer cannot be read, and
    the author is told so, not that nothing was changed."""
    failing_on_the_second(monkeypatch, control, "accepted_recipients")
    uncertain_long_enough_to_ask(*two_uncertain)
    response = desk_action(author, "settle", *two_uncertain)
    assert response.status_code == 302
    page = author.get(response.url).content.decode()
    assert "Settled 1 batch with the provider." in page
    assert "Could not settle 1 batch with the provider" in page
    # The first asked, which the provider never took, goes again.
    assert sorted(batch_statuses(two_uncertain)) == [
        Batch.Status.QUEUED,
        Batch.Status.UNCERTAIN,
    ]


def test_unsubscribing_refused_on_the_second_reader_leaves_the_first_subscribed(
    author, monkeypatch
):
    readers = SubscriberFactory.create_batch(2)
    failing_on_the_second(monkeypatch, subscriptions, "subscriber_unsubscribe")
    response = desk_action(author, "unsubscribe", *readers, confirmed=True)
    assert response.status_code == 400
    assert REFUSED in response.content
    assert set(Subscriber.objects.values_list("status", flat=True)) == {
        Subscriber.Status.ACTIVE
    }
    assert not Suppression.objects.exists()


def test_suppressing_refused_on_the_second_address_suppresses_neither(
    author, monkeypatch
):
    readers = SubscriberFactory.create_batch(2)
    failing_on_the_second(monkeypatch, subscriptions, "address_suppress")
    response = desk_action(author, "suppress", *readers, confirmed=True)
    assert response.status_code == 400
    assert REFUSED in response.content
    assert not Suppression.objects.exists()


def test_lifting_refused_on_the_second_suppression_lifts_neither(author, monkeypatch):
    for address in ("one@example.org", "two@example.org"):
        subscriptions.address_suppress(email=address, reason=Suppression.Reason.MANUAL)
    suppressions = list(Suppression.objects.order_by("pk"))
    failing_on_the_second(monkeypatch, subscriptions, "suppression_lift")
    response = author.post(
        "/admin/newsletter/suppression/",
        {
            "action": "delete_selected",
            "_selected_action": [s.pk for s in suppressions],
            "post": "yes",
        },
    )
    assert response.status_code == 400
    assert REFUSED in response.content
    assert Suppression.objects.count() == 2
    assert not LogEntry.objects.exists()  # the first lift's entry went with it


@pytest.mark.parametrize(
    ("action", "service"),
    [("publish", "post_publish"), ("submit_for_review", "post_submit_for_review")],
)
def test_a_post_action_refused_on_the_second_post_leaves_the_first_a_draft(
    author, monkeypatch, django_capture_on_commit_callbacks, action, service
):
    SubscriberFactory()
    drafts = PostFactory.create_batch(2, email_subscribers=True)
    failing_on_the_second(monkeypatch, services, service)
    with django_capture_on_commit_callbacks() as rung:
        response = desk_action(author, action, *drafts)
    assert response.status_code == 400
    assert REFUSED in response.content
    assert set(Post.objects.values_list("status", flat=True)) == {Post.Status.DRAFT}
    assert not Mailing.objects.exists()  # nobody is emailed a post not published
    assert rung == []
