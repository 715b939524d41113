from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    name = "newsletter"
    verbose_name = "Newsletter"

    def ready(self) -> None:
        from anymail.signals import tracking

        from posts.signals import post_published

        from . import receivers, webhooks

        post_published.connect(receivers.email_new_post, dispatch_uid="email_new_post")
        tracking.connect(webhooks.record_tracking_event, dispatch_uid="tracking_event")
