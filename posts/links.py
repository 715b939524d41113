"""The link checker: does each address a post links to answer?

It runs in a Celery worker and fetches addresses the author typed, so it must never
become a way into our own network (SSRF): every host is resolved first and refused
if ANY of its addresses is not a global one, the connection goes to the address
that was checked (no second lookup for DNS rebinding to answer), and each redirect
hop is checked the same way.
"""

import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from django.conf import settings
from django.db import transaction
from django.http.request import validate_host
from django.utils import timezone
from django.utils.encoding import iri_to_uri

from .markdown import as_a_browser_reads, attribute_value, link_targets
from .models import LinkCheck, Post

TIMEOUT_SECONDS = 5  # per hop: a reader would have given up by then
MAX_REDIRECTS = 5
# A post with more links than this is checked on its first ones only, so that
# one post cannot keep a worker busy for long.
MAX_LINKS_PER_POST = 50
# A longer link is not checked: its check would not fit the checks' unique index
# (PostgreSQL's takes 2,704 bytes), and failed the whole post's check, every time.
# Browsers and servers' own limits are about as long (a sitemap's, 2,048).
MAX_LINK_BYTES = 2000
USER_AGENT = "probation-newsletter link checker"
_REDIRECTS = {301, 302, 303, 307, 308}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# IPv6 addresses that reach an IPv4 host given in their last 32 bits: NAT64's
# well-known prefix (RFC 6052; a NAT64 gateway forwards to private IPv4 networks
# too) and the deprecated IPv4-compatible form (::a.b.c.d, ::1 among them).
_IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::/96"),
)
# IPv6 prefixes that lead into a local network, which Python's is_global (as of
# 3.11) calls global: local-use NAT64 (RFC 8215) and the old site-local range.
_LOCAL_IPV6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("fec0::/10"),
)


# Browsers ignore tabs, newlines and leading controls in a URL's scheme
# ("java\tscript:"), so reading one must too.
_IGNORED_IN_SCHEME = re.compile(r"[\x00-\x20\x7f]")


def link_scheme(url: str) -> str:
    """The scheme a browser would see in the link ('' for a relative link)."""
    cleaned = _IGNORED_IN_SCHEME.sub("", attribute_value(url))
    try:
        return urlsplit(cleaned).scheme.lower()
    except ValueError:  # e.g. an unbalanced [ in the host
        return "invalid"


def _as_opened(url: str) -> str:
    """The address a reader's browser opens for the link: one from "//"
    ("//example.org/x", or "/\\example.org/x") takes the scheme of the page it is
    on, and readers' pages are served over https. Left as typed, it was no http(s)
    link and never checked."""
    read = as_a_browser_reads(url)
    return f"https:{read}" if read.startswith("//") else url


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _reaches_the_site(parts: SplitResult) -> bool:
    """Whether a link's scheme, host and port are this site's, as the site answers
    them: over http too (redirected to https), its host in any case or with its
    trailing dot, its default port written out, and its www. or bare twin where
    the site answers that too (ALLOWED_HOSTS)."""
    site = urlsplit(settings.SITE_URL)
    scheme = parts.scheme.lower() or site.scheme  # "//host/…": the page's scheme
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    port = _DEFAULT_PORTS[scheme] if parts.port is None else parts.port
    site_port = site.port or _DEFAULT_PORTS[site.scheme]
    # nginx sends http on its own port to https on its own.
    both_default = (
        port == _DEFAULT_PORTS[scheme] and site_port == _DEFAULT_PORTS[site.scheme]
    )
    if not both_default and (scheme, port) != (site.scheme, site_port):
        return False
    # urlsplit gives hosts in lower case; Django drops their trailing dot.
    host = parts.hostname.removesuffix(".")
    site_host = (site.hostname or "").removesuffix(".")
    if host == site_host:
        return True
    twin = host.removeprefix("www.") if host.startswith("www.") else f"www.{host}"
    # "*" answers any name, and says nothing of whether the twin reaches us.
    named = [allowed for allowed in settings.ALLOWED_HOSTS if allowed != "*"]
    return twin == site_host and validate_host(host, named)


def site_path(url: str) -> str | None:
    """The path of this site a link goes to, as a browser reads it ("/posts/kent/"
    for "https://<the site>/posts/x/../kent/#findings", "/posts\\kent/" or
    "/posts/ke&#9;nt/"), or None for a link to another site, or within or under
    the post. The checks before publishing ask the site itself about these; the
    link checker leaves them alone."""
    try:
        parts = urlsplit(as_a_browser_reads(url))
        ours = bool(parts.netloc) and _reaches_the_site(parts)
    except ValueError:  # e.g. an unbalanced [ in the host, a port past 65535
        return None
    written_from_the_root = not parts.scheme and not parts.netloc
    if not ours and not (written_from_the_root and parts.path.startswith("/")):
        return None
    return unquote(urljoin("/", parts.path))


class NotPublic(Exception):
    """The address is private, loopback, link-local or otherwise not global."""


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkCheck.Outcome
    detail: str = ""


def web_links(post: Post) -> list[str]:
    """The http(s) addresses in the post's body and its inspections' report links,
    once each, in order, up to MAX_LINKS_PER_POST of MAX_LINK_BYTES at most. Not
    those to this site: checks.check_links_to_the_site asks the site about those
    at once, and a page not there got two warnings for one link."""
    urls = [
        *(attribute_value(url) for url in link_targets(post.body)),
        *report_links(post),
    ]
    web = [
        url
        for url in urls
        if link_scheme(_as_opened(url)) in ("http", "https")
        and len(url.encode()) <= MAX_LINK_BYTES
        and site_path(url) is None
    ]
    return list(dict.fromkeys(web))[:MAX_LINKS_PER_POST]


def report_links(post: Post) -> list[str]:
    """The post's inspections' report links, as typed (none before it is saved)."""
    if post.pk is None:
        return []
    return [i.report_url for i in post.inspections.all() if i.report_url]


def unchecked(post: Post) -> set[str]:
    """The post's web links its latest check has not been through (it has not run
    since they were added, or not at all)."""
    return set(web_links(post)) - set(post.link_checks.values_list("url", flat=True))


def address_is_public(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    trusted_networks: Iterable[Network] = (),
) -> bool:
    if any(address in network for network in trusted_networks):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _LOCAL_IPV6):
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_is_public(embedded, trusted_networks)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address reaches (::ffff:127.0.0.1, 2002:7f00:1::,
    64:ff9b::7f00:1, ::127.0.0.1), which is the one to judge."""
    if any(address in network for network in _IPV4_IN_LAST_32_BITS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour


def public_address(
    host: str, port: int, trusted_networks: Iterable[Network] = ()
) -> str:
    """The address to connect to for `host`, when every address it resolves to is
    public. getaddrinfo also reads the odd IPv4 forms (2130706433, 0177.0.0.1)
    the way a connection would, so they are judged as what they really are."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        if not address_is_public(
            ipaddress.ip_address(address.split("%")[0]), trusted_networks
        ):
            raise NotPublic(address)
    return addresses[0]


class _Deadline:
    """A socket whose reads end by `deadline` (time.monotonic()). A socket's own
    timeout bounds one read, and http.client reads the status line and headers a
    few bytes at a time: a server sending a byte every few seconds held a worker
    for hours."""

    deadline = 0.0

    def recv_into(self, *args, **kwargs):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        self.settimeout(remaining)
        return super().recv_into(*args, **kwargs)


class _DeadlineSocket(_Deadline, socket.socket):
    pass


class _DeadlineSSLSocket(_Deadline, ssl.SSLSocket):
    pass


def _connect(address: str, port: int, deadline: float) -> _DeadlineSocket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = _DeadlineSocket(family, socket.SOCK_STREAM)
    sock.deadline = deadline
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address already checked, whatever the host name says now,
    and gives the whole exchange `timeout` seconds."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.deadline = time.monotonic() + timeout

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, self.deadline)


class _PinnedHTTPSConnection(_PinnedHTTPConnection, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float):
        super().__init__(host, port, address=address, timeout=timeout)
        self._context = ssl.create_default_context()
        self._context.sslsocket_class = _DeadlineSSLSocket

    def connect(self) -> None:
        sock = _connect(self.address, self.port, self.deadline)
        # The handshake's reads are bounded together by the socket's timeout.
        sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        # The certificate is still checked against the host name in the link.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        self.sock.deadline = self.deadline


def _ask(
    url: str, *, address: str, method: str, timeout: float
) -> tuple[int, str | None]:
    parts = urlsplit(url)
    connection_class = (
        _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    )
    default_port = 443 if parts.scheme == "https" else 80
    connection = connection_class(
        parts.hostname, parts.port or default_port, address=address, timeout=timeout
    )
    # A request line is ASCII: non-ASCII characters go percent-encoded as UTF-8, as
    # browsers send them (a link pasted as raw HTML, a Welsh place name).
    target = iri_to_uri(
        (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    )
    try:
        connection.request(method, target, headers={"User-Agent": USER_AGENT})
        response = connection.getresponse()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


def url_check(
    url: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    trusted_networks: Iterable[Network] = (),
) -> LinkResult:
    """Whether the link works, following redirects. `trusted_networks` are let
    through the address check (the test suite's own servers, on loopback)."""
    url = _as_opened(url)
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            parts = urlsplit(url)
        except ValueError:
            return LinkResult(LinkCheck.Outcome.DEAD, "not a valid address")
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return LinkResult(LinkCheck.Outcome.DEAD, "not an http(s) address")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            address = public_address(parts.hostname, port, trusted_networks)
        except NotPublic:
            return LinkResult(LinkCheck.Outcome.REFUSED, parts.hostname)
        except (ValueError, UnicodeError, OSError):
            return LinkResult(LinkCheck.Outcome.DEAD, "no such host")
        try:
            status, location = _ask(
                url, address=address, method="HEAD", timeout=timeout
            )
            if status in (405, 501):  # servers that do not answer HEAD
                status, location = _ask(
                    url, address=address, method="GET", timeout=timeout
                )
        except (OSError, http.client.HTTPException, ValueError) as error:
            return LinkResult(LinkCheck.Outcome.DEAD, _reason(error))
        if status in _REDIRECTS and location:
            try:
                url = urljoin(url, _utf8_header(location))
            except ValueError:  # e.g. an unbalanced [ in the host
                return LinkResult(LinkCheck.Outcome.DEAD, "not a valid address")
            continue
        if status >= 400:
            return LinkResult(LinkCheck.Outcome.DEAD, f"HTTP {status}")
        return LinkResult(LinkCheck.Outcome.OK, f"HTTP {status}")
    return LinkResult(LinkCheck.Outcome.DEAD, "too many redirects")


def _utf8_header(value: str) -> str:
    """A header's text as the server meant it: http.client reads headers as
    Latin-1, and a server that sends a raw non-ASCII Location sends UTF-8, which
    browsers follow."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return value


def _reason(error: Exception) -> str:
    if isinstance(error, ValueError | http.client.InvalidURL):  # unfit for a request
        return "not a valid address"
    if isinstance(error, TimeoutError | socket.timeout):
        return "no answer in time"
    if isinstance(error, ssl.SSLError):
        return "bad certificate or TLS"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return "no answer"


def post_links_check(*, post_id: int) -> int:
    """Check every web link of the post and keep what was found; returns how many
    were checked. Results for links no longer in the post are dropped."""
    started = timezone.now()
    post = Post.objects.filter(pk=post_id).first()
    if post is None:
        return 0
    urls = web_links(post)
    results = {url: url_check(url) for url in urls}  # outside any transaction
    with transaction.atomic():
        LinkCheck.objects.filter(post=post).exclude(url__in=urls).delete()
        for url, result in results.items():
            LinkCheck.objects.update_or_create(
                post=post,
                url=url,
                defaults={
                    "outcome": result.outcome,
                    "detail": result.detail[:200],
                    "checked_at": timezone.now(),
                },
            )
        # Done, unless rung again meanwhile (the post saved since): that check
        # is still to come.
        Post.objects.filter(pk=post.pk, links_check_rung_at__lte=started).update(
            links_check_rung_at=None
        )
    return len(results)
