import os
import re
import socketserver
import subprocess
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir

from newsletter.celery import app as celery_app

REPOSITORY = Path(__file__).resolve().parent.parent

# Hypothesis keeps its examples under var/ with everything else the site writes,
# rather than in a .hypothesis folder in the repository.
set_hypothesis_home_dir(REPOSITORY / "var" / "hypothesis")

# In CI the property tests replay the same examples every run, so a red run means a
# change broke something; run them locally (random examples) to look for new bugs.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    # CI runs on real services; a missing one must fail the run, never skip tests.
    if os.environ.get("CI") and not (
        os.environ.get("DATABASE_URL", "").startswith("postgres")
        and os.environ.get("REDIS_URL", "").startswith("redis")
    ):
        raise pytest.UsageError(
            "CI needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis) set."
        )


def _repository_status() -> set[str] | None:
    """`git status` of the checkout, one line a changed or untracked file (what
    .gitignore names, var/ among it, is left out); None outside a git checkout."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all"],  # noqa: S607
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return set(status.stdout.splitlines())


_status_before = pytest.StashKey[set[str] | None]()
_written = pytest.StashKey[list[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_status_before] = _repository_status()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Tests write under var/ or a temporary folder, never into the repository:
    # a stray file there is one the next commit may take along.
    before = session.config.stash.get(_status_before, None)
    after = _repository_status()
    if before is not None and after is not None and after - before:
        session.config.stash[_written] = sorted(after - before)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if written := config.stash.get(_written, None):
        terminalreporter.write_sep("=", "the tests wrote into the repository", red=True)
        for line in written:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _isolated_outbox(settings, tmp_path):
    settings.OUTBOX_DIR = tmp_path / "outbox"


@pytest.fixture(autouse=True)
def _isolated_cache(settings):
    # Each test counts rate limits afresh. A key prefix rather than cache.clear(),
    # which on Redis would also empty the Celery broker's queues.
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": prefix}
        for name, config in settings.CACHES.items()
    }


@pytest.fixture(autouse=True)
def _fresh_rendered_emails():
    # A worker keeps a post's rendered email and a round's digest parts, keyed by
    # ids and times that repeat from test to test (rolled-back ids, the fake
    # clock): kept, their counted links name Link rows rolled back since.
    from newsletter import digests
    from newsletter.delivery import sender

    digests._last_parts = None
    sender._last_rendered = None


@pytest.fixture
def media(settings, tmp_path):
    """Uploads (and their renditions) in a folder of the test's own: the folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def celery_eager():
    """Run tasks in-process when they are enqueued (unit tests, not integration)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False


@pytest.fixture
def redis_down(settings):
    """The cache and the broker (Redis) unreachable; call it to bring them back."""
    reachable = settings.CACHES
    settings.CACHES = {
        "default": {
            "BACKEND": "newsletter.rediscache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    broker = pytest.MonkeyPatch()
    broker.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    broker.setitem(celery_app.conf, "broker_transport", None)
    # Nor run in-process where a test file runs tasks so (celery_eager).
    broker.setitem(celery_app.conf, "task_always_eager", False)
    # Celery keeps its connections to the broker it was started with.
    broker.setattr(celery_app, "_pool", None)
    broker.setattr(celery_app.amqp, "_producer_pool", None)

    def redis_back() -> None:
        # Before the test's teardown too, which may use the cache.
        settings.CACHES = reachable
        broker.undo()

    yield redis_back
    redis_back()


@pytest.fixture
def reaped_once_redis_is_back(
    redis_down, request, settings, django_capture_on_commit_callbacks
):
    """Call it to bring Redis back (tasks then run in-process) and have beat's
    reaper go round a doorbell timeout later, when what the outage left unrung
    (mailings, batches, welcomes) is due; it returns what the reaper counted."""
    from newsletter.models import Batch, Mailing, Subscriber
    from newsletter.tasks import reap as beats_reaper

    def reap() -> dict[str, int]:
        redis_down()
        request.getfixturevalue("celery_eager")
        long_ago = timezone.now() - timedelta(
            seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1
        )
        Mailing.objects.update(touched_at=long_ago)
        Batch.objects.update(touched_at=long_ago)
        Subscriber.objects.exclude(welcome_rung_at=None).update(
            welcome_rung_at=long_ago
        )
        with django_capture_on_commit_callbacks(execute=True):
            return beats_reaper()

    return reap


@pytest.fixture
def start_test_worker(monkeypatch):
    """Start a real Celery worker in the test's process: `with start_test_worker():`.
    Its tasks run in threads that end with the test, so each task closes its
    database connection, which a worker keeps between tasks (newsletter/celery.py):
    a kept one would outlive its thread and hold the test database open."""
    from celery.contrib.testing.worker import start_worker
    from django.db import connection

    # The one settings dict every thread's connection is made from.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    celery_app.control.purge()  # tasks left by an earlier run name rows gone now

    def start(pool: str = "solo", **options):
        return start_worker(
            celery_app,
            pool=pool,
            perform_ping_check=False,
            shutdown_timeout=10,
            **options,
        )

    return start


class _SMTPSink(socketserver.StreamRequestHandler):
    """The receiving mail server, reduced to what tests need. It keeps each message
    it accepts (`messages`) and each recipient it accepted (`recipients`); it
    answers the RCPT of an address in `refused` with the reply given there, and
    the end of every message with `data_reply` when that is set."""

    def handle(self) -> None:
        server = self.server
        self.wfile.write(b"220 sink ESMTP\r\n")
        in_data, lines, recipients = False, [], []
        while line := self.rfile.readline():
            command = line[:4].upper()
            if in_data:
                if line != b".\r\n":  # RFC 5321 dot-stuffing
                    lines.append(line[1:] if line.startswith(b"..") else line)
                    continue
                if server.data_reply:
                    self.wfile.write(server.data_reply + b"\r\n")
                else:
                    server.messages.append(b"".join(lines))
                    server.recipients.extend(recipients)
                    self.wfile.write(b"250 queued\r\n")
                in_data, lines, recipients = False, [], []
            elif command == b"RCPT":
                address = re.search(rb"<([^>]*)>", line)[1].decode()
                refusal = server.refused.get(address)
                if refusal is None:
                    recipients.append(address)
                self.wfile.write((refusal or b"250 ok") + b"\r\n")
            elif command == b"DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # EHLO, MAIL (a new message), RSET (the last one abandoned)
                recipients = []
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_sink():
    """A local SMTP server (see _SMTPSink) on a free port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPSink)
    server.messages, server.recipients = [], []
    server.refused, server.data_reply = {}, None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp(settings, smtp_sink):
    """Send over SMTP with Django's own backend: one message per reader."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_sink.server_address
    settings.EMAIL_USE_TLS = False
    return smtp_sink


@pytest.fixture
def fake_esp(settings):
    """Send through anymail's real Postmark backend to a local fake of its API."""
    from benchmarks.fake_esp import FakeESP

    with FakeESP() as esp:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = esp.postmark_settings()
        yield esp


@pytest.fixture
def mailgun(settings, fake_esp):
    """Send through anymail's real Mailgun backend to the same fake's Mailgun API."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = fake_esp.mailgun_settings(sender_domain="mg.example.org")
    return fake_esp


@pytest.fixture
def publish(django_capture_on_commit_callbacks):
    """Publish a post as the admin does, running what waits for the commit."""
    from posts.services import post_publish

    def publish(post):
        with django_capture_on_commit_callbacks(execute=True):
            post_publish(post=post)

    return publish


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Call action(*args, **kwargs) and run what it left for the commit."""

    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    return run
