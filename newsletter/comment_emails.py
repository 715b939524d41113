"""The emails about readers' comments: the moderators' digest of the comments
waiting for approval, the link that proves a commenter's address, and the link
to a commenter's data.

The comments app decides what to report and whom to ask (it sends no email
itself); this module renders and sends.
"""

import logging
import smtplib
from datetime import datetime

from anymail.exceptions import AnymailRecipientsRefused
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from posts.comments import services as comments
from posts.comments.models import Comment
from posts.validators import normalise_email

from .delivery import provider_refused, taken_email_send
from .emails import build_message, render_email, site_link
from .models import OwedCommentDigest
from .subscriptions import commenter_addresses, is_blocked

logger = logging.getLogger(__name__)

MODERATE_COMMENTS = "comments.change_comment"
# The backend that holds users' and groups' permissions (axes' only counts logins);
# with_perm must be told which when there are two.
PERMISSIONS_BACKEND = "django.contrib.auth.backends.ModelBackend"


def comment_digest_send() -> int:
    """Email each moderator one list of the pending comments not yet reported,
    after the copies of earlier digests still owed. Returns how many comments
    this digest reports.

    Whom it is owed to is written with its claim of the comments, and each copy is
    taken before the provider is asked (OwedCommentDigest): a digest stopped
    partway, the provider down or the worker killed, is sent with the next to
    the moderators it had not reached, and to no one a second time.
    """
    moderators = _moderator_addresses()
    reported = 0
    now = timezone.now()
    if moderators:
        with transaction.atomic():
            reported = comments.comments_claim_for_digest(now=now)
            if reported:
                OwedCommentDigest.objects.bulk_create(
                    OwedCommentDigest(reported_at=now, email=address)
                    for address in moderators
                )
    owed_digests = (
        OwedCommentDigest.objects.order_by("reported_at")
        .values_list("reported_at", flat=True)
        .distinct()
    )
    for reported_at in owed_digests:
        _comment_digest_copies_send(reported_at=reported_at, moderators=moderators)
    return reported


def _moderator_addresses() -> list[str]:
    """Those the desk lets approve or reject comments (the Editor, the
    Administrator, a superuser): a Contributor may not see comments waiting for
    approval.

    One digest a mailbox: two accounts may give one address written differently
    (Editor@… and editor@…), which the desk does not refuse. Sent to its stored
    form, as readers' addresses are.

    Not to an address nothing may be sent to (a hard bounce, a spam complaint:
    the tracking webhook suppresses a moderator's as a reader's), which the
    desk's suppression list shows, and lifts: with none left, the comments wait.
    """
    addresses = {
        normalise_email(address)
        for address in get_user_model()
        .objects.with_perm(MODERATE_COMMENTS, backend=PERMISSIONS_BACKEND)
        .filter(is_staff=True)
        .exclude(email="")
        .values_list("email", flat=True)
    }
    return sorted(address for address in addresses if not is_blocked(address))


def _comment_digest_copies_send(
    *, reported_at: datetime, moderators: list[str]
) -> None:
    owed = OwedCommentDigest.objects.filter(reported_at=reported_at)
    # Owed to whoever moderated when it was claimed: one who has left the desk
    # since, or lost the role, may no longer read the comments waiting; one whose
    # address was suppressed since may not be written to.
    dropped = owed.exclude(email__in=moderators).delete()[0]
    if dropped and not owed.exists():
        # None of those owed it may be told now: its comments, marked as
        # reported, would be told to no moderator ever. The next digest reports
        # them to the moderators then (one who took an earlier copy of this one,
        # the provider failing on the next, reads of them again).
        comments.comments_unclaim_for_digest(reported_at=reported_at)
        return
    pending = comments.comments_of_digest(reported_at=reported_at)
    if not pending:
        owed.delete()  # every comment dealt with since: nothing left to tell
        return
    email = render_email(
        "comment-digest",
        {
            "comments": [
                {
                    "comment": comment,
                    "admin_url": site_link(
                        "admin:comments_comment_change", object_id=comment.pk
                    ),
                }
                for comment in pending
            ],
            # Each post commented on, once, for the preview line.
            "posts": list(dict.fromkeys(c.post.title for c in pending)),
            "queue_url": site_link("admin:comments_comment_changelist")
            + "?status=pending",
            # Beyond what one email holds (a flood): without it, moderators
            # read that 50 wait when hundreds do.
            "more": Comment.objects.awaiting_moderators().count(),
        },
    )
    for copy in owed.order_by("email"):
        # Taken, in its own commit, before the provider is asked: a worker killed
        # from here on has sent this copy or lost it, never sends it twice.
        if not OwedCommentDigest.objects.filter(pk=copy.pk).delete()[0]:
            continue  # taken by another run of the digest
        try:
            build_message(email, to=copy.email).send()
        except (AnymailRecipientsRefused, smtplib.SMTPRecipientsRefused):
            # The provider refused this moderator's address (a hard bounce,
            # someone who left): the others still get theirs.
            continue
        except Exception as exc:
            # Clearly refused (the provider down): owed again, as are the copies
            # after it, to the next digest. Possibly taken: a second copy is worse
            # than none.
            if provider_refused(exc):
                OwedCommentDigest.objects.create(
                    reported_at=reported_at, email=copy.email
                )
            raise


def comment_confirmation_send(*, comment_id: int) -> bool:
    """Email a held comment's commenter the link that proves the address, if the
    comments app says they should have one. True if sent.

    Claimed, in its own commit, before the provider is asked: the queue running
    the task again (a worker killed once it had handed the email over, late
    acknowledgement) sends no second copy. Given back only when the provider
    clearly refused it, for the task's retry.
    """
    now = timezone.now()
    with transaction.atomic():
        comment = comments.comment_claim_confirmation(comment_id=comment_id, now=now)
        if comment is None:
            return False
        if is_blocked(comment.email):
            # Nothing is sent, so nothing is claimed: recorded as sent, it used up
            # the address's hour, and a comment once the block was lifted got no
            # link. The commenter was answered before this ran, the same either way.
            transaction.set_rollback(True)
            return False
        token = comments.comment_confirmation_token(comment=comment)
        email = render_email(
            "comment-confirm",
            {
                "comment": comment,
                "confirm_url": site_link("comments:confirm", token=token),
                "max_age_days": comments.CONFIRMATION_MAX_AGE_SECONDS // 86400,
            },
        )
    taken_email_send(
        build_message(email, to=comment.email),
        give_back=lambda: comments.comment_confirmation_unsent(
            comment_id=comment.pk, claimed_at=now
        ),
    )
    return True


def commenter_newest_comment_id(*, email: str) -> int | None:
    """The newest comment written under the address while it was its owner's,
    which a link to their data names; None if there is none."""
    return (
        Comment.objects.written_under(commenter_addresses(email=email))
        .order_by("-created_at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )


def commenter_data_link_send(*, comment_id: int | None) -> bool:
    """Email the address of comment `comment_id` (commenter_newest_comment_id)
    the link to the data of the comments written under it while it was its
    owner's. True if sent; not if the comment is gone (erased meanwhile).

    Asked for by anyone, from a form that answers the same whatever the address:
    only the address's owner can follow the link.
    """
    newest = Comment.objects.filter(pk=comment_id).first()
    if newest is None:
        if comment_id is not None:
            logger.info(
                "The link to a commenter's data was not sent: comment %s is gone",
                comment_id,
            )
        return False
    if is_blocked(newest.email):
        return False
    token = comments.commenter_data_token(comment=newest)
    message = render_email(
        "comment-data",
        {
            "link": site_link("newsletter:comment_data", token=token),
            "max_age_minutes": comments.DATA_LINK_MAX_AGE_SECONDS // 60,
        },
    )
    build_message(message, to=newest.email).send()
    return True
