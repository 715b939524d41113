"""The desk's people: Django's user admin, with superusers kept to superusers.

The roles are groups (migrations 0002_roles); an Administrator holds the
permission to change users, so without this they could make anyone a superuser,
or reset a superuser's password and sign in as them: past every role at once.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

User = get_user_model()

admin.site.unregister(User)


@admin.register(User)
class DeskUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return readonly
        return [*readonly, "is_superuser"]

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Also the password page, which asks the same.
        return super().has_change_permission(request, obj) and self._within_reach(
            request, obj
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and self._within_reach(
            request, obj
        )

    def _within_reach(self, request: HttpRequest, obj) -> bool:
        return obj is None or not obj.is_superuser or request.user.is_superuser
