from collections import Counter
from collections.abc import Iterable

from django.apps import apps as global_apps
from django.contrib.admin.models import LogEntry
from django.db.models import Count, ProtectedError

from posts.comments.models import Comment
from posts.models import Post, PostEvent

from . import comment_tasks, delivery, digests
from .enqueue import ring_once_committed
from .models import Link


def email_post(sender, *, post: Post, **kwargs) -> None:
    # Announced, or live again after it was taken down: a post has one email
    # (mailing_create_for_post makes it once), so one ticked while off the site
    # goes to the readers it was held from now, and one already sent is not resent.
    if post.email_subscribers:
        delivery.mailing_create_for_post(post=post)


def hold_emails_of_unpublished_post(sender, *, post: Post, **kwargs) -> None:
    # Its own emails paused, not cancelled: once the post is back, the author
    # resumes and the readers not yet sent it get it; meanwhile its link would
    # lead nowhere. The digests not yet sent go without it.
    for mailing_id in post.mailings.values_list("pk", flat=True):
        delivery.mailing_pause(
            mailing_id=mailing_id,
            reason="The post was unpublished: resume once it is published again.",
        )
    digests.post_withdraw_from_digests(post=post)


def email_comment_confirmation(sender, *, comment: Comment, **kwargs) -> None:
    # Every held comment rings, known address or not, so the request takes as long
    # either way; the task decides whether its commenter is asked to confirm.
    comment_id = comment.pk
    # The task queue down, the comment is held all the same and waits for the
    # moderators, as it does when its confirmation is never sent.
    ring_once_committed(
        lambda: comment_tasks.email_comment_confirmation.delay(comment_id)
    )


def administrator_permissions_grant(
    sender, *, using, apps=global_apps, **kwargs
) -> None:
    """The Administrator holds every permission: those of models a release adds
    after the roles migration made the group (newsletter/migrations/0002_roles.py)
    too, created by Django after every migrate (post_migrate, app by app: the
    last app's call sees them all). A flush sends it with no `apps`."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    administrator = Group.objects.using(using).filter(name="Administrator").first()
    if administrator is not None:  # not before the roles migration, nor on a flush
        administrator.permissions.set(Permission.objects.using(using).all())


def desk_history_of(users: Iterable) -> Counter:
    """How many records name each of these users as who did something at the
    desk, by user id. Deleting the account deletes the admin's log of what they
    published, changed or deleted, paused or cancelled (LogEntry.user cascades),
    and blanks who published a post or fixed a link in a sent email."""
    ids = [user.pk for user in users]
    history = Counter()
    for records, who in (
        (LogEntry.objects, "user"),
        (PostEvent.objects, "by"),
        (Link.objects, "fixed_by"),
    ):
        history.update(
            dict(
                records.filter(**{f"{who}__in": ids})
                .values(who)
                .annotate(records=Count("pk"))
                .values_list(who, "records")
            )
        )
    return history


def refuse_deleting_account_with_desk_history(sender, *, instance, **kwargs) -> None:
    """The desk's delete page refuses first, and says why (admin/users.py); this
    keeps the record from a script or `manage.py shell` too. Raised here, inside
    the deletion's transaction, nothing is deleted."""
    if records := desk_history_of([instance])[instance.pk]:
        raise ProtectedError(
            f"{records} {'entry' if records == 1 else 'entries'} of what "
            f"{instance.get_username()} did at the desk: keep the account, "
            "deactivate it instead (is_active = False).",
            {instance},
        )
