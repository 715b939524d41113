from datetime import timedelta

import requests
from django.contrib import admin
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.http import (
    HttpRequest,
)
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .. import delivery, digests
from ..delivery.provider import CannotAsk
from ..models import (
    Batch,
    Delivery,
    DigestDelivery,
    DigestRun,
    DigestSettings,
    Send,
)

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

    @admin.action(description="Pause the selected sends", permissions=["change"])
    def pause(self, request, queryset) -> None:
        changed = sum(delivery.send_pause(send_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Paused {changed} send(s).")

    @admin.action(description="Resume the selected sends", permissions=["change"])
    def resume(self, request, queryset) -> None:
        changed = sum(delivery.send_resume(send_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Resumed {changed} send(s).")

    @admin.action(
        description="Cancel the selected sends (cannot be undone)",
        permissions=["change"],
    )
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

    @admin.action(
        description="Ask the provider; resend only what it did not take",
        permissions=["change"],
    )
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

    @admin.action(
        description="Record uncertain batches as sent (provider confirms)",
        permissions=["change"],
    )
    def mark_sent(self, request, queryset) -> None:
        changed = sum(delivery.batch_mark_sent(batch_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Recorded {changed} batch(es) as sent.")

    @admin.action(
        description="Resend uncertain batches (some may get a second copy)",
        permissions=["change"],
    )
    def resend(self, request, queryset) -> None:
        changed = sum(delivery.batch_resend(batch_id=pk) for pk in _ids(queryset))
        self.message_user(request, f"Queued {changed} batch(es) to send again.")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # The list and its actions, for those who may change; no field is editable.
        return obj is None and super().has_change_permission(request)

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

    @admin.action(
        description="Ask the provider; resend only what it did not take",
        permissions=["change"],
    )
    def resolve(self, request, queryset) -> None:
        try:
            changed = digests.digests_resolve_with_provider(row_ids=_ids(queryset))
        except (CannotAsk, requests.RequestException) as exc:
            self.message_user(request, f"Could not ask the provider: {exc}", "error")
        else:
            self.message_user(request, f"Resolved {changed} digest(s).")

    @admin.action(
        description="Record uncertain digests as sent (provider confirms)",
        permissions=["change"],
    )
    def mark_sent(self, request, queryset) -> None:
        changed = digests.digests_mark_sent(row_ids=_ids(queryset))
        self.message_user(request, f"Recorded {changed} digest(s) as sent.")

    @admin.action(
        description="Resend uncertain digests (some may get a second copy)",
        permissions=["change"],
    )
    def resend(self, request, queryset) -> None:
        changed = digests.digests_resend(row_ids=_ids(queryset))
        self.message_user(request, f"Queued {changed} digest(s) to send again.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The list and its actions, for those who may change; no field is editable.
        return obj is None and super().has_change_permission(request)
