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
def email_commenter_data_link(
    self, email: str = "", comment_id: int | None = None
) -> None:
    # The form's message holds the address it was given (the form writes
    # nothing, answering alike for every address) and waits only for a worker.
    # Its retries, which may wait for hours, name the newest comment under it
    # instead, where erasing the comments reaches them.
    if comment_id is None:
        comment_id = comment_emails.commenter_newest_comment_id(email=email)
    try:
        comment_emails.commenter_data_link_send(comment_id=comment_id)
    except Exception as exc:
        retry_if_provider_refused(
            self,
            exc,
            email="link to a commenter's data",
            retry_with={"comment_id": comment_id},
        )
