"""Creating a mailing, and planning it: the audience, page by page, into batches in
the ledger.

Each step takes the next page of the audience by keyset (id > cursor, never OFFSET)
and writes its Delivery rows; the cursor moves in the same transaction, so a step
repeated after a crash plans nothing twice. A post's page is written with one
INSERT … SELECT, so subscriber rows never travel to Python and memory stays flat
whatever the audience size. A digest's page likewise: its (reader, post) pairs
(digests.posts_held) are selected once into a temporary table, from which its
batches, ledger rows and their posts are written.
"""

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.utils import timezone

from posts.models import Post, PostUpdate

from .. import corrections, digests
from ..enqueue import ring_once_committed, tasks
from ..models import (
    Batch,
    Delivery,
    Mailing,
    Subscriber,
    SubscriberQuerySet,
    SubscriberTopic,
)
from .control import posts_lock
from .sender import channel, close_mailing_if_finished

# Subscribers per planning step of a post (one task, one transaction). Only the
# batch boundaries of a page reach Python, so this bounds the transaction's length,
# not memory: ~20,000 ledger rows take a few tens of milliseconds on PostgreSQL.
PLANNING_PAGE_SIZE = 20_000


def mailing_create_for_post(*, post: Post) -> Mailing:
    """The post's one announcement; planning is rung once the transaction commits."""
    return _mailing_create(kind=Mailing.Kind.POST, post=post)


def mailing_create_for_digest(*, frequency: str, slot: datetime) -> Mailing:
    """The one digest round of this frequency and slot, rung likewise."""
    return _mailing_create(
        kind=Mailing.Kind.DIGEST,
        frequency=frequency,
        slot=slot,
        period=digests.period_of(slot),
    )


@transaction.atomic
def mailing_create_for_correction(
    *, post_update: PostUpdate, include_uncertain: bool
) -> Mailing:
    """The one email of a correction to a published post, to the readers sent its
    earlier text (corrections.audience), rung likewise. Asking again, whatever
    `include_uncertain` says then, returns the first one."""
    # Locked until the mailing is committed: an unpublish then comes before, and
    # this refuses, or after, and pauses this mailing with the post's others.
    posts_lock(post_ids=[post_update.post_id])
    if not Post.objects.published().filter(pk=post_update.post_id).exists():
        raise ValueError("Only the readers of a published post can get a correction.")
    # Made, the email makes the correction read-only for good (readers have it as
    # sent): not for nobody. Readers sent the post from now get it corrected.
    if not corrections.sent_to_anyone(post_update.post):
        raise ValueError("Nobody has received this post: there is nobody to tell.")
    if not corrections.anyone_to_tell(post_update):
        kind = post_update.get_kind_display().lower()
        raise ValueError(
            f"Nobody who received this post without this {kind} still gets our "
            "emails: there is nobody to tell."
        )
    return _mailing_create(
        kind=Mailing.Kind.CORRECTION,
        post_update=post_update,
        defaults={
            "post_id": post_update.post_id,
            "include_uncertain": include_uncertain,
        },
    )


def _mailing_create(**identity) -> Mailing:
    # The unique constraints make this once per post, slot or correction,
    # whoever races.
    mailing, created = Mailing.objects.get_or_create(**identity)
    if created:
        # The broker (Redis) down, what made the mailing (the author's publish)
        # still succeeds, the failure logged; the reaper rings a mailing
        # left planning untouched (NEWSLETTER_DOORBELL_TIMEOUT_SECONDS).
        ring_once_committed(lambda: tasks.plan_mailing.delay(mailing.pk))
    return mailing


def mailing_plan_page(*, mailing_id: int) -> bool:
    """Plan the next page of a mailing's audience. Returns True while there is more."""
    with transaction.atomic():
        mailing = _locked(mailing_id)
        # A paused round is planned all the same (its batches wait for the
        # resume): planning marks its readers' round, and readers left unmarked
        # were taken, and sent, by the next quarter hour's round.
        paused = mailing is not None and mailing.paused_at is not None
        if (
            mailing is None
            or mailing.status != Mailing.Status.PLANNING
            or (paused and mailing.kind != Mailing.Kind.DIGEST)
        ):
            return False
        now = timezone.now()
        if not mailing.batch_size:
            mailing.batch_size = settings.NEWSLETTER_BATCH_SIZE or channel().batch_size
        if mailing.kind == Mailing.Kind.DIGEST:
            last_id, batch_ids = _plan_digest_page(mailing, now)
        else:
            last_id, batch_ids = _plan_page(mailing, _audience(mailing), now)
        if last_id is None:
            mailing.status = Mailing.Status.SENDING
            mailing.planned_at = now
            mailing.save(update_fields=["status", "planned_at", "batch_size"])
            # Every batch may have gone out while planning was still running.
            close_mailing_if_finished(mailing.pk)
            return False
        mailing.planned_up_to = last_id
        mailing.batch_count += len(batch_ids)
        mailing.touched_at = now
        mailing.save(
            update_fields=["planned_up_to", "batch_count", "touched_at", "batch_size"]
        )
        transaction.on_commit(lambda: _ring(batch_ids))
    return True


def _locked(mailing_id: int) -> Mailing | None:
    """The mailing, locked for this planning step. A digest round also locks every
    other round still planning, in id order: rounds plan one step at a time, so
    each sees the posts the others gave a reader, and none gets a post twice."""
    kind = Mailing.objects.filter(pk=mailing_id).values_list("kind", flat=True)
    locking = Q(pk=mailing_id)
    if kind.first() == Mailing.Kind.DIGEST:
        locking |= Q(kind=Mailing.Kind.DIGEST, status=Mailing.Status.PLANNING)
    locked = Mailing.objects.select_for_update().filter(locking).order_by("pk")
    return next((m for m in locked if m.pk == mailing_id), None)


def _ring(batch_ids: list[int]) -> None:
    for batch_id in batch_ids:
        tasks.send_batch.delay(batch_id)


def _audience(mailing: Mailing) -> SubscriberQuerySet:
    """A post's audience (post_audience); a correction goes to the readers sent
    the post before it, each once."""
    if mailing.kind == Mailing.Kind.CORRECTION:
        # Planned again from its first reader (control.py: after a settle, or a
        # cancel the author takes back): whoever is in its ledger has their row.
        in_ledger = Delivery.objects.filter(mailing=mailing, subscriber=OuterRef("pk"))
        return corrections.audience(mailing).exclude(Exists(in_ledger))
    return post_audience(post=mailing.post)


def post_audience(*, post: Post) -> SubscriberQuerySet:
    """Who gets a post as it is published: confirmed readers following any of its
    topics (or everything) instantly, but for those a digest carried it to
    already (its round went while this waited to be planned, and they turned to
    instant since). Digests carry it to the others."""
    keys = post.topic_keys()
    # NOT EXISTS, an anti-join: NOT IN (…) doubled the statement's estimated cost,
    # past PostgreSQL's threshold for compiling it (JIT), which took longer than
    # planning the page.
    had_it = Delivery.objects.filter(posts=post, subscriber=OuterRef("pk")).received()
    return (
        Subscriber.objects.confirmed()
        .following(keys, frequency=SubscriberTopic.Frequency.INSTANT)
        .exclude(Exists(had_it))
    )


def _plan_page(
    mailing: Mailing, audience: SubscriberQuerySet, now: datetime
) -> tuple[int | None, list[int]]:
    """The next page of an audience everyone in which gets the same message, in
    SQL: (the page's last subscriber id, or None at the end; its batches)."""
    page = (
        audience.filter(pk__gt=mailing.planned_up_to)
        .order_by("pk")
        .values(sid=F("pk"))[:PLANNING_PAGE_SIZE]
    )
    chunks = _batch_boundaries(mailing, *page.query.sql_with_params())
    if not chunks:
        return None, []
    batch_ids = _batches_create(mailing, chunks, now)
    members = audience.filter(
        pk__gt=mailing.planned_up_to, pk__lte=chunks[-1][0]
    ).values(sid=F("pk"))
    _insert_deliveries(mailing, *members.query.sql_with_params(), batch_ids, chunks)
    # The boundaries' statement could not see a reader who confirmed (or left)
    # before this one's: each batch is as large as the rows it was given, or the
    # author's figures would not add up (skipped: -1).
    Batch.objects.filter(pk__in=batch_ids).update(
        size=Subquery(
            Delivery.objects.filter(batch=OuterRef("pk"))
            .order_by()
            .values("batch")
            .annotate(n=Count("pk"))
            .values("n")
        )
    )
    return chunks[-1][0], batch_ids


# The (reader, post) pairs of a digest page, held for the statements that write
# its ledger rows; dropped at the end of the step (or with its rollback).
_HELD = "newsletter_digest_page"


def _plan_digest_page(mailing: Mailing, now: datetime) -> tuple[int | None, list[int]]:
    """The next page of a digest round's readers, each with the posts their digest
    holds; readers with none get no digest, but the round counts for them. A few
    statements per page, whatever the page's readers and posts."""
    readers = digests.audience(mailing.frequency, slot=mailing.slot).filter(
        pk__gt=mailing.planned_up_to
    )
    page = list(
        readers.order_by("pk").values_list("pk", flat=True)[: digests.READERS_PER_PAGE]
    )
    if not page:
        return None, []
    held = digests.posts_held(
        mailing=mailing, after=mailing.planned_up_to, up_to=page[-1]
    )
    batch_ids = []
    if held is not None:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE {_HELD} AS {held[0]}", held[1])
            holders = f"SELECT DISTINCT sid FROM {_HELD}"
            if chunks := _batch_boundaries(mailing, holders, []):
                batch_ids = _batches_create(mailing, chunks, now)
                _insert_deliveries(mailing, holders, [], batch_ids, chunks)
                cursor.execute(
                    f"""
                    INSERT INTO {Delivery.posts.through._meta.db_table}
                        (delivery_id, post_id)
                    SELECT d.id, h.pid
                    FROM {_HELD} h JOIN {Delivery._meta.db_table} d
                        ON d.mailing_id = %s AND d.subscriber_id = h.sid
                    """,
                    [mailing.pk],
                )
                cursor.execute(
                    f"""
                    INSERT INTO {Mailing.digest_posts.through._meta.db_table}
                        (mailing_id, post_id)
                    SELECT DISTINCT %s, h.pid FROM {_HELD} h
                    WHERE NOT EXISTS (
                        SELECT 1 FROM {Mailing.digest_posts.through._meta.db_table} r
                        WHERE r.mailing_id = %s AND r.post_id = h.pid
                    )
                    """,
                    [mailing.pk, mailing.pk],
                )
            cursor.execute(f"DROP TABLE {_HELD}")
    digests.readers_mark_round(mailing=mailing, subscriber_ids=page)
    return page[-1], batch_ids


def _batch_boundaries(
    mailing: Mailing, sql: str, params: list
) -> list[tuple[int, int]]:
    """(last subscriber id, size) of each batch of the readers `sql` selects (as
    sid, each once)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT MAX(sid), COUNT(*) FROM (
                SELECT sid, (ROW_NUMBER() OVER (ORDER BY sid) - 1) / %s AS chunk
                FROM ({sql}) page
            ) numbered
            GROUP BY chunk ORDER BY chunk
            """,
            [mailing.batch_size, *params],
        )
        return cursor.fetchall()


def _batches_create(
    mailing: Mailing, chunks: list[tuple[int, int]], now: datetime
) -> list[int]:
    batches = Batch.objects.bulk_create(
        Batch(
            mailing=mailing, number=mailing.batch_count + i, size=size, touched_at=now
        )
        for i, (_last_id, size) in enumerate(chunks, start=1)
    )
    return [b.pk for b in batches]


def _insert_deliveries(
    mailing: Mailing,
    sql: str,
    params: list,
    batch_ids: list[int],
    chunks: list[tuple[int, int]],
) -> None:
    """One ledger row per reader `sql` selects (as sid), each in the batch whose
    id range holds it, written by the database from the query itself, in
    subscriber order (the order a batch goes out). For a
    post, a reader who confirms between the boundaries and this statement joins a
    batch (its size is then counted again: _plan_page); one who leaves after it
    is skipped at send time."""
    # Batch ids come from the database (integers), never from input.
    which_batch = " ".join(
        f"WHEN sid <= {int(last)} THEN {int(batch)}"
        for (last, _size), batch in zip(chunks, batch_ids, strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Delivery._meta.db_table}
                (mailing_id, batch_id, subscriber_id, status, esp_message_id, error,
                 last_event, sender_refused)
            SELECT %s, CASE {which_batch} END, sid, %s, '', '', '', %s
            FROM ({sql}) audience
            ORDER BY sid
            """,
            [mailing.pk, Delivery.Status.QUEUED, False, *params],
        )
