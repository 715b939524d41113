"""Asking the provider what it accepted, to settle uncertain batches without
guessing. Every message of a mailing carries the metadata {"batch": id}, so the
provider's record of what it took names the batch of each recipient.

Postmark: its outbound message search, by that metadata. Mailgun: its Events
API, the "accepted" events of the time the batch went out, kept where their
user-variables name the batch (the API filters by no user variable). Each lags
what it took: a batch is asked about only once it has been uncertain for its
provider's search_lag().

Also Mailgun's Unsubscribes list, which an address that unsubscribed here is
taken off as a reader asks to subscribe with it, or to move to it, again
(mailgun_unsubscribe_delete).
"""

import logging
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import NamedTuple
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.utils import timezone

from posts.validators import row_id_in

from ..esp import PROVIDER_BY_BACKEND

logger = logging.getLogger(__name__)

PAGE = 500  # Postmark's largest page
MAILGUN_PAGE = 300  # Mailgun's largest page of events

# How long after a batch turned uncertain its messages the provider took are
# surely in its search. Asked sooner, the search may not list a message taken
# moments before, and its reader, counted as never taken, gets a second copy.
# Postmark's index lags acceptance by seconds to minutes: 5 leaves it room.
SEARCH_LAG = timedelta(minutes=5)
# Mailgun's events reach its store out of order; its guide to polling them
# (documentation.mailgun.com, Events > Event Polling) trusts a page only once
# its events are half an hour old.
MAILGUN_EVENTS_LAG = timedelta(minutes=30)
# Our clock and Mailgun's may differ: the window of the batch's events is
# widened by this at each end, and asked about once its end is settled too.
CLOCK_SKEW = timedelta(minutes=5)
# Mailgun keeps events a day on its free plan (up to 30 days on others): asked
# later, the events of what it took are gone and all would be sent again.
MAILGUN_EVENTS_KEPT = timedelta(days=1)


class CannotAsk(Exception):
    """The configured provider offers no search we use, or cannot answer."""


class TooSoonToAsk(Exception):
    """The batch turned uncertain too recently: the provider's search may not
    list yet what it took. It may be asked from `askable_from`."""

    def __init__(self, askable_from: datetime) -> None:
        super().__init__(f"not before {askable_from.isoformat()}")
        self.askable_from = askable_from


class Accepted(NamedTuple):
    """A recipient the provider took: the address it went to, the provider's
    message id, and the ledger row our metadata names (None where it names none)."""

    address: str
    message_id: str
    delivery_id: int | None


def search_lag() -> timedelta:
    """How long a batch must have been uncertain before the configured provider
    is asked about it."""
    if PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND) == "mailgun":
        return MAILGUN_EVENTS_LAG + CLOCK_SKEW
    return SEARCH_LAG


def accepted_recipients(
    *, batch: int, went_out: datetime | None, uncertain_from: datetime
) -> list[Accepted]:
    """What the provider took of the batch, whose last attempt was claimed at
    `went_out` and turned uncertain at `uncertain_from`."""
    provider = PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND)
    if provider == "mailgun":
        return _mailgun_accepted(batch, went_out, uncertain_from)
    token = settings.ANYMAIL.get("POSTMARK_SERVER_TOKEN")
    if provider != "postmark" or not token:
        raise CannotAsk(
            "only Postmark's message search (with a server token) and Mailgun's"
            " events (with an API key)"
        )
    api = settings.ANYMAIL.get("POSTMARK_API_URL", "https://api.postmarkapp.com/")
    headers = {"Accept": "application/json", "X-Postmark-Server-Token": token}
    accepted: list[Accepted] = []
    offset = 0
    with requests.Session() as session:
        while True:
            response = session.get(
                api.rstrip("/") + "/messages/outbound",
                params={
                    "count": PAGE,
                    "offset": offset,
                    "metadata_batch": batch,
                    # Postmark searches its "outbound" stream unless told
                    # otherwise, where no mailing goes (sender.Channel).
                    "messagestream": settings.NEWSLETTER_POSTMARK_BROADCAST_STREAM,
                },
                headers=headers,
                timeout=30,
            )
            response.raise_for_status()
            found = response.json()
            for message in found["Messages"]:
                row = _row_named(message.get("Metadata"))
                accepted.extend(
                    Accepted(address, message["MessageID"], row)
                    for address in message["Recipients"]
                )
            offset += PAGE
            if offset >= found["TotalCount"]:
                return accepted


def _row_named(metadata: object) -> int | None:
    # Each reader's message names their row ({"delivery": id}): the address
    # alone is not theirs once they move.
    ours = metadata if isinstance(metadata, dict) else {}
    return row_id_in(str(ours.get("delivery", "")))


def _mailgun_accepted(
    batch: int, went_out: datetime | None, uncertain_from: datetime
) -> list[Accepted]:
    api = _mailgun_api()
    if api is None:
        raise CannotAsk("Mailgun's events need ANYMAIL_MAILGUN_API_KEY")
    domain_url, key = api
    if went_out is None or went_out < timezone.now() - MAILGUN_EVENTS_KEPT:
        raise CannotAsk(
            "Mailgun may no longer keep its record of what it took (a day, on"
            " its free plan). Look the batch's readers up in Mailgun's logs:"
            " record the batch as sent if it took them all, or resend it if not"
            " (those it took get a second copy)."
        )
    url = f"{domain_url}/events"
    params: dict | None = {
        # Whole seconds, as its API documents them (the margins dwarf the rest).
        "begin": int((went_out - CLOCK_SKEW).timestamp()),
        "end": int((uncertain_from + CLOCK_SKEW).timestamp()),
        "event": "accepted",
        "limit": MAILGUN_PAGE,
    }
    accepted: list[Accepted] = []
    read: set[str] = set()
    with requests.Session() as session:
        session.auth = ("api", key)
        while True:
            response = session.get(url, params=params, timeout=30)
            response.raise_for_status()
            read.add(response.url)
            found = response.json()
            if not found["items"]:
                # Mailgun pages until an empty page, its last.
                return accepted
            for event in found["items"]:
                ours = event.get("user-variables")
                if not isinstance(ours, dict) or ours.get("batch") != str(batch):
                    continue  # another batch's, or mail of another kind
                message_id = event["message"]["headers"]["message-id"]
                # The messages API (and so the ledger) wraps it in <>; events not.
                if not message_id.startswith("<"):
                    message_id = f"<{message_id}>"
                accepted.append(
                    Accepted(event["recipient"], message_id, _row_named(ours))
                )
            # The next page's URL carries the query.
            url, params = found["paging"]["next"], None
            if url in read:
                # Asked again it would give the same, for good: an API fault.
                raise CannotAsk(
                    "Mailgun's events gave as the next page one already read. Ask"
                    " again later, or look the batch's readers up in Mailgun's logs."
                )
            if urlsplit(url)[:2] != urlsplit(domain_url)[:2]:
                # The session would give it the API key.
                raise CannotAsk(
                    "Mailgun's events gave as the next page an address outside its"
                    " API, not followed. Look the batch's readers up in Mailgun's"
                    " logs."
                )


def _mailgun_api() -> tuple[str, str] | None:
    """The URL of the sending domain at Mailgun's API, and the API key; None
    without a key."""
    key = settings.ANYMAIL.get("MAILGUN_API_KEY")
    if not key:
        return None
    # anymail sends from this domain, else from the From address's.
    domain = (
        settings.ANYMAIL.get("MAILGUN_SENDER_DOMAIN")
        or (parseaddr(settings.NEWSLETTER_FROM_EMAIL)[1].rpartition("@")[2])
    )
    api = settings.ANYMAIL.get("MAILGUN_API_URL", "https://api.mailgun.net/v3")
    return f"{api.rstrip('/')}/{quote(domain, safe='')}", key


def mailgun_unsubscribe_delete(*, email: str) -> None:
    """Take the address off Mailgun's Unsubscribes list, where it drops every
    email to it, a confirmation too; nothing where the site does not send
    through Mailgun, or the address is not on it. Never its Bounces or
    Complaints lists: those are the author's to judge (admin/readers.py)."""
    api = _mailgun_api()
    if PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND) != "mailgun" or api is None:
        return
    domain_url, key = api
    try:
        response = requests.delete(
            f"{domain_url}/unsubscribes/{quote(email, safe='@')}",
            auth=("api", key),
            timeout=30,
        )
        if response.status_code != 404:  # 404: not on the list
            response.raise_for_status()
    except requests.RequestException:
        # The email goes all the same: Mailgun may drop it, as it did before.
        logger.warning("Could not take an address off Mailgun's Unsubscribes list")
