"""The desk's suppression list: lifting a suppression, and adding one."""

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.messages import get_messages
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from newsletter import esp
from newsletter.models import Subscriber, Suppression
from newsletter.subscriptions import (
    address_suppress,
    subscriber_pause,
    subscriber_unsubscribe,
    suppression_lift,
)
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


@pytest.mark.parametrize(
    "reason",
    [Reason.HARD_BOUNCE, Reason.SOFT_BOUNCES, Reason.MANUAL, Reason.COMPLAINT],
)
def test_a_reader_who_had_paused_before_being_suppressed_is_paused_again_when_lifted(
    author, on_commit, reason
):
    reader = SubscriberFactory(email="sam@example.org")
    subscriber_pause(subscriber=reader)
    paused_at = reader.paused_at
    address_suppress(email="sam@example.org", reason=reason)

    page = lift(author, "sam@example.org")

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.paused_at == paused_at
    assert messages_of(page) == [
        "Lifted: its reader is subscribed again, their newsletter paused as they "
        "left it (nothing is sent to them until they resume it)."
    ]
    on_commit(post_publish, post=PostFactory())
    assert mail.outbox == []


def test_a_paused_reader_out_of_the_list_is_not_among_the_desks_paused_readers(
    author,
):
    """The desk's "Paused" filter lists the readers the pause alone keeps from
    the newsletter, as its count of them does."""
    paused = SubscriberFactory()
    subscriber_pause(subscriber=paused)
    bounced = SubscriberFactory()
    subscriber_pause(subscriber=bounced)
    address_suppress(email=bounced.email, reason=Reason.HARD_BOUNCE)

    listed = author.get("/admin/newsletter/subscriber/", {"paused": "yes"})
    not_paused = author.get("/admin/newsletter/subscriber/", {"paused": "no"})

    assert listed.context["paused_count"] == 1
    assert [r.pk for r in listed.context["cl"].result_list] == [paused.pk]
    assert [r.pk for r in not_paused.context["cl"].result_list] == [bounced.pk]


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


def lift_selected(author, selected):
    return author.post(
        "/admin/newsletter/suppression/",
        {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
        follow=True,
    )


def test_lifting_several_at_once_says_once_what_became_of_them(author):
    """One message for the lot, true of each: Django's own said every row was
    deleted, beside the lift's message for each."""
    SubscriberFactory(email="back@example.org")
    SubscriberFactory(email="again@example.org")
    SubscriberFactory(
        email="new@example.org", status=Subscriber.Status.PENDING, confirmed_at=None
    )
    subscriber_unsubscribe(subscriber=SubscriberFactory(email="left@example.org"))
    emails = ["back", "again", "new", "left", "stranger"]
    for name in emails:
        address_suppress(email=f"{name}@example.org", reason=Reason.HARD_BOUNCE)

    page = lift_selected(author, list(Suppression.objects.values_list("pk", flat=True)))

    assert page.status_code == 200
    assert messages_of(page) == [
        "5 suppressions lifted: 2 readers receive the newsletter again; "
        "1 reader is pending again (they never confirmed); 1 address no reader "
        "holds may subscribe again; 1 address stays suppressed as its reader left "
        "it (their own unsubscribe or erasure, which only they lift, by "
        "subscribing again)."
    ]
    assert list(Suppression.objects.values_list("reason", flat=True)) == [
        Reason.UNSUBSCRIBED
    ]


def test_a_selection_holding_a_readers_own_unsubscribe_lifts_nothing(author):
    reader = SubscriberFactory(email="back@example.org")
    address_suppress(email="back@example.org", reason=Reason.HARD_BOUNCE)
    address_suppress(email="left@example.org", reason=Reason.UNSUBSCRIBED)

    page = lift_selected(author, list(Suppression.objects.values_list("pk", flat=True)))

    assert page.status_code == 403
    assert Suppression.objects.count() == 2
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED


def test_lifting_a_selection_lifted_meanwhile_says_nothing_was_left_to_lift(author):
    address_suppress(email="gone@example.org", reason=Reason.HARD_BOUNCE)
    selected = list(Suppression.objects.values_list("pk", flat=True))
    Suppression.objects.all().delete()  # another desk lifted it meanwhile

    page = lift_selected(author, selected)

    assert page.status_code == 200
    assert messages_of(page) == [
        "None of the selected suppressions is on the list any more: nothing was lifted."
    ]


def test_a_suppression_lifted_from_another_page_meanwhile_is_not_said_to_be_nobodys(
    author,
):
    """Two pages of the desk lift the same bounce: the later finds it gone, and
    must not say that no reader holds the address (the earlier put one back)."""
    reader = SubscriberFactory(email="sam@example.org")
    address_suppress(email="sam@example.org", reason=Reason.HARD_BOUNCE)
    seen_by_the_later_page = Suppression.objects.get()
    lift(author, "sam@example.org")

    lifted = suppression_lift(suppression=seen_by_the_later_page)

    assert lifted.gone
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def desk_history() -> list[tuple[int, str, str]]:
    """What the desk's history (its recent actions, a row's history page) says
    of the suppressions: (action, the row, what was done), oldest first."""
    return [
        (entry.action_flag, entry.object_id, entry.get_change_message())
        for entry in LogEntry.objects.filter(
            content_type__model="suppression"
        ).order_by("pk")
    ]


def test_a_lift_is_in_the_desks_history_as_what_became_of_the_reader(author):
    """Logged as "Deleted" before, true of the row but not of the reader, and
    untrue where the reader's own unsubscribe stays in the row."""
    SubscriberFactory(email="back@example.org")
    subscriber_unsubscribe(subscriber=SubscriberFactory(email="left@example.org"))
    for name in ("back", "left"):
        address_suppress(email=f"{name}@example.org", reason=Reason.HARD_BOUNCE)
    back = Suppression.objects.for_email("back@example.org").get().pk
    left = Suppression.objects.for_email("left@example.org").get().pk

    lift(author, "back@example.org")
    lift(author, "left@example.org")

    assert desk_history() == [
        (DELETION, str(back), "Lifted: its reader receives the newsletter again."),
        (
            CHANGE,
            str(left),
            "Lifted, but the address stays suppressed as the reader left it "
            "(unsubscribed): only they lift that, by subscribing again.",
        ),
    ]
    assert author.get(f"/admin/newsletter/suppression/{left}/history/").status_code == (
        200
    )


def test_lifting_several_at_once_logs_each_lift_and_none_for_a_row_lifted_meanwhile(
    author,
):
    SubscriberFactory(email="back@example.org")
    for name in ("back", "stranger", "gone"):
        address_suppress(email=f"{name}@example.org", reason=Reason.MANUAL)
    selected = list(Suppression.objects.order_by("pk").values_list("pk", flat=True))
    Suppression.objects.for_email("gone@example.org").delete()  # lifted elsewhere

    lift_selected(author, selected)

    assert sorted(desk_history()) == [
        (
            DELETION,
            str(selected[0]),
            "Lifted: its reader receives the newsletter again.",
        ),
        (
            DELETION,
            str(selected[1]),
            "Lifted: no reader holds the address; it may subscribe again.",
        ),
    ]


@pytest.mark.parametrize("pk", ["abc", "0", "9" * 30, "1.5", "%00"])
@pytest.mark.parametrize("view", ["delete", "change", "history"])
def test_a_suppression_the_url_names_wrongly_is_no_500(author, pk, view):
    address_suppress(email="sam@example.org", reason=Reason.HARD_BOUNCE)

    for method in (author.get, author.post):
        page = method(f"/admin/newsletter/suppression/{pk}/{view}/", {"post": "yes"})
        assert page.status_code in (302, 400, 403, 404), (method, page.status_code)

    assert Suppression.objects.count() == 1


def subscribe(client, on_commit, email: str):
    return on_commit(client.post, "/subscribe/", {"email": email})


def test_the_desk_suppresses_an_address_no_reader_holds_and_its_subscribe_is_ignored(
    author, client, on_commit
):
    """Someone who wrote in asking never to be emailed, before ever subscribing:
    a later request for their address sends nothing, and its page is the one
    any address gets."""
    added = author.post(
        "/admin/newsletter/suppression/add/", {"email": " Never@Example.ORG "}
    )
    assert added.status_code == 302
    assert Suppression.objects.for_email("never@example.org").get().reason == (
        Reason.MANUAL
    )

    client.logout()
    reference = subscribe(client, on_commit, "someone-else@example.org")
    mail.outbox.clear()
    page = subscribe(client, on_commit, "never@example.org")

    assert page.status_code == reference.status_code == 200
    assert page.content == reference.content
    assert mail.outbox == []
    assert not Subscriber.objects.filter(email="never@example.org").exists()


def test_an_address_added_at_the_desk_takes_a_readers_out_of_the_audience(author):
    reader = SubscriberFactory(email="sam@example.org")

    author.post("/admin/newsletter/suppression/add/", {"email": "SAM@example.org"})

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.SUPPRESSED


def test_an_invalid_address_is_refused_at_the_desk_and_nothing_is_suppressed(author):
    page = author.post(
        "/admin/newsletter/suppression/add/", {"email": "not an address"}
    )

    assert page.status_code == 200
    assert page.context["adminform"].form.errors["email"]
    assert not Suppression.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_bounce_recorded_before_suppressions_named_their_reader_is_lifted_for_them():
    """The list keeps only the address's hash: its reader, found by hashing
    every reader's address at each lift before, is found once, at deploy."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()  # every app's, as in test_comments
    before = ("newsletter", "0015_suppression_keeps_the_readers_own_reason")
    executor.migrate([before])
    old = executor.loader.project_state(before).apps
    reader = old.get_model("newsletter", "Subscriber").objects.create(
        email="sam@example.org",
        status=Subscriber.Status.BOUNCED,
        confirmed_at=timezone.now(),
    )
    other = old.get_model("newsletter", "Subscriber").objects.create(
        email="other@example.org", status=Subscriber.Status.BOUNCED
    )
    old.get_model("newsletter", "Suppression").objects.create(
        address_hash=Suppression.hash_address("sam@example.org"),
        reason=Reason.HARD_BOUNCE,
    )
    executor.loader.build_graph()
    executor.migrate(latest)

    lifted = suppression_lift(suppression=Suppression.objects.get())

    assert lifted.reader_status == Subscriber.Status.ACTIVE
    assert dict(Subscriber.objects.values_list("pk", "status")) == {
        reader.pk: Subscriber.Status.ACTIVE,
        other.pk: Subscriber.Status.BOUNCED,
    }


@pytest.mark.parametrize(
    "backend, reason, at_the_provider",
    [
        (
            esp.POSTMARK_BACKEND,
            Reason.HARD_BOUNCE,
            "Postmark keeps an address inactive after its hard bounce and refuses "
            "every email to it, a confirmation too: reactivate it in Postmark (the "
            "message stream's Suppressions).",
        ),
        (
            esp.ANYMAIL_POSTMARK,
            Reason.COMPLAINT,
            "Postmark keeps an address inactive after its spam complaint and "
            "refuses every email to it, a confirmation too: only Postmark's support "
            "can reactivate it; ask them.",
        ),
        (
            esp.ANYMAIL_MAILGUN,
            Reason.HARD_BOUNCE,
            "Mailgun keeps an address on its Bounces list and drops every email to "
            "it, a confirmation too, reporting a bounce that suppresses it here "
            "again: delete it from that list in Mailgun (the sending domain's "
            "Suppressions).",
        ),
        (
            esp.ANYMAIL_MAILGUN,
            Reason.COMPLAINT,
            "Mailgun keeps an address on its Complaints list and drops every email "
            "to it, a confirmation too, reporting a complaint that suppresses it "
            "here again: delete it from that list in Mailgun (the sending domain's "
            "Suppressions).",
        ),
    ],
)
def test_lifting_a_bounce_or_complaint_tells_the_author_to_lift_it_at_the_provider(
    author, settings, backend, reason, at_the_provider
):
    """The provider keeps its own list: lifted here only, the reader's emails,
    a confirmation of their subscribing again too, go nowhere."""
    settings.EMAIL_BACKEND = backend
    SubscriberFactory(email="sam@example.org")
    address_suppress(email="sam@example.org", reason=reason)

    page = lift(author, "sam@example.org")

    assert messages_of(page) == [
        f"Lifted: its reader receives the newsletter again. {at_the_provider}"
    ]


@pytest.mark.parametrize(
    "backend, reason",
    [
        (esp.ANYMAIL_POSTMARK, Reason.SOFT_BOUNCES),
        (esp.ANYMAIL_MAILGUN, Reason.MANUAL),
        ("django.core.mail.backends.locmem.EmailBackend", Reason.HARD_BOUNCE),
    ],
)
def test_a_lift_the_provider_keeps_no_list_of_says_nothing_of_it(
    author, settings, backend, reason
):
    """Neither provider keeps an address that soft-bounced, nor the desk's own
    suppression; nor is there any provider's list to lift with no provider."""
    settings.EMAIL_BACKEND = backend
    SubscriberFactory(email="sam@example.org")
    address_suppress(email="sam@example.org", reason=reason)

    page = lift(author, "sam@example.org")

    assert messages_of(page) == ["Lifted: its reader receives the newsletter again."]


def test_lifting_several_at_once_counts_those_the_provider_keeps(author, settings):
    settings.EMAIL_BACKEND = esp.ANYMAIL_MAILGUN
    for name in ("bounced", "also-bounced", "complained", "soft"):
        SubscriberFactory(email=f"{name}@example.org")
    for name in ("bounced", "also-bounced"):
        address_suppress(email=f"{name}@example.org", reason=Reason.HARD_BOUNCE)
    address_suppress(email="complained@example.org", reason=Reason.COMPLAINT)
    address_suppress(email="soft@example.org", reason=Reason.SOFT_BOUNCES)

    page = lift_selected(author, list(Suppression.objects.values_list("pk", flat=True)))

    assert messages_of(page) == [
        "4 suppressions lifted: 4 readers receive the newsletter again. "
        "2 of them were hard bounces: Mailgun keeps an address on its Bounces list "
        "and drops every email to it, a confirmation too, reporting a bounce that "
        "suppresses it here again: delete it from that list in Mailgun (the "
        "sending domain's Suppressions). "
        "1 of them was a spam complaint: Mailgun keeps an address on its "
        "Complaints list and drops every email to it, a confirmation too, "
        "reporting a complaint that suppresses it here again: delete it from that "
        "list in Mailgun (the sending domain's Suppressions)."
    ]
