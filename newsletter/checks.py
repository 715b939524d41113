"""The configuration's system checks (manage.py check; with --deploy, the
production ones): settings that start, yet would quietly do the wrong thing."""

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def check_webhook_secret(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Without a secret the tracking webhook is off: bounces and complaints are
    never recorded, and the list keeps mailing addresses that refuse it."""
    if settings.ANYMAIL.get("WEBHOOK_SECRET"):
        return []
    return [
        checks.Warning(
            "ANYMAIL_WEBHOOK_SECRET is not set: tracking webhooks are off.",
            hint="Set ANYMAIL_WEBHOOK_SECRET to 'user:password' and put the same "
            "credentials in the webhook URL you give your ESP.",
            id="newsletter.W001",
        )
    ]
