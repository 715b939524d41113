from dataclasses import dataclass

from django import template

from posts.models import Post

from .. import services
from ..forms import CommentForm
from ..models import Comment

register = template.Library()


@dataclass(frozen=True)
class PostComments:
    thread: list[Comment]
    count: int
    open: bool
    form: CommentForm


@register.simple_tag
def comments_for(post: Post) -> PostComments:
    """Everything the comments partial shows, so it needs only `post` in context."""
    thread = list(services.comment_thread(post=post))
    return PostComments(
        thread=thread,
        count=len(thread) + sum(len(comment.thread) for comment in thread),
        open=services.comments_are_open(post=post),
        form=CommentForm(),
    )


@register.simple_tag
def with_comment_counts(posts) -> list[Post]:
    """The listed posts, each with its `approved_comment_count`, in one query for
    the whole list (the publication's own queries know nothing of comments)."""
    posts = list(posts)
    counts = services.comment_counts(posts=posts)
    for post in posts:
        post.approved_comment_count = counts.get(post.pk, 0)
    return posts
