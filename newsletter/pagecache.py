"""Whole-page caching of the public post pages and of search results, in the
Django cache (Redis in production), so a page costs one cache read instead of
queries and a template render: a burst of readers searching the same words (after
a send) costs one search.

Every cached page is stored with the generation it was rendered in; saving,
deleting or announcing a post starts a new generation (and again once it commits),
which retires every cached page at once without listing keys. A generation is a
random number, never a count: Redis may evict it under memory pressure, and a count
restarted then would meet pages cached the first time round. A page cached before
a scheduled post's time expires at that time (beat announces the post, and
invalidates, only up to POSTS_ANNOUNCE_EVERY_SECONDS later). A short lifetime
bounds anything else.
"""

import contextlib
import hashlib
import logging
import re
import secrets
from datetime import datetime
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Min
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.utils import timezone

from posts.models import Post
from posts.search import query_text

logger = logging.getLogger(__name__)

# Each cached page, with the only query strings it is cached under: those the
# pages themselves link to (the home page's page numbers; a post's page has none).
# Anything else (made up by a crawler or an attacker) is answered fresh, so it
# cannot fill the cache.
CACHED_VIEWS = {
    "posts:home": re.compile(r"(page=\d{1,4})?"),
    "posts:detail": re.compile(""),
}
SEARCH_VIEW = "posts:search"
GENERATION_KEY = "pagecache:generation"
_PAGE_NUMBER = re.compile(r"\d{1,4}")


def _generation() -> int:
    """A generation no page cached before can carry: random, and an integer, which
    an older release's cache.incr still moves on during a deployment."""
    return secrets.randbits(62)


def _new_generation() -> None:
    try:
        cache.set(GENERATION_KEY, _generation(), timeout=None)
    except Exception:  # any cache backend's connection error
        # The cache (Redis) unreachable: the author's change is saved all the same
        # (this runs inside its transaction). While Redis is down no page is read
        # from it; pages it kept from before expire within PAGE_CACHE_SECONDS.
        logger.warning(
            "Could not retire the cached pages: the cache is unreachable",
            exc_info=True,
        )


def invalidate(**kwargs) -> None:
    """Signal receiver: retire every cached page now and once the change commits.

    Now, so that whoever made the change sees it at once, even inside the
    transaction; again on commit, because a request in between may have cached the
    old page again.
    """
    _new_generation()
    transaction.on_commit(_new_generation)


class PageCacheMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Django checks the Host header (ALLOWED_HOSTS) in the common middleware,
        # below this one: a cached page answered any host. Checked here, a host not
        # served gets Django's 400 (handler400) whether or not the page is cached.
        request.get_host()
        address = self._cached_address(request)
        if address is None:
            return self.get_response(request)
        path = hashlib.sha256(address.encode()).hexdigest()[:32]
        key = f"pagecache:{request.method}:{path}"
        # One round trip for both: the page is stored with the generation it was
        # rendered in, and is good only while that is still the current one.
        try:
            found = cache.get_many([GENERATION_KEY, key])
        except Exception:  # any cache backend's connection error
            # The cache (Redis) unreachable: the page is made fresh, as the click
            # redirect still takes readers to it (engagement._cached), never a 500.
            return self.get_response(request)
        generation = found.get(GENERATION_KEY)
        if generation is None:
            generation = _generation_start()
        elif key in found and found[key][0] == generation:
            return found[key][1]
        made_from = timezone.now()  # the page reads the posts live from here on
        response = self.get_response(request)
        if (
            generation is not None
            and response.status_code == 200
            and not response.streaming
            # A response that sets a cookie (CSRF, session, messages) belongs to
            # one visitor.
            and not response.cookies
            and (lifetime := _page_lifetime(made_from=made_from)) > 0
        ):
            with contextlib.suppress(Exception):  # gone since: kept next time
                cache.set(key, (generation, response), timeout=lifetime)
        return response

    @staticmethod
    def _cached_address(request: HttpRequest) -> str | None:
        """The address the page is cached under, or None to answer it fresh."""
        if not settings.PAGE_CACHE_SECONDS or request.method not in ("GET", "HEAD"):
            return None
        # The author, logged in, always sees the pages fresh; so does a reader with
        # a message waiting (e.g. "your comment is published" after posting one).
        if {settings.SESSION_COOKIE_NAME, "messages"} & request.COOKIES.keys():
            return None
        try:
            view_name = resolve(request.path_info).view_name
        except Resolver404:
            return None
        if view_name == SEARCH_VIEW:
            return _search_address(request)
        cacheable_query = CACHED_VIEWS.get(view_name)
        if cacheable_query is not None and cacheable_query.fullmatch(
            request.META.get("QUERY_STRING", "")
        ):
            return request.get_full_path()
        return None


def _generation_start() -> int | None:
    """Start a generation where the cache has none (never started, or evicted),
    and return it; None if another request started one first, or the cache is
    unreachable: the page is then not kept. Nothing cached without a generation is
    served, as nothing tells whether it was cached before the last change."""
    generation = _generation()
    try:
        started = cache.add(GENERATION_KEY, generation, timeout=None)
    except Exception:  # any cache backend's connection error
        return None
    return generation if started else None


def _page_lifetime(*, made_from: datetime) -> int:
    """Seconds a page may be kept: until the next scheduled post goes live, when
    every listing changes, at most PAGE_CACHE_SECONDS. Beat's invalidation comes
    up to POSTS_ANNOUNCE_EVERY_SECONDS later, and, with the embedded cache, in
    another process's memory, never the web's. Scheduled as of `made_from`, when
    the page began reading posts: one that went live while it was made is not on
    it, and it is not kept."""
    goes_live = Post.objects.scheduled(as_of=made_from).aggregate(
        first=Min("published_at")
    )["first"]
    if goes_live is None:
        return settings.PAGE_CACHE_SECONDS
    # Rounded down: a page made in the last second before it is not kept.
    until = int((goes_live - timezone.now()).total_seconds())
    return min(settings.PAGE_CACHE_SECONDS, until)


def _search_address(request: HttpRequest) -> str | None:
    """Search results under one address for every way of typing the same words
    (spacing, case: the view shows the query in the same form), so that a crowd
    searching for them shares one page. Only q and page, each at most once: other
    query strings are answered fresh. Each entry costs a search to make, so junk
    fills the cache no faster than the site can search, and a query is capped at
    the length the view searches for anyway."""
    raw = request.META.get("QUERY_STRING", "")
    if raw.count("&") > 1:  # more than q and page: not worth parsing here
        return None
    params = request.GET
    if params.keys() - {"q", "page"} or any(
        len(values) > 1 for _, values in params.lists()
    ):
        return None
    page = params.get("page")
    if page is not None and not _PAGE_NUMBER.fullmatch(page):
        return None
    normal = {"q": query_text(params["q"])} if "q" in params else {}
    if page is not None:
        normal["page"] = page
    return f"{request.path}?{urlencode(normal)}"
