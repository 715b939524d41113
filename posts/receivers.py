from . import services
from .models import Inspection


def post_touch(sender, *, instance: Inspection, **kwargs) -> None:
    """An inspection saved or deleted on its own page (which saves it whatever
    changed there, its ratings too) changes the post: a page of the post opened
    before holds it, as it was, in the post's form, and saving that page put it
    back (services.post_touch)."""
    services.post_touch(post_id=instance.post_id)
