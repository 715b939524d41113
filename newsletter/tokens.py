"""Signed links in emails: one salt per purpose, so a token works only for its purpose.

A token names the subscriber and carries a fingerprint of what it was issued for (the
address, and for a link that confirms something the time it was sent). Changing the
address, or sending a newer link of the same purpose, quietly retires the old ones.
A link that confirms one thing also carries its detail: the consent a confirmation
confirms, the new address of a change of address, the action a one-time link allows.
"""

import hashlib
import hmac
import json
import time
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare

from .models import Subscriber


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    CHANGE_EMAIL = "change_email"
    # Export, delete or re-address: sent to the reader's address when asked for
    # from the preference centre, whose link may have been forwarded.
    ONE_TIME = "one_time"


class InvalidToken(Exception):
    """The link is tampered with, for another purpose, retired or expired."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


# Unsubscribe and preference links must keep working in old emails; links that
# confirm something expire.
MAX_AGE = {
    Purpose.CONFIRM: settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS,
    Purpose.UNSUBSCRIBE: None,
    Purpose.PREFERENCES: None,
    Purpose.CHANGE_EMAIL: settings.NEWSLETTER_CHANGE_EMAIL_MAX_AGE_SECONDS,
    Purpose.ONE_TIME: 3600,
}

# The subscriber's timestamp each purpose's links are bound to: a newer link of the
# purpose, or the action that uses it, changes it and so retires the older links.
_ISSUED_AT = {
    Purpose.CONFIRM: "confirmation_sent_at",
    Purpose.CHANGE_EMAIL: "email_change_requested_at",
    Purpose.ONE_TIME: "one_time_link_sent_at",
}


@lru_cache(maxsize=32)
def _hmac_key(key_salt: str, secret: str, algorithm: str) -> hmac.HMAC:
    """Django's salted_hmac keyed for `key_salt` and `secret`, derived once per
    process rather than on every call (two hashes of the three per HMAC)."""
    digest = getattr(hashlib, algorithm)
    return hmac.new(digest((key_salt + secret).encode()).digest(), digestmod=digest)


def _salted_hmac(key_salt: str, value: str, *, algorithm: str) -> bytes:
    """django.utils.crypto.salted_hmac(key_salt, value, algorithm=…).digest()"""
    mac = _hmac_key(key_salt, settings.SECRET_KEY, algorithm).copy()
    mac.update(value.encode())
    return mac.digest()


def _fingerprint(subscriber: Subscriber, purpose: Purpose, detail: str) -> str:
    issued_for = subscriber.email
    if purpose in _ISSUED_AT:
        sent = getattr(subscriber, _ISSUED_AT[purpose])
        issued_for += f"|{sent.timestamp() if sent else ''}"
    if detail:
        issued_for += f"|{detail}"
    mac = _salted_hmac(f"newsletter.tokens.{purpose}", issued_for, algorithm="sha1")
    return mac.hex()[:16]


# signing.JSONSerializer's encoding, with the encoder made once rather than per call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


@lru_cache(maxsize=1)  # a batch signs hundreds of tokens in the same second
def _timestamp(seconds: int) -> str:
    return signing.b62_encode(seconds)


def make_token(subscriber: Subscriber, purpose: Purpose, *, detail: str = "") -> str:
    """A signed link token; `detail` for the purposes that confirm one thing.

    Exactly signing.dumps(…, salt=…), which _read() checks, without its
    per-call costs (a signer, its settings, two key derivations, an encoder):
    a send signs a token or two per reader. `subscriber` may be anything with
    the subscriber's pk and email (a ledger Recipient) for the purposes not
    bound to a timestamp.
    """
    data = [subscriber.pk, _fingerprint(subscriber, purpose, detail)]
    if detail:
        data.append(detail)
    payload = signing.b64_encode(_COMPACT_JSON.encode(data).encode()).decode()
    value = f"{payload}:{_timestamp(int(time.time()))}"
    mac = _salted_hmac(f"newsletter.tokens.{purpose}signer", value, algorithm="sha256")
    return f"{value}:{signing.b64_encode(mac).decode()}"


def _read(token: str, purpose: Purpose) -> tuple[Subscriber, str]:
    try:
        pk, fingerprint, *rest = signing.loads(
            token, salt=f"newsletter.tokens.{purpose}", max_age=MAX_AGE[purpose]
        )
    except signing.SignatureExpired as exc:
        raise InvalidToken(expired=True) from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken from exc
    detail = rest[0] if rest and type(rest[0]) is str else ""
    subscriber = Subscriber.objects.filter(pk=pk).first() if type(pk) is int else None
    if subscriber is None or not constant_time_compare(
        str(fingerprint), _fingerprint(subscriber, purpose, detail)
    ):
        raise InvalidToken
    return subscriber, detail


def read_token(token: str, purpose: Purpose) -> Subscriber:
    return _read(token, purpose)[0]


def read_token_detail(token: str, purpose: Purpose) -> tuple[Subscriber, str]:
    """The subscriber and the one thing the link confirms (see make_token)."""
    subscriber, detail = _read(token, purpose)
    if not detail:
        raise InvalidToken
    return subscriber, detail
