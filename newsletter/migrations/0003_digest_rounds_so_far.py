"""Readers who were in a digest round before rounds went by the reader's own hour
count it as their last, so none gets a second digest on the day this ships; and
those rounds get a slot, the moment they started."""

from django.db import migrations
from django.db.models import F


def record_last_rounds(apps, schema_editor):
    Mailing = apps.get_model("newsletter", "Mailing")
    Subscriber = apps.get_model("newsletter", "Subscriber")
    Mailing.objects.filter(kind="digest", slot__isnull=True).update(
        slot=F("created_at")
    )
    for frequency in ("daily", "weekly"):
        last = (
            Mailing.objects.filter(kind="digest", frequency=frequency)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is not None:
            Subscriber.objects.update(**{f"last_{frequency}_round_at": last})


class Migration(migrations.Migration):
    dependencies = [("newsletter", "0002_digest_times")]

    operations = [migrations.RunPython(record_last_rounds, migrations.RunPython.noop)]
