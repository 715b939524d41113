from celery import shared_task

from . import comment_emails, delivery
from .tasks import backoff


@shared_task
def send_comment_digest() -> int:
    return comment_emails.comment_digest_send()


@shared_task(bind=True, max_retries=8)
def email_comment_confirmation(self, comment_id: int) -> None:
    try:
        comment_emails.comment_confirmation_send(comment_id=comment_id)
    except Exception as exc:
        if not delivery.provider_refused(exc):
            raise  # possibly sent already: a second copy is worse than none
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
