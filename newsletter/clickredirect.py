"""An email's link (/r/<token>/): counted (engagement.py), then followed.

A send brings a burst of clicks, each a redirect that reads no row and keeps no
session: sessions, authentication, CSRF, messages, the page cache and django-axes
have nothing to do for it, yet cost more than keeping the click. So, as whitenoise
answers static files, ClickRedirectMiddleware (right after security and whitenoise)
answers it itself, without even resolving the URL, and gives the redirect the
headers the view's decorator and the middleware below would have added
(Cache-Control, Content-Security-Policy, X-Frame-Options): the same for every
redirect, so worked out once, by those very decorator and middleware.

Anything else goes down the whole stack to views.click: other methods (405), and
forged or unknown tokens, whose 404 page is then made, with every header, like any
page's.
"""

import functools
from collections.abc import Mapping
from types import MappingProxyType

from csp.middleware import CSPMiddleware
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from posts.clients import client_address

from . import engagement

CLICK_VIEW = "newsletter:click"


def followed(request: HttpRequest, token: str) -> HttpResponse | None:
    """The redirect to the link a token names, the click counted; None for a
    forged or unknown token."""
    link = engagement.click_record(
        token=token,
        head=request.method == "HEAD",
        user_agent=request.headers.get("User-Agent", ""),
        client=client_address(request),
        now=timezone.now(),
        reader=request.GET.get("reader", ""),
    )
    if link is None:
        return None
    response = HttpResponseRedirect(link.target)
    response["X-Robots-Tag"] = "noindex"
    return response


@functools.cache
def headers_of_a_page() -> Mapping[str, str]:
    """The headers the CSP and X-Frame-Options middleware give every page, for
    what is answered above them: the click redirect, and static files, which
    whitenoise answers right below the security middleware (settings.py's
    WHITENOISE_ADD_HEADERS_FUNCTION). Worked out once: whitenoise asks for each
    of the hundreds of files it indexes as a web process starts."""
    bare = HttpResponse()
    dressed = HttpResponse()
    for middleware in (CSPMiddleware, XFrameOptionsMiddleware):
        dressed = middleware(_unused).process_response(HttpRequest(), dressed)
    # Read-only: every caller shares it.
    return MappingProxyType(
        {name: value for name, value in dressed.items() if name not in bare}
    )


@receiver(setting_changed)
def _headers_of_a_page_forget(**kwargs) -> None:
    """A test that changes the policy (override_settings, pytest's settings) gets
    pages' headers that follow it, as Django's own caches of settings do."""
    headers_of_a_page.cache_clear()


def _unused(request: HttpRequest) -> HttpResponse:
    """The get_response a middleware is built with; process_response calls none."""
    raise NotImplementedError


class ClickRedirectMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.prefix = reverse(CLICK_VIEW, args=["token"]).removesuffix("token/")
        bare = HttpResponseRedirect("/")
        dressed = HttpResponseRedirect("/")
        # never_cache's Expires is the moment of the response: any moment past
        # says the same.
        add_never_cache_headers(dressed)
        self.headers = {
            name: value for name, value in dressed.items() if name not in bare
        } | headers_of_a_page()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        token = path[len(self.prefix) : -1]
        if (
            request.method in ("GET", "HEAD")
            and path.startswith(self.prefix)
            and path.endswith("/")
            and token
            and "/" not in token
        ):
            # Above the common middleware, where Django checks the Host header: a
            # host not served gets its 400 here too, and no click is counted.
            request.get_host()
            response = followed(request, token)
            if response is not None:
                for name, value in self.headers.items():
                    response.headers.setdefault(name, value)
                return response
        # Anything else, and a forged or unknown token (counted nowhere, as below).
        return self.get_response(request)
