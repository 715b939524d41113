import django.db.models.deletion
from django.db import migrations, models

# Readers are hashed a thousand at a time: a dict of their hashes, some 150 KB.
READERS_PER_BATCH = 1000


def link_readers(apps, schema_editor):
    """Each suppression's reader, found once by hashing every reader's address,
    as lifting a suppression did each time before."""
    # The list's own key, not a copy of it: a copy that drifted would link nobody.
    from newsletter.models import Suppression as CurrentSuppression

    Subscriber = apps.get_model("newsletter", "Subscriber")
    Suppression = apps.get_model("newsletter", "Suppression")
    readers = Subscriber.objects.order_by("pk").values_list("pk", "email")
    batch = {}
    for pk, email in readers.iterator(chunk_size=READERS_PER_BATCH):
        batch[CurrentSuppression.hash_address(email)] = pk
        if len(batch) == READERS_PER_BATCH:
            _link(Suppression, batch)
            batch = {}
    _link(Suppression, batch)


def _link(Suppression, reader_by_hash):
    suppressed = Suppression.objects.filter(address_hash__in=reader_by_hash)
    for pk, address_hash in suppressed.values_list("pk", "address_hash"):
        Suppression.objects.filter(pk=pk).update(reader_id=reader_by_hash[address_hash])


class Migration(migrations.Migration):

    dependencies = [
        ("newsletter", "0015_suppression_keeps_the_readers_own_reason"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="reader",
            field=models.ForeignKey(
                blank=True,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="newsletter.subscriber",
            ),
        ),
        migrations.RunPython(link_readers, migrations.RunPython.noop),
    ]
