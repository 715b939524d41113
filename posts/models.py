from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from .markdown import render_markdown


class PostQuerySet(models.QuerySet):
    def published(self) -> "PostQuerySet":
        """Posts a reader may see: published, and their publication time has come."""
        return self.filter(
            status=Post.Status.PUBLISHED, published_at__lte=timezone.now()
        )

    def due_for_announcement(self) -> "PostQuerySet":
        return self.published().filter(announced_at__isnull=True)


class Post(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        PUBLISHED = "published", "Published"

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    excerpt = models.TextField(
        blank=True, help_text="One or two sentences for listings and email previews."
    )
    body = models.TextField(help_text="Markdown.")
    # Rendered and sanitised once on save; pages and emails use this.
    body_html = models.TextField(editable=False, default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="posts",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Leave empty to publish now; a future time schedules the post.",
    )
    email_subscribers = models.BooleanField(
        "email to subscribers",
        default=True,
        help_text="Send this post to subscribers when it is published.",
    )
    # When readers were told of this post (post_published sent). Set exactly once.
    announced_at = models.DateTimeField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PostQuerySet.as_manager()

    class Meta:
        ordering = ["-published_at", "-id"]
        indexes = [models.Index(fields=["status", "published_at"])]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        self.body_html = render_markdown(self.body)
        if "update_fields" in kwargs and "body" in kwargs["update_fields"]:
            kwargs["update_fields"] = {*kwargs["update_fields"], "body_html"}
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("posts:detail", kwargs={"slug": self.slug})

    @property
    def is_published(self) -> bool:
        return (
            self.status == self.Status.PUBLISHED
            and self.published_at is not None
            and self.published_at <= timezone.now()
        )


from .comment_models import Comment, PostCommentSettings  # noqa: E402,F401
