"""What is particular to digests, the daily and weekly mailings: when a round is
due, which posts each reader's digest holds, and how it is rendered.

Everything else (the round's one Mailing per period, planning into batches, the
claim, retries, uncertain sends and their settling, the breaker and the budget) is
the delivery engine's (newsletter/delivery/), as for a post's announcement.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Exists, OuterRef
from django.utils import timezone

from posts.models import Post

from .emails import (
    build_message,
    list_headers,
    preferences_url,
    render_email,
    unsubscribe_url,
)
from .engagement import LinkTracker
from .models import (
    Delivery,
    DigestSettings,
    Mailing,
    Subscriber,
    SubscriberQuerySet,
    SubscriberTopic,
)

Frequency = SubscriberTopic.Frequency

# How far back a round looks for posts. Longer than the period, so a round that
# beat missed loses nothing; the ledger keeps any post from coming twice.
LOOKBACK = {Frequency.DAILY: timedelta(days=3), Frequency.WEEKLY: timedelta(days=15)}

# Readers per planning step. Their post ids are gathered in memory (one query per
# post of the lookback), so this bounds memory and the step's transaction.
READERS_PER_PAGE = 2_000


def period_of(now: datetime) -> date:
    """The period a round started at `now` stands for: the site's day."""
    return timezone.localtime(now).date()


def rounds_due(*, now: datetime) -> list[str]:
    """The frequencies whose round for this period may start now."""
    when = DigestSettings.load()
    local = timezone.localtime(now)
    if local.hour < when.hour:
        return []
    due = [Frequency.DAILY]
    if local.weekday() == when.weekday:
        due.append(Frequency.WEEKLY)
    started = set(
        Mailing.objects.filter(
            kind=Mailing.Kind.DIGEST, period=period_of(now)
        ).values_list("frequency", flat=True)
    )
    return [f for f in due if f not in started]


def audience(frequency: str) -> SubscriberQuerySet:
    """Who may get this round: confirmed readers following anything at this
    frequency. Only those with posts waiting for them get a digest."""
    at_frequency = SubscriberTopic.objects.filter(
        subscriber=OuterRef("pk"), frequency=frequency
    )
    return Subscriber.objects.confirmed().filter(Exists(at_frequency))


def posts_by_reader(
    *, mailing: Mailing, readers: SubscriberQuerySet
) -> dict[int, list[int]]:
    """Subscriber id -> ids of the posts their digest holds, for these readers:
    posts announced since they confirmed and within the lookback, matching a topic
    they follow at this frequency and none they follow instantly, and not yet sent
    to them, announced or in an earlier digest."""
    frequency, now = mailing.frequency, mailing.created_at
    posts = Post.objects.published().filter(
        email_subscribers=True,
        announced_at__gte=now - LOOKBACK[frequency],
        announced_at__lte=now,
    )
    matches = defaultdict(list)
    for post in posts.order_by("announced_at", "pk"):
        keys = post.topic_keys()
        matched = (
            readers.following(keys, frequency=frequency)
            .filter(confirmed_at__lt=post.announced_at)
            .exclude(
                pk__in=Subscriber.objects.following(keys, frequency=Frequency.INSTANT)
            )
            .exclude(
                pk__in=Delivery.objects.carrying(post)
                .received()
                .values("subscriber_id")
            )
        )
        for subscriber_id in matched.values_list("pk", flat=True):
            matches[subscriber_id].append(post.pk)
    return matches


class DigestEmail:
    """A batch's digests, each rendered for its reader with their own posts."""

    def __init__(self, mailing: Mailing, recipients: Iterable) -> None:
        self.mailing = mailing
        self.links = LinkTracker(mailing.pk)
        delivery_ids = [r.delivery_id for r in recipients]
        self.readers = Subscriber.objects.in_bulk([r.pk for r in recipients])
        held = Delivery.posts.through.objects.filter(
            delivery_id__in=delivery_ids
        ).values_list("delivery_id", "post_id")
        posts = Post.objects.in_bulk({post_id for _, post_id in held})
        self.posts: dict[int, list[Post]] = defaultdict(list)
        for delivery_id, post_id in held:
            self.posts[delivery_id].append(posts[post_id])
        for held_posts in self.posts.values():
            held_posts.sort(key=lambda post: (post.announced_at, post.pk))

    def for_reader(self, recipient, *, connection=None) -> EmailMultiAlternatives:
        subscriber = self.readers[recipient.pk]
        leave_url = unsubscribe_url(subscriber)
        email = render_email(
            "digest",
            {
                "subscriber": subscriber,
                "mailing": self.mailing,
                "posts": [
                    {"post": post, "url": settings.SITE_URL + post.get_absolute_url()}
                    for post in self.posts[recipient.delivery_id]
                ],
                "unsubscribe_url": leave_url,
                "preferences_url": preferences_url(subscriber),
            },
        )
        return build_message(
            replace(email, html=self.links.tracked(email.html)),
            to=subscriber.email,
            headers=list_headers(unsubscribe_url=leave_url),
            connection=connection,
        )
