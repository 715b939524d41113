"""One sending budget shared by every worker: a token bucket.

With REDIS_URL the bucket lives in Redis and a Lua script takes tokens atomically, so
workers on any number of machines share it. Without Redis (the embedded setup, one
machine) the same arithmetic runs under an exclusive file lock in var/.

A caller reserves the tokens it needs and is told how long to wait before using
them. The bucket may go into debt, which queues callers fairly (first to reserve is
first to send) and lets one call be larger than the burst, up to what refills
while a caller may wait (TokenBucket.largest_reservation).
"""

import fcntl
import json
import time
from dataclasses import dataclass

from django.conf import settings

# A reservation further out than this is not taken: the batch goes back to the
# queue and its task retries later instead of holding a worker asleep.
MAX_WAIT_SECONDS = 30.0

_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens < wanted then
    wait = (wanted - tokens) / rate
end
if wait > max_wait then
    return {0, tostring(wait)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - wanted), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst + wanted) / rate) + 60)
return {1, tostring(wait)}
"""


class RateLimited(Exception):
    """The budget is spent for longer than a worker should wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"sending budget spent for {wait:.1f}s")
        self.wait = wait


@dataclass
class TokenBucket:
    """Reserve tokens from a bucket of `burst` refilled at `rate` per second."""

    name: str
    rate: float
    burst: int

    def reserve(self, tokens: int) -> float:
        """Take `tokens`; return the seconds to wait before using them.

        Raises RateLimited (taking nothing) when the wait would exceed
        MAX_WAIT_SECONDS.
        """
        if self.rate <= 0:
            return 0.0
        taken, wait = self._reserve(tokens)
        if not taken:
            raise RateLimited(wait)
        return wait

    def largest_reservation(self) -> int | None:
        """The most tokens one reservation can ever be granted: a full bucket and
        what refills within MAX_WAIT_SECONDS (None: no limit). A caller wanting
        more would be refused however long it waited: it must ask in parts."""
        if self.rate <= 0:
            return None
        return max(1, int(self.burst + self.rate * MAX_WAIT_SECONDS))

    def acquire(self, tokens: int) -> None:
        """Reserve `tokens` and sleep until they may be used."""
        wait = self.reserve(tokens)
        if wait > 0:
            time.sleep(wait)

    def _reserve(self, tokens: int) -> tuple[bool, float]:
        if settings.REDIS_URL:
            return self._reserve_in_redis(tokens)
        return self._reserve_in_file(tokens)

    def _reserve_in_redis(self, tokens: int) -> tuple[bool, float]:
        taken, wait = _redis().eval(
            _RESERVE,
            1,
            f"newsletter:ratelimit:{self.name}",
            self.rate,
            self.burst,
            tokens,
            MAX_WAIT_SECONDS,
        )
        return bool(taken), float(wait)

    def _reserve_in_file(self, tokens: int) -> tuple[bool, float]:
        path = settings.VAR_DIR / f"ratelimit-{self.name}.json"
        with open(path, "a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
            file.seek(0)
            state = json.loads(file.read() or "{}")
            now = time.time()
            available = min(
                self.burst,
                state.get("tokens", self.burst)
                + max(0.0, now - state.get("at", now)) * self.rate,
            )
            wait = max(0.0, (tokens - available) / self.rate)
            if wait > MAX_WAIT_SECONDS:
                return False, wait
            file.seek(0)
            file.truncate()
            file.write(json.dumps({"tokens": available - tokens, "at": now}))
            return True, wait


_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=5
        )
    return _client


def sending_budget(esp: str) -> TokenBucket:
    """The configured provider's shared budget (each provider has its own bucket)."""
    return TokenBucket(
        name=esp,
        rate=settings.NEWSLETTER_SEND_RATE,
        burst=settings.NEWSLETTER_SEND_BURST,
    )
