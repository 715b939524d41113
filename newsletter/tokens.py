"""Signed links in emails: one salt per purpose, so a token works only for its purpose.

A token names the subscriber and carries a fingerprint of what it was issued for (the
address, and for confirmation the time the link was sent). Changing the address, or
sending a newer confirmation, quietly retires the old links. A change-of-address
token also carries the new address, and is retired by the change it confirms.
"""

from enum import StrEnum

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

from .models import Subscriber


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    CHANGE_EMAIL = "change_email"


class InvalidToken(Exception):
    """The link is tampered with, for another purpose, retired or expired."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


# Unsubscribe and preference links must keep working in old emails; links that
# confirm something expire.
MAX_AGE = {
    Purpose.CONFIRM: settings.NEWSLETTER_CONFIRM_MAX_AGE,
    Purpose.UNSUBSCRIBE: None,
    Purpose.PREFERENCES: None,
    Purpose.CHANGE_EMAIL: settings.NEWSLETTER_CHANGE_EMAIL_MAX_AGE,
}


def _fingerprint(subscriber: Subscriber, purpose: Purpose, new_email: str) -> str:
    issued_for = subscriber.email
    if purpose == Purpose.CONFIRM:
        sent = subscriber.confirmation_sent_at
        issued_for += f"|{sent.timestamp() if sent else ''}"
    if purpose == Purpose.CHANGE_EMAIL:
        issued_for += f"|{new_email}"
    return salted_hmac(f"newsletter.tokens.{purpose}", issued_for).hexdigest()[:16]


def make_token(subscriber: Subscriber, purpose: Purpose, *, new_email: str = "") -> str:
    """A signed link token; `new_email` only for Purpose.CHANGE_EMAIL."""
    return signing.dumps(
        [subscriber.pk, _fingerprint(subscriber, purpose, new_email)]
        + ([new_email] if new_email else []),
        salt=f"newsletter.tokens.{purpose}",
    )


def _read(token: str, purpose: Purpose) -> tuple[Subscriber, str]:
    try:
        pk, fingerprint, *rest = signing.loads(
            token, salt=f"newsletter.tokens.{purpose}", max_age=MAX_AGE[purpose]
        )
    except signing.SignatureExpired as exc:
        raise InvalidToken(expired=True) from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken from exc
    new_email = rest[0] if rest and type(rest[0]) is str else ""
    subscriber = Subscriber.objects.filter(pk=pk).first() if type(pk) is int else None
    if subscriber is None or not constant_time_compare(
        str(fingerprint), _fingerprint(subscriber, purpose, new_email)
    ):
        raise InvalidToken
    return subscriber, new_email


def read_token(token: str, purpose: Purpose) -> Subscriber:
    return _read(token, purpose)[0]


def read_change_email_token(token: str) -> tuple[Subscriber, str]:
    """The subscriber and the new address a change-of-address link confirms."""
    subscriber, new_email = _read(token, Purpose.CHANGE_EMAIL)
    if not new_email:
        raise InvalidToken
    return subscriber, new_email
