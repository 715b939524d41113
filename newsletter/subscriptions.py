"""The reader's side of the newsletter: subscribing, confirming, unsubscribing,
preferences, suppression and the reader's own data.

Suppression is the one gate: every path that would email an address asks the
suppression list first, and every suppression moves the subscriber out of the
audience in the same transaction.
"""

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from posts.comments import comments_delete_for_email, comments_for_email

from . import tasks
from .emails import (
    build_message,
    confirmation_message,
    render_email,
    site_link,
    welcome_message,
)
from .models import (
    Consent,
    Delivery,
    Event,
    Subscriber,
    SubscriberTopic,
    Suppression,
    normalise_email,
)
from .tokens import Purpose, make_token

# What the subscribe form says, stored verbatim with each consent. Change the
# version whenever the wording changes.
CONSENT_VERSION = "2026-11-26"
CONSENT_WORDING = (
    "Email me each new post on probation inspections. I can unsubscribe at any "
    "time with the link in every email. My address is used only for this "
    "newsletter and never shared."
)
CONSENT_SOURCE_FORM = "subscribe form"

# The status a subscriber takes for each reason their address is suppressed.
STATUS_FOR_REASON = {
    Suppression.Reason.UNSUBSCRIBED: Subscriber.Status.UNSUBSCRIBED,
    Suppression.Reason.DELETED: Subscriber.Status.UNSUBSCRIBED,
    Suppression.Reason.SOFT_BOUNCES: Subscriber.Status.BOUNCED,
    Suppression.Reason.HARD_BOUNCE: Subscriber.Status.BOUNCED,
    Suppression.Reason.MANUAL: Subscriber.Status.SUPPRESSED,
    Suppression.Reason.COMPLAINT: Subscriber.Status.COMPLAINED,
}


def is_blocked(email: str) -> bool:
    """True when nothing may be sent to the address, not even a confirmation."""
    return Suppression.objects.for_email(email).blocking().exists()


def set_topics(
    *,
    subscriber: Subscriber,
    topics: Iterable[str] = (),
    frequency: str = SubscriberTopic.Frequency.INSTANT,
) -> None:
    """Replace what the subscriber follows: "kind:value" keys, all at one frequency.
    No topics means everything."""
    keys = {tuple(topic.split(":", 1)) for topic in topics} or {
        (SubscriberTopic.Kind.EVERYTHING, "")
    }
    with transaction.atomic():
        subscriber.topics.all().delete()
        SubscriberTopic.objects.bulk_create(
            SubscriberTopic(
                subscriber=subscriber, kind=kind, value=value, frequency=frequency
            )
            for kind, value in sorted(keys)
        )


def subscribe(
    *,
    email: str,
    name: str = "",
    ip_address: str | None = None,
    topics: Iterable[str] | None = None,
    frequency: str = SubscriberTopic.Frequency.INSTANT,
) -> None:
    """Record a request to subscribe and, where due, queue a confirmation email.

    Whatever the address's state, the caller learns nothing: a confirmed reader is
    left alone, a bounced or complained address gets nothing and leaves no trace,
    and anyone else gets at most one confirmation per day. Topics replace what
    the reader chose before; None keeps it (everything, for a new reader).
    """
    email = normalise_email(email)
    now = timezone.now()
    with transaction.atomic():
        if is_blocked(email):
            return
        subscriber, _ = Subscriber.objects.get_or_create(
            email=email, defaults={"name": name}
        )
        if subscriber.status == Subscriber.Status.ACTIVE:
            return
        if topics is not None:
            set_topics(subscriber=subscriber, topics=topics, frequency=frequency)
        Consent.objects.create(
            subscriber=subscriber,
            ip_address=ip_address,
            wording=CONSENT_WORDING,
            wording_version=CONSENT_VERSION,
            source=CONSENT_SOURCE_FORM,
        )
        resend_after = now - timedelta(seconds=settings.NEWSLETTER_CONFIRM_RESEND_AFTER)
        due = Subscriber.objects.filter(pk=subscriber.pk).filter(
            Q(confirmation_sent_at__isnull=True)
            | Q(confirmation_sent_at__lt=resend_after)
        )
        if due.update(confirmation_sent_at=now):
            transaction.on_commit(lambda: tasks.send_confirmation.delay(subscriber.pk))


def confirm(*, subscriber: Subscriber) -> None:
    """Make a pending (or returning) subscriber part of the audience.

    This is the fresh double opt-in that lifts the reader's own unsubscribe or
    deletion; a bounce, complaint or the author's suppression is never lifted here.
    """
    now = timezone.now()
    with transaction.atomic():
        if is_blocked(subscriber.email):
            return
        confirmed = (
            Subscriber.objects.filter(pk=subscriber.pk)
            .exclude(status=Subscriber.Status.ACTIVE)
            .update(
                status=Subscriber.Status.ACTIVE,
                confirmed_at=now,
                unsubscribed_at=None,
                paused_at=None,
                soft_bounces=0,
            )
        )
        if confirmed:
            Suppression.objects.for_email(subscriber.email).delete()
            latest = subscriber.consents.filter(confirmed_at__isnull=True).first()
            if latest is not None:
                latest.confirmed_at = now
                latest.save(update_fields=["confirmed_at"])
            transaction.on_commit(lambda: tasks.send_welcome.delay(subscriber.pk))
    subscriber.refresh_from_db()


def suppress(*, email: str, reason: Suppression.Reason) -> None:
    """Put an address on the suppression list and its subscriber out of the audience.

    A stronger reason replaces a weaker one, never the reverse: a complaint stays
    a complaint whatever happens to the address afterwards.
    """
    email = normalise_email(email)
    now = timezone.now()
    with transaction.atomic():
        suppression, created = Suppression.objects.select_for_update().get_or_create(
            address_hash=Suppression.hash_address(email), defaults={"reason": reason}
        )
        if not created and Suppression.strength(reason) > Suppression.strength(
            suppression.reason
        ):
            suppression.reason = reason
            suppression.save(update_fields=["reason", "updated_at"])
        status = STATUS_FOR_REASON[suppression.reason]
        Subscriber.objects.filter(email=email).exclude(status=status).update(
            status=status,
            unsubscribed_at=now,
            paused_at=None,
            # Old confirmation links must not bring the reader back: only a new
            # subscribe request, and the confirmation it sends, may.
            confirmation_sent_at=None,
        )


def unsubscribe(*, subscriber: Subscriber) -> None:
    """Take a subscriber out of every future send. Repeating it changes nothing."""
    suppress(email=subscriber.email, reason=Suppression.Reason.UNSUBSCRIBED)
    subscriber.refresh_from_db()


def pause(*, subscriber: Subscriber) -> None:
    Subscriber.objects.filter(
        pk=subscriber.pk, status=Subscriber.Status.ACTIVE, paused_at__isnull=True
    ).update(paused_at=timezone.now())
    subscriber.refresh_from_db()


def resume(*, subscriber: Subscriber) -> None:
    Subscriber.objects.filter(pk=subscriber.pk).update(paused_at=None)
    subscriber.refresh_from_db()


def request_email_change(*, subscriber: Subscriber, new_email: str) -> None:
    """Send a link to the new address; the address changes only when it is used.

    The reader is told the same whatever happens, so the preference centre does not
    reveal whether another address is subscribed or suppressed.
    """
    new_email = normalise_email(new_email)
    if (
        new_email == subscriber.email
        or subscriber.status != Subscriber.Status.ACTIVE
        or is_blocked(new_email)
        or Subscriber.objects.filter(email=new_email).exists()
    ):
        return
    transaction.on_commit(
        lambda: tasks.send_email_change.delay(subscriber.pk, new_email)
    )


def change_email(*, subscriber: Subscriber, new_email: str) -> bool:
    """Move the subscription to a confirmed new address. False if it cannot be."""
    new_email = normalise_email(new_email)
    if is_blocked(new_email):
        return False
    try:
        with transaction.atomic():
            Subscriber.objects.filter(pk=subscriber.pk).update(
                email=new_email, soft_bounces=0
            )
    except IntegrityError:  # another subscriber has the address meanwhile
        return False
    subscriber.refresh_from_db()
    return True


def export_data(*, subscriber: Subscriber) -> dict:
    """Everything held about the subscriber, for the reader to download."""
    deliveries = (
        subscriber.deliveries.filter(mailing__kind="post")
        .select_related("mailing__post")
        .order_by("pk")
    )
    return {
        "subscriber": {
            "email": subscriber.email,
            "name": subscriber.name,
            "status": subscriber.status,
            "created_at": subscriber.created_at,
            "confirmation_sent_at": subscriber.confirmation_sent_at,
            "confirmed_at": subscriber.confirmed_at,
            "unsubscribed_at": subscriber.unsubscribed_at,
            "paused_at": subscriber.paused_at,
        },
        "topics": [
            {"kind": topic.kind, "value": topic.value, "frequency": topic.frequency}
            for topic in subscriber.topics.all()
        ],
        "consents": [
            {
                "created_at": consent.created_at,
                "ip_address": consent.ip_address,
                "wording": consent.wording,
                "wording_version": consent.wording_version,
                "source": consent.source,
                "confirmed_at": consent.confirmed_at,
            }
            for consent in subscriber.consents.order_by("created_at")
        ],
        "deliveries": [
            {
                "post": delivery.mailing.post.title,
                "post_url": settings.SITE_URL
                + delivery.mailing.post.get_absolute_url(),
                "status": delivery.status,
                "sent_at": delivery.sent_at,
                "last_event": delivery.last_event,
                "last_event_at": delivery.last_event_at,
            }
            for delivery in deliveries
        ],
        # Comments under posts written with the same address.
        "comments": comments_for_email(email=subscriber.email),
    }


def delete_subscriber(*, subscriber: Subscriber) -> None:
    """Forget the person; keep only the keyed hash that honours their choice."""
    with transaction.atomic():
        suppress(email=subscriber.email, reason=Suppression.Reason.DELETED)
        message_ids = (
            Delivery.objects.filter(subscriber=subscriber)
            .exclude(esp_message_id="")
            .values("esp_message_id")
        )
        Event.objects.filter(
            Q(recipient=subscriber.email) | Q(message_id__in=message_ids)
        ).delete()
        comments_delete_for_email(email=subscriber.email)
        subscriber.delete()


def purge_expired_pending() -> int:
    """Delete subscriptions never confirmed whose latest confirmation has expired."""
    cutoff = timezone.now() - timedelta(seconds=settings.NEWSLETTER_PENDING_MAX_AGE)
    expired = Subscriber.objects.filter(status=Subscriber.Status.PENDING).filter(
        Q(confirmation_sent_at__lt=cutoff)
        | Q(confirmation_sent_at__isnull=True, created_at__lt=cutoff)
    )
    deleted, _ = expired.delete()
    return deleted


def send_confirmation(*, subscriber_id: int) -> None:
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if (
        subscriber is None
        or subscriber.status == Subscriber.Status.ACTIVE
        or is_blocked(subscriber.email)
    ):
        return
    confirmation_message(subscriber).send()


def send_welcome(*, subscriber_id: int) -> None:
    subscriber = Subscriber.objects.confirmed().filter(pk=subscriber_id).first()
    if subscriber is not None:
        welcome_message(subscriber).send()


def send_email_change(*, subscriber_id: int, new_email: str) -> None:
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or is_blocked(new_email):
        return
    token = make_token(subscriber, Purpose.CHANGE_EMAIL, new_email=new_email)
    email = render_email(
        "change-email",
        {
            "subscriber": subscriber,
            "new_email": new_email,
            "confirm_url": site_link("newsletter:change_email", token=token),
            "max_age_days": settings.NEWSLETTER_CHANGE_EMAIL_MAX_AGE // 86400,
        },
    )
    build_message(email, to=new_email).send()
