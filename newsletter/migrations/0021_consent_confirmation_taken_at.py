from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0020_owed_comment_digest"),
    ]

    operations = [
        migrations.AddField(
            model_name="consent",
            name="confirmation_taken_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
    ]
