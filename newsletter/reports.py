"""Each post's report: what became of its emails, and opens and clicks by people
and machines, read from the ledger and the counts engagement.py records."""

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import dateformat, timezone

from posts.models import Organisation, Post, Region

from .engagement import (
    CLICK_RULES,
    OPEN_RULES,
    OPENS_NOT_COUNTED,
    is_web_address,
    opens_counted,
)
from .models import (
    Delivery,
    Engagement,
    Link,
    Mailing,
    Subscriber,
    SubscriberTopic,
)

# A reader who leaves within this long of an email counts as leaving because of it.
UNSUBSCRIBED_WITHIN = timedelta(days=7)
_ARRIVED = Q(
    last_event__in=["delivered", "opened", "clicked", "unsubscribed", "complained"]
)
_BOUNCED = Delivery.READERS_BOUNCES
# Hard: the bounce the address was suppressed for, the reader's latest (nothing
# is sent to a suppressed address). Read from the reader's standing alone, a
# mailbox full for Monday's post and gone by Wednesday's made Monday's bounce
# hard as well, in a report already read.
_BOUNCED_SINCE = Delivery.objects.filter(
    _BOUNCED, subscriber=OuterRef("subscriber"), sent_at__gt=OuterRef("sent_at")
)
_BOUNCED_HARD = (
    _BOUNCED & Q(subscriber__status=Subscriber.Status.BOUNCED) & ~Exists(_BOUNCED_SINCE)
)
_AGREED = Q(subscriber__engagement_agreed_at__isnull=False)
# Of the emails a reader was sent in the week before they left, only the latest
# is why: one who left after Monday's post and Wednesday's was counted as leaving
# because of both, in both posts' reports.
_SENT_SINCE = Delivery.objects.filter(
    subscriber=OuterRef("subscriber"),
    sent_at__gt=OuterRef("sent_at"),
    sent_at__lte=OuterRef("subscriber__unsubscribed_at"),
)
# A reader who left by the provider's own link in an email (its unsubscribe
# event names it) is counted by that email alone: not by a later one too, which
# the week's rule would count them by.
_LEFT_BY_AN_EMAILS_LINK = Delivery.objects.filter(
    subscriber=OuterRef("subscriber"),
    last_event="unsubscribed",
    last_event_at__gte=OuterRef("sent_at"),
)
_LEFT = (
    Q(
        subscriber__status=Subscriber.Status.UNSUBSCRIBED,
        subscriber__unsubscribed_at__gte=F("sent_at"),
        subscriber__unsubscribed_at__lt=F("sent_at") + UNSUBSCRIBED_WITHIN,
    )
    # An email the provider did not send is nobody's reason to leave: Mailgun
    # drops one to an address on its unsubscribes list, and that drop is what
    # marks the reader unsubscribed here, within the week of the email.
    & ~Q(last_event="failed")
    # Last: PostgreSQL tests a count's conditions in the order written, and these
    # read the reader's ledger; first, they read it for every recipient (a
    # second of the report at 100,000 readers), not only for those who left.
    & ~Exists(_SENT_SINCE)
    & ~Exists(_LEFT_BY_AN_EMAILS_LINK)
) | Q(last_event="unsubscribed")

# The chart: the announcement's first three days, in bars of three clock hours
# (24 bars read at phone width; 72 would not).
CHART_HOURS = 72
HOURS_PER_BAR = 3

# A group of readers smaller than this is never shown on its own: the author
# could tell who bounced or left.
SMALLEST_GROUP = 10
# What readers follow that says where they work.
GROUP_KINDS = {
    SubscriberTopic.Kind.REGION.value: (Region, "Other regions"),
    SubscriberTopic.Kind.ORGANISATION.value: (Organisation, "Other organisations"),
}

# What the author checks when readers' mail providers refuse our sender.
SENDER_REFUSED_CHECK = (
    "check the sending domain's SPF, DKIM and DMARC records and the provider's"
    " sender reputation"
)

DELIVERY_RULES = (
    "Recipients are the readers the post went to, as published and in digests. "
    "Accepted: the email provider took the message; refused: it did not; "
    "uncertain: it may have (the author settles the batch); waiting: not sent "
    "yet. Skipped readers are not recipients: the mailing was cancelled before "
    "their email went, or they left first. Delivered: the provider "
    "reported it arrived (or later reported it opened, clicked, unsubscribed or "
    "complained about). Bounced: the provider's latest word was a bounce; hard "
    "when the address was suppressed for it, soft (a full mailbox, say) "
    "otherwise; a delay the provider is still retrying is not a bounce. "
    "Refused because of our sender: the reader's mail provider refused the "
    "publication's sender (its domain's authentication, its reputation), not "
    "the reader's address: not a bounce, and the reader stays on the list; "
    f"{SENDER_REFUSED_CHECK}. "
    "Complained: marked as spam. Unsubscribed: "
    f"left within {UNSUBSCRIBED_WITHIN.days} days of this email, and before any "
    "later email, or through the provider's own link in this email (then by "
    "this email only); not for an email the provider did not send (Mailgun "
    "drops one to an address on its unsubscribes list, marking the reader as "
    "having left). A reader who has erased their data since counts among "
    "the recipients of the post's own email, accepted or refused, as its "
    "mailing counts them, and in no other figure: the rest went with their data "
    "(in digests, which carry several posts, they are not counted)."
)
DIGEST_CLICKS_RULES = (
    "Opens and clicks count the post's own email. A digest, which carries "
    "several posts, is counted apart: its clicks on its link to this post are "
    "the clicks in digests (a digest's opens are not this post's). A link that "
    "leads nowhere (its address is no web page) takes readers to “page not "
    "found”: their clicks are not counted until it is fixed."
)
HOURS_RULES = (
    f"The post's own email over its first {CHART_HOURS} hours, in bars of "
    f"{HOURS_PER_BAR} hours, counted by the same rules. Hours are clock hours: "
    "the first bar starts on the hour the email went out."
)
_GROUPS_FOLDED = (
    "Readers by the regions and organisations they follow (a reader following "
    "several is in each; one following everything is in none). A region or "
    f"organisation with fewer than {SMALLEST_GROUP} readers of this post is not "
    "named: it is counted in “other”, whose figures are shown only when it "
    f"holds {SMALLEST_GROUP} readers or more."
)
GROUPS_RULES = (
    f"{_GROUPS_FOLDED} Opens and clicks are not shown by group: they are counted "
    "per email and per link, never per reader, so nothing says which reader "
    "opened or clicked."
)


def groups_engagement_rules(readers_agreed: int) -> str:
    """The groups' rules with per-reader engagement on: whose opens and clicks
    the groups' figures are."""
    return (
        f"{_GROUPS_FOLDED} Opens and clicks by group count only the readers who "
        "agreed to let the editor see what they open and follow: "
        f"{readers_agreed} of this post's readers. Everyone else's are counted "
        "per email and per link, never per reader, and are not in them. A "
        f"group's opens and clicks are shown only when {SMALLEST_GROUP} or more "
        "of its readers agreed; otherwise only its delivery figures are. They "
        "count the post's own email and the digests that carried it to the "
        "reader (in a digest, only clicks on its link to this post), every time, "
        "people and machines apart by the rules above."
    )


def post_report(post: Post) -> dict:
    """What happened to a post's emails, people and machines apart: the figures
    the admin report, its CSV and `manage.py post_report` show. At most eight
    queries (nine with per-reader engagement on), however many readers and links."""
    carried = Delivery.objects.carrying(post)
    # A reader skipped (the mailing cancelled before their batch, or they left
    # first) was never sent the post: not a recipient, nor in any group.
    skipped = Q(status=Delivery.Status.SKIPPED)
    deliveries = carried.exclude(skipped)
    status = Delivery.Status
    figures = carried.aggregate(
        recipients=Count("pk", filter=~skipped),
        as_published=Count("pk", filter=~skipped & Q(mailing__kind=Mailing.Kind.POST)),
        through_digests=Count(
            "pk", filter=~skipped & Q(mailing__kind=Mailing.Kind.DIGEST)
        ),
        accepted=Count("pk", filter=Q(status=status.SENT)),
        failed=Count("pk", filter=Q(status=status.FAILED)),
        uncertain=Count("pk", filter=Q(status=status.UNCERTAIN)),
        queued=Count("pk", filter=Q(status=status.QUEUED)),
        skipped=Count("pk", filter=skipped),
        delivered=Count("pk", filter=_ARRIVED),
        bounced=Count("pk", filter=_BOUNCED),
        bounced_hard=Count("pk", filter=_BOUNCED_HARD),
        sender_refused=Count("pk", filter=Delivery.SENDER_REFUSALS),
        complained=Count("pk", filter=Q(last_event="complained")),
        unsubscribed=Count("pk", filter=_LEFT),
        # When the post's own email first went: it may have been held since its
        # mailing was made (paused, its post taken down), and the chart starts then.
        went_out=Min("sent_at", filter=Q(mailing__kind=Mailing.Kind.POST)),
        **(
            {
                "readers_agreed": Count(
                    "subscriber", distinct=True, filter=_AGREED & ~skipped
                )
            }
            if settings.NEWSLETTER_PER_READER_ENGAGEMENT
            else {}
        ),
    )
    figures["bounced_soft"] = figures["bounced"] - figures["bounced_hard"]
    announcement = (
        Mailing.objects.filter(kind=Mailing.Kind.POST, post=post)
        .annotate(
            erased_sent=Coalesce(Sum("batches__erased_sent"), 0),
            erased_failed=Coalesce(Sum("batches__erased_failed"), 0),
        )
        .first()
    )
    if announcement is not None:
        # Readers who erased their data since: their ledger rows went with them,
        # but their batches keep what became of their emails, which the
        # mailing's page counts. A digest batch carries many posts, so a
        # digest's erased readers cannot be told apart (DELIVERY_RULES).
        erased = announcement.erased_sent + announcement.erased_failed
        figures["recipients"] += erased
        figures["as_published"] += erased
        figures["accepted"] += announcement.erased_sent
        figures["failed"] += announcement.erased_failed
    # None, as the mailing's page says "not counted", when nobody counted them.
    figures["opens"] = (
        {
            "people": announcement.opens_people if announcement else 0,
            "machines": announcement.opens_machines if announcement else 0,
        }
        if opens_counted(announcement)
        else None
    )
    figures["links"], figures["clicks_in_digests"] = _links(post)
    figures["clicks"] = {
        "people": sum(link["people"] for link in figures["links"]),
        "machines": sum(link["machines"] for link in figures["links"]),
    }
    went_out = figures.pop("went_out")
    # With per-reader engagement on: the groups' opens and clicks are theirs.
    readers_agreed = figures.pop("readers_agreed", None)
    return {
        "post": post.slug,
        "title": post.title,
        **figures,
        "first_hours": _first_hours(
            announcement, went_out, recipients=figures["as_published"]
        ),
        "groups": _groups(post, deliveries),
        "readers_agreed": readers_agreed,
        "rules": {
            "deliveries": DELIVERY_RULES,
            "opens": OPEN_RULES,
            "clicks": CLICK_RULES,
            "clicks_in_digests": DIGEST_CLICKS_RULES,
            "first_hours": HOURS_RULES,
            "groups": GROUPS_RULES
            if readers_agreed is None
            else groups_engagement_rules(readers_agreed),
        },
    }


def _links(post: Post) -> tuple[list[dict], dict]:
    """The post's own email's every link, and the clicks on each digest's link
    to this post (people and machines), counted apart: in one query."""
    links = (
        Link.objects.of_post(post)
        .filter(mailing__kind__in=[Mailing.Kind.POST, Mailing.Kind.DIGEST])
        .values("url", "hidden", "mailing__kind")
        .annotate(
            people=Sum("people"),
            machines=Sum("machines"),
            # One fix covers the link in all the post's emails (link_fix).
            fixed_url=Max("fixed_url"),
            fixed_at=Max("fixed_at"),
            fixed_by=Max("fixed_by__username"),
        )
        .order_by("hidden", "-people", "url")
    )
    own, in_digests = [], {"people": 0, "machines": 0}
    for link in links:
        if link["mailing__kind"] == Mailing.Kind.DIGEST:
            in_digests["people"] += link["people"]
            in_digests["machines"] += link["machines"]
            continue
        own.append(
            {
                "url": link["url"],
                "hidden": link["hidden"],
                "people": link["people"],
                "machines": link["machines"],
                "fixed": {
                    "to": link["fixed_url"],
                    "at": link["fixed_at"],
                    "by": link["fixed_by"] or "",
                }
                if link["fixed_at"]
                else None,
                # Readers following it get a 404, counted nowhere: the author
                # fixes where it goes.
                "leads_nowhere": not is_web_address(link["fixed_url"] or link["url"]),
            }
        )
    return own, in_digests


def link_address(link: dict) -> str:
    """Where a report's link goes, in words: a fixed link by where its clicks go
    now, then when and by whom it was fixed and what it was; as the desk's
    report shows it."""
    if not (fixed := link["fixed"]):
        return link["url"]
    by = f" by {fixed['by']}" if fixed["by"] else ""
    when = dateformat.format(timezone.localtime(fixed["at"]), "j F Y")
    return f"{fixed['to']} (fixed on {when}{by}, was {link['url']})"


def _first_hours(
    announcement: Mailing | None, went_out: datetime | None, *, recipients: int
) -> dict:
    """The announcement's opens and clicks in its first CHART_HOURS, a bar every
    HOURS_PER_BAR hours from the clock hour it went out in (when its mailing was
    made, if no reader's email went out yet). One query."""
    # An announcement to nobody (every reader hears by digest) has no hours:
    # 72 of zeros read as an email nobody opened.
    if announcement is None or not recipients:
        return {"from": None, "bars": []}
    start = (
        (went_out or announcement.created_at)
        .astimezone(UTC)
        .replace(minute=0, second=0, microsecond=0)
    )
    bars = [
        {
            "hours": f"{first}-{first + HOURS_PER_BAR}",
            "opens": {"people": 0, "machines": 0},
            "clicks": {"people": 0, "machines": 0},
        }
        for first in range(0, CHART_HOURS, HOURS_PER_BAR)
    ]
    hours = announcement.hours.filter(
        hour__gte=start, hour__lt=start + timedelta(hours=CHART_HOURS)
    )
    for row in hours:
        bar = bars[int((row.hour - start).total_seconds()) // 3600 // HOURS_PER_BAR]
        for kind in ("opens", "clicks"):
            for who in ("people", "machines"):
                bar[kind][who] += getattr(row, f"{kind}_{who}")
    return {"from": start.isoformat(), "bars": bars}


def _groups(post: Post, deliveries: QuerySet) -> dict:
    """Recipients, delivered, bounced and unsubscribed readers per region and per
    organisation followed, groups under SMALLEST_GROUP folded into one "other"
    per kind; with per-reader engagement on, how many agreed to it and their
    opens and clicks. Two to six queries, however many readers and groups."""
    counted = {
        "readers": Count("subscriber", distinct=True),
        "delivered": Count("subscriber", distinct=True, filter=_ARRIVED),
        "bounced": Count("subscriber", distinct=True, filter=_BOUNCED),
        "unsubscribed": Count("subscriber", distinct=True, filter=_LEFT),
    }
    if settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        counted["agreed"] = Count("subscriber", distinct=True, filter=_AGREED)
    rows = (
        deliveries.filter(subscriber__topics__kind__in=list(GROUP_KINDS))
        .values(kind=F("subscriber__topics__kind"), slug=F("subscriber__topics__value"))
        .annotate(**counted)
        .order_by("kind", "-readers", "slug")
    )
    groups = {kind: [] for kind in GROUP_KINDS}
    folded = {kind: [] for kind in GROUP_KINDS}
    for row in rows:
        kind = row.pop("kind")
        if row["readers"] >= SMALLEST_GROUP:
            groups[kind].append(row)
        else:
            folded[kind].append(row["slug"])
    for kind, (model, _) in GROUP_KINDS.items():
        if slugs := [group["slug"] for group in groups[kind]]:
            names = dict(
                model.objects.filter(slug__in=slugs).values_list("slug", "name")
            )
            for group in groups[kind]:
                group["name"] = names.get(group["slug"], group["slug"])
    if any(folded.values()):
        match = Q()
        for kind, slugs in folded.items():
            if slugs:
                match |= Q(
                    subscriber__topics__kind=kind, subscriber__topics__value__in=slugs
                )
        # Counted again together: a reader following two small groups is one reader.
        others = {
            row.pop("kind"): row
            for row in deliveries.filter(match)
            .values(kind=F("subscriber__topics__kind"))
            .annotate(**counted)
            .order_by()
        }
        for kind, slugs in folded.items():
            if slugs:
                other = others[kind]
                if other["readers"] < SMALLEST_GROUP:
                    other = dict.fromkeys(other)  # too few to show even together
                name = GROUP_KINDS[kind][1]
                groups[kind].append(
                    {"slug": "", "name": name, "folded": len(slugs), **other}
                )
    if settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        _groups_engagement_add(post, groups)
    return groups


def _groups_engagement_add(post: Post, groups: dict) -> None:
    """Each group's opens and clicks, people and machines apart, from the
    Engagement rows of the readers who agreed, where SMALLEST_GROUP or more of
    the group agreed (agreed, opens and clicks None elsewhere). At most one
    query: each kind's "other" groups count as one, so that a reader in two of
    them counts once."""
    every = [group for kind_groups in groups.values() for group in kind_groups]
    for group in every:
        if (group["agreed"] or 0) < SMALLEST_GROUP:
            group.update(agreed=None, opens=None, clicks=None)
    if all(group["agreed"] is None for group in every):
        return
    named = {
        kind: [group["slug"] for group in kind_groups if group["slug"]]
        for kind, kind_groups in groups.items()
    }
    group_slug = Case(
        *(
            When(
                subscriber__topics__kind=kind,
                subscriber__topics__value__in=slugs,
                then=F("subscriber__topics__value"),
            )
            for kind, slugs in named.items()
            if slugs
        ),
        default=Value(""),
    )
    # Only what the reader did with an email that carried this post to them; in
    # a digest, which carries several posts, only clicks on this post's link.
    carried = Delivery.objects.carrying(post).filter(
        mailing=OuterRef("mailing"), subscriber=OuterRef("subscriber")
    )
    opened, clicked = Q(kind=Engagement.Kind.OPEN), Q(kind=Engagement.Kind.CLICK)
    by = {"people": Q(machine=False), "machines": Q(machine=True)}
    rows = (
        Engagement.objects.filter(
            Exists(carried), subscriber__topics__kind__in=list(GROUP_KINDS)
        )
        .filter(opened | Q(link__in=Link.objects.of_post(post).values("pk")))
        .values(group_kind=F("subscriber__topics__kind"), group_slug=group_slug)
        .annotate(
            **{
                f"{figure}_{who}": Count("pk", distinct=True, filter=done & machine)
                for figure, done in (("opens", opened), ("clicks", clicked))
                for who, machine in by.items()
            }
        )
        .order_by()
    )
    counts = {(row.pop("group_kind"), row.pop("group_slug")): row for row in rows}
    for kind, kind_groups in groups.items():
        for group in kind_groups:
            if group["agreed"] is not None:
                found = counts.get((kind, group["slug"]), {})
                for figure in ("opens", "clicks"):
                    group[figure] = {who: found.get(f"{figure}_{who}", 0) for who in by}


# The report's figures as CSV rows, in the order the admin shows them.
REPORT_FIGURES = [
    ("recipients", "Recipients"),
    ("as_published", "… as published"),
    ("through_digests", "… in digests"),
    ("accepted", "Accepted by the provider"),
    ("failed", "Refused by the provider"),
    ("uncertain", "Uncertain (to settle)"),
    ("queued", "Waiting to be sent"),
    ("delivered", "Delivered"),
    ("bounced", "Bounced"),
    ("bounced_hard", "… hard"),
    ("bounced_soft", "… soft"),
    ("sender_refused", "Refused because of our sender"),
    ("complained", "Complained"),
    ("unsubscribed", "Unsubscribed"),
    ("skipped", "Skipped (never sent)"),
]
# The report's opens and clicks, people and machines apart, in the order shown.
ENGAGEMENT_FIGURES = [
    ("opens", "Opens"),
    ("clicks", "Clicks"),
    ("clicks_in_digests", "Clicks in digests"),
]
GROUP_FIGURES = ["readers", "delivered", "bounced", "unsubscribed"]


# With per-reader engagement on, after GROUP_FIGURES.
GROUP_ENGAGEMENT_FIGURES = [
    "agreed",
    "opens people",
    "opens machines",
    "clicks people",
    "clicks machines",
]


def group_figures(report: dict) -> list[str]:
    """The names of the groups' figures in the report."""
    if report["readers_agreed"] is None:
        return GROUP_FIGURES
    return GROUP_FIGURES + GROUP_ENGAGEMENT_FIGURES


def group_counts(group: dict) -> list[int | None]:
    """A group's figures in the order group_figures names them; None where not
    shown."""
    counts = [group[key] for key in GROUP_FIGURES]
    if "agreed" in group:
        counts.append(group["agreed"])
        for key in ("opens", "clicks"):
            for who in ("people", "machines"):
                counts.append(None if group[key] is None else group[key][who])
    return counts


def post_report_rows(report: dict) -> list[list]:
    rows = [["figure", "count", "people", "machines"]]
    rows += [[label, report[key], "", ""] for key, label in REPORT_FIGURES]
    for key, label in ENGAGEMENT_FIGURES:
        if report[key] is None:
            rows.append([label, "", OPENS_NOT_COUNTED, ""])
        else:
            rows.append([label, "", report[key]["people"], report[key]["machines"]])
    rows.append([])
    rows.append(["link", "hidden", "people", "machines"])
    rows += [
        [
            link_address(link),
            "yes" if link["hidden"] else "",
            link["people"],
            link["machines"],
        ]
        for link in report["links"]
    ]
    rows.append([])
    rows.append(
        ["hours", "opens people", "opens machines", "clicks people", "clicks machines"]
    )
    rows += [
        [
            bar["hours"],
            bar["opens"]["people"],
            bar["opens"]["machines"],
            bar["clicks"]["people"],
            bar["clicks"]["machines"],
        ]
        for bar in report["first_hours"]["bars"]
    ]
    for kind, groups in report["groups"].items():
        rows.append([])
        rows.append([kind, *group_figures(report)])
        rows += [
            [group["name"], *("" if n is None else n for n in group_counts(group))]
            for group in groups
        ]
    return rows
