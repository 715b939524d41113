import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0032_sponsorship_saved_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="category",
            name="saved_at",
            field=models.DateTimeField(
                auto_now=True, default=django.utils.timezone.now
            ),
            preserve_default=False,
        ),
    ]
