"""The desk's logins as django-axes records them: each login (AccessLog) and each
failed one (AccessAttempt, AccessFailureLog), with the username, IP address and
browser used."""

from datetime import datetime, timedelta
from importlib import import_module

from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.conf import settings


def logins_purge_old(*, now: datetime) -> int:
    """Forget logins older than DESK_LOGINS_KEEP_DAYS, and desk sessions that have
    ended; returns how many logins.

    Kept to trace a misused account, not for ever: axes never forgets a login,
    and forgets a failed one only when someone next logs in. An ended session
    stays a row until deleted (Django's clearsessions, here): each sign-in to the
    desk leaves one, its user's id in it.
    """
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    cutoff = now - timedelta(days=settings.DESK_LOGINS_KEEP_DAYS)
    return sum(
        model.objects.filter(attempt_time__lt=cutoff).delete()[0]
        for model in (AccessLog, AccessAttempt, AccessFailureLog)
    )
