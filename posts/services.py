"""Writes on posts: publishing and telling the rest of the system about it."""

from django.db import transaction
from django.utils import timezone

from .models import Post
from .signals import post_published


def post_publish(*, post: Post) -> None:
    """Publish a post now, or at its scheduled time if that is in the future."""
    post.status = Post.Status.PUBLISHED
    if post.published_at is None:
        post.published_at = timezone.now()
    post.save()
    posts_announce_due()


def posts_announce_due() -> int:
    """Send post_published once for every post whose publication time has come.

    Called after each publish and periodically by beat for scheduled posts. The
    conditional UPDATE makes the announcement happen once even when two processes
    race, and the signal's receivers write in the same transaction.
    """
    announced = 0
    for post in Post.objects.due_for_announcement().order_by("published_at", "id"):
        with transaction.atomic():
            claimed = Post.objects.filter(pk=post.pk, announced_at__isnull=True).update(
                announced_at=timezone.now()
            )
            if claimed:
                post_published.send(sender=Post, post=post)
                announced += 1
    return announced
