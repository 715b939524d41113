from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0017_delivery_sender_refused"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscriber",
            name="welcome_rung_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="subscriber",
            index=models.Index(
                condition=models.Q(("welcome_rung_at__isnull", False)),
                fields=["welcome_rung_at"],
                name="subscriber_owed_a_welcome",
            ),
        ),
    ]
