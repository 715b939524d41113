from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    name = "newsletter"
    verbose_name = "Newsletter"

    def ready(self) -> None:
        from posts.signals import post_published

        from . import comment_tasks, receivers  # noqa: F401 - registers the tasks

        post_published.connect(receivers.email_new_post, dispatch_uid="email_new_post")
