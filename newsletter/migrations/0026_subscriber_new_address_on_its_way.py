from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("newsletter", "0025_signature_token"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscriber",
            name="email_change_to",
            field=models.EmailField(blank=True, editable=False, max_length=254),
        ),
        migrations.AddField(
            model_name="subscriber",
            name="one_time_link_new_email",
            field=models.EmailField(blank=True, editable=False, max_length=254),
        ),
    ]
