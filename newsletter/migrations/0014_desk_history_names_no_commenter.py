from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Concat


def history_names_nobody(apps, schema_editor):
    # The desk's history named a comment by its commenter and a tracking event by
    # its address; erasure rewrites the entries of rows it finds, not those of
    # rows the desk deleted before. Comment.__str__ and Event.__str__ name nobody
    # now; the entries written before name the row by its number.
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")
    for app_label, model, name in [
        ("comments", "comment", "Comment #"),
        ("newsletter", "event", "Event #"),
    ]:
        content_type = ContentType.objects.filter(
            app_label=app_label, model=model
        ).first()
        if content_type is not None:
            LogEntry.objects.filter(content_type=content_type).update(
                object_repr=Concat(Value(name), "object_id")
            )


class Migration(migrations.Migration):
    dependencies = [
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("comments", "0003_percent_encode_websites"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("newsletter", "0013_batch_counts_erased_readers"),
    ]

    operations = [
        migrations.RunPython(history_names_nobody, migrations.RunPython.noop),
    ]
