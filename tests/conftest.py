import os
import uuid

import pytest
from hypothesis import settings as hypothesis_settings

from newsletter.celery import app as celery_app

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


@pytest.fixture
def celery_eager():
    """Run tasks in-process when they are enqueued (unit tests, not integration)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_eager_propagates = False


@pytest.fixture
def fake_esp(settings):
    """Send through anymail's real Postmark backend to a local fake of its API."""
    from benchmarks.fake_esp import FakeESP

    with FakeESP() as esp:
        settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
        settings.ANYMAIL = esp.postmark_settings()
        yield esp


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
