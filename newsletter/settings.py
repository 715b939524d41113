"""Settings for the publication and its newsletter, read only from the environment.

With nothing set, everything runs on one machine from files under var/: SQLite, an
embedded Celery broker (kombu's filesystem transport), a local-memory cache and an
on-disk outbox instead of an email provider. Production names real services through
DATABASE_URL, REDIS_URL and EMAIL_BACKEND/ANYMAIL_*.
"""

import email.policy
import logging
import os
from pathlib import Path
from typing import TypeVar

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from .esp import is_providers

Number = TypeVar("Number", int, float)

_yes_words = ("1", "true", "yes", "on")
_no_words = ("0", "false", "no", "off", "")


def yes_or_no(name: str, value: str) -> bool:
    """A yes/no variable's word, or a refusal to start: any other word was read
    as no, and "y" or "enabled" quietly turned off the HTTPS redirect or SMTP's
    TLS."""
    word = value.strip().lower()
    if word in _yes_words or word in _no_words:
        return word in _yes_words
    raise ImproperlyConfigured(
        f"{name} must be true or false (1/0, yes/no), not {value!r}."
    )


def envbool(name: str, default: str) -> bool:
    return yes_or_no(name, os.environ.get(name, default))


def number(name: str, value: str, read: type[Number], what: str) -> Number:
    """A number variable's value, or a refusal to start that names it: a bare
    ValueError ("invalid literal for int()") left the operator to guess which."""
    try:
        return read(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {what}, not {value!r}.") from None


def envint(name: str, default: str, *, at_least: int | None = None) -> int:
    value = number(name, os.environ.get(name, default), int, "a whole number")
    # A limit of 0 read as "no limit", or -1 as "for ever", would refuse everyone
    # or forget everything at once: refused here, naming the variable.
    if at_least is not None and value < at_least:
        raise ImproperlyConfigured(
            f"{name} must be {at_least} or more, not {os.environ[name]!r}."
        )
    return value


def envfloat(name: str, default: str) -> float:
    return number(name, os.environ.get(name, default), float, "a number")


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Off unless asked for (`make run` and the test suite ask): a deployment that forgets
# the variable must not show debug pages and the dev outbox, nor sign with the dev key.
DEBUG = envbool("DJANGO_DEBUG", "0")


def guessable(secret: str, *, length: int) -> bool:
    """Django's test of a secret key (check --deploy's security.W009), for any
    secret: shorter than `length`, or of fewer than 5 different characters."""
    return len(secret) < length or len(set(secret)) < 5


_DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
# Tested at start-up: as check --deploy's mere warning it let a deployment run on
# `django-insecure-…` or "xxxx…".
if not DEBUG and (
    SECRET_KEY == _DEV_SECRET_KEY
    or guessable(SECRET_KEY, length=50)
    or SECRET_KEY.startswith("django-insecure-")
):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of 50+ characters "
        "(at least 5 different ones, not Django's 'django-insecure-' kind) "
        "when DJANGO_DEBUG is off (set DJANGO_DEBUG=1 for development)."
    )

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get(
        "DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver"
    ).split(",")
    if host.strip()
]

SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = [SITE_URL]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sitemaps",
    "anymail",
    "posts",
    "posts.comments",
    "newsletter",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "newsletter.urls"
WSGI_APPLICATION = "newsletter.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database -----------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", "60"),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat all write the one file: WAL lets readers
    # run beside a writer, and IMMEDIATE transactions queue writers on the busy
    # timeout instead of failing with "database is locked" on lock upgrade.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests run on such a file too: in an in-memory database, connections share one
    # cache, where a second writer (a worker's threads) fails with "table is
    # locked" instead of waiting on the busy timeout.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: PostgreSQL compiles a statement whose estimated cost is
    # high, and it estimates the desk's and a post report's counts (a subquery a
    # row, rarely run) at millions: compiling took as long as counting (a post's
    # report at 100,000 readers, 1,000,000 ledger rows: 1.0 of its 2.1 s). Nothing
    # here runs long enough to gain from it.
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c jit=off".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Broker and cache ---------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # Longer than any retry countdown, so Redis never redelivers a task that is
    # merely waiting for its countdown (Celery's classic duplicate-delivery trap).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
    CACHES = {
        "default": {
            # Django's, reusing one Redis client (rediscache.py).
            "BACKEND": "newsletter.rediscache.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    BROKER_DIR = VAR_DIR / "broker"
    for folder in ("queue", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    # The filesystem transport ignores the host, but kombu warns on every
    # connection that names none: a newcomer's `make run` showed that warning.
    CELERY_BROKER_URL = "filesystem://localhost/"
    CELERY_BROKER_TRANSPORT = "newsletter.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged only once it has finished, and a worker killed mid-task
# hands it back to the queue; tasks are written to be run twice safely.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes the database connection before and after every task
# unless this is set (then once in this many): each batch paid for a new PostgreSQL
# connection. A worker's tasks get a web request's
# lifecycle instead (newsletter/celery.py), which keeps the connection for
# DATABASE_CONN_MAX_AGE and checks it before each task; this recycles it besides.
CELERY_DB_REUSE_MAX = 1000
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# A ring of beat's that no worker took within its interval (nor 5 minutes, so
# that one due every 30 s is not always dropped behind a send's batches) is
# dropped: with the workers down, beat rang on (~7,000 times a day), and every
# ring then ran ahead of the sends. Each task works from the time it runs, so
# the next ring does what a dropped one would have.
RING_WAITS_AT_LEAST_SECONDS = 5 * 60


def every(seconds: int) -> dict:
    """A beat entry's schedule of every `seconds`, and its rings' expiry."""
    return {
        "schedule": seconds,
        "options": {"expires": max(seconds, RING_WAITS_AT_LEAST_SECONDS)},
    }


CELERY_BEAT_SCHEDULE = {
    # Scheduled posts become visible, and are announced, within this interval.
    "announce-due-posts": {
        "task": "posts.tasks.announce_due_posts",
        **every(envint("POSTS_ANNOUNCE_EVERY_SECONDS", "30")),
    },
    # Renditions and link checks rung while the broker was down are rung again.
    "ring-lost-post-doorbells": {
        "task": "posts.tasks.ring_lost_doorbells",
        **every(300),
    },
    "reap-lost-deliveries": {
        "task": "newsletter.tasks.reap",
        **every(envint("NEWSLETTER_REAP_EVERY_SECONDS", "60")),
    },
    "purge-expired-pending": {
        "task": "newsletter.tasks.purge_expired_pending",
        **every(3600),
    },
    # Clicks are counted in Redis on the redirect, and added to Link rows here.
    "flush-click-counts": {
        "task": "newsletter.tasks.flush_click_counts",
        **every(60),
    },
    "purge-old-events": {
        "task": "newsletter.tasks.purge_old_events",
        **every(24 * 3600),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Email --------------------------------------------------------------------------

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "newsletter.outbox.OutboxBackend")
# Sending straight over SMTP (django's backend, or newsletter.dkim.DKIMEmailBackend
# to sign each message with the key below).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "0")  # STARTTLS, e.g. on port 587
# TLS from the start, for a provider that offers SMTP only on port 465.
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "0")
# Django's SMTP backend refuses the pair only when a worker first sends.
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on: EMAIL_USE_TLS for "
        "STARTTLS (port 587), EMAIL_USE_SSL for TLS from the start (port 465)."
    )
# Seconds an SMTP server may take over each command: without a bound, one that
# stops answering holds a worker (and its batch's claim) for ever.
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "30")
NEWSLETTER_DKIM_DOMAIN = os.environ.get("NEWSLETTER_DKIM_DOMAIN", "")
NEWSLETTER_DKIM_SELECTOR = os.environ.get("NEWSLETTER_DKIM_SELECTOR", "")
NEWSLETTER_DKIM_KEY_FILE = os.environ.get("NEWSLETTER_DKIM_KEY_FILE", "")
OUTBOX_DIR = Path(os.environ.get("OUTBOX_DIR", VAR_DIR / "outbox"))
# anymail's settings that are yes/no or a number (any ESP's, e.g.
# POSTMARK_USE_BULK_API): from the environment's text, or a refusal to start, so
# that "false" never reads as a (true) non-empty string.
_anymail_flags = (
    "USE_BULK_API",
    "IGNORE_RECIPIENT_STATUS",
    "IGNORE_UNSUPPORTED_FEATURES",
    "DEBUG_API_REQUESTS",
)
_anymail_numbers = ("REQUESTS_TIMEOUT",)


def anymail_setting(name: str, value: str) -> str | bool | float:
    if name.endswith(_anymail_flags):
        return yes_or_no(f"ANYMAIL_{name}", value)
    if name.endswith(_anymail_numbers):
        return number(f"ANYMAIL_{name}", value, float, "a number of seconds")
    return value


# Every ANYMAIL_FOO variable becomes ANYMAIL["FOO"], e.g. ANYMAIL_POSTMARK_SERVER_TOKEN.
# An empty one is unset (compose passes `${ANYMAIL_…:-}` empty), so that anymail
# says a credential is missing rather than the provider refusing every email.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): anymail_setting(name.removeprefix("ANYMAIL_"), value)
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_") and value
}
# Open tracking (the provider's pixel) is off unless asked for: it reports on each
# reader, and Apple's proxy opens everything anyway. Clicks are counted by the
# site's own redirect (newsletter/engagement.py), never by the provider's.
NEWSLETTER_TRACK_OPENS = envbool("NEWSLETTER_TRACK_OPENS", "0")
# Per-reader engagement (who opened, who followed which link) is off: counts are kept
# per mailing and link only. On, it is kept only for readers who agreed to it.
NEWSLETTER_PER_READER_ENGAGEMENT = envbool("NEWSLETTER_PER_READER_ENGAGEMENT", "0")
ANYMAIL["SEND_DEFAULTS"] = {
    "track_opens": NEWSLETTER_TRACK_OPENS,
    "track_clicks": False,
}
# Without a secret the tracking webhook is off (newsletter/webhooks.py): in
# production that would quietly keep mailing addresses that bounce or complain.
# So with one that has no colon: a provider sends the URL's credentials as basic
# auth, always user:password, and every event would be refused. And with a
# password anyone could guess: it is all a complaint that suppresses any reader
# needs (Postmark signs nothing), and the route counts no failed tries.
# 20 random characters: over a hundred bits (`make run` makes its own of 32).
WEBHOOK_PASSWORD_LENGTH = 20
_colon, _webhook_password = ANYMAIL.get("WEBHOOK_SECRET", "").partition(":")[1:]
if (
    not DEBUG
    and is_providers(EMAIL_BACKEND)
    and (not _colon or guessable(_webhook_password, length=WEBHOOK_PASSWORD_LENGTH))
):
    raise ImproperlyConfigured(
        "ANYMAIL_WEBHOOK_SECRET must be set (to 'user:password', the credentials in "
        "the webhook URL you give your email provider, the password "
        f"{WEBHOOK_PASSWORD_LENGTH}+ random characters) when DJANGO_DEBUG is off "
        "and EMAIL_BACKEND sends through a provider."
    )


def mailbox(name: str, value: str) -> str:
    """A From or Reply-To variable's address, or a refusal to start: Django reads
    it only as a worker sends, and one it could not parse ("Probation, News <…>")
    failed every email, while one it could ("On Probation news@…", its <>
    forgotten) went out as a header no mail provider takes."""
    header = email.policy.default.header_factory("From", value)
    if len(header.addresses) != 1 or header.defects or not header.addresses[0].domain:
        raise ImproperlyConfigured(
            f"{name} must be one address, as 'On Probation <newsletter@example.org>' "
            f"or newsletter@example.org (ASCII before its @), not {value!r}."
        )
    return value


NEWSLETTER_FROM_EMAIL = mailbox(
    "NEWSLETTER_FROM_EMAIL",
    os.environ.get("NEWSLETTER_FROM_EMAIL", "On Probation <newsletter@localhost>"),
)
DEFAULT_FROM_EMAIL = NEWSLETTER_FROM_EMAIL
SERVER_EMAIL = NEWSLETTER_FROM_EMAIL
# Where readers' replies go; the From address unless a person reads another mailbox.
# Left empty (a docker/.env line), unset.
NEWSLETTER_REPLY_TO = mailbox(
    "NEWSLETTER_REPLY_TO",
    os.environ.get("NEWSLETTER_REPLY_TO") or NEWSLETTER_FROM_EMAIL,
)
# The Postmark message stream mailings go on: a broadcast stream, which Postmark
# requires for bulk mail and keeps apart from the transactional "outbound" stream
# that confirmations and one-time links go on (newsletter/delivery/sender.py).
NEWSLETTER_POSTMARK_BROADCAST_STREAM = os.environ.get(
    "NEWSLETTER_POSTMARK_BROADCAST_STREAM", "broadcast"
)
# Optional: a mailbox that takes unsubscribe requests by email, offered in
# List-Unsubscribe beside the one-click link (e.g. unsubscribe@your-domain.example).
NEWSLETTER_UNSUBSCRIBE_MAILTO = os.environ.get("NEWSLETTER_UNSUBSCRIBE_MAILTO", "")
if any(char in NEWSLETTER_UNSUBSCRIBE_MAILTO for char in "<>?, \t\r\n"):
    raise ImproperlyConfigured("NEWSLETTER_UNSUBSCRIBE_MAILTO must be a bare address.")
# List-Unsubscribe must be ASCII for mail programs to read it (a header that is not
# is RFC 2047-encoded): the domain has an ASCII (IDNA) form, the part before the @
# none.
if not NEWSLETTER_UNSUBSCRIBE_MAILTO.rpartition("@")[0].isascii():
    raise ImproperlyConfigured(
        "NEWSLETTER_UNSUBSCRIBE_MAILTO must have only ASCII characters before its @: "
        "List-Unsubscribe carries it, and mail programs read only an ASCII header."
    )

# How long a confirmation link works, and how often one address may be sent one.
NEWSLETTER_CONFIRM_MAX_AGE_SECONDS = (
    envint("NEWSLETTER_CONFIRM_MAX_AGE_DAYS", "7", at_least=1) * 86400
)
NEWSLETTER_CONFIRM_RESEND_AFTER_SECONDS = 24 * 3600
# Unconfirmed subscriptions are deleted this long after their latest confirmation.
NEWSLETTER_PENDING_MAX_AGE_SECONDS = (
    envint("NEWSLETTER_PENDING_EXPIRE_DAYS", "7") * 86400
)
# How long the link confirming a new address works.
NEWSLETTER_CHANGE_EMAIL_MAX_AGE_SECONDS = 2 * 86400
# Soft bounces in a row (no delivery between) after which an address is suppressed.
NEWSLETTER_SOFT_BOUNCE_LIMIT = envint("NEWSLETTER_SOFT_BOUNCE_LIMIT", "3")
# Subscribe requests allowed per client (IPv4 address or IPv6 /64) and per target
# address in each window; over either, a 429 page and nothing stored or sent.
NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS = 3600
NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = envint(
    "NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT", "20", at_least=1
)
NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = envint(
    "NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS", "5", at_least=1
)
# How many reverse proxies in front of the site set X-Forwarded-For: 0 when gunicorn
# faces the internet, 1 behind the shipped nginx (docker/compose.yaml).
NEWSLETTER_TRUSTED_PROXIES = envint("NEWSLETTER_TRUSTED_PROXIES", "0")
# Counted from the right of X-Forwarded-For (posts/clients.py): a negative count
# read from its left, what the client wrote, or past its end (a 500).
if NEWSLETTER_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured(
        "NEWSLETTER_TRUSTED_PROXIES must be 0 or more (1 behind the shipped nginx), "
        f"not {NEWSLETTER_TRUSTED_PROXIES}."
    )

# Delivery engine (newsletter/delivery/) ------------------------------------------

# Recipients per second handed to the provider, one budget shared by every worker
# (a Redis token bucket with REDIS_URL, else a file-locked one under var/); 0: none.
NEWSLETTER_SEND_RATE = envfloat("NEWSLETTER_SEND_RATE", "0")
NEWSLETTER_SEND_BURST = envint("NEWSLETTER_SEND_BURST", "1000")
# "auto": the provider's batch API where anymail supports it (Postmark, Mailgun),
# else one message per recipient; "single" forces one message per recipient.
NEWSLETTER_DELIVERY_MODE = (
    os.environ.get("NEWSLETTER_DELIVERY_MODE", "auto").strip().lower()
)
# Any other word ("singel") was read as auto: the batch API the operator had refused.
if NEWSLETTER_DELIVERY_MODE not in ("auto", "single"):
    raise ImproperlyConfigured(
        "NEWSLETTER_DELIVERY_MODE must be auto or single, "
        f"not {os.environ['NEWSLETTER_DELIVERY_MODE']!r}."
    )
# Recipients per batch; 0 uses the provider's own batch size.
NEWSLETTER_BATCH_SIZE = envint("NEWSLETTER_BATCH_SIZE", "0")
# A negative size (as if "no limit") made batches of no size: planning failed on
# every retry, and no reader was emailed.
if NEWSLETTER_BATCH_SIZE < 0:
    raise ImproperlyConfigured(
        "NEWSLETTER_BATCH_SIZE must be 0 or more (0: the provider's own), "
        f"not {NEWSLETTER_BATCH_SIZE}."
    )
# A claimed batch untouched this long belongs to a dead worker; a queued batch or a
# planning send untouched this long lost its doorbell (the reaper rings again).
NEWSLETTER_CLAIM_TIMEOUT_SECONDS = envint("NEWSLETTER_CLAIM_TIMEOUT_SECONDS", "600")
NEWSLETTER_DOORBELL_TIMEOUT_SECONDS = envint(
    "NEWSLETTER_DOORBELL_TIMEOUT_SECONDS", "300"
)
# Circuit breaker: after this many failed batch attempts in a row a send pauses
# itself, and the reaper resumes it after the cool-down.
NEWSLETTER_BREAKER_FAILURES = envint("NEWSLETTER_BREAKER_FAILURES", "5")
NEWSLETTER_BREAKER_COOLDOWN_SECONDS = envint(
    "NEWSLETTER_BREAKER_COOLDOWN_SECONDS", "300"
)
# Tracking events (each names a reader's address) are forgotten after this many
# days (0: kept for ever); their effects on the ledger and suppressions stay.
NEWSLETTER_KEEP_EVENTS_DAYS = envint("NEWSLETTER_KEEP_EVENTS_DAYS", "90", at_least=0)

# Comments -----------------------------------------------------------------------

# Comments close by themselves this many days after publication (0: never).
COMMENTS_CLOSE_AFTER_DAYS = envint("COMMENTS_CLOSE_AFTER_DAYS", "30", at_least=0)
# A commenter whose address has an approved comment, and who proved the address
# (through a link emailed once; then a cookie in that browser), skips moderation.
COMMENTS_AUTO_APPROVE_KNOWN = envbool("COMMENTS_AUTO_APPROVE_KNOWN", "1")
COMMENTS_MAX_LINKS = envint("COMMENTS_MAX_LINKS", "2", at_least=0)
COMMENTS_MAX_PER_IP_PER_HOUR = envint("COMMENTS_MAX_PER_IP_PER_HOUR", "10", at_least=1)
# Commenters' IP addresses and browsers are forgotten, and spam deleted, after this.
COMMENTS_KEEP_IP_DAYS = envint("COMMENTS_KEEP_IP_DAYS", "30", at_least=0)
CELERY_BEAT_SCHEDULE["email-comment-digest"] = {
    "task": "newsletter.comment_tasks.send_comment_digest",
    **every(envint("COMMENTS_DIGEST_EVERY_SECONDS", "3600")),
}
# Every quarter hour, a digest round for the readers whose hour (in their own time
# zone) has come; its mailing, unique per (frequency, quarter hour), and each
# reader's last round keep every ring after it from sending a period again.
# On the quarter hours themselves (digests.slot_of), not 15 minutes after
# whenever beat started: a reader's 07:00 then went at 07:13, every day.
CELERY_BEAT_SCHEDULE["start-due-digests"] = {
    "task": "newsletter.digest_tasks.start_due_digests",
    "schedule": crontab(minute="*/15"),
    "options": {"expires": 15 * 60},  # its quarter hour (digests.SLOT_MINUTES)
}
CELERY_BEAT_SCHEDULE["purge-comment-personal-data"] = {
    "task": "posts.comments.tasks.purge_comment_personal_data",
    **every(6 * 3600),
}

# Static files -------------------------------------------------------------------

STATIC_URL = "/static/"
# Where collectstatic puts them, for whitenoise: the image sets a folder of its
# own, outside VAR_DIR (a volume, which would keep the first image's files).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Images the author uploads (featured images, sponsor logos) and their renditions.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"


def _static_file_headers_add(headers, path: str, url: str) -> None:
    """whitenoise answers static files above the CSP and X-Frame-Options
    middleware, and nginx, seeing the site's nosniff, adds no headers of its
    own: an SVG opened as a page is a document of the site, which would run its
    inline scripts and could be framed by any other site without them."""
    # Imported here: whitenoise calls this once Django is set up.
    from .clickredirect import headers_of_a_page

    for name, value in headers_of_a_page().items():
        headers.setdefault(name, value)


WHITENOISE_ADD_HEADERS_FUNCTION = _static_file_headers_add
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Locale -------------------------------------------------------------------------

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "Europe/London"
USE_I18N = True
USE_TZ = True

# Security -----------------------------------------------------------------------

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Only the desk has sessions (readers have none), and the desk can mail every
# reader: a session lasts a working day from signing in, not Django's two weeks,
# and use does not renew it, so a stolen or forgotten one ends that day.
SESSION_COOKIE_AGE = 12 * 3600
if not DEBUG:
    # Only a proxy of ours says how the client came: talking straight to gunicorn,
    # a client would claim https over plain http and skip the redirect to it.
    if NEWSLETTER_TRUSTED_PROXIES:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "1")
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# How long the home, post and search pages are kept in the cache
# (newsletter/pagecache.py; 0 turns it off); publishing or editing a post retires
# them at once anyway.
PAGE_CACHE_SECONDS = envint("PAGE_CACHE_SECONDS", "60")
# Right after whitenoise, so a cached page skips the rest of the stack; what the
# inner middleware added (CSP, X-Frame-Options) is cached with it, and a response
# that sets a cookie is never cached.
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware") + 1,
    "newsletter.pagecache.PageCacheMiddleware",
)
# Before the page cache: an email's link is redirected without the rest of the
# stack (clickredirect.py).
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware") + 1,
    "newsletter.clickredirect.ClickRedirectMiddleware",
)

# Content Security Policy (django-csp): only the site's own scripts, styles and
# frames; no inline script or style anywhere. Post bodies may show images from
# other https hosts (the sanitiser allows <img src="https://...">). The dev outbox
# relaxes it for its one page (views.outbox_message).
INSTALLED_APPS += ["csp", "axes"]
MIDDLEWARE += [
    "csp.middleware.CSPMiddleware",
    # Malformed input to any admin is a 400 that changes nothing, not a 500; below
    # every middleware that adds a security header, so that its 400 has them all.
    "newsletter.admin.malformed.AdminInputMiddleware",
    # Last, as django-axes requires: it turns a lockout into its 429 answer.
    "axes.middleware.AxesMiddleware",
]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "https:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Admin brute force (django-axes): after AXES_FAILURE_LIMIT wrong passwords from one
# client the login answers 429 for an hour. Attempts are kept in the database, so
# every web process and every deployment (with or without Redis) counts the same
# attempts; the client is counted as for the subscribe rate limit (IPv6 by /64).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", "5", at_least=1)
AXES_COOLOFF_TIME = 1  # hour
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
# A login does not clear the client's failures: it would let anyone with an account
# guess at a colleague's password without end, logging in as themselves between
# guesses. The failures expire after AXES_COOLOFF_TIME instead.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "posts.clients.client_key"
AXES_LOCKOUT_CALLABLE = "newsletter.admin.logins.locked_out"
AXES_VERBOSE = False  # no banner on every manage.py command
# The desk's logins and failed logins (username, IP address, browser) are kept this
# long to trace a misused account, then forgotten (axes itself never does).
DESK_LOGINS_KEEP_DAYS = 90
CELERY_BEAT_SCHEDULE["purge-old-logins"] = {
    "task": "newsletter.tasks.purge_old_logins",
    **every(24 * 3600),
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]
]

# Taken in any case, as most tools take it; any other word stopped the site with
# a traceback ending in "Unable to configure root logger".
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    raise ImproperlyConfigured(
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, "
        f"not {os.environ['LOG_LEVEL']!r}."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_readers": {"()": "newsletter.logs.RedactReaders"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact_readers"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
