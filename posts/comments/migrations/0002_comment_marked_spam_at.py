from django.db import migrations, models
from django.utils import timezone


def spam_marked_now(apps, schema_editor):
    # When the spam there is was marked is not known: taken as now, it is kept
    # another COMMENTS_KEEP_IP_DAYS, so no comment marked by mistake goes at
    # deploy (by its age, as the purge went before) before it can be put back.
    Comment = apps.get_model("comments", "Comment")
    Comment.objects.filter(status="spam").update(marked_spam_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("comments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="comment",
            name="marked_spam_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.RunPython(spam_marked_now, migrations.RunPython.noop),
    ]
