from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0015_count_renditions_rung_again"),
    ]

    operations = [
        migrations.AddField(
            model_name="post",
            name="links_check_rung_again",
            field=models.PositiveSmallIntegerField(default=0, editable=False),
        ),
    ]
