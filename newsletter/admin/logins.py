"""django-axes' record of admin logins, with its one write action declaring its
permission: axes' own lets anyone who may view the attempts clear them."""

from axes.admin import AccessAttemptAdmin  # registers axes' admins before ours
from axes.models import AccessAttempt
from django.contrib import admin

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
