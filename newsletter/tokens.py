"""Signed links in emails: one salt per purpose, so a token works only for its purpose.

A token names the subscriber and carries a fingerprint of what it was issued for (the
address, and for confirmation the time the link was sent). Changing the address, or
sending a newer confirmation, quietly retires the old links.
"""

from enum import StrEnum

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

from .models import Subscriber


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"


class InvalidToken(Exception):
    """The link is tampered with, for another purpose, retired or expired."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


# Unsubscribe links must keep working in old emails; confirmation links expire.
MAX_AGE = {
    Purpose.CONFIRM: settings.NEWSLETTER_CONFIRM_MAX_AGE,
    Purpose.UNSUBSCRIBE: None,
}


def _fingerprint(subscriber: Subscriber, purpose: Purpose) -> str:
    issued_for = subscriber.email
    if purpose == Purpose.CONFIRM:
        sent = subscriber.confirmation_sent_at
        issued_for += f"|{sent.timestamp() if sent else ''}"
    return salted_hmac(f"newsletter.tokens.{purpose}", issued_for).hexdigest()[:16]


def make_token(subscriber: Subscriber, purpose: Purpose) -> str:
    return signing.dumps(
        [subscriber.pk, _fingerprint(subscriber, purpose)],
        salt=f"newsletter.tokens.{purpose}",
    )


def read_token(token: str, purpose: Purpose) -> Subscriber:
    try:
        pk, fingerprint = signing.loads(
            token, salt=f"newsletter.tokens.{purpose}", max_age=MAX_AGE[purpose]
        )
    except signing.SignatureExpired as exc:
        raise InvalidToken(expired=True) from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken from exc
    subscriber = Subscriber.objects.filter(pk=pk).first() if type(pk) is int else None
    if subscriber is None or not constant_time_compare(
        str(fingerprint), _fingerprint(subscriber, purpose)
    ):
        raise InvalidToken
    return subscriber
