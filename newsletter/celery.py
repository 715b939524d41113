import gc
import os

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
)
from django.db import close_old_connections

from newsletter.logs import RedactReaders

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")

app = Celery("newsletter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def load_the_url_configuration(**kwargs) -> None:
    """Import every URLconf and view as the worker starts, in the process the pool
    forks its children from, rather than in each child's first email link
    (reverse() loads them: ~0.1 s, in the first batch of a send)."""
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 (built on first access)


@worker_init.connect
def freeze_what_start_up_made(**kwargs) -> None:
    """Take the objects made so far (Django's apps, settings, models, URL patterns;
    they live as long as the worker) out of the garbage collector's reach: a batch
    allocates thousands of objects, and each collection walked all of them too.
    Connected after the URLconf's loading above, in the process the pool forks its
    children from."""
    gc.freeze()


@task_prerun.connect
@task_postrun.connect
def connections_close_if_old(sender, **kwargs) -> None:
    """Around each task a worker runs, what Django does around each web request:
    close a database connection past DATABASE_CONN_MAX_AGE, or one left broken or
    mid-transaction, and check a kept one (CONN_HEALTH_CHECKS) before the task's
    first query. Celery closes them only every CELERY_DB_REUSE_MAX tasks
    (settings.py). Not for a task run in the caller's own process (eagerly), whose
    connection and transaction are the caller's."""
    if not sender.request.is_eager:
        close_old_connections()


@after_setup_logger.connect
@after_setup_task_logger.connect
def logs_redacted(logger, **kwargs) -> None:
    """The worker logs a failed task's exception, which may quote a reader's
    address, through handlers of Celery's own in place of settings.LOGGING's:
    they redact as the site's log does."""
    for handler in logger.handlers:
        handler.addFilter(RedactReaders())
