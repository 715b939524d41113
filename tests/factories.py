import struct
import zlib
from datetime import datetime, timedelta
from io import BytesIO

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from newsletter.delivery import sender
from newsletter.delivery.provider import SEARCH_LAG
from newsletter.models import Batch, Subscriber
from posts.models import ImageToResize, Inspection, Post
from posts.services import RING_LOST_AFTER


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"author{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    is_staff = True
    is_superuser = True
    password = factory.django.Password("correct horse battery staple")


class StaffFactory(UserFactory):
    """A member of the desk in one role: StaffFactory(role="Editor"). The groups
    are made by the roles migration."""

    class Meta:
        skip_postgeneration_save = True

    is_superuser = False

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get(name=extracted))


class PostFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Post

    title = factory.Sequence(lambda n: f"Inspection of probation services in area {n}")
    slug = factory.Sequence(lambda n: f"inspection-{n}")
    excerpt = "Inspectors found caseloads too high and risk assessments too thin."
    body = "## Findings\n\nInspectors rated the service **Requires improvement**."
    status = Post.Status.DRAFT


class PublishedPostFactory(PostFactory):
    status = Post.Status.PUBLISHED
    published_at = factory.LazyFunction(timezone.now)
    announced_at = factory.LazyFunction(timezone.now)


class SubscriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subscriber

    email = factory.Sequence(lambda n: f"reader{n}@example.org")
    status = Subscriber.Status.ACTIVE
    # Every status but pending is reached by confirming (or by leaving after it):
    # a pending reader never confirmed.
    confirmed_at = factory.LazyAttribute(
        lambda reader: (
            None if reader.status == Subscriber.Status.PENDING else timezone.now()
        )
    )


def no_inline_rows(*prefixes: str) -> dict:
    """A desk form's inline formsets (by their prefixes), sent empty."""
    return {
        f"{prefix}-{field}": "0"
        for prefix in prefixes
        for field in ("TOTAL_FORMS", "INITIAL_FORMS")
    }


def confirm_link(message) -> str:
    """The confirmation link in a reader's confirmation email."""
    return next(
        line.strip()
        for line in message.body.splitlines()
        if "/subscribe/confirm/" in line
    )


def png(width: int, height: int, name: str = "photo.png") -> SimpleUploadedFile:
    """An image file as the desk's upload field receives it."""
    buffer = BytesIO()
    Image.new("RGB", (width, height), (30, 90, 150)).save(buffer, "PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def bomb(width: int, height: int) -> SimpleUploadedFile:
    """A one-bit black PNG: a few kilobytes on the wire, width by height pixels
    decoded. Written chunk by chunk, a row at a time: Pillow would hold a byte a
    pixel to save it (200 MB for 20,000 by 10,000)."""
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the row's bits
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height))
    pixels += compressor.flush()
    # Bit depth 1, greyscale, deflate, adaptive filtering, not interlaced.
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in ((b"IHDR", header), (b"IDAT", pixels), (b"IEND", b""))
    )
    return SimpleUploadedFile("bomb.png", png, content_type="image/png")


def rung_long_ago() -> None:
    """Rings as beat finds them, lost, a while later."""
    long_ago = timezone.now() - RING_LOST_AFTER - timedelta(seconds=1)
    ImageToResize.objects.update(rung_at=long_ago)
    Post.objects.exclude(links_check_rung_at=None).update(links_check_rung_at=long_ago)


def admin_post_form(**fields) -> dict:
    """What the admin's post form sends for a draft with no inlines; pass the
    fields a test cares about (title, slug, body, status, …)."""
    return {
        "title": "Court work in Kent",
        "slug": "court-work-in-kent",
        "excerpt": "Inspectors watched court work for a week.",
        "body": "Inspectors sat in on **court** work.",
        "status": "draft",
        "published_at_0": "",
        "published_at_1": "",
        "email_subscribers": "on",
        "email_format": "full",
        **no_inline_rows("inspections", "links_out", "images", "updates"),
        **fields,
    }


def uncertain_long_enough_to_ask(*batches) -> None:
    """The clock moved on past provider.SEARCH_LAG for these uncertain batches:
    as if they turned uncertain that long ago, the provider's search lists what
    it took of them, and it may be asked (delivery.batch_settle_with_provider)."""
    Batch.objects.filter(pk__in=[batch.pk for batch in batches]).update(
        finished_at=F("finished_at") - SEARCH_LAG
    )


def desk(user) -> Client:
    """A browser logged in at the desk as `user`."""
    client = Client()
    client.force_login(user)
    return client


def desk_action(client: Client, action: str, *rows, confirmed: bool = False):
    """The desk's action (by its name) run on these rows from their list; the
    response. `confirmed`: as its page asking first is answered yes."""
    meta = rows[0]._meta
    return client.post(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
        {
            "action": action,
            "_selected_action": [row.pk for row in rows],
            **({"post": "yes"} if confirmed else {}),
        },
    )


def admin_subscriber_form(**fields) -> dict:
    """What the desk's reader form sends for a reader with no topic or consent
    rows; pass the fields a test cares about (email, name, …)."""
    return {
        "time_zone": "Europe/London",
        **no_inline_rows("topics", "consents"),
        **fields,
    }


def reader_added_at_the_desk(client: Client, *, follow: bool = False, **fields):
    """An Administrator adds a reader on the desk's add page (admin_subscriber_form
    with `fields`); the response."""
    client.force_login(StaffFactory(role="Administrator"))
    return client.post(
        "/admin/newsletter/subscriber/add/",
        admin_subscriber_form(**fields),
        follow=follow,
    )


def admin_inspection_form_of(inspection: Inspection, **fields) -> dict:
    """What the inspection's admin page sends, with no ratings unless given."""
    return {
        "post": inspection.post_id,
        "inspectorate": inspection.inspectorate,
        "title": inspection.title,
        "type": inspection.type,
        "area": inspection.area_id,
        "overall": inspection.overall,
        "ratings-TOTAL_FORMS": "0",
        "ratings-INITIAL_FORMS": "0",
        **fields,
    }


def unpublish_at_the_desk(post: Post, *, editor: Client | None = None) -> Client:
    """An Editor takes the post off the site at the desk; their client, logged in.
    `editor`, a client logged in already: a test whose database is flushed after
    it (transaction=True) has no roles."""
    if editor is None:
        editor = Client()
        editor.force_login(StaffFactory(role="Editor"))
    response = editor.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft"),
    )
    assert response.status_code == 302
    return editor


def taken_down_once_its_readers_are_read(monkeypatch, post: Post) -> None:
    """The author takes the post off the site as a batch carrying it goes: the
    worker has claimed the batch and read its readers (with what each digest
    holds). Once: the batches sent after are read with the post already down."""
    read = sender.batch_recipients

    def readers_then_taken_down(*args, **kwargs):
        readers = read(*args, **kwargs)
        monkeypatch.setattr(sender, "batch_recipients", read)
        unpublish_at_the_desk(post)
        return readers

    monkeypatch.setattr(sender, "batch_recipients", readers_then_taken_down)


def admin_post_form_of(
    post: Post, *, published_at: datetime | None = None, **fields
) -> dict:
    """The admin's post form for a post as stored (title, slug, body, status and
    its time as the desk shows it), with `fields` changed; `published_at`, a new
    time, is typed into the desk's day and time boxes."""
    when = published_at or post.published_at
    when = when and timezone.localtime(when)
    stored = {
        "title": post.title,
        "slug": post.slug,
        "body": post.body,
        "status": post.status,
        "published_at_0": when.strftime("%d/%m/%Y") if when else "",
        "published_at_1": when.strftime("%H:%M:%S") if when else "",
    }
    return admin_post_form(**{**stored, **fields})


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Region"

    name = factory.Sequence(lambda n: f"Region {n}")
    slug = factory.Sequence(lambda n: f"region-{n}")


class AreaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Area"

    name = factory.Sequence(lambda n: f"Area {n}")
    slug = factory.Sequence(lambda n: f"area-{n}")
    region = factory.SubFactory(RegionFactory)


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Organisation"

    name = factory.Sequence(lambda n: f"Organisation {n}")
    slug = factory.Sequence(lambda n: f"organisation-{n}")
    kind = "crc"


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Category"

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Tag"

    name = factory.Sequence(lambda n: f"Tag {n}")
    slug = factory.Sequence(lambda n: f"tag-{n}")


class InspectionFactory(factory.django.DjangoModelFactory):
    """An inspection of a published post; the post is re-indexed for search."""

    class Meta:
        model = "posts.Inspection"
        skip_postgeneration_save = True

    post = factory.SubFactory(PublishedPostFactory)
    title = factory.Sequence(lambda n: f"An inspection of probation services: {n}")
    area = factory.SubFactory(AreaFactory)
    overall = "requires_improvement"

    @factory.post_generation
    def organisations(self, create, extracted, **kwargs):
        if create and extracted:
            self.organisations.set(extracted)
        if create:
            from posts.search import index_post

            index_post(self.post)


class CommentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "comments.Comment"

    post = factory.SubFactory(PublishedPostFactory)
    name = factory.Sequence(lambda n: f"Commenter {n}")
    email = factory.Sequence(lambda n: f"commenter{n}@example.org")
    body = "Caseloads in our office are higher than the report suggests."
    ip_address = "192.0.2.10"
    user_agent = "Mozilla/5.0"
    status = "pending"
    created_at = factory.LazyFunction(timezone.now)
    # Spam made by the factory is taken as marked when it was written.
    marked_spam_at = factory.LazyAttribute(
        lambda comment: comment.created_at if comment.status == "spam" else None
    )


# An inspectorate's worth of places and bodies, for pages that must stay usable at
# that size: 12 regions, 150 areas, 200 organisations (CRCs, each owned by one of
# 12 companies and partnerships; youth offending services; probation delivery
# units) and the 12 owners.
REGIONS = [
    "North East",
    "North West",
    "Yorkshire and the Humber",
    "East Midlands",
    "West Midlands",
    "East of England",
    "London",
    "South East",
    "South West",
    "Wales",
    "Greater Manchester",
    "Kent, Surrey and Sussex",
]
# Each place and its region; with a compass point or none, 150 areas.
PLACES = {
    "Suffolk": "East of England",
    "Norfolk": "East of England",
    "Essex": "East of England",
    "Hertfordshire": "East of England",
    "Kent": "Kent, Surrey and Sussex",
    "Surrey": "Kent, Surrey and Sussex",
    "Sussex": "Kent, Surrey and Sussex",
    "Devon": "South West",
    "Cornwall": "South West",
    "Dorset": "South West",
    "Wiltshire": "South West",
    "Durham": "North East",
    "Northumberland": "North East",
    "Cumbria": "North West",
    "Lancashire": "North West",
    "Merseyside": "North West",
    "Derbyshire": "East Midlands",
    "Leicestershire": "East Midlands",
    "Staffordshire": "West Midlands",
    "Hampshire": "South East",
    "Berkshire": "South East",
    "Camden": "London",
    "Cardiff": "Wales",
    "Bolton": "Greater Manchester",
    "Leeds": "Yorkshire and the Humber",
}
COMPASS = ["", "North ", "South ", "East ", "West ", "Central "]
BODIES = ["CRC", "Youth Offending Service", "Probation Delivery Unit"]
OWNERS = [
    "Sodexo Justice Services",
    "Nacro",
    "Interserve Justice",
    "MTCnovo",
    "Working Links",
    "Purple Futures",
    "Seetec Justice",
    "ARCC (Achieving Real Change in Communities)",
    "Reducing Reoffending Partnership",
    "Shaw Trust",
    "Ingeus",
    "P3 (People Potential Possibilities)",
]


def create_inspectorate() -> dict[str, list]:
    """Create the regions, areas, organisations and owners; returns them by kind."""
    from django.utils.text import slugify

    from posts.models import Area, Organisation, Region

    regions = {
        region.name: region
        for region in Region.objects.bulk_create(
            Region(name=name, slug=slugify(name)) for name in REGIONS
        )
    }
    places = [f"{compass}{place}" for compass in COMPASS for place in PLACES]
    areas = Area.objects.bulk_create(
        Area(
            name=f"{compass}{place}",
            slug=slugify(f"{compass}{place}"),
            region=regions[region],
        )
        for compass in COMPASS
        for place, region in PLACES.items()
    )
    owners = Organisation.objects.bulk_create(
        Organisation(name=name, slug=slugify(name), kind="owner") for name in OWNERS
    )
    kinds = dict(zip(BODIES, ["crc", "yot", "pdu"], strict=True))
    bodies = [(f"{place} {body}", kinds[body]) for body in BODIES for place in places]
    organisations = Organisation.objects.bulk_create(
        Organisation(name=name, slug=slugify(name), kind=kind)
        for name, kind in bodies[:200]
    )
    crcs = [
        organisation for organisation in organisations if organisation.kind == "crc"
    ]
    Organisation.owners.through.objects.bulk_create(
        Organisation.owners.through(
            from_organisation=crc, to_organisation=owners[i % len(owners)]
        )
        for i, crc in enumerate(crcs)
    )
    return {
        "regions": list(regions.values()),
        "areas": areas,
        "owners": owners,
        "organisations": organisations,
    }
