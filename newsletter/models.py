from django.db import models
from django.utils import timezone

from posts.models import Post


class SubscriberQuerySet(models.QuerySet):
    def confirmed(self) -> "SubscriberQuerySet":
        """Subscribers who confirmed and have not unsubscribed: the audience."""
        return self.filter(status=Subscriber.Status.ACTIVE)


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        ACTIVE = "active", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"

    # Stored normalised (see subscriptions.normalise_email), so it is unique as typed.
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["status", "id"])]

    def __str__(self) -> str:
        return self.email


class Consent(models.Model):
    """What a person agreed to, when, and from where: one row per subscribe request."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="consents"
    )
    created_at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    wording = models.TextField(help_text="The exact text the form showed.")
    wording_version = models.CharField(max_length=20)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subscriber}: consent {self.wording_version}"


class Send(models.Model):
    """One post going out to the audience. At most one per post, ever."""

    class Status(models.TextChoices):
        PLANNING = "planning", "Planning"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    post = models.OneToOneField(
        Post, on_delete=models.PROTECT, related_name="newsletter_send"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PLANNING
    )
    # Keyset cursor: the highest subscriber id already planned into a batch.
    planned_up_to = models.BigIntegerField(default=0)
    batch_count = models.PositiveIntegerField(default=0)
    # Recipients per batch, fixed when planning starts (depends on the provider).
    batch_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # When planning last moved; the reaper's clock for a lost planning doorbell.
    touched_at = models.DateTimeField(default=timezone.now)
    planned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A paused send claims no batch. The circuit breaker pauses with a resume_at;
    # the author pauses without one and resumes from the admin.
    paused_at = models.DateTimeField(null=True, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True)
    # Batch attempts the provider failed in a row; trips the circuit breaker.
    consecutive_failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Send of “{self.post}”"


class Batch(models.Model):
    """A slice of a send's audience, claimed and sent by one task at a time."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        # Some of it may or may not have reached the provider (a connection that
        # dropped after the request, a worker that died mid-send). Never resent
        # automatically: the author reviews it in the admin.
        UNCERTAIN = "uncertain", "Uncertain"
        CANCELLED = "cancelled", "Cancelled"

    send = models.ForeignKey(Send, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    # When the batch was last queued or claimed; the reaper's clock.
    touched_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Counts from the ledger, written when an attempt ends, so progress is a sum
    # over batches instead of a count over every delivery.
    size = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    uncertain = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["send", "number"], name="batch_unique")
        ]
        indexes = [
            models.Index(fields=["status", "touched_at"]),
            models.Index(fields=["send", "status"]),
        ]

    def __str__(self) -> str:
        return f"Batch {self.number} of {self.send}"


class Delivery(models.Model):
    """The ledger: one row per (send, subscriber), the outcome for that person."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        # Handed to the provider, answer not yet recorded. A row left here by a dead
        # worker may or may not have gone out: it becomes UNCERTAIN, never resent.
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        UNCERTAIN = "uncertain", "Uncertain"
        SKIPPED = "skipped", "Skipped"

    # No index of their own: the unique (send, subscriber) and the (batch, status)
    # indexes cover these, and every index costs planning time per row.
    send = models.ForeignKey(
        Send, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    esp_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["send", "subscriber"], name="delivery_once_per_subscriber"
            )
        ]
        indexes = [models.Index(fields=["batch", "status"])]

    def __str__(self) -> str:
        return f"{self.send} to {self.subscriber}: {self.get_status_display()}"
