"""What the desk's admin pages share: the posts', the comments' and the newsletter's
(which imports from here; posts/ knows nothing of the newsletter)."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest


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
