"""What is particular to digests, the daily and weekly mailings: when a round is
due and for whom, which posts each reader's digest holds, and how it is rendered.

Each reader chooses the hour (and, weekly, the day) in their own time zone; the
site's DigestSettings stand in for readers who have not. The beat starts at most
one round per frequency and slot (a quarter hour, UTC), for the readers whose
local time has come by then and who have had no round of that frequency in their
period (their local day, or the last seven); planning records the round on each
reader (Subscriber.last_daily_round_at), so nobody is in two rounds of a period,
whatever the clocks do or when the reader moves their hour.

Everything else (the round's one Mailing per slot, planning into batches, the
claim, retries, uncertain sends and their settling, the breaker and the budget) is
the delivery engine's (newsletter/delivery/), as for a post's announcement.
"""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import transaction
from django.db.models import Exists, F, IntegerField, OuterRef, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.safestring import mark_safe

from posts.models import Post, Sponsorship

from .emails import (
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    Encoded,
    ReaderLinks,
    RenderedEmail,
    build_bulk_message,
    build_message,
    filled,
    json_inner,
    list_headers,
    render_email,
    sponsor_lines,
)
from .engagement import LinkTracker, reader_part_add
from .models import (
    DEFAULT_TIME_ZONE,
    Batch,
    Delivery,
    DigestSettings,
    Mailing,
    Subscriber,
    SubscriberQuerySet,
    SubscriberTopic,
    day_of,
    zone_of,
)
from .templatetags.bidi import isolated
from .tokens import Purpose

Frequency = SubscriberTopic.Frequency

# How far back a round looks for posts; the ledger keeps any post from coming
# twice. The same for daily rounds as for weekly: a reader who turns from weekly
# to daily has the posts that waited for their weekly digest, up to 13 days old
# when they had moved their day, and the first daily round holds them.
LOOKBACK = timedelta(days=15)

# Readers per planning step (one task, one transaction), as for a post's send
# (delivery.PLANNING_PAGE_SIZE): their ids and the page's batch boundaries reach
# Python, their posts stay in the database.
READERS_PER_PAGE = 20_000


# Rounds start on the beat's quarter hours, so that readers in zones offset by
# half an hour (India, Newfoundland) get theirs within the quarter too.
SLOT_MINUTES = 15

# The reader's period for each frequency, in their own days: a round goes to
# those with none since the start of it.
PERIOD_DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7}
LAST_ROUND = {
    Frequency.DAILY: "last_daily_round_at",
    Frequency.WEEKLY: "last_weekly_round_at",
}


def slot_of(now: datetime) -> datetime:
    """The quarter hour (UTC) that a round started at `now` stands for."""
    utc = now.astimezone(UTC)
    return utc.replace(
        minute=utc.minute - utc.minute % SLOT_MINUTES, second=0, microsecond=0
    )


def period_of(slot: datetime) -> date:
    """The day a round stands for, for the author: the slot's day in site time."""
    return timezone.localtime(slot).date()


def rounds_due(*, slot: datetime) -> list[str]:
    """The frequencies whose round for this slot may start: not started yet, and
    some reader's time has come."""
    started = set(
        Mailing.objects.filter(kind=Mailing.Kind.DIGEST, slot=slot).values_list(
            "frequency", flat=True
        )
    )
    return [
        frequency
        for frequency in (Frequency.DAILY, Frequency.WEEKLY)
        if frequency not in started and audience(frequency, slot=slot).exists()
    ]


def audience(frequency: str, *, slot: datetime) -> SubscriberQuerySet:
    """Who the round of this slot is for: confirmed readers following anything at
    this frequency, or owed a last digest (Subscriber.digest_owed_until), whose
    chosen hour (and, weekly, day) has come in their own time zone, with no round
    of this frequency yet in their period. Only those with posts waiting for them
    get a digest.

    "Has come" rather than "is now": when the clocks go forward, 01:00 never
    happens in London and its readers are due at 02:00; when they go back, 01:00
    happens twice and the reader's last round keeps the second one empty."""
    return _due(frequency, slot=slot).filter(
        _following_at(frequency) | Q(digest_owed_until__isnull=False)
    )


def _following_at(frequency: str) -> Exists:
    return Exists(
        SubscriberTopic.objects.filter(subscriber=OuterRef("pk"), frequency=frequency)
    )


def _due(frequency: str, *, slot: datetime) -> SubscriberQuerySet:
    """Confirmed readers whose hour for this frequency's round has come, with no
    round of it yet in their period (audience), whatever they follow."""
    # Every reader's zone, not only these readers': a zone none of them is in adds
    # a condition that matches no one, and reading the zones of these readers
    # cost a join with their topics for each of a round's statements (~0.5 s
    # each at 100,000 readers; the whole table's are read in milliseconds).
    zones = Subscriber.objects.order_by().values_list("time_zone", flat=True)
    zones = zones.distinct()
    site = DigestSettings.load()
    last_round = LAST_ROUND[frequency]
    due = Q(pk__in=[])
    for name in zones:
        zone = zone_of(name)
        local = slot.astimezone(zone)
        first_day = local.date() - timedelta(days=PERIOD_DAYS[frequency] - 1)
        period_start = datetime.combine(first_day, time(), tzinfo=zone)
        in_zone = Q(time_zone=name, hour__lte=local.hour) & (
            Q(**{f"{last_round}__isnull": True})
            | Q(**{f"{last_round}__lt": period_start})
        )
        if frequency == Frequency.WEEKLY:
            in_zone &= Q(weekday=local.weekday())
        due |= in_zone
    return (
        Subscriber.objects.confirmed()
        .alias(
            hour=Coalesce("digest_hour", Value(site.hour), output_field=IntegerField()),
            weekday=Coalesce(
                "digest_weekday", Value(site.weekday), output_field=IntegerField()
            ),
        )
        .filter(due)
    )


def readers_mark_round(*, mailing: Mailing, subscriber_ids: list[int]) -> None:
    """Record the round on the readers it was planned for, posts or none. Of
    those owed a last digest, it settles the debt of the ones it found owed
    nothing (posts_held), unless a digest of theirs is still on its way: one it
    planned is paid when it reaches them (delivery.ledger.record_outcomes). A
    reader who turned to instant after the slot is owed the posts since, in the
    next one."""
    readers = Subscriber.objects.filter(pk__in=subscriber_ids)
    readers.update(**{LAST_ROUND[mailing.frequency]: mailing.slot})
    digest_debts_settle(readers.filter(digest_owed_until__lte=mailing.slot))


def round_mark_unplanned(*, mailing: Mailing) -> None:
    """Record a round cancelled before it was planned to the end on the readers
    it had still to plan: the cancel stops their digest of this period too (the
    next quarter hour's round took them), and the posts come in their next one.
    Their debts stay: no round looked for what they are owed."""
    if mailing.kind != Mailing.Kind.DIGEST:
        return
    unplanned = audience(mailing.frequency, slot=mailing.slot).filter(
        pk__gt=mailing.planned_up_to
    )
    unplanned.update(**{LAST_ROUND[mailing.frequency]: mailing.slot})


def digest_debts_settle(readers: SubscriberQuerySet) -> None:
    """Clear what `readers` were owed (Subscriber.digest_owed_until), but for
    those with a digest still on its way (queued or uncertain): it may yet be
    skipped or fail, and the next round must then hold its posts, which it leaves
    out while that digest is on its way."""
    on_its_way = Delivery.objects.filter(
        subscriber=OuterRef("pk"),
        mailing__kind=Mailing.Kind.DIGEST,
        status__in=[Delivery.Status.QUEUED, Delivery.Status.UNCERTAIN],
    )
    readers.exclude(Exists(on_its_way)).update(digest_owed_until=None)


def post_withdraw_from_digests(*, post: Post) -> int:
    """Take an unpublished post (or one whose email the author unticked) out of
    the digests not yet sent, so that none links to a page that is gone, nor
    carries what the author stopped: queued ones, and uncertain ones, which the
    author may resend. A digest left holding nothing is skipped when its batch
    goes (batch_recipients). Their ledger then says what they hold: published
    again within the lookback, the post comes in the reader's next digest (a
    second time, for a reader whose uncertain digest had reached them). Not
    those of a batch being sent: its worker reads the posts on the site once a
    second, and some of its digests went, or will go within that second, with
    the post; it takes the post out of those it sends without it, before it
    sends them (digests_record_left_out). A round keeps listing it while any of its
    digests may have carried it, uncertain ones too, settled later or not:
    those emails may have arrived, and their clicks on it are the post's
    (Link.objects.of_post). Returns how many digests it left."""
    being_sent = Q(delivery__batch__status=Batch.Status.SENDING)
    carried = Delivery.posts.through.objects.filter(
        post=post,
        delivery__status__in=[Delivery.Status.QUEUED, Delivery.Status.UNCERTAIN],
    )
    with transaction.atomic():
        # Their batches locked: a worker's claim waits for this commit and then
        # reads its digests without the post (unlocked, it could read them as
        # they were, the post still on the site, and send it to readers whose
        # rows this then emptied). In order: two take-downs lock alike.
        waiting = Batch.objects.exclude(status=Batch.Status.SENDING).filter(
            Exists(carried.filter(delivery__batch=OuterRef("pk")))
        )
        list(waiting.select_for_update().order_by("pk").values_list("pk"))
        # A round lists it no more only when just its queued digests, none of
        # which has gone, held it.
        may_have_gone = Delivery.posts.through.objects.filter(
            post=post, delivery__mailing=OuterRef("mailing")
        ).filter(~Q(delivery__status=Delivery.Status.QUEUED) | being_sent)
        Mailing.digest_posts.through.objects.filter(post=post).exclude(
            Exists(may_have_gone)
        ).delete()
        return carried.exclude(being_sent).delete()[0]


def digests_record_left_out(*, left_out: dict[int, set[int]]) -> None:
    """Take each post out of the digests a batch's worker is about to send
    without it (post id -> delivery ids): it was off the site as they went
    (DigestEmail.holding_posts_on_site), and post_withdraw_from_digests left
    the batch's rows to the worker. Those it sent with the post keep it, so
    that the next round, the post back on the site, brings it to the others
    only. Before the provider's call, not after the batch: a worker killed once
    the provider took the call leaves rows that say what went, however the
    batch is settled; should the call fail, they go again without the post,
    which is off the site. One statement a call, and only after a take-down."""
    rows = Q()
    for post_id, delivery_ids in left_out.items():
        rows |= Q(post_id=post_id, delivery_id__in=delivery_ids)
    if rows:
        Delivery.posts.through.objects.filter(rows).delete()


def digest_time_set(
    *,
    subscriber: Subscriber,
    hour: int | None,
    weekday: int | None,
    time_zone: str,
) -> None:
    """When the reader's digests arrive; None follows the site's setting. A reader
    whose round of this period has gone waits for the next period (no second
    digest); one whose new time has already come today gets theirs at the next
    beat (none skipped)."""
    subscriber.digest_hour = hour
    subscriber.digest_weekday = weekday
    subscriber.time_zone = time_zone
    # One UPDATE: it waits for an erasure committing meanwhile (another tab),
    # then finds nobody, as topics_set does.
    if not Subscriber.objects.filter(pk=subscriber.pk).update(
        digest_hour=hour, digest_weekday=weekday, time_zone=time_zone
    ):
        raise Subscriber.DoesNotExist("The reader's data was erased.")


def posts_held(*, mailing: Mailing, after: int, up_to: int) -> tuple[str, list] | None:
    """What the digests of the round's readers with ids in (after, up_to] hold, as
    SQL selecting (sid, pid) pairs, each once, with its parameters; or None when
    the lookback has no post. A digest holds the posts announced since the reader
    confirmed and within the lookback, matching a topic they follow at this
    frequency and none they follow instantly (as Subscriber.following says, for
    readers with a topic), less those sent to them, announced or in an earlier
    digest (Delivery.carrying, received). A reader owed a last digest (who turned
    to instant) is owed too the posts announced until then matching any topic of
    theirs (every post, for one with no topic row left: they follow everything
    as published): they were announced without them, and an announcement planned
    after the switch is in the ledger, or leaves out what this digest carried.

    One statement for the page, its readers and posts: the pairs their topics
    match, less (EXCEPT) three sets read by the page's subscriber ids, so that its
    cost follows the page, not the ledger's size. Only the posts' topics, and
    which of the page's readers are owed a last digest, are read in Python."""
    frequency, now = mailing.frequency, mailing.slot
    since = now - LOOKBACK
    # Locked until the planning step commits: an author unpublishing one of these
    # posts waits for it, and then takes it out of the digests the step wrote
    # (post_withdraw_from_digests); a step starting while the author unpublishes
    # waits, and reads the post as gone. Read unlocked, the step could write a
    # post into digests after the author had taken it out of the queued ones.
    # (NO KEY: what refers to the posts, a comment or a ledger row, is not held.)
    posts = list(
        Post.objects.published()
        .select_for_update(no_key=True)
        .filter(email_subscribers=True, announced_at__gte=since, announced_at__lte=now)
    )
    if not posts:
        return None
    due = _due(frequency, slot=now).filter(pk__gt=after, pk__lte=up_to)
    # The page's audience in two parts. Those following at this frequency, whose
    # pairs their topics give: without the audience's "or owed", PostgreSQL finds
    # them by a semi-join (with it, a subplan a reader: the round's planning took
    # 7 % longer at 100,000 readers, owed or not).
    readers = due.filter(_following_at(frequency))
    # Posts from when they joined this list: an imported reader's confirmed_at is
    # when they consented elsewhere, maybe weeks before the import made them ours.
    reader_sql, reader_params = readers.values(
        sid=F("pk"), confirmed=Greatest("confirmed_at", "created_at")
    ).query.sql_with_params()
    # And those owed a last digest: a few, read first, so that a page with none
    # is planned as before (found in the statement, they had PostgreSQL read every
    # reader's topics, whatever their frequency, to find theirs).
    owed = list(
        due.filter(digest_owed_until__isnull=False).values_list("pk", flat=True)
    )
    owed_ids = ", ".join(["%s"] * len(owed))
    # Every post matches "everything" (stored with no value: topics_set), so that
    # a topic matches a key by equality, along the topics' (kind, value) index.
    # The first, empty row gives the columns their types on PostgreSQL.
    keys = [
        (post.pk, *key)
        for post in posts
        for key in [(SubscriberTopic.Kind.EVERYTHING, ""), *sorted(post.topic_keys())]
    ]
    key_rows = " ".join("UNION ALL SELECT %s, %s, %s" for _ in keys)
    post_ids = ", ".join(["%s"] * len(posts))
    received = (
        "d.status NOT IN (%s, %s) AND d.subscriber_id > %s AND d.subscriber_id <= %s"
    )
    topics, ledger = SubscriberTopic._meta.db_table, Delivery._meta.db_table
    mailings = Mailing._meta.db_table
    # An owed reader's posts until they turned to instant, whatever the topic's
    # frequency now, or every post for one with no topic left. Their instant
    # topics then take nothing away: a later post matching one came as published
    # and the ledger takes it away (or this digest carries it, and its
    # announcement, planned after, leaves them out).
    owed_post = f"""
        JOIN {Post._meta.db_table} p ON p.id = k.post_id
            AND p.announced_at <= s.digest_owed_until
            AND s.confirmed_at < p.announced_at AND s.created_at < p.announced_at
    """
    owed_pairs = (
        f"""
        UNION ALL
        SELECT s.id, p.id
        FROM {Subscriber._meta.db_table} s
        JOIN {topics} t ON t.subscriber_id = s.id
        JOIN post_key k ON k.kind = t.kind AND k.value = t.value
        {owed_post}
        WHERE s.id IN ({owed_ids})
        UNION ALL
        SELECT s.id, p.id
        FROM {Subscriber._meta.db_table} s
        JOIN post_key k ON k.kind = %s
        {owed_post}
        WHERE s.id IN ({owed_ids})
            AND NOT EXISTS (SELECT 1 FROM {topics} t WHERE t.subscriber_id = s.id)
        """  # noqa: S608 (table names; the ids are parameters)
        if owed
        else ""
    )
    owed_instant = f"AND t.subscriber_id NOT IN ({owed_ids})" if owed else ""
    sql = f"""
        WITH post_key (post_id, kind, value) AS (
            SELECT CAST(NULL AS bigint), CAST(NULL AS text), CAST(NULL AS text)
            WHERE 1 = 0 {key_rows}
        )
        SELECT r.sid AS sid, p.id AS pid
        FROM ({reader_sql}) r
        JOIN {topics} t ON t.subscriber_id = r.sid AND t.frequency = %s
        JOIN post_key k ON k.kind = t.kind AND k.value = t.value
        JOIN {Post._meta.db_table} p
            ON p.id = k.post_id AND r.confirmed < p.announced_at
        {owed_pairs}
        EXCEPT
        SELECT t.subscriber_id, k.post_id
        FROM {topics} t JOIN post_key k ON k.kind = t.kind AND k.value = t.value
        WHERE t.frequency = %s AND t.subscriber_id > %s AND t.subscriber_id <= %s
            {owed_instant}
        EXCEPT
        SELECT d.subscriber_id, m.post_id
        FROM {mailings} m JOIN {ledger} d ON d.mailing_id = m.id
        WHERE m.kind = %s AND m.post_id IN ({post_ids}) AND {received}
        EXCEPT
        SELECT d.subscriber_id, dp.post_id
        FROM {mailings} m JOIN {ledger} d ON d.mailing_id = m.id
        JOIN {Delivery.posts.through._meta.db_table} dp ON dp.delivery_id = d.id
        WHERE m.kind = %s AND (m.slot IS NULL OR m.slot >= %s)
            AND dp.post_id IN ({post_ids}) AND {received}
    """  # noqa: S608 (table names and constants; every value is a parameter)
    ids = [post.pk for post in posts]
    received_params = [Delivery.Status.FAILED, Delivery.Status.SKIPPED, after, up_to]
    params = [
        *(value for key in keys for value in key),
        *reader_params,
        frequency,
        *([*owed, SubscriberTopic.Kind.EVERYTHING, *owed] if owed else []),
        Frequency.INSTANT,
        after,
        up_to,
        *owed,
        Mailing.Kind.POST,
        *ids,
        *received_params,
        # A digest that carried a post of the lookback went at or after it was
        # announced, so at or after the lookback's start.
        Mailing.Kind.DIGEST,
        since,
        *ids,
        *received_params,
    ]
    return sql, params


# A batch's digests are assembled, not each rendered: the templates are rendered
# (and css-inlined, and their links tracked) once per number of posts a reader
# holds, day (theirs) and title (a last digest's or not), with placeholders for
# the reader's own parts, and once with all the batch's posts per time zone (each
# post is dated in the reader's), whose blocks are then cut out at the `*_cut`
# markers and joined per reader; a worker keeps them for the round's next batch
# of the same posts (`_parts`). A block inlines the same whatever precedes it, as
# the layout's CSS has no sibling or position selectors; tests/test_digests.py
# checks that an assembled digest equals a plain render.
_HTML_CUT = "<!--%%post%%-->"  # a comment: css-inline keeps it as it is
# A character no post field holds: Django's form fields refuse it, as PostgreSQL
# does (and should one slip in, the cut pieces miscount and zip(strict) stops).
_TEXT_CUT = "\x00"
# The greeting puts a space before the reader's name and isolates it (bidi.py:
# a right-to-left name pulls the comma after it into its direction), neither
# without one: the placeholder holds the space and the isolate's marks, and a
# reader's name goes between them, as the template's filter puts it.
_NAME = "%%name%%"
_READER_NAME = f" {isolated(_NAME)}"
_BEFORE_NAME, _AFTER_NAME = _READER_NAME.split(_NAME)
_POSTS = "%%posts%%"
_PLACEHOLDER = re.compile(
    f"({_READER_NAME}|{_POSTS}|{UNSUBSCRIBE_URL}|{PREFERENCES_URL})"
)


# The merge fields of a digest to many readers (DigestEmail.for_many), by
# placeholder: a reader's name and posts read differently in text and HTML.
_TEXT_FIELDS = {
    UNSUBSCRIBE_URL: "unsubscribe_url",
    PREFERENCES_URL: "preferences_url",
    _READER_NAME: "text_name",
    _POSTS: "text_posts",
}
_HTML_FIELDS = {
    **_TEXT_FIELDS,
    _READER_NAME: "html_name",
    _POSTS: "html_posts",
}


class _Cut(NamedTuple):
    """A body cut at its placeholders (the odd pieces), and the same pieces
    JSON-encoded, the quotes on the first and the last: a reader's body's encoding
    is joined from them as the body is (emails.Encoded)."""

    pieces: list[str]
    encoded: list[str]

    @classmethod
    def of(cls, pieces: list[str]) -> "_Cut":
        encoded = [p if i % 2 else json_inner(p) for i, p in enumerate(pieces)]
        encoded[0] = '"' + encoded[0]
        encoded[-1] += '"'
        return cls(pieces, encoded)

    def filled(self, values: dict[str, str], encoded: dict[str, str]) -> Encoded:
        """The body with `values` in its placeholders, carrying its encoding
        with `encoded` (the same values, encoded) in them."""
        return Encoded.of(filled(self.pieces, values), filled(self.encoded, encoded))


class _Frame(NamedTuple):
    """A digest for readers of one number of posts on one day (their own), of
    their last digest or not, cut at its placeholders."""

    subject: str
    text: _Cut
    html: _Cut


class _Block(NamedTuple):
    """A post's part of a digest, as text and HTML, and each JSON-encoded."""

    text: str
    html: str
    text_json: str
    html_json: str


class _Parts:
    """The frames (by number of posts, day and title) and post blocks (by time
    zone) of a round's digests for a batch's posts."""

    def __init__(self, mailing: Mailing, posts: list[Post]) -> None:
        self.mailing = mailing
        self._tracker = LinkTracker(mailing.pk)
        # The summary once a post, not once a render: a batch renders its posts
        # once per time zone and frame. Each sponsored post names its sponsors
        # as its own email does, all read in one statement.
        sponsors = sponsor_lines(posts)
        self._items = [
            {
                "post": post,
                "url": settings.SITE_URL + post.get_absolute_url(),
                "summary": post.summary,
                "sponsors": sponsors.get(post.pk, []),
            }
            for post in posts
        ]
        self._frames: dict[tuple[int, date, bool], _Frame] = {}
        self._blocks: dict[str, list[_Block]] = {}  # by time zone

    def frame(self, count: int, day: date, last: bool = False) -> _Frame:
        """The frame for readers of `count` posts whose day is `day`, of their
        last digest or not (Recipient.last_digest)."""
        if (count, day, last) not in self._frames:
            self._render(count, day, last=last)
        return self._frames[count, day, last]

    def blocks(self, time_zone: str) -> list[_Block]:
        """The blocks of the batch's posts for readers in `time_zone`, each post
        dated in it (a post of 16:30 in Los Angeles is of the next day in
        London)."""
        if time_zone not in self._blocks:
            day = day_of(self.mailing.slot, time_zone)
            self._blocks[time_zone] = self._render(len(self._items), day, time_zone)
        return self._blocks[time_zone]

    def _render(
        self,
        count: int,
        day: date,
        time_zone: str = DEFAULT_TIME_ZONE,
        last: bool = False,
    ) -> list[_Block]:
        """Render the digest of the batch's first `count` posts for any reader
        whose day is `day`, last digest or not: keep its frame for those
        readers, and return its posts' blocks, dated in `time_zone` (a frame
        holds no post's date: any zone makes it)."""
        email = render_email(
            "digest",
            {
                "subscriber": {"name": _NAME},
                "mailing": self.mailing,
                "day": day,
                "time_zone": zone_of(time_zone),
                "last_digest": last,
                "posts": self._items[:count],
                "unsubscribe_url": UNSUBSCRIBE_URL,
                "preferences_url": PREFERENCES_URL,
                "html_cut": mark_safe(_HTML_CUT),  # noqa: S308 (a constant)
                "text_cut": _TEXT_CUT,
            },
        )
        text = email.text.split(_TEXT_CUT)
        html = self._tracker.tracked(email.html).split(_HTML_CUT)
        self._frames[count, day, last] = _Frame(
            subject=email.subject,
            text=_Cut.of(_PLACEHOLDER.split(text[0] + _POSTS + text[-1])),
            html=_Cut.of(_PLACEHOLDER.split(html[0] + _POSTS + html[-1])),
        )
        return [
            _Block(text, html, json_inner(text), json_inner(html))
            for text, html in zip(text[1:-1], html[1:-1], strict=True)
        ]


_last_parts: tuple[tuple, _Parts] | None = None


def _parts(
    mailing: Mailing, edited: list[tuple[int, datetime]], *, sponsorships: str
) -> _Parts:
    """The round's parts for the posts (id, last edit) in the digest's order,
    rendered once per worker process while its batches hold the same posts (a
    round's batches mostly do), and again once a post is edited or a sponsorship
    changes (`sponsorships`: SponsorshipQuerySet.last_change)."""
    global _last_parts
    # Ids alone may be reused (tests, restores).
    key = (mailing.pk, mailing.created_at, tuple(edited), sponsorships)
    if _last_parts is None or _last_parts[0] != key:
        posts = Post.objects.in_bulk([pk for pk, _ in edited])
        _last_parts = (key, _Parts(mailing, [posts[pk] for pk, _ in edited]))
    return _last_parts[1]


class _BatchParts:
    """The round's parts as one batch sends them: their counted links name the
    batch, so that a click is timed from when its batch went (engagement.py);
    marked once a batch, from the parts the round's batches share."""

    def __init__(self, parts: _Parts, batch_id: int) -> None:
        self._parts = parts
        self._batch_id = batch_id
        self._frames: dict[tuple[int, date, bool], _Frame] = {}
        self._blocks: dict[str, list[_Block]] = {}

    def _marked(self, html: str) -> str:
        return self._parts._tracker.batch_marked(html, self._batch_id)

    def frame(self, count: int, day: date, last: bool = False) -> _Frame:
        if (count, day, last) not in self._frames:
            frame = self._parts.frame(count, day, last)
            html = _Cut.of([self._marked(piece) for piece in frame.html.pieces])
            self._frames[count, day, last] = frame._replace(html=html)
        return self._frames[count, day, last]

    def blocks(self, time_zone: str) -> list[_Block]:
        if time_zone not in self._blocks:
            self._blocks[time_zone] = [
                block._replace(html=html, html_json=json_inner(html))
                for block in self._parts.blocks(time_zone)
                for html in [self._marked(block.html)]
            ]
        return self._blocks[time_zone]


class DigestEmail:
    """A batch's digests, each assembled for its reader with their own posts."""

    def __init__(
        self, mailing: Mailing, recipients: list, *, batch_id: int = 0
    ) -> None:
        """For the batch's recipients (ledger.Recipient, read with their posts):
        all a digest needs of its reader is in their Recipient, but the order
        of their posts, read here for the batch's few. `batch_id` names the
        batch in the counted links (0: none, for a preview)."""
        self._links = ReaderLinks()
        self._slot = mailing.slot
        self._days: dict[str, date] = {}  # by time zone
        # Only the posts' order and edit times, and the sponsorships' last change
        # (the same on every row): their rendered parts are kept.
        rows = list(
            Post.objects.filter(pk__in={pk for r in recipients for pk in r.posts})
            .order_by("announced_at", "pk")
            .annotate(sponsorships_changed=Sponsorship.objects.last_change())
            .values_list("pk", "updated_at", "sponsorships_changed")
        )
        posts = [(pk, edited) for pk, edited, _ in rows]
        self._place = {pk: i for i, (pk, _) in enumerate(posts)}
        # Delivery id -> its posts' places in the batch's, which are in order.
        self.posts: dict[int, list[int]] = {
            r.delivery_id: sorted([self._place[pk] for pk in r.posts])
            for r in recipients
        }
        self._parts = _parts(mailing, posts, sponsorships=rows[0][2] if rows else "")
        if batch_id:
            self._parts = _BatchParts(self._parts, batch_id)

    def holding_posts_on_site(
        self, recipients: list, on_site: set[int]
    ) -> tuple[list, dict[int, set[int]]]:
        """Those of the recipients whose digest holds a post of `on_site`, each
        left holding only those: the batch's posts readers could read as its
        worker last read them (sender.HandOver), since post_withdraw_from_digests
        takes a post out of the ledger's digests, not out of a batch being sent.
        And the posts left out of their digests (post id -> delivery ids), for
        digests_record_left_out."""
        held = {pk for r in recipients for pk in r.posts}
        if held <= on_site:
            return recipients, {}
        places = {self._place[pk] for pk in on_site}
        left_out: dict[int, set[int]] = {}
        for r in recipients:
            for pk in set(r.posts) - on_site:
                left_out.setdefault(pk, set()).add(r.delivery_id)
            self.posts[r.delivery_id] = [
                i for i in self.posts[r.delivery_id] if i in places
            ]
        return [r for r in recipients if self.posts[r.delivery_id]], left_out

    def for_many(
        self, recipients: list, *, merge_field: str, connection=None
    ) -> list[tuple[EmailMessage, list]]:
        """The recipients' digests as one message for each number of posts
        they hold, day they are dated and title (a frame), to its readers, each
        reader's name, posts and own links as merge data that the provider (or
        our backend for it) fills in:
        `merge_field` is its syntax, NAME standing for the field. A reader who
        agreed to per-reader engagement gets a message of their own
        (for_reader), their part on every counted link, their posts' too."""
        alone = settings.NEWSLETTER_PER_READER_ENGAGEMENT
        letters = []
        by_frame: dict[tuple[int, date, bool], list] = {}
        for recipient in recipients:
            if alone and recipient.agreed:
                letters.append(
                    (self.for_reader(recipient, connection=connection), [recipient])
                )
            else:
                by_frame.setdefault(self._frame_of(recipient), []).append(recipient)
        merge_fields = {
            field: merge_field.replace("NAME", field)
            for field in (*_TEXT_FIELDS.values(), *_HTML_FIELDS.values())
        }
        for frame, readers in by_frame.items():
            merge_data = {r.email: self._own_parts(r) for r in readers}
            message = build_bulk_message(
                self._filled_frame(frame, merge_fields),
                unsubscribe_urls={
                    address: own["unsubscribe_url"]
                    for address, own in merge_data.items()
                },
                merge_data=merge_data,
                connection=connection,
            )
            letters.append((message, readers))
        return letters

    def _frame_of(self, recipient) -> tuple[int, date, bool]:
        """The recipient's frame: how many posts their digest holds, its day,
        whether it is their last."""
        zone = recipient.time_zone
        if zone not in self._days:  # a few zones for a batch's 500 readers
            self._days[zone] = day_of(self._slot, zone)
        count = len(self.posts[recipient.delivery_id])
        return count, self._days[zone], recipient.last_digest

    def _filled_frame(
        self, frame_of: tuple[int, date, bool], values: dict[str, str]
    ) -> RenderedEmail:
        """The frame of readers of (number of posts, day, last), its placeholders
        filled with `values` by merge field, the bodies carrying their
        encoding."""
        frame = self._parts.frame(*frame_of)
        text, html = (
            cut.filled(
                {p: values[field] for p, field in fields.items()},
                {p: json_inner(values[field]) for p, field in fields.items()},
            )
            for cut, fields in ((frame.text, _TEXT_FIELDS), (frame.html, _HTML_FIELDS))
        )
        return RenderedEmail(frame.subject, text, html)

    def _own_parts(self, recipient) -> dict[str, str]:
        """A reader's own parts of their digest, by merge field (_TEXT_FIELDS,
        _HTML_FIELDS): their links, name and posts, the posts carrying their
        encoding, joined from their blocks'."""
        blocks = self._parts.blocks(recipient.time_zone)
        blocks = [blocks[i] for i in self.posts[recipient.delivery_id]]
        name = recipient.name
        return {
            "unsubscribe_url": self._links.link(recipient, Purpose.UNSUBSCRIBE),
            "preferences_url": self._links.link(recipient, Purpose.PREFERENCES),
            "text_name": f"{_BEFORE_NAME}{name}{_AFTER_NAME}" if name else "",
            "html_name": (
                f"{_BEFORE_NAME}{_serialised(name)}{_AFTER_NAME}" if name else ""
            ),
            "text_posts": Encoded.of(
                "".join([block.text for block in blocks]),
                f'"{"".join([block.text_json for block in blocks])}"',
            ),
            "html_posts": Encoded.of(
                "".join([block.html for block in blocks]),
                f'"{"".join([block.html_json for block in blocks])}"',
            ),
        }

    def for_reader(self, recipient, *, connection=None) -> EmailMultiAlternatives:
        own = self._own_parts(recipient)
        email = self._filled_frame(self._frame_of(recipient), own)
        # Their clicks are theirs, if they agreed (read with the batch's recipients):
        # their part on each counted link makes the HTML a plain str, which the
        # backend encodes whole.
        html = reader_part_add(
            email.html, subscriber_id=recipient.pk, agreed=recipient.agreed
        )
        return build_message(
            replace(email, html=html),
            to=recipient.email,
            headers=list_headers(unsubscribe_url=own["unsubscribe_url"]),
            connection=connection,
        )


def _serialised(text: str) -> str:
    """Text as css-inline writes it out in HTML (the HTML standard's serialisation
    of a text node), which is how the name reads in a plain render."""
    return (
        text.replace("&", "&amp;")
        .replace("\xa0", "&nbsp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )
