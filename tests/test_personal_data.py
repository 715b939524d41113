"""Every model in newsletter/ and posts/ that holds a reader's or a commenter's
personal data is in their data export and goes with their erasure, or is listed
below as exempt, with the reason. A new model with an address, a name, an IP
address, a browser, a reader's own text, a provider's payload or a link to a
subscriber fails this test until it is one or the other."""

import hashlib
import json
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.core import mail
from django.core.cache import cache
from django.db import connection, models
from django.db.models.functions import Cast
from django.utils import timezone

from newsletter.models import (
    Batch,
    Consent,
    Delivery,
    Engagement,
    Event,
    Mailing,
    PreviousAddress,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.subscriptions import (
    address_suppress,
    email_change_confirm,
    subscriber_delete,
    subscriber_export,
    subscription_request,
)
from posts.comments.models import Comment

from .factories import (
    CommentFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
    UserFactory,
    desk_action,
)
from .locks import as_it_commits
from .test_preferences import one_time_link, url

pytestmark = pytest.mark.django_db

APPS = {"newsletter", "posts", "comments"}
# Fields that by their name hold something of a person's; by their type (an
# address, an IP address) or a link to a subscriber, any field does.
PERSONAL_NAMES = {
    "name",
    "email",
    "recipient",
    "raw",
    "user_agent",
    "body",
    "website",
    "address_hash",
}

# What is not the reader's to export and erase, and why.
EXEMPT = {
    # The publication's own places, bodies and sponsors: names of organisations.
    "posts.Region": "a region's name",
    "posts.Area": "an area's name",
    "posts.Organisation": "an inspected body's or owner's name",
    "posts.Category": "a category's name",
    "posts.Tag": "a tag's name",
    "posts.Sponsorship": "a sponsor's (an organisation's) name",
    # The author's text, not a reader's.
    "posts.Post": "the post's body, written by the desk",
    # Kept on erasure on purpose: a keyed hash nobody can read back, so that the
    # erased address is never mailed again (docs/security.md).
    # Its reader's row is named while they are held out (set null on erasure).
    "newsletter.Suppression": "a keyed hash that honours the erasure",
    # An uploaded image waiting for its renditions: the desk's file, by name.
    "posts.ImageToResize": "an uploaded image's file name",
    # A moderator's (the desk's, not a reader's) address, until their copy of a
    # comments digest goes, with the next digest at the latest.
    "newsletter.OwedCommentDigest": "a moderator's address, until their copy goes",
}


def personal_fields(model: type[models.Model]) -> list[str]:
    return [
        field.name
        for field in model._meta.get_fields()
        if field.concrete
        and (
            isinstance(field, models.EmailField | models.GenericIPAddressField)
            or field.name in PERSONAL_NAMES
            or (field.is_relation and field.related_model is Subscriber)
        )
    ]


# How to give the reader a row of each model, and where the export lists it.
def _delivery(reader: Subscriber) -> Delivery:
    # A digest's: an announcement's is in tests/test_preferences.py.
    digest = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST,
        frequency="daily",
        period=timezone.localdate(),
        slot=timezone.now(),
    )
    return Delivery.objects.create(
        mailing=digest,
        batch=Batch.objects.create(mailing=digest, number=1),
        subscriber=reader,
        status=Delivery.Status.SENT,
    )


def _engagement(reader: Subscriber) -> Engagement:
    announcement = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    return Engagement.objects.create(
        subscriber=reader, mailing=announcement, kind="open", at=timezone.now()
    )


def _previous_address(reader: Subscriber) -> PreviousAddress:
    return PreviousAddress.objects.create(
        subscriber=reader,
        email="old@example.org",
        moved_at=timezone.now() - timedelta(days=1),
    )


COVERED = {
    Subscriber: ("subscriber", lambda reader: reader),
    PreviousAddress: ("previous_addresses", _previous_address),
    SubscriberTopic: (
        "topics",
        lambda reader: SubscriberTopic.objects.create(
            subscriber=reader, kind="region", value="london"
        ),
    ),
    Consent: (
        "consents",
        lambda reader: Consent.objects.create(
            subscriber=reader, wording="Email me.", ip_address="192.0.2.1"
        ),
    ),
    Event: (
        "tracking_events",
        lambda reader: Event.objects.create(
            esp="postmark",
            event_id="e-1",
            event_type="bounced",
            recipient=reader.email,
            raw={"Email": reader.email},
        ),
    ),
    Delivery: ("deliveries", _delivery),
    Engagement: ("engagement", _engagement),
    Comment: ("comments", lambda reader: CommentFactory(email=reader.email)),
}


def test_every_model_with_personal_data_is_exported_and_erased_or_exempt():
    unaccounted = {
        model._meta.label: fields
        for model in apps.get_models()
        if model._meta.app_label in APPS
        and not model._meta.proxy
        and (fields := personal_fields(model))
        and model not in COVERED
        and model._meta.label not in EXEMPT
    }
    assert unaccounted == {}, (
        "Personal data neither exported and erased (COVERED) nor EXEMPT, with why"
    )
    labels = {model._meta.label for model in apps.get_models()}
    assert EXEMPT.keys() <= labels, "an exempt model that is gone"
    assert all(personal_fields(model) for model in COVERED)


@pytest.mark.parametrize("model", COVERED, ids=lambda model: model.__name__)
def test_each_model_with_personal_data_is_in_the_export_and_goes_with_erasure(
    model,
):
    reader = SubscriberFactory(email="reader@example.org", name="Sam")
    section, give = COVERED[model]
    row = give(reader)

    exported = json.loads(json.dumps(subscriber_export(subscriber=reader), default=str))
    # The reader had nothing else: the section lists this row.
    assert exported[section], f"{model.__name__} is not in the export"

    subscriber_delete(subscriber=reader)
    assert not model.objects.filter(pk=row.pk).exists()


def test_every_field_of_the_readers_own_row_is_in_their_export():
    """What the reader chose (their digest time, their answer on engagement) and
    what we noted about them (soft bounces, the last digest rounds) are held too."""
    reader = SubscriberFactory(
        email="reader@example.org",
        engagement_agreed_at=timezone.now(),
        digest_hour=7,
        digest_weekday=0,
        time_zone="Europe/Dublin",
        soft_bounces=2,
        last_daily_round_at=timezone.now(),
    )
    held = {
        field.name: getattr(reader, field.attname)
        for field in Subscriber._meta.concrete_fields
        if not field.primary_key
    }

    exported = subscriber_export(subscriber=reader)["subscriber"]

    assert exported == held


def test_a_late_event_about_the_previous_holders_email_stays_theirs():
    """Ann moves away from team@, Cal takes it; a bounce of the email Ann was sent
    there comes in late. It is Ann's (her export has it): Cal's export gave it
    to Cal, and Cal's erasure deleted Ann's record."""
    ann = SubscriberFactory(email="team@example.org")
    sent = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    Delivery.objects.create(
        mailing=sent,
        batch=Batch.objects.create(mailing=sent, number=1),
        subscriber=ann,
        status=Delivery.Status.SENT,
        esp_message_id="message-to-ann",
        sent_at=timezone.now() - timedelta(hours=2),
    )
    assert email_change_confirm(subscriber=ann, new_email="ann@example.org")
    cal = SubscriberFactory(email="team@example.org")
    late = Event.objects.create(
        esp="postmark",
        event_id="late-bounce",
        event_type="bounced",
        recipient="team@example.org",
        message_id="message-to-ann",
        raw={},
    )
    ann_has = subscriber_export(subscriber=ann)["tracking_events"]
    assert [event["event"] for event in ann_has] == ["bounced"]
    assert subscriber_export(subscriber=cal)["tracking_events"] == []
    subscriber_delete(subscriber=cal)
    assert Event.objects.filter(pk=late.pk).exists()


def test_the_export_lists_the_readers_suppressed_addresses_and_failed_emails_errors():
    """Neither was in it: a reader asking why our emails stopped, or what we hold
    on their old address, found nothing of either."""
    reader = SubscriberFactory(email="old@example.org")
    Suppression.objects.create(
        address_hash=Suppression.hash_address("old@example.org"),
        reason=Suppression.Reason.SOFT_BOUNCES,
    )
    email_change_confirm(subscriber=reader, new_email="reader@example.org")
    Suppression.objects.create(
        address_hash=Suppression.hash_address("reader@example.org"),
        reason=Suppression.Reason.UNSUBSCRIBED,
    )
    Suppression.objects.create(
        address_hash=Suppression.hash_address("someone@example.org"),
        reason=Suppression.Reason.COMPLAINT,
    )
    delivery = _delivery(reader)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.FAILED,
        error="provider: rejected (550 5.1.1 mailbox unavailable)",
    )

    exported = subscriber_export(subscriber=reader)

    assert [(s["address"], s["reason"]) for s in exported["suppressions"]] == [
        ("old@example.org", "soft_bounces"),
        ("reader@example.org", "unsubscribed"),
    ]
    assert [(d["status"], d["error"]) for d in exported["deliveries"]] == [
        ("failed", "provider: rejected (550 5.1.1 mailbox unavailable)")
    ]


def test_a_post_taken_down_since_it_was_sent_is_named_in_the_export_without_a_link():
    """Each email's posts were linked, and one the author has since taken off the
    site led to "Page not found"."""
    reader = SubscriberFactory()
    delivery = _delivery(reader)
    still = PublishedPostFactory(title="Still up")
    gone = PublishedPostFactory(title="Taken down")
    delivery.posts.add(still, gone)
    gone.status = gone.Status.DRAFT
    gone.save()

    [exported] = subscriber_export(subscriber=reader)["deliveries"]

    assert sorted(exported["posts"], key=lambda post: post["title"]) == [
        {
            "title": "Still up",
            "url": f"http://127.0.0.1:8000/posts/{still.slug}/",
            "on_site": True,
        },
        {"title": "Taken down", "url": None, "on_site": False},
    ]


def test_an_old_address_suppressed_after_the_reader_left_it_is_not_in_their_export():
    reader = SubscriberFactory(email="old@example.org")
    email_change_confirm(subscriber=reader, new_email="reader@example.org")
    SubscriberFactory(email="old@example.org")
    Suppression.objects.create(
        address_hash=Suppression.hash_address("old@example.org"),
        reason=Suppression.Reason.COMPLAINT,
    )

    assert subscriber_export(subscriber=reader)["suppressions"] == []


def test_erasure_takes_why_an_email_failed_and_leaves_only_the_keyed_hash():
    reader = SubscriberFactory(email="reader@example.org")
    delivery = _delivery(reader)
    Delivery.objects.filter(pk=delivery.pk).update(
        status=Delivery.Status.FAILED, error="provider: rejected"
    )
    Suppression.objects.create(
        address_hash=Suppression.hash_address("reader@example.org"),
        reason=Suppression.Reason.UNSUBSCRIBED,
    )

    subscriber_delete(subscriber=reader)

    assert not Delivery.objects.filter(error="provider: rejected").exists()
    # The hash stays, by design (EXEMPT): the erased address is never mailed again.
    assert list(Suppression.objects.values_list("reason", flat=True)) == ["deleted"]


def columns_naming(address: str) -> list[str]:
    """Every text column of every table (a JSON one read as its text) holding the
    address."""
    return [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        if not model._meta.proxy
        for field in model._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField | models.JSONField)
        and model._base_manager.annotate(text=Cast(field.name, models.TextField()))
        .filter(text__icontains=address)
        .exists()
    ]


def test_after_an_erasure_no_column_of_any_table_holds_the_address():
    reader = SubscriberFactory(email="reader@example.org", name="Sam")
    other = SubscriberFactory(email="other@example.org")
    for row in COVERED.values():
        row[1](reader)
    Delivery.objects.filter(subscriber=reader).update(
        status=Delivery.Status.FAILED,
        error="provider: rejected (550 5.1.1 <reader@example.org>: no such user)",
    )
    LogEntry.objects.log_actions(
        user_id=UserFactory().pk,
        queryset=[reader, *Delivery.objects.filter(subscriber=reader)],
        action_flag=CHANGE,
        change_message=[{"changed": {"fields": ["Status"]}}],
    )
    assert "newsletter.Event.raw" in columns_naming("reader@example.org")

    subscriber_delete(subscriber=reader)

    assert columns_naming("reader@example.org") == []
    assert columns_naming("old@example.org") == []
    assert columns_naming(other.email) == ["newsletter.Subscriber.email"]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_an_erasure_forgets_the_address_the_reader_confirms_a_move_to_as_it_runs():
    """The reader confirms their move to a new address as their erasure runs
    (each from the reader as read when their page opened): the erasure read the
    old address only, before it waited for the move to commit, and left the new
    one unhashed (free for an old list to subscribe again) and what was written
    under it."""
    reader = SubscriberFactory(email="old@example.org")
    CommentFactory(email="new@example.org")
    moving, erased = (Subscriber.objects.get(pk=reader.pk) for _ in range(2))

    as_it_commits(
        lambda: email_change_confirm(subscriber=moving, new_email="new@example.org"),
        lambda: subscriber_delete(subscriber=erased),
        must_wait=True,
    )

    assert not Subscriber.objects.exists()
    assert sorted(Suppression.objects.values_list("address_hash", "reason")) == sorted(
        (Suppression.hash_address(email), Suppression.Reason.DELETED)
        for email in ["old@example.org", "new@example.org"]
    )
    assert columns_naming("new@example.org") == []
    assert columns_naming("old@example.org") == []


def test_my_data_holds_what_the_desk_did_to_me_my_emails_and_comments_but_not_who():
    """The export said it was everything held about the reader, and left out
    the desk's history of them, which the erasure rewrites. The desk's members
    are named by their role: who they are is not the reader's data."""
    reader = SubscriberFactory(email="reader@example.org", name="Sam")
    editor = StaffFactory(username="jo.bloggs", first_name="Jo", role="Editor")
    email = _delivery(reader)
    comment = CommentFactory(email=reader.email)
    someone_elses = CommentFactory(email="other@example.org")
    for row in (reader, email, comment, someone_elses):
        LogEntry.objects.log_actions(
            user_id=editor.pk,
            queryset=[row],
            action_flag=CHANGE,
            change_message=[{"changed": {"fields": ["Status"]}}],
        )

    exported = json.loads(json.dumps(subscriber_export(subscriber=reader), default=str))

    assert [
        (entry["about"], entry["action"], entry["by"], entry["change"])
        for entry in exported["desk_history"]
    ] == [
        (str(row), "changed", "Editor", "Changed Status.")
        for row in (reader, email, comment)
    ]
    assert all(entry["at"] for entry in exported["desk_history"])
    assert "jo.bloggs" not in json.dumps(exported)


def test_my_data_holds_no_page_or_topics_a_stranger_chose_for_my_address():
    """Anyone may type a reader's address into the form, with the topics and how
    often they chose, from the page they came from: that is theirs, withheld as
    the name and IP address they sent are. What a request in the reader's name
    was, and when, is the reader's."""
    reader = SubscriberFactory(email="reader@example.org")
    # A paused reader's address subscribed again asks them to confirm it.
    Subscriber.objects.filter(pk=reader.pk).update(paused_at=timezone.now())
    subscription_request(
        email=reader.email,
        topics=["region:london"],
        frequency="weekly",
        page="/posts/a-strangers-reading/",
    )

    [exported] = subscriber_export(subscriber=reader)["consents"]

    assert (exported["page"], exported["topics"], exported["frequency"]) == (
        None,
        None,
        None,
    )
    assert exported["source"] == "subscribe form"
    assert exported["confirmed_at"] is None


@pytest.mark.usefixtures("celery_eager")
def test_my_downloaded_data_shows_the_link_i_downloaded_it_with_as_spent(
    client, on_commit
):
    """The export was made from the reader as read before their one-time link
    was spent: it said a link was still out, one that no longer works."""
    reader = SubscriberFactory(email="reader@example.org")
    link = one_time_link(client, on_commit, reader, "export/")

    data = json.loads(client.post(link).content)

    assert data["subscriber"]["one_time_link_sent_at"] is None
    reader.refresh_from_db()
    assert reader.one_time_link_sent_at is None


def test_the_desk_downloads_the_data_of_a_reader_we_no_longer_email(client):
    """A reader whose address bounced is told no link can reach them and to write
    to us: the desk had no way to give them their data, only to erase it."""
    reader = SubscriberFactory(email="reader@example.org", name="Ann")
    address_suppress(email=reader.email, reason=Suppression.Reason.HARD_BOUNCE)
    CommentFactory(email=reader.email)
    client.force_login(UserFactory())

    response = desk_action(client, "download_data", reader)

    assert response["Content-Disposition"] == (
        'attachment; filename="my-newsletter-data.json"'
    )
    data = json.loads(response.content)
    assert data["subscriber"]["name"] == "Ann"
    assert [s["reason"] for s in data["suppressions"]] == ["hard_bounce"]
    assert len(data["comments"]) == 1


def test_the_desk_downloads_one_readers_data_at_a_time(client):
    readers = SubscriberFactory.create_batch(2)
    client.force_login(UserFactory())

    response = desk_action(client, "download_data", *readers)

    assert response.status_code == 302
    [message] = get_messages(response.wsgi_request)
    assert "one reader" in str(message)


@pytest.mark.parametrize(
    "reason",
    [
        Suppression.Reason.COMPLAINT,
        Suppression.Reason.HARD_BOUNCE,
        Suppression.Reason.MANUAL,
    ],
)
def test_a_reader_we_no_longer_email_is_told_where_to_write_to_delete_their_data(
    client, settings, reason
):
    """No link can reach an address that complained, bounced or that the desk
    suppressed, so its reader is asked to write to us: the pages never said
    where, and a reader who marked us as spam could not have their data erased."""
    settings.NEWSLETTER_REPLY_TO = "On Probation <editor@probation.example>"
    # A link the reader's mail program opens, addressed.
    write_to_us = (
        'write to us at <a href="mailto:editor@probation.example">'
        "editor@probation.example</a>"
    )
    reader = SubscriberFactory(email="reader@example.org")
    address_suppress(email=reader.email, reason=reason)

    centre = client.get(url(reader))
    refused = client.post(url(reader, "delete/"))
    not_resubscribed = client.post(url(reader), {"action": "resubscribe"})

    # Why nothing is sent, and where to ask for the data instead.
    assert centre.text.count(write_to_us) == 2
    # Its data section offered the links no address of theirs can be sent.
    assert "Email me the link" not in centre.text
    assert "we email your address a link" not in centre.text
    assert refused.status_code == 409
    assert write_to_us in refused.text
    assert not_resubscribed.status_code == 409
    assert write_to_us in not_resubscribed.text
    assert mail.outbox == []
    assert Subscriber.objects.filter(pk=reader.pk).exists()


def cache_contents() -> str:
    """Every key of this test's in the cache, with its value, as text."""
    store = cache._cache
    if isinstance(store, dict):  # local memory: values pickled, text in them shows
        return " ".join(f"{key} {kept!r}" for key, kept in store.items())
    client = store.get_client()
    return " ".join(
        f"{key!r} {client.get(key)!r}"
        for key in client.scan_iter(match=cache.make_key("*"))
    )


@pytest.mark.usefixtures("celery_eager")
def test_the_limits_counted_for_an_erased_address_keep_no_plain_hash_of_it(
    client, on_commit
):
    """The limits on emailing an address count it in the cache for up to a day,
    after its reader erased their data too, under a plain SHA-256 of it: anyone
    reading the cache could match it to a guess at the address, as the keyed
    hash the suppression list keeps is made so that nobody can."""
    on_commit(client.post, "/subscribe/", {"email": "reader@example.org"})
    assert len(mail.outbox) == 1

    subscriber_delete(subscriber=Subscriber.objects.get())

    held = cache_contents()
    assert "throttle:" in held  # still counted: the limits hold for their window
    plain = hashlib.sha256(b"reader@example.org").hexdigest()[:32]
    assert plain not in held


@pytest.mark.usefixtures("celery_eager")
def test_deleting_an_international_address_names_it_as_its_reader_writes_it(
    client, on_commit
):
    """The page and its answer named the address in its stored ASCII form."""
    reader = SubscriberFactory(email="sam@xn--bcher-kva.example")
    link = one_time_link(client, on_commit, reader, "delete/")

    asked, deleted = client.get(link).text, client.post(link).text

    assert "This deletes <strong>sam@bücher.example</strong>" in asked
    assert "We have deleted sam@bücher.example and" in deleted
    assert not Subscriber.objects.exists()
