"""The newsletter's part of the demo (`manage.py seed_demo`, which lives in posts
and tells newsletter through posts.signals.demo_seeded): history for the desk.

Deterministic (a seeded random), and run once: a database that has the demo
readers keeps them.
"""

import random
from datetime import timedelta

from django.core.management.base import CommandError
from django.utils import timezone

from posts.models import Category, Post, Region

from .models import Consent, Subscriber, SubscriberTopic, Suppression
from .subscriptions import CONSENT_SOURCE_FORM, CONSENT_VERSION, CONSENT_WORDING

DEMO_DOMAIN = "readers.demo.example"
DEMO_READERS = 160
DEMO_WEEKS = 12


def readers_history_seed(sender=None, **kwargs) -> None:
    """Readers who joined over the last twelve weeks from the subscribe form (on
    the home page and on posts), an import and the admin; some paused, some left,
    a few bounced or complained, a few still pending."""
    if Subscriber.objects.filter(email__endswith=f"@{DEMO_DOMAIN}").exists():
        return
    # Readers of the site's own and none of the demo's: a live site, whose next
    # post would go to the demo's readers too. seed_demo's transaction rolls back.
    if Subscriber.objects.exists():
        raise CommandError(
            "This database holds readers the demo did not make: the demo is for a "
            "new database, never a live site's. Nothing changed."
        )
    rng = random.Random(19)
    now = timezone.now()
    pages = [
        "",  # came to the form directly
        "/",
        *(p.get_absolute_url() for p in Post.objects.all()[:4]),
    ]
    frequencies = SubscriberTopic.Frequency.values
    topics = [
        *(
            (SubscriberTopic.Kind.REGION, s)
            for s in Region.objects.values_list("slug", flat=True)[:4]
        ),
        *(
            (SubscriberTopic.Kind.CATEGORY, s)
            for s in Category.objects.values_list("slug", flat=True)[:3]
        ),
    ]
    for n in range(DEMO_READERS):
        joined = now - timedelta(days=rng.uniform(0, DEMO_WEEKS * 7), hours=n % 7)
        fate = rng.random()
        status = Subscriber.Status.ACTIVE
        left_at = None
        reason = None
        if fate < 0.06:
            status = Subscriber.Status.PENDING
        elif fate < 0.18:
            status, reason = (
                Subscriber.Status.UNSUBSCRIBED,
                Suppression.Reason.UNSUBSCRIBED,
            )
        elif fate < 0.21:
            status, reason = Subscriber.Status.BOUNCED, Suppression.Reason.HARD_BOUNCE
        elif fate < 0.22:
            status, reason = Subscriber.Status.COMPLAINED, Suppression.Reason.COMPLAINT
        if reason:
            left_at = joined + (now - joined) * rng.uniform(0.2, 1)
        confirmed_at = None if status == Subscriber.Status.PENDING else joined
        subscriber = Subscriber.objects.create(
            email=f"reader{n:03}@{DEMO_DOMAIN}",
            status=status,
            confirmed_at=confirmed_at,
            unsubscribed_at=left_at,
            paused_at=joined + timedelta(days=3) if 0.22 <= fate < 0.26 else None,
        )
        Subscriber.objects.filter(pk=subscriber.pk).update(created_at=joined)
        source = rng.choices(["form", "import", "admin"], weights=[80, 15, 5])[0]
        if source == "form":
            Consent.objects.create(
                subscriber=subscriber,
                created_at=joined,
                confirmed_at=confirmed_at,
                wording=CONSENT_WORDING,
                wording_version=CONSENT_VERSION,
                source=CONSENT_SOURCE_FORM,
                page=rng.choice(pages),
            )
        elif source == "import" and confirmed_at:
            Consent.objects.create(
                subscriber=subscriber,
                created_at=joined,
                confirmed_at=confirmed_at,
                wording="Consent given elsewhere (Probation conference sign-up "
                "sheet), imported by the author.",
                wording_version=CONSENT_VERSION,
                source="Probation conference sign-up sheet",
            )
        choice = rng.random()
        if choice < 0.4:
            followed = [(SubscriberTopic.Kind.EVERYTHING, "")]
        elif choice < 0.8:
            followed = rng.sample(topics, k=min(len(topics), rng.randint(1, 2)))
        else:
            followed = []  # never chose: everything, as published
        frequency = rng.choice(frequencies)
        SubscriberTopic.objects.bulk_create(
            SubscriberTopic(
                subscriber=subscriber, kind=kind, value=value, frequency=frequency
            )
            for kind, value in followed
        )
        if reason:
            suppression = Suppression.objects.create(
                address_hash=Suppression.hash_address(subscriber.email),
                reason=reason,
                reader=subscriber,
            )
            Suppression.objects.filter(pk=suppression.pk).update(
                created_at=left_at, updated_at=left_at, reader_left_at=left_at
            )
