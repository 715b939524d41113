"""The moderators' digest: one email listing the comments waiting for approval."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from posts import comments

from .emails import build_message, render_email, site_link


def send_comment_digest() -> int:
    """Email each staff member one list of the pending comments not yet reported.

    Returns how many comments were reported. The claim and the sending share one
    transaction: if the provider refuses, the comments stay unreported and the
    next digest (an hour later, on beat) lists them.
    """
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    if not recipients:
        return 0
    with transaction.atomic():
        pending = comments.comments_claim_for_digest(now=timezone.now())
        if not pending:
            return 0
        email = render_email(
            "comment-digest",
            {
                "comments": [
                    {
                        "comment": comment,
                        "admin_url": site_link(
                            "admin:posts_comment_change", object_id=comment.pk
                        ),
                    }
                    for comment in pending
                ],
                "queue_url": site_link("admin:posts_comment_changelist")
                + "?status=pending",
            },
        )
        for address in recipients:
            build_message(email, to=address).send()
    return len(pending)
