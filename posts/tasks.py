from celery import shared_task

from . import images, links, services


@shared_task
def announce_due_posts() -> int:
    return services.posts_announce_due()


@shared_task
def make_renditions(name: str) -> int:
    return len(images.renditions_make(name=name))


@shared_task
def check_post_links(post_id: int) -> int:
    return links.post_links_check(post_id=post_id)
