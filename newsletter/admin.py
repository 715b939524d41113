from django.contrib import admin
from django.db.models import Count, Q

from .models import Consent, Delivery, Send, Subscriber


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


@admin.register(Send)
class SendAdmin(admin.ModelAdmin):
    list_display = [
        "post",
        "status",
        "batch_count",
        "sent",
        "failed",
        "uncertain",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    readonly_fields = [
        "post", "status", "planned_up_to", "batch_count", "created_at",
        "planned_at", "finished_at", "sent", "failed", "uncertain",
    ]  # fmt: skip

    def get_queryset(self, request):
        by_status = {
            status: Count("deliveries", filter=Q(deliveries__status=status))
            for status in ("sent", "failed", "uncertain")
        }
        return (
            super().get_queryset(request).select_related("post").annotate(**by_status)
        )

    @admin.display(ordering="sent")
    def sent(self, send: Send) -> int:
        return send.sent

    @admin.display(ordering="failed")
    def failed(self, send: Send) -> int:
        return send.failed

    @admin.display(ordering="uncertain")
    def uncertain(self, send: Send) -> int:
        return send.uncertain

    def has_add_permission(self, request) -> bool:
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
