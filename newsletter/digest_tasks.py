from celery import shared_task
from django.utils import timezone

from . import delivery, digests


@shared_task
def start_due_digests() -> list[int]:
    """Beat, on each quarter hour: create each digest round due in this slot. Its
    planning and batches then go as every mailing's do; the reaper recovers them."""
    slot = digests.slot_of(timezone.now())
    return [
        delivery.mailing_create_for_digest(frequency=frequency, slot=slot).pk
        for frequency in digests.rounds_due(slot=slot)
    ]
