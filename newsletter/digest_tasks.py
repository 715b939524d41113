from celery import shared_task
from django.utils import timezone

from . import digests


@shared_task
def start_due_digests() -> list[int]:
    """Beat, hourly: create each round that is due and ring for its sending."""
    started = []
    now = timezone.now()
    for frequency in digests.digests_due(now=now):
        run = digests.digest_run_create(frequency=frequency, now=now)
        if run is not None:
            send_digest_run.delay(run.pk)
            started.append(run.pk)
    return started


@shared_task
def send_digest_run(run_id: int) -> int:
    return digests.send_digest_run(run_id=run_id)
