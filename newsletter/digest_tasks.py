from celery import shared_task
from django.utils import timezone

from . import digests
from .delivery import RetryLater
from .tasks import backoff


@shared_task
def start_due_digests() -> list[int]:
    """Beat, every 15 minutes: create each round that is due and ring for its
    sending; ring again for rounds left unfinished."""
    started = []
    now = timezone.now()
    for frequency in digests.digests_due(now=now):
        run = digests.digest_run_create(frequency=frequency, now=now)
        if run is not None:
            send_digest_run.delay(run.pk)
            started.append(run.pk)
    # A round whose task gave up retrying, or was lost with the broker, is rung
    # again; the claims keep a second task from sending anyone's digest twice.
    for run_id in digests.unfinished_runs(now=now):
        send_digest_run.delay(run_id)
    return started


@shared_task(bind=True, max_retries=12)
def send_digest_run(self, run_id: int) -> int:
    try:
        return digests.send_digest_run(run_id=run_id)
    except RetryLater as exc:
        # A 429's Retry-After or the budget's wait, else backoff; what is still
        # queued after the last retry goes when beat finds the round unfinished.
        countdown = exc.countdown or backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc
