"""The demo posts' emails, for `manage.py seed_demo` (through posts.signals.
demo_seeded, since posts knows nothing of email): readers who follow regions
and organisations, each announced post sent to them with its ledger, and opens and
clicks over the first 72 hours, people and machines apart, so that each post's
report has something to show. Made up, deterministically; never sent."""

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from posts.models import Post

from .models import (
    Batch,
    Delivery,
    Link,
    Mailing,
    MailingHour,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from .subscriptions import address_suppress

# Only the demo's own readers get the demo's history, never a real subscriber.
DEMO_ADDRESS = "demo-reader-"
DEMO_READERS = 180
# What the demo readers follow, by their number modulo the list's length: most
# follow a region, some an organisation too, a few everything. Surrey's youth
# service has too few readers to be named in a report.
REGIONS = ["east-of-england"] * 4 + ["south-east"] * 2 + ["wales", "east-midlands"]
REGIONS += [""] * 2  # everything
ORGANISATIONS = ["nacro", "purple-futures", "hertfordshire-yot", "", "", ""]
ORGANISATIONS += ["nacro", "", "", "", "", "", "", "", "surrey-yos"]

# Of the readers a post reached: how many open it, how many behind a scanning
# gateway, how many use Apple Mail (its privacy proxy opens every email).
OPENS = 0.45
SCANNED = 0.12
APPLE_MAIL = 0.35
CLICKS = 0.18
BOUNCES = 0.02
HARD_BOUNCES = 0.3  # of the bounces: the address no longer exists
COMPLAINTS = 0.004
LEAVES = 0.01
FIRST_HOURS = 72


def mailings_history_seed(sender=None, *, posts: list[Post], **kwargs) -> None:
    """Give each of the demo's announced posts without an email its announcement,
    as sent (nothing when run again). Never the author's own: one published
    without an email would report one it never had."""
    _demo_readers_create()
    for post in (
        Post.objects.published()
        .filter(
            pk__in=[post.pk for post in posts],
            announced_at__isnull=False,
            mailings__isnull=True,
        )
        .order_by("announced_at")
    ):
        _announcement_create(post, random.Random(post.slug))


def _demo_readers_create() -> None:
    """The demo's readers, made the first time, subscribed before the first post."""
    if not Subscriber.objects.filter(email__startswith=DEMO_ADDRESS).exists():
        joined = timezone.make_aware(datetime(2017, 1, 9, 9))
        readers = Subscriber.objects.bulk_create(
            Subscriber(
                email=f"{DEMO_ADDRESS}{n:03}@example.org",
                status=Subscriber.Status.ACTIVE,
                confirmed_at=joined,
            )
            for n in range(DEMO_READERS)
        )
        SubscriberTopic.objects.bulk_create(
            SubscriberTopic(subscriber=reader, kind=kind, value=value)
            for n, reader in enumerate(readers)
            for kind, value in (
                (SubscriberTopic.Kind.REGION, REGIONS[n % len(REGIONS)]),
                (
                    SubscriberTopic.Kind.ORGANISATION,
                    ORGANISATIONS[n % len(ORGANISATIONS)],
                ),
            )
            if value
        )
        # Readers of long standing: not new on the desk's growth chart.
        Subscriber.objects.filter(email__startswith=DEMO_ADDRESS).update(
            created_at=joined
        )


def _announcement_create(post: Post, rng: random.Random) -> None:
    went_out = post.announced_at
    audience = list(
        Subscriber.objects.confirmed()
        .filter(email__startswith=DEMO_ADDRESS)
        .following(post.topic_keys(), frequency=SubscriberTopic.Frequency.INSTANT)
        .order_by("pk")
    )
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.POST,
        post=post,
        status=Mailing.Status.DONE,
        batch_count=1,
        batch_size=len(audience),
        planned_at=went_out,
        finished_at=went_out + timedelta(minutes=2),
    )
    Mailing.objects.filter(pk=mailing.pk).update(created_at=went_out)
    batch = Batch.objects.create(
        mailing=mailing,
        number=1,
        status=Batch.Status.DONE,
        size=len(audience),
        sent=len(audience),
        finished_at=went_out + timedelta(minutes=2),
    )
    outcomes = {
        reader.pk: rng.choices(
            ["bounced", "complained", "delivered"],
            [BOUNCES, COMPLAINTS, 1 - BOUNCES - COMPLAINTS],
        )[0]
        for reader in audience
    }
    Delivery.objects.bulk_create(
        Delivery(
            mailing=mailing,
            batch=batch,
            subscriber=reader,
            status=Delivery.Status.SENT,
            esp_message_id=f"demo-{mailing.pk}-{reader.pk}",
            sent_at=went_out + timedelta(seconds=30),
            last_event=outcomes[reader.pk],
            last_event_at=went_out + timedelta(minutes=1),
        )
        for reader in audience
    )
    reached = [reader for reader in audience if outcomes[reader.pk] == "delivered"]
    for reader in audience:
        if outcomes[reader.pk] == "complained":
            _left(reader, Suppression.Reason.COMPLAINT, went_out + timedelta(hours=2))
        elif outcomes[reader.pk] == "bounced" and rng.random() < HARD_BOUNCES:
            _left(reader, Suppression.Reason.HARD_BOUNCE, went_out)
    for reader in reached:
        if rng.random() < LEAVES:
            left_at = went_out + timedelta(hours=rng.uniform(1, 100))
            _left(reader, Suppression.Reason.UNSUBSCRIBED, left_at)
    _engagement_create(mailing, went_out, len(reached), rng)


def _left(reader: Subscriber, reason: str, at: datetime) -> None:
    """The reader leaves, at the time of the demo's history."""
    address_suppress(email=reader.email, reason=reason)
    Subscriber.objects.filter(pk=reader.pk).update(unsubscribed_at=at)
    Suppression.objects.filter(
        address_hash=Suppression.hash_address(reader.email)
    ).update(created_at=at, updated_at=at, reader_left_at=at)


def _engagement_create(
    mailing: Mailing, went_out: datetime, reached: int, rng: random.Random
) -> None:
    """Opens and clicks of the readers it reached, by the hour: people open over
    the first day or two and follow one link; Apple's proxy opens on arrival;
    gateways follow every link, the hidden one too, within a minute."""
    post = mailing.post
    end = min(went_out + timedelta(hours=FIRST_HOURS), timezone.now())
    urls = [settings.SITE_URL + post.get_absolute_url()]
    urls += [i.report_url for i in post.inspections.all() if i.report_url]
    urls += [
        settings.SITE_URL + link.to_post.get_absolute_url()
        for link in post.links_out.select_related("to_post")
    ]
    weights = [6, 3, *[1] * len(urls)][: len(urls)]
    hidden = settings.SITE_URL + "/"
    clicks = {(url, False): Counter() for url in urls} | {(hidden, True): Counter()}
    hours: dict[datetime, Counter] = {}

    def count(at: datetime, counter: str, link: tuple | None = None) -> None:
        if at < end:  # the chart's three days, and nothing yet to come
            hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            hours.setdefault(hour, Counter())[counter] += 1
            if link:
                clicks[link][counter.removeprefix("clicks_")] += 1

    for _ in range(reached):
        if rng.random() < APPLE_MAIL:
            count(went_out + timedelta(minutes=rng.uniform(1, 5)), "opens_machines")
        if rng.random() < SCANNED:
            at = went_out + timedelta(seconds=rng.uniform(40, 90))
            for link in clicks:
                count(at, "clicks_machines", link)
        if rng.random() < OPENS:
            opened = went_out + timedelta(hours=rng.expovariate(1 / 9))
            count(opened, "opens_people")
            if rng.random() < CLICKS / OPENS:
                url = rng.choices(urls, weights)[0]
                count(opened + timedelta(minutes=2), "clicks_people", (url, False))
    Link.objects.bulk_create(
        Link(mailing=mailing, url=url, hidden=trap, **counts)
        for (url, trap), counts in clicks.items()
    )
    MailingHour.objects.bulk_create(
        MailingHour(mailing=mailing, hour=hour, **counts)
        for hour, counts in hours.items()
    )
    Mailing.objects.filter(pk=mailing.pk).update(
        opens_people=sum(counts["opens_people"] for counts in hours.values()),
        opens_machines=sum(counts["opens_machines"] for counts in hours.values()),
    )
