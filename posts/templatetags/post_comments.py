from dataclasses import dataclass

from django import template

from .. import comments
from ..comment_models import Comment
from ..forms import CommentForm
from ..models import Post

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
    thread = list(comments.comment_thread(post=post))
    return PostComments(
        thread=thread,
        count=len(thread) + sum(len(comment.thread) for comment in thread),
        open=comments.comments_are_open(post=post),
        form=CommentForm(),
    )
