from django.db import migrations, models
from django.db.models import Q


def mark_readers_who_left(apps, schema_editor):
    """The desk's growth chart counts readers leaving by the mark from now on:
    given to the suppressions made before it, its weeks do not read empty.
    A suppression whose reader had confirmed left when it was made. An erased
    reader's are all marked, as the chart counted them before: which of their
    addresses they held last is not kept."""
    Suppression = apps.get_model("newsletter", "Suppression")
    Suppression.objects.filter(
        Q(reader__confirmed_at__isnull=False)
        | Q(reader__isnull=True, reason="deleted")
        | Q(reader__isnull=True, readers_reason="deleted")
    ).update(reader_left_at=models.F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0022_subscriber_email_change_taken_for"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="reader_left_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(mark_readers_who_left, migrations.RunPython.noop),
    ]
