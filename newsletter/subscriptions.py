"""Subscribing, confirming and unsubscribing: the reader's side of the newsletter."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import tasks
from .emails import confirmation_message
from .models import Consent, Subscriber

# What the subscribe form says, stored verbatim with each consent. Change the
# version whenever the wording changes.
CONSENT_VERSION = "2026-11-26"
CONSENT_WORDING = (
    "Email me each new post on probation inspections. I can unsubscribe at any "
    "time with the link in every email. My address is used only for this "
    "newsletter and never shared."
)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def subscribe(*, email: str, name: str = "", ip_address: str | None = None) -> None:
    """Record a request to subscribe and, where due, queue a confirmation email.

    Whatever the address's state, the caller learns nothing: a confirmed reader is
    left alone, and anyone else gets at most one confirmation per day.
    """
    email = normalise_email(email)
    now = timezone.now()
    with transaction.atomic():
        subscriber, _ = Subscriber.objects.get_or_create(
            email=email, defaults={"name": name}
        )
        if subscriber.status == Subscriber.Status.ACTIVE:
            return
        Consent.objects.create(
            subscriber=subscriber,
            ip_address=ip_address,
            wording=CONSENT_WORDING,
            wording_version=CONSENT_VERSION,
        )
        resend_after = now - timedelta(seconds=settings.NEWSLETTER_CONFIRM_RESEND_AFTER)
        due = Subscriber.objects.filter(pk=subscriber.pk).filter(
            Q(confirmation_sent_at__isnull=True)
            | Q(confirmation_sent_at__lt=resend_after)
        )
        if due.update(confirmation_sent_at=now):
            transaction.on_commit(lambda: tasks.send_confirmation.delay(subscriber.pk))


def confirm(*, subscriber: Subscriber) -> None:
    """Make a pending (or returning) subscriber part of the audience."""
    now = timezone.now()
    with transaction.atomic():
        confirmed = Subscriber.objects.filter(
            pk=subscriber.pk,
            status__in=[Subscriber.Status.PENDING, Subscriber.Status.UNSUBSCRIBED],
        ).update(
            status=Subscriber.Status.ACTIVE, confirmed_at=now, unsubscribed_at=None
        )
        if confirmed:
            latest = subscriber.consents.filter(confirmed_at__isnull=True).first()
            if latest is not None:
                latest.confirmed_at = now
                latest.save(update_fields=["confirmed_at"])
    subscriber.refresh_from_db()


def unsubscribe(*, subscriber: Subscriber) -> None:
    """Take a subscriber out of every future send. Repeating it changes nothing."""
    Subscriber.objects.filter(pk=subscriber.pk).exclude(
        status=Subscriber.Status.UNSUBSCRIBED
    ).update(status=Subscriber.Status.UNSUBSCRIBED, unsubscribed_at=timezone.now())
    subscriber.refresh_from_db()


def send_confirmation(*, subscriber_id: int) -> None:
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or subscriber.status == Subscriber.Status.ACTIVE:
        return
    confirmation_message(subscriber).send()
