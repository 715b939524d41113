from celery import shared_task

from . import links, services


@shared_task
def announce_due_posts() -> int:
    return services.announce_due_posts()


@shared_task
def check_post_links(post_id: int) -> int:
    return links.post_links_check(post_id=post_id)
