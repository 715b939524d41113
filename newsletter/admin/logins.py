"""django-axes' record of admin logins, with its one write action declaring its
permission: axes' own lets anyone who may view the attempts clear them."""

from axes.admin import AccessAttemptAdmin  # registers axes' admins before ours
from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.timesince import timesince

if admin.site.is_registered(AccessAttempt):  # unless AXES_ENABLE_ADMIN is off
    admin.site.unregister(AccessAttempt)

    @admin.register(AccessAttempt)
    class LoginAttemptAdmin(AccessAttemptAdmin):
        @admin.action(description="Clean up expired attempts", permissions=["delete"])
        def cleanup_expired_attempts(self, request, queryset) -> None:
            # axes measures the cool-off back from the time of the login it is
            # judging, which only its login handling puts on the request: here,
            # from now.
            request.axes_attempt_time = None
            super().cleanup_expired_attempts(request, queryset)


def locked_out(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict
) -> HttpResponse:
    """The login refused for too many wrong passwords (AXES_LOCKOUT_CALLABLE). axes'
    own was a line of text saying the account was locked: it is the client's
    network (AXES_LOCKOUT_PARAMETERS), and the page says until when."""
    cool_off = get_cool_off(request)
    now = timezone.now()
    response = render(
        request,
        "admin/locked_out.html",
        {
            **admin.site.each_context(request),
            "title": "Too many wrong passwords",
            "cool_off": timesince(now - cool_off, now),
        },
        status=429,
    )
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
