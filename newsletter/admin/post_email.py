from datetime import datetime

from csp.decorators import csp_update
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from posts import admin as posts_admin
from posts.checks import Level, Problem, images_without_alt
from posts.desk import counted
from posts.models import Post, PostUpdate

from .. import corrections, delivery, digests, tasks
from ..delivery.control import RUNNING
from ..emails import EMAIL_HTML_MAX_BYTES, CorrectionEmail, PostEmail
from ..enqueue import QUEUE_UNREACHABLE, QueueUnreachable, ring
from ..models import Mailing
from .mailings import tell_if_sent_once_the_queue_is_back

# Longer subjects are cut short in most inbox lists (and RFC 5322 asks for lines
# of at most 78 characters).
SUBJECT_MAX_CHARACTERS = 78

# posts/ knows nothing of email, so the author's email tools join its post admin
# here: a preview of the post as its email, a test send, a warning when the
# email would be too long for an inbox, and a correction's email to the readers
# who received the post.
admin.site.unregister(Post)

# The previews show an email's HTML in sandboxed srcdoc frames (no script runs
# there), which inherit the page's policy: emails need inline styles, as in the
# dev outbox (views.outbox_message).
email_frames = csp_update({"style-src": ["'unsafe-inline'"]})


class PostUpdateForm(forms.ModelForm):
    """An update's row on the post's page, read-only once its email is confirmed:
    the post's page must say what its readers were sent. Deleting it is refused
    too (Mailing.post_update protects it)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.mailings.exists():
            # A disabled field keeps its saved value, whatever a request says.
            for field in self.fields.values():
                field.disabled = True


class PostUpdateInline(posts_admin.PostUpdateInline):
    form = PostUpdateForm
    readonly_fields = ["email"]

    def get_queryset(self, request: HttpRequest):
        # Each row asks whether it was emailed (its form and its email column).
        return super().get_queryset(request).prefetch_related("mailings")

    @admin.display(description="email")
    def email(self, update: PostUpdate) -> str:
        if not update.pk:
            return "Save, then email it to the readers who received this post."
        mailing = update.mailings.first()
        if mailing is not None:
            if mailing.status == Mailing.Status.CANCELLED:
                url = reverse(
                    "admin:posts_post_correction", args=[update.post_id, update.pk]
                )
                status = "Cancelled: email it to the readers it has not reached…"
            else:
                url = reverse("admin:newsletter_mailing_change", args=[mailing.pk])
                status = mailing.get_status_display()
            return format_html(
                '<a href="{}">Emailed: {}</a><br>Readers have it as it was sent, '
                "so it stays as it is: to correct it further, add a new one.",
                url,
                status,
            )
        # Not on the site: a draft, or scheduled (whose time is still to come,
        # so nobody was sent it: offering to email them ended in an error).
        if not update.post.is_published:
            # One taken off the site after it went out was received: its readers
            # can be told once it is back (its link would lead nowhere until then).
            if _received(update.post):
                return "Not published: publish it again to email its readers."
            return "Not published: nobody has received this post."
        if not _received(update.post):
            return "Nobody has received this post yet: there is nobody to email."
        url = reverse("admin:posts_post_correction", args=[update.post_id, update.pk])
        return format_html(
            '<a href="{}">Email it to the readers who received this post…</a>', url
        )


def _received(post: Post) -> bool:
    """corrections.sent_to_anyone, asked once for the post's page, not once a row
    (each update's row holds the page's post: posts.admin.InlineFormSet)."""
    if not hasattr(post, "_received_by_anyone"):
        post._received_by_anyone = corrections.sent_to_anyone(post)
    return post._received_by_anyone


@admin.register(Post)
class PostAdmin(posts_admin.PostAdmin):
    inlines = [
        PostUpdateInline if inline is posts_admin.PostUpdateInline else inline
        for inline in posts_admin.PostAdmin.inlines
    ]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), self._email(request, obj)]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        email = self._email(request, obj)
        return [*fieldsets, ("Email preview", {"fields": [email]})]

    def _email(self, request: HttpRequest, post: Post | None) -> str:
        # A test is for those who may change the post (email_test_view): others
        # (a contributor, once their post is published) are offered the preview.
        if self.has_change_permission(request, post):
            return "email_preview"
        return "email_preview_only"

    @admin.display(description="The email")
    def email_preview(self, post: Post) -> str:
        return self._email_link(post, "Preview the email and send a test to yourself")

    @admin.display(description="The email")
    def email_preview_only(self, post: Post) -> str:
        return self._email_link(post, "Preview the email")

    def _email_link(self, post: Post, words: str) -> str:
        url = reverse("admin:posts_post_email_preview", args=[post.pk])
        return format_html(
            '<a href="{}">{}</a><br>{}', url, words, _describe(PostEmail(post))
        )

    def post_problems(self, post: Post) -> list[Problem]:
        problems = super().post_problems(post)
        # A new post has no inspections or categories yet to render its email with.
        if post.pk is None or not post.email_subscribers:
            return problems
        return [*problems, *email_problems(PostEmail(post))]

    def save_model(self, request: HttpRequest, obj: Post, form, change: bool) -> None:
        # Before this save published it, as its row is now, locked until the save
        # commits (the desk saves in one transaction): beat may have announced it
        # since the desk loaded it (its time came while its page was open), and
        # its email, ticked by this save, is then this save's to start.
        stored = (
            Post.objects.select_for_update()
            .filter(pk=obj.pk)
            .values("announced_at", "status")
            .first()
        )
        announced = stored is not None and stored["announced_at"] is not None
        emailed = announced and _has_email(obj)
        super().save_model(request, obj, form, change)
        email = PostEmail(obj)
        if email.shortened or images_without_alt(obj.body_html):
            self.message_user(request, _describe(email), level=messages.WARNING)
        if announced and "email_subscribers" in form.changed_data:
            self._email_choice_changed(request, obj)
        started = not emailed and obj.email_subscribers and _has_email(obj)
        # Ticked on it live. Back on the site (newsletter.receivers.email_post),
        # its email is told of with its publication (publication_said).
        if announced and started and stored["status"] == Post.Status.PUBLISHED:
            level, words = email_said(obj)
            self.message_user(request, words, level)
        scheduled = obj.email_subscribers and obj.announced_at is None
        if started or (scheduled and obj.status == Post.Status.PUBLISHED):
            tell_if_sent_once_the_queue_is_back(self, request)

    @admin.action(
        description=posts_admin.PostAdmin.publish.short_description,
        permissions=["publish"],
    )
    def publish(self, request: HttpRequest, queryset) -> None:
        emailed = list(
            queryset.filter(
                status__in=[Post.Status.DRAFT, Post.Status.REVIEW],
                email_subscribers=True,
            ).values_list("pk", flat=True)
        )
        super().publish(request, queryset)
        # Published now or scheduled, their emails need the task queue.
        if Post.objects.filter(pk__in=emailed, status=Post.Status.PUBLISHED).exists():
            tell_if_sent_once_the_queue_is_back(self, request)

    def _email_choice_changed(self, request: HttpRequest, post: Post) -> None:
        """The box changed on a post already published, which is when its email was
        decided: ticked, its readers get it now (once), or once it is back on the
        site; unticked, what was sent is sent, and the author is told how to stop
        the rest."""
        if not post.email_subscribers:
            # No round plans it from now on (digests.posts_held); those planned
            # already carried it until the worker sent them.
            digests.post_withdraw_from_digests(post=post)
            self.message_user(
                request,
                "Its email is not called back by unticking the box: pause or cancel "
                "its mailing (Mailings) to stop what has not gone yet. Digests not "
                "yet sent go without it.",
                level=messages.WARNING,
            )
        elif not post.is_published:
            self.message_user(
                request,
                "This post is not on the site: its email goes to its readers once "
                "you publish it again.",
                level=messages.WARNING,
            )
        else:
            # Published without its email, then ticked: the readers it was held
            # from get it now, as they would have then (its announcement came and
            # went). Made once: a post sent before is not sent again.
            delivery.mailing_create_for_post(post=post)

    def publication_said(self, post: Post) -> tuple[int, list[str]]:
        level, words = super().publication_said(post)
        email_level, email_words = email_said(post)
        return max(level, email_level), [*words, email_words]

    def unpublication_said(
        self, post: Post, *, was_live: bool, was_for: datetime
    ) -> tuple[int, list[str]]:
        level, words = super().unpublication_said(
            post, was_live=was_live, was_for=was_for
        )
        email_level, email_words = email_said_taken_back(post, was_live=was_live)
        return max(level, email_level), [*words, *email_words]

    def get_urls(self):
        # Before the post's own URLs: <path:object_id> would swallow these.
        return [
            path(
                "<path:object_id>/corrections/<int:update_id>/email/",
                self.admin_site.admin_view(email_frames(self.correction_view)),
                name="posts_post_correction",
            ),
            path(
                "<path:object_id>/corrections/<int:update_id>/email/test/",
                self.admin_site.admin_view(require_POST(self.correction_test_view)),
                name="posts_post_correction_test",
            ),
            path(
                "<path:object_id>/email/",
                self.admin_site.admin_view(email_frames(self.email_preview_view)),
                name="posts_post_email_preview",
            ),
            path(
                "<path:object_id>/email/test/",
                self.admin_site.admin_view(require_POST(self.email_test_view)),
                name="posts_post_email_test",
            ),
            *super().get_urls(),
        ]

    def email_preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        post = self._post_or_404(request, object_id)
        email = PostEmail(post)
        # What a reader gets, with a dead unsubscribe link in place of theirs.
        message = email.test_message(to=request.user.email or "preview@example.org")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": post,
            "title": f"Email preview: {post.title}",
            "subject": email.rendered.subject,
            "html": message.alternatives[0][0],
            "text": message.body,
            "description": _describe(email),
            "shortened": email.shortened,
            "may_test": self.has_change_permission(request, post),
        }
        return TemplateResponse(
            request, "admin/newsletter/post_email_preview.html", context
        )

    def email_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        post = self._post_or_404(request, object_id)
        if not self.has_change_permission(request, post):
            raise PermissionDenied  # a test send is for those who may edit the post
        return self._test_send(
            request,
            tasks.send_post_test,
            post.pk,
            back=reverse("admin:posts_post_email_preview", args=[post.pk]),
        )

    def correction_view(
        self, request: HttpRequest, object_id: str, update_id: int
    ) -> HttpResponse:
        """Who a correction's email would reach and who not, a preview, and the
        author's confirmation (POST), which starts its one mailing."""
        post, update = self._update_or_404(request, object_id, update_id)
        mailing = update.mailings.first()
        if request.method == "POST":
            return self._correction_confirm(request, post, update, mailing)
        email = CorrectionEmail(update)
        message = email.test_message(to=request.user.email or "preview@example.org")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": post,
            "update": update,
            "title": f"Email this {update.get_kind_display().lower()} to readers",
            "published": post.is_published,
            "sent": corrections.sent_to_anyone(post),
            "mailing": mailing,
            "cancelled": mailing is not None
            and mailing.status == Mailing.Status.CANCELLED,
            "may_send": self._may_send_correction(request, post),
            "may_test": self.has_change_permission(request, post),
            "reach": corrections.correction_reach(update=update),
            "subject": email.rendered.subject,
            "html": message.alternatives[0][0],
            "text": message.body,
        }
        return TemplateResponse(
            request, "admin/newsletter/correction_email.html", context
        )

    def _correction_confirm(
        self,
        request: HttpRequest,
        post: Post,
        update: PostUpdate,
        mailing: Mailing | None,
    ) -> HttpResponse:
        if not self._may_send_correction(request, post):
            raise PermissionDenied
        kind = update.get_kind_display().lower()
        # Asked before it goes again: its batches may be sent before this could
        # tell whom it went again for.
        left_to_reach = (
            mailing is not None
            and mailing.status == Mailing.Status.CANCELLED
            and corrections.anyone_left_to_reach(mailing)
        )
        if mailing is None:
            try:
                mailing = delivery.mailing_create_for_correction(
                    post_update=update,
                    include_uncertain=request.POST.get("include_uncertain") == "on",
                )
            except ValueError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return HttpResponseRedirect(request.path)
            self.message_user(
                request,
                f"The {kind} is on its way to the readers who received the post.",
                messages.SUCCESS,
            )
        elif mailing.status == Mailing.Status.CANCELLED and (
            delivery.correction_send_again(mailing_id=mailing.pk)
        ):
            # Confirmed again after the author cancelled it: those it had not
            # reached may have left since, or the cancel came as it reached the
            # last of them.
            if left_to_reach:
                self.message_user(
                    request,
                    f"The {kind} is on its way to the readers it had not reached.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"The {kind}'s email has reached every reader who received the "
                    "post without it and still gets our emails: nothing more to send.",
                    messages.WARNING,
                )
        else:
            # Confirmed twice (a second tab, a double click), or its post is off
            # the site: said, not left to the author to guess whether it went
            # again. Read again: the other click may have sent a cancelled one
            # again since this one read it, which this one then could not.
            mailing.refresh_from_db(fields=["status"])
            if mailing.status != Mailing.Status.CANCELLED:
                going = "going out" if mailing.status in RUNNING else "sent"
                said = f"is already {going}: nothing more to send."
            else:
                said = (
                    "was not sent again: its post is not on the site. "
                    "Publish it again first."
                )
            self.message_user(
                request,
                f"The {kind}'s email {said}",
                messages.WARNING,
            )
        tell_if_sent_once_the_queue_is_back(self, request)
        return HttpResponseRedirect(
            reverse("admin:newsletter_mailing_change", args=[mailing.pk])
        )

    def _may_send_correction(self, request: HttpRequest, post: Post) -> bool:
        return self.has_change_permission(request, post) and request.user.has_perm(
            "newsletter.add_mailing"
        )

    def correction_test_view(
        self, request: HttpRequest, object_id: str, update_id: int
    ) -> HttpResponse:
        post, update = self._update_or_404(request, object_id, update_id)
        if not self.has_change_permission(request, post):
            raise PermissionDenied
        return self._test_send(
            request,
            tasks.send_correction_test,
            update.pk,
            back=reverse("admin:posts_post_correction", args=[post.pk, update.pk]),
        )

    def _test_send(
        self, request: HttpRequest, task, object_id: int, *, back: str
    ) -> HttpResponse:
        """Ring `task` to send the author a test of an email."""
        if not request.user.email:
            self.message_user(
                request,
                "Your account has no email address: add one to receive tests.",
                level=messages.ERROR,
            )
            return HttpResponseRedirect(back)
        to = request.user.email
        try:
            ring(task, object_id, request.user.pk)
        except QueueUnreachable:
            # Nothing rings a test again: the author is told to, not that it went.
            self.message_user(request, QUEUE_UNREACHABLE, level=messages.ERROR)
            return HttpResponseRedirect(back)
        self.message_user(
            request, f"A test of this email is on its way to {to}.", messages.SUCCESS
        )
        return HttpResponseRedirect(back)

    def _post_or_404(self, request: HttpRequest, object_id: str) -> Post:
        post = self.get_object(request, unquote(object_id))
        if post is None or not self.has_view_permission(request, post):
            raise Http404("No such post.")
        return post

    def _update_or_404(
        self, request: HttpRequest, object_id: str, update_id: int
    ) -> tuple[Post, PostUpdate]:
        post = self._post_or_404(request, object_id)
        # A post's updates are for those its page shows them to (the inline's
        # permissions): a contributor reads their own corrected post, but not its
        # correction's page, which counts who received the post and who has left.
        if not PostUpdateInline(Post, self.admin_site).has_view_permission(
            request, post
        ):
            raise PermissionDenied
        return post, get_object_or_404(PostUpdate, pk=update_id, post=post)


def email_problems(email: PostEmail) -> list[Problem]:
    """The checks before publishing that only the email knows of."""
    problems = []
    if email.shortened:
        problems.append(
            Problem(
                Level.WARNING,
                f"The email of the whole post would be over "
                f"{EMAIL_HTML_MAX_BYTES // 1000} KB, where Gmail clips it: "
                f"subscribers will get the excerpt with a link to the site.",
            )
        )
    subject = email.rendered.subject
    if len(subject) > SUBJECT_MAX_CHARACTERS:
        problems.append(
            Problem(
                Level.WARNING,
                f"The email's subject (the title) is {len(subject)} characters: "
                f"inboxes cut it after about {SUBJECT_MAX_CHARACTERS}.",
            )
        )
    return problems


def email_said(post: Post) -> tuple[int, str]:
    """What becomes of the post's email, in the author's words, and the message's
    level: said by a save that publishes the post (now, for later, or again) or
    ticks its box on it live, in one place, so that each says it alike. Taken down,
    a post's email is paused (receivers.hold_emails_of_unpublished_post) and stays
    paused once it is back, the author's to resume: the save said nothing, and
    the readers not yet sent it waited unnoticed."""
    mailing = post.mailings.filter(kind=Mailing.Kind.POST).first()
    if mailing is None and not post.email_subscribers:
        return messages.SUCCESS, (
            "It is not emailed, nor in digests: “Email to subscribers” is unticked."
        )
    if mailing is None:  # ticked, its time to come: its announcement emails it
        readers = delivery.post_audience(post=post).count()
        return messages.SUCCESS, (
            "Its email goes then to the readers who get posts as they are "
            f"published ({readers} as of now); readers of digests get it in their "
            "next one."
        )
    if mailing.status in RUNNING and mailing.paused_at is not None:
        return messages.WARNING, format_html(
            "Its email is still paused: nobody more gets it until you resume it on "
            '<a href="{}">its mailing\'s page</a>{}.',
            reverse("admin:newsletter_mailing_change", args=[mailing.pk]),
            "" if post.is_published else " once the post is live",
        )
    if mailing.status in RUNNING:
        readers = delivery.post_audience(post=post).count()
        announced_at = (
            Post.objects.filter(pk=post.pk).values_list("announced_at", flat=True)
        ).get()
        digests_hold_it = announced_at >= timezone.now() - digests.LOOKBACK
        return messages.SUCCESS, (
            f"Emailing it now to {counted(readers, 'reader', 'readers')} who get "
            "posts as they are published; "
            + (
                "readers of digests get it in their next one."
                if digests_hold_it
                else "not to readers of digests: it was published longer ago than "
                "a digest looks back."
            )
        )
    if mailing.status == Mailing.Status.CANCELLED:
        return messages.SUCCESS, "Its email was cancelled, and is not sent again."
    return messages.SUCCESS, "Its email went out before, and is not sent again."


def email_said_taken_back(post: Post, *, was_live: bool) -> tuple[int, list[str]]:
    """What became of the post's email as it was taken off the site or its
    schedule (receivers.hold_emails_of_unpublished_post), in the author's words,
    and the message's level."""
    mailing = post.mailings.filter(kind=Mailing.Kind.POST).first()
    if mailing is None and not post.email_subscribers:
        return messages.SUCCESS, [
            "It was not emailed, nor in digests: “Email to subscribers” is unticked."
        ]
    if mailing is None:  # its announcement emails it, once it is published again
        said = "Nobody was emailed it: its email goes out once you publish it again."
    elif mailing.status in RUNNING:
        said = format_html(
            "Its email is paused (a batch going out stops within a second): the "
            "readers it has not reached get it only once you publish the post again "
            'and resume its email on <a href="{}">its mailing\'s page</a>.',
            reverse("admin:newsletter_mailing_change", args=[mailing.pk]),
        )
    elif mailing.status == Mailing.Status.CANCELLED:
        said = "Its email was cancelled, and is not sent again."
    else:
        said = (
            "Its email had gone out: its readers have it, and its link leads "
            "nowhere until the post is back."
        )
    words = [said]
    if was_live and post.email_subscribers:
        words.append("Digests not yet sent go without it.")
    level = (
        messages.WARNING if mailing and mailing.status in RUNNING else messages.SUCCESS
    )
    return level, words


def _has_email(post: Post) -> bool:
    return post.mailings.filter(kind=Mailing.Kind.POST).exists()


def _describe(email: PostEmail) -> str:
    size = f"{email.size / 1000:.0f} KB of HTML"
    description = ""
    if email.shortened:
        description = (
            f"This post is too long for an inbox: Gmail clips email beyond about "
            f"{EMAIL_HTML_MAX_BYTES // 1000} KB, hiding the unsubscribe link. "
        )
        gets = f"its excerpt with a link to read it on the site ({size})"
    elif email.full:
        gets = f"the whole post ({size})"
    else:
        gets = f"the excerpt with a link to the site ({size})"
    # Unticked, nobody is emailed the post, digests included (digests.py): the
    # preview is of the email they would get. Unticked after it went, it went.
    if email.post.email_subscribers or _has_email(email.post):
        description += f"Subscribers get {gets}."
    else:
        description += (
            "Not emailed: “Email to subscribers” is unticked. "
            f"Ticked, subscribers would get {gets}."
        )
    missing = len(images_without_alt(email.post.body_html))
    if missing:
        description += (
            f" {counted(missing, 'image has', 'images have')} no alt text: most "
            "mail clients hide images until asked, so describe each one, as in "
            "![what it shows](address)."
        )
    return description
