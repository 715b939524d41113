"""Where services ring Celery tasks, without importing the tasks modules (which
import the services): `tasks.send_batch.delay(batch_id)`.

A task is looked up by name in Celery's registry when it is rung; apps.py imports
the tasks modules at start-up, so every process has them registered, and a name
that is not a task fails loudly instead of queueing a message no worker knows.

With the broker (Redis) down, a task rung from a request is either rung again later
or refused: work the database keeps, that the reaper rings again, is rung with
`ring_once_committed`; work nothing rings again (a test email, a reader's request)
is rung with `ring`, or asked first with `queue_reachable`, and refused with
QUEUE_UNREACHABLE rather than said to be on its way; asked first, it is rung with
`ring_once_committed_or_undo`, for the broker lost in between.
"""

from collections.abc import Callable

from celery import Task
from django.db import transaction
from kombu.exceptions import OperationalError

from .celery import app

QUEUE_UNREACHABLE = (
    "The email could not be queued: the task queue is unreachable. "
    "Try again in a minute."
)

SENT_ONCE_THE_QUEUE_IS_BACK = (
    "The task queue is unreachable just now: the emails go once it is back, "
    "by themselves."
)


class TaskModule:
    """A tasks module's tasks, by attribute, looked up when rung."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Task:
        return app.tasks[f"{self.module}.{name}"]


tasks = TaskModule("newsletter.tasks")


class QueueUnreachable(Exception):
    """The broker did not take the task."""


def ring(task: Task, *args) -> None:
    """Ring `task` now. Raises QueueUnreachable when the broker is down, for the
    caller to refuse: nothing rings it again."""
    try:
        task.delay(*args)
    except OperationalError as exc:  # kombu's, once Celery's retries are spent
        raise QueueUnreachable(str(exc)) from exc


def ring_once_committed(ringing: Callable[[], object]) -> None:
    """Call `ringing` once the transaction commits, for work the database keeps
    and the reaper rings again: the broker down then, the change stands and Django
    logs the failure, instead of a 500 for a change already committed."""
    transaction.on_commit(ringing, robust=True)


def ring_once_committed_or_undo(
    ringing: Callable[[], object], undo: Callable[[], object] | None = None
) -> None:
    """Call `ringing` once the transaction commits, for a request nothing rings
    again, asked first with `queue_reachable`: the broker lost in between, `undo`
    takes back what the request wrote, so that it can be made again, and
    QueueUnreachable reaches the caller (after the commit), to refuse it as if
    asked first."""

    def ring_or_undo() -> None:
        try:
            ringing()
        except OperationalError as exc:  # kombu's, once Celery's retries are spent
            if undo is not None:
                undo()
            raise QueueUnreachable(str(exc)) from exc

    transaction.on_commit(ring_or_undo)


def queue_reachable() -> bool:
    """Whether the broker answers now: asked before a change whose task nothing
    would ring again, so that it is refused before anything is written."""
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception:  # any transport's connection error
        return False
    return True
