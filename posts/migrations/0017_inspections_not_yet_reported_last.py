from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("posts", "0016_count_link_checks_rung_again"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="inspection",
            options={
                "ordering": [
                    models.OrderBy(
                        models.F("published_on"), descending=True, nulls_last=True
                    ),
                    "id",
                ]
            },
        ),
    ]
