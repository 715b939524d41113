from celery import shared_task

from . import images, services


@shared_task
def announce_due_posts() -> int:
    return services.posts_announce_due()


@shared_task
def make_renditions(name: str) -> int:
    return len(images.renditions_make(name=name))
