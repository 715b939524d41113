from celery import shared_task
from django.utils import timezone

from . import links, services


@shared_task
def announce_due_posts() -> int:
    return services.posts_announce_due()


@shared_task
def make_renditions(name: str) -> int:
    return services.image_resize(name=name)


@shared_task
def check_post_links(post_id: int) -> int:
    return links.post_links_check(post_id=post_id)


@shared_task
def ring_lost_doorbells() -> dict[str, int]:
    """Renditions and link checks rung while the broker was down (or lost with its
    queue), rung again once it is back, as the newsletter's reaper does mailings."""
    now = timezone.now()
    names = services.images_to_resize_again(now=now)
    for name in names:
        make_renditions.delay(name)
    post_ids = services.posts_to_check_again(now=now)
    for post_id in post_ids:
        check_post_links.delay(post_id)
    return {"renditions_rung": len(names), "link_checks_rung": len(post_ids)}
