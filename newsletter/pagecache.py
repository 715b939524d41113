"""Whole-page caching of the public post pages, in the Django cache (Redis in
production), so a post page costs one cache read instead of queries and a
template render.

Every cached page is stored with the generation number it was rendered in; saving,
deleting or announcing a post starts a new generation (and again once it commits),
which retires every cached page at once without listing keys. A short lifetime
bounds anything else (a scheduled post going live is announced by beat, which also
invalidates).
"""

import hashlib
import re

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

CACHED_VIEWS = {"posts:home", "posts:detail"}
GENERATION_KEY = "pagecache:generation"
# Only the query strings the pages themselves link to: anything else (made up by a
# crawler or an attacker) is answered fresh, so it cannot fill the cache.
_CACHEABLE_QUERY = re.compile(r"(page=\d{1,4})?")


def _new_generation() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # no generation yet (or evicted): any new value retires all
        cache.set(GENERATION_KEY, 1, timeout=None)


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
        if not self._cacheable(request):
            return self.get_response(request)
        path = hashlib.sha256(request.get_full_path().encode()).hexdigest()[:32]
        key = f"pagecache:{request.method}:{path}"
        # One round trip for both: the page is stored with the generation it was
        # rendered in, and is good only while that is still the current one.
        found = cache.get_many([GENERATION_KEY, key])
        generation = found.get(GENERATION_KEY, 0)
        if key in found and found[key][0] == generation:
            return found[key][1]
        response = self.get_response(request)
        if (
            response.status_code == 200
            and not response.streaming
            # A response that sets a cookie (CSRF, session, messages) belongs to
            # one visitor.
            and not response.cookies
        ):
            cache.set(key, (generation, response), timeout=settings.PAGE_CACHE_SECONDS)
        return response

    @staticmethod
    def _cacheable(request: HttpRequest) -> bool:
        if request.method not in ("GET", "HEAD"):
            return False
        # The author, logged in, always sees the pages fresh; so does a reader with
        # a message waiting (e.g. "your comment is published" after posting one).
        if {settings.SESSION_COOKIE_NAME, "messages"} & request.COOKIES.keys():
            return False
        if not _CACHEABLE_QUERY.fullmatch(request.META.get("QUERY_STRING", "")):
            return False
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False
        return match.view_name in CACHED_VIEWS
