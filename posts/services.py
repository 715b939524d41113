"""Writes on posts: their way from draft to readers, and telling the rest of the
system about it."""

import logging
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from . import images
from .models import FormerSlug, ImageToResize, Post, PostEvent
from .signals import post_published, post_republished, post_unpublished

logger = logging.getLogger(__name__)


# What a step of a post's status alone writes: its time (set on publishing) and
# its stamp, which refuses a page of the post opened before (PostForm).
STATUS_FIELDS = ("status", "published_at", "updated_at")


@transaction.atomic
def post_save_from_desk(
    *,
    post: Post,
    previous_status: str | None,
    by: AbstractBaseUser | None,
    status_only: bool = False,
) -> None:
    """Save a post from the desk. A change of status is a step in its history;
    a post published now is announced, a post published for later is scheduled,
    a post taken down and published now is back (post_republished).
    `status_only`: a step of its status alone (publish, submit for review)
    writes STATUS_FIELDS alone: the whole post, as the step had read it, undid
    what another editor saved since."""
    # Locked, and read again: the same post saved in two tabs at once was
    # published twice in its history, and the second save, its announcement
    # unseen, took it back and announced the post again.
    stored = (
        Post.objects.select_for_update()
        .filter(pk=post.pk)
        .values("slug", "published_at", "announced_at", "status")
        .first()
    )
    if stored is not None:
        previous_status = stored["status"]
        post.announced_at = stored["announced_at"]  # beat's to set, never the desk's
    if _time_passed_it_never_went_out_at(post=post, stored=stored):
        post.published_at = None
    if post.status == Post.Status.PUBLISHED and post.published_at is None:
        # To the second, as the author sees and sets it (and as HTML's <time> takes).
        post.published_at = timezone.now().replace(microsecond=0)
    # Its address is out there once readers were told of it (emails) or could
    # read it there: pages, feeds and the sitemap carry it from its time on,
    # before beat announces it.
    was_live = Post.objects.published().filter(pk=post.pk).exists()
    was_announced = stored is not None and stored["announced_at"] is not None
    was_read = was_announced or was_live
    post.save(update_fields=STATUS_FIELDS if status_only else None)
    if was_read and not status_only and stored["slug"] != post.slug:
        FormerSlug.objects.update_or_create(
            slug=stored["slug"], defaults={"post": post}
        )
    # A scheduled post given another time: its history says when it goes now,
    # or that it went live, when given a time already come (its history said
    # only that it was scheduled, for a time it never waited for).
    now = timezone.now()
    rescheduled = (
        stored is not None
        and post.status == previous_status == Post.Status.PUBLISHED
        and post.published_at != stored["published_at"]
        and (
            post.published_at > now
            or (stored["published_at"] is not None and stored["published_at"] > now)
        )
    )
    if post.status != previous_status or rescheduled:
        _record_steps(
            post=post, previous_status=previous_status, was_live=was_live, by=by
        )
    if previous_status == Post.Status.PUBLISHED != post.status:
        post_unpublished.send(sender=Post, post=post)
    if was_announced and not was_live and post.is_published:
        post_republished.send(sender=Post, post=post)
    if post.status == Post.Status.PUBLISHED:
        posts_announce_due(post_id=post.pk)


def _time_passed_it_never_went_out_at(*, post: Post, stored: dict | None) -> bool:
    """A post being published whose time, kept from before (a schedule taken
    back to draft), has passed and it never went out then: that time is no date
    of its, or it went live below the posts of the days between, where feed
    readers never look again. A time passed that the author sets as they publish
    (backdating an old report's post) is its date; one kept from before cannot
    be told from a schedule taken back, and is not."""
    return (
        stored is not None
        and post.status == Post.Status.PUBLISHED != stored["status"]
        and stored["announced_at"] is None
        and post.published_at is not None
        and post.published_at == stored["published_at"]
        and post.published_at <= timezone.now()
    )


def post_publish(*, post: Post, by: AbstractBaseUser | None = None) -> None:
    """Publish a post now, or at its scheduled time if that is in the future (a
    time passed is no date of its: _time_passed_it_never_went_out_at)."""
    previous_status, post.status = post.status, Post.Status.PUBLISHED
    post_save_from_desk(
        post=post, previous_status=previous_status, by=by, status_only=True
    )


def post_submit_for_review(*, post: Post, by: AbstractBaseUser) -> None:
    previous_status, post.status = post.status, Post.Status.REVIEW
    post_save_from_desk(
        post=post, previous_status=previous_status, by=by, status_only=True
    )


def _record_steps(
    *,
    post: Post,
    previous_status: str | None,
    was_live: bool,
    by: AbstractBaseUser | None,
) -> None:
    Kind = PostEvent.Kind
    steps: list[tuple[str, datetime | None]] = []
    if previous_status == Post.Status.PUBLISHED != post.status:
        # Taken back, to draft or to review: a scheduled post taken back was never
        # on the site to be taken off it.
        steps.append((Kind.UNPUBLISHED if was_live else Kind.UNSCHEDULED, None))
    if post.status == Post.Status.REVIEW:
        steps.append((Kind.SUBMITTED, None))
    elif post.status == Post.Status.DRAFT and previous_status == Post.Status.REVIEW:
        steps.append((Kind.RETURNED, None))
    elif post.status == Post.Status.PUBLISHED:
        if previous_status == Post.Status.REVIEW:
            steps.append((Kind.APPROVED, None))
        if post.published_at > timezone.now():
            steps.append((Kind.SCHEDULED, post.published_at))
        else:
            steps.append((Kind.PUBLISHED, None))
    PostEvent.objects.bulk_create(
        PostEvent(post=post, kind=kind, by=by, for_time=for_time)
        for kind, for_time in steps
    )


def posts_announce_due(*, post_id: int | None = None) -> int:
    """Send post_published once for every post whose publication time has come,
    and post_republished for every post back at its time after it was taken down;
    `post_id`: for that post only.

    Called by the desk for the post it saves, and periodically by beat for all
    (scheduled posts). The conditional UPDATE makes the announcement happen once
    even when two processes race, and the signal's receivers write in the same
    transaction. Returns how many were announced.
    """
    due = Post.objects.due_for_announcement()
    back = Post.objects.back_at_scheduled_time()
    if post_id is not None:
        # The desk's save holds its own post until it commits: announcing the
        # others there waited for another editor's save of one, which waited for
        # this one (a deadlock). They are beat's, a few seconds later.
        due, back = due.filter(pk=post_id), back.filter(pk=post_id)
    announced = 0
    for post in due.order_by("published_at", "id"):
        with transaction.atomic():
            # Still published: the list was read before the author may have taken
            # the post down, and its readers would be emailed a page not there.
            claimed = (
                Post.objects.published()
                .filter(pk=post.pk, announced_at__isnull=True)
                .update(announced_at=timezone.now())
            )
            if claimed:
                _record_going_live_on_time(post)
                post_published.send(sender=Post, post=post)
                announced += 1
    for post in back.order_by("published_at", "id"):
        with transaction.atomic():
            # The lock makes the step once when two processes race (its history
            # is what says it is still to be taken), and sees it still live.
            live = Post.objects.published().select_for_update().filter(pk=post.pk)
            live = live.first()
            if live is not None and _record_going_live_on_time(live):
                post_republished.send(sender=Post, post=live)
    return announced


def _record_going_live_on_time(post: Post) -> bool:
    """A scheduled post went live at its time, by the site: its history said only
    that it was scheduled. (One published there and then has its step already.)
    Whether that step was to be taken."""
    last = post.events.order_by("at", "id").last()
    if last is None or last.kind != PostEvent.Kind.SCHEDULED:
        return False
    PostEvent.objects.create(
        post=post, kind=PostEvent.Kind.PUBLISHED, by=None, at=post.published_at
    )
    return True


# A ring this old whose work is still undone was lost by the broker (down when it
# was rung, or restarted since), and beat rings it again: longer than a busy queue
# keeps a task waiting, and a second ring only makes the same files, or checks again.
RING_LOST_AFTER = timedelta(minutes=10)
# Rung again per run of beat, at most: a rendition decodes a whole image in a
# worker (up to 160 MB), a link check fetches up to 50 addresses (posts.links).
RENDITIONS_RUNG_PER_RUN = 20
LINK_CHECKS_RUNG_PER_RUN = 20
# An image's renditions still not made after beat rang for them this many times
# (ten minutes or more apart: two hours at least) are given up. Beat runs only
# while the broker is up, so its outage costs no ring; two hours outlast storage
# coming back, and a worker that fails longer (killed decoding the image, out of
# memory) will not do better.
RENDITIONS_RUNG_AGAIN_AT_MOST = 12  # rings
# The same for a post's link check, which fails again only if the checker itself
# does (a worker killed, the database away): the author's next save rings it anew.
LINK_CHECKS_RUNG_AGAIN_AT_MOST = 12  # rings


def image_resize_rung(*, name: str) -> None:
    """The stored image `name`'s renditions are rung for: kept until beat finds
    them made, and rung again by beat if the ring is lost."""
    ImageToResize.objects.update_or_create(
        name=name, defaults={"rung_at": timezone.now(), "rung_again": 0}
    )


def images_delete_unshown(*, names: list[str]) -> None:
    """Delete the stored images `names`, taken off their post (a body image
    deleted, a featured image replaced or taken off, the post deleted), with their
    renditions: left, a photo uploaded by mistake stayed on the site at its
    address. One that a post's body still shows (its Markdown pasted into another
    post) is kept."""
    for name in names:
        shown = Q()
        for named in images.named_as(name):
            shown |= Q(body__contains=named)
        if not Post.objects.filter(shown).exists():
            images.image_files_delete(name=name)


def image_resize(*, name: str) -> int:
    """Make the stored image `name`'s renditions; return how many. An image that
    cannot be resized is given up at once (forgotten, logged), as ringing again
    fails the same way; a failure of storage may pass, and is raised for beat to
    ring again."""
    try:
        return len(images.renditions_make(name=name))
    except images.NotResizable as error:
        logger.error(
            "Renditions of %s given up: the image cannot be resized (%s). "
            "Pages show it as uploaded.",
            name,
            error,
        )
        ImageToResize.objects.filter(name=name).delete()
        return 0


def post_touch(*, post_id: int) -> None:
    """What the post's page shows changed on a page of its own (an inspection's):
    the post's stamp moves, so that a page of the post opened before, which holds
    it as it was, is refused (PostForm._refuse_if_saved_since_opened)."""
    Post.objects.filter(pk=post_id).update(updated_at=timezone.now())


def post_links_check_rung(*, post_id: int) -> None:
    """The post's link check is rung for: kept until it has run
    (posts.links.post_links_check), for beat to ring again if the ring is lost."""
    # update(): the post's stamp (updated_at) stays the author's.
    Post.objects.filter(pk=post_id).update(
        links_check_rung_at=timezone.now(), links_check_rung_again=0
    )


def images_to_resize_again(*, now: datetime) -> list[str]:
    """The images whose renditions were rung for and lost (or failed), marked rung
    `now`: those rung again least first, then the longest waiting, so that images
    that keep failing wait behind the rest. Those made since (or gone) are
    forgotten, and so are those rung again too often, logged. The worker forgets
    only an image it cannot resize: made, it leaves the row to this, as the
    deploy's migration 0011 rings it before this table exists."""
    lost = ImageToResize.objects.filter(rung_at__lt=now - RING_LOST_AFTER)
    rows = lost.order_by("rung_again", "rung_at", "pk").values_list(
        "name", "rung_again"
    )[:RENDITIONS_RUNG_PER_RUN]
    names, done = [], []
    for name, rung_again in rows:
        if images.renditions_made(name):
            done.append(name)
        elif rung_again >= RENDITIONS_RUNG_AGAIN_AT_MOST:
            logger.error(
                "Renditions of %s given up: still not made after %d rings again. "
                "Pages show it as uploaded.",
                name,
                rung_again,
            )
            done.append(name)
        else:
            names.append(name)
    ImageToResize.objects.filter(name__in=done).delete()
    ImageToResize.objects.filter(name__in=names).update(
        rung_at=now, rung_again=F("rung_again") + 1
    )
    return names


def posts_to_check_again(*, now: datetime) -> list[int]:
    """The posts whose link check was rung for and lost (or failed), marked rung
    `now`: those rung again least first, then the longest waiting, so that checks
    that keep failing wait behind the rest. Those rung again too often are given
    up, logged. The caller rings the rest, and the next run waits for this ring as
    for the first."""
    lost = Post.objects.filter(links_check_rung_at__lt=now - RING_LOST_AFTER)
    rows = lost.order_by(
        "links_check_rung_again", "links_check_rung_at", "pk"
    ).values_list("pk", "links_check_rung_again")[:LINK_CHECKS_RUNG_PER_RUN]
    post_ids, given_up = [], []
    for post_id, rung_again in rows:
        if rung_again >= LINK_CHECKS_RUNG_AGAIN_AT_MOST:
            logger.error(
                "Link check of post %d given up: still not run after %d rings "
                "again. Saving the post rings it again.",
                post_id,
                rung_again,
            )
            given_up.append(post_id)
        else:
            post_ids.append(post_id)
    # Still lost: a post the author saves meanwhile is rung afresh, not given up.
    lost.filter(pk__in=given_up).update(links_check_rung_at=None)
    lost.filter(pk__in=post_ids).update(
        links_check_rung_at=now, links_check_rung_again=F("links_check_rung_again") + 1
    )
    return post_ids
