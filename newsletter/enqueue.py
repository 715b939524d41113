"""Where services ring Celery tasks, without importing the tasks modules (which
import the services): `tasks.send_batch.delay(batch_id)`.

A task is looked up by name in Celery's registry when it is rung; apps.py imports
the tasks modules at start-up, so every process has them registered, and a name
that is not a task fails loudly instead of queueing a message no worker knows.
"""

from celery import Task

from .celery import app


class TaskModule:
    """A tasks module's tasks, by attribute, looked up when rung."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Task:
        return app.tasks[f"{self.module}.{name}"]


tasks = TaskModule("newsletter.tasks")
