from celery import shared_task
from django.utils import timezone

from . import delivery, digests


@shared_task
def start_due_digests() -> list[int]:
    """Beat, every 15 minutes: create each digest round that is due. Its planning
    and batches then go as every mailing's do; the reaper recovers them."""
    now = timezone.now()
    return [
        delivery.mailing_create_for_digest(
            frequency=frequency, period=digests.period_of(now)
        ).pk
        for frequency in digests.rounds_due(now=now)
    ]
