from celery import shared_task

from . import comment_digest


@shared_task
def send_comment_digest() -> int:
    return comment_digest.send_comment_digest()
