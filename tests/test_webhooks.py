"""Tracking webhooks, posted as the ESPs post them (payload shapes from the Postmark
and Mailgun webhook documentation, as parsed by anymail)."""

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.core import checks, mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.test.client import MULTIPART_CONTENT
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from newsletter import comment_emails, subscriptions
from newsletter.checks import check_webhook_secret
from newsletter.comment_tasks import send_comment_digest
from newsletter.desk import desk_for
from newsletter.models import (
    Batch,
    Delivery,
    Event,
    Mailing,
    SignatureToken,
    Subscriber,
    Suppression,
)
from newsletter.reports import post_report
from newsletter.tasks import purge_old_events
from posts.comments.models import Comment

from .factories import (
    CommentFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
)
from .locks import as_erasure_commits

pytestmark = pytest.mark.django_db

SECRET = "anymail-hook:correct-horse-battery"
MAILGUN_KEY = "mailgun-webhook-signing-key-123"
POSTMARK_URL = "/anymail/postmark/tracking/"
MAILGUN_URL = "/anymail/mailgun/tracking/"


POSTMARK_BACKEND = "anymail.backends.postmark.EmailBackend"
MAILGUN_BACKEND = "anymail.backends.mailgun.EmailBackend"


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.EMAIL_BACKEND = POSTMARK_BACKEND
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    }


def basic_auth(credentials: str = SECRET) -> dict:
    return {
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(credentials.encode()).decode()
    }


@pytest.fixture
def reader():
    return SubscriberFactory(email="reader@example.org")


def delivery_to(subscriber: Subscriber, message_id: str) -> Delivery:
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    return Delivery.objects.create(
        mailing=send,
        batch=batch,
        subscriber=subscriber,
        status=Delivery.Status.SENT,
        esp_message_id=message_id,
    )


# Postmark ------------------------------------------------------------------------

POSTMARK_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def postmark_delivery(email="reader@example.org", at="2026-11-26T16:33:54Z"):
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "broadcast",
        "MessageID": POSTMARK_ID,
        "Recipient": email,
        "Tag": "",
        "DeliveredAt": at,
        "Details": "Test delivery webhook details",
        "Metadata": {},
    }


# Postmark's bounce types as its bounce API lists them: code, name, and whether it
# deactivates the address (Inactive), for those a test posts.
POSTMARK_BOUNCE_TYPES = {
    "HardBounce": (1, "Hard bounce", True),
    "Transient": (2, "Message delayed", False),
    "AutoResponder": (64, "Auto responder", False),
    "DnsError": (256, "DNS error", False),
    "SpamNotification": (512, "Spam notification", False),
    "OpenRelayTest": (1024, "Open relay test", False),
    "SoftBounce": (4096, "Soft bounce", False),
    "VirusNotification": (8192, "Virus notification", False),
    "ManuallyDeactivated": (100002, "Manually deactivated", True),
    "Blocked": (100006, "ISP block", False),
    "SMTPApiError": (100007, "SMTP API error", False),
    "DMARCPolicy": (100009, "DMARC Policy", False),
}


def postmark_bounce(
    bounce_type="HardBounce",
    event_id=4323372036854775807,
    at="2026-11-26T16:34:54Z",
    message_id=POSTMARK_ID,
):
    code, name, inactive = POSTMARK_BOUNCE_TYPES[bounce_type]
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": event_id,
        "Type": bounce_type,
        "TypeCode": code,
        "Name": name,
        "Tag": "",
        "MessageID": message_id,
        "Metadata": {},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account does not exist.",
        "Email": "reader@example.org",
        "From": "newsletter@example.org",
        "BouncedAt": at,
        "DumpAvailable": True,
        "Inactive": inactive,
        "CanActivate": True,
        "Subject": "Suffolk: caseloads too high",
        "Content": "<Full dump of bounce>",
    }


def postmark_complaint():
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "broadcast",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "",
        "MessageID": POSTMARK_ID,
        "Metadata": {},
        "ServerID": 23,
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
        "Email": "reader@example.org",
        "From": "newsletter@example.org",
        "BouncedAt": "2026-11-26T16:35:54Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Suffolk: caseloads too high",
    }


def postmark_subscription_change():
    return {
        "RecordType": "SubscriptionChange",
        "MessageID": POSTMARK_ID,
        "ServerID": 23,
        "MessageStream": "broadcast",
        "ChangedAt": "2026-11-26T16:36:54Z",
        "Recipient": "reader@example.org",
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "Tag": "",
        "Metadata": {},
    }


def postmark_open():
    return {
        "RecordType": "Open",
        "MessageStream": "broadcast",
        "Metadata": {},
        "FirstOpen": True,
        "Recipient": "reader@example.org",
        "MessageID": POSTMARK_ID,
        "ReceivedAt": "2026-11-26T17:00:00Z",
        "Platform": "WebMail",
        "ReadSeconds": 5,
        "Tag": "",
        "UserAgent": "Mozilla/5.0",
        "OS": {"Name": "OS X 10.7 Lion", "Family": "OS X", "Company": "Apple"},
        "Client": {"Name": "Chrome 35.0", "Family": "Chrome", "Company": "Google"},
        "Geo": {"CountryISOCode": "GB", "Country": "United Kingdom"},
    }


def postmark_click():
    return {
        "RecordType": "Click",
        "MessageStream": "broadcast",
        "ClickLocation": "HTML",
        "Client": {"Name": "Chrome 35.0", "Family": "Chrome", "Company": "Google"},
        "OS": {"Name": "OS X 10.7 Lion", "Family": "OS X", "Company": "Apple"},
        "Platform": "Desktop",
        "UserAgent": "Mozilla/5.0",
        "OriginalLink": "https://example.org/posts/suffolk/",
        "Geo": {"CountryISOCode": "GB", "Country": "United Kingdom"},
        "MessageID": POSTMARK_ID,
        "Metadata": {},
        "ReceivedAt": "2026-11-26T17:05:00Z",
        "Tag": "",
        "Recipient": "reader@example.org",
    }


def post_postmark(client, payload, **auth):
    return client.post(
        POSTMARK_URL,
        data=json.dumps(payload),
        content_type="application/json",
        **(auth or basic_auth()),
    )


def provider_reports(client, settings, payload: dict, taken) -> None:
    """The provider posts its tracking webhook about a message it took (one of
    fake_esp.deliveries()), as Postmark does: its id and our metadata."""
    payload.update(MessageID=taken.message_id, Metadata=taken.metadata)
    payload["Email" if "Email" in payload else "Recipient"] = taken.address
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": SECRET}
    assert post_postmark(client, payload).status_code == 200


def test_postmark_delivery_updates_the_ledger_once(client, reader):
    delivery = delivery_to(reader, POSTMARK_ID)
    for _ in range(2):  # Postmark retries; the second copy changes nothing
        assert post_postmark(client, postmark_delivery()).status_code == 200
    event = Event.objects.get()
    assert (event.esp, event.event_type) == ("postmark", "delivered")
    assert event.recipient == "reader@example.org"
    assert event.message_id == POSTMARK_ID
    assert event.raw["RecordType"] == "Delivery"
    delivery.refresh_from_db()
    assert delivery.last_event == "delivered"
    assert delivery.last_event_at.isoformat() == "2026-11-26T16:33:54+00:00"


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's plan of the lookup"
)
def test_an_event_finds_its_ledger_row_by_index_not_by_reading_the_ledger(
    client, reader
):
    """The provider posts an event for every message sent: reading the whole
    ledger for each made a send's events cost the square of its readers."""
    row = delivery_to(reader, POSTMARK_ID)
    # A ledger of a few thousand messages, each with its own id, as the planner
    # sees it (its statistics otherwise are whatever earlier tests left).
    readers = Subscriber.objects.bulk_create(
        Subscriber(email=f"r{n}@example.org", status=Subscriber.Status.ACTIVE)
        for n in range(3000)
    )
    Delivery.objects.bulk_create(
        Delivery(
            mailing_id=row.mailing_id,
            batch_id=row.batch_id,
            subscriber=other,
            status=Delivery.Status.SENT,
            esp_message_id=f"message-{other.email}",
        )
        for other in readers
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE newsletter_delivery")
    with CaptureQueriesContext(connection) as queries:
        assert post_postmark(client, postmark_delivery()).status_code == 200
    (lookup,) = [
        query["sql"]
        for query in queries
        if query["sql"].startswith("SELECT")
        and 'FROM "newsletter_delivery"' in query["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + lookup)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "delivery_by_message_id" in plan, plan
    assert "Seq Scan on newsletter_delivery" not in plan, plan
    row.refresh_from_db()
    assert row.last_event == "delivered"


@pytest.mark.usefixtures("celery_eager")
def test_events_are_forgotten_after_the_retention_but_not_what_they_did(
    client, reader, settings
):
    settings.NEWSLETTER_KEEP_EVENTS_DAYS = 90
    delivery = delivery_to(reader, POSTMARK_ID)
    post_postmark(client, postmark_delivery())
    post_postmark(client, postmark_click())
    old, recent = Event.objects.order_by("pk")
    Event.objects.filter(pk=old.pk).update(
        received_at=timezone.now() - timedelta(days=91)
    )
    assert purge_old_events.delay().get() == 1
    assert list(Event.objects.all()) == [recent]
    delivery.refresh_from_db()
    # The purged delivery event's effect stays; a click is not the ledger's.
    assert delivery.last_event == "delivered"
    settings.NEWSLETTER_KEEP_EVENTS_DAYS = 0  # kept for ever
    Event.objects.update(received_at=timezone.now() - timedelta(days=3650))
    assert purge_old_events.delay().get() == 0
    assert Event.objects.count() == 1


def test_postmark_opens_and_clicks_are_not_kept_against_the_reader(client, reader):
    delivery = delivery_to(reader, POSTMARK_ID)
    post_postmark(client, postmark_delivery())
    post_postmark(client, postmark_click())
    post_postmark(client, postmark_open())
    post_postmark(client, postmark_open())  # the provider sends it again
    assert Event.objects.count() == 3
    delivery.refresh_from_db()
    assert delivery.last_event == "delivered"  # what the sender needs, no more
    # The open and click are logged (to recognise a repeat) without naming anyone.
    for event in Event.objects.filter(event_type__in=["opened", "clicked"]):
        assert (event.recipient, event.message_id, event.raw) == ("", "", {})
    assert Event.objects.get(event_type="delivered").recipient == reader.email
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize("agent", [5, ["Mozilla/5.0"], {"Name": "Chrome"}])
def test_an_open_whose_user_agent_is_not_text_is_a_400_and_counts_nothing(
    client, reader, agent
):
    delivery = delivery_to(reader, POSTMARK_ID)
    malformed = postmark_open() | {"UserAgent": agent}
    assert post_postmark(client, malformed).status_code == 400
    assert not Event.objects.exists()
    delivery.mailing.refresh_from_db()
    assert (delivery.mailing.opens_people, delivery.mailing.opens_machines) == (0, 0)


def test_an_open_carrying_a_field_mailgun_would_nest_is_counted_as_postmarks(
    client, reader
):
    # Only Mailgun's events have "event-data"; read as Mailgun's in a Postmark
    # open, a text there was a 500.
    delivery = delivery_to(reader, POSTMARK_ID)
    stray = postmark_open() | {
        "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/133.0",
        "event-data": "not Mailgun's",
    }
    assert post_postmark(client, stray).status_code == 200
    delivery.mailing.refresh_from_db()
    assert (delivery.mailing.opens_people, delivery.mailing.opens_machines) == (1, 0)


def test_postmark_hard_bounce_suppresses_the_address(client, reader):
    delivery = delivery_to(reader, POSTMARK_ID)
    assert post_postmark(client, postmark_bounce()).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.for_email(reader.email).get().reason == "hard_bounce"
    assert Event.objects.get().event_id == "4323372036854775807"
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"
    assert not Subscriber.objects.confirmed().exists()


def test_a_postmark_virus_notification_counts_as_a_soft_bounce_not_a_hard_one(
    client, reader, settings
):
    # Postmark reports the receiving server finding a virus in the message as a
    # bounce: it says nothing of the mailbox, which must not be lost for good.
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 2
    post_postmark(client, postmark_bounce("VirusNotification", 1, message_id="m1"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.soft_bounces == 1
    assert not Suppression.objects.exists()
    post_postmark(client, postmark_bounce("VirusNotification", 2, message_id="m2"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


def test_an_address_postmark_deactivated_by_hand_is_suppressed_as_a_hard_bounce(
    client, reader
):
    """Postmark refuses to send to an address deactivated in its dashboard
    (ManuallyDeactivated, which anymail reports as a rejection, "blocked"): the
    reader stayed active, and every email to them failed."""
    delivery = delivery_to(reader, POSTMARK_ID)
    bounce = postmark_bounce("ManuallyDeactivated")
    assert post_postmark(client, bounce).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.for_email(reader.email).get().reason == "hard_bounce"
    delivery.refresh_from_db()
    assert delivery.last_event == "rejected"


def test_a_postmark_spam_filters_refusal_counts_as_a_soft_bounce(
    client, reader, settings
):
    """The reader's spam filter refused the message (SpamNotification: never
    delivered, and Postmark keeps the address active): nothing said the address
    is bad, nor that the reader complained. It counted for nothing (a reader
    whose every email was refused stayed on the list for good), and then
    suppressed the reader as if they had complained."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 2
    post_postmark(client, postmark_bounce("SpamNotification", 1, message_id="m1"))
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 1)
    assert not Suppression.objects.exists()
    post_postmark(client, postmark_bounce("SpamNotification", 2, message_id="m2"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


@pytest.mark.usefixtures("celery_eager")
@pytest.mark.parametrize("bounce_type", ["DMARCPolicy", "Blocked"])
def test_a_reader_whose_emails_were_refused_for_our_sender_stays_and_gets_the_next(
    client, reader, settings, publish, bounce_type
):
    """The receiving provider refused the publication's sender, not the reader
    (DMARCPolicy: our From domain's own DMARC policy, a broken DKIM or SPF
    record; Blocked: an ISP's block of our sender's reputation or content).
    These counted as the reader's soft bounces: three daily digests from a
    misconfigured domain suppressed every reader at that provider for good."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    sent = [delivery_to(reader, f"m{n}") for n in (1, 2, 3)]
    for n, at in enumerate(["2026-11-26", "2026-11-27", "2026-11-28"], start=1):
        refused = postmark_bounce(bounce_type, n, f"{at}T09:00:00Z", f"m{n}")
        assert post_postmark(client, refused).status_code == 200

    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()
    for delivery in sent:  # the email still did not reach them
        delivery.refresh_from_db()
        assert delivery.last_event == "rejected"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    publish(PostFactory(title="Suffolk: caseloads too high"))
    assert [m.to for m in mail.outbox] == [["reader@example.org"]]


def test_a_refusal_of_our_sender_neither_counts_nor_restarts_the_soft_bounces(
    client, reader, settings
):
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    for n, bounce_type in enumerate(["SoftBounce", "SoftBounce", "DMARCPolicy"], 1):
        post_postmark(client, postmark_bounce(bounce_type, n, message_id=f"m{n}"))
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 2)

    post_postmark(client, postmark_bounce("SoftBounce", 4, message_id="m4"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


def test_a_postmark_spam_filters_refusal_counts_as_a_bounce_not_a_complaint(
    client, rf, reader
):
    """Postmark's SpamNotification, which anymail calls a complaint, was kept as
    one: the desk's complaint rate and the post's report counted a reader who
    never saw the email as reached and complaining about it."""
    delivery = delivery_to(reader, POSTMARK_ID)
    assert post_postmark(client, postmark_bounce("SpamNotification")).status_code == 200

    assert Event.objects.get().event_type == "bounced"
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"
    request = rf.get("/admin/")
    request.user = UserFactory()
    (shown,) = desk_for(request).mailings
    assert (shown["complaint_percent"], shown["bounce_percent"]) == (0, 100)
    figures = post_report(delivery.mailing.post)
    assert (figures["complained"], figures["delivered"], figures["bounced"]) == (
        0,
        0,
        1,
    )


def test_a_postmark_open_relay_test_counts_for_nothing_against_the_reader(
    client, reader, settings
):
    """The reader's mail server testing whether Postmark relays anyone's mail,
    which anymail reads as a deferral: it counted as the reader's soft bounce,
    and a reader two bounces in was suppressed for it, though it says nothing of
    their mailbox; the email it names was delivered all the same."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    delivery = delivery_to(reader, POSTMARK_ID)
    assert post_postmark(client, postmark_delivery()).status_code == 200
    # Two soft bounces of earlier emails, reported after this one's delivery.
    Subscriber.objects.filter(pk=reader.pk).update(soft_bounces=2)

    relay_test = postmark_bounce("OpenRelayTest", at="2026-11-26T16:40:00Z")
    assert post_postmark(client, relay_test).status_code == 200

    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 2)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.last_event == "delivered"


OUR_SENDERS_HINT = (
    "check the sending domain's SPF, DKIM and DMARC records and the provider's"
    " sender reputation"
)


def test_the_desk_counts_refusals_of_our_sender_apart_and_says_what_to_check(
    client, reader
):
    """A broken DMARC record showed on the desk and the post's report only as the
    readers' bounces: nothing pointed the author at their own sending domain."""
    delivery = delivery_to(reader, POSTMARK_ID)
    Delivery.objects.create(
        mailing=delivery.mailing,
        batch=delivery.batch,
        subscriber=SubscriberFactory(email="gone@example.org"),
        status=Delivery.Status.SENT,
        esp_message_id="m-gone",
    )
    assert post_postmark(client, postmark_bounce("DMARCPolicy")).status_code == 200
    gone = postmark_bounce("HardBounce", 2, message_id="m-gone")
    gone["Email"] = "gone@example.org"
    assert post_postmark(client, gone).status_code == 200
    post = delivery.mailing.post
    client.force_login(UserFactory())

    desk = client.get("/admin/").content.decode().replace("&#x27;", "'")
    assert (
        f"{delivery.mailing}: bounces 50.0% (over 2%) and refused because of our"
        f" sender 50.0% (over 2%) of 2 accepted: {OUR_SENDERS_HINT}"
    ) in desk
    assert "50.0 %<br>50.0 % refused because of our sender" in desk
    assert desk.count(OUR_SENDERS_HINT) == 2  # needs you, and the mailings' note
    report = client.get(f"/admin/newsletter/postreport/{post.pk}/change/")
    figures = dict(report.context["figures"])
    assert (figures["Bounced"], figures["Refused because of our sender"]) == (1, 1)
    assert OUR_SENDERS_HINT in report.content.decode().replace("&#x27;", "'")


def test_saving_an_emails_row_at_the_desk_keeps_its_refusal_of_our_sender(
    client, reader
):
    """The ledger's page shows every field read-only, as the provider's word:
    sender_refused was a checkbox there, and the row saved with it unticked
    moved the email into the readers' bounces on the desk and the report."""
    delivery = delivery_to(reader, POSTMARK_ID)
    assert post_postmark(client, postmark_bounce("DMARCPolicy")).status_code == 200
    client.force_login(UserFactory(is_superuser=True))
    page = f"/admin/newsletter/delivery/{delivery.pk}/change/"

    assert 'name="sender_refused"' not in client.get(page).content.decode()
    assert client.post(page, {}).status_code == 302
    delivery.refresh_from_db()
    assert delivery.sender_refused
    # The event that said so says so too.
    event_page = client.get(f"/admin/newsletter/event/{Event.objects.get().pk}/change/")
    shown = event_page.content.decode().partition("Refused our sender")[2]
    assert 'alt="True"' in shown.partition("</div>\n</div>")[0]


def test_postmark_soft_bounces_suppress_only_at_the_limit(client, reader, settings):
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    post_postmark(client, postmark_bounce("SoftBounce", 1, message_id="m1"))
    post_postmark(client, postmark_bounce("SoftBounce", 1, message_id="m1"))  # a retry
    post_postmark(client, postmark_bounce("SoftBounce", 2, message_id="m2"))
    reader.refresh_from_db()
    assert reader.soft_bounces == 2
    assert reader.status == Subscriber.Status.ACTIVE

    # A delivery after them starts the count again.
    post_postmark(client, postmark_delivery(at="2026-11-27T09:00:00Z"))
    later = "2026-11-28T09:00:00Z"
    for n in (3, 4):
        post_postmark(client, postmark_bounce("SoftBounce", n, later, f"m{n}"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    post_postmark(client, postmark_bounce("SoftBounce", 5, later, "m5"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


@pytest.mark.parametrize("delay", ["Transient", "DnsError"])
def test_a_reader_whose_mail_host_postmark_waited_on_for_emails_that_arrived_stays(
    client, reader, settings, delay
):
    """Postmark's Transient ("Message delayed") and DnsError ("a temporary DNS
    error") say it will try the email again, and it reports the delivery after:
    a mail host that delayed three emails for an hour, then took them, loses us
    no reader."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    for n in (1, 2, 3):
        delayed = postmark_bounce(delay, n, "2026-11-26T16:34:54Z", f"m{n}")
        assert post_postmark(client, delayed).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    for n in (1, 2, 3):
        arrived = postmark_delivery(at="2026-11-26T17:34:54Z") | {"MessageID": f"m{n}"}
        assert post_postmark(client, arrived).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()


def test_a_delivery_older_than_the_soft_bounces_does_not_restart_their_count(
    client, reader, settings
):
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    soft, later = "SoftBounce", "2026-11-28T09:00:00Z"
    for n in (1, 2):
        post_postmark(client, postmark_bounce(soft, n, "2026-11-27T09:00:00Z", f"m{n}"))
    # The provider retried an earlier message's delivery webhook only now.
    post_postmark(client, postmark_delivery(at="2026-11-26T16:33:54Z"))
    reader.refresh_from_db()
    assert reader.soft_bounces == 2
    post_postmark(client, postmark_bounce(soft, 3, later, "m3"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


def test_a_soft_bounce_older_than_a_delivery_is_not_counted(client, reader, settings):
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 1
    post_postmark(client, postmark_delivery(at="2026-11-27T09:00:00Z"))
    post_postmark(client, postmark_bounce("SoftBounce", 1, at="2026-11-26T09:00:00Z"))
    reader.refresh_from_db()
    assert (reader.soft_bounces, reader.status) == (0, Subscriber.Status.ACTIVE)
    assert not Suppression.objects.exists()
    assert Event.objects.filter(event_type="bounced").exists()  # still recorded


def test_postmark_spam_complaint_suppresses_for_good(client, reader):
    post_postmark(client, postmark_complaint())
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.COMPLAINED
    assert Suppression.objects.get().reason == "complaint"


def test_postmark_unsubscribe_suppresses_as_unsubscribed(client, reader):
    post_postmark(client, postmark_subscription_change())
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert Suppression.objects.get().reason == "unsubscribed"


@pytest.mark.parametrize("origin", ["Customer", "Admin"])
def test_an_address_suppressed_at_postmark_by_the_author_is_theirs_to_lift(
    client, reader, origin
):
    # Postmark reports the author's own suppression (its dashboard or API) and
    # its staff's as a ManualSuppression too: kept as the reader's unsubscribe,
    # the desk said they had unsubscribed and could not lift it.
    by_the_author = postmark_subscription_change() | {
        "Origin": origin,
        "MessageID": None,
    }
    assert post_postmark(client, by_the_author).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.SUPPRESSED
    suppression = Suppression.objects.get()
    assert (suppression.reason, suppression.readers_reason) == ("manual", "")
    subscriptions.suppression_lift(suppression=suppression)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize(
    "auth",
    [{}, basic_auth("anymail-hook:wrong"), basic_auth("someone:" + SECRET)],
    ids=["no credentials", "wrong password", "wrong user"],
)
def test_postmark_webhook_without_the_secret_is_rejected_and_writes_nothing(
    client, reader, auth
):
    response = client.post(
        POSTMARK_URL,
        data=json.dumps(postmark_complaint()),
        content_type="application/json",
        **auth,
    )
    assert response.status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""],
)
def test_a_postmark_event_not_posted_as_json_is_refused_and_writes_nothing(
    client, reader, content_type
):
    """Postmark posts its events as application/json, always: a complaint posted
    as anything else, with the secret, is no event of Postmark's."""
    response = client.post(
        POSTMARK_URL,
        data=json.dumps(postmark_complaint()),
        content_type=content_type,
        **basic_auth(),
    )
    assert response.status_code == 415
    assert "application/json" in response.content.decode()
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


# Mailgun -------------------------------------------------------------------------

MAILGUN_ID = "20261126182626.18666.16540@mg.example.org"


def mailgun_signature(token: str, timestamp: str = "", key=MAILGUN_KEY):
    timestamp = timestamp or str(int(timezone.now().timestamp()))  # signed now
    return {
        "timestamp": timestamp,
        "token": token,
        "signature": hmac.new(
            key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256
        ).hexdigest(),
    }


def mailgun_event(event: str, token: str, key=MAILGUN_KEY, **extra) -> dict:
    return {
        "signature": mailgun_signature(token, key=key),
        "event-data": {
            "tags": [],
            "timestamp": 1764178000.908181,
            "storage": {"url": "https://se.api.mailgun.net/v3/domains/...", "key": "k"},
            "envelope": {
                "sending-ip": "209.61.154.250",
                "sender": "newsletter@mg.example.org",
                "transport": "smtp",
                "targets": "reader@example.org",
            },
            "recipient-domain": "example.org",
            "id": f"id-{token}",  # each event its own, as Mailgun's are
            "campaigns": [],
            "user-variables": {},
            "flags": {"is-routed": False, "is-authenticated": True},
            "log-level": "info",
            "message": {
                "headers": {
                    "to": "reader@example.org",
                    "message-id": MAILGUN_ID,
                    "from": "On Probation <newsletter@mg.example.org>",
                    "subject": "Suffolk: caseloads too high",
                },
                "attachments": [],
                "size": 111,
            },
            "recipient": "reader@example.org",
            "event": event,
            **extra,
        },
    }


def mailgun_failed(severity: str, token: str, message_id: str = MAILGUN_ID) -> dict:
    failed = mailgun_event(
        "failed",
        token,
        severity=severity,
        reason="bounce" if severity == "permanent" else "generic",
        **{
            "delivery-status": {
                "attempt-no": 1,
                "message": "",
                "code": 550 if severity == "permanent" else 452,
                "description": "Not delivered",
                "session-seconds": 0.1,
            }
        },
    )
    failed["event-data"]["message"]["headers"]["message-id"] = message_id
    return failed


def mailgun_gave_up(token: str, message_id: str = MAILGUN_ID) -> dict:
    """Mailgun's end of an email it tried again for hours: failed, "old"."""
    failed = mailgun_failed("permanent", token, message_id)
    failed["event-data"]["reason"] = "old"
    failed["event-data"]["timestamp"] += 8 * 3600
    return failed


def post_mailgun(client, payload, **auth):
    with override_settings(EMAIL_BACKEND=MAILGUN_BACKEND):
        return client.post(
            MAILGUN_URL,
            data=json.dumps(payload),
            content_type="application/json",
            **(auth or basic_auth()),
        )


def test_mailgun_delivered_updates_the_ledger_once(client, reader):
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    payload = mailgun_event("delivered", "a8ce0edb2dd8301dee6c2405235584e45a")
    assert post_mailgun(client, payload).status_code == 200
    assert post_mailgun(client, payload).status_code == 200
    event = Event.objects.get()
    assert (event.esp, event.event_id) == (
        "mailgun",
        f"{payload['event-data']['id']} 2025-11-26T17:26:40.908181+00:00",
    )
    delivery.refresh_from_db()
    assert delivery.last_event == "delivered"


def signed_again(payload: dict, token: str) -> dict:
    """The event as Mailgun posts it again when our answer did not reach it: the
    same event, signed anew."""
    return {**payload, "signature": mailgun_signature(token)}


def test_a_mailgun_event_posted_again_signed_anew_counts_once(client, reader):
    """Mailgun signs each attempt at posting an event anew, with a new token: an
    event recognised by its token was counted again, an open twice, a bounce
    recorded twice (and, for soft bounces, counted towards the reader's limit)."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    opened = mailgun_event("opened", "token-opened")
    bounced = mailgun_failed("permanent", "token-bounced")
    for payload in (opened, bounced):
        assert post_mailgun(client, payload).status_code == 200
        again = signed_again(payload, payload["signature"]["token"] + "-again")
        assert post_mailgun(client, again).status_code == 200

    assert sorted(Event.objects.values_list("event_type", flat=True)) == [
        "bounced",
        "opened",
    ]
    delivery.mailing.refresh_from_db()
    assert delivery.mailing.opens_people + delivery.mailing.opens_machines == 1


def test_a_mailgun_signature_used_once_carries_no_other_event(client, reader):
    """Mailgun signs its timestamp and token, not the event: a signed request seen
    once could carry a complaint about anyone."""
    delivery_to(reader, f"<{MAILGUN_ID}>")
    assert post_mailgun(client, mailgun_event("delivered", "token-seen")).status_code
    forged = mailgun_event("complained", "token-other")
    forged["signature"] = mailgun_event("delivered", "token-seen")["signature"]

    post_mailgun(client, forged)

    assert list(Event.objects.values_list("event_type", flat=True)) == ["delivered"]
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.exists()


@pytest.mark.usefixtures("celery_eager")
def test_mailgun_signature_tokens_are_forgotten_with_the_events(
    client, reader, settings
):
    settings.NEWSLETTER_KEEP_EVENTS_DAYS = 90
    post_mailgun(client, mailgun_event("delivered", "token-old"))
    post_mailgun(client, mailgun_event("opened", "token-recent"))
    SignatureToken.objects.filter(token="token-old").update(
        received_at=timezone.now() - timedelta(days=91)
    )
    purge_old_events.delay().get()
    assert list(SignatureToken.objects.values_list("token", flat=True)) == [
        "token-recent"
    ]


def test_a_mailgun_event_is_about_its_own_reader_of_a_batch_sharing_a_message_id(
    client, reader
):
    # Mailgun answers one batch call (recipient-variables) with one message id
    # for every reader in it.
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    rows = {
        subscriber.email: Delivery.objects.create(
            mailing=send,
            batch=batch,
            subscriber=subscriber,
            status=Delivery.Status.SENT,
            esp_message_id=f"<{MAILGUN_ID}>",
        )
        for subscriber in [SubscriberFactory(email="first@example.org"), reader]
    }
    assert post_mailgun(client, mailgun_event("delivered", "t-1")).status_code == 200
    for row in rows.values():
        row.refresh_from_db()
    assert rows["reader@example.org"].last_event == "delivered"
    assert rows["first@example.org"].last_event == ""


def test_an_event_about_a_message_sent_before_the_reader_moved_finds_its_row(
    client, reader
):
    # A reader moves address after the post went out, and someone else takes up
    # the old one and gets the next mailing in the same Mailgun batch call (one
    # message id for the call): the old message's event is the mover's.
    before = delivery_to(reader, f"<{MAILGUN_ID}>")
    before.sent_at = timezone.now() - timedelta(hours=1)
    before.save()
    assert subscriptions.email_change_confirm(
        subscriber=reader, new_email="moved@example.org"
    )
    event = mailgun_event("delivered", "t-moved")
    assert post_mailgun(client, event).status_code == 200
    before.refresh_from_db()
    assert before.last_event == "delivered"

    newcomer = SubscriberFactory(email="reader@example.org")
    send = Mailing.objects.create(kind="post", post=PublishedPostFactory())
    batch = Batch.objects.create(mailing=send, number=1)
    rows = [
        Delivery.objects.create(
            mailing=send,
            batch=batch,
            subscriber=subscriber,
            status=Delivery.Status.SENT,
            esp_message_id="<after-the-move@mg.example.org>",
            sent_at=timezone.now(),
        )
        for subscriber in (reader, newcomer)
    ]
    later = mailgun_event("delivered", "t-later")
    later["event-data"]["id"] = "another-event"
    later["event-data"]["message"]["headers"]["message-id"] = (
        "after-the-move@mg.example.org"
    )
    assert post_mailgun(client, later).status_code == 200
    for row in rows:
        row.refresh_from_db()
    assert [row.last_event for row in rows] == ["", "delivered"]


def test_mailgun_permanent_failure_suppresses_as_a_hard_bounce(client, reader):
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    post_mailgun(client, mailgun_failed("permanent", "token-permanent-1"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "hard_bounce"
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"


@pytest.mark.parametrize("reason", ["old", "generic"])
def test_a_permanent_failure_that_says_nothing_of_the_address_is_a_soft_bounce(
    client, reader, reason
):
    """Mailgun gives up on a message for reasons other than the mailbox: its
    retries ran out (old). The reader's address is fine, and must not be
    suppressed for good."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    failed = mailgun_failed("permanent", f"token-{reason}")
    failed["event-data"]["reason"] = reason
    assert post_mailgun(client, failed).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 1)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"  # the email still bounced


def test_mailgun_reporting_the_receiver_blocked_our_sender_counts_no_soft_bounce(
    client, reader, settings
):
    """Mailgun's espblock: the receiving provider refused our sender (its
    reputation, its authentication), not the reader's address."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 1
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    failed = mailgun_failed("permanent", "token-espblock")
    failed["event-data"]["reason"] = "espblock"
    assert post_mailgun(client, failed).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"  # the email still did not reach them


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # Gmail's DMARC refusal, RFC 7372's "multiple authentication checks failed".
        (
            "5.7.26",
            "Unauthenticated email from mg.example.org is not accepted due "
            "to domain's DMARC policy.",
        ),
        # RFC 7372's SPF failure, as a temporary one.
        ("4.7.23", "SPF validation failed"),
        # Outlook's DMARC refusal, its own code.
        (
            "5.7.509",
            "Access denied, sending domain mg.example.org does not pass "
            "DMARC verification",
        ),
        # Gmail's DMARC refusal before 5.7.26: a policy code, the reason in words.
        (
            "5.7.1",
            "Unauthenticated email from mg.example.org is not accepted due to "
            "domain's DMARC policy.",
        ),
        # Receivers that give no enhanced code at all: their words alone.
        ("", "550 SPF check failed for mg.example.org"),
        ("", "554 Message rejected: dkim signature did not verify"),
    ],
)
def test_mailgun_failing_our_senders_authentication_suppresses_no_reader(
    client, reader, settings, code, message
):
    """Mailgun has no reason of its own for a DMARC refusal: a "bounce", which
    suppressed the reader for good, every reader at Gmail after one email. The
    receiver's enhanced status code, or failing it their words, says it was our
    sender's authentication."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 1
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    severity = "temporary" if code.startswith("4") else "permanent"
    failed = mailgun_failed(severity, f"token-{code}")
    failed["event-data"]["delivery-status"].update(
        {"enhanced-code": code, "message": f"{code} {message}"}
    )
    assert post_mailgun(client, failed).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.sender_refused


def mailgun_dmarc_refusal(severity: str, token: str) -> dict:
    """Gmail's DMARC refusal through Mailgun: a bounce, or a deferral."""
    failed = mailgun_failed(severity, token)
    code = "5.7.26" if severity == "permanent" else "4.7.26"
    failed["event-data"]["delivery-status"].update(
        {"enhanced-code": code, "message": f"{code} Unauthenticated email"}
    )
    return failed


def test_a_delivery_reported_late_restarts_the_soft_bounces_after_a_refusal(
    client, reader
):
    """A refusal of our sender, dated after a delivery Mailgun reported late, is
    no soft bounce of the reader's since that delivery: the count starts again."""
    Subscriber.objects.filter(pk=reader.pk).update(soft_bounces=2)
    refused = mailgun_dmarc_refusal("permanent", "token-refused-late")
    refused["event-data"]["timestamp"] = 1764264400
    assert post_mailgun(client, refused).status_code == 200
    delivered = mailgun_event("delivered", "token-delivered-early")
    delivered["event-data"]["message"]["headers"]["message-id"] = "early@mg.example"
    delivered["event-data"]["timestamp"] = 1764178000
    assert post_mailgun(client, delivered).status_code == 200
    reader.refresh_from_db()
    assert reader.soft_bounces == 0


def test_a_soft_bounce_after_a_refusal_of_the_same_email_counts(
    client, reader, settings
):
    """Mailgun refused an email for our DMARC, then gave up on it for the
    reader's full mailbox: the second is the reader's first soft bounce of it."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    refused = mailgun_dmarc_refusal("permanent", "token-refused-dmarc")
    assert post_mailgun(client, refused).status_code == 200
    full = mailgun_gave_up("token-gave-up-full")
    full["event-data"]["delivery-status"].update(
        {"enhanced-code": "4.2.2", "message": "4.2.2 Mailbox full"}
    )
    assert post_mailgun(client, full).status_code == 200
    reader.refresh_from_db()
    assert (reader.soft_bounces, reader.status) == (1, Subscriber.Status.ACTIVE)


def test_mailgun_delivered_naming_the_checks_we_passed_is_no_refusal(client, reader):
    """A server that took the email may list our sender's checks in its answer;
    the email reached the reader (their data export says so)."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    delivered = mailgun_event(
        "delivered",
        "token-delivered-spf",
        **{
            "delivery-status": {
                "code": 250,
                "message": "2.0.0 OK (spf=pass dkim=pass dmarc=pass)",
                "description": "",
            }
        },
    )
    assert post_mailgun(client, delivered).status_code == 200
    delivery.refresh_from_db()
    assert (delivery.last_event, delivery.sender_refused) == ("delivered", False)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        # A receiver's spam policy, naming no authentication of ours.
        ("5.7.1", "5.7.1 Recipient address rejected"),
        # The mailbox does not exist; the receiver adds the checks that passed.
        ("5.1.1", "5.1.1 User unknown in virtual mailbox table (spf=pass)"),
    ],
)
def test_mailgun_refusing_the_reader_for_other_reasons_still_suppresses(
    client, reader, code, message
):
    """A refusal that names no authentication of ours, or whose code blames the
    address, is the reader's, as before."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    failed = mailgun_failed("permanent", f"token-{code}-reader")
    failed["event-data"]["delivery-status"].update(
        {"enhanced-code": code, "message": message}
    )
    assert post_mailgun(client, failed).status_code == 200
    assert Suppression.objects.get().reason == "hard_bounce"
    delivery.refresh_from_db()
    assert not delivery.sender_refused


def test_mailgun_refusing_a_mailbox_with_a_code_of_the_address_still_suppresses_it(
    client, reader
):
    failed = mailgun_failed("permanent", "token-5.1.1")
    failed["event-data"]["delivery-status"]["enhanced-code"] = "5.1.1"
    assert post_mailgun(client, failed).status_code == 200
    assert Suppression.objects.get().reason == "hard_bounce"


def test_mailgun_refusing_an_address_it_saw_bounce_suppresses_it(client, reader):
    failed = mailgun_failed("permanent", "token-suppress-bounce")
    failed["event-data"]["reason"] = "suppress-bounce"
    assert post_mailgun(client, failed).status_code == 200
    assert Suppression.objects.get().reason == "hard_bounce"


def test_mailgun_giving_up_on_emails_counts_soft_bounces(client, reader, settings):
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 2
    post_mailgun(client, mailgun_failed("temporary", "token-temp-1", "m1@mg"))
    reader.refresh_from_db()
    assert (reader.soft_bounces, reader.status) == (0, Subscriber.Status.ACTIVE)
    post_mailgun(client, mailgun_gave_up("token-old-1", "m1@mg"))
    reader.refresh_from_db()
    assert (reader.soft_bounces, reader.status) == (1, Subscriber.Status.ACTIVE)
    post_mailgun(client, mailgun_gave_up("token-old-2", "m2@mg"))
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED


def test_one_messages_retried_deferrals_count_as_one_soft_bounce(
    client, reader, settings
):
    """Mailgun reports a temporary failure for each attempt it makes at one
    message, for hours, then its end: a mailbox full for an afternoon is one
    email that bounced, not the reader's limit of them."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 2
    for attempt in range(3):
        retry = mailgun_failed("temporary", f"token-attempt-{attempt}")
        retry["event-data"]["timestamp"] = 1764178000 + attempt * 600
        assert post_mailgun(client, retry).status_code == 200
    assert post_mailgun(client, mailgun_gave_up("token-gave-up")).status_code == 200
    assert post_mailgun(client, mailgun_gave_up("token-resigned")).status_code == 200
    reader.refresh_from_db()
    assert (reader.soft_bounces, reader.status) == (1, Subscriber.Status.ACTIVE)
    assert not Suppression.objects.exists()

    next_email = mailgun_gave_up("token-next-email", "next@mg.example")
    next_email["event-data"]["timestamp"] = 1764264400
    assert post_mailgun(client, next_email).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED
    assert Suppression.objects.get().reason == "soft_bounces"


def test_a_reader_whose_mail_host_delayed_emails_that_all_arrived_stays(
    client, reader, settings
):
    """Mailgun reports a temporary failure for an email it will try again, and
    the email's end after: a mail host that delayed three emails for an hour,
    then took them, loses us no reader."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    for n in (1, 2, 3):
        delayed = mailgun_failed("temporary", f"token-delayed-{n}", f"m{n}@mg")
        assert post_mailgun(client, delayed).status_code == 200
    for n in (1, 2, 3):
        arrived = mailgun_event("delivered", f"token-arrived-{n}")
        arrived["event-data"]["message"]["headers"]["message-id"] = f"m{n}@mg"
        arrived["event-data"]["timestamp"] += 3600
        assert post_mailgun(client, arrived).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()


def test_mailgun_complaint_and_unsubscribe_suppress(client, reader):
    other = SubscriberFactory(email="other@example.org")
    post_mailgun(client, mailgun_event("complained", "token-complained"))
    unsubscribed = mailgun_event("unsubscribed", "token-unsubscribed")
    unsubscribed["event-data"]["recipient"] = "other@example.org"
    post_mailgun(client, unsubscribed)
    reader.refresh_from_db()
    other.refresh_from_db()
    assert reader.status == Subscriber.Status.COMPLAINED
    assert other.status == Subscriber.Status.UNSUBSCRIBED


def mailgun_legacy_bounce(token: str, **fields) -> dict:
    """A bounce as Mailgun's legacy webhooks post it: form fields, the signature's
    among them, and the bounced message attached, which makes it multipart."""
    return {
        **mailgun_signature(token),
        "event": "bounced",
        "recipient": "reader@example.org",
        "domain": "mg.example.org",
        "Message-Id": f"<{MAILGUN_ID}>",
        "code": "550",
        "error": "5.1.1 The email account that you tried to reach does not exist.",
        "notification": "",
        "message-headers": json.dumps([["To", "reader@example.org"]]),
        "attachment-count": "1",
        "attachment-1": SimpleUploadedFile(
            "message.eml", b"Subject: Suffolk", content_type="message/rfc822"
        ),
        **fields,
    }


LEGACY_FORMS = [MULTIPART_CONTENT, "application/x-www-form-urlencoded"]


def post_mailgun_form(client, form: dict, content_type: str):
    with override_settings(EMAIL_BACKEND=MAILGUN_BACKEND):
        if content_type == MULTIPART_CONTENT:
            return client.post(MAILGUN_URL, data=form, **basic_auth())
        fields = {k: v for k, v in form.items() if not k.startswith("attachment")}
        return client.post(
            MAILGUN_URL,
            data=urlencode(fields),
            content_type=content_type,
            **basic_auth(),
        )


@pytest.mark.parametrize("content_type", LEGACY_FORMS, ids=["multipart", "urlencoded"])
def test_a_mailgun_legacy_bounce_suppresses_the_address(client, reader, content_type):
    # Its multipart form was read once for the signature, and reading it again
    # to check the body failed: a 500 for every such event, retried, never taken.
    form = mailgun_legacy_bounce("token-legacy-bounce")
    assert post_mailgun_form(client, form, content_type).status_code == 200
    assert Event.objects.get().event_id == "token-legacy-bounce"
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED


@pytest.mark.parametrize("content_type", LEGACY_FORMS, ids=["multipart", "urlencoded"])
@pytest.mark.parametrize("field", ["error", "recipient"])
def test_a_mailgun_legacy_form_the_event_log_cannot_store_is_refused(
    client, reader, content_type, field
):
    # PostgreSQL stores no NUL character, in text or jsonb: a 500, which Mailgun
    # retries for hours. A JSON body with one is refused already.
    form = mailgun_legacy_bounce("token-legacy-nul")
    form[field] += "\x00"
    assert post_mailgun_form(client, form, content_type).status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def mailgun_legacy_drop(token: str, **fields) -> dict:
    """A message Mailgun dropped, as its legacy webhooks post it: its reason,
    "hardfail" (the address bounced, unsubscribed or complained before) or "old"
    (Mailgun tried to deliver it for more than 8 hours), its code and its words."""
    form = mailgun_legacy_bounce(token)
    del form["error"], form["notification"]
    return {
        **form,
        "event": "dropped",
        "reason": "hardfail",
        "code": "605",
        "description": "Not delivering to previously bounced address",
        **fields,
    }


@pytest.mark.parametrize("content_type", LEGACY_FORMS, ids=["multipart", "urlencoded"])
@pytest.mark.parametrize(
    ("code", "error"),
    [
        # Gmail's DMARC refusal: the basic code, the enhanced one in its words.
        (
            "550",
            "5.7.26 Unauthenticated email from mg.example.org is not accepted due"
            " to domain's DMARC policy. Please contact the administrator of"
            " mg.example.org domain if this was a legitimate mail.",
        ),
        # Outlook's, posted with RFC 3463's code as Mailgun sometimes does.
        (
            "5.7.509",
            "smtp;550 5.7.509 Access denied, sending domain mg.example.org does"
            " not pass DMARC verification and has a DMARC policy of reject.",
        ),
        # A receiver that gives no enhanced code: its words alone.
        ("550", "SPF check failed for mg.example.org"),
    ],
)
def test_a_mailgun_legacy_refusal_of_our_senders_authentication_suppresses_no_one(
    client, reader, settings, content_type, code, error
):
    """The same refusal of our sender as the JSON webhook's, posted as a legacy
    form: the reader's address is fine, and stays so."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 1
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    form = mailgun_legacy_bounce(f"token-legacy-{code}", code=code, error=error)
    assert post_mailgun_form(client, form, content_type).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 0)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert (delivery.last_event, delivery.sender_refused) == ("bounced", True)


def test_a_mailgun_legacy_bounce_of_an_unknown_mailbox_naming_our_checks_suppresses(
    client, reader
):
    """The enhanced code in the receiver's words blames the address: the checks
    of our sender that passed, named after it, make it no refusal of ours."""
    form = mailgun_legacy_bounce(
        "token-legacy-unknown-spf",
        error="5.1.1 User unknown in virtual mailbox table (spf=pass dkim=pass)",
    )
    assert post_mailgun_form(client, form, MULTIPART_CONTENT).status_code == 200
    assert Suppression.objects.get().reason == "hard_bounce"
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED


@pytest.mark.parametrize("content_type", LEGACY_FORMS, ids=["multipart", "urlencoded"])
@pytest.mark.parametrize(
    ("code", "description"),
    [
        # No MX for the reader's domain, tried for 8 hours.
        ("498", "No MX for example.org"),
        # The reader's mailbox was full all that time.
        ("452", "4.2.2 The email account that you tried to reach is over quota."),
    ],
)
def test_a_mailgun_legacy_drop_after_retrying_for_hours_is_a_soft_bounce(
    client, reader, content_type, code, description
):
    """Mailgun gave up on the message ("old"), which anymail reads as a bounce of
    the address for its code: the JSON webhook's failure "old", a soft bounce."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    form = mailgun_legacy_drop(
        f"token-legacy-old-{code}", reason="old", code=code, description=description
    )
    assert post_mailgun_form(client, form, content_type).status_code == 200
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (Subscriber.Status.ACTIVE, 1)
    assert not Suppression.objects.exists()
    delivery.refresh_from_db()
    assert delivery.last_event == "bounced"  # the email still did not reach them


def test_a_mailgun_legacy_drop_of_an_address_that_bounced_before_suppresses_it(
    client, reader
):
    form = mailgun_legacy_drop("token-legacy-hardfail")
    assert post_mailgun_form(client, form, MULTIPART_CONTENT).status_code == 200
    assert Suppression.objects.get().reason == "hard_bounce"
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.BOUNCED


# Mailgun will not send to an address on its complaints or unsubscribes list (a
# list moved here from another tool on the same Mailgun domain, an event this
# site missed): the JSON webhook's permanent failure names the list, the legacy
# drop its code.
MAILGUN_LISTED = [
    ("suppress-complaint", "607", "complaint", Subscriber.Status.COMPLAINED),
    ("suppress-unsubscribe", "606", "unsubscribed", Subscriber.Status.UNSUBSCRIBED),
]
MAILGUN_LISTED_WORDS = {
    "607": "Not delivering to a user who marked your messages as spam",
    "606": "Not delivering to unsubscribed address",
}


def mailgun_listed_failure(reason: str, code: str) -> dict:
    failed = mailgun_failed("permanent", f"token-{reason}")
    failed["event-data"]["reason"] = reason
    failed["event-data"]["delivery-status"] |= {
        "code": int(code),
        "message": "",
        "description": MAILGUN_LISTED_WORDS[code],
    }
    return failed


@pytest.mark.parametrize(("reason", "code", "kept_as", "status"), MAILGUN_LISTED)
def test_a_mailgun_drop_of_an_address_on_its_complaints_or_unsubscribes_list(
    client, reader, settings, reason, code, kept_as, status
):
    """Not the reader's soft bounce: Mailgun never tried, and never will. Counted
    as one, the reader stayed in the audience, dropped from every mailing, then
    was kept as 'soft-bounced repeatedly', which the desk may lift."""
    settings.NEWSLETTER_SOFT_BOUNCE_LIMIT = 3
    assert post_mailgun(client, mailgun_listed_failure(reason, code)).status_code == 200
    assert Suppression.objects.get().reason == kept_as
    reader.refresh_from_db()
    assert (reader.status, reader.soft_bounces) == (status, 0)


@pytest.mark.parametrize(("reason", "code", "kept_as", "status"), MAILGUN_LISTED)
def test_a_mailgun_legacy_drop_of_an_address_on_its_complaints_or_unsubscribes_list(
    client, reader, reason, code, kept_as, status
):
    """The same drop, posted as a legacy form, which anymail reads as a rejection
    of no reason of the address's: it changed nothing, and the reader stayed in
    the audience for good, every email to them dropped."""
    form = mailgun_legacy_drop(
        f"token-legacy-{code}", code=code, description=MAILGUN_LISTED_WORDS[code]
    )
    assert post_mailgun_form(client, form, MULTIPART_CONTENT).status_code == 200
    assert Suppression.objects.get().reason == kept_as
    reader.refresh_from_db()
    assert reader.status == status


@pytest.mark.parametrize("webhook", ["json", "legacy"])
@pytest.mark.parametrize(("reason", "code", "kept_as", "status"), MAILGUN_LISTED)
def test_a_mailgun_drop_of_a_listed_address_is_no_bounce_in_the_report_or_the_desk(
    client, rf, reader, webhook, reason, code, kept_as, status
):
    """Mailgun never tried to deliver the email: kept as a bounce, the post's
    report counted it as the reader's soft bounce, and the desk in its bounce
    rate. It is an email the provider did not send."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    if webhook == "json":
        posted = post_mailgun(client, mailgun_listed_failure(reason, code))
    else:
        form = mailgun_legacy_drop(
            f"token-legacy-{code}", code=code, description=MAILGUN_LISTED_WORDS[code]
        )
        posted = post_mailgun_form(client, form, MULTIPART_CONTENT)
    assert posted.status_code == 200

    figures = post_report(delivery.mailing.post)
    counted = {name: figures[name] for name in ("delivered", "bounced", "complained")}
    assert counted == {"delivered": 0, "bounced": 0, "complained": 0}
    request = rf.get("/admin/")
    request.user = UserFactory()
    (shown,) = desk_for(request).mailings
    assert (shown["complaint_percent"], shown["bounce_percent"]) == (0, 0)
    delivery.refresh_from_db()
    assert delivery.last_event == "failed"


@pytest.mark.parametrize("webhook", ["json", "legacy"])
def test_a_reader_mailgun_dropped_the_email_for_is_not_counted_as_leaving_over_it(
    client, reader, webhook
):
    """Mailgun dropped the post's email, the reader being on its unsubscribes
    list: the drop marks them unsubscribed here, moments after the email went,
    and the post's report counted them as leaving because of an email they never
    received."""
    delivery = delivery_to(reader, f"<{MAILGUN_ID}>")
    Delivery.objects.filter(pk=delivery.pk).update(
        sent_at=timezone.now() - timedelta(minutes=1)
    )
    if webhook == "json":
        posted = post_mailgun(
            client, mailgun_listed_failure("suppress-unsubscribe", "606")
        )
    else:
        form = mailgun_legacy_drop(
            "token-legacy-606", code="606", description=MAILGUN_LISTED_WORDS["606"]
        )
        posted = post_mailgun_form(client, form, MULTIPART_CONTENT)
    assert posted.status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED

    assert post_report(delivery.mailing.post)["unsubscribed"] == 0


def test_mailgun_webhook_with_a_forged_signature_is_rejected(client, reader):
    forged = mailgun_event("complained", "token-forged", key="not-the-signing-key")
    assert post_mailgun(client, forged).status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_a_mailgun_signature_older_than_the_events_kept_is_refused_with_any_event(
    client, reader, settings
):
    # Mailgun signs the token, not the event: a token still remembered refuses a
    # replay as seen; one signed before the oldest event kept could carry any.
    settings.NEWSLETTER_KEEP_EVENTS_DAYS = 90
    signed_long_ago = timezone.now() - timedelta(days=91)
    complaint = mailgun_event("complained", "token-seen-long-ago")
    complaint["signature"] = mailgun_signature(
        "token-seen-long-ago", timestamp=str(int(signed_long_ago.timestamp()))
    )
    assert post_mailgun(client, complaint).status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    # Signed within them, as Mailgun's retries of a day are, it is taken.
    complaint["signature"] = mailgun_signature(
        "token-seen-long-ago",
        timestamp=str(int((signed_long_ago + timedelta(days=2)).timestamp())),
    )
    assert post_mailgun(client, complaint).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.COMPLAINED


def test_mailgun_webhook_without_the_basic_auth_secret_is_rejected(
    client, reader, settings
):
    settings.EMAIL_BACKEND = MAILGUN_BACKEND
    payload = mailgun_event("complained", "token-no-auth")
    response = client.post(
        MAILGUN_URL, data=json.dumps(payload), content_type="application/json"
    )
    assert response.status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", ""])
def test_a_mailgun_event_posted_as_neither_json_nor_a_form_is_refused(
    client, reader, settings, content_type
):
    """Mailgun posts its events as application/json, its legacy webhooks as a
    form: a complaint posted as anything else is no event of Mailgun's."""
    settings.EMAIL_BACKEND = MAILGUN_BACKEND
    response = client.post(
        MAILGUN_URL,
        data=json.dumps(mailgun_event("complained", "token-not-json")),
        content_type=content_type,
        **basic_auth(),
    )
    assert response.status_code == 415
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()


def test_deploy_check_warns_when_webhooks_have_no_secret(settings):
    assert check_webhook_secret(None) == []
    settings.ANYMAIL = {}
    [warning] = check_webhook_secret(None)
    assert warning.level == checks.WARNING
    assert warning.id == "newsletter.W001"


def test_deploy_check_warns_when_the_provider_has_no_tracking_webhook(settings):
    """anymail sends through SendGrid as readily, whose events nothing here
    reads: the site ran, its secret set, and never heard of a bounce."""

    def deploy_checks() -> set[str]:
        found = checks.run_checks(
            include_deployment_checks=True, tags=[checks.Tags.security]
        )
        return {message.id for message in found}

    assert "newsletter.W002" not in deploy_checks()  # Postmark's
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    assert "newsletter.W002" in deploy_checks()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "newsletter.W002" not in deploy_checks()  # a server, not a provider


@pytest.mark.parametrize(
    "constant", ["Infinity", "-Infinity", "NaN", '"\\u0000"'], ids=str
)
def test_a_body_the_event_log_cannot_store_is_refused_and_writes_nothing(
    client, settings, constant
):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": "hook:secret"}
    response = client.post(
        "/anymail/postmark/tracking/",
        data=f'{{"RecordType": "Delivery", "": [{constant}]}}',
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"hook:secret").decode(),
    )
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "field",
    ['"MessageID": "\\udfff"', '"Recipient": "\\ud800@example.org"', '"ID": 1e400'],
    ids=["lone-surrogate-id", "lone-surrogate-address", "overflows-to-infinity"],
)
def test_a_body_no_text_or_number_column_can_hold_is_refused_and_writes_nothing(
    client, reader, field
):
    """Python's json reads escaped lone surrogates and numbers beyond a float's
    range (as infinity); neither can be stored, so the provider is told the
    body is malformed (a 400, not retried) rather than a 500 it retries for days."""
    body = (
        '{"RecordType": "Delivery", "Recipient": "reader@example.org", '
        f'"DeliveredAt": "2026-11-26T16:33:54Z", {field}}}'
    )
    response = client.post(
        POSTMARK_URL, data=body, content_type="application/json", **basic_auth()
    )
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "delivery",
    ["²", "9" * 5000, "9" * 30, ["1"], "-1"],
    ids=["superscript", "5000-digits", "beyond-bigint", "a-list", "negative"],
)
def test_metadata_naming_no_ledger_row_records_the_event_and_touches_no_row(
    client, reader, delivery
):
    row = delivery_to(reader, "another-message")
    bounce = postmark_bounce() | {"MessageID": "", "Metadata": {"delivery": delivery}}
    assert post_postmark(client, bounce).status_code == 200
    assert Event.objects.count() == 1
    row.refresh_from_db()
    assert row.last_event == ""
    # The bounce still suppresses the address: that needs no ledger row.
    assert Suppression.objects.for_email(reader.email).get().reason == "hard_bounce"


@pytest.mark.parametrize("variables", [[1], "abc", 7])
def test_mailgun_user_variables_that_are_not_ours_record_the_event(
    client, reader, variables
):
    payload = mailgun_event(
        "delivered",
        "1d3c5a4f8e2b9c7d6e5f4a3b2c1d0e9f8a",
        **{"user-variables": variables},
    )
    assert post_mailgun(client, payload).status_code == 200
    assert Event.objects.filter(esp="mailgun", event_type="delivered").count() == 1


@pytest.mark.parametrize("timestamp", [1e13, 1e17], ids=["year-318857", "eoverflow"])
def test_a_mailgun_event_dated_beyond_any_calendar_is_refused_and_writes_nothing(
    client, reader, timestamp
):
    """Python cannot date it: a ValueError for some, an OSError (EOVERFLOW) from
    the C library for larger ones."""
    payload = mailgun_event("delivered", "b8ce0edb2dd8301dee6c2405235584e45a")
    payload["event-data"]["timestamp"] = timestamp
    assert post_mailgun(client, payload).status_code == 400
    assert not Event.objects.exists()


# Forged events (issue 17, finding 1) ---------------------------------------------


def forged_complaint(email: str = "victim@example.org") -> dict:
    return {**postmark_complaint(), "Email": email}


def test_a_forged_spam_complaint_without_a_secret_configured_suppresses_nobody(
    client, settings
):
    victim = SubscriberFactory(email="victim@example.org")
    settings.ANYMAIL = {}
    response = client.post(
        POSTMARK_URL,
        data=json.dumps(forged_complaint()),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    victim.refresh_from_db()
    assert victim.status == Subscriber.Status.ACTIVE


def anymail_routes() -> list[str]:
    from anymail.urls import urlpatterns

    return [f"/anymail/{pattern.pattern}" for pattern in urlpatterns]


@pytest.mark.parametrize("secret", [SECRET, ""], ids=["secret", "no-secret"])
@pytest.mark.parametrize(
    "route",
    [r for r in anymail_routes() if r != POSTMARK_URL] + ["/anymail/x/tracking/"],
)
def test_a_forged_event_posted_to_any_other_provider_route_is_a_404(
    client, settings, route, secret
):
    """e.g. a SendGrid spamreport for an address, or a Mailgun event while the
    site sends through Postmark (anymail's Mailgun view has no signing key: a 500)."""
    victim = SubscriberFactory(email="victim@example.org")
    settings.ANYMAIL = {"WEBHOOK_SECRET": secret}
    spamreport = [{"email": "victim@example.org", "event": "spamreport"}]
    response = client.post(
        route,
        data=json.dumps(spamreport),
        content_type="application/json",
        **basic_auth(),
    )
    assert response.status_code == 404
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    victim.refresh_from_db()
    assert victim.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize(
    "backend", ["django.core.mail.backends.smtp.EmailBackend", MAILGUN_BACKEND]
)
def test_the_postmark_route_is_a_404_when_the_site_sends_otherwise(
    client, settings, reader, backend
):
    settings.EMAIL_BACKEND = backend
    assert post_postmark(client, postmark_complaint()).status_code == 404
    assert not Suppression.objects.exists()


def test_mailgun_without_its_signing_key_is_off_a_404_not_a_500(
    client, admin_client, settings, reader
):
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    assert post_mailgun(client, mailgun_event("complained", "t")).status_code == 404
    assert not Suppression.objects.exists()
    settings.EMAIL_BACKEND = MAILGUN_BACKEND
    page = admin_client.get("/admin/newsletter/event/").content.decode()
    assert "MAILGUN_WEBHOOK_SIGNING_KEY" in page


def test_mailgun_with_only_its_api_key_refuses_every_event_and_fails_the_checklist(
    client, settings, reader
):
    """anymail checks the signature against the API key when the signing key is
    missing; Mailgun signs with its own key, so each complaint was a 400, mailed
    again next time, while the desk showed the webhook as on."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET, "MAILGUN_API_KEY": "key-api"}
    settings.EMAIL_BACKEND = MAILGUN_BACKEND
    assert post_mailgun(client, mailgun_event("complained", "t")).status_code == 400
    assert not Suppression.objects.exists()
    found = checks.run_checks(include_deployment_checks=True)
    assert "newsletter.E006" in [message.id for message in found]
    settings.ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = MAILGUN_KEY
    found = checks.run_checks(include_deployment_checks=True)
    assert "newsletter.E006" not in [message.id for message in found]
    assert post_mailgun(client, mailgun_event("complained", "t")).status_code == 200


def test_the_dev_outbox_answers_on_postmarks_route_as_the_fake_esp_speaks_it(
    client, settings, reader
):
    settings.EMAIL_BACKEND = "newsletter.outbox.OutboxBackend"
    delivery = delivery_to(reader, POSTMARK_ID)
    assert post_postmark(client, postmark_delivery()).status_code == 200
    # Read as Postmark's event, into the log and the ledger.
    event = Event.objects.get()
    assert (event.esp, event.event_type) == ("postmark", "delivered")
    delivery.refresh_from_db()
    assert delivery.last_event == "delivered"
    with override_settings(EMAIL_BACKEND="newsletter.outbox.OutboxBackend"):
        response = client.post(
            MAILGUN_URL, data="{}", content_type="application/json", **basic_auth()
        )
    assert response.status_code == 404


def test_an_event_about_an_address_we_never_emailed_is_recorded_and_changes_nothing(
    client, reader
):
    assert post_postmark(client, forged_complaint("stranger@example.org")).status_code
    event = Event.objects.get()
    # Kept to recognise a repeat, naming no one: the address is no reader's.
    assert (event.event_type, event.recipient, event.raw) == ("complained", "", {})
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


@pytest.mark.parametrize(
    ("payload", "kept_as"),
    [(postmark_bounce(), "hard_bounce"), (postmark_complaint(), "complaint")],
    ids=["hard-bounce", "complaint"],
)
def test_a_commenters_hard_bounce_or_complaint_stops_the_emails_about_their_comments(
    client, settings, payload, kept_as
):
    """A commenter who reads no newsletter is still written to: the link proving
    their address, the link to their comments' data. A hard bounce or a spam
    complaint about one was taken for an event about an address never written
    to, and ignored: the commenter was written to again, comment after comment."""
    CommentFactory(email="reader@example.org", status=Comment.Status.APPROVED)
    held = CommentFactory(email="reader@example.org")
    assert post_postmark(client, payload).status_code == 200

    assert Suppression.objects.for_email("reader@example.org").get().reason == kept_as
    assert not Subscriber.objects.exists()  # suppressed, not made a reader
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert not comment_emails.comment_confirmation_send(comment_id=held.pk)
    assert not comment_emails.commenter_data_link_send(
        comment_id=comment_emails.commenter_newest_comment_id(
            email="reader@example.org"
        )
    )
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("payload", "kept_as"),
    [(postmark_bounce(), "hard_bounce"), (postmark_complaint(), "complaint")],
    ids=["hard-bounce", "complaint"],
)
def test_a_moderators_hard_bounce_or_complaint_stops_their_comment_digest(
    client, admin_client, admin_user, settings, payload, kept_as
):
    """The desk's people are written to (the moderators' digest of comments
    waiting) though they read no newsletter: a hard bounce or a spam complaint
    about a moderator's digest was taken for an event about an address never
    written to, and ignored, so the moderator was written to again every digest.
    The address is suppressed, the desk's suppression list says why when asked
    for it, and the digest goes to the other moderators."""
    UserFactory(username="editor", email="Editor@Example.org")
    payload["Email"] = "editor@example.org"
    assert post_postmark(client, payload).status_code == 200

    assert Suppression.objects.for_email("editor@example.org").get().reason == kept_as
    assert not Subscriber.objects.exists()  # suppressed, not made a reader
    found = admin_client.get(
        "/admin/newsletter/suppression/", {"q": "Editor@Example.org"}
    ).context["cl"]
    assert [suppression.reason for suppression in found.result_list] == [kept_as]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    CommentFactory(name="Pat Waiting")
    send_comment_digest()
    assert [message.to for message in mail.outbox] == [[admin_user.email]]


def test_a_complaint_about_a_reader_who_erased_their_data_still_suppresses_them(
    client, reader
):
    # Erasure keeps only a keyed hash of the address (reason "deleted", which the
    # reader may lift by subscribing again); a complaint about mail they got before
    # makes it one they cannot.
    subscriptions.subscriber_delete(subscriber=reader)
    assert post_postmark(client, forged_complaint(reader.email)).status_code == 200
    assert Suppression.objects.for_email(reader.email).get().reason == (
        Suppression.Reason.COMPLAINT
    )


def test_events_arriving_after_a_reader_erased_their_data_keep_none_of_it(
    client, reader
):
    """The provider posts a message's events for minutes after it went, and
    retries them for hours: what comes after the erasure must not bring the
    reader's address and the email's details back for months."""
    delivery_to(reader, POSTMARK_ID)
    subscriptions.subscriber_delete(subscriber=reader)
    assert post_postmark(client, postmark_delivery()).status_code == 200
    assert post_postmark(client, postmark_complaint()).status_code == 200
    assert list(Event.objects.values_list("recipient", "message_id", "raw")) == [
        ("", "", {}),
        ("", "", {}),
    ]
    # What the events do is still done, by the address's keyed hash.
    assert Suppression.objects.for_email(reader.email).get().reason == "complaint"
    assert post_postmark(client, postmark_complaint()).status_code == 200
    assert Event.objects.count() == 2  # a repeat is still recognised


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "payload",
    [
        postmark_delivery,
        postmark_bounce,
        # Of an email with no ledger row (their welcome): theirs by its address.
        lambda: postmark_bounce(message_id="welcome-message"),
    ],
    ids=["delivered", "bounced", "bounced-welcome"],
)
def test_an_event_reported_as_the_reader_erases_their_data_keeps_none_of_it(
    reader, payload
):
    """The provider reports a delivery or a bounce as the reader's erasure commits:
    the event was kept naming their address and the message, for months, after
    the erasure had deleted every other one. It is kept naming no one."""
    delivery_to(reader, POSTMARK_ID)
    reported = as_erasure_commits(
        reader,
        lambda: (
            post_postmark(Client(raise_request_exception=False), payload()).status_code
        ),
    )
    assert reported == 200
    assert list(Event.objects.values_list("recipient", "message_id", "raw")) == [
        ("", "", {})
    ]


def test_the_events_list_filters_by_type_without_reading_every_event(admin_client):
    """Django's filters read every event for the values they offer, on each page:
    180 ms a filter at 2,000,000 events."""
    for i, kind in enumerate(["delivered", "delivered", "bounced"]):
        Event.objects.create(esp="postmark", event_id=f"e{i}", event_type=kind, raw={})
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/newsletter/event/?event_type__exact=bounced")
    assert page.status_code == 200
    assert page.context_data["cl"].result_count == 1
    assert not [q for q in queries if "DISTINCT" in q["sql"].upper()]
    # One count of the events, not a second of them all for "(3 total)".
    assert len([q for q in queries if "COUNT(" in q["sql"].upper()]) == 1
    html = page.content.decode()
    assert "?event_type__exact=complained" in html  # offered, if none came yet
    assert "?esp__exact=mailgun" in html
    assert "inbound" not in html
    page = admin_client.get("/admin/newsletter/event/?esp__exact=mailgun")
    assert page.context_data["cl"].result_count == 0


def test_the_events_admin_says_why_the_webhook_is_off(admin_client, settings):
    settings.ANYMAIL = {}
    page = admin_client.get("/admin/newsletter/event/")
    assert page.status_code == 200
    assert "ANYMAIL_WEBHOOK_SECRET is not set" in page.content.decode()
    settings.ANYMAIL = {"WEBHOOK_SECRET": SECRET}
    page = admin_client.get("/admin/newsletter/event/")
    assert "ANYMAIL_WEBHOOK_SECRET is not set" not in page.content.decode()
    assert POSTMARK_URL in page.content.decode()


def test_production_with_an_email_provider_refuses_to_start_without_a_webhook_secret():
    from .test_security import run_production

    provider = {"EMAIL_BACKEND": POSTMARK_BACKEND, "ANYMAIL_WEBHOOK_SECRET": ""}
    result = run_production("manage.py", "check", extra_env=provider)
    assert result.returncode != 0
    assert "ImproperlyConfigured: ANYMAIL_WEBHOOK_SECRET must be set" in result.stderr
    provider["ANYMAIL_WEBHOOK_SECRET"] = "tracking:a-long-random-webhook-password"
    result = run_production("manage.py", "check", extra_env=provider)
    assert result.returncode == 0, result.stderr


# Malformed input (issue 17, finding 9) ---------------------------------------------


@pytest.mark.parametrize(
    "depth",
    [100_000, 900],
    # Found by this test: 900 levels parse, but storing them overflowed (a 500).
    ids=["beyond-the-parsers-recursion-limit", "within-it-beyond-the-encoders"],
)
@pytest.mark.parametrize("esp", ["postmark", "mailgun"])
def test_deeply_nested_json_is_a_400_and_writes_nothing(
    client, settings, reader, esp, depth
):
    settings.EMAIL_BACKEND = POSTMARK_BACKEND if esp == "postmark" else MAILGUN_BACKEND
    if esp == "postmark":
        payload = postmark_delivery()
    else:
        payload = mailgun_event("delivered", "token-nested")
    nested = json.dumps(payload)[:-1] + ', "x": ' + '{"a": ' * depth + "1"
    response = client.post(
        f"/anymail/{esp}/tracking/",
        data=nested + "}" * depth + "}",
        content_type="application/json",
        **basic_auth(),
    )
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "delivered_at",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",  # before datetime's year 1 in UTC
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",  # beyond datetime's year 9999 in UTC
        "1969-12-31T23:59:59Z",
        "2026-11-26T16:33:54",  # no time zone: which time was it?
    ],
)
def test_an_event_dated_where_no_event_can_be_is_a_400_and_writes_nothing(
    client, admin_client, reader, delivered_at
):
    delivery_to(reader, POSTMARK_ID)
    response = post_postmark(client, postmark_delivery(at=delivered_at))
    assert response.status_code == 400
    assert not Event.objects.exists()
    assert not Delivery.objects.filter(last_event__gt="").exists()
    assert admin_client.get("/admin/newsletter/event/").status_code == 200


@pytest.mark.parametrize(
    "payload",
    [{}, {"RecordType": "Bounce"}, {"RecordType": "Delivery", "Recipient": ""}],
    ids=["empty", "a-bounce-of-nothing", "an-empty-recipient"],
)
def test_an_event_naming_no_recipient_and_no_message_is_a_400_and_writes_nothing(
    client, reader, payload
):
    # Authenticated: only the provider, or whoever holds the secret, gets this far.
    response = post_postmark(client, payload)
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.parametrize("bounced_at", ["99999-01-01", "yesterday", "2026-13-45"])
def test_a_bounce_whose_date_cannot_be_read_is_a_400_and_suppresses_nobody(
    client, reader, bounced_at
):
    """anymail reads such a date as none, and the bounce counted as now."""
    response = post_postmark(client, postmark_bounce(at=bounced_at))
    assert response.status_code == 400
    assert not Event.objects.exists()
    assert not Suppression.objects.exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
