"""Settings for the publication and its newsletter, read only from the environment.

With nothing set, everything runs on one machine from files under var/: SQLite, an
embedded Celery broker (kombu's filesystem transport), a local-memory cache and an
on-disk outbox instead of an email provider. Production names real services through
DATABASE_URL, REDIS_URL and EMAIL_BACKEND/ANYMAIL_*.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


def envbool(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: str) -> int:
    return int(os.environ.get(name, default))


BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DJANGO_DEBUG", "1")

_DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"  # noqa: S105
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", _DEV_SECRET_KEY)
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of 50+ characters "
        "when DJANGO_DEBUG is off."
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
    "anymail",
    "posts",
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
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    BROKER_DIR = VAR_DIR / "broker"
    for folder in ("queue", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
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
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    # Scheduled posts become visible, and are announced, within this interval.
    "announce-due-posts": {
        "task": "posts.tasks.announce_due_posts",
        "schedule": envint("POSTS_ANNOUNCE_EVERY_SECONDS", "30"),
    },
    "reap-lost-deliveries": {
        "task": "newsletter.tasks.reap",
        "schedule": envint("NEWSLETTER_REAP_EVERY_SECONDS", "60"),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# Email --------------------------------------------------------------------------

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "newsletter.outbox.OutboxBackend")
OUTBOX_DIR = Path(os.environ.get("OUTBOX_DIR", VAR_DIR / "outbox"))
# Every ANYMAIL_FOO variable becomes ANYMAIL["FOO"], e.g. ANYMAIL_POSTMARK_SERVER_TOKEN.
ANYMAIL = {
    name.removeprefix("ANYMAIL_"): value
    for name, value in os.environ.items()
    if name.startswith("ANYMAIL_")
}
NEWSLETTER_FROM_EMAIL = os.environ.get(
    "NEWSLETTER_FROM_EMAIL", "On Probation <newsletter@localhost>"
)
DEFAULT_FROM_EMAIL = NEWSLETTER_FROM_EMAIL
SERVER_EMAIL = NEWSLETTER_FROM_EMAIL

# How long a confirmation link works, and how often one address may be sent one.
NEWSLETTER_CONFIRM_MAX_AGE = envint("NEWSLETTER_CONFIRM_MAX_AGE_DAYS", "7") * 86400
NEWSLETTER_CONFIRM_RESEND_AFTER = 24 * 3600

# Comments -----------------------------------------------------------------------

# Comments close by themselves this many days after publication (0: never).
COMMENTS_CLOSE_AFTER_DAYS = envint("COMMENTS_CLOSE_AFTER_DAYS", "30")
# A commenter whose email has an approved comment skips the moderation queue.
COMMENTS_AUTO_APPROVE_KNOWN = envbool("COMMENTS_AUTO_APPROVE_KNOWN", "1")
COMMENTS_MAX_LINKS = envint("COMMENTS_MAX_LINKS", "2")
COMMENTS_MAX_PER_IP_PER_HOUR = envint("COMMENTS_MAX_PER_IP_PER_HOUR", "10")
# Commenters' IP addresses and browsers are forgotten, and spam deleted, after this.
COMMENTS_KEEP_IP_DAYS = envint("COMMENTS_KEEP_IP_DAYS", "30")
CELERY_BEAT_SCHEDULE["email-comment-digest"] = {
    "task": "newsletter.comment_tasks.send_comment_digest",
    "schedule": envint("COMMENTS_DIGEST_EVERY_SECONDS", "3600"),
}
CELERY_BEAT_SCHEDULE["purge-comment-personal-data"] = {
    "task": "posts.tasks.purge_comment_personal_data",
    "schedule": 6 * 3600,
}

# Static files -------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
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
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "1")
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
