from celery import shared_task

from . import services


@shared_task
def purge_comment_personal_data() -> int:
    return services.comments_purge_personal_data()
