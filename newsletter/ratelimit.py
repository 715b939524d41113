"""Counting attempts in the Django cache: Redis in production, local memory in dev.

A fixed window per key is enough here: the limits stop floods (subscription bombing
of one address, one client filling the table), not a careful attacker spreading
requests over many addresses and hours, which the per-address confirmation rule in
subscriptions.subscribe already bounds.
"""

import hashlib
import ipaddress

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The client's address, as seen by the last proxy we trust (if any).

    Each trusted proxy appends the address it received from to X-Forwarded-For, so
    the entry NEWSLETTER_TRUSTED_PROXIES from the right is the client; anything
    further left was written by the client and may be forged.
    """
    proxies = settings.NEWSLETTER_TRUSTED_PROXIES
    address = request.META.get("REMOTE_ADDR", "")
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            address = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ""


def client_key(request: HttpRequest) -> str:
    """The address to count a client under: IPv4 as is, IPv6 by its /64.

    One IPv6 customer is usually given a whole /64, so counting single addresses
    would let one client take 2**64 turns.
    """
    address = client_ip(request)
    if ":" in address:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address or "unknown"


def _cache_key(scope: str, value: str) -> str:
    # Hashed so that no email address is stored in the cache, and any value makes
    # a valid key.
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"ratelimit:{scope}:{digest}"


def allow(scope: str, value: str, *, limit: int, window: int) -> bool:
    """Count one attempt for value in scope; False once it is over limit in window."""
    key = _cache_key(scope, value)
    cache.add(key, 0, timeout=window)  # starts the window; no-op if running
    try:
        count = cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.add(key, 1, timeout=window)
        count = 1
    return count <= limit
