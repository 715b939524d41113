"""Malformed input to the desk is a 400 that changes nothing, never a 500.

Django's admin hands some of a request's values to the database unchecked: a NUL
character (PostgreSQL's text cannot hold one; in a header too, which django-axes
records at each login), a login's username longer than any user's (django-axes
records it too), the ids of an action's selection,
the years of a changelist's date lookups, the ids an autocomplete field renders
again. A middleware over the admin's URLs covers every admin at once, ours and the
third-party ones (auth, django-axes) alike, which a base class of ours would not.
"""

import logging
from collections.abc import Callable
from functools import cache

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.urls import reverse

from posts.validators import row_id_in

logger = logging.getLogger(__name__)


class AdminInputMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Checked before any view runs: an action must never start on a selection
        # it cannot read, as it may write before it reads its rows.
        if _is_admin(request):
            # The headers too: django-axes stores a login's User-Agent and Accept.
            if (
                _holds_nul(request.GET)
                or _holds_nul(request.POST)
                or any("\x00" in value for value in request.headers.values())
            ):
                return _refuse(
                    "This request holds a NUL character (U+0000), which the desk "
                    "can neither store nor search for. Nothing was changed."
                )
            # Django's login form shows the limit but never checks it, and axes
            # stores each failed login's username in 255 characters: longer was a
            # 500 on PostgreSQL. No user has a longer one: no real login is refused.
            if (
                request.path == _login_path()
                and len(request.POST.get("username", "")) > _username_max_length()
            ):
                return _refuse(
                    "No desk user has a username that long. Nothing was changed."
                )
            if not all(map(row_id_in, request.POST.getlist(ACTION_CHECKBOX_NAME))):
                return _refuse(
                    "The selected rows must be given by their ids, whole numbers. "
                    "Nothing was changed."
                )
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        # What only Django's own code parses fails as one of these: a year no
        # datetime holds in a changelist's lookups or date hierarchy, an id that
        # is not one in an autocomplete field shown again, an id beyond SQLite's
        # INTEGER in a form. Nothing has changed by then: a changelist only
        # reads, a change form's transaction is rolled back, and so is an
        # action's, each of ours writing its rows in one. (Asking the provider
        # about batches keeps each one it settled, and says so itself.)
        if not (
            _is_admin(request) and isinstance(exception, (ValueError, OverflowError))
        ):
            return None
        # Kept in the log with its traceback, in case it was a bug of ours.
        logger.warning(
            "Refused malformed input to %s", request.path, exc_info=exception
        )
        return _refuse(
            "The desk cannot use a value in this request: a date outside the "
            "years 1 to 9999, or an id that is not one. Nothing was changed."
        )


def _is_admin(request: HttpRequest) -> bool:
    return request.path.startswith(_admin_prefix())


@cache  # asked on every request the page cache does not answer
def _admin_prefix() -> str:
    return reverse("admin:index")


@cache
def _login_path() -> str:
    return reverse("admin:login")


@cache
def _username_max_length() -> int:
    user_model = get_user_model()
    return user_model._meta.get_field(user_model.USERNAME_FIELD).max_length


def _holds_nul(values: QueryDict) -> bool:
    return any(
        "\x00" in key or any("\x00" in value for value in values_of_key)
        for key, values_of_key in values.lists()
    )


def _refuse(explanation: str) -> HttpResponse:
    return HttpResponseBadRequest(explanation, content_type="text/plain; charset=utf-8")
