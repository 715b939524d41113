import factory
from django.contrib.auth import get_user_model
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


class CommentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "posts.Comment"

    post = factory.SubFactory(PublishedPostFactory)
    name = factory.Sequence(lambda n: f"Commenter {n}")
    email = factory.Sequence(lambda n: f"commenter{n}@example.org")
    body = "Caseloads in our office are higher than the report suggests."
    ip_address = "192.0.2.10"
    user_agent = "Mozilla/5.0"
