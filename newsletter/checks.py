"""The configuration's system checks (manage.py check; with --deploy, the
production ones): settings that start, yet would quietly do the wrong thing."""

from urllib.parse import urlsplit

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


@checks.register(checks.Tags.security, deploy=True)
def check_site_url_https(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every link in an email starts with SITE_URL: one-click unsubscribe (RFC
    8058) must be an https link, and over http the site's secure cookies never
    come back. Development (DEBUG, `make run`) serves http://127.0.0.1."""
    if settings.DEBUG or urlsplit(settings.SITE_URL).scheme == "https":
        return []
    return [
        checks.Error(
            f"SITE_URL must be an https address when DJANGO_DEBUG is off, not "
            f"{settings.SITE_URL!r}.",
            hint="Set SITE_URL to the site's https address, e.g. "
            "https://news.example.org.",
            id="newsletter.E001",
        )
    ]


@checks.register()
def check_pending_outlives_confirmation(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """The purge deletes a subscription never confirmed once its latest
    confirmation email is this old: sooner than the link expires, and a reader
    who follows a link the email says still works finds it gone."""
    pending = settings.NEWSLETTER_PENDING_MAX_AGE_SECONDS
    link = settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS
    if pending >= link:
        return []
    return [
        checks.Error(
            f"NEWSLETTER_PENDING_EXPIRE_DAYS ({pending // 86400}) is shorter than "
            f"NEWSLETTER_CONFIRM_MAX_AGE_DAYS ({link // 86400}): unconfirmed "
            "subscriptions would be deleted while their confirmation link still "
            "works.",
            hint="Set NEWSLETTER_PENDING_EXPIRE_DAYS to at least "
            "NEWSLETTER_CONFIRM_MAX_AGE_DAYS.",
            id="newsletter.E002",
        )
    ]
