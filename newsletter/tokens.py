"""Signed links in emails: one salt per purpose, so a token works only for its purpose.

A token names the subscriber and carries a fingerprint of what it was issued for (the
address, and for a link that confirms something the time it was sent). Changing the
address, or sending a newer link of the same purpose, quietly retires the old ones,
but for unsubscribe links, which still work for an address the reader moved from.
A link that confirms one thing also carries its detail: the consent a confirmation
confirms, the new address of a change of address, the action a one-time link allows.
"""

import binascii
import hashlib
import json
import time
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare

from posts.validators import is_row_id

from .models import Subscriber


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    CHANGE_EMAIL = "change_email"
    # Export, delete, re-address or agree to per-reader engagement: sent to the
    # reader's address when asked for from the preference centre, whose link may
    # have been forwarded.
    ONE_TIME = "one_time"


class InvalidToken(Exception):
    """The link is tampered with, for another purpose, retired or expired."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


class SubscriptionGone(InvalidToken):
    """A link we signed for its purpose whose subscription is gone: the reader's
    data erased, by them or by the desk. Nothing is sent under it any more."""


class LinkUsed(InvalidToken):
    """A one-time link of ours, within its hour, whose reader has used it or a
    newer one since (using one retires them all); `subscriber` None once the
    reader's data is deleted."""

    def __init__(self, *, subscriber: Subscriber | None) -> None:
        super().__init__()
        self.subscriber = subscriber


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


@lru_cache(maxsize=64)
def _keyed(key_salt: str, secret: str, algorithm: str) -> tuple:
    """Django's salted_hmac keyed for `key_salt` and `secret`: HMAC's inner and
    outer hashes (RFC 2104) with the derived key's pads hashed in, once per
    process rather than on every call (three of the five hashes of each HMAC)."""
    new = getattr(hashlib, algorithm)
    key = new((key_salt + secret).encode()).digest().ljust(new().block_size, b"\0")
    return new(key.translate(_IPAD)), new(key.translate(_OPAD))


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _salted_hmac(key_salt: str, value: str, *, algorithm: str, secret: str) -> bytes:
    """django.utils.crypto.salted_hmac(key_salt, value, algorithm=…,
    secret=secret).digest()"""
    inner, outer = _keyed(key_salt, secret, algorithm)
    inner = inner.copy()
    inner.update(value.encode())
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


# Each purpose's salts, for the fingerprint and for the signature.
_SALTS = {
    purpose: (f"newsletter.tokens.{purpose}", f"newsletter.tokens.{purpose}signer")
    for purpose in Purpose
}


def _fingerprint(
    subscriber: Subscriber, purpose: Purpose, detail: str, *, secret: str
) -> str:
    issued_for = subscriber.email
    if purpose in _ISSUED_AT:
        sent = getattr(subscriber, _ISSUED_AT[purpose])
        issued_for += f"|{sent.timestamp() if sent else ''}"
    if detail:
        issued_for += f"|{detail}"
    key_salt = _SALTS[purpose][0]
    return _salted_hmac(key_salt, issued_for, algorithm="sha1", secret=secret).hex()[
        :16
    ]


_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """signing.b64_encode(data).decode(), without its three calls through base64."""
    encoded = binascii.b2a_base64(data, newline=False)
    return encoded.translate(_URL_SAFE).rstrip(b"=").decode()


@lru_cache(maxsize=1)  # a batch signs hundreds of tokens in the same second
def _timestamp(seconds: int) -> str:
    return signing.b62_encode(seconds)


def make_token(subscriber: Subscriber, purpose: Purpose, *, detail: str = "") -> str:
    """A signed link token; `detail` for the purposes that confirm one thing.

    Exactly signing.dumps(…, salt=…), which _read() checks, without its
    per-call costs (a signer, its settings, two key derivations, a JSON
    encoder, base64's wrappers): a send signs a token or two per reader, a
    third of a digest's cost before. `subscriber` may be anything with the
    subscriber's pk (an int) and email (a ledger Recipient) for the purposes not
    bound to a timestamp.
    """
    secret = settings.SECRET_KEY
    fingerprint = _fingerprint(subscriber, purpose, detail, secret=secret)
    # signing's compact JSON of [pk, fingerprint(, detail)]: the fingerprint is hex.
    data = f'[{subscriber.pk:d},"{fingerprint}"'
    if detail:
        data += "," + json.dumps(detail)
    value = f"{_b64(f'{data}]'.encode())}:{_timestamp(int(time.time()))}"
    mac = _salted_hmac(_SALTS[purpose][1], value, algorithm="sha256", secret=secret)
    return f"{value}:{_b64(mac)}"


def _read(token: str, purpose: Purpose) -> tuple[Subscriber, str, str]:
    """The subscriber a token names, its detail, and the address it was sent to."""
    subscriber, fingerprint, detail = _loads(token, purpose)
    sent_to = None
    if subscriber is not None and _issued_for(subscriber, purpose, detail, fingerprint):
        sent_to = subscriber.email
    elif subscriber is not None and purpose == Purpose.UNSUBSCRIBE:
        # An email sent before the reader moved address must still let them
        # leave (RFC 8058): the token names this subscriber, so whoever holds
        # the old address since is not touched.
        sent_to = _previous_address_issued_for(subscriber, purpose, detail, fingerprint)
    if sent_to is None:
        if purpose == Purpose.ONE_TIME and detail and _one_time_link_spent(subscriber):
            raise LinkUsed(subscriber=subscriber)
        if subscriber is None:
            raise SubscriptionGone
        raise InvalidToken
    return subscriber, detail, sent_to


def _one_time_link_spent(subscriber: Subscriber | None) -> bool:
    """Whether the reader's latest one-time link is spent: only using one clears
    its time (a newer request sets it again), and an erasure takes the reader."""
    return subscriber is None or subscriber.one_time_link_sent_at is None


def _loads(
    token: str, purpose: Purpose, *, any_age: bool = False
) -> tuple[Subscriber | None, str, str]:
    """The subscriber a token names (None if erased since), its fingerprint and
    its detail, once its signature and (unless `any_age`) its age are checked."""
    try:
        pk, fingerprint, *rest = signing.loads(
            token,
            salt=f"newsletter.tokens.{purpose}",
            max_age=None if any_age else MAX_AGE[purpose],
        )
    except signing.SignatureExpired as exc:
        raise InvalidToken(expired=True) from exc
    except (signing.BadSignature, TypeError, ValueError) as exc:
        raise InvalidToken from exc
    if not (is_row_id(pk) and type(fingerprint) is str):
        raise InvalidToken  # signed, but in no shape of ours: it names nobody
    detail = rest[0] if rest and type(rest[0]) is str else ""
    subscriber = Subscriber.objects.filter(pk=pk).first()
    return subscriber, fingerprint, detail


def _previous_address_issued_for(
    subscriber: Subscriber, purpose: Purpose, detail: str, fingerprint: str
) -> str | None:
    """The address the subscriber has since left that a link was issued to, if
    any: an unsubscribe link, or the link of their latest change of address
    (bound to its request, as it stands now), once it moved them."""
    return next(
        (
            email
            for email in subscriber.previous_addresses.values_list("email", flat=True)
            if _issued_for(
                Subscriber(
                    pk=subscriber.pk,
                    email=email,
                    email_change_requested_at=subscriber.email_change_requested_at,
                ),
                purpose,
                detail,
                fingerprint,
            )
        ),
        None,
    )


def _issued_for(
    subscriber: Subscriber, purpose: Purpose, detail: str, fingerprint: str
) -> bool:
    return constant_time_compare(
        fingerprint,
        _fingerprint(subscriber, purpose, detail, secret=settings.SECRET_KEY),
    )


def read_token(token: str, purpose: Purpose) -> Subscriber:
    return _read(token, purpose)[0]


def read_unsubscribe(token: str) -> tuple[Subscriber, str]:
    """The reader an unsubscribe link names, and the address its email went to:
    theirs now, or one they have moved from, which may be someone else's since
    (a colleague given a leaver's mailbox), so that its page tells the link's
    holder nothing of where the reader went."""
    subscriber, _, sent_to = _read(token, Purpose.UNSUBSCRIBE)
    return subscriber, sent_to


def read_sent_to(token: str, purpose: Purpose) -> Subscriber:
    """The reader a link of ours was sent to, however old, and whether or not a
    newer link or their leaving has retired it, as long as the address it went
    to is still theirs: for a page that only says where they stand. Its signature
    names whom we sent it to; a move since (its address may be someone else's
    now) refuses it. InvalidToken otherwise."""
    subscriber, _, _ = _loads(token, purpose, any_age=True)
    # Signed as signing.dumps signs: "<payload>:<timestamp>:<signature>", the
    # timestamp in whole seconds, so a move in the same second refuses it too.
    signed_at = datetime.fromtimestamp(
        signing.b62_decode(token.rsplit(":", 2)[1]), tz=UTC
    )
    if (
        subscriber is None
        or subscriber.previous_addresses.filter(moved_at__gte=signed_at).exists()
    ):
        raise InvalidToken
    return subscriber


def read_change_made(token: str) -> str:
    """The address a change-of-address link moved its reader to, if it did and
    is still their latest: the link clicked again, however old (its days are
    for making the change). SubscriptionGone once the reader is erased (the link
    went only to a reader who confirmed, whose row only an erasure deletes);
    InvalidToken otherwise (a later request, a later move retire it)."""
    subscriber, fingerprint, detail = _loads(token, Purpose.CHANGE_EMAIL, any_age=True)
    if subscriber is None:
        raise SubscriptionGone
    if not (
        detail
        and detail == subscriber.email
        and _previous_address_issued_for(
            subscriber, Purpose.CHANGE_EMAIL, detail, fingerprint
        )
        is not None
    ):
        raise InvalidToken
    return detail


def read_token_detail(token: str, purpose: Purpose) -> tuple[Subscriber, str]:
    """The subscriber and the one thing the link confirms (see make_token)."""
    subscriber, detail, _ = _read(token, purpose)
    if not detail:
        raise InvalidToken
    return subscriber, detail
