from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0018_subscriber_owed_a_welcome"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="sender_refused",
            field=models.BooleanField(
                default=False, editable=False, verbose_name="refused our sender"
            ),
        ),
    ]
