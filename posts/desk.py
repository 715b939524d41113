"""What the desk's admin pages share: the posts', the comments' and the newsletter's
(which imports from here; posts/ knows nothing of the newsletter)."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest


def record_in_the_history(request: HttpRequest, rows: QuerySet, said: str) -> None:
    """Name who changed these rows with a list action in their history: Django
    logs only what its own forms change, and an action recorded nothing of who
    stopped an email or moderated a comment (nor, so, kept the account that did:
    newsletter/admin/users.py)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=rows, action_flag=CHANGE, change_message=said
    )
