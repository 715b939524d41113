"""The desk: the figures on the admin's front page (templates/admin/index.html).

Each part is computed only for a user allowed to see it, in a fixed number of
queries, whatever the number of readers or ledger rows: the database counts
(conditional aggregates, weeks truncated in SQL), Python only arranges.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import ClassVar

from django.contrib import admin
from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import TruncWeek
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from posts.comments.models import Comment
from posts.desk import counted

from .charts import Chart, bar_chart
from .forms import topic_groups
from .models import (
    Batch,
    Consent,
    Delivery,
    Mailing,
    Subscriber,
    SubscriberTopic,
    Suppression,
    pausing,
    receiving,
)
from .reports import SENDER_REFUSED_CHECK
from .subscriptions import (
    CONSENT_SOURCE_DESK,
    CONSENT_SOURCE_FORM,
    CONSENT_SOURCE_PREFERENCES,
)

GROWTH_WEEKS = 12
LATEST_MAILINGS = 5
# A mailing is recent, for its bounce and complaint rates, for this long.
RECENT_MAILING_DAYS = 30
# What the big mailbox providers hold bulk senders to (Google's and Yahoo's 2024
# sender rules: spam complaints under 0.1 %; bounces above 2 % harm a sender).
COMPLAINT_RATE_LIMIT = 0.001
BOUNCE_RATE_LIMIT = 0.02
# The topics listed by readers; the rest are summed in one line.
TOPICS_SHOWN = 10

# Readers who joined and whose data is deleted since: where they came from went
# with their consents.
DELETED_SINCE = "Data deleted since (source not kept)"

LEFT_REASONS = [Suppression.Reason.UNSUBSCRIBED, Suppression.Reason.DELETED]


@dataclass(frozen=True)
class Attention:
    """Something that needs the author, and where they act on it."""

    text: str
    url: str


@dataclass
class Desk:
    """What the desk shows a user: a part is None when they may not see it."""

    readers: list[tuple[str, int]] | None = None
    topics: list[tuple[str, int]] | None = None
    frequencies: list[tuple[str, int]] | None = None
    growth: Chart | None = None
    sources: list[tuple[str, int]] | None = None
    mailings: list[dict] | None = None
    attention: list[Attention] = field(default_factory=list)
    # The latest mailings' note says it beside the refusals of our sender.
    sender_refused_check: ClassVar[str] = SENDER_REFUSED_CHECK


def desk_for(request: HttpRequest) -> Desk:
    user = request.user
    desk = Desk()
    if user.has_perm("newsletter.view_subscriber"):
        desk.readers = _readers()
        desk.topics, desk.frequencies = _topics_and_frequencies()
        desk.growth, desk.sources = _growth()
    if user.has_perm("newsletter.view_mailing"):
        desk.mailings, flagged = _mailings(request)
        desk.attention += flagged
        desk.attention += _paused_mailings()
    if user.has_perm("newsletter.view_batch"):
        desk.attention += _uncertain_batches()
    if user.has_perm("comments.view_comment"):
        desk.attention += _comments_awaiting()
    return desk


def _readers() -> list[tuple[str, int]]:
    status = Subscriber.Status
    # The audience and the paused as the newsletter itself reads them: a copy of
    # their conditions here would drift from who is sent the emails.
    counts = Subscriber.objects.aggregate(
        confirmed=Count("pk", filter=receiving()),
        pending=Count("pk", filter=Q(status=status.PENDING)),
        paused=Count("pk", filter=pausing()),
        unsubscribed=Count("pk", filter=Q(status=status.UNSUBSCRIBED)),
        bounced=Count("pk", filter=Q(status=status.BOUNCED)),
        complained=Count("pk", filter=Q(status=status.COMPLAINED)),
        suppressed=Count("pk", filter=Q(status=status.SUPPRESSED)),
    )
    return [
        ("Confirmed, receiving", counts["confirmed"]),
        ("Pending confirmation", counts["pending"]),
        ("Paused", counts["paused"]),
        ("Unsubscribed", counts["unsubscribed"]),
        ("Suppressed: bounced", counts["bounced"]),
        ("Suppressed: complained", counts["complained"]),
        ("Suppressed by the author", counts["suppressed"]),
    ]


def _topics_and_frequencies() -> tuple[list, list]:
    """What the readers who receive follow, and how often they hear of it. A reader
    with no topics follows everything as it is published."""
    receiving = Subscriber.objects.confirmed()
    topics = SubscriberTopic.objects.filter(subscriber__in=receiving)
    by_topic = list(
        topics.values("kind", "value")
        .annotate(readers=Count("subscriber", distinct=True))
        .order_by("-readers", "kind", "value")
    )
    by_frequency = dict(
        topics.values_list("frequency").annotate(Count("subscriber", distinct=True))
    )
    without_topics = receiving.filter(~Exists(topics.filter(subscriber=OuterRef("pk"))))
    everything_by_default = without_topics.count()

    names = {}
    if by_topic:
        followed = [f"{row['kind']}:{row['value']}" for row in by_topic]
        names = {o.key: o.name for g in topic_groups(followed) for o in g.options}
    kinds = dict(SubscriberTopic.Kind.choices)
    rows = []
    for row in by_topic[:TOPICS_SHOWN]:
        if row["kind"] == SubscriberTopic.Kind.EVERYTHING:
            label = "Everything"
        else:
            key = f"{row['kind']}:{row['value']}"
            label = f"{kinds[row['kind']]}: {names.get(key, row['value'])}"
        rows.append((label, row["readers"]))
    if len(by_topic) > TOPICS_SHOWN:
        others = len(by_topic) - TOPICS_SHOWN
        rows.append(
            (
                f"{others} other topics",
                sum(r["readers"] for r in by_topic[TOPICS_SHOWN:]),
            )
        )
    if everything_by_default:
        rows.append(("Everything (never chose)", everything_by_default))

    by_frequency[SubscriberTopic.Frequency.INSTANT] = (
        by_frequency.get(SubscriberTopic.Frequency.INSTANT, 0) + everything_by_default
    )
    frequencies = [
        (label, by_frequency.get(value, 0))
        for value, label in SubscriberTopic.Frequency.choices
    ]
    return rows, frequencies


def _week_starts(now: datetime) -> list[date]:
    """The Mondays of the last GROWTH_WEEKS weeks, this week's last."""
    today = timezone.localdate(now)
    this_monday = today - timedelta(days=today.weekday())
    return [this_monday - timedelta(weeks=n) for n in reversed(range(GROWTH_WEEKS))]


def _growth() -> tuple[Chart, list[tuple[str, int]]]:
    """Readers confirmed, left and lost per week, and where the new ones came from.

    A reader counts once as joining, in the week of their latest confirmation (one
    who left and came back is not counted twice); one whose row is deleted since
    (erased), in the week their suppression keeps (reader_joined_week), so that
    they count joining as they count leaving. Leaving is read from the
    suppression list, which keeps every address that left, erased or not, and
    marks the one a reader in the audience left by (Suppression.reader_left_at):
    a reader erased under two addresses left once, and a request nobody
    confirmed, whose confirmation bounced, lost nobody.
    """
    weeks = _week_starts(timezone.now())
    since = timezone.make_aware(datetime.combine(weeks[0], datetime.min.time()))
    joined = dict(
        Subscriber.objects.filter(confirmed_at__gte=since)
        .annotate(week=TruncWeek("confirmed_at"))
        .values_list("week")
        .annotate(Count("pk"))
    )
    # Deleted since they left: their suppression keeps the week, and only then.
    deleted = dict(
        Suppression.objects.filter(reader_joined_week__gte=weeks[0])
        .values_list("reader_joined_week")
        .annotate(Count("pk"))
    )
    departures = (
        Suppression.objects.filter(reader_left_at__gte=since)
        .annotate(
            week=TruncWeek("reader_left_at"),
            left=Case(
                When(reason__in=LEFT_REASONS, then=Value("left")),
                default=Value("lost"),
                output_field=CharField(),
            ),
        )
        .values_list("week", "left")
        .annotate(Count("pk"))
    )
    left: dict[tuple[date, str], int] = {}
    for week, kind, count in departures:
        left[timezone.localdate(week), kind] = count
    joined_by_day = {timezone.localdate(week): count for week, count in joined.items()}
    for monday, count in deleted.items():
        joined_by_day[monday] = joined_by_day.get(monday, 0) + count
    rows = []
    for monday in weeks:
        confirmed = joined_by_day.get(monday, 0)
        gone = left.get((monday, "left"), 0)
        lost = left.get((monday, "lost"), 0)
        rows.append(
            (
                f"{monday.day} {monday:%b}",
                [confirmed, gone, lost, confirmed - gone - lost],
            )
        )
    chart = bar_chart(
        title=f"Readers per week, last {GROWTH_WEEKS} weeks",
        series=["Confirmed", "Left", "Lost", "Net"],
        rows=rows,
    )
    return chart, _sources(
        since, joined=sum(joined.values()), deleted=sum(deleted.values())
    )


def _sources(since: datetime, joined: int, deleted: int) -> list[tuple[str, int]]:
    """The readers who joined since then (`joined` of them) by where they
    subscribed: the form (on which page), the preference centre (a reader who
    came back), an import (by its source), or the admin
    (no consent recorded); and those `deleted` since, whose consents went with
    them. A reader's source is the consent their latest confirmation confirmed."""
    counts = (
        Consent.objects.filter(
            confirmed_at__gte=since, confirmed_at=F("subscriber__confirmed_at")
        )
        .values_list("source", "page")
        .annotate(Count("subscriber", distinct=True))
    )
    rows: dict[str, int] = {}
    for source, page, count in counts:
        if source == CONSENT_SOURCE_FORM:
            label = f"Subscribe form, from {page}" if page else "Subscribe form"
        elif source == CONSENT_SOURCE_PREFERENCES:
            label = "Preference centre (came back)"
        elif source == CONSENT_SOURCE_DESK:
            label = "Added at the desk, confirmed by the reader"
        else:
            label = f"Import: {source}"
        rows[label] = rows.get(label, 0) + count
    if added := joined - sum(rows.values()):
        rows["Added in the admin"] = added
    if deleted:
        rows[DELETED_SINCE] = deleted
    return sorted(rows.items(), key=lambda row: (-row[1], row[0]))


def _mailings(request: HttpRequest) -> tuple[list[dict], list[Attention]]:
    """The latest mailings with their progress (as the mailings' own admin page
    counts and shows it), and every recent mailing whose bounce or complaint rate
    is over the providers' limit."""
    mailing_admin = admin.site.get_model_admin(Mailing)
    latest = list(
        mailing_admin.get_queryset(request).without_empty_rounds()[:LATEST_MAILINGS]
    )
    recent = Q(created_at__gte=timezone.now() - timedelta(days=RECENT_MAILING_DAYS))
    # The mailings' ids, read first: PostgreSQL reads a list of ids' rows through
    # the (mailing, subscriber) index; given a condition on each row, or a
    # subquery, it read the whole ledger.
    recent_ids = set(Mailing.objects.filter(recent).values_list("pk", flat=True))
    shown = {m.pk for m in latest} | recent_ids
    rates = {
        row["mailing"]: row
        for row in Delivery.objects.filter(mailing__in=shown)
        .values("mailing")
        .annotate(
            accepted=Count("pk", filter=Q(status=Delivery.Status.SENT)),
            bounced=Count("pk", filter=Delivery.READERS_BOUNCES),
            sender_refused=Count("pk", filter=Delivery.SENDER_REFUSALS),
            complained=Count("pk", filter=Q(last_event="complained")),
        )
    }
    can_report = request.user.has_perm("newsletter.view_postreport")

    def where_to_act(mailing: Mailing) -> str:
        # A post's report counts its own emails, not its corrections': a
        # correction's figures are on its mailing's page.
        if can_report and mailing.kind == Mailing.Kind.POST:
            return reverse("admin:newsletter_postreport_change", args=[mailing.post_id])
        return reverse("admin:newsletter_mailing_change", args=[mailing.pk])

    mailings = []
    for mailing in latest:
        rate = rates.get(mailing.pk, dict.fromkeys(NO_EMAILS, 0))
        mailings.append(
            {
                "mailing": mailing,
                "state": mailing_admin.state(mailing),
                "progress": mailing_admin.progress(mailing),
                "went": _went(mailing),
                "url": where_to_act(mailing),
                **_rates(rate),
            }
        )
    # Only a recent one needs the author: an older one among the latest shows its
    # rates there, and its flag would stay until five newer mailings went out.
    over = [
        mailing_id
        for mailing_id, rate in rates.items()
        if mailing_id in recent_ids and _rates(rate)["flagged"]
    ]
    flagged = []
    for mailing in (
        Mailing.objects.filter(pk__in=over)
        .select_related("post", "post_update")
        .order_by("-created_at")
    ):
        figures = _rates(rates[mailing.pk])
        flagged.append(
            Attention(
                f"{mailing}: {figures['summary']}",
                where_to_act(mailing),
            )
        )
    return mailings, flagged


# What else became of a mailing's readers, said when any did.
_WENT_OTHERWISE = [
    ("failed", "failed"),
    ("uncertain", "uncertain"),
    ("skipped", "skipped (never sent)"),
]


def _went(mailing: Mailing) -> str:
    """What became of a mailing no longer going out, in its figures' words on the
    mailings' list ("" while it goes: its bar says how far): a cancelled one's
    bar stood at 100% however few it had reached, and "Done" hid readers still
    uncertain."""
    if mailing.status not in (Mailing.Status.DONE, Mailing.Status.CANCELLED):
        return ""
    if not mailing.planned:
        # Cancelled, it may have had readers: the cancel kept them from being
        # planned. Done, it had none.
        if mailing.status == Mailing.Status.CANCELLED:
            return "none sent: cancelled before its readers were planned"
        return "nothing to send"
    went = [f"{mailing.sent} of {mailing.planned} sent"]
    for figure, label in _WENT_OTHERWISE:
        if count := getattr(mailing, figure):
            went.append(f"{count} {label}")
    return ", ".join(went)


# A mailing's counts before it has any ledger row.
NO_EMAILS = ("accepted", "bounced", "sender_refused", "complained")


def _rates(counts: dict) -> dict:
    accepted = counts["accepted"]
    bounce_rate = counts["bounced"] / accepted if accepted else 0.0
    refusal_rate = counts["sender_refused"] / accepted if accepted else 0.0
    complaint_rate = counts["complained"] / accepted if accepted else 0.0
    over = []
    if bounce_rate > BOUNCE_RATE_LIMIT:
        over.append(f"bounces {bounce_rate:.1%} (over {BOUNCE_RATE_LIMIT:.0%})")
    # Refusals harm the sender as bounces do, and the author alone can end them.
    if refusal_rate > BOUNCE_RATE_LIMIT:
        over.append(
            f"refused because of our sender {refusal_rate:.1%}"
            f" (over {BOUNCE_RATE_LIMIT:.0%})"
        )
    if complaint_rate > COMPLAINT_RATE_LIMIT:
        over.append(
            f"spam complaints {complaint_rate:.2%} (over {COMPLAINT_RATE_LIMIT:.1%})"
        )
    summary = f"{' and '.join(over)} of {accepted} accepted"
    if refusal_rate > BOUNCE_RATE_LIMIT:
        summary += f": {SENDER_REFUSED_CHECK}"
    return {
        "accepted": accepted,
        "bounce_percent": 100 * bounce_rate,
        "sender_refused_percent": 100 * refusal_rate,
        "complaint_percent": 100 * complaint_rate,
        "flagged": bool(over),
        "summary": summary,
    }


def _paused_mailings() -> list[Attention]:
    paused = Mailing.objects.filter(
        paused_at__isnull=False,
        status__in=[Mailing.Status.PLANNING, Mailing.Status.SENDING],
    ).select_related("post", "post_update")
    return [
        Attention(
            f"{mailing} is paused"
            + (f" ({mailing.pause_reason})" if mailing.pause_reason else ""),
            reverse("admin:newsletter_mailing_change", args=[mailing.pk]),
        )
        for mailing in paused
    ]


def _uncertain_batches() -> list[Attention]:
    uncertain = (
        Batch.objects.filter(status=Batch.Status.UNCERTAIN)
        .values("mailing")
        .annotate(batches=Count("pk"))
    )
    by_mailing = {
        row["mailing"]: counted(row["batches"], "uncertain batch", "uncertain batches")
        for row in uncertain
    }
    if not by_mailing:
        return []
    url = reverse("admin:newsletter_batch_changelist")
    return [
        Attention(
            f"{mailing}: {by_mailing[mailing.pk]} to settle",
            f"{url}?mailing__id__exact={mailing.pk}&status__exact=uncertain",
        )
        for mailing in Mailing.objects.filter(pk__in=by_mailing).select_related(
            "post", "post_update"
        )
    ]


def _comments_awaiting() -> list[Attention]:
    pending = Comment.objects.pending().count()
    if not pending:
        return []
    return [
        Attention(
            f"{counted(pending, 'comment', 'comments')} awaiting moderation",
            reverse("admin:comments_comment_changelist"),
        )
    ]
