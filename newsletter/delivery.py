"""Sending a post to its audience, exactly once per subscriber.

The database is the source of truth and the broker only rings the doorbell:
1. Publishing creates one Send per post (unique), in the publishing transaction.
2. Planning walks the audience by keyset (id > cursor), one batch per step, writing
   one Delivery row per recipient; the cursor moves in the same transaction.
3. A batch task claims its batch with one conditional UPDATE, renders the post once,
   and claims each Delivery (QUEUED -> SENDING) before handing it to the provider.
   A row a dead worker left in SENDING may have gone out: it becomes UNCERTAIN and
   is never resent blindly.
4. The reaper re-rings doorbells the broker lost and frees claims dead workers left.
"""

import smtplib
import socket
from datetime import timedelta

import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.core import mail
from django.db import transaction
from django.db.models import Exists, F
from django.utils import timezone
from urllib3.exceptions import NewConnectionError

from posts.models import Post

from . import tasks
from .emails import PostEmail
from .models import Batch, Delivery, Send, Subscriber

# Recipients per batch task. A batch holds this many (id, email) rows in memory and
# is the unit a crash can leave uncertain, so keep it in the hundreds.
BATCH_SIZE = 200
# A claimed batch untouched this long belongs to a worker that died.
CLAIM_TIMEOUT = timedelta(minutes=10)
# A queued batch or planning send untouched this long lost its doorbell.
DOORBELL_TIMEOUT = timedelta(minutes=5)


class ProviderUnavailable(Exception):
    """The provider did not take the message now; the batch should be retried."""


def send_create_for_post(*, post: Post) -> None:
    """Create the post's one Send and ring for planning once the transaction commits."""
    send, created = Send.objects.get_or_create(post=post)
    if created:
        transaction.on_commit(lambda: tasks.plan_send.delay(send.pk))


def plan_next_batch(*, send_id: int) -> bool:
    """Plan the next batch of a send. Returns True while there is more to plan."""
    with transaction.atomic():
        send = Send.objects.select_for_update().filter(pk=send_id).first()
        if send is None or send.status != Send.Status.PLANNING:
            return False
        now = timezone.now()
        recipient_ids = list(
            Subscriber.objects.confirmed()
            .filter(pk__gt=send.planned_up_to)
            .order_by("pk")
            .values_list("pk", flat=True)[:BATCH_SIZE]
        )
        if not recipient_ids:
            send.status = Send.Status.SENDING
            send.planned_at = now
            send.save(update_fields=["status", "planned_at"])
            # Every batch may have gone out while planning was still running.
            _close_send_if_finished(send.pk)
            return False
        batch = Batch.objects.create(send=send, number=send.batch_count + 1)
        Delivery.objects.bulk_create(
            Delivery(send=send, batch=batch, subscriber_id=pk) for pk in recipient_ids
        )
        send.planned_up_to = recipient_ids[-1]
        send.batch_count += 1
        send.touched_at = now
        send.save(update_fields=["planned_up_to", "batch_count", "touched_at"])
        transaction.on_commit(lambda: tasks.send_batch.delay(batch.pk))
    return True


def send_batch(*, batch_id: int) -> None:
    """Send one batch. Raises ProviderUnavailable when it should be retried later."""
    claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.QUEUED).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return  # done already, or another worker has it
    batch = Batch.objects.select_related("send__post").get(pk=batch_id)
    post_email = PostEmail(batch.send.post)
    queued = (
        batch.deliveries.filter(status=Delivery.Status.QUEUED)
        .select_related("subscriber")
        .order_by("pk")
    )
    with mail.get_connection() as connection:
        for delivery in queued:
            if delivery.subscriber.status != Subscriber.Status.ACTIVE:
                _record(
                    delivery, Delivery.Status.SKIPPED, "unsubscribed before sending"
                )
                continue
            if not _claim(delivery):
                continue
            message = post_email.for_subscriber(
                delivery.subscriber, connection=connection
            )
            try:
                message.send()
            except AnymailRecipientsRefused as exc:
                _record(delivery, Delivery.Status.FAILED, str(exc))
            except Exception as exc:
                if provider_refused(exc):
                    _record(delivery, Delivery.Status.QUEUED, str(exc))
                else:
                    _record(delivery, Delivery.Status.UNCERTAIN, repr(exc))
                _release(batch)
                raise ProviderUnavailable(str(exc)) from exc
            else:
                _record(
                    delivery,
                    Delivery.Status.SENT,
                    esp_message_id=_message_id(message),
                )
    _finish(batch)


def provider_refused(exc: BaseException) -> bool:
    """True when an error proves the provider did not accept the message.

    An HTTP error answer, or a connection that was never made, means nothing was
    accepted and a retry is safe. A connection that broke after the request went
    out, or a timeout waiting for the answer, might hide an accepted message.
    """
    if isinstance(exc, AnymailAPIError):
        if exc.status_code is not None:
            return True
        if exc.__cause__ is not None:  # the requests error anymail wrapped
            return provider_refused(exc.__cause__)
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        # requests raises ConnectionError both for a refused connection and for one
        # dropped mid-answer; only the first proves nothing was sent.
        reason = getattr(exc.args[0] if exc.args else None, "reason", None)
        return isinstance(reason, NewConnectionError)
    return isinstance(
        exc,
        ConnectionRefusedError
        | socket.gaierror
        | smtplib.SMTPConnectError
        | smtplib.SMTPSenderRefused
        | smtplib.SMTPAuthenticationError,
    )


def _claim(delivery: Delivery) -> bool:
    return bool(
        Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.QUEUED).update(
            status=Delivery.Status.SENDING
        )
    )


def _record(
    delivery: Delivery, status: str, error: str = "", *, esp_message_id: str = ""
) -> None:
    Delivery.objects.filter(pk=delivery.pk).update(
        status=status,
        error=error[:2000],
        esp_message_id=esp_message_id,
        sent_at=timezone.now() if status == Delivery.Status.SENT else None,
    )


def _message_id(message) -> str:
    status = getattr(message, "anymail_status", None)
    return (status.message_id or "") if status else ""


def _release(batch: Batch) -> None:
    Batch.objects.filter(pk=batch.pk, status=Batch.Status.SENDING).update(
        status=Batch.Status.QUEUED, touched_at=timezone.now()
    )


def _finish(batch: Batch) -> None:
    """Close the batch when nothing in it waits, and the send with its last batch."""
    now = timezone.now()
    waiting = batch.deliveries.filter(
        status__in=[Delivery.Status.QUEUED, Delivery.Status.SENDING]
    )
    if waiting.exists():
        _release(batch)
        return
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.DONE, finished_at=now)
    _close_send_if_finished(batch.send_id)


def _close_send_if_finished(send_id: int) -> None:
    """Mark a fully planned send done once none of its batches is waiting.

    Called by the planner and by each batch; whichever comes last closes it. On
    PostgreSQL the planner's row lock makes a batch's UPDATE wait and re-check.
    """
    unfinished = Batch.objects.filter(
        send_id=send_id, status__in=[Batch.Status.QUEUED, Batch.Status.SENDING]
    )
    Send.objects.filter(pk=send_id, status=Send.Status.SENDING).exclude(
        Exists(unfinished)
    ).update(status=Send.Status.DONE, finished_at=timezone.now())


def reap() -> dict[str, int]:
    """Recover work whose worker died or whose doorbell the broker lost."""
    now = timezone.now()
    counts = {"stale_claims": 0, "batches_rung": 0, "sends_rung": 0}
    for batch in Batch.objects.filter(
        status=Batch.Status.SENDING, touched_at__lt=now - CLAIM_TIMEOUT
    ):
        with transaction.atomic():
            if not Batch.objects.filter(
                pk=batch.pk, status=Batch.Status.SENDING, touched_at=batch.touched_at
            ).update(status=Batch.Status.QUEUED, touched_at=now):
                continue
            # The worker died between handing these over and recording the answer.
            batch.deliveries.filter(status=Delivery.Status.SENDING).update(
                status=Delivery.Status.UNCERTAIN,
                error="worker stopped while sending; not resent automatically",
            )
        counts["stale_claims"] += 1
        tasks.send_batch.delay(batch.pk)
    for batch_id in Batch.objects.filter(
        status=Batch.Status.QUEUED, touched_at__lt=now - DOORBELL_TIMEOUT
    ).values_list("pk", flat=True):
        Batch.objects.filter(pk=batch_id).update(touched_at=now)
        tasks.send_batch.delay(batch_id)
        counts["batches_rung"] += 1
    for send_id in Send.objects.filter(
        status=Send.Status.PLANNING, touched_at__lt=now - DOORBELL_TIMEOUT
    ).values_list("pk", flat=True):
        Send.objects.filter(pk=send_id).update(touched_at=now)
        tasks.plan_send.delay(send_id)
        counts["sends_rung"] += 1
    return counts
