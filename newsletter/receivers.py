from posts.models import Post

from . import delivery


def email_new_post(sender, *, post: Post, **kwargs) -> None:
    if post.email_subscribers:
        delivery.mailing_create_for_post(post=post)
