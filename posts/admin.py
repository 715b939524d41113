from django.contrib import admin, messages
from django.http import HttpRequest

from . import services
from .models import Post


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "published_at", "email_subscribers", "author"]
    list_filter = ["status", "email_subscribers"]
    search_fields = ["title", "excerpt", "body"]
    prepopulated_fields = {"slug": ["title"]}
    date_hierarchy = "published_at"
    actions = ["publish"]
    fieldsets = [
        (None, {"fields": ["title", "slug", "excerpt", "body"]}),
        ("Publication", {"fields": ["status", "published_at", "email_subscribers"]}),
    ]

    def save_model(self, request: HttpRequest, obj: Post, form, change: bool) -> None:
        if obj.author_id is None:
            obj.author = request.user
        if obj.status == Post.Status.PUBLISHED:
            services.post_publish(post=obj)
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Publish selected posts", permissions=["change"])
    def publish(self, request: HttpRequest, queryset) -> None:
        drafts = queryset.filter(status=Post.Status.DRAFT)
        for post in drafts:
            services.post_publish(post=post)
        self.message_user(
            request, f"Published {len(drafts)} post(s).", level=messages.SUCCESS
        )


from . import comment_admin  # noqa: E402,F401
