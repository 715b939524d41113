from datetime import timedelta

import requests
from django.contrib import admin
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import delivery
from .delivery.provider import CannotAsk
from .models import Batch, Consent, Delivery, Send, Subscriber


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ["created_at", "ip_address", "wording_version", "wording", "confirmed_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "status", "created_at", "confirmed_at"]
    list_filter = ["status"]
    search_fields = ["email", "name"]
    readonly_fields = [
        "created_at",
        "confirmation_sent_at",
        "confirmed_at",
        "unsubscribed_at",
    ]
    inlines = [ConsentInline]


# Progress is read from the batches' counters (a few thousand rows for a million
# recipients), never by counting the ledger. Rate: recipients sent in this window.
RATE_WINDOW = timedelta(minutes=5)


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

    @admin.display(ordering="planned")
    def planned(self, send: Send) -> int:
        return send.planned

    @admin.display(ordering="sent")
    def sent(self, send: Send) -> int:
        return send.sent

    @admin.display(ordering="failed")
    def failed(self, send: Send) -> int:
        return send.failed

    @admin.display(ordering="uncertain")
    def uncertain(self, send: Send) -> int:
        return send.uncertain

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
