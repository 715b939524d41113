import datetime
import math

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.db.models.functions import Concat
from django.urls import reverse
from django.utils import timezone
from django.utils.text import Truncator

from .images import upload_name
from .markdown import plain_text, render_markdown, word_count
from .signals import shown_with_posts_changed
from .validators import reject_control_characters, reject_control_characters_in_text

# Adult silent reading speed; a reading time is a courtesy, not a promise.
WORDS_PER_MINUTE = 230

# A post without an excerpt is summed up by its opening: a paragraph, enough to
# choose by.
SUMMARY_WORDS = 60

# A link readers follow from a page: URLField alone also takes ftp(s), which no
# current browser opens. A code of its own, or a form would show its own "Enter a
# valid URL." for it.
web_address = URLValidator(
    schemes=["http", "https"],
    message="Link to an http or https address.",
    code="not_web_address",
)


class ShownWithPostsQuerySet(models.QuerySet):
    """update() says so (shown_with_posts_changed), as save() does by post_save: a
    bulk update (a script, an admin action, bulk_update()) sends none, and the
    pages showing posts kept the old name or sponsor line until they expired."""

    def update(self, **kwargs) -> int:
        updated = super().update(**kwargs)
        if updated:
            shown_with_posts_changed.send(sender=self.model)
        return updated


class ListedQuerySet(ShownWithPostsQuerySet):
    def filed_under(self, posts: "PostQuerySet") -> models.Exists:
        """Whether one of these posts is filed under each: to filter or annotate by."""
        filed = models.Q()
        for path in self.model.paths_from_posts:
            filed |= models.Q(**{path: models.OuterRef("pk")})
        return models.Exists(posts.filter(filed))

    def with_published_posts(self) -> "ListedQuerySet":
        """Those whose page a reader may see: a published post is filed under them.
        One made for a post still in draft, in review or scheduled stays unknown
        until the post goes live: which area or provider is next is news while
        the inspection's report is under embargo."""
        return self.filter(self.filed_under(Post.objects.published()))

    def followable(self) -> "ListedQuerySet":
        """What a reader may follow: those with a published post, and those with
        no post yet (a reader may follow a provider before its first inspection
        is reported); not one only posts yet to go live are filed under."""
        return self.filter(
            self.filed_under(Post.objects.published())
            | ~self.filed_under(Post.objects.all())
        )


class Listed(models.Model):
    """Something posts are filed under, listed at /<url_name>/<slug>/."""

    url_name: str  # the posts: URL of its listing
    paths_from_posts: tuple[str, ...]  # Post lookups that reach it

    name = models.CharField(
        max_length=100, unique=True, validators=[reject_control_characters]
    )
    slug = models.SlugField(max_length=100, unique=True)

    objects = ListedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse(f"posts:{self.url_name}", kwargs={"slug": self.slug})


class Region(Listed):
    url_name = "region"
    paths_from_posts = ("inspections__area__region",)


class Area(Listed):
    """The place an inspection covers, e.g. Suffolk, within a region."""

    url_name = "area"
    paths_from_posts = ("inspections__area",)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="areas")


class Organisation(Listed):
    class Kind(models.TextChoices):
        CRC = "crc", "Community Rehabilitation Company"
        NPS = "nps", "National Probation Service division"
        PDU = "pdu", "Probation delivery unit"
        YOT = "yot", "Youth offending team"
        OWNER = "owner", "Owner or partner"
        OTHER = "other", "Other"

    url_name = "organisation"
    # Its own inspections, and those of what it owned (its page lists both).
    paths_from_posts = (
        "inspections__organisations",
        "inspections__organisations__owners",
    )
    name = models.CharField(
        max_length=200, unique=True, validators=[reject_control_characters]
    )
    slug = models.SlugField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.OTHER)
    # A CRC was owned by a company or a partnership (Sodexo Justice Services with
    # Nacro); an owner's page lists the inspections of everything it owned.
    owners = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="owned"
    )


class SavedAtOnUpdate(ShownWithPostsQuerySet):
    """update() sets saved_at, as save() does (auto_now): a bulk update (a script,
    an admin action, bulk_update()) would leave it behind, and SponsorshipQuerySet.
    last_change with it: a worker would go on sending the old sponsor line."""

    def update(self, **kwargs) -> int:
        kwargs.setdefault("saved_at", timezone.now())  # unless the caller sets it
        return super().update(**kwargs)


class CategoryQuerySet(SavedAtOnUpdate, ListedQuerySet):
    pass


class Category(Listed):
    url_name = "category"
    paths_from_posts = ("categories",)
    # Read by SponsorshipQuerySet.last_change: a sponsor's line names the category.
    saved_at = models.DateTimeField(auto_now=True)

    objects = CategoryQuerySet.as_manager()

    class Meta(Listed.Meta):
        verbose_name_plural = "categories"


class Tag(Listed):
    url_name = "tag"
    paths_from_posts = ("tags",)


class PostQuerySet(models.QuerySet):
    def published(self) -> "PostQuerySet":
        """Posts a reader may see: published, and their publication time has come."""
        return self.filter(
            status=Post.Status.PUBLISHED, published_at__lte=timezone.now()
        )

    def scheduled(self, *, as_of: datetime.datetime | None = None) -> "PostQuerySet":
        """Posts published for a time still to come: after `as_of`, by default now."""
        return self.filter(
            status=Post.Status.PUBLISHED, published_at__gt=as_of or timezone.now()
        )

    def in_region(self, region: "Region") -> "PostQuerySet":
        return self.filter(inspections__area__region=region).distinct()

    def in_area(self, area: "Area") -> "PostQuerySet":
        return self.filter(inspections__area=area).distinct()

    def about_organisation(self, organisation: "Organisation") -> "PostQuerySet":
        """Posts on the organisation's inspections, or on anything it owned."""
        return self.filter(
            models.Q(inspections__organisations=organisation)
            | models.Q(inspections__organisations__owners=organisation)
        ).distinct()

    def for_listing(self) -> "PostQuerySet":
        """What a list of posts shows, in a fixed number of queries."""
        return self.select_related("author").prefetch_related("categories")

    def due_for_announcement(self) -> "PostQuerySet":
        return self.published().filter(announced_at__isnull=True)

    def back_at_scheduled_time(self) -> "PostQuerySet":
        """Posts announced before, taken down since and scheduled again, whose
        time has come: their history's last step is still "Scheduled"."""
        last_step = PostEvent.objects.filter(post=models.OuterRef("pk")).order_by(
            "-at", "-id"
        )
        return (
            self.published()
            .filter(announced_at__isnull=False)
            .annotate(last_step=models.Subquery(last_step.values("kind")[:1]))
            .filter(last_step=PostEvent.Kind.SCHEDULED)
        )

    def locked(self) -> list["Post"]:
        """These posts, read as they are now and locked until the transaction
        ends (FOR UPDATE, as post_save_from_desk locks the one it saves): what
        an action does to several is decided on them as they stand, not as a
        list read before another editor's change. In the order of their ids:
        two desks locking some of the same posts take them in one order, and
        neither waits for the other for good. Filter on the posts' own columns
        only: PostgreSQL checks those again on a post changed while it waited."""
        return list(self.select_for_update().order_by("pk"))

    def topic_keys(self) -> dict[int, set[tuple[str, str]]]:
        """What a reader may follow that each of these posts is about, as (kind,
        value) pairs, by post id (a post about nothing followable is missing): its
        categories; each inspection's area and that area's region; each
        organisation inspected and the organisations owning it; each inspection's
        overall rating and its ratings on single standards. Five statements
        however many posts."""
        keys: dict[int, set[tuple[str, str]]] = {}
        categories = Post.categories.through.objects.filter(post__in=self)
        for post_id, slug in categories.values_list("post_id", "category__slug"):
            keys.setdefault(post_id, set()).add(("category", slug))
        inspections = (
            Inspection.objects.filter(post__in=self)
            .select_related("area__region")
            .prefetch_related("organisations__owners", "ratings")
        )
        for inspection in inspections:
            post_keys = keys.setdefault(inspection.post_id, set())
            if inspection.area is not None:
                post_keys.add(("area", inspection.area.slug))
                post_keys.add(("region", inspection.area.region.slug))
            for organisation in inspection.organisations.all():
                post_keys.add(("organisation", organisation.slug))
                post_keys.update(
                    ("organisation", o.slug) for o in organisation.owners.all()
                )
            post_keys.add(("rating", inspection.overall))
            post_keys.update(("rating", r.rating) for r in inspection.ratings.all())
        return keys

    def in_review(self) -> "PostQuerySet":
        return self.filter(status=Post.Status.REVIEW)

    def visible_to(self, user) -> "PostQuerySet":
        """A reviewer's desk holds every post; anyone else's, only their own."""
        if user.has_perm("posts.review_post"):
            return self
        return self.filter(author=user)

    def editable_by(self, user) -> "PostQuerySet":
        """What the user may change: a reviewer, any post; anyone else, their own
        until it is published (then a change would skip the review)."""
        if user.has_perm("posts.review_post"):
            return self
        return self.filter(author=user).exclude(status=Post.Status.PUBLISHED)


class Post(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        REVIEW = "review", "In review"
        # A published post whose published_at is still to come is scheduled.
        PUBLISHED = "published", "Published"

    class EmailFormat(models.TextChoices):
        FULL = "full", "The whole post"
        EXCERPT = "excerpt", "The excerpt, with a link to read on the site"

    title = models.CharField(max_length=200, validators=[reject_control_characters])
    slug = models.SlugField(max_length=200, unique=True)
    excerpt = models.TextField(
        blank=True,
        help_text="One or two sentences for listings and email previews.",
        validators=[reject_control_characters_in_text],
    )
    body = models.TextField(
        help_text="Markdown.", validators=[reject_control_characters_in_text]
    )
    # Rendered and sanitised once on save; pages and emails use this.
    body_html = models.TextField(editable=False, default="")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="posts",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DRAFT
    )
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Leave empty to publish now; a future time schedules the post.",
    )
    email_subscribers = models.BooleanField(
        "email to subscribers",
        default=True,
        help_text="Send this post to subscribers when it is published.",
    )
    email_format = models.CharField(
        "in the email",
        max_length=10,
        choices=EmailFormat.choices,
        default=EmailFormat.FULL,
        help_text="A post too long for an inbox (Gmail clips past about 100 KB) "
        "is sent as its excerpt whatever this says.",
    )
    featured_image = models.ImageField(
        upload_to=upload_name,
        blank=True,
        width_field="featured_image_width",
        height_field="featured_image_height",
    )
    featured_image_alt = models.CharField(
        "alt text",
        max_length=300,
        blank=True,
        help_text="What the image shows, for readers who cannot see it. Required "
        "with an image.",
        validators=[reject_control_characters],
    )
    featured_image_width = models.PositiveIntegerField(null=True, editable=False)
    featured_image_height = models.PositiveIntegerField(null=True, editable=False)
    categories = models.ManyToManyField(Category, blank=True, related_name="posts")
    tags = models.ManyToManyField(Tag, blank=True, related_name="posts")
    # What the post shows beside its text, kept by posts.search.index_post so that
    # search covers it: its inspections' facts (area, region, organisations, the
    # standards rated, key findings, type), the byline, categories, tags,
    # corrections and the years of its inspections and publication
    # (posts.search.search_facts).
    search_facts = models.TextField(editable=False, default="")
    # The body's words without Markdown or HTML (posts.markdown.plain_text), kept by
    # index_post: search snippets are cut from it.
    search_text = models.TextField(editable=False, default="")
    # PostgreSQL only (always empty on SQLite, which searches an FTS5 table): the
    # weighted document of posts.search, stored so that ranking does not re-parse
    # every matching post, and GIN-indexed by migration 0002.
    search_vector = SearchVectorField(null=True, editable=False)
    # When readers were told of this post (post_published sent). Set exactly once.
    announced_at = models.DateTimeField(null=True, editable=False)
    # When its link check was rung, until the check has run (posts.links): beat
    # rings again a check the broker lost (down then, or restarted since).
    links_check_rung_at = models.DateTimeField(null=True, editable=False)
    # By beat, since the author's ring: those rung again least go first, and those
    # rung too often are given up (services.posts_to_check_again).
    links_check_rung_again = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PostQuerySet.as_manager()

    # The long text columns, the bulk of a post's row: a list of posts that
    # shows their titles and links defers them.
    TEXT_FIELDS = ("body", "body_html", "search_facts", "search_text", "search_vector")

    class Meta:
        ordering = ["-published_at", "-id"]
        indexes = [models.Index(fields=["status", "published_at"])]
        # Roles are groups holding these (and the model's default) permissions;
        # code asks for the permission, never for the group.
        permissions = [
            ("review_post", "Can review, edit and approve anyone's posts"),
            ("publish_post", "Can publish, schedule and unpublish posts"),
            ("email_post", "Can choose whether a post is emailed to readers"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(featured_image="")
                | ~models.Q(featured_image_alt=""),
                name="featured_image_has_alt_text",
                violation_error_message="Describe the featured image in its alt text.",
            )
        ]

    def __str__(self) -> str:
        return self.title

    def save(self, *args, **kwargs) -> None:
        self.body_html = render_markdown(self.body)
        if "body" in (kwargs.get("update_fields") or ()):
            kwargs["update_fields"] = {*kwargs["update_fields"], "body_html"}
        super().save(*args, **kwargs)
        # Like body_html, the search entry is derived data kept current on save;
        # inspection changes re-index through the same function (admin, seed_demo).
        from .search import index_post

        index_post(self)

    def get_absolute_url(self) -> str:
        return reverse("posts:detail", kwargs={"slug": self.slug})

    def clean(self) -> None:
        # A time to come would take a live post off the site unannounced (its
        # address a 404 while its emails still go out) and bring it back unannounced.
        # Taking it down is going back to draft, which pauses its emails.
        scheduling = (
            self.status == self.Status.PUBLISHED
            and self.published_at is not None
            and self.published_at > timezone.now()
        )
        if scheduling and Post.objects.published().filter(pk=self.pk).exists():
            raise ValidationError(
                {
                    "published_at": "This post is already live: its publication "
                    "time cannot be in the future. To take it off the site, set "
                    "it back to draft."
                }
            )

    def first_seen_on(self) -> datetime.date:
        """The day readers first see the post: today, or the later day it is
        scheduled for (its email goes then)."""
        now = timezone.now()
        return timezone.localdate(max(now, self.published_at or now))

    def sponsors(self, on: datetime.date | None = None) -> list["Sponsorship"]:
        """Who sponsors this post's categories on that day, in the order of_posts
        gives; by default on the day readers first see the post (its email goes
        then, and the author's preview of it names those sponsors)."""
        day = on or self.first_seen_on()
        return Sponsorship.objects.of_posts({self.pk: day}).get(self.pk, [])

    def topic_keys(self) -> set[tuple[str, str]]:
        """What a reader may follow that this post is about, as (kind, value) pairs
        (PostQuerySet.topic_keys)."""
        return Post.objects.filter(pk=self.pk).topic_keys().get(self.pk, set())

    @property
    def byline(self) -> str:
        """The author's name as the post shows it; empty once the account is gone."""
        if self.author is None:
            return ""
        return self.author.get_full_name() or self.author.get_username()

    @property
    def summary(self) -> str:
        """What a reader is told of the post before they open it, in its email
        and in a digest: the author's excerpt, or the body's first words as a
        reader sees them (plain text: the templates escape it where needed)."""
        return self.excerpt or Truncator(plain_text(self.body_html)).words(
            SUMMARY_WORDS
        )

    @property
    def reading_minutes(self) -> int:
        # The words the page shows: counted in the Markdown as typed, a link's
        # address and a note in an HTML comment took a reader time too.
        words = word_count(plain_text(self.body_html))
        return max(1, math.ceil(words / WORDS_PER_MINUTE))

    def is_editable_by(self, user) -> bool:
        """The rule of PostQuerySet.editable_by, for one post in hand."""
        return user.has_perm("posts.review_post") or (
            self.author_id == user.pk and self.status != self.Status.PUBLISHED
        )

    def last_day_for_its_report(self) -> datetime.date:
        """The last day a report this post is about may be dated, the post
        published as it stands: the day it goes live (a time to come), else today.
        A post is written under the report's embargo and scheduled for its day, so
        a date to come is right until then; live sooner, the post would show as
        out a report that is not."""
        goes_live = timezone.localdate(self.published_at or timezone.now())
        return max(goes_live, timezone.localdate())

    @property
    def is_published(self) -> bool:
        return (
            self.status == self.Status.PUBLISHED
            and self.published_at is not None
            and self.published_at <= timezone.now()
        )


class FormerSlug(models.Model):
    """An address a post was read under before the author changed its slug: the
    emails, feeds and other sites that carry it still lead to the post. A post
    that takes the slug later has it for its own."""

    slug = models.SlugField(max_length=200, unique=True)
    post = models.ForeignKey(
        Post, on_delete=models.CASCADE, related_name="former_slugs"
    )

    def __str__(self) -> str:
        return self.slug


class PostEvent(models.Model):
    """One step of a post's way to readers: who did it, and when."""

    class Kind(models.TextChoices):
        SUBMITTED = "submitted", "Submitted for review"
        RETURNED = "returned", "Returned to draft"
        APPROVED = "approved", "Approved"
        SCHEDULED = "scheduled", "Scheduled"
        PUBLISHED = "published", "Published"
        UNPUBLISHED = "unpublished", "Unpublished"
        # Set back to draft before its time came: it was never live.
        UNSCHEDULED = "unscheduled", "Unscheduled"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Empty when the account is gone, or for the schedule's own publication.
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    at = models.DateTimeField(default=timezone.now)
    # For a scheduled post: when it goes out.
    for_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.post}"


class Rating(models.TextChoices):
    OUTSTANDING = "outstanding", "Outstanding"
    GOOD = "good", "Good"
    REQUIRES_IMPROVEMENT = "requires_improvement", "Requires improvement"
    INADEQUATE = "inadequate", "Inadequate"
    # Before 2018 the inspectorate gave narrative judgements, not grades.
    NARRATIVE = "narrative", "Narrative (not rated)"


class InspectionQuerySet(models.QuerySet):
    def of_published_posts(self) -> "InspectionQuerySet":
        return self.filter(
            post__status=Post.Status.PUBLISHED, post__published_at__lte=timezone.now()
        )


class Inspection(models.Model):
    """One inspection report a post discusses."""

    class Type(models.TextChoices):
        LOCAL = "local", "Local"
        THEMATIC = "thematic", "Thematic"
        JOINT = "joint", "Joint"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="inspections")
    inspectorate = models.CharField(
        max_length=200,
        default="HM Inspectorate of Probation",
        validators=[reject_control_characters],
    )
    title = models.CharField(
        "report title", max_length=300, validators=[reject_control_characters]
    )
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.LOCAL)
    area = models.ForeignKey(
        Area,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="inspections",
        help_text="Empty for a national (thematic) inspection.",
    )
    organisations = models.ManyToManyField(
        Organisation, blank=True, related_name="inspections"
    )
    fieldwork_start = models.DateField(null=True, blank=True)
    fieldwork_end = models.DateField(null=True, blank=True)
    published_on = models.DateField("report published", null=True, blank=True)
    report_url = models.URLField(
        "official report",
        max_length=500,
        blank=True,
        validators=[web_address, reject_control_characters],
    )
    overall = models.CharField(
        "overall rating",
        max_length=20,
        choices=Rating.choices,
        default=Rating.NARRATIVE,
    )
    recommendations = models.PositiveSmallIntegerField(
        "number of recommendations", null=True, blank=True
    )
    key_findings = models.TextField(
        blank=True,
        help_text="One finding per line.",
        validators=[reject_control_characters_in_text],
    )

    objects = InspectionQuerySet.as_manager()

    class Meta:
        # The latest report first, as the post's page and its email's fact box
        # show them; one not yet reported last on every database (PostgreSQL
        # sorts NULL first in a descending order, SQLite last).
        ordering = [models.F("published_on").desc(nulls_last=True), "id"]
        indexes = [models.Index(fields=["overall"])]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        # The fact box shows these dates as typed: one mistyped made the
        # inspection end before it began, or its report come out before it.
        start, end, report = self.fieldwork_start, self.fieldwork_end, self.published_on
        errors = {}
        if start and end and end < start:
            errors["fieldwork_end"] = "Fieldwork cannot end before it starts."
        if report and (end or start) and report < (end or start):
            errors["published_on"] = (
                "The report cannot come out before the fieldwork it reports on."
            )
        latest = self._latest_report_date()
        if report and latest and report > latest:
            errors["published_on"] = (
                "The report cannot come out after the post about it: date it "
                f"{latest.day} {latest:%B %Y} at the latest, or schedule the post "
                "for the day the report comes out."
            )
        if errors:
            raise ValidationError(errors)

    def _latest_report_date(self) -> datetime.date | None:
        """The last day its report may be dated (Post.last_day_for_its_report);
        None while its post is not published or scheduled."""
        post = getattr(self, "post", None)  # none yet on a form not yet valid
        if post is None or post.status != Post.Status.PUBLISHED:
            return None
        return post.last_day_for_its_report()

    @property
    def fieldwork_said(self) -> list[tuple[str, datetime.date]]:
        """The fieldwork's days as its fact box says them (on the page, in the
        feed and in the email), each after its words: either day may be unknown,
        and one alone says which it is."""
        start, end = self.fieldwork_start, self.fieldwork_end
        if start and end:
            return [("", start), (" to ", end)]
        if start:
            return [("began ", start)]
        if end:
            return [("ended ", end)]
        return []

    @property
    def key_findings_list(self) -> list[str]:
        return [line.strip() for line in self.key_findings.splitlines() if line.strip()]


class StandardRating(models.Model):
    """The judgement on one standard of an inspection framework."""

    inspection = models.ForeignKey(
        Inspection, on_delete=models.CASCADE, related_name="ratings"
    )
    standard = models.CharField(max_length=200, validators=[reject_control_characters])
    rating = models.CharField(max_length=20, choices=Rating.choices)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        indexes = [models.Index(fields=["rating"])]
        constraints = [
            models.UniqueConstraint(
                fields=["inspection", "standard"], name="one_rating_per_standard"
            )
        ]

    def __str__(self) -> str:
        return f"{self.standard}: {self.get_rating_display()}"


class RelatedLink(models.Model):
    """A link the author makes from one post to another, shown in an order."""

    class Type(models.TextChoices):
        FOLLOW_UP = "follow_up", "Follow-up"
        REINSPECTION = "reinspection", "Re-inspection of the same provider"
        SAME_AREA = "same_area", "Same area"
        SAME_THEME = "same_theme", "Same theme"
        SEE_ALSO = "see_also", "See also"

    # Shown on the target post too; a follow-up or re-inspection reads one way only.
    SYMMETRIC_TYPES = frozenset({Type.SAME_AREA, Type.SAME_THEME, Type.SEE_ALSO})

    from_post = models.ForeignKey(
        Post, on_delete=models.CASCADE, related_name="links_out"
    )
    to_post = models.ForeignKey(
        Post, on_delete=models.CASCADE, related_name="links_in", verbose_name="post"
    )
    type = models.CharField(max_length=20, choices=Type.choices)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["from_post", "to_post"], name="related_link_once"
            ),
            models.CheckConstraint(
                condition=~models.Q(from_post=models.F("to_post")),
                name="related_link_not_to_itself",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_post} → {self.to_post} ({self.get_type_display()})"

    def clean(self) -> None:
        # The constraint's own check is skipped by the post's inline (its post is
        # left out of the model's checks), which would leave it to the database.
        if self.from_post_id is not None and self.from_post_id == self.to_post_id:
            raise ValidationError(
                {"to_post": "A post cannot be related to itself."},
                code="related_link_not_to_itself",
            )

    @property
    def is_symmetric(self) -> bool:
        return self.type in self.SYMMETRIC_TYPES


class SponsorshipQuerySet(SavedAtOnUpdate):
    def of_posts(
        self, days: dict[int, datetime.date]
    ) -> dict[int, list["Sponsorship"]]:
        """Who sponsors each post's categories on its day (`days`, by post id), by
        post id, in one statement for them all: a digest names its posts'
        sponsors together. A post in two sponsored categories names both, as
        each paid for its category's posts and readers are told of every one:
        the deal that started first first (booked first, if the same day), an
        order no renamed category or newly started deal changes."""
        # An unsaved post (no id) is in no category yet: "category__posts=None"
        # would find the categories without posts.
        days = {post_id: day for post_id, day in days.items() if post_id is not None}
        if not days:
            return {}
        on_its_day = models.Q(
            *(
                models.Q(category__posts=post_id, starts_on__lte=day, ends_on__gte=day)
                for post_id, day in days.items()
            ),
            _connector=models.Q.OR,
        )
        deals = (
            self.filter(on_its_day)
            .annotate(sponsored_post=models.F("category__posts"))
            .select_related("category")
            .order_by("starts_on", "id")
        )
        sponsors: dict[int, list[Sponsorship]] = {}
        for deal in deals:
            sponsors.setdefault(deal.sponsored_post, []).append(deal)
        return sponsors

    def last_change(self) -> models.Subquery:
        """An expression that changes whenever a deal is added, saved or deleted,
        or a sponsored category saved (renamed): their number and latest saves,
        for another statement to read along. A worker keeping a rendered email (a
        post's, a round's digest parts) renders it again when it changes, so that
        the batches sent next name the sponsors as they now are, at no statement
        of its own."""
        return models.Subquery(
            self.order_by()
            # values() then annotate() groups by the values (Django's aggregation
            # docs); grouped by a constant, which SQL needs no GROUP BY for, the
            # aggregates make one row of all the deals.
            .annotate(every_deal=models.Value(1))
            .values("every_deal")
            .annotate(
                changed=Concat(
                    models.Count("pk"),
                    models.Value(" "),
                    models.Max("saved_at"),
                    models.Value(" "),
                    models.Max("category__saved_at"),
                    output_field=models.CharField(),
                )
            )
            .values("changed")
        )


class Sponsorship(models.Model):
    """A sponsor of one category's posts for a date range (both days included)."""

    category = models.ForeignKey(
        Category, on_delete=models.CASCADE, related_name="sponsorships"
    )
    name = models.CharField(max_length=200, validators=[reject_control_characters])
    url = models.URLField(
        "link", max_length=500, validators=[web_address, reject_control_characters]
    )
    logo = models.ImageField(
        upload_to="sponsors/",
        blank=True,
        help_text="Optional; shown small, beside the sponsor's name, which says who "
        "they are: screen readers skip the logo.",
    )
    starts_on = models.DateField()
    ends_on = models.DateField()
    # Read by SponsorshipQuerySet.last_change.
    saved_at = models.DateTimeField(auto_now=True)

    objects = SponsorshipQuerySet.as_manager()

    class Meta:
        ordering = ["-starts_on", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_on__gte=models.F("starts_on")),
                name="sponsorship_ends_after_it_starts",
            )
        ]

    def __str__(self) -> str:
        return f"{self.posts_sponsored_by} {self.name}"

    @property
    def posts_sponsored_by(self) -> str:
        """The words before the sponsor's name, wherever its line is shown or
        sent (the page, the emails, the feeds): they say what the sponsor paid for."""
        return f"{self.category.name} posts sponsored by"

    def clean(self) -> None:
        # One sponsor of a category is shown on a day (Post.sponsors): a second
        # deal over days already sold would be paid for and one never seen.
        if None in (self.category_id, self.starts_on, self.ends_on):
            return  # refused by its own fields' errors
        in_the_way = (
            Sponsorship.objects.filter(
                category_id=self.category_id,
                starts_on__lte=self.ends_on,
                ends_on__gte=self.starts_on,
            )
            .exclude(pk=self.pk)
            .select_related("category")
            .first()
        )
        if in_the_way is not None:
            raise ValidationError(
                f"{in_the_way.name} sponsors {in_the_way.category} posts from "
                f"{in_the_way.starts_on:%-d %B %Y} to {in_the_way.ends_on:%-d %B %Y}, "
                "and one sponsor of a category is shown on a day: choose days "
                "outside theirs, or change their deal first.",
                code="sponsorship_days_taken",
            )


class PostImage(models.Model):
    """An image uploaded for use in a post's body (Markdown: ![alt](url))."""

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to=upload_name)
    alt = models.CharField(
        "alt text",
        max_length=300,
        help_text="What the image shows, for readers who cannot see it.",
        validators=[reject_control_characters],
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.alt


class ImageToResize(models.Model):
    """An uploaded image whose renditions a worker is to make (posts.images), until
    beat finds them made: it rings again one the broker lost (down then, or
    restarted since), where pages would otherwise show the original for good."""

    name = models.CharField(max_length=255, unique=True)  # in default_storage
    rung_at = models.DateTimeField(default=timezone.now)
    # By beat, the ring before lost or failed: those rung again least go first,
    # and those rung too often are given up (services.images_to_resize_again).
    rung_again = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class PostUpdate(models.Model):
    """A dated note on a published post: a correction or a later development."""

    class Kind(models.TextChoices):
        UPDATE = "update", "Update"
        CORRECTION = "correction", "Correction"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="updates")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.UPDATE)
    made_on = models.DateField("date", default=timezone.localdate)
    # What changed: the statement that was wrong and the right one, quoted, or a
    # note (or both). Plain text, shown on the post as written.
    wrong = models.TextField(
        "the post said", blank=True, validators=[reject_control_characters_in_text]
    )
    right = models.TextField(
        "it should say", blank=True, validators=[reject_control_characters_in_text]
    )
    note = models.TextField(
        blank=True,
        help_text="Plain text, shown as written.",
        validators=[reject_control_characters_in_text],
    )
    # When it was last saved: from then on the post shows it as it reads now,
    # wherever the post is shown whole. (`made_on` is the date it is shown
    # under, which the author chooses.) Empty for those saved before it was kept.
    saved_at = models.DateTimeField(auto_now=True, null=True)

    class Meta:
        ordering = ["made_on", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}, {self.made_on:%d %B %Y}"

    def clean(self) -> None:
        said, should_say = self.wrong.strip(), self.right.strip()
        # Both or neither: the post page and the emails quote them as a pair, so
        # one alone (beside a note) showed an empty "it should say", or nothing
        # of what the post said was wrong.
        if bool(said) != bool(should_say):
            raise ValidationError(
                "Give both what the post said and what it should say, or neither "
                "(and say what changed in the note)."
            )
        if not (said or self.note.strip()):
            raise ValidationError(
                "Say what changed: what the post said and what it should say, "
                "or a note."
            )


class LinkCheck(models.Model):
    """What the link checker found at one address a post links to (posts.links)."""

    class Outcome(models.TextChoices):
        OK = "ok", "Works"
        DEAD = "dead", "Dead"
        REFUSED = "refused", "Not checked: a private or local address"

    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="link_checks")
    url = models.TextField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    detail = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["post", "url"], name="link_checked_once")
        ]

    def __str__(self) -> str:
        return f"{self.url}: {self.get_outcome_display()}"
