from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0019_event_sender_refused"),
    ]

    operations = [
        migrations.CreateModel(
            name="OwedCommentDigest",
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
                ("reported_at", models.DateTimeField()),
                ("email", models.EmailField(max_length=254)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("reported_at", "email"),
                        name="one_digest_copy_a_mailbox",
                    )
                ],
            },
        ),
    ]
