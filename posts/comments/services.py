"""Readers' comments: posting, proving the commenter's address, moderation, closing,
and the commenter's personal data.

Reads live on CommentQuerySet (models.py); the writes are here, as keyword-only
services that views, the admin, tasks and the email service call.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core import signing
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac

from posts import throttle
from posts.models import Post
from posts.validators import AddressPeriod, is_row_id, normalise_email

from .models import USER_AGENT_MAX_LENGTH, Comment, PostCommentSettings
from .signals import comment_held, comments_changed

RATE_LIMIT_WINDOW_SECONDS = 3600
# What the desk's history calls a comment whose writer erased their data.
ERASED_COMMENTER = "a comment by an erased reader"
# Comments under one email address an hour, whatever the clients: the per-client
# limit alone let a stranger spread comments under someone else's address over
# many clients. Ample for a person (whose proved browser is not counted).
COMMENTS_MAX_PER_ADDRESS_PER_HOUR = 10
# The digest lists at most this many comments; the rest wait for the next one.
# About 1 KB of HTML each (a body is cut at 500 characters): Gmail shows only the
# first 102 KB of an email, and 200 clipped most of them and the queue's button.
DIGEST_MAX_COMMENTS = 50
# A commenter is emailed the link that proves the address at most this often, so
# a stranger using their address cannot flood their inbox.
CONFIRMATION_INTERVAL = timedelta(hours=1)
# The same text from the same address, under the same post and comment, within
# this is the form sent again (a double click, a reload), not a second comment.
RESENT_WITHIN = timedelta(hours=1)
CONFIRMATION_MAX_AGE_SECONDS = 7 * 86400
_CONFIRMATION_SALT = "comments.confirm"
# The link that lets whoever owns an address download or erase the comments
# written under it: the same hour as a reader's one-time links.
DATA_LINK_MAX_AGE_SECONDS = 3600
_DATA_LINK_SALT = "comments.data"


class CommentsClosed(Exception):
    """The post takes no new comments."""


class PostNotPublished(Exception):
    """The post went off the site (taken down, or deleted) as the comment was sent."""


class TooManyComments(Exception):
    """Too many comments were sent under this email address in the last hour."""


class ReplyNotPossible(Exception):
    """The comment replied to is not one readers see on this post."""


class ConfirmationInvalid(Exception):
    """The confirmation link is forged, expired, or its comment is gone."""


class ConfirmationUsed(ConfirmationInvalid):
    """The confirmation link was good, and has been used: it proves the address once."""


class DataLinkInvalid(Exception):
    """The link to a commenter's data is forged, expired, or its comment is gone
    (erased with the others, which ends the link)."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


# Reading ----------------------------------------------------------------------


def comments_are_open(*, post: Post) -> bool:
    """Open unless the author closed them, or the post is older than the setting."""
    if not comments_open_by_age(post=post):
        return False
    return not PostCommentSettings.objects.filter(
        post=post, comments_open=False
    ).exists()


def comments_open_by_age(*, post: Post) -> bool:
    """Whether the post, published, is still within COMMENTS_CLOSE_AFTER_DAYS of
    its publication (whatever the author's switch says)."""
    if not post.is_published:
        return False
    days = settings.COMMENTS_CLOSE_AFTER_DAYS  # 0: never close by age
    return not days or post.published_at > timezone.now() - timedelta(days=days)


def comment_thread(*, post: Post) -> QuerySet[Comment]:
    """The approved top-level comments of a post, each with its approved replies."""
    return (
        Comment.objects.approved()
        .top_level()
        .filter(post=post)
        .prefetch_related(
            Prefetch("replies", queryset=Comment.objects.approved(), to_attr="thread")
        )
    )


def comment_counts(*, posts: list[Post]) -> dict[int, int]:
    """How many comments each of these posts shows, in one query (a post without
    any is absent)."""
    return dict(
        Comment.objects.shown()
        .filter(post__in=[post.pk for post in posts])
        .order_by()
        .values("post")
        .annotate(count=Count("pk"))
        .values_list("post", "count")
    )


def comments_for_addresses(*, addresses: Iterable[AddressPeriod]) -> list[dict]:
    """A person's comments, written under their addresses while each was theirs,
    as JSON-ready data for their data export.

    Without the poster's IP address and browser: anyone may post a comment giving
    any address, so those may be a stranger's, and the export would hand them to
    whoever owns the address.
    """
    return [
        {
            "post": comment.post.title,
            # Absolute, as the deliveries' posts are: an export is read off the site.
            # None for a post taken off the site since: its link is "Page not found".
            "post_url": settings.SITE_URL + comment.post.get_absolute_url()
            if comment.post.is_published
            else None,
            "post_on_site": comment.post.is_published,
            "created_at": comment.created_at.isoformat(),
            "status": comment.status,
            "name": comment.name,
            "email": comment.email,
            "website": comment.website,
            "comment": comment.body,
        }
        for comment in Comment.objects.written_under(addresses).select_related("post")
    ]


# Posting ----------------------------------------------------------------------


def comment_rate_limited(*, client: str) -> bool:
    """Count one comment attempt from this client (clients.client_key); True once
    it is over the limit."""
    return not throttle.allow(
        "comments",
        client,
        limit=settings.COMMENTS_MAX_PER_IP_PER_HOUR,
        window_seconds=RATE_LIMIT_WINDOW_SECONDS,
    )


def comment_post(
    *,
    post: Post,
    name: str,
    email: str,
    body: str,
    website: str = "",
    parent_id: int | None = None,
    ip_address: str | None = None,
    user_agent: str = "",
    verified_email: str = "",
) -> Comment:
    """Record a reader's comment: held for moderation unless the commenter is known
    and proved the address (`verified_email`, the address this browser proved).

    Raises TooManyComments when the address is over its hourly limit, unless this
    browser proved it: strangers using an address must not lock its owner out;
    PostNotPublished when the post was taken down or deleted as it was sent.

    A reply to a reply joins the thread of the top-level comment, so threads are
    one level deep. The same text sent again (RESENT_WITHIN) returns the comment
    first sent, whoever sent it: say "published" only where address_proved.
    """
    if not comments_are_open(post=post):
        raise CommentsClosed
    email = normalise_email(email)
    proved = address_proved(email=email, verified_email=verified_email)
    with transaction.atomic():
        # One comment at a time per post, so that the form sent twice at once (a
        # double click) finds its first copy: each looked before the other had
        # written, and the comment was recorded, and its confirmation sent, twice.
        # Read again as locked: a post taken down meanwhile had the comment
        # published under it, and one deleted refused it (a 500).
        live = Post.objects.published().select_for_update(no_key=True)
        if not live.filter(pk=post.pk).exists():
            raise PostNotPublished
        parent = None
        if parent_id is not None:
            parent = _thread_replied_to(post=post, comment_id=parent_id)
        resent = Comment.objects.filter(
            post=post,
            parent=parent,
            email=email,
            body=body,
            created_at__gte=timezone.now() - RESENT_WITHIN,
        ).first()
        if resent is not None:
            return resent
        # Counted last, so that only a comment that would be recorded takes a turn.
        if not proved and not throttle.allow(
            "comments-address",
            email,
            limit=COMMENTS_MAX_PER_ADDRESS_PER_HOUR,
            window_seconds=RATE_LIMIT_WINDOW_SECONDS,
        ):
            raise TooManyComments
        known = proved and _skips_moderation(email=email)
        comment = Comment.objects.create(
            post=post,
            parent=parent,
            name=name,
            email=email,
            website=website,
            body=body,
            status=Comment.Status.APPROVED if known else Comment.Status.PENDING,
            ip_address=ip_address,
            user_agent=user_agent[:USER_AGENT_MAX_LENGTH],
        )
    # Once committed: a cached page emptied before would be cached again without it.
    if comment.status == Comment.Status.APPROVED:
        comments_changed.send(sender=Comment)
    else:
        comment_held.send(sender=Comment, comment=comment)
    return comment


def _thread_replied_to(*, post: Post, comment_id: int) -> Comment:
    """The top-level comment whose thread a reply to `comment_id` joins, locked
    until the reply commits: deleted meanwhile (by a moderator, its writer's
    erasure), the reply's link to it was refused by the database, a 500, or
    refused the deletion. comments_delete locks what it deletes first.

    Raises ReplyNotPossible unless readers see it on this post.
    """
    replied_to = (
        Comment.objects.shown()
        .filter(post=post, pk=comment_id)
        .values_list("pk", "parent_id")
        .first()
    )
    if replied_to is None:
        raise ReplyNotPossible
    comment_id, parent_id = replied_to
    top = (
        Comment.objects.shown()
        .filter(post=post, pk=parent_id or comment_id)
        # Only the comment: shown() reads its parent through an outer join,
        # whose nullable side PostgreSQL does not lock.
        .select_for_update(no_key=True, of=("self",))
        .first()
    )
    if top is None:
        raise ReplyNotPossible
    return top


def address_proved(*, email: str, verified_email: str) -> bool:
    """Whether this browser proved `email` is its commenter's (`verified_email`,
    the address it proved). Only such a browser is told its comment is published:
    the same text sent again under another's address finds that person's comment,
    and "published" would tell a stranger whose address it is."""
    if not verified_email:
        return False
    return normalise_email(verified_email) == normalise_email(email)


def _skips_moderation(*, email: str) -> bool:
    return (
        settings.COMMENTS_AUTO_APPROVE_KNOWN
        and Comment.objects.approved().for_email(email).exists()
    )


# Proving the address ----------------------------------------------------------


def _address_digest(email: str, salt: str = _CONFIRMATION_SALT) -> str:
    # Binds the link to the address it was sent to (a moderator may edit it),
    # without writing the address into a URL.
    return salted_hmac(salt, email).hexdigest()[:16]


def comment_confirmation_token(*, comment: Comment) -> str:
    return signing.dumps(
        [comment.pk, _address_digest(comment.email)], salt=_CONFIRMATION_SALT
    )


def comment_claim_confirmation(*, comment_id: int, now: datetime) -> Comment | None:
    """Mark the held comment whose commenter is to be emailed the confirmation link;
    None if nobody is to be emailed.

    Only a known commenter gets one (proving an address skips moderation only for
    them), while confirming would still publish the comment (the email promises
    it), and each address at most once per CONFIRMATION_INTERVAL. The request
    that held the comment answered the same either way; this runs later, in the
    email service's task, inside a transaction of its own, committed before the
    email is handed over, so that it is never sent twice; a refused send gives it
    back (comment_confirmation_unsent).
    """
    comment = (
        Comment.objects.pending()
        .filter(pk=comment_id)
        .select_related("post", "parent")
        .first()
    )
    if comment is None or not confirming_publishes(comment=comment):
        return None
    # The address's comments locked, so that two claims at once (two comments
    # held together) read its hour one after the other: each read the other's
    # uncommitted claim as none, and both were sent.
    list(
        Comment.objects.for_email(comment.email)
        .select_for_update()
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    recently = Comment.objects.for_email(comment.email).filter(
        confirmation_sent_at__gt=now - CONFIRMATION_INTERVAL
    )
    if recently.exists():
        return None
    claimed = Comment.objects.filter(
        pk=comment.pk, confirmation_sent_at__isnull=True
    ).update(confirmation_sent_at=now)
    return comment if claimed else None


def comment_confirmation_unsent(*, comment_id: int, claimed_at: datetime) -> None:
    """The provider clearly refused the confirmation claimed at `claimed_at`: owed
    again, for the email service's retry, and not counted against the address's
    hourly limit."""
    Comment.objects.filter(pk=comment_id, confirmation_sent_at=claimed_at).update(
        confirmation_sent_at=None
    )


def comment_of_confirmation(*, token: str) -> Comment:
    """The comment an emailed confirmation link is for, read, not confirmed: its
    page shows the comment first, as whoever posted it typed it, not the one who
    owns the address.

    Raises ConfirmationInvalid for a forged or expired link, or a deleted comment;
    ConfirmationUsed once it has been used.
    """
    try:
        comment_id, digest = signing.loads(
            token, salt=_CONFIRMATION_SALT, max_age=CONFIRMATION_MAX_AGE_SECONDS
        )
    except (signing.BadSignature, TypeError, ValueError) as error:
        raise ConfirmationInvalid from error
    if not is_row_id(comment_id):
        raise ConfirmationInvalid
    comment = Comment.objects.filter(pk=comment_id).select_related("post").first()
    if comment is None or _address_digest(comment.email) != digest:
        raise ConfirmationInvalid
    if comment.confirmation_used_at is not None:
        raise ConfirmationUsed
    return comment


def comment_confirm(*, token: str) -> Comment:
    """The commenter followed the emailed link: the address is theirs, so their held
    comment is published (unless a moderator marked it as spam, or the post's
    comments have closed).

    Raises ConfirmationInvalid as comment_of_confirmation does, and
    ConfirmationUsed to all but the first of two presses at once.
    """
    comment = comment_of_confirmation(token=token)
    # One step with what the link does: marked used and then failing to publish,
    # it was spent on a comment still held, and the commenter had no other.
    with transaction.atomic():
        # Marked used first, by one conditional update, so that of two presses at
        # once (or a forwarded link's) only one proves the address.
        used = Comment.objects.filter(
            pk=comment.pk, confirmation_used_at__isnull=True
        ).update(confirmation_used_at=timezone.now())
        if not used:
            raise ConfirmationUsed
        if confirming_publishes(comment=comment):
            # Still pending: a moderator may have marked it as spam since it was
            # read.
            comments_approve(comments=Comment.objects.pending().filter(pk=comment.pk))
            comment.refresh_from_db()
    return comment


def confirming_publishes(*, comment: Comment) -> bool:
    """Whether confirming its address publishes the comment now, for the page that
    asks to confirm to say so. Publishing at once is posting: on a post unpublished
    or whose comments closed since the link was sent, or a comment a moderator has
    marked as spam, it does not (the first two wait for a moderator). Nor does a
    reply to a comment readers no longer see (marked as spam since): published, it
    would be hidden with that comment, so it waits for a moderator too."""
    return (
        comment.status == Comment.Status.PENDING
        and comments_are_open(post=comment.post)
        and (comment.parent is None or comment.parent.status == Comment.Status.APPROVED)
        and _skips_moderation(email=comment.email)
    )


# Moderating -------------------------------------------------------------------


def comments_approve(*, comments: QuerySet[Comment]) -> list[int]:
    """Approve these comments; returns the ids of those it approved (the desk
    records them in its history), not those already approved."""
    with transaction.atomic():
        approved = _comments_not_yet(comments, Comment.Status.APPROVED)
        Comment.objects.filter(pk__in=approved).update(
            status=Comment.Status.APPROVED, marked_spam_at=None
        )
    comments_changed.send(sender=Comment)
    return approved


def comment_edit(*, comment: Comment) -> None:
    """Save a moderator's edit of a comment at the desk: its text, name, website or
    status may be what readers see (a phone number taken out, a comment hidden)."""
    if comment.status != Comment.Status.SPAM:
        comment.marked_spam_at = None
    elif comment.marked_spam_at is None:
        comment.marked_spam_at = timezone.now()
    comment.save()
    comments_changed.send(sender=Comment)


def comments_delete(*, comments: QuerySet[Comment]) -> int:
    """Delete these comments (the desk's delete, the purge, a person's erasure).

    Replies are hidden with a comment readers do not see (CommentQuerySet.shown);
    once it is deleted they would come back as top-level comments, with nobody's
    say: those of spam are marked as spam with it, and those of a comment waiting
    for a moderator (put back to wait) wait for one too, reported by the next
    digest. Other replies stay, as top-level comments.
    """
    with transaction.atomic():
        # Locked first: a reply being written to one of them (which holds it,
        # comment_post) is committed before they are read, and kept with the others.
        list(
            Comment.objects.select_for_update()
            .filter(pk__in=comments.values("pk"))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Comment.objects.filter(parent__in=comments.spam()).exclude(
            status=Comment.Status.SPAM
        ).update(status=Comment.Status.SPAM, marked_spam_at=timezone.now())
        Comment.objects.approved().filter(parent__in=comments.pending()).update(
            status=Comment.Status.PENDING, moderators_notified_at=None
        )
        deleted, _ = comments.delete()
    comments_changed.send(sender=Comment)
    return deleted


def comments_mark_spam(*, comments: QuerySet[Comment]) -> list[int]:
    """Mark these comments as spam; returns the ids of those it marked, not those
    already spam."""
    with transaction.atomic():
        marked = _comments_not_yet(comments, Comment.Status.SPAM)
        Comment.objects.filter(pk__in=marked).update(
            status=Comment.Status.SPAM, marked_spam_at=timezone.now()
        )
    comments_changed.send(sender=Comment)
    return marked


def _comments_not_yet(comments: QuerySet[Comment], status: str) -> list[int]:
    """The ids of these comments not in `status`, locked until the caller's
    transaction ends: its update then changes exactly those, and the desk's history
    names this moderator only for what they changed, not for what another
    moderator did meanwhile. In id order, so that two moderators lock alike."""
    return list(
        Comment.objects.select_for_update()
        .filter(pk__in=comments.values("pk"))
        # On the rows locked, not in the subquery: PostgreSQL checks it again on
        # a row another moderator changed while this waited for its lock.
        .exclude(status=status)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def comments_close(*, posts: QuerySet[Post]) -> None:
    """Close comments on these posts; comments already made stay visible."""
    with transaction.atomic():
        for post in posts:
            PostCommentSettings.objects.update_or_create(
                post=post, defaults={"comments_open": False}
            )
        comments_changed.send(sender=Comment)


def comments_claim_for_digest(*, now: datetime) -> int:
    """Mark the pending comments the moderators have not been told about yet as
    reported by the digest of `now`; returns how many.

    The conditional UPDATE makes two concurrent digests report each comment once.
    Call it inside the transaction that records whom the digest is owed to, so
    that the comments are marked only with someone to tell.
    """
    unreported = Comment.objects.awaiting_moderators()
    ids = list(unreported.values_list("pk", flat=True)[:DIGEST_MAX_COMMENTS])
    return unreported.filter(pk__in=ids).update(moderators_notified_at=now)


def comments_unclaim_for_digest(*, reported_at: datetime) -> int:
    """Give the comments still waiting that the digest of `reported_at` reports
    back to the next digest: it could reach none of its moderators."""
    return (
        Comment.objects.pending()
        .filter(moderators_notified_at=reported_at)
        .update(moderators_notified_at=None)
    )


def comments_of_digest(*, reported_at: datetime) -> list[Comment]:
    """The comments the digest of `reported_at` reports, those still waiting for
    approval: a copy sent late leaves out what a moderator has dealt with since."""
    return list(
        Comment.objects.pending()
        .filter(moderators_notified_at=reported_at)
        # A reply is told with whose comment it answers.
        .select_related("post", "parent")
        .order_by("post_id", "created_at")
    )


# Personal data ----------------------------------------------------------------


def commenter_data_token(*, comment: Comment) -> str:
    """The link to the data of the comments written under `comment`'s address,
    for whoever owns it. It names the newest of them, so erasing them ends it."""
    return signing.dumps(
        [comment.pk, _address_digest(comment.email, _DATA_LINK_SALT)],
        salt=_DATA_LINK_SALT,
    )


def commenter_of_data_link(*, token: str) -> str:
    """The address a commenter's data link was sent to.

    Raises DataLinkInvalid for a forged or expired link, or one whose comment is
    gone (erased, deleted at the desk) or was re-addressed at the desk since.
    """
    try:
        comment_id, digest = signing.loads(
            token, salt=_DATA_LINK_SALT, max_age=DATA_LINK_MAX_AGE_SECONDS
        )
    except signing.SignatureExpired as error:
        raise DataLinkInvalid(expired=True) from error
    except (signing.BadSignature, TypeError, ValueError) as error:
        raise DataLinkInvalid from error
    if not is_row_id(comment_id):
        raise DataLinkInvalid
    email = Comment.objects.filter(pk=comment_id).values_list("email", flat=True)
    email = email.first()
    if email is None or _address_digest(email, _DATA_LINK_SALT) != digest:
        raise DataLinkInvalid
    return email


def comments_purge_personal_data() -> int:
    """Forget IP addresses and browsers COMMENTS_KEEP_IP_DAYS after a comment was
    written, and delete spam that long after it was marked as spam (a comment
    marked by mistake can be put back meanwhile, however old it is).

    The email stays with a published comment: it is how the person's comments are
    found when they ask for their data or its deletion.
    """
    cutoff = timezone.now() - timedelta(days=settings.COMMENTS_KEEP_IP_DAYS)
    deleted = comments_delete(
        comments=Comment.objects.spam().filter(marked_spam_at__lt=cutoff)
    )
    old = Comment.objects.filter(created_at__lt=cutoff)
    cleared = old.exclude(ip_address__isnull=True, user_agent="").update(
        ip_address=None, user_agent=""
    )
    return deleted + cleared


def comments_delete_for_addresses(*, addresses: Iterable[AddressPeriod]) -> int:
    """Delete every comment written under the person's addresses while each was
    theirs (the person's data request).

    Other people's replies to them stay, as top-level comments (bar those hidden
    with them: comments_delete).
    """
    with transaction.atomic():
        # The desk's history named a comment by its writer in the entries
        # written before str() stopped naming them: it keeps what the desk did
        # to their comments, when and who did it, but no longer whose they were.
        comments_desk_history(addresses=addresses).update(
            object_repr=ERASED_COMMENTER, change_message=""
        )
        return comments_delete(comments=Comment.objects.written_under(addresses))


def comments_desk_history(*, addresses: Iterable[AddressPeriod]) -> QuerySet[LogEntry]:
    """The desk's history (Django admin's log) of the comments written under the
    person's addresses while each was theirs: what their data export lists, and
    their erasure rewrites."""
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Comment),
        object_id__in=[
            str(pk)
            for pk in Comment.objects.written_under(addresses).values_list(
                "pk", flat=True
            )
        ],
    )
