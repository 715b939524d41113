import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0013_tables_scroll_in_their_own_box"),
    ]

    operations = [
        migrations.CreateModel(
            name="ImageToResize",
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
                ("name", models.CharField(max_length=255, unique=True)),
                ("rung_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.AddField(
            model_name="post",
            name="links_check_rung_at",
            field=models.DateTimeField(editable=False, null=True),
        ),
    ]
