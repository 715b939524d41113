from django.utils import timezone

from .models import Inspection, Post


def post_touch(sender, *, instance: Inspection, **kwargs) -> None:
    """An inspection saved or deleted on its own page (which saves it whatever
    changed there, its ratings too) changes the post: a page of the post opened
    before holds it, as it was, in the post's form, and saving that page put it
    back. The post's stamp moves, so that save is refused
    (PostForm._refuse_if_saved_since_opened)."""
    Post.objects.filter(pk=instance.post_id).update(updated_at=timezone.now())
