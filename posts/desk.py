"""What the desk's admin pages share: the posts', the comments' and the newsletter's
(which imports from here; posts/ knows nothing of the newsletter)."""

from collections.abc import Callable

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

# The rows a list action's question names; the rest are counted.
ASKED_ABOUT_BY_NAME = 20


def counted(count: int, one: str, more: str) -> str:
    """A count and its noun as the desk's messages say it: "1 address", "2
    addresses". The messages said "1 addresses suppressed." and "1 post(s)"."""
    return f"{count} {one if count == 1 else more}"


def record_in_the_history(request: HttpRequest, rows: QuerySet, said: str) -> None:
    """Name who changed these rows with a list action in their history: Django
    logs only what its own forms change, and an action recorded nothing of who
    stopped an email or moderated a comment (nor, so, kept the account that did:
    newsletter/admin/users.py)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=rows, action_flag=CHANGE, change_message=said
    )


def answered_yes(request: HttpRequest) -> bool:
    """Whether the list action's POST is its question's "Yes" (asking_first)."""
    return request.POST.get("post") == "yes"


def asking_first(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    verb: str,
    what_it_does: str,
    noun: Callable[[int], str],
    name: Callable = str,
) -> TemplateResponse:
    """The page asking before a list action the desk cannot undo, as Django asks
    before deleting: one Go on the wrong action, over a whole list selected, acted
    on every row for good. It names the rows (by `name`, the first twenty, the
    rest counted by `noun`); its "Yes" sends the selection back with `post=yes`."""
    count = queryset.count()
    named = [name(row) for row in queryset[:ASKED_ABOUT_BY_NAME]]
    return TemplateResponse(
        request,
        "admin/action_confirmation.html",
        {
            **modeladmin.admin_site.each_context(request),
            "opts": modeladmin.model._meta,
            "title": f"{verb} {noun(count)}?",
            "verb": verb,
            "what_it_does": what_it_does,
            "action": action,
            "named": named,
            "unnamed": count - len(named),
            # The selection as the list sent it: "Select all" keeps its
            # filter (the page's address) rather than listing every id.
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        },
    )
