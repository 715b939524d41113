from collections.abc import Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.crypto import salted_hmac

from posts.models import Post, PostUpdate
from posts.validators import normalise_email


def receiving() -> models.Q:
    """The audience (SubscriberQuerySet.confirmed), as a condition: the desk counts
    it beside the other statuses in one statement."""
    # Every suppression also moves the subscriber out of ACTIVE (see
    # subscriptions.address_suppress), so the status and the pause alone decide.
    return models.Q(status=Subscriber.Status.ACTIVE, paused_at__isnull=True)


def pausing() -> models.Q:
    """Confirmed readers who paused their newsletter (SubscriberQuerySet.paused),
    as a condition."""
    return models.Q(status=Subscriber.Status.ACTIVE, paused_at__isnull=False)


class SubscriberQuerySet(models.QuerySet):
    def confirmed(self) -> "SubscriberQuerySet":
        """The audience: confirmed, not paused, not unsubscribed or suppressed."""
        return self.filter(receiving())

    def not_receiving(self) -> "SubscriberQuerySet":
        """Everyone out of the audience: pending, paused, unsubscribed or
        suppressed. A confirmed subscribe request brings them (back) in."""
        return self.exclude(receiving())

    def paused(self) -> "SubscriberQuerySet":
        """Confirmed readers who paused their newsletter (a suppression keeps a
        pause, but puts the reader out for its own reason)."""
        return self.filter(pausing())

    def holding_their_address(self) -> "SubscriberQuerySet":
        """Everyone but requests nobody ever confirmed: anyone can type any address
        into the subscribe form, so such a request proves nobody owns it."""
        return self.exclude(status=Subscriber.Status.PENDING, confirmed_at=None)

    def following(
        self, keys: Iterable[tuple[str, str]], *, frequency: str
    ) -> "SubscriberQuerySet":
        """Subscribers with a topic at that frequency matching any of the keys (a
        post's Post.topic_keys()), or following everything at that frequency.

        A subscriber with no topics at all follows everything, instantly: the
        default for every reader who never chose.
        """
        by_kind: dict[str, set[str]] = {}
        for kind, value in keys:
            by_kind.setdefault(kind, set()).add(value)
        match = models.Q(kind=SubscriberTopic.Kind.EVERYTHING)
        for kind, values in by_kind.items():
            match |= models.Q(kind=kind, value__in=sorted(values))
        topics = SubscriberTopic.objects.filter(subscriber=models.OuterRef("pk"))
        followed = models.Exists(topics.filter(match, frequency=frequency))
        if frequency == SubscriberTopic.Frequency.INSTANT:
            followed |= ~models.Exists(topics)
        return self.filter(followed)


# The time zones a reader may choose for their digests: where readers of a UK
# publication mostly are. A short list reads better than zoneinfo's 600 names.
DIGEST_TIME_ZONES = [
    ("Europe/London", "London (UK)"),
    ("Europe/Dublin", "Dublin (Ireland)"),
    ("Europe/Lisbon", "Lisbon"),
    ("Europe/Paris", "Paris, Brussels, Amsterdam"),
    ("Europe/Berlin", "Berlin, Stockholm, Oslo"),
    ("Europe/Madrid", "Madrid"),
    ("Europe/Rome", "Rome"),
    ("Europe/Warsaw", "Warsaw"),
    ("Europe/Athens", "Athens"),
    ("Europe/Helsinki", "Helsinki"),
    ("Atlantic/Reykjavik", "Reykjavik"),
    ("America/St_Johns", "St John's (Newfoundland)"),
    ("America/Halifax", "Halifax"),
    ("America/New_York", "New York, Toronto (Eastern)"),
    ("America/Chicago", "Chicago (Central)"),
    ("America/Denver", "Denver (Mountain)"),
    ("America/Los_Angeles", "Los Angeles, Vancouver (Pacific)"),
    ("Asia/Dubai", "Dubai"),
    ("Asia/Kolkata", "India"),
    ("Asia/Singapore", "Singapore"),
    ("Asia/Hong_Kong", "Hong Kong"),
    ("Asia/Tokyo", "Tokyo"),
    ("Australia/Perth", "Perth"),
    ("Australia/Sydney", "Sydney, Melbourne"),
    ("Pacific/Auckland", "Auckland"),
    ("UTC", "UTC"),
]
DEFAULT_TIME_ZONE = "Europe/London"


def zone_of(name: str) -> ZoneInfo:
    """The reader's time zone; one the database no longer knows reads as the
    default rather than stopping every round."""
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return ZoneInfo(DEFAULT_TIME_ZONE)


def day_of(moment: datetime, time_zone: str) -> date:
    """The day of `moment` for a reader: its day in their own time zone (a New
    York reader's evening digest is not dated London's tomorrow, nor is the post
    they are sent that evening)."""
    return moment.astimezone(zone_of(time_zone)).date()


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class Subscriber(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending confirmation"
        ACTIVE = "active", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained (marked as spam)"
        SUPPRESSED = "suppressed", "Suppressed by the author"

    # Stored normalised (see normalise_email), so it is unique as typed.
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=100, blank=True)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # When the subscriber last left the audience (unsubscribed, bounced, …).
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # A paused subscriber stays subscribed but is left out of every send.
    paused_at = models.DateTimeField(null=True, blank=True)
    # Soft bounces since the last successful delivery; at the limit, suppressed.
    soft_bounces = models.PositiveIntegerField(default=0)
    # When the reader last asked to move to another address: one request a day,
    # and only the latest request's link works.
    email_change_requested_at = models.DateTimeField(null=True, blank=True)
    # The request (its email_change_requested_at) whose link was taken to be
    # handed to the provider: once, so that its task run again sends no second
    # copy; given back when the provider clearly refused it.
    email_change_taken_for = models.DateTimeField(null=True, editable=False)
    # The address the latest request (email_change_requested_at) asks to move to,
    # while its link is on its way there: its task reads it here, where erasure
    # reaches it, not from the queue's message, where it could wait for hours.
    email_change_to = models.EmailField(max_length=254, blank=True, editable=False)
    # When the latest one-time link (export, delete, change of address, agreeing
    # to per-reader engagement) was sent:
    # its token is bound to it, and using the link clears it, so it works once.
    one_time_link_sent_at = models.DateTimeField(null=True, blank=True)
    # The new address the latest one-time link is for, when it is for a change of
    # address, while the link is on its way to the reader: as email_change_to.
    one_time_link_new_email = models.EmailField(
        max_length=254, blank=True, editable=False
    )
    # When digests arrive, in the reader's time zone; empty follows the site's
    # DigestSettings, so an author's change reaches every reader who never chose.
    digest_hour = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(23)]
    )
    digest_weekday = models.PositiveSmallIntegerField(
        "weekly digest day", null=True, blank=True, choices=Weekday.choices
    )
    time_zone = models.CharField(
        max_length=40, choices=DIGEST_TIME_ZONES, default=DEFAULT_TIME_ZONE
    )
    # The slot of the last daily and weekly round planned for this reader, whether
    # or not it held a post: a reader is in one round per period, even one who
    # moves their hour, or whose hour comes twice when the clocks go back.
    # Not editable in the admin: a hand-made change could send a period twice.
    last_daily_round_at = models.DateTimeField(null=True, editable=False)
    last_weekly_round_at = models.DateTimeField(null=True, editable=False)
    # Set when a digest reader turns to instant: the posts announced up to then
    # were announced without them and are in no round of theirs any more, so the
    # next round of either frequency holds them (a last digest). Cleared once it
    # reaches them (delivery.ledger.record_outcomes), not when it is planned.
    digest_owed_until = models.DateTimeField(null=True, editable=False)
    # Set while the reader is owed their welcome: when it was rung (confirming),
    # or when its retry is due; a worker clears it as it takes the welcome to
    # send. The reaper rings again one the broker lost (down, or restarted).
    welcome_rung_at = models.DateTimeField(null=True, editable=False)
    # When the reader agreed (on a confirmed subscribe form, or in the preference
    # centre) to per-reader engagement; empty if they never did or withdrew.
    # Nothing per reader is kept unless NEWSLETTER_PER_READER_ENGAGEMENT is on too.
    engagement_agreed_at = models.DateTimeField(null=True, blank=True)

    objects = SubscriberQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["status", "id"]),
            # The reaper's every minute: the few readers owed a welcome.
            models.Index(
                fields=["welcome_rung_at"],
                condition=models.Q(welcome_rung_at__isnull=False),
                name="subscriber_owed_a_welcome",
            ),
        ]
        permissions = [("export_subscriber", "Can export subscribers as CSV")]

    def __str__(self) -> str:
        return self.email

    def frequency(self) -> str:
        """How often the reader gets posts: topics are chosen at one frequency, the
        first standing for all; as they are published when none is chosen."""
        first = self.topics.first()
        return first.frequency if first else SubscriberTopic.Frequency.INSTANT

    def digest_arrival(self, frequency: str) -> str:
        """When the reader's digests arrive at `frequency`, in words ("every Monday
        at 07:00, London (UK) time"); "" for posts as they are published."""
        if frequency == SubscriberTopic.Frequency.INSTANT:
            return ""
        site = DigestSettings.load()
        hour = site.hour if self.digest_hour is None else self.digest_hour
        day = "day"
        if frequency == SubscriberTopic.Frequency.WEEKLY:
            weekday = (
                site.weekday if self.digest_weekday is None else self.digest_weekday
            )
            day = Weekday(weekday).label
        return f"every {day} at {hour:02}:00, {self.get_time_zone_display()} time"


class PreviousAddress(models.Model):
    """An address the subscription moved away from (a confirmed change of address).

    Comments and tracking events name an address, not a subscriber: what was
    written under this one until the move is still the reader's to export and
    erase, and what came after belongs to whoever has the address now. Erasing
    the subscriber deletes these rows with it.
    """

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="previous_addresses"
    )
    # Stored normalised (see normalise_email), like Subscriber.email.
    email = models.EmailField(max_length=254, db_index=True)
    moved_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "previous addresses"
        ordering = ["moved_at", "id"]

    def __str__(self) -> str:
        return f"{self.email} (until {self.moved_at:%Y-%m-%d})"


class SubscriberTopic(models.Model):
    """One thing a subscriber follows, and how often they hear about it.

    A subscriber with no rows follows everything, instantly.
    """

    class Kind(models.TextChoices):
        EVERYTHING = "everything", "Everything"
        CATEGORY = "category", "Category"
        REGION = "region", "Region"
        AREA = "area", "Area"
        ORGANISATION = "organisation", "Organisation or owner"
        RATING = "rating", "Rating"

    class Frequency(models.TextChoices):
        INSTANT = "instant", "As it is published"
        DAILY = "daily", "Daily digest"
        WEEKLY = "weekly", "Weekly digest"

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="topics"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # The followed thing's slug, or the rating's code; empty for everything.
    value = models.CharField(max_length=200, blank=True)
    frequency = models.CharField(
        max_length=7, choices=Frequency.choices, default=Frequency.INSTANT
    )

    class Meta:
        ordering = ["kind", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscriber", "kind", "value"], name="topic_once"
            )
        ]
        indexes = [models.Index(fields=["kind", "value", "frequency"])]

    def __str__(self) -> str:
        what = self.value or self.get_kind_display()
        return f"{self.subscriber}: {what} ({self.get_frequency_display()})"


class Consent(models.Model):
    """What a person agreed to, when, and from where: one row per subscribe request."""

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="consents"
    )
    created_at = models.DateTimeField(default=timezone.now)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    wording = models.TextField(help_text="The exact text the form showed.")
    wording_version = models.CharField(max_length=40)
    # The reader also agreed to per-reader engagement (its wording is in `wording`).
    engagement = models.BooleanField(default=False)
    # Where the consent was given: the subscribe form, or the source of an import.
    source = models.CharField(max_length=200, blank=True)
    # The site's page whose link brought the reader to the subscribe form (a post,
    # the home page); empty when they came to the form directly. The desk counts
    # new readers by it.
    page = models.CharField(max_length=200, blank=True)
    # When this request's confirmation email was taken to be handed to the
    # provider: once, so that its task run again sends no second copy; given back
    # when the provider clearly refused it (subscriptions.confirmation_send).
    confirmation_taken_at = models.DateTimeField(null=True, editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # Where the confirmation link was used from: the request may be anyone's
    # (ip_address), the confirmation is the reader's proof of the double opt-in.
    confirmed_ip_address = models.GenericIPAddressField(null=True, blank=True)
    # What this request asked for, applied only when its own link confirms it, so
    # that a stranger resubmitting the address changes nothing the reader sees.
    # Topics as "kind:value" keys, [] for everything; None keeps what the reader
    # follows (a resubscribe from the preference centre).
    name = models.CharField(max_length=100, blank=True)
    topics = models.JSONField(null=True, blank=True)
    frequency = models.CharField(
        max_length=7,
        choices=SubscriberTopic.Frequency.choices,
        default=SubscriberTopic.Frequency.INSTANT,
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.subscriber}: consent {self.wording_version}"


class SuppressionQuerySet(models.QuerySet):
    def for_email(self, email: str) -> "SuppressionQuerySet":
        return self.filter(address_hash=Suppression.hash_address(email))

    def blocking(self) -> "SuppressionQuerySet":
        """Suppressions the reader cannot lift by subscribing again."""
        return self.exclude(reason__in=Suppression.READER_LIFTABLE)


class Suppression(models.Model):
    """Addresses never to be mailed, keyed by an HMAC so no address is stored.

    A deleted person's address stays here as a keyed hash; nobody can read it back,
    but a new subscribe request for it is recognised. (Rotating SECRET_KEY loses
    the list's keys: re-key it before rotating.)
    """

    class Reason(models.TextChoices):
        # In order of strength: a stronger reason replaces a weaker one, never back.
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        DELETED = "deleted", "Deleted their data"
        SOFT_BOUNCES = "soft_bounces", "Soft-bounced repeatedly"
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        MANUAL = "manual", "Suppressed by the author"
        COMPLAINT = "complaint", "Spam complaint"

    # The reader may come back from these through a fresh double opt-in.
    READER_LIFTABLE = (Reason.UNSUBSCRIBED, Reason.DELETED)

    address_hash = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=12, choices=Reason.choices)
    # The reader's own unsubscribe or erasure, kept when a stronger reason (a
    # late bounce, a complaint) replaces it: lifting that one leaves this.
    readers_reason = models.CharField(
        max_length=12, choices=Reason.choices, blank=True, default=""
    )
    # The reader it put out of the audience, for lifting it to find by key: the
    # hash names nobody. Empty for an address nobody held (or holds: erased).
    reader = models.ForeignKey(
        Subscriber,
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # When it took a reader in the audience out of it (address_suppress): the
    # desk counts readers leaving by this, once a person. Empty for an address
    # nobody received at: an erased reader's earlier addresses, a request nobody
    # confirmed, a reader out already (a late complaint after they left).
    reader_left_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The Monday of the week that reader last joined, kept when they erase their
    # data (subscriber_delete), whose row the desk otherwise counts joining by:
    # counted leaving, they count joining too. The week, as the desk counts it,
    # and no closer.
    reader_joined_week = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SuppressionQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.address_hash[:12]}…: {self.get_reason_display()}"

    @staticmethod
    def hash_address(email: str) -> str:
        return salted_hmac(
            "newsletter.suppression", normalise_email(email), algorithm="sha256"
        ).hexdigest()

    @classmethod
    def strength(cls, reason: str) -> int:
        return cls.Reason.values.index(reason)


class Event(models.Model):
    """A tracking event an ESP reported through its webhook, recorded once."""

    esp = models.CharField(max_length=30)
    # The ESP's own id, or a digest of the payload when the ESP gives none.
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=20)
    recipient = models.CharField(max_length=254, blank=True, db_index=True)
    message_id = models.CharField(max_length=255, blank=True, db_index=True)
    timestamp = models.DateTimeField(null=True, blank=True)
    raw = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The reader's mail provider refused our sender (as on Delivery): the event
    # then says nothing of the reader's mailbox, whatever its type.
    sender_refused = models.BooleanField(
        "refused our sender", default=False, editable=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["esp", "event_id"], name="event_once")
        ]

    def __str__(self) -> str:
        # Not by its address: the desk's history (the admin's log) keeps this
        # after the event is gone, where the reader's erasure cannot find it.
        return f"{self.esp} {self.event_type}, event {self.event_id}"


class SignatureToken(models.Model):
    """A token the provider signed a webhook request with (Mailgun's), good once.

    Mailgun signs its timestamp and token, not the event: a signed request seen
    once could carry any event again. Its events are recognised by their own id,
    which stays the same as Mailgun posts one again signed anew, so the tokens are
    kept apart, as long as events are (older signatures are refused outright).
    """

    token = models.CharField(max_length=255, unique=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"signature token {self.token}"


class MailingQuerySet(models.QuerySet):
    """Digest rounds that found nothing to send are "empty rounds". A round starts
    whenever some readers' hour comes, and on most days of a publication that
    posts weekly none of them has a new post: listed, such rounds buried the
    mailings that went out. (A post announced to nobody is not one: that is news
    to its author.)"""

    def going_out(self) -> "MailingQuerySet":
        """Mailings whose batches may be sent: planning or sending, not paused."""
        return self.filter(
            status__in=[Mailing.Status.PLANNING, Mailing.Status.SENDING],
            paused_at__isnull=True,
        )

    def post_on_site(self) -> "MailingQuerySet":
        """Mailings whose post readers can read now, or that carry none (a digest):
        the others' emails would lead nowhere, so they are neither sent nor
        resumed."""
        return self.filter(
            models.Q(post__isnull=True) | models.Q(post__in=Post.objects.published())
        )

    def empty_rounds(self) -> "MailingQuerySet":
        return self.filter(self._empty_round())

    def without_empty_rounds(self) -> "MailingQuerySet":
        return self.exclude(self._empty_round())

    @staticmethod
    def _empty_round() -> models.Q:
        return models.Q(
            ~models.Exists(Batch.objects.filter(mailing=models.OuterRef("pk"))),
            kind=Mailing.Kind.DIGEST,
            status=Mailing.Status.DONE,
        )


class Mailing(models.Model):
    """One email going out to many readers: a post's announcement, a digest round,
    a correction.

    The kind decides only who is in the audience and how a reader's message is
    rendered; planning, batches, the ledger, retries and settling are the same for
    every kind (newsletter/delivery/).
    """

    class Kind(models.TextChoices):
        POST = "post", "Post"
        DIGEST = "digest", "Digest"
        CORRECTION = "correction", "Correction"

    class Status(models.TextChoices):
        PLANNING = "planning", "Planning"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The post announced (kind post), or corrected (kind correction).
    post = models.ForeignKey(
        Post,
        on_delete=models.PROTECT,
        related_name="mailings",
        null=True,
        blank=True,
    )
    # The round (kind digest): daily or weekly, and its slot, the quarter hour
    # (UTC) it stands for: it goes to the readers whose chosen local time has come
    # by then. The period is the slot's day in the site's time, for the author.
    frequency = models.CharField(
        max_length=7,
        blank=True,
        choices=[
            (SubscriberTopic.Frequency.DAILY, "Daily"),
            (SubscriberTopic.Frequency.WEEKLY, "Weekly"),
        ],
    )
    period = models.DateField(null=True, blank=True)
    slot = models.DateTimeField(null=True, blank=True)
    # The posts the round's digests held, each for one reader at least (written
    # with the ledger's rows: planner.py). A post's report, links and corrections
    # read only the rounds that carried it, not every digest in the ledger.
    digest_posts = models.ManyToManyField(
        Post,
        related_name="digest_rounds",
        blank=True,
        verbose_name="posts in its digests",
    )
    # The correction or update emailed (kind correction) to the readers who were
    # sent the post before it was made, and whether those whose delivery is
    # uncertain get it too (the author's choice).
    post_update = models.ForeignKey(
        PostUpdate,
        on_delete=models.PROTECT,
        related_name="mailings",
        null=True,
        blank=True,
    )
    include_uncertain = models.BooleanField(default=False)
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
    # A paused mailing claims no batch. The circuit breaker pauses with a
    # resume_at; the author pauses without one and resumes from the admin.
    paused_at = models.DateTimeField(null=True, blank=True)
    resume_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=200, blank=True)
    # Batch attempts the provider failed in a row; trips the circuit breaker.
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Opens the provider reported (engagement.py says who is a machine). Counts
    # only: no reader is recorded.
    opens_people = models.PositiveIntegerField(default=0)
    opens_machines = models.PositiveIntegerField(default=0)

    objects = MailingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["post"],
                condition=models.Q(kind="post"),
                name="one_announcement_per_post",
            ),
            models.UniqueConstraint(
                fields=["frequency", "slot"],
                condition=models.Q(kind="digest"),
                name="one_digest_per_slot",
            ),
            models.UniqueConstraint(
                fields=["post_update"],
                condition=models.Q(kind="correction"),
                name="one_email_per_correction",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.DIGEST:
            local = timezone.localtime(self.slot)
            at = f"{local:%H:%M}"
            # The night the clocks go back the same hour comes twice: its
            # zone's name (BST, GMT) tells its two rounds apart.
            if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
                at = f"{local:%H:%M %Z}"
            return f"{self.get_frequency_display()} digest of {self.period}, {at}"
        if self.kind == self.Kind.CORRECTION:
            return f"{self.post_update.get_kind_display()} to “{self.post}”"
        return f"Announcement of “{self.post}”"


class Batch(models.Model):
    """A slice of a mailing's audience, claimed and sent by one task at a time."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        DONE = "done", "Done"
        # Some of it may or may not have reached the provider (a connection that
        # dropped after the request, a worker that died mid-send). Never resent
        # automatically: the author reviews it in the admin.
        UNCERTAIN = "uncertain", "Uncertain"
        CANCELLED = "cancelled", "Cancelled"

    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="batches"
    )
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    # When the batch was last queued or claimed (or its claim renewed), or when its
    # retry is due; the reaper's clock.
    touched_at = models.DateTimeField(default=timezone.now)
    # When its latest attempt was claimed, and so its email rendered: its readers
    # were sent the post as it was then, whenever the provider answered (a
    # correction confirmed meanwhile is for them: corrections.py).
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Counts from the ledger, written when an attempt ends, so progress is a sum
    # over batches instead of a count over every delivery.
    size = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    uncertain = models.PositiveIntegerField(default=0)
    # Of those sent and failed, readers who erased their data since: their rows
    # went with them, and a recount (settling the batch, a retry) keeps counting
    # them (subscriptions.subscriber_delete).
    erased_sent = models.PositiveIntegerField(default=0)
    erased_failed = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["mailing", "number"], name="batch_unique")
        ]
        indexes = [
            models.Index(fields=["status", "touched_at"]),
            models.Index(fields=["mailing", "status"]),
        ]

    def __str__(self) -> str:
        return f"Batch {self.number} of {self.mailing}"


class DeliveryQuerySet(models.QuerySet):
    def carrying(self, post: Post) -> "DeliveryQuerySet":
        """Deliveries that carried the post: its announcement, or a digest that
        held it. Read through the mailings that carried it, so the rows read are
        those mailings', however long the ledger grows."""
        announcement = Mailing.objects.filter(kind=Mailing.Kind.POST, post=post)
        rounds = Mailing.digest_posts.through.objects.filter(post=post)
        # One list of mailings, not a condition on each: PostgreSQL then reads
        # them through the (mailing, subscriber) index.
        mailings = (
            announcement.order_by().values("pk").union(rounds.values("mailing_id"))
        )
        held = Delivery.posts.through.objects.filter(post=post)
        return self.filter(mailing__in=mailings).filter(
            models.Q(mailing__kind=Mailing.Kind.POST)
            | models.Q(pk__in=held.values("delivery_id"))
        )

    def received(self) -> "DeliveryQuerySet":
        """Handed to the provider, or on the way: all but the refused and skipped."""
        return self.exclude(
            status__in=[Delivery.Status.FAILED, Delivery.Status.SKIPPED]
        )


class Delivery(models.Model):
    """The ledger: one row per (mailing, subscriber), the outcome for that person."""

    # The provider's events that make a bounce, as the desk and the reports count
    # them: a refusal or a bounce (hard or soft). A deferral ("try later") is a
    # delay the provider retries, not a bounce.
    BOUNCE_EVENTS = ("bounced", "rejected")
    # Of those, the reader's mail provider refusing our sender (sender_refused),
    # the publication's fault, and the rest, the readers' bounces.
    SENDER_REFUSALS = models.Q(last_event__in=BOUNCE_EVENTS, sender_refused=True)
    READERS_BOUNCES = models.Q(last_event__in=BOUNCE_EVENTS, sender_refused=False)
    # Taken by the provider, but its latest word is that the email never
    # reached the reader: it bounced (their mailbox, or our sender refused) or
    # was dropped ("failed": Mailgun, for an address on its lists).
    NEVER_ARRIVED = models.Q(last_event__in=(*BOUNCE_EVENTS, "failed"))
    # The provider's events that say what became of the message, the only ones
    # kept as its last_event. Not an out-of-office reply (Postmark's
    # AutoResponder, after the delivery: the email arrived), nor a change to the
    # address's standing (an author reactivating a bounced address: the message
    # still bounced), nor opens and clicks, which are counted apart: any of them
    # took a delivery, bounce or complaint out of the report and the desk.
    OUTCOME_EVENTS = (
        "delivered",
        "deferred",
        *BOUNCE_EVENTS,
        "failed",
        "complained",
        "unsubscribed",
    )
    # Of those, the ones that prove the provider took the message: the receiving
    # server answered for it, or the reader's mail system did. Not a rejection
    # or a failure (the provider may have refused it at its API), nor an
    # unsubscribe (a change to the address's standing, maybe the author's own).
    OUTCOME_EVENTS_TAKEN = ("delivered", "deferred", "bounced", "complained")
    # Why a reader is skipped whose batch waited in the queue when the author
    # cancelled its mailing (ledger.batches_cancel); sending a correction after
    # all queues them again (ledger.batches_requeue_cancelled).
    MAILING_CANCELLED = "mailing cancelled"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        UNCERTAIN = "uncertain", "Uncertain"
        SKIPPED = "skipped", "Skipped"

    # No index of their own: the unique (mailing, subscriber) and the (batch,
    # status) indexes cover these, and every index costs planning time per row.
    mailing = models.ForeignKey(
        Mailing, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    batch = models.ForeignKey(
        Batch, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="deliveries"
    )
    # What a digest held for this reader (a post's announcement holds its post).
    posts = models.ManyToManyField(Post, related_name="digest_deliveries", blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED
    )
    esp_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The latest tracking event the ESP reported for this message (webhooks.py).
    last_event = models.CharField(max_length=20, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    # The last event is the reader's mail provider refusing our sender (its
    # domain's authentication, its reputation), not the reader's address: the
    # desk and the reports count it apart from the readers' bounces.
    sender_refused = models.BooleanField(default=False)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["mailing", "subscriber"], name="delivery_once_per_subscriber"
            )
        ]
        indexes = [
            models.Index(fields=["batch", "status"]),
            # The provider's events name their message (webhooks.py): without it,
            # each event read the whole ledger. Only rows the provider answered
            # for carry an id: the queued and refused stay out of it.
            models.Index(
                fields=["esp_message_id"],
                condition=~models.Q(esp_message_id=""),
                name="delivery_by_message_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mailing} to {self.subscriber}: {self.get_status_display()}"


class LinkQuerySet(models.QuerySet):
    def of_post(self, post: Post) -> "LinkQuerySet":
        """The post's links in every email that carried it: all of its
        announcement's and its corrections', and each digest's link to the post
        (a digest's other links are the other posts'), at the address the post
        had when the digest went: its slug since changed, a digest's link is to
        a former one (still leading to the post)."""
        rounds = Mailing.digest_posts.through.objects.filter(post=post)
        before, after = (
            settings.SITE_URL + Post(slug="--slug--").get_absolute_url()
        ).split("--slug--")
        former = post.former_slugs.annotate(
            url=Concat(
                models.Value(before),
                "slug",
                models.Value(after),
                output_field=models.CharField(),
            )
        ).values("url")
        return self.filter(
            models.Q(mailing__post=post)
            | models.Q(
                models.Q(url=settings.SITE_URL + post.get_absolute_url())
                | models.Q(url__in=former),
                mailing_id__in=rounds.values("mailing_id"),
            )
        )


class Link(models.Model):
    """A link in a mailing, sent through the site's redirect (engagement.py), and
    how often people and machines followed it. Counts only: no reader is recorded.
    """

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="links")
    # The address as the email has it: the key the mailing's batches find their
    # Link by, and the report groups by, even after the author fixes it.
    url = models.CharField(max_length=2000)
    # The link no person can see (hidden in the HTML, and from screen readers):
    # whatever follows it is a machine.
    hidden = models.BooleanField(default=False)
    people = models.PositiveIntegerField(default=0)
    machines = models.PositiveIntegerField(default=0)
    # Where the author sent the link instead, after the email went out (a broken
    # report link), and who and when: engagement.link_fix.
    fixed_url = models.CharField(max_length=2000, blank=True)
    fixed_at = models.DateTimeField(null=True, blank=True)
    fixed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = LinkQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["mailing", "url", "hidden"], name="link_once_per_mailing"
            )
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def target(self) -> str:
        """Where the redirect takes whoever follows the link."""
        return self.fixed_url or self.url


class MailingHourQuerySet(models.QuerySet):
    def record(self, *, mailing_id: int, at: datetime, **changes: int) -> None:
        """Add to a mailing's counts for the clock hour (UTC) of `at`, such as
        clicks_people=1: one UPDATE, and an INSERT the first time in that hour."""
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        row = self.filter(mailing_id=mailing_id, hour=hour)
        added = {name: models.F(name) + n for name, n in changes.items()}
        if not row.update(**added):
            # Another click in the same hour may have made it first.
            self.bulk_create(
                [MailingHour(mailing_id=mailing_id, hour=hour)], ignore_conflicts=True
            )
            row.update(**added)

    def clicks_add(self, changes: list[tuple[int, int, int, int]]) -> None:
        """Add clicks, as (link id, hour since 1970 UTC, people, machines), to
        their mailings' hours: two queries, and one more per new hour."""
        mailing_of = dict(
            Link.objects.filter(pk__in={change[0] for change in changes}).values_list(
                "pk", "mailing_id"
            )
        )
        totals: dict[tuple[int, int], list[int]] = {}
        for link_id, hour, people, machines in changes:
            if link_id not in mailing_of:
                continue  # a link deleted since its click was counted
            total = totals.setdefault((mailing_of[link_id], hour), [0, 0])
            total[0] += people
            total[1] += machines
        for (mailing_id, hour), (people, machines) in sorted(totals.items()):
            self.record(
                mailing_id=mailing_id,
                at=datetime.fromtimestamp(hour * 3600, UTC),
                clicks_people=people,
                clicks_machines=machines,
            )


class MailingHour(models.Model):
    """A mailing's opens and clicks in one clock hour, people and machines apart:
    the post report's chart of the first 72 hours. Counts only: no reader is
    recorded."""

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="hours")
    hour = models.DateTimeField()
    opens_people = models.IntegerField(default=0)
    opens_machines = models.IntegerField(default=0)
    # Signed, as a change may be: clicks a scanner's burst turns from people's
    # into machines' are moved in their own hour.
    clicks_people = models.IntegerField(default=0)
    clicks_machines = models.IntegerField(default=0)

    objects = MailingHourQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailing", "hour"], name="one_row_per_hour")
        ]

    def __str__(self) -> str:
        return f"{self.mailing} at {self.hour:%Y-%m-%d %H:00}"


class ClickCountBatch(models.Model):
    """A batch of click counts taken from the cache and added to Link rows
    (engagement.click_counts_flush): added in the same transaction, its row says
    so, and a batch is never added twice."""

    batch = models.CharField(max_length=64, unique=True)
    added_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.batch


class Engagement(models.Model):
    """An open or a click by a reader who agreed to per-reader engagement, with
    NEWSLETTER_PER_READER_ENGAGEMENT on; nobody else's is kept (engagement.py)."""

    class Kind(models.TextChoices):
        OPEN = "open", "Opened"
        CLICK = "click", "Followed a link"

    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="engagements"
    )
    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    link = models.ForeignKey(
        Link, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField()
    machine = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["subscriber", "at"])]

    def __str__(self) -> str:
        return f"{self.subscriber}: {self.get_kind_display()} {self.at:%Y-%m-%d %H:%M}"


class PostReport(Post):
    """A post as the author's desk reports on it (admin/reports.py): what happened
    to its emails. Its own model so that seeing reports is a permission."""

    class Meta:
        proxy = True
        verbose_name = "post report"


class DigestSettings(models.Model):
    """When the digests go out for readers who have not chosen: one row, edited in
    the admin."""

    Weekday = Weekday

    hour = models.PositiveSmallIntegerField(
        default=7,
        validators=[MaxValueValidator(23)],
        help_text="Hour of the day (0 to 23) when digests go out, in each reader's "
        "time zone, for readers who have not chosen their own.",
    )
    weekday = models.PositiveSmallIntegerField(
        "weekly digest day", choices=Weekday.choices, default=Weekday.MONDAY
    )

    class Meta:
        verbose_name = verbose_name_plural = "digest settings"

    def __str__(self) -> str:
        return f"Daily at {self.hour:02}:00, weekly on {self.get_weekday_display()}"

    @classmethod
    def load(cls) -> "DigestSettings":
        """The author's row, or the fields' defaults, unsaved, until they add it in
        the admin: every caller only reads, and a page, a refused form or the beat
        must change nothing."""
        return cls.objects.order_by("pk").first() or cls()


class OwedCommentDigest(models.Model):
    """A moderator's copy of a comments digest, not yet sent.

    Written for every moderator with the digest's claim of its comments, and
    deleted as it is taken to send: a digest that stops partway (the provider
    down, the worker killed) owes the moderators not reached, and never sends the
    others it again. Given back only when the provider clearly refused it.
    """

    # Which digest: its comments are those the moderators were told of then
    # (Comment.moderators_notified_at).
    reported_at = models.DateTimeField()
    email = models.EmailField(max_length=254)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reported_at", "email"], name="one_digest_copy_a_mailbox"
            )
        ]

    def __str__(self) -> str:
        return f"Comments digest of {self.reported_at:%Y-%m-%d %H:%M}"
