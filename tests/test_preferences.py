import json
import re
import threading
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import mail, signing
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from newsletter import tokens
from newsletter.emails import preferences_url
from newsletter.models import (
    Batch,
    Consent,
    Delivery,
    Event,
    Mailing,
    PreviousAddress,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.subscriptions import (
    CONSENT_VERSION,
    CONSENT_WORDING,
    ENGAGEMENT_CONSENT_WORDING,
    address_suppress,
    email_change_confirm,
    email_change_send,
    is_blocked,
    subscriber_confirm,
    subscriber_delete,
    subscriber_export,
    subscriber_pause,
    subscription_request,
    suppression_lift,
)
from newsletter.tokens import Purpose, make_token
from posts.comments.models import Comment
from posts.models import PostUpdate
from posts.services import post_publish

from .factories import (
    CommentFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
)
from .locks import as_erasure_commits, in_a_thread, until_done_or_waiting_for_a_lock
from .migrating import migrate_again_after

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def form_request(subscriber, *, ip_address: str, confirmed: bool) -> Consent:
    """A subscribe request for the subscriber's address, as the form records it."""
    return Consent.objects.create(
        subscriber=subscriber,
        wording="Email me each new post.",
        wording_version="2026-11-26",
        source="subscribe form",
        ip_address=ip_address,
        confirmed_at=timezone.now() if confirmed else None,
    )


@pytest.fixture
def reader():
    subscriber = SubscriberFactory(email="reader@example.org", name="Sam")
    form_request(subscriber, ip_address="192.0.2.1", confirmed=True)
    return subscriber


def url(subscriber, suffix="") -> str:
    return f"/preferences/{make_token(subscriber, Purpose.PREFERENCES)}/{suffix}"


def link_in(message, path: str) -> str:
    return re.search(rf"https?://[^/\s]+({path}\S+/)", message.body)[1]


def one_time_link(client, on_commit, reader, suffix: str, data=None) -> str:
    """Ask from the preference centre, and take the link that arrives at the
    reader's own address."""
    mail.outbox.clear()
    response = on_commit(client.post, url(reader, suffix), data or {})
    assert response.status_code == 200
    assert "We sent a link to your address" in response.content.decode()
    [message] = mail.outbox
    assert message.to == [reader.email]
    mail.outbox.clear()
    return link_in(message, "/preferences/once/")


def ask_to_move(client, on_commit, reader, new_email: str):
    """The whole request to move: the form, then the one-time link's button."""
    link = one_time_link(client, on_commit, reader, "email/", {"new_email": new_email})
    return on_commit(client.post, link)


def test_preferences_url_is_an_absolute_link_to_the_centre(client, reader):
    link = preferences_url(reader)
    assert link.startswith("http://127.0.0.1:8000/preferences/")
    response = client.get(link.removeprefix("http://127.0.0.1:8000"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "reader@example.org" in page
    assert "Subscribed" in page


@pytest.mark.parametrize(
    "token", ["nonsense", "a:b:c", "x" * 300], ids=["junk", "colons", "long"]
)
def test_a_bad_token_gets_a_clear_404(client, token):
    for suffix in ("", "export/", "delete/", "email/"):
        response = client.post(f"/preferences/{token}/{suffix}")
        assert response.status_code == 404
        assert "not valid" in response.content.decode()


def test_an_unsubscribe_token_does_not_open_the_preference_centre(client, reader):
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    assert client.get(f"/preferences/{token}/").status_code == 404


def test_every_action_needs_the_pages_csrf_token(reader):
    client = Client(enforce_csrf_checks=True)
    for suffix, data in [
        ("", {"action": "unsubscribe"}),
        ("", {"action": "pause"}),
        ("email/", {"new_email": "new@example.org"}),
        ("export/", {}),
        ("delete/", {}),
    ]:
        assert client.post(url(reader, suffix), data).status_code == 403
    reader.refresh_from_db()
    assert (reader.status, reader.paused_at) == (Subscriber.Status.ACTIVE, None)
    assert mail.outbox == []


def test_a_head_request_gets_the_pages_answer_without_it_and_changes_nothing(
    client, reader, on_commit
):
    """Mail scanners and link checkers may ask for a link with HEAD: each page a
    link opens answers as to GET, without the body, and does nothing."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm_move = link_in(mail.outbox[0], "/preferences/email/confirm/")
    delete = one_time_link(client, on_commit, reader, "delete/")

    def headers(response) -> dict:
        # Expires is the time of the answer plus none: a second may pass between.
        return {k: v for k, v in response.headers.items() if k != "Expires"}

    for page in [url(reader), url(reader, "delete/"), delete, confirm_move]:
        head, get = client.head(page), client.get(page)
        assert (head.status_code, head.content) == (200, b""), page
        assert headers(head) == headers(get), page
        assert head.has_header("Expires"), page

    reader.refresh_from_db()
    assert (reader.email, reader.status) == ("reader@example.org", "active")
    # The one-time link is unspent: the reader's own POST still deletes.
    assert "Your data is deleted" in client.post(delete).content.decode()


@pytest.mark.parametrize("form", ["topics/", "email/", "export/"])
def test_a_forms_address_opened_again_shows_the_preferences_and_changes_nothing(
    client, reader, form
):
    """After saving their topics, the reader is at the address the form posted
    to; opened again later (a bookmark, tabs the browser restores), it was a
    blank page: 405, with no body."""
    page = url(reader)
    for response in [client.get(page + form), client.head(page + form)]:
        assert response.status_code == 302
        assert response["Location"] == page
    assert "Your newsletter preferences" in client.get(page + form, follow=True).text
    reader.refresh_from_db()
    assert (reader.status, reader.digest_hour) == (Subscriber.Status.ACTIVE, None)
    assert mail.outbox == []


def test_pausing_leaves_the_reader_out_until_they_resume(client, reader, on_commit):
    response = client.post(url(reader), {"action": "pause"})
    assert response.status_code == 200
    assert "paused" in response.content.decode()
    assert not Subscriber.objects.confirmed().exists()
    on_commit(post_publish, post=PostFactory())
    assert mail.outbox == []

    assert "Resume" in client.get(url(reader)).content.decode()
    client.post(url(reader), {"action": "resume"})
    assert list(Subscriber.objects.confirmed()) == [reader]
    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["reader@example.org"]]


def test_unsubscribing_from_the_centre(client, reader):
    response = client.post(url(reader), {"action": "unsubscribe"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert Suppression.objects.get().reason == "unsubscribed"


def test_resubscribing_sends_a_fresh_confirmation(client, reader, on_commit):
    client.post(url(reader), {"action": "unsubscribe"})
    reader.refresh_from_db()
    response = on_commit(client.post, url(reader), {"action": "resubscribe"})
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    [confirmation] = mail.outbox
    on_commit(client.post, link_in(confirmation, "/subscribe/confirm/"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_resubscribing_twice_the_same_day_says_the_first_emails_link_is_the_one(
    client, reader, on_commit
):
    """The second press of Resubscribe sends nothing within the day, and the
    page said "We have sent a confirmation link", so the reader waited for it."""
    client.post(url(reader), {"action": "unsubscribe"})
    on_commit(client.post, url(reader), {"action": "resubscribe"})

    again = on_commit(client.post, url(reader), {"action": "resubscribe"})

    assert len(mail.outbox) == 1
    assert "We have sent" not in again.text
    assert "at most one a day" in again.text
    assert "if we sent you one earlier today, use the link in that email" in again.text


def test_resubscribing_records_how_often_the_reader_gets_what_they_follow(
    client, reader, on_commit
):
    SubscriberTopic.objects.create(
        subscriber=reader, kind="region", value="wales", frequency="weekly"
    )
    client.post(url(reader), {"action": "unsubscribe"})

    on_commit(client.post, url(reader), {"action": "resubscribe"})

    request = Consent.objects.get(confirmed_at=None)
    assert (request.topics, request.frequency) == (None, "weekly")


def test_resubscribing_records_the_wording_the_centre_showed_and_where(
    client, reader, on_commit
):
    # A consent record is evidence of what the reader was told and where: the
    # preference centre's request was recorded as the subscribe form's, with
    # wording its page never showed.
    client.post(url(reader), {"action": "unsubscribe"})
    page = client.get(url(reader)).content.decode()
    assert CONSENT_WORDING in page

    on_commit(client.post, url(reader), {"action": "resubscribe"})

    request = Consent.objects.get(confirmed_at=None)
    assert request.source == "preference centre"
    assert request.wording == CONSENT_WORDING
    assert request.wording_version == CONSENT_VERSION
    assert request.ip_address == "127.0.0.1"


def test_a_complained_address_cannot_resubscribe_from_the_centre(client, reader):
    address_suppress(email=reader.email, reason=Suppression.Reason.COMPLAINT)
    assert "no longer send" in client.get(url(reader)).content.decode()
    response = client.post(url(reader), {"action": "resubscribe"})
    assert response.status_code == 409
    assert mail.outbox == []
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.COMPLAINED


@pytest.mark.parametrize(
    ("reason", "told"),
    [
        (Suppression.Reason.MANUAL, "We took this address off our list"),
        (Suppression.Reason.HARD_BOUNCE, "mail to this address bounced"),
        (Suppression.Reason.COMPLAINT, "was marked as spam"),
    ],
)
def test_a_blocked_reader_is_told_why_as_it_is(client, reader, reason, told):
    """Suppressed at the desk, they were told their provider reported a bounce or a
    spam complaint, which nobody did."""
    address_suppress(email=reader.email, reason=reason)
    page = client.get(url(reader)).content.decode()
    assert told in page
    refused = client.post(url(reader), {"action": "resubscribe"})
    assert refused.status_code == 409
    assert told in refused.content.decode()
    if reason == Suppression.Reason.MANUAL:
        assert "provider" not in page and "spam" not in page


@pytest.mark.parametrize("action", ["", "explode", "resubscribe"])
def test_an_action_that_does_not_apply_gets_a_400(client, reader, action):
    response = client.post(url(reader), {"action": action})
    assert response.status_code == 400
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize("action", ["pause", "resume"])
@pytest.mark.parametrize(
    ("reason", "next_step"),
    [
        (Suppression.Reason.UNSUBSCRIBED, "resubscribe from your preferences"),
        (Suppression.Reason.HARD_BOUNCE, "Your preferences say why"),
    ],
)
def test_pausing_from_a_page_opened_before_the_reader_left_says_where_they_stand(
    client, reader, action, reason, next_step
):
    """A tab opened before the reader unsubscribed (or bounced) in another: it
    answered "Nothing to do. That change does not apply to your subscription as
    it stands", which said neither how it stands nor what they can do."""
    address_suppress(email=reader.email, reason=reason)

    response = client.post(url(reader), {"action": action})

    assert response.status_code == 400
    assert "You are not subscribed" in response.text
    assert "nothing has changed" in response.text
    assert next_step in response.text
    reader.refresh_from_db()
    assert reader.paused_at is None


@pytest.mark.parametrize(
    ("paused", "told"),
    [
        (False, "New posts arrive at reader@example.org."),
        (True, "Your newsletter is paused: nothing comes until you resume it"),
    ],
)
def test_resubscribing_from_a_page_opened_before_confirming_says_they_are_subscribed(
    client, reader, on_commit, paused, told
):
    """A tab opened while unsubscribed, the reader confirmed by their email's
    link since: "That change does not apply to your subscription as it stands"."""
    if paused:
        subscriber_pause(subscriber=reader)

    response = on_commit(client.post, url(reader), {"action": "resubscribe"})

    assert response.status_code == 400
    assert "You are subscribed already" in response.text
    assert told in response.text
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("method", "suffix"), [("get", ""), ("post", "topics/"), ("get", "delete/")]
)
def test_a_deleted_readers_preferences_link_says_their_subscription_was_deleted(
    client, reader, method, suffix
):
    """A reader who deleted their data opens the preferences link of an old
    email: "This link is not valid. It may have been copied incompletely, or
    replaced by a newer email", and to use the link in any newsletter email,
    of which none will come."""
    link = url(reader, suffix)
    subscriber_delete(subscriber=reader)

    response = getattr(client, method)(link)

    assert response.status_code == 410
    assert "This subscription was deleted" in response.text
    assert "subscribe again" in response.text
    assert "copied incompletely" not in response.text


def test_a_paused_reader_who_moved_is_told_how_to_resume_at_the_old_link(
    client, reader, on_commit
):
    """A paused reader moved address and kept no email with the new preferences
    link: the old one said to use the link in any newsletter email, of which
    none comes while they are paused. Subscribing again resumes them."""
    subscriber_pause(subscriber=reader)
    old_link = url(reader)
    ask_to_move(client, on_commit, reader, "new@example.org")
    client.post(link_in(mail.outbox[0], "/preferences/email/confirm/"))
    mail.outbox.clear()

    page = client.get(old_link)

    assert page.status_code == 404
    assert "None comes while your newsletter is paused" in page.text
    assert 'to resume it, give your address to the <a href="/subscribe/">' in page.text
    on_commit(client.post, "/subscribe/", {"email": "new@example.org"})
    on_commit(client.post, link_in(mail.outbox[-1], "/subscribe/confirm/"))
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert reader.paused_at is None


def test_changing_the_address_waits_for_the_new_address_to_confirm(
    client, reader, on_commit
):
    old_link = url(reader)
    link = one_time_link(
        client, on_commit, reader, "email/", {"new_email": " New@Example.org"}
    )
    assert "new@example.org" in client.get(link).content.decode()
    assert mail.outbox == []
    response = on_commit(client.post, link)
    assert response.status_code == 200
    assert "new@example.org" in response.content.decode()
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"
    [message] = mail.outbox
    assert message.to == ["new@example.org"]
    confirm = link_in(message, "/preferences/email/confirm/")

    assert client.get(confirm).status_code == 200
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"

    response = client.post(confirm)
    assert response.status_code == 200
    assert "Your address is changed" in response.content.decode()
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert reader.status == Subscriber.Status.ACTIVE
    # Links for the old address retire.
    assert client.get(old_link).status_code == 404
    assert client.get(url(reader)).status_code == 200


def test_the_changed_page_says_which_links_in_older_emails_still_work(
    client, reader, on_commit
):
    """It said links in older emails no longer worked, though their unsubscribe
    links still do (RFC 8058), and so do their links to posts."""
    old_preferences = url(reader)
    old_unsubscribe = f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/"
    ask_to_move(client, on_commit, reader, "new@example.org")

    page = client.post(link_in(mail.outbox[0], "/preferences/email/confirm/")).text

    assert "Links in older emails no longer work" not in page
    assert (
        "The preferences links in older emails no longer work: use the one below. "
        "Their unsubscribe links still do."
    ) in page
    assert client.get(old_preferences).status_code == 404
    # It still unsubscribes, without saying where the reader moved to.
    old_unsubscribe_page = client.get(old_unsubscribe).text
    assert "<button" in old_unsubscribe_page
    assert "new@example.org" not in old_unsubscribe_page
    client.post(old_unsubscribe)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def same_page(content: bytes, address: bytes) -> bytes:
    return re.sub(rb"/preferences/[^/\"]+/", b"/preferences/.../", content).replace(
        address, b""
    )


def test_an_address_already_subscribed_gets_the_same_answer_and_no_email(
    client, reader, on_commit
):
    SubscriberFactory(email="taken@example.org")
    free = ask_to_move(client, on_commit, reader, "free@x.org")
    assert [m.to for m in mail.outbox] == [["free@x.org"]]
    mail.outbox.clear()
    Subscriber.objects.update(email_change_requested_at=None)  # the next day
    taken = ask_to_move(client, on_commit, reader, "taken@example.org")
    assert taken.status_code == free.status_code == 200
    # The same page, but for the address asked for and the preference link's
    # signature, whose timestamp may have ticked over between the two answers.
    assert same_page(taken.content, b"taken@example.org") == same_page(
        free.content, b"free@x.org"
    )
    assert mail.outbox == []
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"


def test_a_change_link_fails_if_the_address_was_taken_meanwhile(
    client, reader, on_commit
):
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    SubscriberFactory(email="new@example.org")
    assert client.post(confirm).status_code == 409
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"


def a_stranger_subscribes(email: str) -> Subscriber:
    """Someone types the address into the subscribe form and never confirms."""
    subscription_request(email=email, name="Not Sam", ip_address="203.0.113.7")
    return Subscriber.objects.get(email=email)


@pytest.mark.parametrize("when", ["before the reader asks", "before they confirm"])
def test_a_strangers_unconfirmed_subscription_gives_way_to_the_reader_who_moves_there(
    client, reader, on_commit, when
):
    """Anyone can subscribe any address; only the reader's click on the link sent
    to it proves the address is theirs."""
    if when == "before the reader asks":
        stranger = a_stranger_subscribes("new@example.org")
    mail.outbox.clear()
    ask_to_move(client, on_commit, reader, "new@example.org")
    [message] = mail.outbox
    assert message.to == ["new@example.org"]
    confirm = link_in(message, "/preferences/email/confirm/")
    if when == "before they confirm":
        stranger = a_stranger_subscribes("new@example.org")

    response = client.post(confirm)

    assert response.status_code == 200
    assert "From now on the newsletter goes to new@example.org." in (
        response.content.decode()
    )
    assert not Subscriber.objects.filter(pk=stranger.pk).exists()
    assert not Consent.objects.filter(subscriber_id=stranger.pk).exists()
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.name == "Sam"
    assert [c.ip_address for c in reader.consents.all()] == ["192.0.2.1"]
    assert [p.email for p in reader.previous_addresses.all()] == ["reader@example.org"]


@pytest.mark.parametrize(
    "holder",
    [
        Subscriber.Status.ACTIVE,
        Subscriber.Status.UNSUBSCRIBED,
        Subscriber.Status.BOUNCED,
        Subscriber.Status.SUPPRESSED,
    ],
)
def test_a_reader_who_has_the_address_still_keeps_it_from_a_reader_moving_there(
    client, reader, on_commit, holder
):
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    SubscriberFactory(email="new@example.org", status=holder)

    response = client.post(confirm)

    assert response.status_code == 409
    assert "new@example.org cannot be used for this subscription" in (
        response.content.decode()
    )
    assert Subscriber.objects.get(email="new@example.org").status == holder
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"


def test_a_paused_reader_asking_to_move_is_not_told_emails_keep_going(
    client, reader, on_commit
):
    """ "Until you click it, emails keep going to reader@…", to a reader who had
    paused them."""
    subscriber_pause(subscriber=reader)

    response = ask_to_move(client, on_commit, reader, "new@example.org")

    assert "Check the new inbox" in response.text
    assert "keep going" not in response.text
    assert "Until you click it, your address stays reader@example.org." in (
        response.text
    )


@pytest.mark.parametrize("meanwhile", ["unsubscribe", "pause"])
def test_a_refused_change_says_nothing_changed_and_no_more_to_whoever_holds_the_link(
    client, reader, on_commit, meanwhile
):
    """It said "Your emails keep going to reader@…" to a reader who had left or
    paused, and gave the link's holder, who had proved no address of the
    subscription's (the reader may have mistyped theirs), its preferences."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(url(reader), {"action": meanwhile})
    SubscriberFactory(email="new@example.org")

    response = client.post(confirm)

    assert response.status_code == 409
    assert (
        "new@example.org cannot be used for this subscription, so nothing has "
        "changed: its address stays reader@example.org."
    ) in response.text
    assert "keep going" not in response.text
    assert "/preferences/" not in response.text
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"


def test_a_reader_whose_old_address_bounced_before_they_confirmed_the_new_one_gets_it(
    client, reader, on_commit
):
    """Leaving a job, a reader asks to move; before they click the link in their
    new inbox, the old mailbox is closed and bounces."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    address_suppress(email="reader@example.org", reason=Suppression.Reason.HARD_BOUNCE)

    response = client.post(confirm)

    page = response.content.decode()
    assert "From now on the newsletter goes to new@example.org." in page
    mail.outbox.clear()
    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["new@example.org"]]
    assert is_blocked("reader@example.org")


@pytest.mark.parametrize(
    ("late", "status"),
    [
        (Suppression.Reason.HARD_BOUNCE, Subscriber.Status.UNSUBSCRIBED),
        (Suppression.Reason.SOFT_BOUNCES, Subscriber.Status.UNSUBSCRIBED),
        (Suppression.Reason.COMPLAINT, Subscriber.Status.COMPLAINED),
        (Suppression.Reason.MANUAL, Subscriber.Status.SUPPRESSED),
    ],
)
def test_a_reader_who_unsubscribed_stays_out_at_the_new_address_whatever_came_since(
    client, reader, on_commit, late, status
):
    """A reader asks to move, then unsubscribes; a late bounce of an earlier email
    marks them bounced. Confirming the new address then made them a reader again
    there, told the newsletter now went to it, and sent it: they had left."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(url(reader), {"action": "unsubscribe"})
    address_suppress(email="reader@example.org", reason=late)

    page = client.post(confirm).text

    assert "You are not subscribed, so nothing is sent to new@example.org." in page
    assert "From now on" not in page
    reader.refresh_from_db()
    assert (reader.email, reader.status) == ("new@example.org", status)
    mail.outbox.clear()
    on_commit(post_publish, post=PostFactory())
    assert mail.outbox == []


def test_a_reader_who_moves_to_an_erased_address_is_not_unsubscribed_by_its_erasure(
    client, reader, on_commit
):
    """Whoever had the new address before erased their data there; the reader
    moves to it, it bounces once, and the desk lifts the bounce: the reader gets
    posts again, as before the bounce, and is not told they unsubscribed."""
    subscriber_delete(subscriber=SubscriberFactory(email="new@example.org"))
    ask_to_move(client, on_commit, reader, "new@example.org")
    client.post(link_in(mail.outbox[0], "/preferences/email/confirm/"))
    address_suppress(email="new@example.org", reason=Suppression.Reason.HARD_BOUNCE)

    suppression_lift(suppression=Suppression.objects.for_email("new@example.org").get())

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.for_email("new@example.org").exists()
    mail.outbox.clear()
    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["new@example.org"]]


@pytest.mark.parametrize(
    ("meanwhile", "said"),
    [
        ("unsubscribe", "You are not subscribed, so nothing is sent to new@"),
        ("pause", "Your newsletter is paused: when you resume it, it goes to new@"),
    ],
)
def test_a_reader_who_left_or_paused_before_confirming_a_new_address_is_told_so(
    client, reader, on_commit, meanwhile, said
):
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(url(reader), {"action": meanwhile})

    page = client.post(confirm).content.decode()

    assert said in page
    assert "From now on" not in page
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert not Subscriber.objects.confirmed().exists()


def test_a_reader_who_unsubscribed_before_using_the_move_link_is_told_nothing_moves(
    client, reader, on_commit
):
    """The link's page offered to send a link to the new address, and its button
    said one was on its way there, spending the link: nothing was sent, as only
    a current subscription moves."""
    link = one_time_link(
        client, on_commit, reader, "email/", {"new_email": "new@x.org"}
    )
    client.post(url(reader), {"action": "unsubscribe"})

    for page in (client.get(link), on_commit(client.post, link)):
        assert page.status_code == 400
        assert "Only a current subscription can move" in page.text
        assert "Send the link" not in page.text
        assert "Check the new inbox" not in page.text
    assert mail.outbox == []

    # Subscribed again within the hour, the link still works.
    Subscriber.objects.filter(pk=reader.pk).update(status=Subscriber.Status.ACTIVE)
    assert "Check the new inbox" in on_commit(client.post, link).text
    [message] = mail.outbox
    assert message.to == ["new@x.org"]


def test_an_invalid_new_address_is_refused_with_a_clear_error(client, reader):
    response = client.post(url(reader, "email/"), {"new_email": "not-an-address"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    assert mail.outbox == []


def test_a_refused_preference_says_so_first_and_links_to_its_field(client, reader):
    page = client.post(url(reader, "email/"), {"new_email": "x"}).content.decode()
    assert "<title>Error: Your newsletter preferences — On Probation</title>" in page
    assert 'class="error-summary" role="alert"' in page
    assert '<a href="#id_new_email">New email address: Enter a valid' in page
    assert page.count('id="error-summary-title"') == 1

    sent = {"topics": "area:atlantis", "digest_hour": "99"}
    page = client.post(url(reader, "topics/"), sent).text
    assert "<title>Error: Your newsletter preferences" in page
    assert page.count("autofocus") == 1  # both forms' errors, in one summary
    assert page.count('id="error-summary-title"') == 1
    assert '<a href="#id_digest_hour">Hour: Select a valid choice.' in page
    # The checkboxes are the picker's own: their group is where the link goes,
    # and what says the error; it takes the focus the link gives it.
    assert '<a href="#id_topics">Only posts about' in page
    assert 'id="id_topics" aria-describedby="id_topics_error" tabindex="-1">' in page


def test_moving_to_my_own_address_is_refused_and_leaves_the_days_change_to_me(
    client, reader, on_commit
):
    """The browser fills in the reader's address; they send it, then the one they
    meant: that one's link comes, the day's change not spent on nothing."""
    response = client.post(url(reader, "email/"), {"new_email": "Reader@Example.org"})

    assert response.status_code == 400
    assert "That is your address already." in response.content.decode()
    assert mail.outbox == []
    ask_to_move(client, on_commit, reader, "new@example.org")
    assert [m.to for m in mail.outbox] == [["new@example.org"]]


def test_the_new_address_over_its_limit_is_refused_on_the_links_page_and_the_link_kept(
    client, reader, on_commit, settings
):
    """The answer was a page with no button: the reader went back to their
    inbox for the link, not knowing whether it still worked."""
    link = one_time_link(
        client, on_commit, reader, "email/", {"new_email": "new@example.org"}
    )
    limit = settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = 0

    response = client.post(link)

    assert response.status_code == 429
    assert response["Retry-After"] == str(
        settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS
    )
    assert "<title>Too many requests: Change my address" in response.text
    assert "Send the link to new@example.org</button>" in response.text
    assert not mail.outbox
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = limit
    assert on_commit(client.post, link).status_code == 200
    assert [m.to for m in mail.outbox] == [["new@example.org"]]


@pytest.mark.parametrize("refused_by", ["its limit", "the queue down"])
def test_a_refused_change_link_page_says_what_it_is_before_why_refused(
    client, reader, on_commit, settings, request, refused_by
):
    """The refusal's h2 came above the page's h1: a screen reader's list of
    headings began with a subheading of nothing."""
    link = one_time_link(
        client, on_commit, reader, "email/", {"new_email": "new@example.org"}
    )
    if refused_by == "its limit":
        settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = 0
    else:
        request.getfixturevalue("redis_down")

    page = client.post(link).text

    assert page.count("<h1>") == 1
    assert page.index("<h1>Change my address</h1>") < page.index(
        '<h2 id="refused-title">'
    )


@pytest.mark.parametrize(
    "unsubscribed_here, sent", [(True, {"moved@example.org": 1}), (False, {})]
)
def test_a_change_link_to_an_address_i_unsubscribed_gets_past_mailgun(
    reader, mailgun, unsubscribed_here, sent
):
    """Mailgun keeps an address that unsubscribed on its Unsubscribes list and
    drops every email to it: a reader moving to an address they had unsubscribed
    with here never got the link. Only our own unsubscribe is lifted there."""
    if unsubscribed_here:
        address_suppress(email="moved@example.org", reason="unsubscribed")
    mailgun.mailgun_unsubscribe("moved@example.org")
    asked = timezone.now()
    Subscriber.objects.filter(pk=reader.pk).update(
        email_change_requested_at=asked, email_change_to="moved@example.org"
    )

    email_change_send(subscriber_id=reader.pk, requested_at=asked)

    assert mailgun.recipients() == sent
    assert mailgun.mailgun_unsubscribes() == (
        set() if unsubscribed_here else {"moved@example.org"}
    )


def test_an_expired_change_link_says_so(client, reader, on_commit, monkeypatch):
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    monkeypatch.setitem(tokens.MAX_AGE, Purpose.CHANGE_EMAIL, -1)
    response = client.post(confirm)
    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
    assert "work for 2 days" in response.content.decode()
    reader.refresh_from_db()
    assert reader.email == "reader@example.org"


@pytest.mark.parametrize("expired", [False, True])
def test_an_erased_readers_change_link_says_their_subscription_was_deleted(
    client, reader, on_commit, monkeypatch, expired
):
    """It said "This link is not valid. It may have been copied incompletely",
    or, after its days, to ask for a new one from the preferences link in any
    newsletter email, of which none comes. A change-of-address link goes only to
    a reader who confirmed, whose row only their erasure deletes."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    subscriber_delete(subscriber=reader)
    if expired:
        monkeypatch.setitem(tokens.MAX_AGE, Purpose.CHANGE_EMAIL, -1)

    for response in (client.get(confirm), client.post(confirm)):
        assert response.status_code == 410
        assert "This subscription was deleted" in response.text
        assert "copied incompletely" not in response.text
        assert "expired" not in response.text
    assert not Subscriber.objects.exists()


def test_strangers_subscribing_my_address_do_not_keep_me_from_my_data(
    client, reader, on_commit, settings
):
    for _ in range(settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS + 1):
        client.post("/subscribe/", {"email": reader.email})
    assert client.post("/subscribe/", {"email": reader.email}).status_code == 429
    # The reader's own links have their own budget, and it too has its limit.
    for _ in range(settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS):
        one_time_link(client, on_commit, reader, "export/")
    response = client.post(url(reader, "export/"))
    assert response.status_code == 429
    # Told of what they asked for: the page spoke of "subscription requests", and
    # of a confirmation "on its way" if they had "asked to subscribe".
    assert "Too many requests" in response.text
    assert "subscription" not in response.text
    assert "asked to subscribe" not in response.text


def test_downloading_my_data_gives_everything_held_as_json(client, reader, on_commit):
    post = PublishedPostFactory(title="Suffolk: caseloads too high")
    send = Mailing.objects.create(kind="post", post=post)
    Delivery.objects.create(
        mailing=send,
        batch=Batch.objects.create(mailing=send, number=1),
        subscriber=reader,
        status=Delivery.Status.SENT,
        esp_message_id="abc",
        # Their mail provider refused the publication's sender, not their address.
        last_event="rejected",
        sender_refused=True,
    )
    # Someone else typed the reader's address into the form; nobody confirmed it.
    form_request(reader, ip_address="198.51.100.9", confirmed=False)
    link = one_time_link(client, on_commit, reader, "export/")
    assert "Download my data" in client.get(link).content.decode()
    response = client.post(link)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"]
    data = json.loads(response.content)
    assert data["subscriber"]["email"] == "reader@example.org"
    assert data["subscriber"]["name"] == "Sam"
    assert [c["ip_address"] for c in data["consents"]] == ["192.0.2.1", None]
    assert data["consents"][0]["wording"] == "Email me each new post."
    assert data["deliveries"] == [
        {
            "email": "Announcement of “Suffolk: caseloads too high”",
            "posts": [
                {
                    "title": "Suffolk: caseloads too high",
                    "url": f"http://127.0.0.1:8000{post.get_absolute_url()}",
                    "on_site": True,
                }
            ],
            "status": "sent",
            "error": "",
            "sent_at": None,
            "last_event": "rejected",
            "last_event_at": None,
            "sender_refused": True,
        }
    ]
    assert data["suppressions"] == []


def test_my_data_gives_no_name_a_stranger_typed_in_a_request_nobody_confirmed(
    client, reader, on_commit
):
    """Anyone may type the reader's address into the form: what they typed with
    it is theirs, withheld as its IP address is."""
    # A paused reader's address subscribed again asks them to confirm it.
    Subscriber.objects.filter(pk=reader.pk).update(paused_at=timezone.now())
    response = on_commit(
        client.post,
        "/subscribe/",
        {"email": reader.email, "name": "Mallory Stranger"},
        REMOTE_ADDR="198.51.100.7",
    )
    assert response.status_code == 200

    consents = subscriber_export(subscriber=reader)["consents"]

    assert [(c["name"], c["ip_address"]) for c in consents] == [
        ("", "192.0.2.1"),
        (None, None),
    ]


def test_my_data_lists_every_email_i_was_sent_digests_and_corrections_too(
    client, reader, on_commit
):
    post = PublishedPostFactory(title="Suffolk: caseloads too high")
    other = PublishedPostFactory(title="Norfolk: good supervision")
    correction = PostUpdate.objects.create(
        post=post, kind=PostUpdate.Kind.CORRECTION, note="The rating was wrong."
    )
    digest = Mailing.objects.create(
        kind="digest",
        frequency="daily",
        period=timezone.localdate(),
        slot=timezone.now(),
    )
    mailings = [
        Mailing.objects.create(kind="post", post=post),
        digest,
        Mailing.objects.create(kind="correction", post=post, post_update=correction),
    ]
    for mailing in mailings:
        Delivery.objects.create(
            mailing=mailing,
            batch=Batch.objects.create(mailing=mailing, number=1),
            subscriber=reader,
            status=Delivery.Status.SENT,
        )
    Delivery.objects.get(mailing=digest).posts.set([post, other])

    export = one_time_link(client, on_commit, reader, "export/")
    data = json.loads(client.post(export).content)

    site = "http://127.0.0.1:8000"
    assert [(d["email"], d["posts"]) for d in data["deliveries"]] == [
        (
            str(mailings[0]),
            [
                {
                    "title": post.title,
                    "url": site + post.get_absolute_url(),
                    "on_site": True,
                }
            ],
        ),
        (
            str(digest),
            # In the publication's order, newest first.
            [
                {
                    "title": other.title,
                    "url": site + other.get_absolute_url(),
                    "on_site": True,
                },
                {
                    "title": post.title,
                    "url": site + post.get_absolute_url(),
                    "on_site": True,
                },
            ],
        ),
        (
            str(mailings[2]),
            [
                {
                    "title": post.title,
                    "url": site + post.get_absolute_url(),
                    "on_site": True,
                }
            ],
        ),
    ]


def test_deleting_my_data_forgets_the_person_but_keeps_them_suppressed(
    client, reader, on_commit
):
    other = SubscriberFactory(email="other@example.org")
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    for subscriber, message_id in [(reader, "m-reader"), (other, "m-other")]:
        Delivery.objects.create(
            mailing=send, batch=batch, subscriber=subscriber, esp_message_id=message_id
        )
        Event.objects.create(
            esp="postmark",
            event_id=message_id,
            event_type="delivered",
            recipient=subscriber.email,
            message_id=message_id,
            raw={"Recipient": subscriber.email},
        )
    assert "cannot be undone" in client.get(url(reader, "delete/")).content.decode()
    link = one_time_link(client, on_commit, reader, "delete/")
    assert "cannot be undone" in client.get(link).content.decode()
    assert Subscriber.objects.filter(pk=reader.pk).exists()

    response = client.post(link)
    assert response.status_code == 200
    assert "Your data is deleted" in response.content.decode()
    assert list(Subscriber.objects.all()) == [other]
    assert not Consent.objects.exists()
    assert list(Delivery.objects.values_list("subscriber", flat=True)) == [other.pk]
    assert list(Event.objects.values_list("recipient", flat=True)) == [other.email]
    suppression = Suppression.objects.for_email("reader@example.org").get()
    assert suppression.reason == "deleted"
    assert client.get(link).status_code == 410  # used: says the data is deleted

    on_commit(post_publish, post=PostFactory())
    assert [m.to for m in mail.outbox] == [["other@example.org"]]


def delete_at_the_desk(client, model: str, pk: int, how: str):
    """Confirm deleting a row from its change page or with the list's action."""
    changelist = f"/admin/newsletter/{model}/"
    if how == "change page":
        path, data = f"{changelist}{pk}/delete/", {}
    else:
        path, data = changelist, {"action": "delete_selected", "_selected_action": [pk]}
    return client.post(path, {**data, "post": "yes"})


@pytest.mark.parametrize("how", ["change page", "list action"])
def test_deleting_a_reader_at_the_desk_is_their_erasure(client, reader, how):
    mine = CommentFactory(email=reader.email)
    sent = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=sent, number=1)
    Delivery.objects.create(mailing=sent, batch=batch, subscriber=reader)
    Event.objects.create(
        esp="postmark",
        event_id="e-1",
        event_type="delivered",
        recipient=reader.email,
        raw={},
    )
    client.force_login(UserFactory(is_superuser=True))
    response = delete_at_the_desk(client, "subscriber", reader.pk, how)
    assert response.status_code == 302
    assert not Subscriber.objects.exists()
    assert not Delivery.objects.exists()
    assert not Comment.objects.filter(pk=mine.pk).exists()
    assert not Event.objects.exists()
    assert Suppression.objects.for_email(reader.email).get().reason == "deleted"


@pytest.mark.parametrize("how", ["change page", "list action"])
def test_the_desks_history_keeps_what_it_did_to_an_erased_reader_but_not_who(
    client, reader, how
):
    """Django's admin log names a row by its str(): a reader by their address, a
    comment by its writer's name."""
    client.force_login(UserFactory(is_superuser=True))
    mine = CommentFactory(email=reader.email, name="Ann Reader")
    theirs = CommentFactory(email="someone@example.org", name="Sam Other")
    for row in (reader, mine, theirs):
        LogEntry.objects.log_actions(
            user_id=UserFactory().pk,
            queryset=[row],
            action_flag=CHANGE,
            change_message=[{"changed": {"fields": ["Status"]}}],
        )

    delete_at_the_desk(client, "subscriber", reader.pk, how)

    assert sorted(LogEntry.objects.values_list("action_flag", flat=True)) == [
        CHANGE,
        CHANGE,
        CHANGE,
        DELETION,
    ]
    for entry in LogEntry.objects.all():
        about = entry.object_repr + entry.change_message
        assert reader.email not in about
        assert "Ann Reader" not in about
    # Someone else's comment keeps its name in the history.
    assert LogEntry.objects.get(object_id=str(theirs.pk)).object_repr == str(theirs)


def test_the_desks_history_of_a_readers_email_no_longer_names_them_once_erased(
    client, reader
):
    """The desk saved an email's row in the ledger: its history named the row by
    str(), "Announcement of … to ann@example.org: Sent", after the erasure too."""
    sent = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=sent, number=1)
    row = Delivery.objects.create(mailing=sent, batch=batch, subscriber=reader)
    client.force_login(UserFactory(is_superuser=True))
    saved = client.post(f"/admin/newsletter/delivery/{row.pk}/change/", {})
    assert saved.status_code == 302
    assert reader.email in LogEntry.objects.get().object_repr

    subscriber_delete(subscriber=reader)

    entry = LogEntry.objects.get()
    assert entry.action_flag == CHANGE
    assert reader.email not in entry.object_repr + entry.change_message


def test_the_desks_history_of_what_it_deleted_before_an_erasure_names_nobody(
    client, reader
):
    """A comment or a tracking event the desk deleted is gone by the reader's
    erasure, which cannot find it to rewrite its history: what the history
    holds of it never named them (str(): "Comment #12 on …", "postmark bounced,
    event e-1")."""
    comment = CommentFactory(email=reader.email, name="Ann Reader")
    event = Event.objects.create(
        esp="postmark",
        event_id="e-1",
        event_type="bounced",
        recipient=reader.email,
        raw={"Email": reader.email},
    )
    client.force_login(UserFactory(is_superuser=True))
    for deleting in (
        f"/admin/comments/comment/{comment.pk}/delete/",
        f"/admin/newsletter/event/{event.pk}/delete/",
    ):
        assert client.post(deleting, {"post": "yes"}).status_code == 302

    subscriber_delete(subscriber=reader)

    assert sorted(LogEntry.objects.values_list("object_repr", flat=True)) == [
        f"Comment #{comment.pk} on {comment.post}",
        "postmark bounced, event e-1",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_desks_history_written_before_names_nobody_after_the_deploy(reader):
    """Entries written when a comment's and an event's names named the commenter
    and the address, their rows deleted since: the erasure cannot find them."""
    desk = UserFactory(is_superuser=True)
    for model, object_id, named in [
        (Comment, "12", "Ann Reader on Inspection of probation services"),
        (Event, "7", f"postmark bounced for {reader.email}"),
    ]:
        LogEntry.objects.create(
            user=desk,
            content_type=ContentType.objects.get_for_model(model),
            object_id=object_id,
            object_repr=named,
            action_flag=DELETION,
        )
    migrate_again_after("newsletter", "0013_batch_counts_erased_readers")
    assert sorted(LogEntry.objects.values_list("object_repr", flat=True)) == [
        "Comment #12",
        "Event #7",
    ]


@pytest.mark.parametrize("how", ["change page", "list action"])
def test_nobody_deletes_a_row_of_the_ledger_at_the_desk(client, reader, how):
    # A deleted row would be planned again: the reader would get a second copy.
    sent = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=sent, number=1)
    row = Delivery.objects.create(
        mailing=sent, batch=batch, subscriber=reader, status="sent"
    )
    client.force_login(UserFactory(is_superuser=True))
    response = delete_at_the_desk(client, "delivery", row.pk, how)
    assert response.status_code == (403 if how == "change page" else 200)
    assert Delivery.objects.filter(pk=row.pk).exists()


def test_the_desk_cannot_move_a_reader_to_an_address_nobody_confirmed(client, reader):
    client.force_login(UserFactory(is_superuser=True))
    page = f"/admin/newsletter/subscriber/{reader.pk}/change/"
    form = client.get(page).context["adminform"].form
    data = {
        **{name: form[name].value() or "" for name in form.fields},
        "email": "elsewhere@example.org",
        "topics-TOTAL_FORMS": "0",
        "topics-INITIAL_FORMS": "0",
        "consents-TOTAL_FORMS": "0",
        "consents-INITIAL_FORMS": "0",
    }
    assert client.post(page, {**data, "name": "Sam Jones"}).status_code == 302
    reader.refresh_from_db()
    assert (reader.name, reader.email) == ("Sam Jones", "reader@example.org")


def test_my_comments_are_in_my_data_and_go_with_it(client, reader, on_commit):
    mine = CommentFactory(email="reader@example.org", body="Caseloads are too high.")
    theirs = CommentFactory(email="someone@example.org")
    export = one_time_link(client, on_commit, reader, "export/")
    data = json.loads(client.post(export).content)
    assert [c["comment"] for c in data["comments"]] == ["Caseloads are too high."]
    client.post(one_time_link(client, on_commit, reader, "delete/"))
    assert not Comment.objects.filter(pk=mine.pk).exists()
    assert Comment.objects.filter(pk=theirs.pk).exists()


def test_my_data_lists_comments_with_my_address_without_the_posters_ip_or_browser(
    client, reader, on_commit
):
    # Anyone may comment giving my address; the comment waits for moderation.
    post = PublishedPostFactory(title="Suffolk: caseloads too high")
    poster = Client(REMOTE_ADDR="203.0.113.7", HTTP_USER_AGENT="PostersBrowser/1.0")
    response = poster.post(
        f"/posts/{post.slug}/comments/",
        {"name": "Sam", "email": "Reader@Example.org", "body": "Too high."},
    )
    assert response.status_code == 302
    comment = Comment.objects.get()
    assert (comment.ip_address, comment.user_agent) == (
        "203.0.113.7",
        "PostersBrowser/1.0",
    )

    export = client.post(one_time_link(client, on_commit, reader, "export/"))

    assert json.loads(export.content)["comments"] == [
        {
            "post": "Suffolk: caseloads too high",
            "post_url": f"http://127.0.0.1:8000{post.get_absolute_url()}",
            "post_on_site": True,
            "created_at": comment.created_at.isoformat(),
            "status": "pending",
            "name": "Sam",
            "email": "reader@example.org",
            "website": "",
            "comment": "Too high.",
        }
    ]
    assert b"203.0.113.7" not in export.content
    assert b"PostersBrowser" not in export.content


def test_a_comment_made_with_the_unicode_domain_is_in_my_data_and_goes_with_it(
    client, on_commit
):
    reader = SubscriberFactory(email="reader@xn--bcher-kva.example")
    post = PublishedPostFactory()
    response = client.post(
        f"/posts/{post.slug}/comments/",
        {"name": "Sam", "email": "Reader@Bücher.example", "body": "Too high."},
    )
    assert response.status_code == 302
    export = one_time_link(client, on_commit, reader, "export/")
    data = json.loads(client.post(export).content)
    assert [c["comment"] for c in data["comments"]] == ["Too high."]
    client.post(one_time_link(client, on_commit, reader, "delete/"))
    assert not Comment.objects.exists()


def delivered(recipient: str, event_id: str) -> Event:
    """The provider's word that an email outside the ledger (a confirmation, a
    one-time link) reached the address."""
    return Event.objects.create(
        esp="postmark",
        event_id=event_id,
        event_type="delivered",
        recipient=recipient,
        message_id=event_id,
        raw={"Recipient": recipient},
    )


def test_after_a_change_of_address_my_data_includes_what_i_wrote_under_the_old_one(
    client, reader, on_commit
):
    mine = CommentFactory(email="reader@example.org", body="Written before I moved.")
    my_event = delivered("reader@example.org", "welcome")
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    assert client.post(confirm).status_code == 200
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    # The old address is free now: what is written under it is someone else's.
    theirs = CommentFactory(email="reader@example.org", body="Not mine.")
    their_event = delivered("reader@example.org", "their-welcome")

    export = one_time_link(client, on_commit, reader, "export/")
    data = json.loads(client.post(export).content)
    assert [c["comment"] for c in data["comments"]] == ["Written before I moved."]
    assert [a["email"] for a in data["previous_addresses"]] == ["reader@example.org"]
    assert [e["address"] for e in data["tracking_events"]] == ["reader@example.org"]

    client.post(one_time_link(client, on_commit, reader, "delete/"))
    assert not Subscriber.objects.exists()
    assert not PreviousAddress.objects.exists()
    assert list(Comment.objects.all()) == [theirs]
    assert list(Event.objects.all()) == [their_event]
    assert not Event.objects.filter(pk=my_event.pk).exists()
    assert not Comment.objects.filter(pk=mine.pk).exists()
    # Only the keyed hashes that honour the choice are kept, of both addresses.
    for email in ("new@example.org", "reader@example.org"):
        assert Suppression.objects.for_email(email).get().reason == "deleted"
    assert Suppression.objects.count() == 2


def test_my_data_lists_the_providers_events_about_me_and_not_my_batchmates(
    client, reader, on_commit
):
    # Mailgun gives every reader in a batch the one message id.
    other = SubscriberFactory(email="other@example.org")
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    for subscriber in (reader, other):
        Delivery.objects.create(
            mailing=send, batch=batch, subscriber=subscriber, esp_message_id="mg-1"
        )
    Event.objects.create(
        esp="mailgun",
        event_id="e-reader",
        event_type="delivered",
        recipient="reader@example.org",
        message_id="mg-1",
        timestamp=timezone.now(),
        raw={"recipient": "reader@example.org", "ip": "203.0.113.7"},
    )
    theirs = Event.objects.create(
        esp="mailgun",
        event_id="e-other",
        event_type="bounced",
        recipient="other@example.org",
        message_id="mg-1",
        raw={"recipient": "other@example.org"},
    )
    delivered("reader@example.org", "welcome")

    export = client.post(one_time_link(client, on_commit, reader, "export/"))
    events = json.loads(export.content)["tracking_events"]
    assert [(e["event"], e["address"]) for e in events] == [
        ("delivered", "reader@example.org"),
        ("delivered", "reader@example.org"),
    ]
    assert b"other@example.org" not in export.content
    assert b"203.0.113.7" not in export.content  # the provider's payload stays

    client.post(one_time_link(client, on_commit, reader, "delete/"))
    assert list(Event.objects.all()) == [theirs]


def moved_an_hour_ago(reader: Subscriber, new_email: str) -> None:
    PreviousAddress.objects.create(
        subscriber=reader,
        email=reader.email,
        moved_at=timezone.now() - timedelta(hours=1),
    )
    Subscriber.objects.filter(pk=reader.pk).update(email=new_email)
    reader.refresh_from_db()


def mailgun_batch(sent_at, *readers) -> Mailing:
    """One Mailgun call: every reader's copy has the one message id."""
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    for subscriber in readers:
        Delivery.objects.create(
            mailing=send,
            batch=batch,
            subscriber=subscriber,
            status=Delivery.Status.SENT,
            esp_message_id=f"mg-{send.pk}",
            sent_at=sent_at,
        )
    return send


def test_a_bounce_that_comes_after_i_moved_is_still_mine(client, reader, on_commit):
    send = mailgun_batch(timezone.now() - timedelta(hours=2), reader)
    moved_an_hour_ago(reader, "new@example.org")
    Event.objects.create(
        esp="mailgun",
        event_id="late",
        event_type="bounced",
        recipient="reader@example.org",
        message_id=f"mg-{send.pk}",
        raw={},
    )

    export = client.post(one_time_link(client, on_commit, reader, "export/"))

    events = json.loads(export.content)["tracking_events"]
    assert [(e["event"], e["address"]) for e in events] == [
        ("bounced", "reader@example.org")
    ]
    subscriber_delete(subscriber=reader)
    assert not Event.objects.exists()


def test_my_batchmate_at_the_address_i_left_keeps_their_events_to_themselves(
    client, reader, on_commit
):
    moved_an_hour_ago(reader, "new@example.org")
    successor = SubscriberFactory(email="reader@example.org")
    send = mailgun_batch(timezone.now(), reader, successor)
    theirs = Event.objects.create(
        esp="mailgun",
        event_id="theirs",
        event_type="bounced",
        recipient="reader@example.org",
        message_id=f"mg-{send.pk}",
        raw={},
    )

    export = client.post(one_time_link(client, on_commit, reader, "export/"))

    assert json.loads(export.content)["tracking_events"] == []
    subscriber_delete(subscriber=reader)
    assert list(Event.objects.all()) == [theirs]


def test_a_reader_who_takes_an_address_another_left_does_not_get_their_comments(
    reader,
):
    CommentFactory(email="reader@example.org", body="The first reader's.")
    assert email_change_confirm(subscriber=reader, new_email="moved@example.org")
    second = SubscriberFactory(email="Reader@Example.org")
    CommentFactory(email="reader@example.org", body="The second reader's.")

    def comments(subscriber) -> list[str]:
        return [
            c["comment"] for c in subscriber_export(subscriber=subscriber)["comments"]
        ]

    assert comments(second) == ["The second reader's."]
    assert comments(reader) == ["The first reader's."]
    subscriber_delete(subscriber=second)
    assert list(Comment.objects.values_list("body", flat=True)) == [
        "The first reader's."
    ]
    subscriber_delete(subscriber=reader)
    assert not Comment.objects.exists()


def test_erasing_a_reader_leaves_the_address_they_left_to_whoever_has_it_now(reader):
    assert email_change_confirm(subscriber=reader, new_email="moved@example.org")
    second = SubscriberFactory(email="reader@example.org")

    subscriber_delete(subscriber=reader)

    assert list(Subscriber.objects.confirmed()) == [second]
    assert not Suppression.objects.for_email("reader@example.org").exists()
    assert Suppression.objects.for_email("moved@example.org").exists()


def test_a_reader_who_moves_back_to_an_old_address_keeps_everything_written_since(
    reader,
):
    CommentFactory(email="reader@example.org", body="First.")
    assert email_change_confirm(subscriber=reader, new_email="b@example.org")
    CommentFactory(email="b@example.org", body="Second.")
    assert email_change_confirm(subscriber=reader, new_email="reader@example.org")
    CommentFactory(email="reader@example.org", body="Third.")

    data = subscriber_export(subscriber=reader)
    assert [c["comment"] for c in data["comments"]] == ["First.", "Second.", "Third."]
    assert [a["email"] for a in data["previous_addresses"]] == [
        "reader@example.org",
        "b@example.org",
    ]
    subscriber_delete(subscriber=reader)
    assert not Comment.objects.exists()
    assert not PreviousAddress.objects.exists()


def test_the_one_time_link_email_says_what_it_does_with_the_link_in_both_parts(
    client, reader, on_commit
):
    on_commit(client.post, url(reader, "delete/"))
    [message] = mail.outbox
    assert message.subject == "Your link to delete your On Probation data"
    html = message.alternatives[0][0]
    link = link_in(message, "/preferences/once/")
    assert link in html
    assert "works once, within 60 minutes" in message.body
    assert "cannot be undone" in html
    assert "List-Unsubscribe" not in message.extra_headers


@pytest.fixture
def per_reader(settings):
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True


def engagement_link(client, on_commit, reader) -> str:
    """Tick the engagement box in the preference centre, and take the link that
    arrives at the reader's own address."""
    return one_time_link(
        client, on_commit, reader, "", {"action": "engagement", "engagement": "1"}
    )


@pytest.mark.usefixtures("per_reader")
def test_the_engagement_link_says_what_it_does_in_the_readers_own_words(
    client, reader, on_commit
):
    on_commit(client.post, url(reader), {"action": "engagement", "engagement": "1"})
    [message] = mail.outbox
    assert message.to == [reader.email]
    assert message.subject == "Your link to agree to what the On Probation editor sees"
    html = message.alternatives[0][0]
    link = link_in(message, "/preferences/once/")
    assert link in html
    for part in (message.body, html):
        assert ENGAGEMENT_CONSENT_WORDING in " ".join(part.split())
    page = client.get(link).content.decode()
    assert ENGAGEMENT_CONSENT_WORDING in page
    assert "I agree" in page


@pytest.mark.usefixtures("per_reader")
def test_a_tampered_expired_or_used_engagement_link_gets_a_clear_answer(
    client, reader, on_commit, monkeypatch
):
    link = engagement_link(client, on_commit, reader)
    token = link.split("/")[-2]
    payload, rest = token.split(":", 1)
    detail = json.loads(signing.b64_decode(payload.encode()))
    detail[-1] = "engagement:x"
    tampered = signing.b64_encode(json.dumps(detail).encode()).decode()
    response = client.post(f"/preferences/once/{tampered}:{rest}/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()

    with monkeypatch.context() as later:
        later.setitem(tokens.MAX_AGE, Purpose.ONE_TIME, -1)
        response = client.post(link)
    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None

    assert client.post(link).status_code == 200
    reader.refresh_from_db()
    agreed_at = reader.engagement_agreed_at
    assert agreed_at is not None
    response = client.post(link)
    assert response.status_code == 410
    assert "This link has been used" in response.text
    reader.refresh_from_db()
    assert reader.engagement_agreed_at == agreed_at
    assert Consent.objects.filter(subscriber=reader, engagement=True).count() == 1


@pytest.mark.parametrize(
    ("suffix", "sent"),
    [
        ("export/", {}),
        ("", {"action": "engagement", "engagement": "1"}),
        ("email/", {"new_email": "new@example.org"}),
    ],
)
def test_a_one_time_link_clicked_again_says_it_was_used_and_how_to_ask_again(
    client, reader, on_commit, per_reader, suffix, sent
):
    """It said "This link is not valid … copied incompletely … subscribe again"
    to a subscribed reader who had just used it."""
    link = one_time_link(client, on_commit, reader, suffix, sent)
    assert on_commit(client.post, link).status_code == 200
    mail.outbox.clear()

    for again in (client.get(link), client.post(link)):
        assert again.status_code == 410
        assert "This link has been used" in again.text
        assert "ask for a new link from the preferences link" in again.text
        assert "not valid" not in again.text
        assert "subscribe again" not in again.text
    assert not mail.outbox


def test_the_delete_link_clicked_again_says_the_data_is_deleted(
    client, reader, on_commit
):
    link = one_time_link(client, on_commit, reader, "delete/")
    assert client.post(link).status_code == 200

    for again in (client.get(link), client.post(link)):
        assert again.status_code == 410
        assert "Your data is deleted" in again.text
        assert "not valid" not in again.text
    assert not Subscriber.objects.exists()


def test_the_delete_link_clicked_again_says_what_is_still_kept(
    client, reader, on_commit
):
    """It said "We no longer hold your address or anything with it", yet the
    suppression list keeps a keyed fingerprint of it and the email provider its
    own copies (docs/security.md)."""
    link = one_time_link(client, on_commit, reader, "delete/")
    client.post(link)

    again = client.get(link).text
    assert "no longer hold your address" not in again
    assert "We keep only a one-way keyed fingerprint of each address" in again
    assert "The service that delivers our emails keeps its own records" in again


def test_an_older_one_time_link_is_still_not_valid_while_a_newer_one_waits(
    client, reader, on_commit
):
    older = one_time_link(client, on_commit, reader, "export/")
    one_time_link(client, on_commit, reader, "export/")

    response = client.get(older)

    assert response.status_code == 404
    assert "This link is not valid" in response.text


@pytest.mark.usefixtures("per_reader")
def test_an_engagement_link_agrees_to_nothing_once_the_editor_turns_it_off(
    client, reader, on_commit, settings
):
    link = engagement_link(client, on_commit, reader)
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    response = client.post(link)
    assert response.status_code == 400
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None
    assert not Consent.objects.filter(subscriber=reader, engagement=True).exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_topics_saved_in_one_tab_while_the_reader_erases_their_data_in_another(
    reader,
):
    """The reader saves their topics as their erasure commits: the page says the
    subscription was deleted, and nothing of theirs is written back (it was a 500:
    the topics were inserted for a reader no longer there)."""
    topics_page = url(reader, "topics/")
    saved = as_erasure_commits(
        reader,
        lambda: Client(raise_request_exception=False).post(
            topics_page, {"frequency": "instant"}
        ),
    )
    assert saved.status_code == 410
    assert "This subscription was deleted" in saved.text
    assert not Subscriber.objects.exists()
    assert not SubscriberTopic.objects.exists()


def holding_its_transaction_open(work, answers: list):
    """`work` run in a thread, in a transaction it keeps open (its locks held)
    until the returned `commit` is called; what it returns goes to `answers`."""
    done, go_on = threading.Event(), threading.Event()

    def run():
        with transaction.atomic():
            answer = work()
            done.set()
            go_on.wait(timeout=10)
        return answer

    thread = in_a_thread(run, answers)
    assert done.wait(timeout=10)

    def commit():
        go_on.set()
        thread.join(timeout=10)

    return commit


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["the reader moves", "the stranger confirms"])
def test_a_stranger_confirming_the_address_as_the_reader_moves_there(
    reader, on_commit, first
):
    """Whoever commits first has the address; the other is told, and neither is a
    500 nor deletes the other's subscription."""
    stranger = a_stranger_subscribes("new@example.org")
    confirm_subscription = link_in(mail.outbox[-1], "/subscribe/confirm/")
    client = Client(raise_request_exception=False)
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm_move = link_in(mail.outbox[-1], "/preferences/email/confirm/")
    consent = stranger.consents.get()

    first_answers, second_answers = [], []
    if first == "the reader moves":
        commit = holding_its_transaction_open(
            lambda: email_change_confirm(
                subscriber=reader, new_email="new@example.org"
            ),
            first_answers,
        )
        second = in_a_thread(
            lambda: client.post(confirm_subscription).status_code, second_answers
        )
    else:
        commit = holding_its_transaction_open(
            lambda: subscriber_confirm(subscriber=stranger, consent_id=consent.pk),
            first_answers,
        )
        second = in_a_thread(
            lambda: client.post(confirm_move).status_code, second_answers
        )
    until_done_or_waiting_for_a_lock(second)
    commit()
    second.join(timeout=10)

    holder = Subscriber.objects.get(email="new@example.org")
    reader.refresh_from_db()
    if first == "the reader moves":
        assert (first_answers, second_answers) == ([True], [200])
        assert holder == reader
        assert not Subscriber.objects.filter(pk=stranger.pk).exists()
    else:
        assert (first_answers, second_answers) == ([False], [409])
        assert holder == stranger
        assert holder.status == Subscriber.Status.ACTIVE
        assert reader.email == "reader@example.org"
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_the_stranger_asking_again_as_the_reader_moves_there_finds_it_taken(
    reader, on_commit
):
    """Their second request meets the move committing: it is the subscribe form's
    answer to an address already subscribed (nothing), not a task that fails."""
    stranger = a_stranger_subscribes("new@example.org")
    client = Client(raise_request_exception=False)
    ask_to_move(client, on_commit, reader, "new@example.org")

    moved, asked = [], []
    commit = holding_its_transaction_open(
        lambda: email_change_confirm(subscriber=reader, new_email="new@example.org"),
        moved,
    )
    again = in_a_thread(
        lambda: subscription_request(email="new@example.org", name="Not Sam"), asked
    )
    until_done_or_waiting_for_a_lock(again)
    commit()
    again.join(timeout=10)

    assert (moved, asked) == ([True], [None])
    assert Subscriber.objects.get(email="new@example.org") == reader
    assert not Subscriber.objects.filter(pk=stranger.pk).exists()
    assert not Consent.objects.exclude(subscriber=reader).exists()


def test_a_reader_asking_for_emails_with_redis_down_is_refused_and_nothing_changes(
    client, reader, redis_down, django_capture_on_commit_callbacks
):
    client.post(url(reader), {"action": "unsubscribe"})
    consents = reader.consents.count()
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(url(reader), {"action": "resubscribe"})
        data = client.post(url(reader, "export/"))
    for response in (again, data):
        assert response.status_code == 503
        assert "try again in a minute" in response.text
    reader.refresh_from_db()
    assert reader.confirmation_sent_at is None
    assert reader.consents.count() == consents
    assert not mail.outbox


def assert_nothing_asked(reader) -> None:
    reader.refresh_from_db()
    assert reader.one_time_link_sent_at is None
    assert reader.email == "reader@example.org"
    assert not mail.outbox


def test_a_reader_over_the_limit_gets_the_new_address_back_as_they_typed_it(
    client, reader, settings
):
    """The answer was a page saying "try again in an hour", with no form: the new
    address the reader had typed was gone."""
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = 0
    response = client.post(url(reader, "email/"), {"new_email": "new@example.org"})
    assert response.status_code == 429
    assert response["Retry-After"] == str(
        settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS
    )
    assert "<title>Too many requests: Your newsletter preferences" in response.text
    assert "try again in an hour" in response.text
    assert 'name="new_email" value="new@example.org"' in response.text
    assert_nothing_asked(reader)


@pytest.mark.parametrize(
    ("suffix", "sent", "as_sent"),
    [
        ("email/", {"new_email": "new@example.org"}, 'value="new@example.org"'),
        ("", {"action": "engagement", "engagement": "1"}, 'value="1" checked'),
        ("export/", {}, "Email me the link to my data</button>"),
        ("delete/", {}, "Keep my data and go back</a>"),
    ],
)
def test_a_reader_asking_for_a_link_with_redis_down_gets_the_form_back_as_sent(
    client, reader, redis_down, per_reader, suffix, sent, as_sent
):
    response = client.post(url(reader, suffix), sent)
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "<title>Please try again in a minute:" in response.text
    assert "nothing has been stored or sent" in response.text
    assert as_sent in response.text
    assert_nothing_asked(reader)


def test_the_change_link_clicked_again_says_the_address_is_changed_and_no_more(
    client, reader, on_commit
):
    """It said "This link is not valid … subscribe again" to a reader who had just
    changed their address with it. The link names the new address, and went only
    to it: saying it is changed tells its holder nothing they could not know."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(confirm)
    client.post(url(Subscriber.objects.get(), ""), {"action": "unsubscribe"})

    for again in (client.get(confirm), client.post(confirm)):
        assert again.status_code == 200
        assert "Your address is already changed" in again.text
        assert "This link changed your address to new@example.org." in again.text
        assert "subscribe again" not in again.text
        # Nothing of what the reader did since, nor a key to their preferences.
        assert "/preferences/" not in again.text
        assert "unsubscribed" not in again.text.lower()
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert reader.previous_addresses.count() == 1


@pytest.mark.parametrize("meanwhile", ["nothing", "pause", "unsubscribe"])
def test_the_change_link_clicked_again_leads_the_reader_to_their_preferences(
    client, reader, on_commit, meanwhile
):
    """It said to use the link in the newest email we sent, which may be this very
    one, with no preferences link in it. Followed as it says now, the advice
    leads to the reader's preferences, whatever they did since."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(confirm)
    if meanwhile != "nothing":
        client.post(url(Subscriber.objects.get()), {"action": meanwhile})

    page = client.get(confirm).text

    assert "newest email" not in page
    assert (
        "For your preferences, use the link at the end of any newsletter email "
        "sent to new@example.org. None comes while the newsletter is paused or "
        "stopped: subscribe with that address again to start it."
    ) in page
    mail.outbox.clear()
    if meanwhile != "nothing":
        on_commit(subscription_request, email="new@example.org")
        on_commit(client.post, link_in(mail.outbox[-1], "/subscribe/confirm/"))
    on_commit(post_publish, post=PostFactory())
    newsletter = mail.outbox[-1]
    assert newsletter.to == ["new@example.org"]
    centre = client.get(link_in(newsletter, "/preferences/"))
    assert centre.status_code == 200
    assert "new@example.org" in centre.text


def test_the_change_link_opened_after_its_days_once_used_says_the_address_is_changed(
    client, reader, on_commit, monkeypatch
):
    """Back at the email a week on, the reader whose address it had changed was
    told the link had expired and to ask for a new one, as if it were still to do
    (the new request refused: that is their address already)."""
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(confirm)
    monkeypatch.setitem(tokens.MAX_AGE, Purpose.CHANGE_EMAIL, -1)

    for again in (client.get(confirm), client.post(confirm)):
        assert again.status_code == 200
        assert "This link changed your address to new@example.org." in again.text
        assert "expired" not in again.text
    reader.refresh_from_db()
    assert reader.email == "new@example.org"
    assert reader.previous_addresses.count() == 1


@pytest.mark.parametrize("then", ["moved on", "moved back", "asked again"])
def test_a_change_link_superseded_since_it_was_used_is_not_valid(
    client, reader, on_commit, then
):
    ask_to_move(client, on_commit, reader, "new@example.org")
    confirm = link_in(mail.outbox[0], "/preferences/email/confirm/")
    client.post(confirm)
    reader.refresh_from_db()
    Subscriber.objects.update(email_change_requested_at=None)  # the next day
    mail.outbox.clear()
    if then == "moved on":
        ask_to_move(client, on_commit, reader, "third@example.org")
        client.post(link_in(mail.outbox[0], "/preferences/email/confirm/"))
    elif then == "moved back":
        ask_to_move(client, on_commit, reader, "reader@example.org")
        client.post(link_in(mail.outbox[0], "/preferences/email/confirm/"))
    else:  # not confirmed: the newsletter still goes to new@
        ask_to_move(client, on_commit, reader, "third@example.org")

    response = client.post(confirm)

    assert response.status_code == 404
    assert "This link is not valid" in response.text


def test_international_addresses_are_shown_to_the_reader_as_they_write_them(
    client, on_commit
):
    """Stored and emailed in their ASCII form, the addresses were shown so too
    (sam@xn--bcher-kva.example), on the pages and in the emails a reader reads."""
    reader = SubscriberFactory(email="sam@xn--bcher-kva.example")

    assert "<strong>sam@bücher.example</strong>" in client.get(url(reader)).text
    link = one_time_link(
        client, on_commit, reader, "email/", {"new_email": "sam@Bibliothèque.example"}
    )
    asked = client.get(link).text
    assert (
        "Send the newsletter to <strong>sam@bibliothèque.example</strong> instead "
        "of sam@bücher.example?"
    ) in asked
    on_commit(client.post, link)
    [message] = mail.outbox
    assert message.to == ["sam@xn--bibliothque-59a.example"]
    assert "at this address (sam@bibliothèque.example)" in " ".join(
        message.body.split()
    )
    moved = client.post(link_in(message, "/preferences/email/confirm/")).text
    assert "the newsletter goes to sam@bibliothèque.example." in moved
    reader.refresh_from_db()
    assert reader.email == "sam@xn--bibliothque-59a.example"
    left = client.post(url(reader), {"action": "unsubscribe"}).text
    assert "Nothing more will be sent to sam@bibliothèque.example." in left
    for page in (asked, moved, left, message.body):
        assert "xn--" not in page


def test_a_broken_preferences_link_says_where_a_working_one_is(client, reader):
    response = client.get(url(reader)[:-4] + "/")

    assert response.status_code == 404
    assert "subscribe again" not in response.text
    assert "the preferences link at the end of any newsletter email" in response.text
