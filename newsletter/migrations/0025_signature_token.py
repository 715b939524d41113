from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0024_suppression_reader_joined_week"),
    ]

    operations = [
        migrations.CreateModel(
            name="SignatureToken",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("token", models.CharField(max_length=255, unique=True)),
                ("received_at", models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
        ),
    ]
