"""Asking the provider what it accepted, to settle uncertain batches without
guessing. Every message of a mailing carries the metadata {"batch": id}, so one
search by that metadata lists the recipients the provider took.

Only Postmark's outbound message search is wired up. Its index lags acceptance by
seconds to minutes, so a batch is asked about only once it has been uncertain
for SEARCH_LAG.
"""

from datetime import datetime, timedelta
from typing import NamedTuple

import requests
from django.conf import settings

from posts.validators import row_id_in

from ..esp import PROVIDER_BY_BACKEND

PAGE = 500  # Postmark's largest page

# How long after a batch turned uncertain its messages the provider took are
# surely in its search. Asked sooner, the search may not list a message taken
# moments before, and its reader, counted as never taken, gets a second copy.
# Postmark's index lags acceptance by seconds to minutes: 5 leaves it room.
SEARCH_LAG = timedelta(minutes=5)


class CannotAsk(Exception):
    """The configured provider offers no search we use."""


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


def accepted_recipients(**metadata: int) -> list[Accepted]:
    """What the provider took with this metadata (one key, e.g. batch=…)."""
    ((key, value),) = metadata.items()
    token = settings.ANYMAIL.get("POSTMARK_SERVER_TOKEN")
    if PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND) != "postmark" or not token:
        raise CannotAsk("only Postmark's message search (with a server token)")
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
                    f"metadata_{key}": value,
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
                # Each reader's message names their row ({"delivery": id}): the
                # address alone is not theirs once they move.
                ours = message.get("Metadata")
                ours = ours if isinstance(ours, dict) else {}
                row = row_id_in(str(ours.get("delivery", "")))
                accepted.extend(
                    Accepted(address, message["MessageID"], row)
                    for address in message["Recipients"]
                )
            offset += PAGE
            if offset >= found["TotalCount"]:
                return accepted
