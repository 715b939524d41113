"""The reaper, run by beat: recovers work whose worker died or whose doorbell the
broker lost (a Redis restart loses queued tasks), resumes mailings whose
circuit-breaker cool-down is over, cancels the batches a cancelled mailing left in
the queue, and closes mailings whose last batches finished side by side. The same
for every kind of mailing."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..enqueue import tasks
from ..models import Batch, Delivery, Mailing
from .control import mailing_resume
from .ledger import Outcome, close_batch, record_outcomes
from .sender import batch_cancel_if_mailing_cancelled, close_mailing_if_finished


def mailings_reap() -> dict[str, int]:
    now = timezone.now()
    claim_cutoff = now - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS)
    doorbell_cutoff = now - timedelta(
        seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS
    )
    counts = dict.fromkeys(
        [
            "stale_claims",
            "batches_rung",
            "batches_cancelled",
            "mailings_rung",
            "mailings_resumed",
        ],
        0,
    )

    stale = Batch.objects.filter(
        status=Batch.Status.SENDING, touched_at__lt=claim_cutoff
    ).values_list("pk", "touched_at")
    for batch_id, touched_at in stale:
        with transaction.atomic():
            # Re-check under the same clock: a live worker may have moved on.
            if not Batch.objects.filter(
                pk=batch_id, status=Batch.Status.SENDING, touched_at=touched_at
            ).update(touched_at=now):
                continue
            # The worker died holding the batch: any of its queued rows may have
            # been handed over without the answer being recorded. Written as a
            # lost answer is (a row the provider's event told of is sent),
            # locked until then: a slow worker's answers wait, and replace it.
            queued = Delivery.objects.filter(
                batch_id=batch_id, status=Delivery.Status.QUEUED
            ).select_for_update()
            record_outcomes(
                dict.fromkeys(
                    queued.values_list("pk", flat=True),
                    Outcome(
                        Delivery.Status.UNCERTAIN,
                        error="worker stopped while sending; not resent automatically",
                    ),
                ),
                now,
                batch_id=batch_id,
            )
            status, _queued = close_batch(
                batch_id,
                from_status=Batch.Status.SENDING,
                now=now,
                error="worker stopped while sending",
            )
        counts["stale_claims"] += 1
        if status == Batch.Status.QUEUED:
            tasks.send_batch.delay(batch_id)

    due = Mailing.objects.filter(paused_at__isnull=False, resume_at__lte=now)
    for mailing_id in due.values_list("pk", flat=True):
        counts["mailings_resumed"] += mailing_resume(
            mailing_id=mailing_id, cooled_down_by=now
        )

    running = Mailing.objects.going_out().filter(pk=OuterRef("mailing_id"))
    lost = Batch.objects.filter(
        Exists(running), status=Batch.Status.QUEUED, touched_at__lt=doorbell_cutoff
    )
    for batch_id in lost.values_list("pk", flat=True):
        Batch.objects.filter(pk=batch_id).update(touched_at=now)
        tasks.send_batch.delay(batch_id)
        counts["batches_rung"] += 1

    # A batch put back in the queue as its mailing was cancelled (after the
    # cancel, before its worker saw it), whose retry the broker lost: no worker
    # claims a cancelled mailing's batch, so it waited for good, and the mailing's
    # figures never ended. Finished as the cancel would have, at once, not a
    # doorbell late: nothing would send it.
    stranded = Batch.objects.filter(
        status=Batch.Status.QUEUED, mailing__status=Mailing.Status.CANCELLED
    )
    for batch_id in stranded.values_list("pk", flat=True):
        counts["batches_cancelled"] += batch_cancel_if_mailing_cancelled(batch_id, now)

    for mailing_id in Mailing.objects.filter(
        # A paused round is planned all the same (planner.mailing_plan_page).
        Q(paused_at__isnull=True) | Q(kind=Mailing.Kind.DIGEST),
        status=Mailing.Status.PLANNING,
        touched_at__lt=doorbell_cutoff,
    ).values_list("pk", flat=True):
        Mailing.objects.filter(pk=mailing_id).update(touched_at=now)
        tasks.plan_mailing.delay(mailing_id)
        counts["mailings_rung"] += 1

    for mailing_id in Mailing.objects.filter(status=Mailing.Status.SENDING).values_list(
        "pk", flat=True
    ):
        close_mailing_if_finished(mailing_id)
    return counts
