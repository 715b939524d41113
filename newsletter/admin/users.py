"""The desk's people: Django's user admin, with superusers kept to superusers.

The roles are groups (migrations 0002_roles); an Administrator holds the
permission to change users, so without this they could make anyone a superuser,
or reset a superuser's password and sign in as them: past every role at once.
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from posts.models import Post
from posts.search import index_post

from .. import pagecache

User = get_user_model()

admin.site.unregister(User)


@admin.register(User)
class DeskUserAdmin(UserAdmin):
    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if request.user.is_superuser:
            return readonly
        return [*readonly, "is_superuser"]

    # A post's search entry holds its byline: renamed, the author's posts are
    # found by the new name, not the old; deleted, by neither (the byline goes).
    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if change and {"first_name", "last_name", "username"} & set(form.changed_data):
            for post in form.instance.posts.all():
                index_post(post)
            # Their pages show the byline, and search pages find by it. Not on every
            # save of a user: a login saves one.
            pagecache.invalidate()

    def delete_model(self, request: HttpRequest, obj) -> None:
        self.delete_queryset(request, User.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        posts = list(Post.objects.filter(author__in=queryset))
        super().delete_queryset(request, queryset)
        for post in posts:
            post.author = None
            index_post(post)
        if posts:
            pagecache.invalidate()

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
