"""Planning a send: the audience, page by page, into batches in the ledger.

Each step takes the next page of the audience by keyset (id > cursor, never OFFSET)
and writes its Delivery rows with one INSERT … SELECT, so subscriber rows never
travel to Python and memory stays flat whatever the audience size. A page is cut
into several batches; the cursor moves in the same transaction, so a step repeated
after a crash plans nothing twice.
"""

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from posts.models import Post

from .. import tasks
from ..models import (
    Batch,
    Delivery,
    Send,
    Subscriber,
    SubscriberQuerySet,
    SubscriberTopic,
)
from .sender import channel, close_send_if_finished

# Subscribers per planning step (one task, one transaction). Only the batch
# boundaries of a page reach Python, so this bounds the transaction's length, not
# memory: ~20,000 ledger rows take a few tens of milliseconds on PostgreSQL.
PLANNING_PAGE_SIZE = 20_000


def send_create_for_post(*, post: Post) -> None:
    """Create the post's one Send and ring for planning once the transaction commits."""
    send, created = Send.objects.get_or_create(post=post)
    if created:
        transaction.on_commit(lambda: tasks.plan_send.delay(send.pk))


def plan_next_page(*, send_id: int) -> bool:
    """Plan the next page of a send's audience. Returns True while there is more."""
    with transaction.atomic():
        send = Send.objects.select_for_update().filter(pk=send_id).first()
        if send is None or send.status != Send.Status.PLANNING or send.paused_at:
            return False
        now = timezone.now()
        if not send.batch_size:
            send.batch_size = settings.NEWSLETTER_BATCH_SIZE or channel().batch_size
        audience = _audience(send)
        chunks = _batch_boundaries(send, audience)
        if not chunks:
            send.status = Send.Status.SENDING
            send.planned_at = now
            send.save(update_fields=["status", "planned_at", "batch_size"])
            # Every batch may have gone out while planning was still running.
            close_send_if_finished(send.pk)
            return False
        batches = Batch.objects.bulk_create(
            Batch(send=send, number=send.batch_count + i, size=size, touched_at=now)
            for i, (_last_id, size) in enumerate(chunks, start=1)
        )
        _insert_deliveries(
            send, audience, [b.pk for b in batches], [c[0] for c in chunks]
        )
        send.planned_up_to = chunks[-1][0]
        send.batch_count += len(batches)
        send.touched_at = now
        send.save(
            update_fields=["planned_up_to", "batch_count", "touched_at", "batch_size"]
        )
        batch_ids = [b.pk for b in batches]
        transaction.on_commit(lambda: _ring(batch_ids))
    return True


def _ring(batch_ids: list[int]) -> None:
    for batch_id in batch_ids:
        tasks.send_batch.delay(batch_id)


def _audience(send: Send) -> SubscriberQuerySet:
    """Who gets the post as it is published: confirmed readers following any of
    its topics (or everything) instantly. Digests carry it to the others."""
    keys = send.post.topic_keys()
    return Subscriber.objects.confirmed().following(
        keys, frequency=SubscriberTopic.Frequency.INSTANT
    )


def _batch_boundaries(
    send: Send, audience: SubscriberQuerySet
) -> list[tuple[int, int]]:
    """(last subscriber id, size) of each batch in the next page of the audience."""
    page = (
        audience.filter(pk__gt=send.planned_up_to)
        .order_by("pk")
        .values(sid=F("pk"))[:PLANNING_PAGE_SIZE]
    )
    sql, params = page.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT MAX(sid), COUNT(*) FROM (
                SELECT sid, (ROW_NUMBER() OVER (ORDER BY sid) - 1) / %s AS chunk
                FROM ({sql}) page
            ) numbered
            GROUP BY chunk ORDER BY chunk
            """,
            [send.batch_size, *params],
        )
        return cursor.fetchall()


def _insert_deliveries(
    send: Send, audience: SubscriberQuerySet, batch_ids: list[int], last_ids: list[int]
) -> None:
    """One ledger row per audience member from the cursor to the page's end, each in
    the batch whose id range holds it, written by the database from the audience
    query itself. A reader who confirms between the two statements joins a batch;
    one who leaves is skipped at send time."""
    page = audience.filter(pk__gt=send.planned_up_to, pk__lte=last_ids[-1]).values(
        sid=F("pk")
    )
    sql, params = page.query.sql_with_params()
    # Batch ids come from the database (integers), never from input.
    which_batch = " ".join(
        f"WHEN sid <= {int(last)} THEN {int(batch)}"
        for last, batch in zip(last_ids, batch_ids, strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Delivery._meta.db_table}
                (send_id, batch_id, subscriber_id, status, esp_message_id, error,
                 last_event)
            SELECT %s, CASE {which_batch} END, sid, %s, '', '', ''
            FROM ({sql}) audience
            """,
            [send.pk, Delivery.Status.QUEUED, *params],
        )
