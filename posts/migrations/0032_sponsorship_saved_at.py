import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0031_notes_named_and_authors_ids_their_own"),
    ]

    operations = [
        migrations.AddField(
            model_name="sponsorship",
            name="saved_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
    ]
