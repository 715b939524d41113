"""The author's controls over a mailing of any kind: pause, resume, cancel, and the
deliberate settling of uncertain batches. Each is a service the admin calls."""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from posts.models import Post

from .. import corrections, digests
from ..enqueue import ring_once_committed, tasks
from ..models import Batch, Delivery, Mailing
from .ledger import (
    CONFIRMED_BY_EVENT,
    Outcome,
    batches_cancel,
    batches_requeue_cancelled,
    close_batch,
    record_outcomes,
)
from .provider import TooSoonToAsk, accepted_recipients, search_lag
from .sender import close_mailing_if_finished

RUNNING = [Mailing.Status.PLANNING, Mailing.Status.SENDING]


def mailing_pause(*, mailing_id: int, reason: str = "Paused by the author.") -> bool:
    """Stop claiming batches; a batch being sent stops within about a second
    (sender.HOLD_READ_SECONDS), its readers not yet handed over left in the
    queue with the rest. Until resumed.

    A pause the breaker set (resume_at: the reaper lifts it after the cool-down)
    becomes the author's: they pause to hold the mailing until they say so.
    """
    not_held = Q(paused_at__isnull=True) | Q(resume_at__isnull=False)
    return bool(
        Mailing.objects.filter(not_held, pk=mailing_id, status__in=RUNNING).update(
            paused_at=timezone.now(), resume_at=None, pause_reason=reason
        )
    )


def posts_lock(*, post_ids: Iterable[int | None]) -> None:
    """Lock the posts mailings carry (a digest carries none) until the
    transaction ends, before reading whether they are on the site and before the
    mailings are made or written, the desk's order. The desk's unpublish (which
    locks the post FOR UPDATE, then pauses its mailings) then comes before, and
    the caller finds the post off the site, or after, and its pause sees the
    mailing as the caller left it. Unlocked, an unpublish committing between the
    two passed the mailing by (made, resumed or sent again just after), and its
    email went out once the post was back, without the author resuming it. FOR
    KEY SHARE, which only FOR UPDATE waits for: the desk resumes many mailings in
    one transaction, and a lock other resumes, or a digest round's planning (FOR
    NO KEY UPDATE), waited for could cross theirs, post by post, into a deadlock.
    Django's select_for_update has no such mode. In the order of their ids, as
    the desk's actions on posts lock them FOR UPDATE (PostQuerySet.locked):
    locked as each mailing came, the desk resuming several and an editor
    publishing their posts each held a post the other waited for. (SQLite runs
    one writer at a time.)"""
    ids = sorted({pk for pk in post_ids if pk is not None})
    if not ids or connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {Post._meta.db_table} WHERE id = ANY(%s)"  # noqa: S608
            " ORDER BY id FOR KEY SHARE",
            [ids],
        )


def mailings_posts_lock(*, mailing_ids: Iterable[int]) -> None:
    """Lock the posts these mailings carry (posts_lock), all at once: a control
    of several takes them before the first mailing's, whose control locks its
    post alone, then the next's, in the mailings' order, not the posts'."""
    posts_lock(
        post_ids=Mailing.objects.filter(pk__in=list(mailing_ids)).values_list(
            "post_id", flat=True
        )
    )


def mailing_resume(*, mailing_id: int, cooled_down_by: datetime | None = None) -> bool:
    """Lift a pause and ring again for everything the pause left waiting; not
    while the mailing's post is off the site (MailingQuerySet.post_on_site).
    `cooled_down_by` (the reaper's): only the breaker's pause whose cool-down is
    over by then, not one the author made theirs since the reaper read it
    (mailing_pause)."""
    cooled_down = Q() if cooled_down_by is None else Q(resume_at__lte=cooled_down_by)
    with transaction.atomic():
        mailings_posts_lock(mailing_ids=[mailing_id])
        paused = Mailing.objects.post_on_site().filter(
            cooled_down, pk=mailing_id, status__in=RUNNING, paused_at__isnull=False
        )
        resumed = paused.update(
            paused_at=None, resume_at=None, pause_reason="", consecutive_failures=0
        )
        if resumed:
            ring_once_committed(lambda: mailing_ring(mailing_id))
    return bool(resumed)


def mailing_ring(mailing_id: int) -> None:
    """Enqueue the planning step and every queued batch of a mailing. What the
    broker does not take, the reaper rings again (queued batches of a running
    mailing not paused, a mailing left planning), so the controls that ring it
    ring it once committed (ring_once_committed).

    A batch waiting out a provider's Retry-After (or its backoff) is dated from
    when its retry is due (sender.batch_retry_wait): it is rung for then, not
    now, or resuming sent it to a provider that had asked for time."""
    if Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.PLANNING).exists():
        tasks.plan_mailing.delay(mailing_id)
    now = timezone.now()
    queued = Batch.objects.filter(mailing_id=mailing_id, status=Batch.Status.QUEUED)
    for batch_id, due in queued.values_list("pk", "touched_at").iterator():
        wait = (due - now).total_seconds()
        tasks.send_batch.apply_async((batch_id,), countdown=wait if wait > 0 else None)


def mailing_cancel(*, mailing_id: int) -> bool:
    """Stop a mailing; the ledger says who had it. For good, but for a
    correction's, which the author may send after all (correction_send_again).
    A batch being sent is left to its worker, which stops within about a second
    (sender.HOLD_READ_SECONDS: the readers it hands over in that second have
    it) and skips the rest as it puts the batch back
    (batch_cancel_if_mailing_cancelled)."""
    now = timezone.now()
    with transaction.atomic():
        # Locked as the planner locks it for a page: how far planning went is
        # read as it stops.
        mailing = (
            Mailing.objects.select_for_update()
            .filter(pk=mailing_id, status__in=RUNNING)
            .first()
        )
        if mailing is None:
            return False
        # A pause ends with the mailing: the desk showed a cancelled mailing
        # paused, and the reaper kept trying to resume one the breaker paused.
        Mailing.objects.filter(pk=mailing_id).update(
            status=Mailing.Status.CANCELLED,
            finished_at=now,
            paused_at=None,
            resume_at=None,
            pause_reason="",
        )
        batches_cancel(Batch.objects.filter(mailing_id=mailing_id), now=now)
        # Only a round cancelled while planning left readers unplanned: once
        # planned, a reader beyond it joined after, whom a later round may take.
        if mailing.status == Mailing.Status.PLANNING:
            digests.round_mark_unplanned(mailing=mailing)
    return True


def correction_send_again(*, mailing_id: int) -> bool:
    """Send a correction's email the author cancelled after all, to the readers it
    had not reached: its cancelled batches go back in the queue, and its audience
    is planned again for the readers the cancel kept from being planned, or
    settled as sent since. Who got it before keeps their one ledger row, and gets
    no second copy. Not while its post is off the site
    (MailingQuerySet.post_on_site).

    A correction's alone: its audience, those sent the post before it, is fixed,
    so planning it again finds only whom it has not reached.
    """
    cancelled = Mailing.objects.post_on_site().filter(
        pk=mailing_id,
        kind=Mailing.Kind.CORRECTION,
        status=Mailing.Status.CANCELLED,
    )
    with transaction.atomic():
        mailings_posts_lock(mailing_ids=[mailing_id])
        if not _plan_again(cancelled):
            return False
        batches_requeue_cancelled(
            Batch.objects.filter(mailing_id=mailing_id), now=timezone.now()
        )
        ring_once_committed(lambda: mailing_ring(mailing_id))
    return True


def batch_resend(*, batch_id: int) -> bool:
    """Send an uncertain batch's uncertain deliveries again, knowingly.

    Some of them may have reached the provider already: the author decides, after
    checking the provider's activity log, that a second copy is better than none.
    """
    with transaction.atomic():
        batch = _locked_with_its_mailing(batch_id)
        if (
            batch is None
            or batch.status != Batch.Status.UNCERTAIN
            or batch.mailing.status == Mailing.Status.CANCELLED
        ):
            return False
        batch.deliveries.filter(status=Delivery.Status.UNCERTAIN).update(
            status=Delivery.Status.QUEUED, error="resent by the author"
        )
        # None of its readers is uncertain now: counted so until the batch went
        # (close_batch recounts it), the mailing showed them uncertain while they
        # waited, and for good once cancelled (batches_cancel counts nothing).
        Batch.objects.filter(pk=batch_id).update(
            status=Batch.Status.QUEUED,
            touched_at=timezone.now(),
            finished_at=None,
            uncertain=0,
        )
        _reopen(batch.mailing_id)
        ring_once_committed(lambda: tasks.send_batch.delay(batch_id))
    return True


def batch_mark_sent(*, batch_id: int) -> bool:
    """Record an uncertain batch as delivered: the provider confirms it took it."""
    with transaction.atomic():
        # Locked as settling and resending lock it: taken in another order, the
        # three could deadlock on the batch's rows.
        batch = _locked_with_its_mailing(batch_id)
        if batch is None or batch.status != Batch.Status.UNCERTAIN:
            return False
        confirmed = Outcome(
            Delivery.Status.SENT, error="confirmed with the provider by the author"
        )
        uncertain = batch.deliveries.filter(status=Delivery.Status.UNCERTAIN)
        outcomes = dict.fromkeys(uncertain.values_list("pk", flat=True), confirmed)
        if _uncertain_settle(batch, outcomes, now=timezone.now()) is None:
            return False
    close_mailing_if_finished(batch.mailing_id)
    return True


def delivery_settle_by_event(*, delivery_id: int, message_id: str) -> bool:
    """Record an uncertain delivery as sent: the provider has reported on its
    message (delivered, bounced, opened…), so it took it. Whatever its batch is
    doing: one waiting for its retry, or being sent, may hold an uncertain reader
    (one lane's answer lost while another stopped early: close_batch keeps it
    queued), and the provider does not report again. An uncertain batch is closed
    once none of its deliveries is uncertain, as the author settling it would.
    Not a delivery settled otherwise meanwhile, nor one the author has put back
    in the queue (resend): that choice is theirs, and stands."""
    batch_id = (
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.UNCERTAIN)
        .values_list("batch_id", flat=True)
        .first()
    )
    if batch_id is None:
        return False
    with transaction.atomic():
        # Locked as the author's settling locks it, so an event arriving while
        # they settle the batch waits for them, then finds it settled.
        batch = _locked_with_its_mailing(batch_id)
        if batch is None:
            return False
        confirmed = Outcome(
            Delivery.Status.SENT,
            message_id[:255],
            CONFIRMED_BY_EVENT,
        )
        settled = _uncertain_settle(batch, {delivery_id: confirmed}, now=timezone.now())
        if settled is None:
            return False  # settled by another event, or resent, meanwhile
    close_mailing_if_finished(batch.mailing_id)
    return True


class SentAgainWhileAsked(Exception):
    """The batch was sent again while the provider was asked, and is uncertain
    again: the answer, about its earlier attempt, is not written to this one."""


def batch_settle_with_provider(*, batch_id: int) -> bool:
    """Settle an uncertain batch by asking the provider what it accepted.

    Recipients the provider took are recorded as sent; the others were never
    accepted, so they are queued and sent again: no one gets a second copy, no one
    is left without one. Raises provider.CannotAsk for providers without a search,
    and provider.TooSoonToAsk, changing nothing, for a batch uncertain for less
    than its provider's search_lag(): its search may not list yet what it took. Raises
    SentAgainWhileAsked, changing nothing, for one sent again as it was asked.
    """
    # When it turned uncertain: its last attempt's end (close_batch), or the
    # cancel's that left it so (batches_cancel), later than its readers' handing
    # over. Not touched_at: settling some of its readers moves it.
    asked_about = list(
        Batch.objects.filter(pk=batch_id, status=Batch.Status.UNCERTAIN).values_list(
            "attempts", "claimed_at", "finished_at"
        )
    )
    if not asked_about:
        return False
    ((attempts, claimed_at, finished_at),) = asked_about
    if timezone.now() < finished_at + search_lag():
        raise TooSoonToAsk(finished_at + search_lag())
    taken = accepted_recipients(
        batch=batch_id, went_out=claimed_at, uncertain_from=finished_at
    )
    # By the row the message names: the reader may have moved address since, and
    # their copy, taken at the old one, is still theirs. By address where it
    # names none.
    by_row = {a.delivery_id: a.message_id for a in taken if a.delivery_id}
    by_address = {a.address: a.message_id for a in taken if not a.delivery_id}
    uncertain = Delivery.objects.filter(
        batch_id=batch_id, status=Delivery.Status.UNCERTAIN
    ).values_list("pk", "subscriber__email")
    outcomes = {}
    for pk, email in uncertain:
        message_id = by_row.get(pk, by_address.get(email))
        outcomes[pk] = (
            Outcome(Delivery.Status.QUEUED, error="the provider never took it")
            if message_id is None
            else Outcome(Delivery.Status.SENT, message_id, "confirmed by the provider")
        )
    now = timezone.now()
    with transaction.atomic():
        batch = _locked_with_its_mailing(batch_id)
        if batch is None or batch.status != Batch.Status.UNCERTAIN:
            return False  # settled by someone else meanwhile: nothing written
        if (batch.attempts, batch.finished_at) != (attempts, finished_at):
            # Resent (or settled back into the queue), sent and uncertain again
            # while the provider was asked: its readers it took this time are
            # not in the answer, and would be sent a second copy.
            raise SentAgainWhileAsked(batch_id)
        status = _uncertain_settle(batch, outcomes, now=now)
        if status is None:
            return False  # its readers settled otherwise meanwhile
        if status == Batch.Status.QUEUED:
            if batch.mailing.status == Mailing.Status.CANCELLED:
                # What the provider never took is not sent now: the author
                # cancelled (no worker would claim the batch, and it waited in
                # the queue for good).
                batches_cancel(Batch.objects.filter(pk=batch_id), now=now)
            else:
                _reopen(batch.mailing_id)
                ring_once_committed(lambda: tasks.send_batch.delay(batch_id))
    close_mailing_if_finished(batch.mailing_id)
    return True


def _uncertain_settle(
    batch: Batch, outcomes: dict[int, Outcome], *, now: datetime
) -> str | None:
    """Record what became of a batch's uncertain deliveries. An uncertain batch is
    closed as its ledger then reads: queued again while any is to be sent again,
    still uncertain while any is, else done. Readers now known to have the post
    are owed the corrections confirmed without them. In the caller's transaction,
    `batch` locked with its mailing (_locked_with_its_mailing). Returns the
    batch's status then, or None when none of `outcomes` was still uncertain:
    nothing is written (but for an uncertain batch left with no uncertain
    reader at all, which is closed).

    The one way every settling writes, by the author or by the provider's event.
    Only deliveries still uncertain are written: one an event settled since the
    author asked the provider (whose search may not list it yet) is not sent a
    second copy, and one the author resent is sent as they chose."""
    uncertain = set(
        Delivery.objects.filter(
            batch_id=batch.pk, status=Delivery.Status.UNCERTAIN
        ).values_list("pk", flat=True)
    )
    outcomes = {pk: o for pk, o in outcomes.items() if pk in uncertain}
    if not uncertain and batch.status == Batch.Status.UNCERTAIN:
        # Every reader it held uncertain erased their data since, their rows
        # with them: nothing is left to settle, and unclosed it stayed uncertain
        # for good, the desk asking the author to settle it, every settling
        # refused. Closed as its ledger reads (its mailing's figures count those
        # readers as they count erased readers with no outcome).
        status, _queued = close_batch(
            batch.pk, from_status=Batch.Status.UNCERTAIN, now=now
        )
        return status
    if not outcomes:
        return None
    record_outcomes(outcomes, now, batch_id=batch.pk)
    sent = sum(o.status == Delivery.Status.SENT for o in outcomes.values())
    if sent:
        _corrections_plan_again(batch.pk)
    if batch.status != Batch.Status.UNCERTAIN:
        # Waiting for its retry or being sent: its worker hands over and writes
        # only its queued readers, and recounts them all as it closes the batch
        # (close_batch). Waiting, its figures are its last close's, which counted
        # these readers uncertain: until the retry they count them settled.
        # Being sent, they are left to that recount: a reader whose answer was
        # lost in this attempt is not counted in them yet.
        if batch.status == Batch.Status.QUEUED:
            Batch.objects.filter(pk=batch.pk).update(
                uncertain=F("uncertain") - len(outcomes), sent=F("sent") + sent
            )
        return batch.status
    status, _queued = close_batch(batch.pk, from_status=Batch.Status.UNCERTAIN, now=now)
    return status


def _corrections_plan_again(batch_id: int) -> None:
    """Readers of an uncertain batch settled as sent had the post's text as the
    batch rendered it when claimed: a correction confirmed since without them
    (Mailing.include_uncertain) is theirs now, and is planned again for them. Not
    one the author cancelled."""
    owed = corrections.emails_correcting_posts_in(batch_id=batch_id)
    for mailing_id in _plan_again(owed.exclude(status=Mailing.Status.CANCELLED)):
        _held_while_off_the_site(mailing_id)
        ring_once_committed(lambda i=mailing_id: tasks.plan_mailing.delay(i))


def _held_while_off_the_site(mailing_id: int) -> None:
    """Pause a mailing going out again while its post is off the site: its link
    would lead nowhere, and it waits, as the post's own emails do, for the author
    to resume it. The unpublish paused only the mailings going out then; one
    finished since going again (planned again, a batch resent) was left running,
    its batches queued unseen, and they went out once the post was back without
    the author resuming it. Read without the post's lock, which would come after
    the mailing's here (an unpublish committing as this reads is left to the
    sender's own check, which sends nothing while the post is off the site)."""
    if not Mailing.objects.post_on_site().filter(pk=mailing_id).exists():
        mailing_pause(
            mailing_id=mailing_id,
            reason="The post is not published: resume once it is published again.",
        )


def _plan_again(mailings: QuerySet[Mailing]) -> list[int]:
    """Plan correction emails again from their first reader, in the caller's
    transaction: their audience is walked anew for readers not yet in their
    ledger (planner._audience), whom it gained since. Returns their ids, to ring
    once committed."""
    # Locked first: a cancel, or a planning step, in between waits or is seen.
    ids = list(mailings.select_for_update().values_list("pk", flat=True))
    Mailing.objects.filter(pk__in=ids).update(
        status=Mailing.Status.PLANNING,
        planned_up_to=0,
        finished_at=None,
        touched_at=timezone.now(),
    )
    return ids


def _locked_with_its_mailing(batch_id: int) -> Batch | None:
    """The batch, its row and its mailing's locked until the transaction ends
    (PostgreSQL locks both rows of the join, always in this order, so settling
    and resending cannot deadlock): a batch put back in the queue is then seen by
    whoever closes the mailing (close_mailing_if_finished)."""
    batches = Batch.objects.select_for_update().select_related("mailing")
    return batches.filter(pk=batch_id).first()


def _reopen(mailing_id: int) -> None:
    """A finished mailing has a batch to send again (held while its post is off
    the site)."""
    if Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.DONE).update(
        status=Mailing.Status.SENDING, finished_at=None
    ):
        _held_while_off_the_site(mailing_id)
