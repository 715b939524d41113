from django.apps import AppConfig


class PostsConfig(AppConfig):
    name = "posts"
    verbose_name = "Publication"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from . import receivers
        from .models import Inspection

        # The one row the post's page shows that has a page of its own.
        for signal in (post_save, post_delete):
            signal.connect(
                receivers.post_touch, sender=Inspection, dispatch_uid="post_touch"
            )
