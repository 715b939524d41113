from celery import shared_task
from django.utils import timezone

from . import digests
from .delivery import RetryLater
from .tasks import backoff


@shared_task
def start_due_digests() -> list[int]:
    """Beat, every 15 minutes: create each round that is due and ring for its
    sending; settle digests whose worker died; ring again for rounds left
    unfinished."""
    started = []
    now = timezone.now()
    for frequency in digests.digests_due(now=now):
        run = digests.digest_run_create(frequency=frequency, now=now)
        if run is not None:
            ring_digest_run(run.pk)
            started.append(run.pk)
    digests.settle_lost_claims(now=now)
    # A round whose task gave up retrying, or was lost with the broker, is rung
    # again; the claims keep a second task from sending anyone's digest twice.
    for run_id in digests.unfinished_runs(now=now):
        ring_digest_run(run_id)
    return started


def ring_digest_run(run_id: int) -> None:
    """One task per slice of the round's queued digests, for the workers to share;
    with none queued, the round may be finished already."""
    parts = digests.slices(run_id=run_id)
    for first, last in parts:
        send_digest_run.delay(run_id, first, last)
    if not parts:
        digests.close_run(run_id)


@shared_task(bind=True, max_retries=12)
def send_digest_run(
    self, run_id: int, first: int | None = None, last: int | None = None
) -> int:
    try:
        return digests.send_digest_run(run_id=run_id, first=first, last=last)
    except RetryLater as exc:
        # A 429's Retry-After or the budget's wait, else backoff; what is still
        # queued after the last retry goes when beat finds the round unfinished.
        countdown = exc.countdown or backoff(self.request.retries)
        raise self.retry(exc=exc, countdown=countdown) from exc
