"""Request throttling: a fixed-window counter per key in the Django cache (Redis in
production, local memory in dev), and a key held by one holder for a window.

A fixed window is enough here: the limits stop floods (subscription bombing of one
address, one client filling a table), not a careful attacker spreading requests
over many addresses and hours, which the per-address confirmation rules bound.
"""

import logging

from django.core.cache import cache
from django.utils.crypto import salted_hmac

logger = logging.getLogger(__name__)


def _digest(value: str) -> str:
    # Hashed so that any value makes a valid key, and keyed (as the suppression
    # list's hash is) so that nobody reading the cache can match an address's
    # count to a guess at it, a reader's erasure notwithstanding, for its window.
    return salted_hmac("posts.throttle", value, algorithm="sha256").hexdigest()[:32]


def _cache_key(scope: str, value: str) -> str:
    return f"throttle:{scope}:{_digest(value)}"


def allow(scope: str, value: str, *, limit: int, window_seconds: int) -> bool:
    """Count one attempt for value in scope; False once it is over limit in window."""
    try:
        count = _count(_cache_key(scope, value), window_seconds)
    except Exception:  # any cache backend's connection error
        # The cache (Redis) unreachable: nothing is counted while it is down, and
        # the request goes on to what it asks for (which may refuse it in turn),
        # rather than every request being a 500.
        logger.warning(
            "Could not count a request against its limit: the cache is unreachable",
            exc_info=True,
        )
        return True
    return count <= limit


def _count(key: str, window_seconds: int) -> int:
    """One more in key's window, started by the first."""
    if cache.add(key, 1, timeout=window_seconds):
        return 1
    try:
        count = cache.incr(key)
    except ValueError:  # the window ended since add: this is the next one's first
        cache.add(key, 1, timeout=window_seconds)
        return 1
    if count == 1:
        # The window ended between incr's look for the key and Redis's INCR,
        # which made the key again without expiry: counted for good. (Or every
        # attempt in it was given back, and it starts again from this one.)
        cache.touch(key, timeout=window_seconds)
    return count


def give_back(scope: str, value: str) -> None:
    """Uncount one attempt `allow` counted, for one that came to nothing."""
    try:
        cache.decr(_cache_key(scope, value))
    except ValueError:  # its window has ended, and nothing is counted any more
        pass
    except Exception:  # the cache unreachable: counted to the window's end
        # Given back as a request is taken back for Redis lost (broker and cache
        # alike): its refusal must not become a 500.
        logger.warning(
            "Could not give back a request's turn: the cache is unreachable",
            exc_info=True,
        )


def hold(scope: str, value: str, holder: str, *, window_seconds: int) -> bool:
    """Give value in scope to holder alone for window: True when it is holder's
    (from now, or from earlier), False while another holds it. For a limit of one
    shared by a group (an inbox's addresses) whose holder's own repeats are
    limited elsewhere (an address's day, in its row)."""
    key = _cache_key(scope, value)
    mark = _digest(holder)
    try:
        return cache.add(key, mark, timeout=window_seconds) or cache.get(key) == mark
    except Exception:  # any cache backend's connection error: as `allow`
        logger.warning(
            "Could not count a request against its limit: the cache is unreachable",
            exc_info=True,
        )
        return True


def let_go(scope: str, value: str, holder: str) -> None:
    """Free value in scope, if holder holds it, for one `hold` that came to nothing."""
    key = _cache_key(scope, value)
    try:
        if cache.get(key) == _digest(holder):
            cache.delete(key)
    except Exception:  # the cache unreachable: held to the window's end
        logger.warning(
            "Could not free a limit: the cache is unreachable", exc_info=True
        )
