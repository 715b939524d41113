"""Who is asking: the one place that decides a visitor's address.

Every limit (subscribe, comments, change of address), the admin login lockout
(AXES_CLIENT_IP_CALLABLE) and the consent record read the client through here, so
a proxy in front of the site counts the same everywhere. Nothing else reads
REMOTE_ADDR or X-Forwarded-For.
"""

import ipaddress

from django.conf import settings
from django.http import HttpRequest

# The unspecified address: a valid IP address that no real client has.
UNKNOWN_CLIENT = "0.0.0.0"  # noqa: S104 - a key to count under, never bound to


def client_address(request: HttpRequest) -> str:
    """The client's address as seen by the last proxy we trust (if any); "" if none.

    Each trusted proxy appends the address it received from to X-Forwarded-For, so
    the entry NEWSLETTER_TRUSTED_PROXIES from the right is the client; anything
    further left was written by the client and may be forged. An IPv4 client
    reaching an IPv6 socket (::ffff:192.0.2.1) is its IPv4 address.
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
        parsed = ipaddress.ip_address(address)
    except ValueError:  # a Unix socket, or a misconfigured proxy
        return ""
    if parsed.version == 6 and parsed.ipv4_mapped:
        parsed = parsed.ipv4_mapped
    return str(parsed)


def client_key(request: HttpRequest) -> str:
    """The address to count a client under: IPv4 as is, IPv6 by its /64 (written as
    the network's first address), always a valid IP address, as django-axes stores it.

    One IPv6 customer is usually given a whole /64, so counting single addresses
    would let one client take 2**64 turns. Clients whose address cannot be known
    (a Unix socket without a trusted proxy) share one count, under 0.0.0.0.
    """
    address = client_address(request)
    if ":" in address:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return address or UNKNOWN_CLIENT
