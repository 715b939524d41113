"""Each post's report: what became of its emails, and opens and clicks by people
and machines, read from the ledger and the counts engagement.py records."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, F, Q, Sum

from posts.models import Post

from .engagement import CLICK_RULES, OPEN_RULES
from .models import Delivery, Link, Mailing, Subscriber

# A reader who leaves within this long of an email counts as leaving because of it.
UNSUBSCRIBED_WITHIN = timedelta(days=7)
_ARRIVED = ["delivered", "opened", "clicked", "unsubscribed", "complained"]
_BOUNCED = ["bounced", "rejected", "deferred"]

DELIVERY_RULES = (
    "Recipients are the readers the post went to, as published and in digests. "
    "Accepted: the email provider took the message. Delivered: the provider "
    "reported it arrived (or later reported it opened, clicked, unsubscribed or "
    "complained about). Bounced: the provider's latest word was a bounce; hard "
    "when the address was suppressed for it, soft (a full mailbox, a server "
    "that said try later) otherwise. Complained: marked as spam. Unsubscribed: "
    f"left within {UNSUBSCRIBED_WITHIN.days} days of this email, or through the "
    "provider's own link. Opens count the post's own email, not the digests, "
    "which carry several posts."
)


def post_report(post: Post) -> dict:
    """What happened to a post's emails, people and machines apart: the figures
    the admin report, its CSV and `manage.py post_report` show. Three queries,
    however many readers and links."""
    deliveries = Delivery.objects.carrying(post)
    arrived = Q(last_event__in=_ARRIVED)
    bounced = Q(last_event__in=_BOUNCED)
    hard = bounced & Q(subscriber__status=Subscriber.Status.BOUNCED)
    left = Q(
        subscriber__status=Subscriber.Status.UNSUBSCRIBED,
        subscriber__unsubscribed_at__gte=F("sent_at"),
        subscriber__unsubscribed_at__lt=F("sent_at") + UNSUBSCRIBED_WITHIN,
    ) | Q(last_event="unsubscribed")
    figures = deliveries.aggregate(
        recipients=Count("pk"),
        as_published=Count("pk", filter=Q(mailing__kind=Mailing.Kind.POST)),
        through_digests=Count("pk", filter=Q(mailing__kind=Mailing.Kind.DIGEST)),
        accepted=Count("pk", filter=Q(status=Delivery.Status.SENT)),
        delivered=Count("pk", filter=arrived),
        bounced=Count("pk", filter=bounced),
        bounced_hard=Count("pk", filter=hard),
        complained=Count("pk", filter=Q(last_event="complained")),
        unsubscribed=Count("pk", filter=left),
    )
    figures["bounced_soft"] = figures["bounced"] - figures["bounced_hard"]
    announcement = Mailing.objects.filter(kind=Mailing.Kind.POST, post=post).first()
    figures["opens"] = {
        "people": announcement.opens_people if announcement else 0,
        "machines": announcement.opens_machines if announcement else 0,
    }
    # The announcement's every link, and each digest's link to this post.
    digests = Delivery.posts.through.objects.filter(post=post).values(
        "delivery__mailing_id"
    )
    links = (
        Link.objects.filter(
            Q(mailing__kind=Mailing.Kind.POST, mailing__post=post)
            | Q(
                mailing_id__in=digests,
                url=settings.SITE_URL + post.get_absolute_url(),
            )
        )
        .values("url", "hidden")
        .annotate(people=Sum("people"), machines=Sum("machines"))
        .order_by("hidden", "-people", "url")
    )
    figures["links"] = [
        {
            "url": link["url"],
            "hidden": link["hidden"],
            "people": link["people"],
            "machines": link["machines"],
        }
        for link in links
    ]
    figures["clicks"] = {
        "people": sum(link["people"] for link in figures["links"]),
        "machines": sum(link["machines"] for link in figures["links"]),
    }
    return {
        "post": post.slug,
        "title": post.title,
        **figures,
        "rules": {
            "deliveries": DELIVERY_RULES,
            "opens": OPEN_RULES,
            "clicks": CLICK_RULES,
        },
    }


# The report's figures as CSV rows, in the order the admin shows them.
REPORT_FIGURES = [
    ("recipients", "Recipients"),
    ("as_published", "… as published"),
    ("through_digests", "… in digests"),
    ("accepted", "Accepted by the provider"),
    ("delivered", "Delivered"),
    ("bounced", "Bounced"),
    ("bounced_hard", "… hard"),
    ("bounced_soft", "… soft"),
    ("complained", "Complained"),
    ("unsubscribed", "Unsubscribed"),
]


def post_report_rows(report: dict) -> list[list]:
    rows = [["figure", "count", "people", "machines"]]
    rows += [[label, report[key], "", ""] for key, label in REPORT_FIGURES]
    for key in ("opens", "clicks"):
        rows.append(
            [key.capitalize(), "", report[key]["people"], report[key]["machines"]]
        )
    rows.append([])
    rows.append(["link", "hidden", "people", "machines"])
    rows += [
        [link["url"], "yes" if link["hidden"] else "", link["people"], link["machines"]]
        for link in report["links"]
    ]
    return rows
