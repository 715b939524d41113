from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0016_suppression_reader"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="sender_refused",
            field=models.BooleanField(default=False),
        ),
    ]
