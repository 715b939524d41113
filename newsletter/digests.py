"""Daily and weekly digests: each reader's matched posts not yet sent to them.

Beat rings every 15 minutes; a round is due once the set hour (and, weekly, the set
day) has come, and the unique (frequency, period) of DigestRun makes it happen
at most once per period, however often beat rings or however many workers run.
The round's ledger (DigestDelivery, unique per run and subscriber) is written in
the transaction that creates the run, and cut into slices that several workers send
at once. Each row is claimed before its email goes out, so a repeated task sends
nothing twice, and a row whose fate is unknown (the connection dropped after the
request, or the worker died holding its claim) becomes UNCERTAIN, never resent.
Digests draw on the sending budget posts use; when the provider refuses for now (an
error answer, no connection, a 429) the row goes back to the queue and its slice
stops, to be retried later as a whole; a reader it refuses outright (an inactive
address, an SMTP 5xx) is FAILED, and one an SMTP server defers waits for the slice's
retry while the others go on.
"""

import smtplib
from collections import defaultdict
from datetime import datetime, timedelta
from functools import partial

from anymail.exceptions import AnymailRecipientsRefused
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from posts.models import Post

from . import digest_tasks
from .delivery import (
    ProviderUnavailable,
    ReaderDeferred,
    RetryLater,
    provider,
    provider_refused,
    retry_after,
    smtp_refusal,
    take_from_budget,
)
from .emails import (
    build_message,
    list_headers,
    preferences_url,
    render_email,
    unsubscribe_url,
)
from .models import (
    Delivery,
    DigestDelivery,
    DigestRun,
    DigestSettings,
    Subscriber,
    SubscriberTopic,
)

Frequency = SubscriberTopic.Frequency

# How far back a round looks for posts. Longer than the period, so a round that
# beat missed loses nothing; the ledgers keep any post from coming twice.
LOOKBACK = {Frequency.DAILY: timedelta(days=3), Frequency.WEEKLY: timedelta(days=15)}

# A round still sending after this long is rung again (its task may have given up
# or been lost): longer than its task's retries normally take.
UNFINISHED_AFTER = timedelta(hours=2)

# Digests per task: a round is cut into slices of this many, which several workers
# send at once (each digest is its own email, so a slice is only a share of work).
SLICE = 100

# A post counts as sent to a reader unless the provider refused it or it was skipped.
_NOT_SENT = [Delivery.Status.FAILED, Delivery.Status.SKIPPED]


def digests_due(*, now: datetime) -> list[str]:
    """The frequencies whose round for this period may start now."""
    when = DigestSettings.load()
    local = timezone.localtime(now)
    if local.hour < when.hour:
        return []
    due = [Frequency.DAILY]
    if local.weekday() == when.weekday:
        due.append(Frequency.WEEKLY)
    return [
        f
        for f in due
        if not DigestRun.objects.filter(frequency=f, period=local.date()).exists()
    ]


def digest_run_create(*, frequency: str, now: datetime) -> DigestRun | None:
    """Create this period's round and its ledger; None if it exists already."""
    try:
        with transaction.atomic():
            run = DigestRun.objects.create(
                frequency=frequency, period=timezone.localtime(now).date()
            )
            posts_by_reader = _unsent_matches(frequency=frequency, now=now)
            rows = DigestDelivery.objects.bulk_create(
                DigestDelivery(run=run, subscriber_id=subscriber_id)
                for subscriber_id in sorted(posts_by_reader)
            )
            DigestDelivery.posts.through.objects.bulk_create(
                DigestDelivery.posts.through(digestdelivery_id=row.pk, post_id=post_id)
                for row in rows
                for post_id in posts_by_reader[row.subscriber_id]
            )
    except IntegrityError:  # another worker created this period's round
        return None
    return run


def _unsent_matches(*, frequency: str, now: datetime) -> dict[int, list[int]]:
    """Subscriber id -> ids of the posts their digest holds: posts announced since
    they confirmed and within the lookback, matching a topic they follow at this
    frequency and none they follow instantly, and not yet sent to them, by the
    instant send or an earlier digest."""
    posts = Post.objects.published().filter(
        email_subscribers=True,
        announced_at__gte=now - LOOKBACK[frequency],
        announced_at__lte=now,
    )
    matches = defaultdict(list)
    for post in posts.order_by("announced_at", "pk"):
        keys = post.topic_keys()
        readers = (
            Subscriber.objects.confirmed()
            .following(keys, frequency=frequency)
            .filter(confirmed_at__lt=post.announced_at)
            .exclude(
                pk__in=Subscriber.objects.following(keys, frequency=Frequency.INSTANT)
            )
            .exclude(
                pk__in=Delivery.objects.filter(send__post=post)
                .exclude(status__in=_NOT_SENT)
                .values("subscriber_id")
            )
            .exclude(
                pk__in=DigestDelivery.objects.filter(posts=post)
                .exclude(status__in=_NOT_SENT)
                .values("subscriber_id")
            )
        )
        for subscriber_id in readers.values_list("pk", flat=True):
            matches[subscriber_id].append(post.pk)
    return matches


def unfinished_runs(*, now: datetime) -> list[int]:
    """Rounds started over UNFINISHED_AFTER ago that still have digests queued."""
    return list(
        DigestRun.objects.filter(
            finished_at__isnull=True, created_at__lt=now - UNFINISHED_AFTER
        ).values_list("pk", flat=True)
    )


def slices(*, run_id: int) -> list[tuple[int, int]]:
    """The round's queued digests as (first, last) row ids of SLICE digests each."""
    ids = list(
        DigestDelivery.objects.filter(run_id=run_id, status=Delivery.Status.QUEUED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return [
        (ids[i], ids[min(i + SLICE, len(ids)) - 1]) for i in range(0, len(ids), SLICE)
    ]


def send_digest_run(
    *, run_id: int, first: int | None = None, last: int | None = None
) -> int:
    """Send the round's queued digests (those with row ids from `first` to `last`,
    when given); returns how many went out. Raises RetryLater, leaving the rest
    queued, when the sending budget or the provider says not now."""
    sent = 0
    pending = DigestDelivery.objects.filter(
        run_id=run_id, status=Delivery.Status.QUEUED
    )
    if first is not None:
        pending = pending.filter(pk__range=(first, last))
    deferred = None
    for row_id in list(pending.values_list("pk", flat=True)):
        try:
            sent += _send_one(row_id)
        except ReaderDeferred as exc:
            deferred = exc  # the others go on; this reader waits for the retry
    close_run(run_id)
    if deferred is not None:
        raise deferred
    return sent


def close_run(run_id: int) -> None:
    """Mark the round finished once none of its digests is queued or being sent."""
    unsettled = DigestDelivery.objects.filter(
        run_id=OuterRef("pk"),
        status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING],
    )
    DigestRun.objects.filter(pk=run_id, finished_at__isnull=True).exclude(
        Exists(unsettled)
    ).update(finished_at=timezone.now())


def settle_lost_claims(*, now: datetime) -> int:
    """Digests whose worker died between claiming and recording them: UNCERTAIN,
    since the email may have gone, and never resent. Returns how many."""
    lost = DigestDelivery.objects.filter(
        status=Delivery.Status.SENDING,
        claimed_at__lt=now - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT),
    )
    run_ids = set(lost.values_list("run_id", flat=True))
    settled = lost.update(
        status=Delivery.Status.UNCERTAIN,
        error="the worker sending it was lost; it may have gone out",
    )
    for run_id in run_ids:
        close_run(run_id)
    return settled


def digests_mark_sent(*, row_ids: list[int]) -> int:
    """Record uncertain digests as delivered: the provider's log shows them."""
    return DigestDelivery.objects.filter(
        pk__in=row_ids, status=Delivery.Status.UNCERTAIN
    ).update(
        status=Delivery.Status.SENT,
        sent_at=timezone.now(),
        error="confirmed with the provider by the author",
    )


def digests_resend(*, row_ids: list[int]) -> int:
    """Send uncertain digests again, knowingly: some may have gone out already,
    and the author decides that a second copy is better than none."""
    with transaction.atomic():
        rows = DigestDelivery.objects.filter(
            pk__in=row_ids, status=Delivery.Status.UNCERTAIN
        )
        run_ids = set(rows.values_list("run_id", flat=True))
        resent = rows.update(
            status=Delivery.Status.QUEUED, claimed_at=None, error="resent by the author"
        )
        DigestRun.objects.filter(pk__in=run_ids).update(finished_at=None)
        for run_id in run_ids:
            transaction.on_commit(partial(digest_tasks.ring_digest_run, run_id))
    return resent


def digests_resolve_with_provider(*, row_ids: list[int]) -> int:
    """Settle uncertain digests by asking the provider: those it took are recorded
    as sent, the others were never accepted and go again. Returns how many were
    settled; raises provider.CannotAsk for providers without a search."""
    settled = 0
    uncertain = DigestDelivery.objects.filter(
        pk__in=row_ids, status=Delivery.Status.UNCERTAIN
    ).values_list("pk", "subscriber__email")
    for row_id, email in uncertain:
        accepted = provider.accepted_recipients(digest=row_id)
        if email in accepted:
            settled += DigestDelivery.objects.filter(
                pk=row_id, status=Delivery.Status.UNCERTAIN
            ).update(
                status=Delivery.Status.SENT,
                esp_message_id=accepted[email],
                sent_at=timezone.now(),
                error="confirmed by the provider",
            )
        else:
            settled += digests_resend(row_ids=[row_id])
    return settled


def _send_one(row_id: int) -> int:
    # The claim: only the worker that moves the row out of QUEUED sends it.
    if not DigestDelivery.objects.filter(
        pk=row_id, status=Delivery.Status.QUEUED
    ).update(status=Delivery.Status.SENDING, claimed_at=timezone.now()):
        return 0
    row = DigestDelivery.objects.select_related("run", "subscriber").get(pk=row_id)
    subscriber = row.subscriber
    if not Subscriber.objects.confirmed().filter(pk=subscriber.pk).exists():
        _finish(row, Delivery.Status.SKIPPED, error="left the audience")
        return 0
    posts = list(row.posts.order_by("announced_at", "pk"))
    leave_url = unsubscribe_url(subscriber)
    email = render_email(
        "digest",
        {
            "subscriber": subscriber,
            "run": row.run,
            "posts": [
                {"post": post, "url": settings.SITE_URL + post.get_absolute_url()}
                for post in posts
            ],
            "unsubscribe_url": leave_url,
            "preferences_url": preferences_url(subscriber),
        },
    )
    message = build_message(
        email, to=subscriber.email, headers=list_headers(unsubscribe_url=leave_url)
    )
    message.metadata = {"digest": str(row.pk)}  # how the provider finds it again
    try:
        take_from_budget(1)
        message.send()
    except RetryLater:
        _release(row)
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        outcome = smtp_refusal(exc, since=row.run.created_at)
        if outcome.status == Delivery.Status.QUEUED:
            _release(row)
            raise ReaderDeferred(outcome.error) from exc
        _finish(row, outcome.status, error=outcome.error)
        return 0
    except AnymailRecipientsRefused:
        # Refused outright (at Postmark: an address that hard-bounced or complained
        # before): nothing went out, and asking again would be refused again.
        refused = ", ".join(sorted(message.anymail_status.status))
        _finish(row, Delivery.Status.FAILED, error=f"provider: {refused}")
        return 0
    except Exception as exc:
        if provider_refused(exc):
            _release(row)
            raise ProviderUnavailable(str(exc), retry_after(exc)) from exc
        # Possibly sent: never resent automatically.
        _finish(row, Delivery.Status.UNCERTAIN, error=str(exc))
        return 0
    status = getattr(message, "anymail_status", None)
    _finish(
        row,
        Delivery.Status.SENT,
        esp_message_id=(status.message_id or "") if status is not None else "",
    )
    return 1


def _release(row: DigestDelivery) -> None:
    """Give up the claim: nothing went out, and the round's retry sends it."""
    DigestDelivery.objects.filter(pk=row.pk).update(status=Delivery.Status.QUEUED)


def _finish(row: DigestDelivery, status: str, **fields) -> None:
    DigestDelivery.objects.filter(pk=row.pk).update(
        status=status,
        sent_at=timezone.now() if status == Delivery.Status.SENT else None,
        **fields,
    )
