import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from newsletter.models import Subscriber
from posts.models import Post


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
    confirmed_at = factory.LazyFunction(timezone.now)


# The admin post form's inline formsets, sent empty.
EMPTY_INLINES = {
    f"{prefix}-{field}": value
    for prefix in ("inspections", "links_out", "images", "updates")
    for field, value in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
}


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
        **EMPTY_INLINES,
        **fields,
    }


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
