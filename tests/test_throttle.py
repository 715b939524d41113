"""The one counter behind every visitor's limit (posts/throttle.py): a count per
client or address that ends with its window."""

import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches

from posts import throttle


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="Redis's own race")
def test_a_count_whose_window_ends_as_it_is_counted_still_ends(monkeypatch):
    """Django's Redis incr looks for the key, then INCRs it: a window ending in
    between was started again by the INCR, without expiry, and the client (or the
    inbox, or everyone behind one proxy) was over its limit for good."""
    scope = f"test-{uuid.uuid4().hex}"  # no count left by an earlier run
    redis = caches["default"]._cache.get_client(write=True)
    looks = redis.exists

    def looks_then_the_window_ends(*keys):
        found = looks(*keys)
        redis.delete(*keys)
        return found

    def allowed() -> bool:
        return throttle.allow(scope, "203.0.113.9", limit=1, window_seconds=1)

    assert allowed()
    with monkeypatch.context() as race:
        race.setattr(redis, "exists", looks_then_the_window_ends)
        assert allowed()  # the next window's first
    assert not allowed()
    time.sleep(1.2)
    assert allowed()
