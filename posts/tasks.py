from celery import shared_task

from . import comments, images, services


@shared_task
def announce_due_posts() -> int:
    return services.announce_due_posts()


@shared_task
def purge_comment_personal_data() -> int:
    return comments.comments_purge_personal_data()


@shared_task
def make_renditions(name: str) -> int:
    return len(images.renditions_make(name=name))
