"""An email's link (/r/<token>/, views.click) answered near the top of the stack.

A send brings a burst of clicks, each a redirect that reads no row and keeps no
session: sessions, authentication, CSRF, messages, the page cache and django-axes
have nothing to do for it, yet cost more than counting the click. So, as whitenoise
answers static files, this middleware (right after security and whitenoise) calls
the click view itself, and gives its redirect the headers the middleware below
would have added (Content-Security-Policy, X-Frame-Options): the same for every
redirect, so worked out once, by those middleware themselves.

Anything else goes down the whole stack as usual: other methods (405), and forged
or unknown tokens, whose 404 page is then made, with every header, like any page's.
"""

from csp.middleware import CSPMiddleware
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.urls import Resolver404, resolve, reverse

CLICK_VIEW = "newsletter:click"


class ClickRedirectMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.prefix = reverse(CLICK_VIEW, args=["token"]).removesuffix("token/")
        bare = HttpResponseRedirect("/")
        dressed = HttpResponseRedirect("/")
        for skipped in (CSPMiddleware, XFrameOptionsMiddleware):
            dressed = skipped(get_response).process_response(HttpRequest(), dressed)
        self.headers = {
            name: value for name, value in dressed.items() if name not in bare
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD") or not request.path_info.startswith(
            self.prefix
        ):
            return self.get_response(request)
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        if match.view_name != CLICK_VIEW:
            return self.get_response(request)
        try:
            response = match.func(request, *match.args, **match.kwargs)
        except Http404:  # a forged or unknown token: counted nowhere, as below
            return self.get_response(request)
        for name, value in self.headers.items():
            response.headers.setdefault(name, value)
        return response
