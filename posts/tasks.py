from celery import shared_task

from . import services


@shared_task
def announce_due_posts() -> int:
    return services.announce_due_posts()
