from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0023_suppression_reader_left_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="suppression",
            name="reader_joined_week",
            field=models.DateField(blank=True, editable=False, null=True),
        ),
    ]
