from celery import shared_task

from . import comment_emails
from .tasks import retry_if_provider_refused


@shared_task
def send_comment_digest() -> int:
    return comment_emails.comment_digest_send()


@shared_task(bind=True, max_retries=8)
def email_comment_confirmation(self, comment_id: int) -> None:
    try:
        comment_emails.comment_confirmation_send(comment_id=comment_id)
    except Exception as exc:
        retry_if_provider_refused(self, exc)
