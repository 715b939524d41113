from celery import shared_task

from . import comment_emails
from .tasks import ONE_READER_EMAIL_RETRIES, retry_if_provider_refused


@shared_task
def send_comment_digest() -> int:
    return comment_emails.comment_digest_send()


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def email_comment_confirmation(self, comment_id: int) -> None:
    try:
        comment_emails.comment_confirmation_send(comment_id=comment_id)
    except Exception as exc:
        # Nothing to undo: a refused send gives its claim back, and the comment
        # waits for the moderators.
        retry_if_provider_refused(
            self, exc, email=f"confirmation of comment {comment_id}"
        )


@shared_task(bind=True, max_retries=ONE_READER_EMAIL_RETRIES)
def email_commenter_data_link(self, email: str) -> None:
    try:
        comment_emails.commenter_data_link_send(email=email)
    except Exception as exc:
        retry_if_provider_refused(self, exc, email="link to a commenter's data")
