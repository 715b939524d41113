import csv
from datetime import timedelta

import requests
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from posts import admin as posts_admin
from posts.models import Post

from . import delivery, digests, imports, subscriptions, tasks
from .delivery.provider import CannotAsk
from .emails import EMAIL_HTML_MAX_BYTES, PostEmail, html_size, images_without_alt
from .models import (
    Batch,
    Consent,
    Delivery,
    DigestDelivery,
    DigestRun,
    DigestSettings,
    Event,
    Send,
    Subscriber,
    SubscriberTopic,
    Suppression,
)


class SubscriberTopicInline(admin.TabularInline):
    model = SubscriberTopic
    extra = 0
    fields = ["kind", "value", "frequency"]


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = [
        "created_at",
        "ip_address",
        "source",
        "wording_version",
        "wording",
        "confirmed_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class PausedFilter(admin.SimpleListFilter):
    title = "paused"
    parameter_name = "paused"

    def lookups(self, request, model_admin):
        return [("yes", "Paused"), ("no", "Not paused")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(paused_at__isnull=self.value() == "no")
        return queryset


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, with the header line: " + ",".join(imports.COLUMNS),
    )
    import_despite_rejections = forms.BooleanField(
        required=False,
        label="Import the valid rows even if some lines are rejected",
    )

    MAX_BYTES = 5 * 1024 * 1024

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > self.MAX_BYTES:
            raise forms.ValidationError("The file is larger than 5 MB.")
        return upload


class Echo:
    """A file-like object whose write returns the line, for streaming csv.writer."""

    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run cells that start like a formula; quote them as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = [
        "email",
        "name",
        "status",
        "paused_at",
        "created_at",
        "confirmed_at",
    ]
    list_filter = ["status", PausedFilter, "topics__kind", "topics__frequency"]
    search_fields = ["email", "name"]
    readonly_fields = [
        "status",
        "created_at",
        "confirmation_sent_at",
        "confirmed_at",
        "unsubscribed_at",
        "paused_at",
        "soft_bounces",
    ]
    inlines = [SubscriberTopicInline, ConsentInline]
    actions = ["export_csv", "unsubscribe", "suppress"]
    change_list_template = "admin/newsletter/subscriber/change_list.html"

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="newsletter_subscriber_import",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        labels = dict(Subscriber.Status.choices)
        counts = dict(Subscriber.objects.values_list("status").annotate(n=Count("pk")))
        extra_context = {
            **(extra_context or {}),
            "status_counts": [
                (labels[status], counts.get(status, 0)) for status in labels
            ],
            "paused_count": Subscriber.objects.filter(
                status=Subscriber.Status.ACTIVE, paused_at__isnull=False
            ).count(),
        }
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = imports.read_csv(form.cleaned_data["file"].read())
            except imports.ImportFileError as error:
                form.add_error("file", str(error))
            else:
                if report.rows and (
                    not report.rejected
                    or form.cleaned_data["import_despite_rejections"]
                ):
                    try:
                        imports.import_rows(report=report)
                    except IntegrityError:
                        # Someone subscribed meanwhile; the transaction undid it all.
                        form.add_error(
                            None,
                            "The subscriber list changed while importing, so "
                            "nothing was imported. Please upload the file again.",
                        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import subscribers",
            "form": form,
            "report": report,
        }
        return TemplateResponse(
            request,
            "admin/newsletter/subscriber/import.html",
            context,
            status=400 if form.errors else 200,
        )

    @admin.action(description="Export selected subscribers as CSV")
    def export_csv(self, request, queryset):
        latest_consent = Consent.objects.filter(subscriber=OuterRef("pk")).order_by(
            "-created_at"
        )
        rows = (
            queryset.annotate(
                consent_source=Subquery(latest_consent.values("source")[:1]),
                consent_date=Subquery(latest_consent.values("created_at")[:1]),
            )
            .order_by("pk")
            .values_list(
                "email",
                "name",
                "consent_source",
                "consent_date",
                "status",
                "paused_at",
                "confirmed_at",
            )
        )
        writer = csv.writer(Echo())
        header = [*imports.COLUMNS, "status", "paused_at", "confirmed_at"]
        lines = (
            writer.writerow([_csv_cell(value) for value in row])
            for row in [header, *rows.iterator(chunk_size=2000)]
        )
        response = StreamingHttpResponse(lines, content_type="text/csv")
        stamp = timezone.now().strftime("%Y%m%d-%H%M")
        response["Content-Disposition"] = (
            f'attachment; filename="subscribers-{stamp}.csv"'
        )
        return response

    @admin.action(description="Unsubscribe selected subscribers")
    def unsubscribe(self, request, queryset):
        count = 0
        for subscriber in queryset.iterator():
            subscriptions.unsubscribe(subscriber=subscriber)
            count += 1
        self.message_user(request, f"{count} subscribers unsubscribed.")

    @admin.action(description="Suppress selected addresses (never email them)")
    def suppress(self, request, queryset):
        count = 0
        for email in queryset.values_list("email", flat=True).iterator():
            subscriptions.suppress(email=email, reason=Suppression.Reason.MANUAL)
            count += 1
        self.message_user(
            request, f"{count} addresses suppressed.", level=messages.WARNING
        )


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """The list holds no addresses: search by typing the full address."""

    list_display = ["__str__", "reason", "created_at", "updated_at"]
    list_filter = ["reason"]
    search_fields = ["address_hash"]
    search_help_text = "Type a full email address to see whether it is suppressed."
    fields = ["address_hash", "reason", "created_at", "updated_at"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        return queryset.for_email(search_term), False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "esp", "event_type", "recipient", "message_id"]
    list_filter = ["esp", "event_type"]
    search_fields = ["recipient", "message_id", "event_id"]
    readonly_fields = [
        "esp",
        "event_id",
        "event_type",
        "recipient",
        "message_id",
        "timestamp",
        "raw",
        "received_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# Progress is read from the batches' counters (a few thousand rows for a million
# recipients), never by counting the ledger. Rate: recipients sent in this window.
RATE_WINDOW = timedelta(minutes=5)


def _annotation(name: str, *, description: str | None = None):
    """A list column showing, and sorting by, a count get_queryset annotates."""

    @admin.display(description=description or name, ordering=name)
    def column(self, obj) -> int:
        return getattr(obj, name)

    return column


@admin.register(Send)
class SendAdmin(admin.ModelAdmin):
    list_display = [
        "post",
        "state",
        "progress",
        "planned",
        "sent",
        "failed",
        "uncertain",
        "rate",
        "eta",
        "created_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "post", "state", "progress", "planned", "sent", "failed", "uncertain",
        "rate", "eta", "uncertain_batches", "pause_reason", "resume_at",
        "consecutive_failures", "batch_count", "batch_size", "planned_up_to",
        "created_at", "planned_at", "finished_at",
    ]  # fmt: skip
    exclude = ["status", "touched_at", "paused_at"]
    actions = ["pause", "resume", "cancel"]

    def get_queryset(self, request):
        waiting = [Batch.Status.QUEUED, Batch.Status.SENDING]
        recent = Q(batches__finished_at__gte=timezone.now() - RATE_WINDOW)
        return (
            super()
            .get_queryset(request)
            .select_related("post")
            .annotate(
                planned=Coalesce(Sum("batches__size"), 0),
                sent=Coalesce(Sum("batches__sent"), 0),
                failed=Coalesce(Sum("batches__failed"), 0),
                uncertain=Coalesce(Sum("batches__uncertain"), 0),
                waiting=Coalesce(
                    Sum("batches__size", filter=Q(batches__status__in=waiting)), 0
                ),
                recently_sent=Coalesce(Sum("batches__sent", filter=recent), 0),
            )
        )

    @admin.display(description="status", ordering="status")
    def state(self, send: Send) -> str:
        if send.paused_at:
            return f"Paused ({send.pause_reason})" if send.pause_reason else "Paused"
        return send.get_status_display()

    @admin.display(description="progress")
    def progress(self, send: Send) -> str:
        done = send.planned - send.waiting
        percent = 100 * done // send.planned if send.planned else 0
        return format_html(
            '<progress value="{}" max="{}" aria-label="{}% handled"></progress> {}%',
            done,
            send.planned or 1,
            percent,
            percent,
        )

    planned = _annotation("planned")
    sent = _annotation("sent")
    failed = _annotation("failed")
    uncertain = _annotation("uncertain")

    @admin.display(description="rate (recipients/s)")
    def rate(self, send: Send) -> str:
        return f"{send.recently_sent / RATE_WINDOW.total_seconds():.1f}"

    @admin.display(description="ETA")
    def eta(self, send: Send) -> str:
        per_second = send.recently_sent / RATE_WINDOW.total_seconds()
        if not send.waiting:
            return "done"
        if not per_second:
            return "unknown"
        return str(timedelta(seconds=round(send.waiting / per_second)))

    @admin.display(description="uncertain batches")
    def uncertain_batches(self, send: Send) -> str:
        count = send.batches.filter(status=Batch.Status.UNCERTAIN).count()
        url = reverse("admin:newsletter_batch_changelist")
        return format_html(
            '<a href="{}?send__id__exact={}&status__exact=uncertain">{} to review</a>',
            url,
            send.pk,
            count,
        )

    @admin.action(description="Pause the selected sends")
    def pause(self, request, queryset) -> None:
        changed = sum(delivery.send_pause(send_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Paused {changed} send(s).")

    @admin.action(description="Resume the selected sends")
    def resume(self, request, queryset) -> None:
        changed = sum(delivery.send_resume(send_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Resumed {changed} send(s).")

    @admin.action(description="Cancel the selected sends (cannot be undone)")
    def cancel(self, request, queryset) -> None:
        changed = sum(delivery.send_cancel(send_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Cancelled {changed} send(s).")

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _ids(queryset) -> list[int]:
    return list(queryset.values_list("pk", flat=True))


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Where uncertain batches are reviewed: check the provider's activity log for
    these recipients, then either record them as sent or resend them knowingly."""

    list_display = [
        "number", "send", "status", "size", "sent", "failed", "uncertain",
        "attempts", "touched_at", "last_error",
    ]  # fmt: skip
    list_filter = ["status", "send"]
    list_select_related = ["send__post"]
    readonly_fields = [
        "send", "number", "status", "size", "sent", "failed", "uncertain",
        "attempts", "touched_at", "finished_at", "last_error", "recipients",
    ]  # fmt: skip
    actions = ["resolve", "mark_sent", "resend"]

    @admin.display(description="recipients")
    def recipients(self, batch: Batch) -> str:
        url = reverse("admin:newsletter_delivery_changelist")
        return format_html(
            '<a href="{}?batch__id__exact={}">ledger rows</a>', url, batch.pk
        )

    @admin.action(description="Ask the provider; resend only what it did not take")
    def resolve(self, request, queryset) -> None:
        try:
            changed = sum(
                delivery.batch_resolve_with_provider(batch_id=pk)
                for pk in _ids(queryset)
            )
        except (CannotAsk, requests.RequestException) as exc:
            self.message_user(request, f"Could not ask the provider: {exc}", "error")
        else:
            self.message_user(request, f"Resolved {changed} batch(es).")

    @admin.action(description="Record uncertain batches as sent (provider confirms)")
    def mark_sent(self, request, queryset) -> None:
        changed = sum(delivery.batch_mark_sent(batch_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Recorded {changed} batch(es) as sent.")

    @admin.action(description="Resend uncertain batches (some may get a second copy)")
    def resend(self, request, queryset) -> None:
        changed = sum(delivery.batch_resend(batch_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Queued {changed} batch(es) to send again.")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None  # the list and its actions; no field is editable

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["subscriber", "send", "status", "sent_at", "esp_message_id"]
    list_filter = ["status", "send"]
    search_fields = ["subscriber__email", "esp_message_id"]
    list_select_related = ["subscriber", "send__post"]
    readonly_fields = [
        "send",
        "batch",
        "subscriber",
        "status",
        "esp_message_id",
        "error",
        "sent_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False


# posts/ knows nothing of email, so the author's email tools join its post admin
# here: a preview of the post as its email, a test send, and a warning when the
# email would be too long for an inbox.
admin.site.unregister(Post)


@admin.register(Post)
class PostAdmin(posts_admin.PostAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "email_preview"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [*fieldsets, ("Email preview", {"fields": ["email_preview"]})]

    @admin.display(description="The email")
    def email_preview(self, post: Post) -> str:
        email = PostEmail(post)
        url = reverse("admin:posts_post_email_preview", args=[post.pk])
        return format_html(
            '<a href="{}">Preview the email and send a test to yourself</a><br>{}',
            url,
            _describe(email),
        )

    def save_model(self, request: HttpRequest, obj: Post, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        email = PostEmail(obj)
        if email.shortened or images_without_alt(obj.body_html):
            self.message_user(request, _describe(email), level=messages.WARNING)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/email/",
                self.admin_site.admin_view(self.email_preview_view),
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
        }
        return TemplateResponse(
            request, "admin/newsletter/post_email_preview.html", context
        )

    def email_test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        post = self._post_or_404(request, object_id)
        preview_url = reverse("admin:posts_post_email_preview", args=[post.pk])
        if not request.user.email:
            self.message_user(
                request,
                "Your account has no email address: add one to receive tests.",
                level=messages.ERROR,
            )
            return HttpResponseRedirect(preview_url)
        to = request.user.email
        transaction.on_commit(lambda: tasks.send_post_test.delay(post.pk, to))
        self.message_user(
            request, f"A test of this email is on its way to {to}.", messages.SUCCESS
        )
        return HttpResponseRedirect(preview_url)

    def _post_or_404(self, request: HttpRequest, object_id: str) -> Post:
        post = self.get_object(request, unquote(object_id))
        if post is None or not self.has_view_permission(request, post):
            raise Http404("No such post.")
        return post


def _describe(email: PostEmail) -> str:
    size = f"{html_size(email.rendered) / 1000:.0f} KB of HTML"
    if email.shortened:
        description = (
            f"This post is too long for an inbox: Gmail clips email beyond about "
            f"{EMAIL_HTML_MAX_BYTES // 1000} KB, hiding the unsubscribe link. "
            f"Subscribers will get its excerpt with a link to read it on the site "
            f"({size})."
        )
    elif email.full:
        description = f"Subscribers get the whole post ({size})."
    else:
        description = f"Subscribers get the excerpt with a link to the site ({size})."
    missing = images_without_alt(email.post.body_html)
    if missing:
        description += (
            f" {missing} image(s) have no alt text: most mail clients hide images "
            f"until asked, so describe each one, as in ![what it shows](address)."
        )
    return description


@admin.register(DigestSettings)
class DigestSettingsAdmin(admin.ModelAdmin):
    """One row: the day and hour of the digests."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not DigestSettings.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):
    """Each round with how its digests went: the author's view of the digest
    ledger, as Sends is of the post ledger."""

    list_display = [
        "period", "frequency", "readers", "sent", "failed", "uncertain", "waiting",
        "created_at", "finished_at",
    ]  # fmt: skip
    list_filter = ["frequency"]

    def get_queryset(self, request):
        def count(*statuses: str) -> Count:
            return Count("deliveries", filter=Q(deliveries__status__in=statuses))

        return (
            super()
            .get_queryset(request)
            .annotate(
                readers=Count("deliveries"),
                sent=count(Delivery.Status.SENT),
                failed=count(Delivery.Status.FAILED),
                uncertain=count(Delivery.Status.UNCERTAIN),
                waiting=count(Delivery.Status.QUEUED, Delivery.Status.SENDING),
            )
        )

    readers = _annotation("readers")
    sent = _annotation("sent")
    failed = _annotation("failed")
    uncertain = _annotation("uncertain")
    waiting = _annotation("waiting", description="queued or sending")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(DigestDelivery)
class DigestDeliveryAdmin(admin.ModelAdmin):
    """Where uncertain digests are settled, as uncertain batches are: after a look
    at the provider's activity log, record them as sent or resend them knowingly."""

    list_display = ["run", "subscriber", "status", "sent_at", "error"]
    list_filter = ["status", "run__frequency"]
    search_fields = ["subscriber__email"]
    actions = ["resolve", "mark_sent", "resend"]

    @admin.action(description="Ask the provider; resend only what it did not take")
    def resolve(self, request, queryset) -> None:
        try:
            changed = digests.digests_resolve_with_provider(row_ids=_ids(queryset))
        except (CannotAsk, requests.RequestException) as exc:
            self.message_user(request, f"Could not ask the provider: {exc}", "error")
        else:
            self.message_user(request, f"Resolved {changed} digest(s).")

    @admin.action(description="Record uncertain digests as sent (provider confirms)")
    def mark_sent(self, request, queryset) -> None:
        changed = digests.digests_mark_sent(row_ids=_ids(queryset))
        self.message_user(request, f"Recorded {changed} digest(s) as sent.")

    @admin.action(description="Resend uncertain digests (some may get a second copy)")
    def resend(self, request, queryset) -> None:
        changed = digests.digests_resend(row_ids=_ids(queryset))
        self.message_user(request, f"Queued {changed} digest(s) to send again.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return obj is None  # the list and its actions; no field is editable
