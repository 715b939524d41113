"""Opens and clicks, honestly counted: people and machines apart, per mailing and
per link, and per reader only for readers who agreed to it (with
NEWSLETTER_PER_READER_ENGAGEMENT on).

Links in a mailing's HTML go through the site's own signed redirect (/r/<token>/),
whose token names only the link (a Link row: one per distinct URL per mailing).
The author may later send a broken link somewhere else (link_fix): the redirect
follows Link.target.
A click is a machine's when any of these holds (CLICK_RULES says so to the author):
- it is a HEAD request (a browser following a link asks with GET);
- it comes within MACHINE_SECONDS_AFTER_SEND of its email going out: of its batch
  being claimed and handed over (the link names the batch), or of the mailing
  starting to go out where the link names none (an email sent before links did);
- its user agent is empty or a known link scanner's (SCANNER_AGENTS);
- it follows the hidden link, which no person can see or hear;
- the same message "clicked" another link within BURST_SECONDS, or the hidden link
  within TRAP_SECONDS: the earlier clicks it counted as people become machines.
The same message following the same link again within BURST_SECONDS (a person's
double click) is not counted again: it is the one click.

The redirect only keeps each click, in a list in Redis; beat judges and counts
them into the Link rows every minute (click_counts_flush, clicks_judge;
docs/engagement.md says how none is lost or doubled). Without Redis a click is
judged and counted at once.

No record is kept of who clicked, unless the link carries a consenting reader's
signed part (reader_part_add). "The same message" is told by the mailing, the
client's address and its user agent: a click is kept with a hash of the two until
the next flush, and the flush remembers each client's last clicks for
TRAP_SECONDS (two people behind one office gateway, with the same browser,
clicking the same email within two seconds, count as one scanner).

Opens come from the provider's tracking events (webhooks.py); OPEN_RULES says which
are machines.
"""

import contextlib
import functools
import hashlib
import html
import json
import pickle
import re
import uuid
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import redis
from anymail.signals import AnymailTrackingEvent, EventType
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core import signing
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.mail.message import SafeMIMEText
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.urls import reverse
from django.utils import timezone

from posts.models import Post
from posts.validators import ROW_IDS, is_row_id

from .models import (
    Batch,
    ClickCountBatch,
    Delivery,
    Engagement,
    Link,
    Mailing,
    MailingHour,
    Subscriber,
)

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
    f"{TRAP_SECONDS} seconds. The same link followed again within {BURST_SECONDS} "
    "seconds (a double click) is the one click, counted once. Every other click "
    "counts as a person's. Clicks are "
    "counted by the site's own redirect, not by the email provider, and only in "
    "the HTML part of the email, and added to these figures every minute: the "
    "last minute's clicks are not shown yet. No record is kept of who clicked, "
    "except, when the editor turned it on, for readers who agreed to it."
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

# What the mailing's page and the post's report show for opens nobody counted.
OPENS_NOT_COUNTED = "not counted: open tracking is off"


def opens_counted(mailing: Mailing | None) -> bool:
    """Whether the mailing's opens were counted: open tracking is on, or was
    when the opens it holds came. Otherwise its zeros are no figure."""
    return settings.NEWSLETTER_TRACK_OPENS or bool(
        mailing and (mailing.opens_people or mailing.opens_machines)
    )


def click_token(link_id: int, batch_id: int = 0) -> str:
    """The redirect's token for a link, naming the batch whose email carries it
    when there is one: a click is timed from when its own batch went."""
    value = signing.b62_encode(link_id)
    if batch_id:
        value += "." + signing.b62_encode(batch_id)
    return signing.Signer(salt=_SALT).sign(value)


@dataclass(frozen=True)
class ClickTarget:
    """What the redirect needs of a Link, held in the cache so that a click reads
    no row (link_forget drops it when the link changes)."""

    link_id: int
    mailing_id: int
    url: str  # as the email has it
    target: str  # where the redirect goes (Link.target: the fixed address, if any)
    hidden: bool
    mailing_created_at: datetime
    # When the author last fixed where the link goes (link_fix), for the flush:
    # a click before it went where the link went before. Last, with a default,
    # so that what an older release held reads the same.
    fixed_at: datetime | None = None

    def led_somewhere(self, click: "Click") -> bool:
        """Whether the click was taken to a page, not answered 404 (the email's
        address is no web address, and the link was not fixed yet). A fix
        always goes to a web address (LinkFixForm)."""
        if is_web_address(self.url):
            return True
        return self.fixed_at is not None and click.at >= self.fixed_at.timestamp()


# A send's burst of clicks reads each link's row once in this long. Also the most
# a click racing a fix (it read the row before the fix, and cached it after
# link_forget) can keep sending readers to the old address.
LINK_CACHE_SECONDS = 300


def _link_key(link_id: int) -> str:
    return f"newsletter:link:{link_id}"


# A row id as b62_encode writes it (click_token, _reader_part): 11 digits reach
# beyond a bigint, which is_row_id refuses.
_B62_ROW_ID = re.compile(r"[0-9A-Za-z]{1,11}")


def _signed_row_id(token: str, *, salt: str) -> int | None:
    """The row id a signed link part names, or None: forged, or signed but of
    another shape."""
    try:
        value = signing.Signer(salt=salt).unsign(token)
    except signing.BadSignature:
        return None
    return _row_id(value)


def _row_id(value: str) -> int | None:
    """The row id a signed value writes in base 62, or None for another shape
    (b62_decode raises IndexError for an empty value, ValueError for others, and
    reads "-" as 0), which must name nothing, as a forged one does."""
    if not _B62_ROW_ID.fullmatch(value):
        return None
    row_id = signing.b62_decode(value)
    return row_id if is_row_id(row_id) else None


def _link_id(token: str) -> tuple[int, int] | None:
    """The link and the batch (0: none named) a redirect token names, or None."""
    try:
        value = signing.Signer(salt=_SALT).unsign(token)
    except signing.BadSignature:
        return None
    link, dot, batch = value.partition(".")
    link_id = _row_id(link)
    batch_id = _row_id(batch) if dot else 0
    if link_id is None or batch_id is None:
        return None
    return link_id, batch_id


def link_for_token(token: str) -> ClickTarget | None:
    """The link a redirect token names, or None for a forged or unknown one."""
    ids = _link_id(token)
    if ids is None:
        return None
    link_id = ids[0]
    held = _cached([_link_key(link_id)]).get(_link_key(link_id))
    return _held_link(held) or _link_read(link_id)


def _held_link(held) -> ClickTarget | None:
    """The link as the cache holds it (its fields in order), or None: not held,
    or held by a release whose ClickTarget had other fields (read the row again)."""
    try:
        return ClickTarget(*held)
    except TypeError:
        return None


def _link_read(link_id: int) -> ClickTarget | None:
    """The link's row, held in the cache for the clicks that follow."""
    target = _links_read({link_id}).get(link_id)
    if target is None or not is_web_address(target.target):
        return None
    with contextlib.suppress(Exception):
        cache.set(_link_key(link_id), astuple(target), timeout=LINK_CACHE_SECONDS)
    return target


def _cached(keys: list[str]) -> dict:
    """The keys' values in the cache, in one round trip; none when the cache is
    unreachable, so that the reader is still taken to the link."""
    try:
        return cache.get_many(keys)
    except Exception:  # any cache backend's connection error
        return {}


def link_forget(link_id: int) -> None:
    """Drop what the redirect holds of a link: call it whenever where a link goes
    changes (link_fix), so that the next click reads the row again."""
    cache.delete(_link_key(link_id))


def is_web_address(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_click_redirect(url: str) -> bool:
    """Whether a web address (is_web_address) opens the emails' own redirect
    (/r/…) on this site: whatever the case of its host, whatever its scheme (an
    https site sends http on to https), its path as the server decodes it."""
    redirect = urlsplit(settings.SITE_URL + reverse("newsletter:click", args=["x"]))
    parts = urlsplit(url)
    return parts.hostname == redirect.hostname and unquote(parts.path).startswith(
        redirect.path.removesuffix("x/")
    )


def link_fix(*, post: Post, url: str, target: str, user: AbstractBaseUser) -> int:
    """Send every later click on the link to `url` in any email that carried the
    post to `target` instead; how many mailings' links changed.

    The emails cannot change, so their Link rows keep the address they have as
    `url` (and with it their counts and the report's grouping): the redirect goes
    to the fixed one. Emails sent later carry the post as it is then.
    """
    links = Link.objects.of_post(post).filter(url=url, hidden=False)
    fixed = list(links.values_list("pk", flat=True))
    changed = Link.objects.filter(pk__in=fixed).update(
        fixed_url=target, fixed_at=timezone.now(), fixed_by=user
    )
    for link_id in fixed:  # the redirect reads the rows again
        link_forget(link_id)
        # And again once committed, in case a click cached a row read before.
        transaction.on_commit(functools.partial(link_forget, link_id))
    return changed


# The reader's own links (leaving, preferences) are not counted: they name the
# reader, and following them is not reading.
_PERSONAL_PATHS = ("/unsubscribe/", "/preferences/", "/subscribe/confirm/")
# Within Link.url and PostgreSQL's limit for a unique index entry.
MAX_URL_BYTES = 2000
_HREF = re.compile(r'(<a\b[^>]*?\shref=")(https?://[^"]+)(")', re.IGNORECASE)
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def _counted(url: str) -> bool:
    if len(url.encode()) > MAX_URL_BYTES:
        return False  # longer than a Link holds: left as it is, uncounted
    if not url.startswith(settings.SITE_URL + "/"):
        return True
    path = url.removeprefix(settings.SITE_URL)
    return not path.startswith(_PERSONAL_PATHS)


# What the URL standard's parser drops from an href before reading it: tabs and
# newlines anywhere, controls and spaces at either end.
_DROPPED_INSIDE = str.maketrans("", "", "\t\n\r")
_DROPPED_AT_ENDS = "".join(map(chr, range(0x21)))


def _href_address(href: str) -> str:
    """The address a browser follows for an href as the HTML has it: the
    redirect goes where the post's page's link goes, even for a link pasted with
    a trailing space or wrapped onto two lines (kept, they sent readers to
    ".../%20")."""
    return html.unescape(href).translate(_DROPPED_INSIDE).strip(_DROPPED_AT_ENDS)


def _trap() -> str:
    """Where the hidden link goes: the front page."""
    return settings.SITE_URL + "/"


def _through_redirect(body: str, redirect: Callable[[str, bool], str]) -> str:
    """The HTML body with each counted link going to its `redirect` (of the url
    and whether it is the hidden link), and the hidden link first in the body."""

    def through(match: re.Match) -> str:
        url = _href_address(match.group(2))
        if not _counted(url):
            return match.group(0)
        return match.group(1) + redirect(url, False) + match.group(3)

    hidden = (
        f'<a href="{redirect(_trap(), True)}" aria-hidden="true" '
        'tabindex="-1" style="display:none;font-size:0;max-height:0;'
        'overflow:hidden;mso-hide:all"></a>'
    )
    return _BODY.sub(lambda m: m.group(0) + hidden, _HREF.sub(through, body), count=1)


def readers_html_size(body: str) -> int:
    """The bytes of the HTML body in the longest copy a mailing sends: its links
    through the redirect (with the longest token) and, with per-reader engagement
    on, a reader's part after each, as if every reader had agreed. Measured before
    LinkTracker makes any Link row, so that the author's preview, the admin's
    check and the mailing decide alike, and every reader gets the same email."""
    longest = ROW_IDS[-1]
    redirect = settings.SITE_URL + reverse(
        "newsletter:click", args=[click_token(longest, longest)]
    )
    body = _through_redirect(body, lambda url, hidden: redirect)
    if settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        body = reader_slot_add(body, _reader_part(longest))
    return _size_as_sent(body)


def _size_as_sent(html: str) -> int:
    """The bytes of the HTML part as sent, which is what Gmail counts: encoded as
    Django encodes it, quoted-printable once a line passes 998 bytes (a long
    paragraph), where "=" is three bytes and a non-ASCII character up to nine,
    each line ending in CRLF."""
    encoded = SafeMIMEText(html, "html", "utf-8").get_payload()
    return len(encoded.encode(errors="surrogateescape")) + encoded.count("\n")


class LinkTracker:
    """Rewrites a mailing's links through the redirect, making one Link row per
    distinct URL the first time it is seen (kept here for the rest of the batch)."""

    def __init__(self, mailing_id: int) -> None:
        self.mailing_id = mailing_id
        self._redirects: dict[tuple[str, bool], str] = {}
        self._link_ids: dict[str, int] = {}  # by redirect
        self._batch_redirects: dict[int, dict[str, str]] = {}  # batch_marked's
        self._slot = settings.SITE_URL + reverse("newsletter:click", args=["--slot--"])

    def tracked(self, body: str) -> str:
        """The HTML body with its links through the redirect, and the hidden link
        first in the body."""
        found = {_href_address(m.group(2)) for m in _HREF.finditer(body)}
        self._make_links(
            {(url, False) for url in found if _counted(url)} | {(_trap(), True)}
        )
        return _through_redirect(body, lambda url, hidden: self._redirects[url, hidden])

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
            redirect = self._slot.replace("--slot--", token)
            self._redirects[url, hidden] = redirect
            self._link_ids[redirect] = link_id

    def batch_marked(self, html: str, batch_id: int) -> str:
        """The tracked HTML with each redirect naming the batch too, so that a
        click is timed from when its own batch went (clicks_judge): a mailing's
        batches may go out over minutes. Once a batch: no row read."""
        marked = self._batch_redirects.get(batch_id, {})
        if len(marked) < len(self._link_ids):  # a digest's parts find more links
            marked = {
                redirect: self._slot.replace("--slot--", click_token(link_id, batch_id))
                for redirect, link_id in self._link_ids.items()
            }
            # Only the batch at hand's: a worker's tracker outlives its batches.
            self._batch_redirects = {batch_id: marked}
        return _counted_links(settings.SITE_URL).sub(
            lambda m: marked.get(m.group(0), m.group(0)), html
        )


def click_signs(*, head: bool, user_agent: str) -> bool:
    """Whether the request alone shows a machine: a HEAD request, no browser, or a
    known link scanner's."""
    agent = user_agent.strip().lower()
    return head or not agent or any(scanner in agent for scanner in SCANNER_AGENTS)


@dataclass
class Click:
    """A click as the redirect keeps it until the flush judges it: which link,
    a hash of the client (its address and user agent), when, and what the request
    itself showed; no address, no browser. `reader` is the signed part of a
    consenting reader's link, or ""."""

    link_id: int
    client: str
    at: float  # seconds since 1970
    signs: bool  # click_signs
    reader: str = ""
    machine: bool = False  # judged (clicks_judge)
    # The batch whose email carried the link (0: the link names none). Last, so
    # that what an older release kept reads the same.
    batch: int = 0
    # Judged the same click again (clicks_judge): counted nowhere.
    repeat: bool = False

    def kept(self) -> str:
        return json.dumps(
            [self.link_id, self.client, self.at, self.signs, self.reader, self.batch]
        )

    @classmethod
    def from_kept(cls, kept: bytes | str) -> "Click":
        link_id, client, at, signs, reader, *batch = json.loads(kept)
        return cls(link_id, client, at, signs, reader, batch=batch[0] if batch else 0)


def click_record(
    *,
    token: str,
    head: bool,
    user_agent: str,
    client: str,
    now: datetime,
    reader: str = "",
) -> ClickTarget | None:
    """Keep a click on the link a token names, to be judged and counted by the
    flush, and return the link (the reader goes to its target); None for a forged
    or unknown token.

    With Redis, one round trip: the link is read from the cache and the click
    appended to the list the flush takes; nothing is judged here, so that a burst
    of clicks after a send costs the site as little as a static file. Without
    Redis (the embedded default, or Redis not answering) the click is judged and
    counted in the Link rows at once.
    """
    ids = _link_id(token)
    if ids is None:
        return None
    link_id, batch_id = ids
    click = Click(
        link_id=link_id,
        client=hashlib.sha256(f"{client}|{user_agent}".encode()).hexdigest(),
        at=now.timestamp(),
        signs=click_signs(head=head, user_agent=user_agent),
        # Kept until the flush checks its signature: only what could be one, so
        # nobody fills the broker's Redis with kilobytes of query string a click.
        reader=reader if READER_PART.fullmatch(reader) else "",
        batch=batch_id,
    )
    held, kept = _click_keep(click)
    link = _held_link(held) or _link_read(link_id)
    if link is not None and not kept:
        clicks_add([click])
    return link


def _click_keep(click: Click) -> tuple[object, bool]:
    """The link as the cache holds it, and whether the click was kept for the
    flush: in one round trip to Redis."""
    key = _link_key(click.link_id)
    client = _redis()
    if client is None:
        return _cached([key]).get(key), False
    try:
        held = _get_and_push(
            client.connection_pool,
            cache.make_key(key),
            cache.make_key(_CLICKS),
            click.kept(),
        )
    except _Unanswered:
        # Redis was sent the click, and most likely kept it: its answer was lost
        # on the way back (a timeout, a dropped connection), and the flush will
        # count what it kept. Counted here as well, such a click was counted
        # twice; left to the flush, one Redis never ran is lost. One click
        # missing is the smaller error in a report the author trusts. The link is
        # read from its row.
        return None, True
    except Exception:  # not sent, or refused by Redis: counted at once instead
        return _cached([key]).get(key), False
    # Pickled, as Django's Redis cache stores values; one that will not load is
    # read from its row, as _cached does.
    with contextlib.suppress(Exception):
        return (pickle.loads(held) if held else None), True  # noqa: S301
    return None, True


class _Unanswered(Exception):
    """Redis was sent the commands and no answer came back: whether it ran them
    nobody can tell."""


def _get_and_push(pool, key: str, name: str, value: str) -> bytes | None:
    """GET `key` and RPUSH `value` onto list `name`, both sent at once on one of
    the pool's connections: what a pipeline sends, without its bookkeeping, which
    cost a click more CPU than the round trip (73 µs a click; 52 this way).
    Raises _Unanswered once they were sent; any other error means nothing was
    pushed."""
    connection = pool.get_connection()
    try:
        connection.send_packed_command(
            connection.pack_commands([("GET", key), ("RPUSH", name, value)])
        )
        try:
            held = connection.read_response()
            connection.read_response()
        except redis.ResponseError:
            # Redis answered with an error: it refused the push (a full memory,
            # a read-only replica, a list of another type), or everything
            # (still loading).
            raise
        except Exception as error:
            raise _Unanswered from error
    except BaseException:
        # A reply left unread would answer the next command sent on it.
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    return held


def clicks_judge(
    earlier: list[Click],
    clicks: list[Click],
    links: dict[int, ClickTarget],
    went: dict[int, datetime] | None = None,
) -> list[Click]:
    """Judge each click a person's or a machine's (its `machine`), in the order
    they came, by CLICK_RULES; `went` is when each batch the clicks name was
    handed over (batches_went). `earlier` are clicks judged and counted before,
    remembered to judge these: a machine's click of the same message may move them
    to machines too. Clicks on links not in `links` (deleted since) are passed
    over. Returns the clicks to remember for the next judgement: each client's
    last few within TRAP_SECONDS of the newest click."""
    counted = {id(click) for click in earlier}
    recent: dict[str, list[Click]] = {}  # by client
    for click in sorted([*earlier, *clicks], key=lambda click: click.at):
        link = links.get(click.link_id)
        if link is None:
            continue
        mine = [
            c for c in recent.get(click.client, []) if click.at - c.at < TRAP_SECONDS
        ]
        recent[click.client] = [*mine, click][-RECENT_CLICKS_KEPT:]
        if id(click) in counted:
            continue
        message = [c for c in mine if links[c.link_id].mailing_id == link.mailing_id]
        # A double click (the browser asks twice) is the one click a person made:
        # taken for a burst, it made both a machine's.
        click.repeat = any(
            c.link_id == click.link_id and click.at - c.at < BURST_SECONDS
            for c in message
        )
        if click.repeat:
            continue
        sent = (went or {}).get(click.batch, link.mailing_created_at)
        click.machine = (
            click.signs
            or link.hidden
            or click.at - sent.timestamp() < MACHINE_SECONDS_AFTER_SEND
            or any(
                click.at - c.at < BURST_SECONDS or links[c.link_id].hidden
                for c in message
            )
        )
        if click.machine:
            for c in message:
                if not c.repeat:  # counted nowhere, so never moved
                    c.machine = True
    newest = max((click.at for click in clicks), default=0)
    return [
        click
        for mine in recent.values()
        for click in mine
        if newest - click.at < TRAP_SECONDS
    ]


def _hour(moment: float) -> int:
    """The hour a click was in (hours since 1970, UTC): counts carry it, for the
    report's counts by the hour."""
    return int(moment // 3600)


# With Redis, the redirect appends each click to the list _CLICKS, and beat's
# flush_click_counts judges and counts them every minute.
_CLICKS = "newsletter:clicks:kept"
# A flush first renames _CLICKS to a batch key of its own (one atomic step: clicks
# after it go into a fresh list), and deletes the batch once counted.
_BATCH = "newsletter:clicks:taken:"
# The clicks a judgement remembers for the next (clicks_judge).
_RECENT = "newsletter:clicks:recent"
# Batch markers (ClickCountBatch) are needed only until their batch is deleted
# from Redis, minutes later even after a worker died; a day is ample.
BATCH_MARKERS_KEPT = timedelta(days=1)


def _redis():
    """The Redis client behind the cache, or None without Redis (the embedded
    default's local-memory cache is one process's own: beat could not see it)."""
    default = caches["default"]
    if not isinstance(default, RedisCache):
        return None
    return default._cache.get_client(write=True)


def click_counts_flush() -> int:
    """Judge and count the clicks kept in Redis, into the Link rows; returns how
    many were counted.

    No click is lost or counted twice: the rename takes the clicks atomically
    (clicks after it start a new list), the batch stays in Redis until its counts
    are committed, and its ClickCountBatch row, written in the same transaction,
    makes a second flush (overlapping, or after a worker died between the commit
    and the delete) skip it.
    """
    client = _redis()
    if client is None:
        return 0  # counted at once
    name = uuid.uuid4().hex
    with contextlib.suppress(redis.ResponseError):  # no such key: no click kept
        client.rename(cache.make_key(_CLICKS), cache.make_key(_BATCH + name))
    counted = 0
    # This flush's batch, and any a dead worker left behind.
    for key in client.scan_iter(match=cache.make_key(_BATCH) + "*"):
        clicks = [Click.from_kept(kept) for kept in client.lrange(key, 0, -1)]
        counted += clicks_add(clicks, batch=key.decode().rsplit(":", 1)[1])
        client.delete(key)
    ClickCountBatch.objects.filter(
        added_at__lt=timezone.now() - BATCH_MARKERS_KEPT
    ).delete()
    return counted


def clicks_add(clicks: list[Click], *, batch: str = "") -> int:
    """Judge the clicks and add them to their Link rows and mailings' hours (and
    consenting readers' own); returns how many were counted. A `batch` (taken
    from Redis) is added once only: a second call with it adds nothing."""
    with _judging_alone():
        return _clicks_add(clicks, batch=batch)


@contextlib.contextmanager
def _judging_alone():
    """Held from reading the last judgement's clicks until this one's are
    remembered: two flushes at once (or a click counted at once beside one) read
    the same memory, and each moved its clicks to machines, so twice. A session
    lock, as the memory is written after the commit; the connection's end
    releases it. None on SQLite: the embedded default's memory is each
    process's own, and it has no Redis to flush from."""
    if connection.vendor != "postgresql":
        yield
        return
    key = cache.make_key(_RECENT)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


def _clicks_add(clicks: list[Click], *, batch: str) -> int:
    earlier = _recent_clicks()
    links = _links_read({click.link_id for click in [*earlier, *clicks]})
    # With Redis, the redirect keeps a click before it reads the link: one it
    # then answered 404 took the reader nowhere, and is no click.
    clicks = [
        click
        for click in clicks
        if click.link_id not in links or links[click.link_id].led_somewhere(click)
    ]
    was_machine = [click.machine for click in earlier]
    went = batches_went(clicks, links)
    remembered = clicks_judge(earlier, clicks, links, went)
    counted = [click for click in clicks if click.link_id in links and not click.repeat]
    moved = [
        click
        for click, was in zip(earlier, was_machine, strict=True)
        if click.machine and not was and click.link_id in links
    ]
    changes = [
        (click.link_id, _hour(click.at), int(not click.machine), int(click.machine))
        for click in counted
    ] + [(click.link_id, _hour(click.at), -1, 1) for click in moved]
    with transaction.atomic():
        if batch:
            # Only this is "added already": any other refusal raises, and the
            # batch stays in Redis for the next flush.
            if not ClickCountBatch.objects.get_or_create(batch=batch)[1]:
                return 0
        else:
            _count_without_waiting_for_the_disk()
        _links_add(changes)
        _readers_clicks_add(counted, moved, links)
    # Unreachable, the cache only forgets: the next clicks are judged without these.
    with contextlib.suppress(Exception):
        cache.set(_RECENT, [astuple(click) for click in remembered], timeout=600)
    return len(counted)


def _recent_clicks() -> list[Click]:
    """The clicks the last judgement remembered (none if the cache lost them)."""
    try:
        return [Click(*kept) for kept in cache.get(_RECENT) or []]
    except Exception:  # unreachable, or kept by a release with other fields
        return []


def _links_read(link_ids: set[int]) -> dict[int, ClickTarget]:
    return {
        link.pk: ClickTarget(
            link_id=link.pk,
            mailing_id=link.mailing_id,
            url=link.url,
            target=link.target,
            hidden=link.hidden,
            mailing_created_at=link.mailing.created_at,
            fixed_at=link.fixed_at,
        )
        for link in Link.objects.select_related("mailing").filter(pk__in=link_ids)
    }


def batches_went(
    clicks: list[Click], links: dict[int, ClickTarget]
) -> dict[int, datetime]:
    """When each batch the clicks name was last claimed, and so its email rendered
    and handed over: what its readers' clicks are timed from. One query, and none
    for clicks that name no batch (an email sent before links named theirs)."""
    wanted = {click.batch for click in clicks if click.batch}
    if not wanted:
        return {}
    mailings = {link.mailing_id for link in links.values()}
    return dict(
        Batch.objects.filter(
            pk__in=wanted, mailing_id__in=mailings, claimed_at__isnull=False
        ).values_list("pk", "claimed_at")
    )


def _links_add(changes: list[tuple[int, int, int, int]]) -> None:
    """Add click counts to the Link rows (by link, whatever the hour)."""
    totals: dict[int, list[int]] = {}
    for link_id, _hour, people, machines in changes:
        total = totals.setdefault(link_id, [0, 0])
        total[0] += people
        total[1] += machines
    with transaction.atomic():
        MailingHour.objects.clicks_add(changes)  # the report's first 72 hours
        for link_id, (people, machines) in sorted(totals.items()):
            # Never below zero: a click moved to machines whose own count was lost.
            Link.objects.filter(pk=link_id).update(
                people=Greatest(F("people") + people, 0),
                machines=F("machines") + machines,
            )


def _count_without_waiting_for_the_disk() -> None:
    """A click counted without Redis may be lost in a database crash, and is not
    worth the wait for PostgreSQL to flush its log to disk at every commit."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def open_by_machine(event: AnymailTrackingEvent) -> bool:
    """Whether a provider's open event was a machine's (OPEN_RULES)."""
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    # Only Mailgun's events nest it there: another's "event-data" may be anything.
    event_data = esp_event.get("event-data")
    client_info = event_data.get("client-info") if isinstance(event_data, dict) else {}
    if isinstance(client_info, dict) and client_info.get("bot"):
        return True  # Mailgun's own verdict: "apple", "gmail", "generic"
    agent = (event.user_agent or "").strip()
    lowered = agent.lower()
    return (
        not agent
        or agent == APPLE_PROXY_AGENT
        or any(name in lowered for name in SCANNER_AGENTS + PREFETCH_AGENTS)
    )


def open_record(*, delivery: Delivery, machine: bool, at: datetime) -> None:
    """Count an open on its mailing, and keep it as the reader's only if they
    agreed (reader_allows)."""
    counter = "opens_machines" if machine else "opens_people"
    Mailing.objects.filter(pk=delivery.mailing_id).update(**{counter: F(counter) + 1})
    MailingHour.objects.record(mailing_id=delivery.mailing_id, at=at, **{counter: 1})
    if reader_allows(delivery.subscriber):
        Engagement.objects.create(
            subscriber_id=delivery.subscriber_id,
            mailing_id=delivery.mailing_id,
            kind=Engagement.Kind.OPEN,
            at=at,
            machine=machine,
        )


# Per reader -------------------------------------------------------------------

_READER_SALT = "newsletter.engagement.reader"

# The provider's events that are the reader's own history, not their message's:
# kept naming them only while they agree (reader_allows).
READER_EVENTS = (EventType.OPENED, EventType.CLICKED)


def reader_allows(subscriber: Subscriber) -> bool:
    """Whether the reader's own opens and clicks may be kept: the author turned
    per-reader engagement on, and the reader agreed to it and has not withdrawn."""
    return (
        settings.NEWSLETTER_PER_READER_ENGAGEMENT
        and subscriber.engagement_agreed_at is not None
    )


def reader_part_add(
    html: str, *, subscriber_id: int, agreed: bool | None = None
) -> str:
    """The email's HTML with the reader's signed part (?reader=…) on each counted
    link when they agreed to per-reader engagement, so that the redirect can keep
    their clicks; anyone else's unchanged (and, with the setting off, unread).
    `agreed` is the reader's answer when the caller has read it already (a digest
    batch reads its readers in one query); otherwise it is read here."""
    if not settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        return html
    if agreed is None:
        agreed = Subscriber.objects.filter(
            pk=subscriber_id, engagement_agreed_at__isnull=False
        ).exists()
    if not agreed:
        return html
    return reader_slot_add(html, _reader_part(subscriber_id))


def reader_parts(subscriber_ids: list[int]) -> dict[int, str]:
    """The signed part (?reader=…) of each of these readers who agreed to
    per-reader engagement, by id, in one query; none with the setting off."""
    if not settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        return {}
    agreeing = Subscriber.objects.filter(
        pk__in=subscriber_ids, engagement_agreed_at__isnull=False
    ).values_list("pk", flat=True)
    return {pk: _reader_part(pk) for pk in agreeing}


def reader_slot_add(html: str, slot: str) -> str:
    """The HTML with `slot` right after each counted link: a reader's part, or a
    merge field the provider fills with each reader's (reader_parts)."""
    return _counted_links(settings.SITE_URL).sub(lambda m: m.group(0) + slot, html)


# A reader's part as _reader_part signs it: their id in base 62, then the
# signature (base64 of an HMAC-SHA256).
READER_PART = re.compile(r"[0-9A-Za-z]{1,11}:[A-Za-z0-9_-]{43}")


def _reader_part(subscriber_id: int) -> str:
    reader = signing.Signer(salt=_READER_SALT).sign(signing.b62_encode(subscriber_id))
    return f"?reader={reader}"


@functools.cache
def _counted_links(site_url: str) -> re.Pattern:
    """The redirect's links in an email's HTML (a digest batch asks 500 times)."""
    return re.compile(
        re.escape(site_url + reverse("newsletter:click", args=["x"])[:-2])
        + r'[^"/?]+/(?=")'
    )


def _readers_clicks_add(
    clicks: list[Click], moved: list[Click], links: dict[int, ClickTarget]
) -> None:
    """Keep each click as its reader's, if its part is genuine and they still agree
    (withdrawn since the email went out, or erased: nothing is kept); and mark as
    machines' the readers' clicks kept before that are `moved` to machines now."""
    if not settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        return
    readers = {}
    for click in [*clicks, *moved]:
        reader = _signed_row_id(click.reader, salt=_READER_SALT)
        if reader is not None:
            readers[id(click)] = reader
    if not readers:
        return
    # Held until the clicks are committed: an erasure under way is waited for,
    # and its reader is no one's then. Read without it, a click kept for a reader
    # deleted meanwhile failed the commit, and every click counted with it was
    # lost. In id order, as two flushes may hold the same readers.
    agreeing = set(
        Subscriber.objects.select_for_update(no_key=True)
        .filter(pk__in=readers.values(), engagement_agreed_at__isnull=False)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    Engagement.objects.bulk_create(
        Engagement(
            subscriber_id=readers[id(click)],
            mailing_id=links[click.link_id].mailing_id,
            link_id=click.link_id,
            kind=Engagement.Kind.CLICK,
            at=datetime.fromtimestamp(click.at, UTC),
            machine=click.machine,
        )
        for click in clicks
        if readers.get(id(click)) in agreeing
    )
    for click in moved:
        if id(click) in readers:
            Engagement.objects.filter(
                subscriber_id=readers[id(click)],
                link_id=click.link_id,
                kind=Engagement.Kind.CLICK,
                at=datetime.fromtimestamp(click.at, UTC),
            ).update(machine=True)
