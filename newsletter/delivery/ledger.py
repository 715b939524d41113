"""The statements a batch runs against the ledger: a fixed number per batch, whatever
its size. Django's ORM has no UPDATE … RETURNING nor an update from a list of rows,
so these few are SQL, written to run unchanged on PostgreSQL and SQLite (3.35+)
except where a comment says otherwise."""

import json
from collections import Counter
from collections.abc import Collection
from contextlib import nullcontext
from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When

from ..digests import digest_debts_settle
from ..models import Batch, Delivery, Mailing, Subscriber, SubscriberTopic

D = Delivery._meta.db_table
B = Batch._meta.db_table
S = Subscriber._meta.db_table
P = Delivery.posts.through._meta.db_table
T = SubscriberTopic._meta.db_table


# Why a digest is skipped that holds nothing: each of its posts was taken off the
# site before it went (digests.post_withdraw_from_digests, or as it went).
DIGEST_EMPTIED = "its posts were unpublished before sending"


class Recipient(NamedTuple):
    """A claimed delivery's subscriber: all a personal message needs of them (a
    link: pk and email; a digest's greeting and counted links: name and agreed),
    without the cost of a model instance per recipient."""

    delivery_id: int
    pk: int
    email: str
    name: str = ""
    # Agreed to per-reader engagement: their clicks are counted as theirs.
    agreed: bool = False
    # A digest's: the ids of the posts it holds for them (Delivery.posts).
    posts: tuple[int, ...] = ()
    # The reader's time zone, whose dates a digest and a post's email bear.
    time_zone: str = ""
    # A digest's: the reader follows nothing at the round's frequency (any more),
    # so it is the last one they were owed on turning to instant
    # (Subscriber.digest_owed_until), titled neither daily nor weekly.
    last_digest: bool = False


def batch_recipients(
    batch_id: int,
    *,
    digest_of: str = "",
    announcing: Collection[tuple[str, str]] | None = None,
) -> tuple[list[Recipient], dict[int, str]]:
    """The batch's queued deliveries: the recipients still in the audience, and
    why the others are skipped, by delivery id: they left it since planning
    (unsubscribed, suppressed or paused: see SubscriberQuerySet.confirmed), no
    longer follow a post's announcement as published, or their digest holds
    nothing now (its posts were unpublished). `digest_of` (a digest's batch: its
    round's frequency) reads in the same statement the posts each one's digest
    holds, and whether they still follow anything at it. `announcing` (a post's
    announcement: its Post.topic_keys()) reads whether each one still follows one
    of them, or everything, as published (SubscriberQuerySet.following): one who
    turned to a digest since, or unfollowed the topic, is skipped (a digest
    carries the post to the first: a skipped row is not received).

    Read, not written: the batch's SENDING status is the claim on its queued rows,
    and their outcomes are written once, when the provider has answered. A worker
    that dies holding the batch leaves them QUEUED in a SENDING batch; the reaper
    marks them UNCERTAIN, never resent blindly.
    """
    posts, follows, params = "NULL", "NULL", []
    if digest_of:
        joined = (
            "string_agg(CAST(p.post_id AS text), ',')"
            if connection.vendor == "postgresql"
            else "group_concat(p.post_id, ',')"
        )
        posts = f"(SELECT {joined} FROM {P} p WHERE p.delivery_id = d.id)"
        follows = f"""EXISTS (SELECT 1 FROM {T} t
            WHERE t.subscriber_id = d.subscriber_id AND t.frequency = %s)"""
        params = [digest_of]
    elif announcing is not None:
        # "Everything" is stored with no value (topics_set): a topic matches a
        # key by equality. No topic rows at all: everything, as published.
        keys = [(SubscriberTopic.Kind.EVERYTHING, ""), *sorted(announcing)]
        matches = " OR ".join(["(t.kind = %s AND t.value = %s)"] * len(keys))
        follows = f"""(EXISTS (SELECT 1 FROM {T} t
                WHERE t.subscriber_id = d.subscriber_id AND t.frequency = %s
                AND ({matches}))
            OR NOT EXISTS (SELECT 1 FROM {T} t
                WHERE t.subscriber_id = d.subscriber_id))"""
        params = [SubscriberTopic.Frequency.INSTANT, *(v for key in keys for v in key)]
    sql = f"""
        SELECT d.id, d.subscriber_id, s.email, s.name,
            s.engagement_agreed_at IS NOT NULL, {posts}, s.time_zone, {follows},
            s.status = %s AND s.paused_at IS NULL
        FROM {D} d JOIN {S} s ON s.id = d.subscriber_id
        WHERE d.batch_id = %s AND d.status = %s
        ORDER BY d.id
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [*params, Subscriber.Status.ACTIVE, batch_id, Delivery.Status.QUEUED]
        )
        rows = cursor.fetchall()
    recipients, skipped = [], {}
    for pk, sid, email, name, agreed, posts, zone, follows, active in rows:
        if not active:
            skipped[pk] = "left the audience before sending"
        elif announcing is not None and not follows:
            skipped[pk] = "stopped following it as published before sending"
        elif digest_of and not posts:
            skipped[pk] = DIGEST_EMPTIED
        else:
            posts = tuple(map(int, posts.split(","))) if posts else ()
            last = bool(digest_of) and not follows
            recipients.append(
                Recipient(pk, sid, email, name, bool(agreed), posts, zone, last)
            )
    return recipients, skipped


# Why a reader is sent whose message the provider's event told of, though the
# answer to handing it over was lost (control.delivery_settle_by_event, and
# record_outcomes for an event that came before the answer was recorded).
CONFIRMED_BY_EVENT = "confirmed by the provider's event about it"


class Outcome(NamedTuple):
    status: str
    esp_message_id: str = ""
    error: str = ""


def record_outcomes(
    outcomes: dict[int, Outcome], now: datetime, *, batch_id: int
) -> None:
    """Write every recipient's outcome in one statement. An uncertain outcome
    (the answer lost) of a row the provider's event has already told of
    (Delivery.OUTCOME_EVENTS_TAKEN: it came while the worker waited for the
    answer, or before the reaper found the worker dead) is written sent: the
    event settled nothing then, as the row was still queued, and the provider
    does not report again.

    A row gone meanwhile (its reader erased their data while the batch was being
    sent) is counted on the batch, sent or failed, as the erasure counts a row
    it finds written (subscriptions.subscriber_delete): else the batch's recount
    (close_batch) missed an email that went. A reader owed a last digest whom
    the batch's digest reached is owed it no more (one more statement, for those
    only)."""
    if not outcomes:
        return
    rows = json.dumps(
        [
            {
                "id": pk,
                "status": o.status,
                "mid": o.esp_message_id,
                "err": o.error[:2000],
            }
            for pk, o in outcomes.items()
        ]
    )
    sent_at = connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        sql = """
            UPDATE {D} AS d
            SET status = {status}, esp_message_id = v.mid, error = {error},
                sent_at = CASE WHEN {status} = %s THEN %s::timestamptz END
            FROM jsonb_to_recordset(%s::jsonb)
                AS v(id bigint, status text, mid text, err text)
            WHERE d.id = v.id
            RETURNING d.id, {owed}, d.status
        """
        row, status, error = "d", "v.status", "v.err"
    else:
        sql = """
            UPDATE {D}
            SET status = {status}, esp_message_id = v.value ->> 'mid',
                error = {error},
                sent_at = CASE WHEN {status} = %s THEN %s END
            FROM json_each(%s) AS v
            WHERE {D}.id = v.value ->> 'id'
            RETURNING {D}.id, {owed}, {D}.status
        """
        row, status, error = D, "v.value ->> 'status'", "v.value ->> 'err'"
    if any(o.status == Delivery.Status.UNCERTAIN for o in outcomes.values()):
        # Only then: a batch's answers as they came cost no test a row. SET
        # reads the row as it was: the test is repeated in each column it decides.
        taken = (
            f"{status} = {_text(Delivery.Status.UNCERTAIN)} AND {row}.last_event"
            f" IN ({', '.join(map(_text, Delivery.OUTCOME_EVENTS_TAKEN))})"
        )
        sent = _text(Delivery.Status.SENT)
        status = f"CASE WHEN {taken} THEN {sent} ELSE {status} END"
        error = f"CASE WHEN {taken} THEN {_text(CONFIRMED_BY_EVENT)} ELSE {error} END"
    sql = sql.format(D=D, owed=_owed_last_digest(row), status=status, error=error)
    with connection.cursor() as cursor:
        cursor.execute(sql, [Delivery.Status.SENT, sent_at, rows])
        written = {pk: (owed, status) for pk, owed, status in cursor.fetchall()}
    if any(
        owed and status == Delivery.Status.SENT for owed, status in written.values()
    ):
        # The debt is paid here, where every outcome is written (a batch sent,
        # an uncertain one settled), not when the digest is planned: a digest
        # then paused and cancelled, or failed, lost its posts for good, as the
        # next round no longer held them. Only a digest whose round's slot
        # comes after the debt holds all of it (digests.posts_held).
        digest_debts_settle(
            Subscriber.objects.filter(
                deliveries__batch_id=batch_id,
                deliveries__status=Delivery.Status.SENT,
                deliveries__mailing__kind=Mailing.Kind.DIGEST,
                digest_owed_until__lte=F("deliveries__mailing__slot"),
            )
        )
    gone = Counter(o.status for pk, o in outcomes.items() if pk not in written)
    if gone[Delivery.Status.SENT] or gone[Delivery.Status.FAILED]:
        Batch.objects.filter(pk=batch_id).update(
            erased_sent=F("erased_sent") + gone[Delivery.Status.SENT],
            erased_failed=F("erased_failed") + gone[Delivery.Status.FAILED],
        )


def _text(constant: str) -> str:
    """One of our own constants as an SQL string literal."""
    return "'" + constant.replace("'", "''") + "'"


def _owed_last_digest(row: str) -> str:
    """SQL: whether the reader of the ledger's `row` is owed a last digest, read
    as their outcome is written, so that a batch with none such runs no statement
    more."""
    return f"""EXISTS (SELECT 1 FROM {S} s
        WHERE s.id = {row}.subscriber_id AND s.digest_owed_until IS NOT NULL)"""


def close_batch(
    batch_id: int,
    *,
    from_status: str,
    now: datetime,
    attempt: int | None = None,
    error: str = "",
    uncertain_readers: bool = False,
) -> tuple[str, int] | None:
    """End an attempt at a batch: recount it from the ledger and set its status.

    QUEUED again while deliveries wait, else UNCERTAIN if any is uncertain, else
    DONE. The attempt's `error` is recorded, except that an attempt without error
    that leaves the batch UNCERTAIN keeps the last one recorded, which tells the
    reviewer what went wrong (each uncertain delivery has its own as well). Returns
    (new status, other batches of the mailing still queued), or None when the
    batch was not in `from_status` (or, given the `attempt` of a worker's claim,
    is not that claim: another worker's, the batch put back in the queue since).
    Batches being sent beside it are not counted: the statement cannot see
    whether they finish meanwhile (see batch_send).

    The batch's rows are counted by status in one pass (SQLite 3.30+ for FILTER,
    3.33+ for UPDATE … FROM).

    `uncertain_readers`: a batch closed by its worker while it holds uncertain
    readers, whom the provider's events may settle meanwhile, holding the batch's
    row until committed (control.delivery_settle_by_event). Its row is locked
    first, and its rows counted after, in a statement of their own: counted in the
    snapshot the one statement began in, before that event committed, a reader
    settled then was counted uncertain, and the batch left uncertain with no one
    to settle. Other batches are closed without: one statement less each.
    """
    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE status = '{status}') AS n_{status}"
        for status in (
            Delivery.Status.QUEUED,
            Delivery.Status.SENT,
            Delivery.Status.FAILED,
            Delivery.Status.UNCERTAIN,
        )
    )
    # A worker closes only its own claim on the batch.
    claim = "" if attempt is None else " AND attempts = %s"
    # The erased readers' counts (e) are read in the snapshot the rows are
    # counted in (c): an erasure committing while this waits for the batch's row
    # moves a reader from the rows to those counts, and rows read before it
    # added to counts written by it counted that reader twice.
    sql = f"""
        WITH c AS (SELECT {counts} FROM {D} WHERE batch_id = %s),
            e AS (SELECT erased_sent, erased_failed FROM {B} WHERE id = %s)
        UPDATE {B}
        SET status = CASE
                WHEN c.n_queued > 0 THEN %s
                WHEN c.n_uncertain > 0 THEN %s
                ELSE %s END,
            finished_at = CASE WHEN c.n_queued > 0 THEN NULL
                ELSE COALESCE(finished_at, %s) END,
            touched_at = %s,
            last_error = CASE
                WHEN %s = '' AND c.n_queued = 0 AND c.n_uncertain > 0 THEN last_error
                ELSE %s END,
            sent = c.n_sent + e.erased_sent,
            failed = c.n_failed + e.erased_failed,
            uncertain = c.n_uncertain
        FROM c, e
        WHERE id = %s AND status = %s{claim}
        RETURNING status, (
            SELECT COUNT(*) FROM {B} b
            WHERE b.mailing_id = {B}.mailing_id AND b.id <> {B}.id
                AND b.status = %s
        )
    """
    when = connection.ops.adapt_datetimefield_value(now)
    params = [
        batch_id,
        batch_id,
        Batch.Status.QUEUED,
        Batch.Status.UNCERTAIN,
        Batch.Status.DONE,
        when,
        when,
        error[:2000],
        error[:2000],
        batch_id,
        from_status,
        *([] if attempt is None else [attempt]),
        Batch.Status.QUEUED,
    ]
    with (
        transaction.atomic() if uncertain_readers else nullcontext(),
        connection.cursor() as cursor,
    ):
        if uncertain_readers:
            Batch.objects.select_for_update().filter(pk=batch_id).exists()
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else None


def batches_cancel(batches: QuerySet[Batch], *, now: datetime) -> int:
    """Cancel those of `batches` that wait in the queue: their readers not handed
    over are SKIPPED. Returns how many were cancelled.

    One that holds uncertain readers as well (a lane's answer lost while another
    lane stopped early: close_batch keeps it queued for the retry) is UNCERTAIN
    instead, the author's to settle as a batch uncertain when cancelled is
    (control.py): cancelled, nobody could settle them, and they stayed uncertain
    for good, the mailing's figures never adding up.

    A batch being sent is left to its worker (its SENDING status is the claim on
    its queued rows): skipping those rows under it recorded readers the provider
    may have taken as never sent, and a worker dying there left nothing UNCERTAIN
    for the reaper to find. It is cancelled once it is back in the queue
    (batch_send), and an uncertain batch once it is settled (control.py).
    """
    uncertain = Delivery.objects.filter(
        batch=OuterRef("pk"), status=Delivery.Status.UNCERTAIN
    )
    # The batches first: their rows' locks keep a worker from claiming one while
    # its readers are being skipped. Locked in id order, as a take-down locks a
    # round's batches (digests.post_withdraw_from_digests): in the order the
    # UPDATE meets them, each could wait for the other, and PostgreSQL would
    # abort one of the two.
    list(
        batches.filter(status=Batch.Status.QUEUED)
        .select_for_update(of=("self",))
        .order_by("pk")
        .values_list("pk")
    )
    cancelled = batches.filter(status=Batch.Status.QUEUED).update(
        status=Case(
            When(Exists(uncertain), then=Value(Batch.Status.UNCERTAIN)),
            default=Value(Batch.Status.CANCELLED),
        ),
        finished_at=now,
    )
    if cancelled:
        # An UNCERTAIN batch holds no queued reader but those it holds here:
        # close_batch leaves none, and settling one writes them with its close.
        Delivery.objects.filter(
            batch__in=batches.filter(
                status__in=[Batch.Status.CANCELLED, Batch.Status.UNCERTAIN]
            ),
            status=Delivery.Status.QUEUED,
        ).update(status=Delivery.Status.SKIPPED, error=Delivery.MAILING_CANCELLED)
    return cancelled


def batches_requeue_cancelled(batches: QuerySet[Batch], *, now: datetime) -> None:
    """Put those of `batches` that were cancelled back in the queue, with the
    readers the cancel skipped (batches_cancel): the author sends their mailing
    after all. One who has left the audience meanwhile is skipped again when the
    batch goes (batch_recipients). So too a batch left UNCERTAIN by the cancel (or
    settled since) with readers it skipped: its uncertain readers stay the
    author's to settle once it has gone (close_batch). A reader an attempt before
    the cancel skipped stays skipped, as a retry leaves them: put back, a
    correction's reader skipped as never sent the earlier text, who had the
    corrected post since, was counted as owed the correction and sent it
    (corrections.readers_still_owed reads the ledger as it is when a batch goes)."""
    skipped_by_cancel = Delivery.objects.filter(
        batch=OuterRef("pk"),
        status=Delivery.Status.SKIPPED,
        error=Delivery.MAILING_CANCELLED,
    )
    cancelled = list(
        batches.filter(
            Q(status=Batch.Status.CANCELLED)
            | Q(
                Exists(skipped_by_cancel),
                status__in=[Batch.Status.UNCERTAIN, Batch.Status.DONE],
            )
        ).values_list("pk", flat=True)
    )
    Delivery.objects.filter(
        batch__in=cancelled,
        status=Delivery.Status.SKIPPED,
        error=Delivery.MAILING_CANCELLED,
    ).update(status=Delivery.Status.QUEUED, error="")
    Batch.objects.filter(pk__in=cancelled).update(
        status=Batch.Status.QUEUED, finished_at=None, touched_at=now
    )
