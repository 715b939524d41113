"""The desk's people: Django's user admin, where nobody gains a right they lack.

The roles are groups (migrations 0002_roles); an Administrator holds the
permission to change users, so without this they could make anyone a superuser,
or reset a superuser's password and sign in as them: past every role at once.
And anyone else given `auth.change_user` or `auth.change_group` could put
themselves in the Administrator group, give themselves any permission, or add it
to their role. So:

- only a superuser makes or changes a superuser;
- only one holding every permission (an Administrator, a superuser) gives or takes
  a role, a permission, the desk (is_staff) or the account itself (is_active:
  else one deactivated by an Administrator is brought back by anyone who may
  change users), or changes what a role holds: any permission they give, they hold;
- anyone else changes only people whose permissions are all theirs too (their
  password is a way into their account), and never anyone's rights;
- nobody changes their own rights: only a way to lock themselves out.

And an account that did anything at the desk is kept, deactivated, not deleted:
its deletion would take with it the record of who did what (receivers.py refuses
it anywhere; the delete page says so first, below).
"""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.http import HttpRequest
from django.utils.html import format_html

from posts.models import Post
from posts.search import index_post

from .. import pagecache
from ..management.commands.ensure_admin import ADMINISTRATOR
from ..receivers import desk_history_of

User = get_user_model()

admin.site.unregister(User)
admin.site.unregister(Group)

# What only one holding every permission changes on a user's page.
RIGHTS = ["is_active", "is_staff", "groups", "user_permissions"]


def _permissions_of(user) -> set[int]:
    """The ids of the permissions a user holds, their own and their groups', even
    while the account is inactive (Django then counts none: reactivated, it has
    them all again)."""
    return set(
        Permission.objects.filter(Q(user=user) | Q(group__user=user)).values_list(
            "pk", flat=True
        )
    )


def holds_every_permission(user) -> bool:
    return user.is_superuser or len(_permissions_of(user)) == Permission.objects.count()


@admin.register(User)
class DeskUserAdmin(UserAdmin):
    # A departed colleague's account is kept, deactivated: the list says which.
    list_display = (*UserAdmin.list_display, "is_active")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        # On their own page too: unticking their own Active, Staff status or role
        # takes them out of the desk at once, with nobody there to undo it.
        own = obj == request.user
        if not request.user.is_superuser or own:
            readonly.append("is_superuser")
        if not holds_every_permission(request.user) or own:
            readonly.extend(RIGHTS)
        return readonly

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

    # The delete page and "delete selected" both ask this, and delete nothing
    # while anything is protected: all or nothing, and the page says why.
    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, counts, permissions_needed, protected = super().get_deleted_objects(
            objs, request
        )
        history = desk_history_of(objs)
        instead = (
            "untick “Active” on its page to deactivate it instead"
            if holds_every_permission(request.user)
            else "an Administrator can deactivate it instead"
        )
        for user in objs:
            if records := history[user.pk]:
                protected.append(
                    format_html(
                        "{} {} of what {} did at the desk: keep the account, {}.",
                        records,
                        "entry" if records == 1 else "entries",
                        user.get_username(),
                        instead,
                    )
                )
        # SET_NULL: the posts stay, and the page listed nothing of what goes.
        bylines = Post.objects.filter(author__in=objs).order_by("title")
        deleted.extend(
            f"The byline of the post “{post.title}” (the post stays)"
            for post in bylines
        )
        if bylines:
            counts["bylines"] = len(bylines)
        return deleted, counts, permissions_needed, protected

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
        if obj is None or request.user.is_superuser:
            return True
        return not obj.is_superuser and (
            _permissions_of(obj) <= _permissions_of(request.user)
        )


@admin.register(Group)
class DeskGroupAdmin(GroupAdmin):
    """A role is what its members may do: only one who may do everything already
    makes, changes or removes one."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and holds_every_permission(
            request.user
        )

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return (
            super().has_change_permission(request, obj)
            and holds_every_permission(request.user)
            and not _is_the_administrator_role(obj)
        )

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return (
            super().has_delete_permission(request, obj)
            and holds_every_permission(request.user)
            and not _is_the_administrator_role(obj)
        )


def _is_the_administrator_role(role: Group | None) -> bool:
    """The Administrator role is every permission, kept so by code: found by its
    name by ensure_admin and at each migrate (receivers.py), and what lets its
    members give roles (holds_every_permission). Renamed, changed or deleted at
    the desk, those stop: only read on its page."""
    return role is not None and role.name == ADMINISTRATOR
