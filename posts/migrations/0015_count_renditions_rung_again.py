from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0014_ring_lost_renditions_and_link_checks_again"),
    ]

    operations = [
        migrations.AddField(
            model_name="imagetoresize",
            name="rung_again",
            field=models.PositiveSmallIntegerField(default=0),
        ),
    ]
