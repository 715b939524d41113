from django.apps import AppConfig


class CommentsConfig(AppConfig):
    name = "posts.comments"
    label = "comments"
    verbose_name = "Comments"
