"""The desk's logins as django-axes records them: each login (AccessLog) and each
failed one (AccessAttempt, AccessFailureLog), with the username, IP address and
browser used."""

from datetime import datetime, timedelta

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings


def logins_purge_old(*, now: datetime) -> int:
    """Forget logins older than DESK_LOGINS_KEEP_DAYS; returns how many.

    Kept to trace a misused account, not for ever: axes never forgets a login,
    and forgets a failed one only when someone next logs in.
    """
    cutoff = now - timedelta(days=settings.DESK_LOGINS_KEEP_DAYS)
    return sum(
        model.objects.filter(attempt_time__lt=cutoff).delete()[0]
        for model in (AccessLog, AccessAttempt, AccessFailureLog)
    )
