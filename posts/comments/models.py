"""Readers' comments under posts, and the author's per-post switch to close them."""

from collections.abc import Iterable

from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone
from django.utils.html import Urlizer, linebreaks
from django.utils.safestring import SafeString, mark_safe

from posts.models import Post
from posts.validators import (
    AddressPeriod,
    normalise_email,
    reject_control_characters,
    reject_control_characters_in_text,
    written_under,
)

NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254
WEBSITE_MAX_LENGTH = 200
BODY_MAX_LENGTH = 5000
USER_AGENT_MAX_LENGTH = 255


class _CommentUrlizer(Urlizer):
    # Links written by readers: search engines must not read them as the site's
    # endorsement (Google's rel="ugc"), nor pass ranking through them ("nofollow").
    url_template = '<a href="{href}" rel="nofollow ugc">{url}</a>'

    @staticmethod
    def is_email_simple(value: str) -> bool:
        # An address a reader types stays text: a mailto: link is what address
        # harvesters collect, and it is no link a reader cannot copy. Nor does it
        # count against COMMENTS_MAX_LINKS (count_links), being no link.
        return False


_urlize = _CommentUrlizer()


def comment_body_html(body: str) -> SafeString:
    """The reader's plain text as HTML: everything escaped, web links made
    clickable (email addresses stay text)."""
    return mark_safe(  # noqa: S308 - every piece of the reader's text is escaped
        linebreaks(_urlize(body, trim_url_limit=60, autoescape=True))
    )


def count_links(body: str) -> int:
    """How many links the reader's text would show: the same rule as the display."""
    return _urlize(body, autoescape=True).count("<a href=")


class CommentQuerySet(models.QuerySet):
    def approved(self) -> "CommentQuerySet":
        return self.filter(status=Comment.Status.APPROVED)

    def shown(self) -> "CommentQuerySet":
        """What readers see: approved, and top-level or in an approved comment's
        thread (marking a comment as spam hides its replies with it)."""
        return self.approved().filter(
            models.Q(parent__isnull=True)
            | models.Q(parent__status=Comment.Status.APPROVED)
        )

    def pending(self) -> "CommentQuerySet":
        return self.filter(status=Comment.Status.PENDING)

    def awaiting_moderators(self) -> "CommentQuerySet":
        """Held for moderation, and not yet in a moderators' digest."""
        return self.pending().filter(moderators_notified_at__isnull=True)

    def spam(self) -> "CommentQuerySet":
        return self.filter(status=Comment.Status.SPAM)

    def top_level(self) -> "CommentQuerySet":
        return self.filter(parent__isnull=True)

    def for_email(self, email: str) -> "CommentQuerySet":
        return self.filter(email=normalise_email(email))

    def written_under(self, periods: Iterable[AddressPeriod]) -> "CommentQuerySet":
        """Comments written with any of these addresses while it was the person's."""
        return self.filter(
            written_under(periods, address_field="email", time_field="created_at")
        )


class Comment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        SPAM = "spam", "Spam"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    # One level of replies: a reply always points at a top-level comment. When a
    # comment goes, its replies stay, as top-level comments (as WordPress does).
    parent = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replies",
        limit_choices_to={"parent__isnull": True},
    )
    # The reader's form and the desk's check these with the same fields
    # (CommentNameField, CommentBodyField); the validators are the control-character
    # rule for any other form of the model.
    name = models.CharField(
        max_length=NAME_MAX_LENGTH, validators=[reject_control_characters]
    )
    # Never shown to readers; used to recognise a known commenter and to find a
    # person's comments when they ask for their data or its deletion.
    email = models.EmailField(max_length=EMAIL_MAX_LENGTH, db_index=True)
    website = models.URLField(
        max_length=WEBSITE_MAX_LENGTH,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
    )
    body = models.TextField(
        "comment",
        help_text="Plain text; links become clickable.",
        validators=[reject_control_characters_in_text],
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Kept to trace abuse, then cleared after COMMENTS_KEEP_IP_DAYS.
    ip_address = models.GenericIPAddressField(null=True, blank=True, editable=False)
    user_agent = models.CharField(
        max_length=USER_AGENT_MAX_LENGTH, blank=True, editable=False
    )
    # When the moderators' digest reported this comment: each is reported once.
    moderators_notified_at = models.DateTimeField(null=True, editable=False)
    # When the commenter was emailed the link that proves the address: once per
    # comment, and at most once an hour per address.
    confirmation_sent_at = models.DateTimeField(null=True, editable=False)
    # When the commenter used that link: it proves the address once, so that
    # whoever else opens it (forwarded, a shared mailbox) is given nothing.
    confirmation_used_at = models.DateTimeField(null=True, editable=False)
    # When a moderator marked it as spam (None unless it is spam): the purge
    # deletes spam a while after this, so a mistake can still be undone.
    marked_spam_at = models.DateTimeField(null=True, editable=False)

    objects = CommentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["post", "status", "created_at"])]

    def __str__(self) -> str:
        # Not by its writer: the desk's history (the admin's log) keeps this
        # after the comment is gone, where the writer's erasure cannot find it.
        return f"Comment #{self.pk} on {self.post}"

    def get_absolute_url(self) -> str:
        return f"{self.post.get_absolute_url()}#comment-{self.pk}"

    @property
    def body_html(self) -> SafeString:
        return comment_body_html(self.body)


class PostCommentSettings(models.Model):
    """The author's per-post comment switch; a post without a row is open.

    A separate table rather than a column on Post keeps comments out of the
    post's own model and admin form, which belong to the publication.
    """

    post = models.OneToOneField(
        Post,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="comment_settings",
    )
    comments_open = models.BooleanField(
        default=True,
        help_text="Untick to close comments on this post. Comments also close "
        "by themselves COMMENTS_CLOSE_AFTER_DAYS after publication.",
    )

    class Meta:
        verbose_name = "comment settings"
        verbose_name_plural = "comment settings"

    def __str__(self) -> str:
        return f"Comments on {self.post}"
