"""The configuration's system checks (manage.py check; with --deploy, the
production ones): settings that start, yet would quietly do the wrong thing."""

import ipaddress
from email.utils import parseaddr
from urllib.parse import urlsplit

from anymail.backends.base_requests import AnymailRequestsBackend
from django.conf import settings
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.http.request import validate_host
from django.utils.module_loading import import_string

from posts.validators import normalise_email

from .delivery.ratelimit import MAX_WAIT_SECONDS
from .delivery.sender import CLAIM_RENEWAL_SHARE
from .dkim import DKIMEmailBackend, dns_name
from .esp import PROVIDER_BY_BACKEND, is_providers


def email_backend() -> type | None:
    """The EMAIL_BACKEND class, or None where it names none (E013 says so)."""
    try:
        return import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return None


@checks.register()
def check_email_backend_exists(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A typo in EMAIL_BACKEND stopped the checks with a traceback from inside
    one of them, and a site started without them failed every email."""
    if email_backend() is not None:
        return []
    return [
        checks.Error(
            f"EMAIL_BACKEND ({settings.EMAIL_BACKEND}) names no email backend.",
            hint="Set it to your provider's, e.g. "
            "anymail.backends.postmark.EmailBackend (docs/email.md).",
            id="newsletter.E013",
        )
    ]


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
def check_provider_has_tracking(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """anymail sends through many providers, but the site reads the tracking
    events of Postmark and Mailgun alone: through any other, the site started,
    the secret set, and no bounce or complaint was ever recorded, the list
    mailing addresses that refuse it, which only the Events page said."""
    backend = settings.EMAIL_BACKEND
    if (
        not is_providers(backend)
        or backend in PROVIDER_BY_BACKEND
        or backend in KEEPING_BACKENDS  # E005's: they send nothing at all
    ):
        return []
    return [
        checks.Warning(
            f"EMAIL_BACKEND {backend} has no tracking webhook here: bounces and "
            "complaints are never recorded, and their addresses stay on the list.",
            hint="Send through Postmark or Mailgun (docs/email.md), whose tracking "
            "webhooks the site reads.",
            id="newsletter.W002",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def check_mailgun_signing_key(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Without its own key anymail checks Mailgun's signatures against the API key,
    which Mailgun's accounts no longer sign with: every event is refused (400),
    and bounces and complaints are never recorded, though the desk shows the
    webhook as on."""
    if PROVIDER_BY_BACKEND.get(settings.EMAIL_BACKEND) != "mailgun":
        return []
    if settings.ANYMAIL.get("MAILGUN_WEBHOOK_SIGNING_KEY"):
        return []
    return [
        checks.Error(
            "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY is not set: Mailgun's tracking "
            "events would be checked against the API key and refused.",
            hint="Set ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY to the HTTP webhook "
            "signing key on Mailgun's Webhooks page.",
            id="newsletter.E006",
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


# Backends that mail no one and keep every message: the dev outbox (files under
# OUTBOX_DIR), Django's file, console (the log) and memory ones, and anymail's
# console and memory ones, which answer as a provider does.
KEEPING_BACKENDS = (
    "newsletter.outbox.OutboxBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "anymail.backends.console.EmailBackend",
    "anymail.backends.test.EmailBackend",
)


@checks.register(checks.Tags.security, deploy=True)
def check_email_is_sent(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """EMAIL_BACKEND defaults to the dev outbox: a deployment that forgets it
    starts, tells every reader to check their inbox, mails none of them, and keeps
    each email (the address, the name, links that act for the reader) for ever."""
    if settings.DEBUG or settings.EMAIL_BACKEND not in KEEPING_BACKENDS:
        return []
    return [
        checks.Error(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} while DJANGO_DEBUG is off: "
            "no email reaches anyone, and each one is kept, readers' addresses and "
            "links with it.",
            hint="Set EMAIL_BACKEND to your provider's (docs/email.md). To run the "
            "site without sending anything, set it to "
            "django.core.mail.backends.dummy.EmailBackend, which keeps nothing.",
            id="newsletter.E005",
        )
    ]


@checks.register(deploy=True)
def check_email_backend_has_its_credentials(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """A provider's backend without its API key or server token, or the DKIM
    signer without its key (unset, a file not mounted, a file that is no key),
    started, and every email failed in the worker; each says what is missing only
    when it is made, so the check makes one (which connects to nothing). Not the
    backends that keep every email (E005 says so; the outbox's makes its folder)."""
    if settings.EMAIL_BACKEND in KEEPING_BACKENDS or email_backend() is None:
        return []
    try:
        get_connection()
    except (ImproperlyConfigured, OSError) as exc:  # anymail's, the key file's
        return [
            checks.Error(
                f"EMAIL_BACKEND {settings.EMAIL_BACKEND} cannot send: {exc}",
                hint="Set the provider's ANYMAIL_* credential, or the DKIM "
                "signer's NEWSLETTER_DKIM_* settings and key file (docs/email.md).",
                id="newsletter.E008",
            )
        ]
    return []


def _at_this_machine(address: str) -> bool:
    """Whether an address's domain names a machine rather than a domain on the
    internet: localhost, or a name without a dot (a host's own)."""
    domain = normalise_email(parseaddr(address)[1]).rpartition("@")[2].rstrip(".")
    return "." not in domain or domain.endswith(".localhost")


@checks.register(deploy=True)
def check_sender_is_on_the_internet(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """NEWSLETTER_FROM_EMAIL defaults to newsletter@localhost (compose's too):
    forgotten, the site started and the provider refused every email (Postmark
    sends only from a sender it has confirmed), or an SMTP relay's went from a
    domain no receiver trusts; readers' replies went nowhere. Not while nothing
    is sent (the dummy backend; E005 for the ones that keep every email)."""
    backend = settings.EMAIL_BACKEND
    if (
        settings.DEBUG
        or backend in KEEPING_BACKENDS
        or backend == "django.core.mail.backends.dummy.EmailBackend"
        or email_backend() is None  # E013 says so
    ):
        return []
    addresses = {"NEWSLETTER_FROM_EMAIL": settings.NEWSLETTER_FROM_EMAIL}
    # Unset, the Reply-To is the From: said once.
    if settings.NEWSLETTER_REPLY_TO != settings.NEWSLETTER_FROM_EMAIL:
        addresses["NEWSLETTER_REPLY_TO"] = settings.NEWSLETTER_REPLY_TO
    return [
        checks.Error(
            f"{name} ({address}) is an address at this machine, not at a domain on "
            "the internet: the email provider would refuse the site's emails, or "
            "receivers distrust them, and readers' replies would go nowhere.",
            hint=f"Set {name} to an address at the site's own domain, e.g. 'On "
            "Probation <newsletter@news.example.org>', one your provider has "
            "confirmed as a sender (docs/email.md).",
            id="newsletter.E014",
        )
        for name, address in addresses.items()
        if _at_this_machine(address)
    ]


@checks.register(deploy=True)
def check_dkim_signs_for_the_sender(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Receivers hold a signature to the From's domain (DMARC): one for another
    domain verifies and vouches for nothing, and where the From's domain
    publishes p=reject, every email is refused."""
    backend = email_backend()
    if backend is None or not issubclass(backend, DKIMEmailBackend):
        return []
    try:
        signer = dns_name("NEWSLETTER_DKIM_DOMAIN", settings.NEWSLETTER_DKIM_DOMAIN)
    except ImproperlyConfigured:  # E008 says so
        return []
    address = normalise_email(parseaddr(settings.NEWSLETTER_FROM_EMAIL)[1])
    sender = address.rpartition("@")[2]
    # The one domain, or one under the other: aligned, as DMARC's relaxed mode
    # (the default) finds them.
    if f".{sender}".endswith(f".{signer}") or f".{signer}".endswith(f".{sender}"):
        return []
    return [
        checks.Warning(
            f"NEWSLETTER_DKIM_DOMAIN ({signer}) is not the domain of "
            f"NEWSLETTER_FROM_EMAIL ({sender}): receivers hold the signature to the "
            "From's domain (DMARC), and one for another domain vouches for nothing.",
            hint=f"Sign for {sender} (its key published at "
            f"<selector>._domainkey.{sender}). Two subdomains of one organisation's "
            "domain pass DMARC's relaxed alignment: then ignore this.",
            id="newsletter.W003",
        )
    ]


def _on_this_machine(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return False


@checks.register(checks.Tags.security, deploy=True)
def check_smtp_password_is_encrypted(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """EMAIL_USE_TLS and EMAIL_USE_SSL are off unless set: with a password,
    Django's SMTP backend logs in to any server that offers AUTH before STARTTLS
    (Postfix does by default), and the password, then every reader's email,
    crosses the network in the clear."""
    backend = email_backend()
    if (
        backend is None
        or not issubclass(backend, SMTPBackend)
        or not settings.EMAIL_HOST_PASSWORD
        or settings.EMAIL_USE_TLS
        or settings.EMAIL_USE_SSL
        or _on_this_machine(settings.EMAIL_HOST)
    ):
        return []
    return [
        checks.Error(
            "EMAIL_HOST_PASSWORD is set and EMAIL_USE_TLS and EMAIL_USE_SSL are "
            f"off: the password would be sent to {settings.EMAIL_HOST} in the clear.",
            hint="Set EMAIL_USE_TLS=1 (STARTTLS, e.g. on port 587) or EMAIL_USE_SSL=1 "
            "(TLS from the start, on port 465), or leave EMAIL_HOST_USER and "
            "EMAIL_HOST_PASSWORD empty for a relay that takes none.",
            id="newsletter.E012",
        )
    ]


@checks.register(deploy=True)
def check_site_url_is_served(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every link in an email starts with SITE_URL: left at compose's default
    (https://localhost) while DJANGO_ALLOWED_HOSTS names the real site, the site
    works and every confirmation and unsubscribe link leads nowhere."""
    host = urlsplit(settings.SITE_URL).hostname or ""
    if settings.DEBUG or validate_host(host, settings.ALLOWED_HOSTS):
        return []
    return [
        checks.Error(
            f"SITE_URL ({settings.SITE_URL}) names a host the site does not serve "
            f"(DJANGO_ALLOWED_HOSTS: {','.join(settings.ALLOWED_HOSTS)}): the "
            "links in every email would lead nowhere.",
            hint="Set SITE_URL to the site's own address, e.g. "
            "https://news.example.org, one of DJANGO_ALLOWED_HOSTS.",
            id="newsletter.E007",
        )
    ]


@checks.register(deploy=True)
def check_site_url_is_the_sites_address(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """Each email's links are SITE_URL followed by one of the site's paths, which
    it serves from its root: with a path, a query or a fragment after the name,
    or a port no server has, every confirmation and unsubscribe link (one-click
    unsubscribe too) led to a page not found."""
    address = urlsplit(settings.SITE_URL)
    try:
        address.port  # noqa: B018 (urlsplit reads the port only when asked)
    except ValueError:
        pass
    else:
        if not (address.path or address.query or address.fragment):
            return []
    return [
        checks.Error(
            f"SITE_URL ({settings.SITE_URL}) must be the site's address alone, "
            "its scheme, name and any port: the links in every email add the "
            "site's own paths to it, and would lead nowhere.",
            hint="Set SITE_URL to e.g. https://news.example.org, with nothing after "
            "the name (the site serves its pages from its root).",
            id="newsletter.E015",
        )
    ]


@checks.register(deploy=True)
def check_static_files_are_collected(
    app_configs, **kwargs
) -> list[checks.CheckMessage]:
    """With debug off, whitenoise's storage names each static file by the manifest
    collectstatic writes in STATIC_ROOT: without it every page is a 500. The image
    collects them as it is built; a site started from a checkout must be told."""
    if (
        not isinstance(staticfiles_storage, ManifestFilesMixin)
        or staticfiles_storage.read_manifest() is not None
    ):
        return []
    return [
        checks.Error(
            f"The static files are not collected: STATIC_ROOT ({settings.STATIC_ROOT}) "
            f"has no {staticfiles_storage.manifest_name}, and every page would be "
            "a 500.",
            hint="Run `manage.py collectstatic --noinput` with the site's settings "
            "(docker/Dockerfile does, as the image is built).",
            id="newsletter.E016",
        )
    ]


@checks.register(deploy=True)
def check_services_are_named(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Without DATABASE_URL or REDIS_URL the site runs on `make run`'s embedded
    defaults, one machine's files under VAR_DIR: SQLite, whose writers queue one
    at a time behind every web and Celery worker, and kombu's filesystem broker
    with a cache of each process's own (each gunicorn worker counts the subscribe
    limit alone, and a published post's cached pages stay in the others)."""
    if settings.DEBUG:
        return []
    problems = []
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(
            checks.Error(
                "DATABASE_URL names no database server while DJANGO_DEBUG is off: "
                "the site would run on the development SQLite file under VAR_DIR.",
                hint="Set DATABASE_URL to the PostgreSQL database, e.g. "
                "postgres://user:password@host:5432/newsletter.",
                id="newsletter.E010",
            )
        )
    if not settings.REDIS_URL:
        problems.append(
            checks.Error(
                "REDIS_URL is not set while DJANGO_DEBUG is off: tasks would go "
                "through the development embedded broker under VAR_DIR, and each "
                "process would keep a cache of its own.",
                hint="Set REDIS_URL to the Redis every web process and worker "
                "shares, e.g. redis://host:6379/0.",
                id="newsletter.E011",
            )
        )
    return problems


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


# A message over a kept SMTP connection: MAIL FROM, RCPT TO, DATA and its body.
SMTP_COMMANDS_PER_MESSAGE = 4


def _longest_provider_call() -> float | None:
    """The seconds one call to the email backend may take before giving up (a
    connection, then an answer); None where nothing bounds it."""
    backend = email_backend()
    if backend is None:  # E013 says so
        return 0.0
    if issubclass(backend, AnymailRequestsBackend):
        timeout = settings.ANYMAIL.get("REQUESTS_TIMEOUT", 30)  # anymail's default
        if timeout is None:
            return None
        return sum(timeout) if isinstance(timeout, tuple) else 2 * timeout
    if issubclass(backend, SMTPBackend):
        if settings.EMAIL_TIMEOUT is None:
            return None
        return SMTP_COMMANDS_PER_MESSAGE * settings.EMAIL_TIMEOUT  # each command's
    return 0.0  # the outbox, the console, memory


@checks.register()
def check_claim_outlasts_a_step(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """The reaper takes a batch's claim not renewed for the claim timeout for a
    dead worker's: its readers become uncertain and a live worker stops. A worker
    renews it between steps (delivery/sender.py), so the timeout must outlast the
    renewal's own interval plus one step: the sending budget's longest wait and
    one provider call at its timeout."""
    claim = settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS
    call = _longest_provider_call()
    if call is None:
        return [
            checks.Error(
                f"{settings.EMAIL_BACKEND} has no timeout: a provider that stops "
                "answering holds a worker for ever, and the reaper takes its batch "
                "as uncertain.",
                hint="Set EMAIL_TIMEOUT (SMTP) or ANYMAIL_REQUESTS_TIMEOUT to the "
                "seconds a provider may take to answer.",
                id="newsletter.E004",
            )
        ]
    wait = MAX_WAIT_SECONDS if settings.NEWSLETTER_SEND_RATE > 0 else 0.0
    step = wait + call
    needed = step / (1 - CLAIM_RENEWAL_SHARE)
    if claim > needed:
        return []
    return [
        checks.Error(
            f"NEWSLETTER_CLAIM_TIMEOUT_SECONDS ({claim}) is too short: a worker "
            f"sending a batch may go {needed:.0f} s without renewing its claim (a "
            f"quarter of the timeout, the sending budget's wait of up to "
            f"{wait:.0f} s and a provider call of up to {call:.0f} s), "
            "and the reaper would take the batch of a live worker as uncertain.",
            hint=f"Set NEWSLETTER_CLAIM_TIMEOUT_SECONDS above {needed:.0f}, or the "
            "provider's timeout (ANYMAIL_REQUESTS_TIMEOUT, EMAIL_TIMEOUT) lower.",
            id="newsletter.E003",
        )
    ]


@checks.register()
def check_beat_intervals(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A beat task's interval of 0 seconds or less (POSTS_ANNOUNCE_EVERY_SECONDS,
    NEWSLETTER_REAP_EVERY_SECONDS, COMMENTS_DIGEST_EVERY_SECONDS) ran it again and
    again, the moderators' email among them."""
    return [
        checks.Error(
            f"Beat's task {name} is set to run every {entry['schedule']} seconds.",
            hint="Give its *_EVERY_SECONDS variable a whole number above 0.",
            id="newsletter.E009",
        )
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if isinstance(entry["schedule"], int | float) and entry["schedule"] <= 0
    ]
