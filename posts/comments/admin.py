"""The moderation queue: pending comments first; bulk approve, spam, delete."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.contrib.admin.widgets import AdminTextareaWidget, AdminTextInputWidget
from django.contrib.auth import get_permission_codename
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars

from posts.desk import counted, record_in_the_history
from posts.models import Post
from posts.validators import addresses_as_stored, clean_email

from . import services
from .forms import CommentBodyField, CommentNameField, WebsiteField
from .models import Comment, PostCommentSettings


class StatusFilter(admin.SimpleListFilter):
    """Status filter whose default is the moderation queue (pending) instead of all,
    but for a search, which finds comments whatever their status."""

    title = "status"
    parameter_name = "status"

    def __init__(self, request, params, model, model_admin) -> None:
        # Searched from the queue as it opens, a commenter's address found only
        # their comments still waiting: a moderator erasing them on their request
        # left the published ones on the site.
        self.default = "all" if request.GET.get(SEARCH_VAR) else Comment.Status.PENDING
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return [*Comment.Status.choices, ("all", "All")]

    def value(self) -> str:
        return super().value() or self.default

    def queryset(self, request, queryset):
        if self.value() == "all":
            return queryset
        return queryset.filter(status=self.value())

    def choices(self, changelist):
        # Django's own "All" entry (no parameter) would now mean "pending".
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup}
                ),
                "display": title,
            }


def _replies_hidden_said(*, were_shown: list[int], them: str) -> str:
    """What taking these comments readers saw off the post page hid with them, for
    the moderator ("" if nothing): other readers' approved replies show only under
    a comment readers see (CommentQuerySet.shown), and went with it, unsaid."""
    hidden = Comment.objects.approved().filter(parent__in=were_shown).count()
    if hidden == 1:
        return (
            f"1 approved reply to {them} is hidden with {them}: readers no longer "
            "see it."
        )
    if hidden:
        return (
            f"{hidden} approved replies to {them} are hidden with {them}: readers no "
            "longer see them."
        )
    return ""


class CommentAdminForm(forms.ModelForm):
    # No Meta: the admin builds the form's fields from CommentAdmin.fields.

    # The reader's form's fields: an edit at the desk is published as the
    # reader's words are, so it is held to the same rules (line breaks as LF,
    # nothing blank, the link limit).
    name = CommentNameField(widget=AdminTextInputWidget)
    body = CommentBodyField(
        widget=AdminTextareaWidget, help_text=Comment._meta.get_field("body").help_text
    )

    # The status the page showed. Saved after another moderator marked the comment
    # as spam, or its writer confirmed it, the page's status undid that, silently:
    # spam back on the post page, or a confirmed comment taken off it.
    status_when_opened = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status_when_opened"].initial = self.instance.status

    def clean(self) -> dict:
        cleaned = super().clean()
        opened = cleaned.get("status_when_opened")
        # The instance is the comment as stored now: the form's edit is applied
        # to it only after clean().
        if opened and opened != self.instance.status:
            raise forms.ValidationError(
                "This comment's status changed since you opened it: it is now "
                f"“{self.instance.get_status_display()}”. Nothing was saved: open "
                "it again to see it as it is, then make your change."
            )
        return cleaned

    def clean_email(self) -> str:
        # In the stored form the reader's export and erasure look it up by.
        return clean_email(self.cleaned_data["email"])


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    form = CommentAdminForm
    list_display = ["excerpt", "name", "email", "post", "status", "created_at"]
    list_display_links = ["excerpt"]
    list_filter = [StatusFilter, "created_at"]
    list_select_related = ["post"]
    search_fields = ["name", "email", "body", "post__title"]
    date_hierarchy = "created_at"
    actions = ["approve", "mark_spam", "delete_selected", "close_comments_on_posts"]
    raw_id_fields = ["post", "parent"]
    # The website is checked and stored as the reader's form does it.
    formfield_overrides = {models.URLField: {"form_class": WebsiteField}}
    fields = [
        "post",
        "parent",
        "status",
        "name",
        "email",
        "website",
        "body",
        "status_when_opened",
        "created_at",
        "ip_address",
        "user_agent",
    ]
    readonly_fields = ["post", "parent", "created_at", "ip_address", "user_agent"]

    def get_fields(self, request, obj=None) -> list[str]:
        # A page that saves nothing carries no status to check: shown to one who
        # may only view, it would be a row of its own.
        fields = super().get_fields(request, obj)
        if self.has_change_permission(request, obj):
            return fields
        return [field for field in fields if field != "status_when_opened"]

    def get_search_results(self, request, queryset, search_term):
        return super().get_search_results(
            request, queryset, addresses_as_stored(search_term)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Comments come from readers through the post page.
        return False

    def view_on_site(self, comment: Comment) -> str | None:
        """Offered only for a comment readers can see there: a waiting one, or one
        under a post off the site, led to a page without it."""
        if (
            comment.post.is_published
            and Comment.objects.shown().filter(pk=comment.pk).exists()
        ):
            return comment.get_absolute_url()
        return None

    def save_model(self, request, obj, form, change) -> None:
        was_shown = Comment.objects.approved().filter(pk=obj.pk).exists()
        # Through the service, which retires the cached pages that show the comment.
        services.comment_edit(comment=obj)
        if was_shown and obj.status != Comment.Status.APPROVED:
            hidden = _replies_hidden_said(were_shown=[obj.pk], them="it")
            if hidden:
                self.message_user(request, hidden, level=messages.WARNING)
        # As the queue's "Approve" says it: the digest's link leads here, and
        # "changed successfully" alone left the moderator thinking it published.
        if (
            obj.status == Comment.Status.APPROVED
            and not Comment.objects.shown().filter(pk=obj.pk).exists()
        ):
            self.message_user(
                request,
                "It replies to a comment readers do not see (marked as spam or "
                "waiting), and stays hidden with it.",
                level=messages.WARNING,
            )

    def delete_model(self, request, obj) -> None:
        # Through the service, which keeps hidden the replies a spam comment hid.
        services.comments_delete(comments=Comment.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        services.comments_delete(comments=queryset)

    @admin.display(description="comment")
    def excerpt(self, comment: Comment) -> str:
        return truncatechars(comment.body, 80)

    @admin.action(description="Approve selected comments", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Comment]) -> None:
        # By id: the queue's queryset holds only pending comments, none once approved.
        selected = Comment.objects.filter(
            pk__in=list(queryset.values_list("pk", flat=True))
        )
        approved = services.comments_approve(comments=selected)
        record_in_the_history(
            request, Comment.objects.filter(pk__in=approved), "Approved."
        )
        # A reply shows only under a comment readers see (CommentQuerySet.shown):
        # "approved", and nothing more, left the moderator looking for it.
        hidden = selected.count() - selected.shown().count()
        approved_said = counted(len(approved), "comment", "comments")
        if hidden:
            replies = (
                "replies to a comment readers do not see (marked as spam or "
                "waiting), and stays hidden with it"
                if hidden == 1
                else "reply to comments readers do not see (marked as spam or "
                "waiting), and stay hidden with them"
            )
            self.message_user(
                request,
                f"Approved {approved_said}. {hidden} of them {replies}.",
                level=messages.WARNING,
            )
            return
        self.message_user(request, f"Approved {approved_said}.", level=messages.SUCCESS)

    @admin.action(description="Mark selected comments as spam", permissions=["change"])
    def mark_spam(self, request: HttpRequest, queryset: QuerySet[Comment]) -> None:
        were_shown = list(queryset.approved().values_list("pk", flat=True))
        marked = services.comments_mark_spam(comments=queryset)
        record_in_the_history(
            request, Comment.objects.filter(pk__in=marked), "Marked as spam."
        )
        said = f"Marked {counted(len(marked), 'comment', 'comments')} as spam."
        hidden = _replies_hidden_said(were_shown=were_shown, them="them")
        if hidden:
            self.message_user(request, f"{said} {hidden}", level=messages.WARNING)
            return
        self.message_user(request, said, level=messages.SUCCESS)

    @admin.action(
        description="Close comments on the posts of the selected comments",
        permissions=["close_comments"],
    )
    def close_comments_on_posts(
        self, request: HttpRequest, queryset: QuerySet[Comment]
    ) -> None:
        posts = Post.objects.filter(pk__in=queryset.values("post"))
        services.comments_close(posts=posts)
        record_in_the_history(
            request,
            PostCommentSettings.objects.filter(post__in=posts),
            "Closed comments.",
        )
        self.message_user(
            request,
            f"Closed comments on {counted(posts.count(), 'post', 'posts')}.",
            messages.SUCCESS,
        )

    def has_close_comments_permission(self, request: HttpRequest) -> bool:
        """Closing comments changes each post's comment settings."""
        opts = PostCommentSettings._meta
        codename = get_permission_codename("change", opts)
        return request.user.has_perm(f"{opts.app_label}.{codename}")


@admin.register(PostCommentSettings)
class PostCommentSettingsAdmin(admin.ModelAdmin):
    list_display = ["post", "comments_open", "open_to_readers_now"]
    list_editable = ["comments_open"]
    list_filter = ["comments_open"]
    list_select_related = ["post"]
    search_fields = ["post__title"]
    autocomplete_fields = ["post"]

    # The switch alone read as open for a post past its days, whose comments are
    # closed whatever it says (services.comments_are_open).
    @admin.display(description="open to readers now", boolean=True)
    def open_to_readers_now(self, comment_settings: PostCommentSettings) -> bool:
        return comment_settings.comments_open and services.comments_open_by_age(
            post=comment_settings.post
        )

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "comments_open":
            # The days in force (0: never), where the model's help names the setting.
            days = settings.COMMENTS_CLOSE_AFTER_DAYS
            field.help_text = "Untick to close comments on this post." + (
                f" Comments also close by themselves {days} days after "
                "publication, ticked or not."
                if days
                else ""
            )
        return field
