from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    name = "newsletter"
    verbose_name = "Newsletter"

    def ready(self) -> None:
        from anymail.signals import tracking
        from django.contrib.auth import get_user_model
        from django.db.models.signals import (
            m2m_changed,
            post_delete,
            post_migrate,
            post_save,
            pre_delete,
        )

        from posts.comments.models import Comment, PostCommentSettings
        from posts.comments.signals import comment_held, comments_changed
        from posts.models import (
            Area,
            Category,
            Inspection,
            Organisation,
            Post,
            PostUpdate,
            Region,
            RelatedLink,
            Sponsorship,
            StandardRating,
            Tag,
        )
        from posts.signals import (
            demo_seeded,
            post_published,
            post_republished,
            post_unpublished,
            shown_with_posts_changed,
        )

        # The tasks modules only register their tasks with Celery (enqueue.py
        # looks them up by name), and checks its system checks.
        from . import (  # noqa: F401
            checks,
            comment_tasks,
            demo,
            demo_mailings,
            digest_tasks,
            pagecache,
            receivers,
            tasks,
            webhooks,
        )

        post_published.connect(receivers.email_post, dispatch_uid="email_new_post")
        post_republished.connect(receivers.email_post, dispatch_uid="email_post_back")
        post_migrate.connect(
            receivers.administrator_permissions_grant, dispatch_uid="administrator"
        )
        pre_delete.connect(
            receivers.refuse_deleting_account_with_desk_history,
            sender=get_user_model(),
            dispatch_uid="keep_desk_history",
        )
        post_unpublished.connect(
            receivers.hold_emails_of_unpublished_post, dispatch_uid="hold_emails"
        )
        demo_seeded.connect(demo.readers_history_seed, dispatch_uid="demo_readers")
        # The demo posts' emails, to demo readers of their own, for the reports.
        demo_seeded.connect(
            demo_mailings.mailings_history_seed, dispatch_uid="demo_mailings"
        )
        comment_held.connect(
            receivers.email_comment_confirmation,
            sender=Comment,
            dispatch_uid="email_comment_confirmation",
        )
        tracking.connect(webhooks.record_tracking_event, dispatch_uid="tracking_event")
        # Any change to a post, or a scheduled post going live (for the first time
        # or again, after it was taken down), retires cached pages.
        for signal in (post_save, post_delete, post_published, post_republished):
            signal.connect(pagecache.invalidate, sender=Post, dispatch_uid="pagecache")
        # So does a change to what the pages show of a post saved on its own, at
        # the desk's other pages (an inspection's, a category's) or by the related
        # posts' one-click "Add": the post is not saved, and every page showing it
        # (its own, listings, other posts' related boxes) was kept until it expired.
        shown_with_posts = (
            Inspection,
            StandardRating,
            RelatedLink,
            PostUpdate,
            Sponsorship,
            Category,
            Tag,
            Area,
            Region,
            Organisation,
        )
        for model in shown_with_posts:
            for signal in (post_save, post_delete):
                signal.connect(
                    pagecache.invalidate, sender=model, dispatch_uid="pagecache"
                )
        # Those of them changed in bulk send no post_save.
        shown_with_posts_changed.connect(pagecache.invalidate, dispatch_uid="pagecache")
        for through in (
            Post.categories.through,
            Post.tags.through,
            Inspection.organisations.through,
            Organisation.owners.through,
        ):
            m2m_changed.connect(
                pagecache.invalidate, sender=through, dispatch_uid="pagecache"
            )
        # So does any change to the comments readers see (moderation is done by
        # queryset updates, which send no post_save; the admin's bulk delete does
        # send post_delete).
        for signal in (comments_changed, post_delete):
            signal.connect(
                pagecache.invalidate, sender=Comment, dispatch_uid="pagecache_comments"
            )
        # And the author's per-post switch, saved or deleted at the desk: whether the
        # post page offers the form.
        for signal in (post_save, post_delete):
            signal.connect(
                pagecache.invalidate,
                sender=PostCommentSettings,
                dispatch_uid="pagecache_comment_settings",
            )
