"""ESP tracking webhooks: anymail authenticates and parses, we record and act.

Only the configured provider's view answers at /anymail/<esp>/tracking/, and only
with ANYMAIL_WEBHOOK_SECRET set: anymail would accept anyone's events without it
(Postmark signs nothing), and an event can suppress any address. anymail's view
checks the basic-auth secret and the ESP's signature where it has one, then sends
the `tracking` signal with a normalised event. Each event is recorded once per ESP
event id; its effects (the ledger row, the subscriber, the suppression list) are
applied in the same transaction, so a redelivered event changes nothing.
"""

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from anymail.exceptions import (
    AnymailConfigurationError,
    AnymailWebhookValidationFailure,
)
from anymail.signals import AnymailTrackingEvent, EventType, RejectReason
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from posts.comments.models import Comment
from posts.validators import normalise_email, row_id_in

from . import engagement, esp, subscriptions
from .delivery import delivery_settle_by_event
from .models import (
    Delivery,
    Event,
    PreviousAddress,
    SignatureToken,
    Subscriber,
    Suppression,
)


class _RefuseMalformedBodies:
    """anymail's parsers assume the ESP's payload shape: a body of another shape
    (a JSON list, a missing or mistyped field) raises inside them, or hands on a
    dict where an address should be, and would be a 500, which the ESP retries for
    days. Such a body is refused with a 400 instead; errors in our own receiver
    still give a 500, so a real event is retried."""

    # The fields of the provider's event that anymail reads its date from, where
    # it reads one it cannot parse as no date (Mailgun's raises: MALFORMED).
    DATE_FIELDS: tuple[str, ...] = ()

    # The media types the provider posts its events as. anymail's parsers read
    # the body whatever the Content-Type says, so a complaint posted as text (by
    # anyone holding the secret, or a proxy rewriting it) suppressed a reader.
    CONTENT_TYPES: tuple[str, ...] = ("application/json",)

    MALFORMED = (
        AttributeError,
        KeyError,
        IndexError,
        TypeError,
        ValueError,  # also UnicodeError
        OverflowError,
        # A timestamp beyond the C library's time_t (datetime.fromtimestamp).
        OSError,
        # JSON nested deeper than the parser's recursion limit.
        RecursionError,
    )

    @staticmethod
    def signature_token(event: AnymailTrackingEvent) -> str:
        """The token the provider signed the event's request with, good once; ""
        where it signs none."""
        return ""

    def post(self, request, *args, **kwargs):
        if request.content_type not in self.CONTENT_TYPES:
            return HttpResponse(
                f"{self.esp_name} posts its events as {', '.join(self.CONTENT_TYPES)},"
                f" not {request.content_type or 'no Content-Type'}.",
                status=415,
                content_type="text/plain; charset=utf-8",
            )
        return super().post(request, *args, **kwargs)

    def run_validators(self, request):
        try:
            super().run_validators(request)
        except self.MALFORMED as exc:
            raise AnymailWebhookValidationFailure(
                f"Malformed {self.esp_name} webhook: {exc!r}"
            ) from exc

    def parse_events(self, request):
        try:
            if request.content_type == "application/json":
                _refuse_unstorable_json(request.body)
            else:
                # Mailgun's legacy form, read as its signature was: a multipart
                # body is a stream read once, and request.body raised after it.
                _refuse_unstorable(dict(request.POST.lists()))
            events = super().parse_events(request)
        except self.MALFORMED as exc:
            raise AnymailWebhookValidationFailure(
                f"Malformed {self.esp_name} webhook body: {exc!r}"
            ) from exc
        for event in events:
            for name in ("event_id", "recipient", "message_id", "user_agent"):
                if not isinstance(getattr(event, name), str | None):
                    raise AnymailWebhookValidationFailure(
                        f"Malformed {self.esp_name} webhook body: {name} is not text"
                    )
            if event.timestamp and not (
                timezone.is_aware(event.timestamp)
                and EARLIEST_EVENT <= event.timestamp <= LATEST_EVENT
            ):
                raise AnymailWebhookValidationFailure(
                    f"Malformed {self.esp_name} webhook body: dated {event.timestamp}"
                )
            # anymail takes a date it cannot read for none, and the event would
            # count as now: a bounce dated "99999-01-01" suppressed the address.
            if event.timestamp is None and any(
                event.esp_event.get(field) for field in self.DATE_FIELDS
            ):
                raise AnymailWebhookValidationFailure(
                    f"Malformed {self.esp_name} webhook body: its date cannot be read"
                )
            # Every event a provider sends is about a message or an address:
            # one about neither is no event, and would be logged naming no one.
            if not (event.recipient or event.message_id):
                raise AnymailWebhookValidationFailure(
                    f"Malformed {self.esp_name} webhook body: it names no recipient"
                    " and no message"
                )
        return events


# Events dated outside these (or with no time zone) are forged or broken: near
# datetime's limits (years 1 and 9999) a date cannot be shown in local time, nor
# stored from some offsets.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT = datetime(2100, 1, 1, tzinfo=UTC)


class _NotJSON(ValueError):
    pass


# No provider's event nests more than a few levels; hundreds of levels, which the
# parser still reads, overflow the recursion of the code that stores the event.
MAX_JSON_DEPTH = 32


def _refuse_unstorable_json(body: bytes) -> None:
    """A JSON body the event log could not store is malformed: Python's json reads
    NaN and Infinity, which are not JSON (RFC 8259), and numbers too large for a
    float, which it reads as infinite; it reads escaped lone surrogates, which no
    UTF-8 text can hold; and deep nesting is refused (MAX_JSON_DEPTH)."""

    def refuse(constant: str) -> None:
        raise _NotJSON(f"{constant} is not JSON")

    try:
        parsed = json.loads(body, parse_constant=refuse)
    except _NotJSON:
        raise
    except ValueError:
        return  # not JSON at all: anymail's parser refuses it
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise _NotJSON(f"nested deeper than {MAX_JSON_DEPTH} levels")
    _refuse_unstorable(parsed)


def _refuse_unstorable(parsed: object) -> None:
    """A parsed body that no UTF-8 text can hold, or that holds the NUL character,
    which PostgreSQL stores in neither text nor jsonb (\\u0000)."""
    try:
        stored = json.dumps(parsed, allow_nan=False, ensure_ascii=False)
        stored.encode()
    except ValueError as exc:  # UnicodeEncodeError is one
        raise _NotJSON(f"cannot be stored: {exc}") from None
    if "\\u0000" in stored:
        raise _NotJSON("NUL characters cannot be stored")


def _depth(parsed: object) -> int:
    """How deep objects and arrays nest, found without recursion."""
    deepest, waiting = 0, [(parsed, 0)]
    while waiting:
        value, depth = waiting.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            waiting.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            waiting.extend((item, depth + 1) for item in value)
    return deepest


class PostmarkTrackingView(_RefuseMalformedBodies, PostmarkTrackingWebhookView):
    DATE_FIELDS = ("DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt")
    # anymail reports a spam filter's refusal (SpamNotification) as a complaint:
    # the reader never saw the email, and the desk's complaint rate and a post's
    # report counted it as reached and complained about. It is a bounce.
    # And its OpenRelayTest, which anymail reads as a deferral, is the reader's
    # mail server testing whether Postmark relays anyone's mail: counted as the
    # reader's soft bounce, it suppressed them, though it says nothing of their
    # mailbox nor of the email. It is nothing (Postmark's "Unknown" is too).
    event_types = PostmarkTrackingWebhookView.event_types | {
        "SpamNotification": (EventType.BOUNCED, RejectReason.SPAM),
        "OpenRelayTest": (EventType.UNKNOWN, None),
    }


class MailgunTrackingView(_RefuseMalformedBodies, MailgunTrackingWebhookView):
    # Its legacy webhooks post a form, multipart where the event carries files.
    CONTENT_TYPES = (
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    )

    def mailgun_legacy_to_anymail_event(self, esp_event):
        event = super().mailgun_legacy_to_anymail_event(esp_event)
        # A legacy "dropped" message Mailgun gave up on after trying it for hours
        # ("old"), which anymail reads by its code (the receiver's last answer, or
        # Mailgun's 498, no mail server for the domain) as a rejected bounce, and
        # which suppressed the reader for good. The JSON webhook reports it as a
        # failure "old": a bounce that says nothing of the address for good.
        gave_up = _mailgun_outcome(event).reason in MAILGUN_GAVE_UP
        if event.event_type == EventType.REJECTED and gave_up:
            event.event_type = EventType.BOUNCED
            event.reject_reason = RejectReason.OTHER
        return event

    def esp_to_anymail_event(self, esp_event):
        event = super().esp_to_anymail_event(esp_event)
        # anymail names the event by its signature's token, which is new each
        # time Mailgun posts the event (again when our answer did not reach it):
        # recognised by it, the event counted again. Mailgun's own id stays the
        # same, "unique within a day" (its docs): with the event's time, for good.
        own_id = esp_event["event-data"].get("id")
        if own_id is not None:
            if not isinstance(own_id, str):
                raise TypeError(f"event-data id {own_id!r} is not text")
            when = event.timestamp.isoformat() if event.timestamp else ""
            event.event_id = f"{own_id} {when}".strip()
        return event

    @staticmethod
    def signature_token(event: AnymailTrackingEvent) -> str:
        if isinstance(event.esp_event, QueryDict):  # the legacy form: the last
            return event.esp_event.get("token", "")  # token, as anymail checked it
        return str(event.esp_event["signature"]["token"])

    def validate_request(self, request):
        super().validate_request(request)
        # Mailgun signs its timestamp and token, not the event: one signed request
        # could carry any event again. A token is good once (SignatureToken) while
        # tokens are kept, and a signature older than that is refused here.
        days = settings.NEWSLETTER_KEEP_EVENTS_DAYS
        if days and _mailgun_signed_at(request) < timezone.now() - timedelta(days):
            raise AnymailWebhookValidationFailure(
                f"Mailgun webhook signed more than {days} days ago"
            )


def _mailgun_signed_at(request: HttpRequest) -> datetime:
    """When Mailgun signed the request, as its signature (checked) says."""
    if request.content_type == "application/json":
        timestamp = json.loads(request.body)["signature"]["timestamp"]
    else:  # the legacy form-encoded webhook
        timestamp = request.POST["timestamp"]
    return datetime.fromtimestamp(float(timestamp), tz=UTC)


TRACKING_VIEWS = {"postmark": PostmarkTrackingView, "mailgun": MailgunTrackingView}
# The provider whose events we read, by the email backend that sends through it.
# The dev outbox stands in for Postmark: the fake ESP (benchmarks/fake_esp.py)
# speaks Postmark, so a developer tries the webhook with Postmark's payloads.
PROVIDER_BY_BACKEND = esp.PROVIDER_BY_BACKEND | {
    "newsletter.outbox.OutboxBackend": "postmark"
}


class TrackingOff(Exception):
    """The tracking webhook is off; the message says why, for the author."""


def tracking_provider() -> str:
    """The provider whose tracking webhook answers, or TrackingOff."""
    provider = PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND)
    if provider is None:
        raise TrackingOff(
            f"Tracking webhooks are off: EMAIL_BACKEND {settings.EMAIL_BACKEND} "
            "has none (Postmark and Mailgun have)."
        )
    if not settings.ANYMAIL.get("WEBHOOK_SECRET"):
        raise TrackingOff(
            "Tracking webhooks are off: ANYMAIL_WEBHOOK_SECRET is not set, and "
            "without it anyone could post events that suppress any address. Set it "
            "to 'user:password' and give the provider the URL with those credentials."
        )
    try:
        TRACKING_VIEWS[provider]()  # reads the provider's own, e.g. a signing key
    except AnymailConfigurationError as missing:
        raise TrackingOff(f"Tracking webhooks are off: {missing}") from None
    return provider


@csrf_exempt
def tracking(request: HttpRequest, esp: str) -> HttpResponse:
    """/anymail/<esp>/tracking/: the configured provider's view, else a 404."""
    try:
        provider = tracking_provider()
    except TrackingOff:
        raise Http404("No tracking webhook here.") from None
    if esp != provider:
        raise Http404("No tracking webhook here.")
    return TRACKING_VIEWS[provider].as_view()(request)


def record_tracking_event(
    sender, *, event: AnymailTrackingEvent, esp_name: str, **kwargs
) -> None:
    """Receiver of anymail's `tracking` signal."""
    raw = _jsonable(event.esp_event)
    event_id = event.event_id or _digest(raw)
    token = sender.signature_token(event)
    recipient = normalise_email(event.recipient or "")
    timestamp = event.timestamp or timezone.now()
    about = _ledger_row(event, recipient)
    engaged = event.event_type in engagement.READER_EVENTS
    # The reader the event names is held until this commits (after the address's
    # suppression, the order address_suppress takes them in), so that an erasure
    # under way is waited for, and they are no one's then. Read without it, an
    # event was kept naming a reader the erasure had just forgotten, and an open
    # was written for a reader deleted meanwhile: the commit failed, a 500.
    rows = (
        Delivery.objects.filter(about)
        .select_related("subscriber")
        .select_for_update(no_key=True, of=("subscriber",))
    )
    with transaction.atomic():
        if token and not SignatureToken.objects.get_or_create(token=token[:255])[1]:
            return  # a signature used before: whatever it carries, a replay
        if recipient:
            list(Suppression.objects.for_email(recipient).select_for_update())
        delivery = rows.first() if about else None
        # An event names someone only while they are our reader (its message's
        # ledger row, or a subscriber at its address), so that erasing them
        # erases it: one that comes after they erased their data, or about an
        # address no one here has, would keep it for months. An open or a click
        # is the reader's own history besides: kept only when they agreed to it.
        # Otherwise the event is recorded without naming anyone, enough to
        # recognise it if the provider sends it again.
        about_a_reader = delivery is not None or (
            bool(recipient)
            and Subscriber.objects.select_for_update(no_key=True)
            .filter(email=recipient)
            .exists()
        )
        personal = about_a_reader and (
            not engaged
            or (delivery is not None and engagement.reader_allows(delivery.subscriber))
        )
        recorded, created = Event.objects.get_or_create(
            esp=esp_name.lower(),
            event_id=event_id[:255],
            defaults={
                "event_type": event.event_type,
                "recipient": recipient[:254] if personal else "",
                "message_id": (event.message_id or "")[:255] if personal else "",
                "timestamp": event.timestamp,
                "raw": raw if personal else {},
                "sender_refused": _refused_our_sender(event),
            },
        )
        if not created:
            return  # seen before: its effects are already applied
        if (
            delivery is not None
            and delivery.status == Delivery.Status.UNCERTAIN
            and event.event_type in PROVIDER_TOOK_IT
        ):
            # Before the row is written below: settling locks the batch, then
            # its mailing, then the row, as the author's settling does. Holding
            # the row first, this waited for the batch the author held while
            # they waited for the row: a deadlock, and one of the two failed.
            delivery_settle_by_event(
                delivery_id=delivery.pk, message_id=event.message_id or ""
            )
        if delivery is not None and event.event_type in Delivery.OUTCOME_EVENTS:
            # What became of the message (delivered, bounced, complained): needed
            # to send correctly, so kept for every reader. An email Mailgun
            # dropped for an address on its lists, never trying to deliver it,
            # is one the provider did not send: kept as the bounce anymail
            # reads it as, the post's report and the desk counted it as the
            # reader's soft bounce.
            outcome = EventType.FAILED if _mailgun_listed(event) else event.event_type
            Delivery.objects.filter(pk=delivery.pk).filter(
                Q(last_event_at__isnull=True) | Q(last_event_at__lte=timestamp)
            ).update(
                last_event=outcome,
                last_event_at=timestamp,
                sender_refused=recorded.sender_refused,
            )
        if delivery is not None and event.event_type == EventType.OPENED:
            # Clicks are counted by the site's own redirect (engagement.py), never
            # from the provider's click events: they would count twice, and the
            # provider cannot tell a scanner from a person.
            engagement.open_record(
                delivery=delivery,
                machine=engagement.open_by_machine(event),
                at=timestamp,
            )
        if recipient and not engaged:
            _apply_to_address(event, recipient, recorded=recorded)


# Events that prove the provider took the message: it queued or sent it, the
# receiving server answered for it (delivered, deferred, bounced), or the reader
# or their mail system did (opened, clicked, complained, replied by a bot).
# Not a rejection or a failure (anymail: the provider refused to send it, or could
# not): Mailgun's "rejected" is a refusal at its API, so the message may never have
# been taken. Nor an unsubscribe or a subscribe: Postmark reports a change to the
# address's standing, which may be the author's own in its dashboard.
# Those kept as the ledger row's last_event (Delivery.OUTCOME_EVENTS_TAKEN) also
# settle a row whose answer is recorded uncertain after the event came
# (ledger.record_outcomes).
PROVIDER_TOOK_IT = (
    EventType.QUEUED,
    EventType.SENT,
    EventType.AUTORESPONDED,
    EventType.OPENED,
    EventType.CLICKED,
    *Delivery.OUTCOME_EVENTS_TAKEN,
)


def _ledger_row(event: AnymailTrackingEvent, recipient: str) -> Q:
    """Which ledger row an event is about, for a mailing of any kind: the one with
    the provider's message id, or, where the provider gave none on accepting it
    (Postmark's bulk API), the one the message's metadata names; always to the
    event's address, as Mailgun gives every reader of a batch call one message id
    (the reader's at the time: a message sent before they moved names the old one).
    An empty Q when the event names no row."""
    if not recipient:
        return Q()
    about = Q()
    if event.message_id:
        about |= Q(esp_message_id=event.message_id)
    # Ours are {"delivery": "<id>"}; anything else names no row.
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    delivery_id = row_id_in(str(metadata.get("delivery", "")))
    if delivery_id:
        about |= Q(pk=delivery_id, esp_message_id="")
    if not about:
        return about
    # The reader's address then: their address now, or one they moved away from
    # after the message went (or, unanswered, after its mailing began).
    held_then = PreviousAddress.objects.filter(
        subscriber=OuterRef("subscriber"),
        email=recipient,
        moved_at__gte=Coalesce(OuterRef("sent_at"), OuterRef("mailing__created_at")),
    )
    return about & (Q(subscriber__email=recipient) | Exists(held_then))


def events_purge_old(*, now: datetime) -> int:
    """Forget events older than NEWSLETTER_KEEP_EVENTS_DAYS; returns how many.

    They name readers' addresses, and are needed only to recognise an event the
    ESP delivers again, which it does for hours, not months; what they did to the
    ledger and the suppression list stays.
    """
    if not settings.NEWSLETTER_KEEP_EVENTS_DAYS:
        return 0
    cutoff = now - timedelta(days=settings.NEWSLETTER_KEEP_EVENTS_DAYS)
    # Signed that long ago, a request is refused whatever its token.
    SignatureToken.objects.filter(received_at__lt=cutoff).delete()
    deleted, _ = Event.objects.filter(received_at__lt=cutoff).delete()
    return deleted


def _apply_to_address(
    event: AnymailTrackingEvent, email: str, *, recorded: Event
) -> None:
    known = (
        Subscriber.objects.filter(email=email).exists()
        or Suppression.objects.for_email(email).exists()
        # A commenter is written to whether or not they read the newsletter (the
        # link proving their address, the link to their data), and the emails
        # about comments refuse a suppressed address (is_blocked): their bounce or
        # complaint suppresses the address, and makes no reader of them.
        or Comment.objects.for_email(email).exists()
        # The desk's people are written to too (the moderators' comment digest,
        # tests of an email), and the digest refuses a suppressed address.
        or _at_the_desk(email)
    )
    if not known:
        # We never wrote to this address: the event is forged or stray, and must
        # not put a stranger on the suppression list (they could never subscribe).
        # A reader who erased their data is still known by their suppression's hash.
        return
    kind = event.event_type
    if kind == EventType.DELIVERED:
        # Providers retry and batch their webhooks, so events come out of order:
        # a delivery older than a soft bounce we already counted says nothing of
        # the mailbox now, and must not restart the count.
        if not _reported_after(email, SOFT_BOUNCE_EVENTS, event.timestamp):
            Subscriber.objects.filter(email=email, soft_bounces__gt=0).update(
                soft_bounces=0
            )
    elif kind == EventType.COMPLAINED:
        subscriptions.address_suppress(email=email, reason=Suppression.Reason.COMPLAINT)
    elif kind == EventType.UNSUBSCRIBED:
        suppressed_by_the_author = (
            _postmark_field(event, "Origin") in POSTMARK_NOT_THE_READERS_ORIGINS
        )
        subscriptions.address_suppress(
            email=email,
            reason=Suppression.Reason.MANUAL
            if suppressed_by_the_author
            else Suppression.Reason.UNSUBSCRIBED,
        )
    elif listed := _mailgun_listed(event):
        # Mailgun will never send to the address: the reader complained or
        # unsubscribed there (an event this site missed, a list moved here from
        # another tool). Counted as a soft bounce, the reader stayed in the
        # audience, dropped from every email, until kept as soft-bounced.
        subscriptions.address_suppress(email=email, reason=listed)
    elif recorded.sender_refused:
        # The author's to mend (the desk counts these apart), not the reader's:
        # one broken DMARC record suppressed every reader at Gmail and Yahoo
        # after three emails, and Postmark itself keeps such addresses active.
        return
    elif _is_hard_bounce(event):
        subscriptions.address_suppress(
            email=email, reason=Suppression.Reason.HARD_BOUNCE
        )
    elif event.event_type in SOFT_BOUNCE_EVENTS:
        if _reported_after(email, [EventType.DELIVERED], event.timestamp):
            return  # a delivery since has restarted the count
        if _soft_bounced_before(recorded):
            return  # the same email again: the provider is still retrying it
        Subscriber.objects.filter(email=email).update(
            soft_bounces=F("soft_bounces") + 1
        )
        if Subscriber.objects.filter(
            email=email, soft_bounces__gte=settings.NEWSLETTER_SOFT_BOUNCE_LIMIT
        ).exists():
            subscriptions.address_suppress(
                email=email, reason=Suppression.Reason.SOFT_BOUNCES
            )


def _at_the_desk(email: str) -> bool:
    """Whether a desk account gives the address, in any of the forms the desk
    accepts (Editor@Example.org, a domain in Unicode): compared in their stored
    form. The desk's accounts are few."""
    typed = (
        get_user_model()
        .objects.filter(is_staff=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    return any(normalise_email(address) == email for address in typed)


# What a soft bounce is recorded as, asked after the hard bounce: a bounce
# (Postmark's SoftBounce and SpamNotification, Mailgun's failure "old"; a hard
# bounce, recorded as one too, suppresses the address anyway). Only how an email
# ends counts: not a deferral, which both providers report for an email they
# will try again (Postmark's Transient and DnsError, Mailgun's temporary
# failures), reporting its delivery or failure after; counted, a mail host that
# delayed three emails which then arrived lost us the reader. Not "rejected",
# nor any refusal of our sender (Postmark's Blocked and DMARCPolicy are
# rejections; Mailgun's are failures marked sender_refused): they must not keep
# a delivery from restarting the count, nor hide a soft bounce of the same email.
SOFT_BOUNCE_EVENTS = [EventType.BOUNCED]


def _reported_after(email: str, kinds: list[str], moment: datetime | None) -> bool:
    """Whether an event of these kinds about the address, other than a refusal
    of our sender, is dated after moment."""
    return (
        moment is not None
        and Event.objects.filter(
            recipient=email,
            event_type__in=kinds,
            timestamp__gt=moment,
            sender_refused=False,
        ).exists()
    )


def _soft_bounced_before(recorded: Event) -> bool:
    """Whether the email this event is about had already soft-bounced: a provider
    may report more than one bounce of one message, and the limit counts emails
    in a row, not reports. By the address too, as
    Mailgun gives every reader of a batch call one message id."""
    return (
        bool(recorded.message_id)
        and Event.objects.filter(
            esp=recorded.esp,
            recipient=recorded.recipient,
            message_id=recorded.message_id,
            event_type__in=SOFT_BOUNCE_EVENTS,
            sender_refused=False,
        )
        .exclude(pk=recorded.pk)
        .exists()
    )


# Postmark's bounce types (its "Type") that say something else of the address
# than anymail's event type and reason for them.
# Postmark will not send to the address (deactivated in its dashboard), which
# anymail reports as a rejection, "blocked", as it does a block of the sender.
POSTMARK_HARD_BOUNCES = {"ManuallyDeactivated"}
# A full or unavailable mailbox (SoftBounce, reported with the reason "bounced"
# all the same); or the reader's spam filter refused the message
# (SpamNotification, recorded as a bounce, PostmarkTrackingView: the reader never
# saw it, and Postmark keeps the address active).
POSTMARK_SOFT_BOUNCES = {"SoftBounce", "SpamNotification"}
# Who suppressed an address at Postmark (a SubscriptionChange's Origin), where it
# was not the reader through its unsubscribe link ("Recipient"): the author, in
# its dashboard or API ("Customer"), or Postmark's staff ("Admin"). anymail
# reports each as an unsubscribe; the reader's own, only they could lift it.
POSTMARK_NOT_THE_READERS_ORIGINS = {"Customer", "Admin"}
# The receiving side refused our sender, not the reader's address: Postmark's
# Blocked (an ISP's block, for our reputation or content) and DMARCPolicy (our
# From domain's own DMARC policy: its DKIM or SPF failed), both reported as
# rejections, "blocked"; Mailgun's espblock, which anymail reports as a failure
# of no known reason. Mailgun has no reason of its own for a DMARC refusal: it
# is a "bounce" or "generic" failure, told apart only by the receiver's code or
# words.
POSTMARK_SENDER_REFUSALS = {"Blocked", "DMARCPolicy"}
MAILGUN_SENDER_REFUSALS = {"espblock"}
# Mailgun's reason where it gave up on a message after retrying it for hours.
MAILGUN_GAVE_UP = {"old"}
# Mailgun's reasons for not sending to an address on its complaints or
# unsubscribes list, which anymail reads as a failure of no known reason (a soft
# bounce), and the suppression each is here.
MAILGUN_LISTED = {
    "suppress-complaint": Suppression.Reason.COMPLAINT,
    "suppress-unsubscribe": Suppression.Reason.UNSUBSCRIBED,
}
# Its legacy drops give the reason "hardfail" for every list: their code names
# the list (605, the bounces list, anymail reads as a bounce itself).
MAILGUN_LEGACY_LISTED = {"606": "suppress-unsubscribe", "607": "suppress-complaint"}
# What the receiving server's enhanced status code (MailgunOutcome's code, after
# its class, 4 or 5) says of our sender: RFC 7372's failures of its
# authentication (7.20-7.22 DKIM, 7.23-7.24 SPF, 7.25 reverse DNS, 7.26 more
# than one: Gmail's DMARC refusal), and Microsoft's own DMARC refusal (7.509).
SENDERS_AUTHENTICATION_FAILED = {
    *(f"7.{detail}" for detail in range(20, 27)),
    "7.509",
}
# The receiver's words naming our sender's authentication: a DMARC refusal given
# a policy code ("5.7.1 Unauthenticated email … is not accepted due to domain's
# DMARC policy", Gmail before 5.7.26) or none. Not where the code blames the
# address or the mailbox (RFC 3463's subjects 1 and 2), which some receivers
# follow with the sender's checks that passed ("spf=pass").
SENDERS_AUTHENTICATION_NAMED = re.compile(r"\b(?:DMARC|SPF|DKIM)\b", re.IGNORECASE)
THE_READERS_ADDRESS_OR_MAILBOX = {"1", "2"}
# The events of an email that did not reach the reader, for now or for good.
NOT_DELIVERED = {*Delivery.BOUNCE_EVENTS, EventType.FAILED, EventType.DEFERRED}


def _postmark_field(event: AnymailTrackingEvent, name: str) -> str:
    """A field of a Postmark event, as text; "" for any other provider's."""
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    return str(esp_event.get(name, "")) if esp_event.get("RecordType") else ""


class MailgunOutcome(NamedTuple):
    """What Mailgun says became of a message, read alike from its JSON events and
    its legacy forms: its own reason ("bounce", "old", "espblock",
    "suppress-complaint"), the receiving server's enhanced status code without
    its class ("7.26"), and the receiving server's words with Mailgun's own on
    them."""

    reason: str
    code: str
    words: str


# An RFC 3463 enhanced status code (class.subject.detail) in a server's words, not
# part of an address or a version ("192.2.61.154", "5.7.26.1").
ENHANCED_CODE = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d]|\.\d)")


def _mailgun_outcome(event: AnymailTrackingEvent) -> MailgunOutcome:
    """The event's MailgunOutcome, whichever webhook posted it; empty for any
    other provider's. Legacy forms give the receiver's code as a basic one
    ("550") or an enhanced one ("5.7.26"), and its words as "error" (a bounce),
    "notification", or "description" (a drop); where no field gives the enhanced
    code, the words do ("550 5.7.26 Unauthenticated email …")."""
    esp_event = event.esp_event
    if isinstance(esp_event, QueryDict):  # Mailgun's legacy form-encoded webhooks

        def field(name: str) -> str:
            # Mailgun merges the message's own variables into the form after
            # its fields: the first value is Mailgun's (as anymail reads them).
            return (esp_event.getlist(name) or [""])[0]

        reason = MAILGUN_LEGACY_LISTED.get(field("code"), field("reason"))
        code = field("code") if ENHANCED_CODE.fullmatch(field("code")) else ""
        words = " ".join(
            field(name) for name in ("error", "notification", "description")
        )
    else:
        event_data = esp_event.get("event-data") if isinstance(esp_event, dict) else {}
        event_data = event_data if isinstance(event_data, dict) else {}
        status = event_data.get("delivery-status")
        status = status if isinstance(status, dict) else {}
        reason = str(event_data.get("reason") or "")
        code = str(status.get("enhanced-code") or "")
        words = f"{status.get('message') or ''} {status.get('description') or ''}"
    if not code and (said := ENHANCED_CODE.search(words)):
        code = said.group(1)
    return MailgunOutcome(reason=reason, code=code.partition(".")[2], words=words)


def _mailgun_listed(event: AnymailTrackingEvent) -> Suppression.Reason | None:
    """Where Mailgun did not send the email, the address being on its
    complaints or unsubscribes list: the suppression that list is here."""
    if event.event_type not in NOT_DELIVERED:
        return None
    return MAILGUN_LISTED.get(_mailgun_outcome(event).reason)


def _refused_our_sender(event: AnymailTrackingEvent) -> bool:
    """The reader's mail provider refused our sender: the email did not reach
    them, and it says nothing of their mailbox. Only a failure can say so: a
    server that took the email may name the checks we passed ("spf=pass")."""
    if event.event_type not in NOT_DELIVERED:
        return False
    if _postmark_field(event, "Type") in POSTMARK_SENDER_REFUSALS:
        return True
    outcome = _mailgun_outcome(event)
    return (
        outcome.reason in MAILGUN_SENDER_REFUSALS
        or outcome.code in SENDERS_AUTHENTICATION_FAILED
        or (
            outcome.code.partition(".")[0] not in THE_READERS_ADDRESS_OR_MAILBOX
            and SENDERS_AUTHENTICATION_NAMED.search(outcome.words) is not None
        )
    )


def _is_hard_bounce(event: AnymailTrackingEvent) -> bool:
    """The provider says the address itself is bad (it does not exist, or bounced
    before), or will not send to it: only then is it suppressed for good. Any
    other failure to deliver (Mailgun giving up after retrying; Postmark's virus
    notification) says nothing of the mailbox for good."""
    postmark_type = _postmark_field(event, "Type")
    if postmark_type in POSTMARK_HARD_BOUNCES:
        return True
    return (
        event.event_type in (EventType.BOUNCED, EventType.REJECTED)
        and event.reject_reason in (RejectReason.BOUNCED, RejectReason.INVALID)
        and postmark_type not in POSTMARK_SOFT_BOUNCES
    )


def _jsonable(esp_event) -> object:
    if isinstance(esp_event, QueryDict):  # Mailgun's legacy form-encoded webhooks
        esp_event = dict(esp_event.lists())
    return json.loads(json.dumps(esp_event, default=str))


def _digest(raw: object) -> str:
    """An id for events the ESP gives none (Postmark deliveries, opens, clicks):
    the same payload delivered twice is the same event."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
