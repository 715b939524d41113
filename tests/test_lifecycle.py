import re
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.db.models.signals import pre_delete
from django.utils import timezone

from newsletter import delivery, subscriptions, tasks
from newsletter.models import Consent, Delivery, Mailing, Subscriber, Suppression
from newsletter.tokens import Purpose, make_token, read_token
from posts.services import post_publish

from .factories import PostFactory, SubscriberFactory, confirm_link
from .locks import as_it_commits, in_a_thread, until_done_or_waiting_for_a_lock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

Reason = Suppression.Reason


def preferences_of(page, words: str) -> Subscriber:
    """The reader whose preference centre the page's link `words` opens: its
    token, made as the page was, is not the test's, a second later."""
    token = re.search(rf'<a href="[^"]*/preferences/([^"/]+)/">{words}', page.text)
    return read_token(token[1], Purpose.PREFERENCES)


def subscribe(client, on_commit, email):
    return on_commit(client.post, "/subscribe/", {"email": email})


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (Reason.UNSUBSCRIBED, Subscriber.Status.UNSUBSCRIBED),
        (Reason.HARD_BOUNCE, Subscriber.Status.BOUNCED),
        (Reason.SOFT_BOUNCES, Subscriber.Status.BOUNCED),
        (Reason.COMPLAINT, Subscriber.Status.COMPLAINED),
        (Reason.MANUAL, Subscriber.Status.SUPPRESSED),
    ],
)
def test_a_suppressed_address_leaves_the_audience_and_gets_no_post(
    on_commit, reason, status
):
    kept = SubscriberFactory(email="kept@example.org")
    gone = SubscriberFactory(email="gone@example.org")
    subscriptions.address_suppress(email="Gone@Example.org ", reason=reason)
    gone.refresh_from_db()
    assert gone.status == status
    assert list(Subscriber.objects.confirmed()) == [kept]

    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["kept@example.org"]]


def test_the_suppression_list_keeps_a_keyed_hash_not_the_address():
    subscriptions.address_suppress(email="reader@example.org", reason=Reason.COMPLAINT)
    suppression = Suppression.objects.get()
    assert "reader" not in suppression.address_hash
    assert len(suppression.address_hash) == 64
    assert Suppression.objects.for_email(" READER@example.org").exists()


def test_a_stronger_reason_is_never_replaced_by_a_weaker_one():
    subscriber = SubscriberFactory(email="reader@example.org")
    subscriptions.address_suppress(email=subscriber.email, reason=Reason.COMPLAINT)
    subscriptions.subscriber_unsubscribe(subscriber=subscriber)
    subscriptions.address_suppress(email=subscriber.email, reason=Reason.SOFT_BOUNCES)
    assert Suppression.objects.get().reason == Reason.COMPLAINT
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.COMPLAINED


@pytest.mark.parametrize(
    "reason", [Reason.COMPLAINT, Reason.HARD_BOUNCE, Reason.SOFT_BOUNCES]
)
def test_a_bounced_or_complained_address_cannot_resubscribe_through_the_form(
    client, on_commit, reason
):
    reference = subscribe(client, on_commit, "someone@example.org")
    mail.outbox.clear()
    subscriber = SubscriberFactory(email="blocked@example.org")
    subscriptions.address_suppress(email=subscriber.email, reason=reason)

    response = subscribe(client, on_commit, "blocked@example.org")

    assert response.status_code == 200
    assert response.content == reference.content
    assert mail.outbox == []
    assert not Consent.objects.filter(subscriber=subscriber).exists()
    subscriber.refresh_from_db()
    assert subscriber.status != Subscriber.Status.ACTIVE


def test_a_complaint_survives_deletion_and_still_blocks_the_form(client, on_commit):
    subscriber = SubscriberFactory(email="blocked@example.org")
    subscriptions.address_suppress(email=subscriber.email, reason=Reason.COMPLAINT)
    subscriptions.subscriber_delete(subscriber=subscriber)
    subscribe(client, on_commit, "blocked@example.org")
    assert mail.outbox == []
    assert not Subscriber.objects.exists()
    assert Suppression.objects.get().reason == Reason.COMPLAINT


def test_a_confirmation_queued_before_a_bounce_is_not_sent():
    subscriber = SubscriberFactory(
        email="reader@example.org", status=Subscriber.Status.PENDING
    )
    consent = Consent.objects.create(subscriber=subscriber, wording="Email me.")
    subscriptions.address_suppress(email=subscriber.email, reason=Reason.HARD_BOUNCE)
    tasks.send_confirmation.delay(consent.pk)
    assert mail.outbox == []


def test_a_confirmation_link_cannot_confirm_a_complained_address(client):
    subscriber = SubscriberFactory(
        status=Subscriber.Status.PENDING, confirmation_sent_at=timezone.now()
    )
    token = make_token(subscriber, Purpose.CONFIRM)
    subscriptions.address_suppress(email=subscriber.email, reason=Reason.COMPLAINT)
    client.post(f"/subscribe/confirm/{token}/")
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.COMPLAINED
    assert not Subscriber.objects.confirmed().exists()


def test_an_unsubscribed_reader_comes_back_only_through_a_fresh_double_opt_in(
    client, on_commit
):
    subscribe(client, on_commit, "reader@example.org")
    first_link = confirm_link(mail.outbox[0])
    confirmed = on_commit(client.post, first_link)
    assert confirmed.status_code == 200
    assert "You are subscribed" in confirmed.text
    subscriber = Subscriber.objects.get()
    subscriptions.subscriber_unsubscribe(subscriber=subscriber)

    # The old confirmation link, still within its week, does not bring them back.
    client.post(first_link)
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED

    mail.outbox.clear()
    subscribe(client, on_commit, "reader@example.org")
    assert len(mail.outbox) == 1
    on_commit(client.post, confirm_link(mail.outbox[0]))
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.exists()


def test_a_paused_reader_with_no_email_left_comes_back_through_the_form(
    client, on_commit
):
    """A reader paused, then deleted every email carrying their preferences link:
    nothing more arrives while paused, so the form is their only way back. It
    sends a confirmation, and confirming resumes them (the form sent nothing,
    and they stayed paused for good). Resumed, not joined: they are dated from
    when they joined, as the desk counts them and their digests look back, and
    are not welcomed again (they were, as if they had just joined)."""
    reader = SubscriberFactory(email="reader@example.org")
    joined = reader.confirmed_at
    subscriptions.subscriber_pause(subscriber=reader)

    subscribe(client, on_commit, "reader@example.org")
    [confirmation] = mail.outbox
    assert confirmation.subject == "Confirm your subscription to On Probation"
    page = on_commit(client.post, confirm_link(confirmation))

    reader.refresh_from_db()
    assert reader.paused_at is None
    assert reader.confirmed_at == joined < reader.consents.get().confirmed_at
    assert reader.welcome_rung_at is None
    assert mail.outbox == [confirmation]
    assert "<h1>Your newsletter is back on</h1>" in page.text
    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox[1:]] == [["reader@example.org"]]


def test_an_unsubscribed_reader_coming_back_is_welcomed_as_a_new_reader(
    client, on_commit
):
    """They left, and join again: dated from this confirmation, and welcomed."""
    reader = SubscriberFactory(email="reader@example.org")
    subscriptions.subscriber_pause(subscriber=reader)
    subscriptions.subscriber_unsubscribe(subscriber=reader)
    subscribe(client, on_commit, "reader@example.org")

    page = on_commit(client.post, confirm_link(mail.outbox[0]))

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.paused_at is None
    assert reader.confirmed_at == reader.consents.get().confirmed_at
    assert [m.subject for m in mail.outbox] == [
        "Confirm your subscription to On Probation",
        "Welcome to On Probation",
    ]
    assert "<h1>You are subscribed</h1>" in page.text


def test_a_paused_reader_using_their_old_confirmation_link_is_told_they_are_paused(
    client, on_commit
):
    """Paused, a reader looking for a way back finds their confirmation email and
    presses its button again: that request was confirmed long ago, so nothing
    changes, and the page says so and where to resume (it said new posts would
    arrive)."""
    subscribe(client, on_commit, "sam@example.org")
    link = confirm_link(mail.outbox[0])
    on_commit(client.post, link)
    reader = Subscriber.objects.get()
    subscriptions.subscriber_pause(subscriber=reader)

    page = on_commit(client.post, link)

    reader.refresh_from_db()
    assert reader.paused_at is not None
    assert page.status_code == 200
    assert "<h1>Your newsletter is paused</h1>" in page.text
    assert "New posts will arrive" not in page.text
    assert preferences_of(page, "resume it") == reader


def test_a_reader_the_author_suppressed_again_before_they_confirmed_is_told_so(
    client, on_commit
):
    """The author lifted their suppression of a reader who asked to come back, and
    suppressed the address again before the reader used their link: nothing will
    be sent, and the page says so (it said "You are subscribed")."""
    reader = SubscriberFactory(
        email="sam@example.org", status=Subscriber.Status.SUPPRESSED
    )
    subscribe(client, on_commit, "sam@example.org")
    [confirmation] = mail.outbox
    subscriptions.address_suppress(email="sam@example.org", reason=Reason.MANUAL)

    page = on_commit(client.post, confirm_link(confirmation))

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.SUPPRESSED
    assert mail.outbox == [confirmation]  # no welcome
    assert "<h1>You are not subscribed</h1>" in page.text
    assert "You are subscribed" not in page.text
    assert preferences_of(page, "Your preferences</a>") == reader


def test_a_deleted_person_may_come_back_through_a_fresh_double_opt_in(
    client, on_commit
):
    subscriptions.subscriber_delete(subscriber=SubscriberFactory(email="r@example.org"))
    assert Suppression.objects.get().reason == Reason.DELETED
    assert Subscriber.objects.confirmed().count() == 0

    subscribe(client, on_commit, "r@example.org")
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING
    on_commit(client.post, confirm_link(mail.outbox[0]))
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.exists()


def test_confirming_sends_one_welcome_email_with_personal_links(client, on_commit):
    subscribe(client, on_commit, "reader@example.org")
    on_commit(client.post, confirm_link(mail.outbox[0]))
    on_commit(client.post, confirm_link(mail.outbox[0]))  # a second click

    assert [m.subject for m in mail.outbox] == [
        "Confirm your subscription to On Probation",
        "Welcome to On Probation",
    ]
    welcome = mail.outbox[1]
    assert welcome.to == ["reader@example.org"]
    assert "/preferences/" in welcome.body
    assert "/unsubscribe/" in welcome.body
    html = welcome.alternatives[0][0]
    assert "/preferences/" in html


def test_pending_subscriptions_expire_and_are_purged_by_the_beat_task():
    now = timezone.now()
    expired = SubscriberFactory(
        status=Subscriber.Status.PENDING,
        confirmed_at=None,
        confirmation_sent_at=now - timedelta(days=8),
    )
    Consent.objects.create(subscriber=expired, wording="w", wording_version="v")
    subscriptions.topics_set(subscriber=expired)
    recent = SubscriberFactory(
        status=Subscriber.Status.PENDING,
        confirmed_at=None,
        confirmation_sent_at=now - timedelta(days=6),
    )
    old_but_confirmed = SubscriberFactory(confirmation_sent_at=now - timedelta(days=30))

    schedule = settings.CELERY_BEAT_SCHEDULE["purge-expired-pending"]
    assert schedule["task"] == "newsletter.tasks.purge_expired_pending"
    # One reader deleted, whatever went with them (their request, their topics).
    assert tasks.purge_expired_pending.delay().get() == 1

    assert set(Subscriber.objects.all()) == {recent, old_but_confirmed}
    assert not Consent.objects.exists()


def test_requests_never_confirmed_are_forgotten_when_pending_ones_are(
    client, on_commit
):
    # Given a reader who left, and someone asking for their address again: the
    # request (the asker's IP address, the name they typed) was kept for good,
    # although its link expired and nobody may ever confirm it.
    reader = SubscriberFactory(email="reader@example.org", name="Sam")
    kept = Consent.objects.create(
        subscriber=reader, wording="w", confirmed_at=reader.confirmed_at
    )
    subscriptions.subscriber_unsubscribe(subscriber=reader)
    on_commit(
        client.post,
        "/subscribe/",
        {"email": "reader@example.org", "name": "Not Sam"},
        REMOTE_ADDR="198.51.100.7",
    )
    asked = Consent.objects.get(confirmed_at=None)
    assert asked.ip_address == "198.51.100.7"
    recent = Consent.objects.create(subscriber=reader, wording="w")

    # When the link has expired and beat purges what was never confirmed,
    expired = timezone.now() - timedelta(
        seconds=settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS + 60
    )
    Consent.objects.filter(pk__in=[asked.pk, kept.pk]).update(created_at=expired)
    tasks.purge_expired_pending.delay()

    # then the request is gone; the reader, their consent and a live request stay.
    assert set(Consent.objects.all()) == {kept, recent}
    assert Subscriber.objects.get() == reader


def an_expired_request(email: str) -> Subscriber:
    """A reader who asked once, long enough ago for the purge to take them."""
    long_ago = timezone.now() - timedelta(
        seconds=settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS + 60
    )
    reader = SubscriberFactory(
        email=email, status="pending", confirmed_at=None, confirmation_sent_at=long_ago
    )
    Consent.objects.create(subscriber=reader, wording="w", created_at=long_ago)
    return reader


def the_request_is_kept(client, email: str) -> None:
    """The reader told to check their inbox finds a confirmation there, and its
    link subscribes them."""
    [confirmation] = [m for m in mail.outbox if m.to == [email]]
    assert client.post(confirm_link(confirmation)).status_code == 200
    assert Subscriber.objects.get(email=email).status == Subscriber.Status.ACTIVE


needs_two_connections = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)


@needs_two_connections
@pytest.mark.django_db(transaction=True)
def test_a_request_made_as_the_purge_deletes_its_reader_is_kept(client):
    """The purge read the expired reader, the reader asked again and was told to
    check their inbox, then the purge deleted the reader with the new request:
    the link in the email led nowhere."""
    an_expired_request("reader@example.org")
    asking, answers = [], []

    def request_as_the_purge_deletes(sender, instance, **kwargs):
        if instance.email == "reader@example.org" and not asking:
            asking.append(
                in_a_thread(
                    lambda: subscriptions.subscription_request(email=instance.email),
                    answers,
                )
            )
            # The request commits at once (the race), or waits for the purge.
            until_done_or_waiting_for_a_lock(asking[0])

    pre_delete.connect(request_as_the_purge_deletes, sender=Subscriber)
    try:
        subscriptions.pending_purge_expired()
    finally:
        pre_delete.disconnect(request_as_the_purge_deletes, sender=Subscriber)
    asking[0].join(timeout=10)

    assert answers == [None]  # the request ended without raising
    the_request_is_kept(client, "reader@example.org")


@needs_two_connections
@pytest.mark.django_db(transaction=True)
def test_the_purge_leaves_a_reader_whose_request_is_being_written(client):
    """It waited for the request, then deleted its reader, and failed at its
    commit on the request's consent: nothing expired was purged that day."""
    an_expired_request("reader@example.org")
    other = an_expired_request("other@example.org")

    _, purged = as_it_commits(
        lambda: subscriptions.subscription_request(email="reader@example.org"),
        subscriptions.pending_purge_expired,
    )

    assert purged
    assert not Subscriber.objects.filter(pk=other.pk).exists()
    the_request_is_kept(client, "reader@example.org")


@needs_two_connections
@pytest.mark.django_db(transaction=True)
def test_a_request_made_as_the_purge_commits_is_kept(client):
    """The request waits for the purge, and asks anew for an address free again."""
    an_expired_request("reader@example.org")

    as_it_commits(
        subscriptions.pending_purge_expired,
        lambda: subscriptions.subscription_request(email="reader@example.org"),
    )

    the_request_is_kept(client, "reader@example.org")


def test_a_purge_sooner_than_the_confirmation_link_expires_fails_the_checks(
    settings,
):
    settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS = 7 * 86400
    settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS = 3 * 86400
    with pytest.raises(SystemCheckError) as refused:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "newsletter.E002" in str(refused.value)
    assert "NEWSLETTER_PENDING_EXPIRE_DAYS (3) is shorter than" in str(refused.value)
    assert "NEWSLETTER_CONFIRM_MAX_AGE_DAYS (7)" in str(refused.value)

    # As long as the link, or longer, the purge never takes a live link's row.
    settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS = 7 * 86400
    call_command("check", stdout=StringIO(), stderr=StringIO())


def test_a_complained_address_receives_nothing_from_any_path(client, on_commit):
    reader = SubscriberFactory(email="spam@example.org")
    other = SubscriberFactory(email="other@example.org")
    subscriptions.address_suppress(email=reader.email, reason=Reason.COMPLAINT)
    mail.outbox.clear()

    subscribe(client, on_commit, "spam@example.org")
    preferences = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"
    on_commit(client.post, preferences, {"action": "resubscribe"})
    on_commit(client.post, preferences + "export/")
    other_preferences = f"/preferences/{make_token(other, Purpose.PREFERENCES)}/"
    on_commit(
        client.post, other_preferences + "email/", {"new_email": "spam@example.org"}
    )
    [one_time_link] = mail.outbox
    assert one_time_link.to == ["other@example.org"]
    on_commit(client.post, re.search(r"/preferences/once/\S+/", one_time_link.body)[0])
    consent = Consent.objects.create(subscriber=reader, wording="Email me.")
    tasks.send_confirmation.delay(consent.pk)
    tasks.send_welcome.delay(reader.pk)
    asked = timezone.now()
    Subscriber.objects.filter(pk=other.pk).update(
        email_change_requested_at=asked, email_change_to="spam@example.org"
    )
    tasks.send_email_change.delay(other.pk, requested_at=asked.isoformat())
    on_commit(
        subscriptions.one_time_link_request,
        subscriber=reader,
        request=subscriptions.OneTimeRequest.EXPORT,
    )
    on_commit(post_publish, post=PostFactory())

    assert [m.to for m in mail.outbox] == [["other@example.org"]] * 2


def test_an_address_suppressed_after_planning_is_skipped_when_its_batch_goes_out():
    reader = SubscriberFactory(email="reader@example.org")
    post = PostFactory()
    post_publish(post=post)  # on_commit not run: planned below, by hand
    send = Mailing.objects.get(post=post)
    while delivery.mailing_plan_page(mailing_id=send.pk):
        pass
    subscriptions.address_suppress(email=reader.email, reason=Reason.HARD_BOUNCE)

    for batch in send.batches.all():
        delivery.batch_send(batch_id=batch.pk)

    assert mail.outbox == []
    assert Delivery.objects.get().status == Delivery.Status.SKIPPED
