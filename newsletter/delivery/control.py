"""The author's controls over a send: pause, resume, cancel, and the deliberate
handling of uncertain batches. Each is a service the admin calls."""

from django.db import transaction
from django.utils import timezone

from .. import tasks
from ..models import Batch, Delivery, Send
from . import ledger, provider
from .ledger import Outcome
from .sender import close_send_if_finished

RUNNING = [Send.Status.PLANNING, Send.Status.SENDING]


def send_pause(*, send_id: int, reason: str = "Paused by the author.") -> bool:
    """Stop claiming batches; a batch already in flight finishes. Until resumed."""
    return bool(
        Send.objects.filter(
            pk=send_id, status__in=RUNNING, paused_at__isnull=True
        ).update(paused_at=timezone.now(), resume_at=None, pause_reason=reason)
    )


def send_resume(*, send_id: int) -> bool:
    """Lift a pause and ring again for everything the pause left waiting."""
    with transaction.atomic():
        resumed = Send.objects.filter(
            pk=send_id, status__in=RUNNING, paused_at__isnull=False
        ).update(
            paused_at=None, resume_at=None, pause_reason="", consecutive_failures=0
        )
        if resumed:
            transaction.on_commit(lambda: ring_send(send_id))
    return bool(resumed)


def ring_send(send_id: int) -> None:
    """Enqueue the planning step and every queued batch of a send."""
    if Send.objects.filter(pk=send_id, status=Send.Status.PLANNING).exists():
        tasks.plan_send.delay(send_id)
    queued = Batch.objects.filter(send_id=send_id, status=Batch.Status.QUEUED)
    for batch_id in queued.values_list("pk", flat=True).iterator():
        tasks.send_batch.delay(batch_id)


def send_cancel(*, send_id: int) -> bool:
    """Stop a send for good. Nobody not yet handed over gets it; the ledger says so."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = Send.objects.filter(pk=send_id, status__in=RUNNING).update(
            status=Send.Status.CANCELLED, finished_at=now
        )
        if cancelled:
            Batch.objects.filter(send_id=send_id, status=Batch.Status.QUEUED).update(
                status=Batch.Status.CANCELLED, finished_at=now
            )
            Delivery.objects.filter(
                send_id=send_id, status=Delivery.Status.QUEUED
            ).update(status=Delivery.Status.SKIPPED, error="send cancelled")
    return bool(cancelled)


def batch_resend(*, batch_id: int) -> bool:
    """Send an uncertain batch's uncertain deliveries again, knowingly.

    Some of them may have reached the provider already: the author decides, after
    checking the provider's activity log, that a second copy is better than none.
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(
            pk=batch_id, status=Batch.Status.UNCERTAIN
        )
        batch = batch.select_related("send").first()
        if batch is None or batch.send.status == Send.Status.CANCELLED:
            return False
        batch.deliveries.filter(status=Delivery.Status.UNCERTAIN).update(
            status=Delivery.Status.QUEUED, error="resent by the author"
        )
        Batch.objects.filter(pk=batch_id).update(
            status=Batch.Status.QUEUED, touched_at=timezone.now(), finished_at=None
        )
        Send.objects.filter(pk=batch.send_id, status=Send.Status.DONE).update(
            status=Send.Status.SENDING, finished_at=None
        )
        transaction.on_commit(lambda: tasks.send_batch.delay(batch_id))
    return True


def batch_mark_sent(*, batch_id: int) -> bool:
    """Record an uncertain batch as delivered: the provider confirms it took it."""
    with transaction.atomic():
        batch = Batch.objects.filter(pk=batch_id, status=Batch.Status.UNCERTAIN).first()
        if batch is None:
            return False
        now = timezone.now()
        batch.deliveries.filter(status=Delivery.Status.UNCERTAIN).update(
            status=Delivery.Status.SENT,
            sent_at=now,
            error="confirmed with the provider by the author",
        )
        ledger.close_batch(batch_id, from_status=Batch.Status.UNCERTAIN, now=now)
    close_send_if_finished(batch.send_id)
    return True


def batch_resolve_with_provider(*, batch_id: int) -> bool:
    """Settle an uncertain batch by asking the provider what it accepted.

    Recipients the provider took are recorded as sent; the others were never
    accepted, so they are queued and sent again: no one gets a second copy, no one
    is left without one. Raises provider.CannotAsk for providers without a search.
    """
    if not Batch.objects.filter(pk=batch_id, status=Batch.Status.UNCERTAIN).exists():
        return False
    accepted = provider.accepted_recipients(batch=batch_id)
    uncertain = Delivery.objects.filter(
        batch_id=batch_id, status=Delivery.Status.UNCERTAIN
    ).values_list("pk", "subscriber__email")
    outcomes = {
        pk: Outcome(Delivery.Status.SENT, accepted[email], "confirmed by the provider")
        if email in accepted
        else Outcome(Delivery.Status.QUEUED, error="the provider never took it")
        for pk, email in uncertain
    }
    now = timezone.now()
    with transaction.atomic():
        ledger.record_outcomes(outcomes, now)
        status, _others = ledger.close_batch(
            batch_id, from_status=Batch.Status.UNCERTAIN, now=now
        )
        send_id = Batch.objects.values_list("send_id", flat=True).get(pk=batch_id)
        if status == Batch.Status.QUEUED:
            Send.objects.filter(pk=send_id, status=Send.Status.DONE).update(
                status=Send.Status.SENDING, finished_at=None
            )
            transaction.on_commit(lambda: tasks.send_batch.delay(batch_id))
    close_send_if_finished(send_id)
    return True
