"""Opens and clicks, honestly counted: people and machines apart, per mailing and
per link, and never per reader.

Links in a mailing's HTML go through the site's own signed redirect (/r/<token>/),
whose token names only the link (a Link row: one per distinct URL per mailing).
The author may later send a broken link somewhere else (link_fix): the redirect
follows Link.target.
A click is a machine's when any of these holds (CLICK_RULES says so to the author):
- it is a HEAD request (a browser following a link asks with GET);
- it comes within MACHINE_SECONDS_AFTER_SEND of the mailing starting to go out;
- its user agent is empty or a known link scanner's (SCANNER_AGENTS);
- it follows the hidden link, which no person can see or hear;
- the same message "clicked" another link within BURST_SECONDS, or the hidden link
  within TRAP_SECONDS: the earlier clicks it counted as people become machines.

The redirect keeps no record of who clicked. "The same message" is told by the
mailing, the client's address and its user agent, held hashed in the cache for
TRAP_SECONDS only (two people behind one office gateway, with the same browser,
clicking the same email within two seconds, count as one scanner).

Opens come from the provider's tracking events (webhooks.py); OPEN_RULES says which
are machines.
"""

import contextlib
import hashlib
import html
import re
from datetime import datetime
from urllib.parse import urlsplit

from anymail.signals import AnymailTrackingEvent
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from posts.models import Post

from .models import Link, Mailing, MailingHour

_SALT = "newsletter.engagement.click"

# Scanners and prefetchers follow a message's links within seconds of delivery;
# a person has not opened it yet.
MACHINE_SECONDS_AFTER_SEND = 10
# A person clicks one link, reads, and maybe another later; a scanner follows
# every link of the message at once.
BURST_SECONDS = 2
# A click on the hidden link marks the same message's clicks this close as machines.
TRAP_SECONDS = 5

# A scanner hammering one link must not grow its entry without bound; the newest
# few are all the rules need.
RECENT_CLICKS_KEPT = 20

# User agents of corporate link scanners and of scripts (lower case, by substring).
SCANNER_AGENTS = (
    "bingpreview",  # Microsoft Defender for Office 365 (Safe Links, ATP)
    "barracuda",
    "mimecast",
    "proofpoint",
    "google-safety",
    "symantec",
    "forcepoint",
    "trendmicro",
    "headlesschrome",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
)
# Image prefetchers that load a message's pixel whether or not anyone reads it.
PREFETCH_AGENTS = ("yahoomailproxy",)
# Apple's Mail Privacy Protection proxy fetches every message's images on receipt,
# with this bare user agent; a real mail client or browser says more.
APPLE_PROXY_AGENT = "Mozilla/5.0"

CLICK_RULES = (
    "A click counts as a machine's when it is a HEAD request, when it comes "
    f"within {MACHINE_SECONDS_AFTER_SEND} seconds of the email going out, when its "
    "browser is empty or a known link scanner's (Microsoft Defender, Barracuda, "
    "Mimecast, Proofpoint, Google Safe Browsing, scripts such as curl), when it "
    "follows the hidden link no person can see, or when the same email followed "
    f"another link within {BURST_SECONDS} seconds or the hidden link within "
    f"{TRAP_SECONDS} seconds. Every other click counts as a person's. Clicks are "
    "counted by the site's own redirect, not by the email provider, and only in "
    "the HTML part of the email. No record is kept of who clicked."
)
OPEN_RULES = (
    "Opens are the email provider's reports that a message's images were loaded, "
    "every time (one reader may open twice). An open counts as a machine's when "
    "the provider says a bot made it (Mailgun marks Apple's privacy proxy and "
    "image prefetchers), when it comes with no browser, or with the bare browser "
    "name Apple's Mail Privacy Protection sends (it loads every email on "
    "arrival, read or not), or from a known scanner or prefetcher. Open tracking "
    "is off unless NEWSLETTER_TRACK_OPENS is set."
)


def click_token(link_id: int) -> str:
    return signing.Signer(salt=_SALT).sign(signing.b62_encode(link_id))


def link_for_token(token: str) -> Link | None:
    """The link a redirect token names, or None for a forged or unknown one."""
    try:
        link_id = signing.b62_decode(signing.Signer(salt=_SALT).unsign(token))
    except (signing.BadSignature, ValueError):
        return None
    link = Link.objects.select_related("mailing").filter(pk=link_id).first()
    if link is None or not is_web_address(link.target):
        return None
    return link


def is_web_address(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def link_fix(*, post: Post, url: str, target: str, user: AbstractBaseUser) -> int:
    """Send every later click on the link to `url` in any email that carried the
    post to `target` instead; how many mailings' links changed.

    The emails cannot change, so their Link rows keep the address they have as
    `url` (and with it their counts and the report's grouping): the redirect goes
    to the fixed one. Emails sent later carry the post as it is then.
    """
    return (
        Link.objects.of_post(post)
        .filter(url=url, hidden=False)
        .update(fixed_url=target, fixed_at=timezone.now(), fixed_by=user)
    )


# The reader's own links (leaving, preferences) are not counted: they name the
# reader, and following them is not reading.
_PERSONAL_PATHS = ("/unsubscribe/", "/preferences/", "/subscribe/confirm/")
# Within Link.url and PostgreSQL's limit for a unique index entry.
MAX_URL_BYTES = 2000
_HREF = re.compile(r'(<a\b[^>]*?\shref=")(https?://[^"]+)(")', re.IGNORECASE)
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


class LinkTracker:
    """Rewrites a mailing's links through the redirect, making one Link row per
    distinct URL the first time it is seen (kept here for the rest of the batch)."""

    def __init__(self, mailing_id: int) -> None:
        self.mailing_id = mailing_id
        self._redirects: dict[tuple[str, bool], str] = {}
        self._slot = settings.SITE_URL + reverse("newsletter:click", args=["--slot--"])

    def tracked(self, body: str) -> str:
        """The HTML body with its links through the redirect, and the hidden link
        first in the body."""
        trap = settings.SITE_URL + "/"
        found = {html.unescape(m.group(2)) for m in _HREF.finditer(body)}
        self._make_links(
            {(url, False) for url in found if self._counted(url)} | {(trap, True)}
        )

        def through(match: re.Match) -> str:
            url = html.unescape(match.group(2))
            if not self._counted(url):
                return match.group(0)
            return match.group(1) + self._redirects[url, False] + match.group(3)

        body = _HREF.sub(through, body)
        hidden = (
            f'<a href="{self._redirects[trap, True]}" aria-hidden="true" '
            'tabindex="-1" style="display:none;font-size:0;max-height:0;'
            'overflow:hidden;mso-hide:all"></a>'
        )
        return _BODY.sub(lambda m: m.group(0) + hidden, body, count=1)

    def _counted(self, url: str) -> bool:
        if len(url.encode()) > MAX_URL_BYTES:
            return False  # longer than a Link holds: left as it is, uncounted
        if not url.startswith(settings.SITE_URL + "/"):
            return True
        path = url.removeprefix(settings.SITE_URL)
        return not path.startswith(_PERSONAL_PATHS)

    def _make_links(self, wanted: set[tuple[str, bool]]) -> None:
        """The Link rows for (url, hidden) pairs not seen yet: two statements."""
        missing = sorted(wanted - self._redirects.keys())
        if not missing:
            return
        Link.objects.bulk_create(
            [
                Link(mailing_id=self.mailing_id, url=url, hidden=hidden)
                for url, hidden in missing
            ],
            ignore_conflicts=True,  # another worker's batch made it first
        )
        made = Link.objects.filter(
            mailing_id=self.mailing_id, url__in={url for url, _ in missing}
        ).values_list("pk", "url", "hidden")
        for link_id, url, hidden in made:
            token = click_token(link_id)
            self._redirects[url, hidden] = self._slot.replace("--slot--", token)


def click_by_machine(*, link: Link, head: bool, user_agent: str, now: datetime) -> bool:
    """Whether a click alone shows a machine, before looking at the message's
    other clicks."""
    agent = user_agent.strip().lower()
    return (
        head
        or link.hidden
        or not agent
        or any(scanner in agent for scanner in SCANNER_AGENTS)
        or (now - link.mailing.created_at).total_seconds() < MACHINE_SECONDS_AFTER_SEND
    )


def click_record(
    *, link: Link, head: bool, user_agent: str, client: str, now: datetime
) -> bool:
    """Count one click on a link as a person's or a machine's; True for a machine.

    The message's recent clicks are held hashed in the cache for TRAP_SECONDS, so
    that a scanner's burst, or its click on the hidden link, also turns the clicks
    it made just before into machines.
    """
    machine = click_by_machine(link=link, head=head, user_agent=user_agent, now=now)
    key = (
        "click:"
        + hashlib.sha256(
            f"{link.mailing_id}|{client}|{user_agent}".encode()
        ).hexdigest()
    )
    moment = now.timestamp()
    # Each: [link id, when, counted as a machine, followed the hidden link].
    recent = [c for c in _recent_clicks(key) if moment - c[1] < TRAP_SECONDS]
    machine = machine or any(
        moment - when < BURST_SECONDS or trap for _, when, _, trap in recent
    )
    with transaction.atomic():
        _count_without_waiting_for_the_disk()
        MailingHour.objects.clicks_add(
            [(link.pk, int(moment // 3600), int(not machine), int(machine))]
            + [(c[0], int(c[1] // 3600), -1, 1) for c in recent if machine and not c[2]]
        )
        _count_click(link, recent, machine=machine)
    recent.append([link.pk, moment, machine, link.hidden])
    # Unreachable, the cache only forgets: the reader is still taken to the link.
    with contextlib.suppress(Exception):
        cache.set(key, recent[-RECENT_CLICKS_KEPT:], timeout=TRAP_SECONDS)
    return machine


def _count_click(link: Link, recent: list, *, machine: bool) -> None:
    """Count the click; a machine's also moves the message's recent clicks that
    were counted as people's over to machines."""
    if machine:
        for click in recent:
            if not click[2]:
                Link.objects.filter(pk=click[0], people__gt=0).update(
                    people=F("people") - 1, machines=F("machines") + 1
                )
                click[2] = True
        Link.objects.filter(pk=link.pk).update(machines=F("machines") + 1)
    else:
        Link.objects.filter(pk=link.pk).update(people=F("people") + 1)


def _count_without_waiting_for_the_disk() -> None:
    """A click's count may be lost in a database crash, and is not worth the wait
    for PostgreSQL to flush its log to disk at every commit: in a burst of clicks
    after a send, that wait is most of the redirect's time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _recent_clicks(key: str) -> list:
    """The message's recent clicks; none when the cache is unreachable, so that
    the reader is still taken to the link, and the click judged on its own."""
    try:
        return cache.get(key) or []
    except Exception:  # any cache backend's connection error
        return []


def open_by_machine(event: AnymailTrackingEvent) -> bool:
    """Whether a provider's open event was a machine's (OPEN_RULES)."""
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    client_info = (esp_event.get("event-data") or {}).get("client-info") or {}
    if isinstance(client_info, dict) and client_info.get("bot"):
        return True  # Mailgun's own verdict: "apple", "gmail", "generic"
    agent = (event.user_agent or "").strip()
    lowered = agent.lower()
    return (
        not agent
        or agent == APPLE_PROXY_AGENT
        or any(name in lowered for name in SCANNER_AGENTS + PREFETCH_AGENTS)
    )


def open_record(*, mailing_id: int, machine: bool) -> None:
    counter = "opens_machines" if machine else "opens_people"
    Mailing.objects.filter(pk=mailing_id).update(**{counter: F(counter) + 1})
    MailingHour.objects.record(mailing_id=mailing_id, at=timezone.now(), **{counter: 1})
