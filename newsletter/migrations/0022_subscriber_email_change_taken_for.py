from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0021_consent_confirmation_taken_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscriber",
            name="email_change_taken_for",
            field=models.DateTimeField(editable=False, null=True),
        ),
    ]
