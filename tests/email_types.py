"""One email of every type, as each is built where it is sent: for the tests that
hold every email to a rule (tests/test_emails.py, tests/test_email_spam.py)."""

from django.core import mail
from django.utils import timezone

from newsletter.comment_emails import (
    comment_confirmation_send,
    comment_digest_send,
    commenter_data_link_send,
    commenter_newest_comment_id,
)
from newsletter.delivery.ledger import Recipient
from newsletter.digests import DigestEmail
from newsletter.emails import (
    CorrectionEmail,
    PostEmail,
    confirmation_message,
    welcome_message,
)
from newsletter.models import Mailing
from newsletter.subscriptions import (
    OneTimeRequest,
    email_change_send,
    one_time_link_send,
)
from posts.comments.models import Comment
from posts.demo_content import POSTS
from posts.models import Post, PostUpdate, Sponsorship

from .factories import (
    CategoryFactory,
    CommentFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
)

COMMENTER = "sam.commenter@example.org"


def every_email(post: Post) -> dict[str, object]:
    """Each email type, named, about `post` where it is about a post."""
    excerpt = PublishedPostFactory(
        title=POSTS[1]["title"],
        excerpt=POSTS[1]["excerpt"],
        body=POSTS[1]["body"],
        email_format=Post.EmailFormat.EXCERPT,
    )
    # Sponsored, so that the rules cover the sponsor's line, in the post's own
    # email and in the digest beside `post`, which is not.
    sponsored = CategoryFactory(name="On Probation")
    excerpt.categories.add(sponsored)
    Sponsorship.objects.create(
        category=sponsored,
        name="Example Training Partnership",
        url="https://training.example/",
        starts_on=timezone.localdate(),
        ends_on=timezone.localdate(),
    )
    reader = SubscriberFactory(
        name="Ann Reader",
        email_change_requested_at=timezone.now(),
        email_change_to="ann@work.example.org",
        one_time_link_sent_at=timezone.now(),
    )
    # These are built and sent by their services; taken from the outbox.
    mail.outbox.clear()
    email_change_send(
        subscriber_id=reader.pk,
        requested_at=reader.email_change_requested_at,
    )
    one_time_link_send(
        subscriber_id=reader.pk,
        detail=OneTimeRequest.EXPORT,
        requested_at=reader.one_time_link_sent_at,
    )
    change_of_address, one_time_link = mail.outbox
    UserFactory(email="editor@onprobation.example.org")
    CommentFactory(post=post, body="Our caseloads are higher than the report says.")
    comment_digest_send()
    comment_digest = mail.outbox[-1]
    # A known commenter's held comment: they are sent the link that publishes it.
    CommentFactory(post=post, email=COMMENTER, status=Comment.Status.APPROVED)
    held = CommentFactory(post=post, email=COMMENTER, body="And so are ours.")
    assert comment_confirmation_send(comment_id=held.pk)
    comment_confirmation = mail.outbox[-1]
    assert commenter_data_link_send(
        comment_id=commenter_newest_comment_id(email=COMMENTER)
    )
    commenter_data_link = mail.outbox[-1]
    # A reader's daily digest of both posts, as the engine assembles it.
    digest = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST,
        frequency="daily",
        period=timezone.localdate(),
        slot=timezone.now(),
    )
    for_reader = Recipient(
        delivery_id=1,
        pk=reader.pk,
        email=reader.email,
        name=reader.name,
        posts=(post.pk, excerpt.pk),
        time_zone=reader.time_zone,
    )
    return {
        "digest": DigestEmail(digest, [for_reader]).for_reader(for_reader),
        "one-time link": one_time_link,
        "comment confirmation": comment_confirmation,
        "commenter's data link": commenter_data_link,
        "post": PostEmail(post).for_subscriber(reader),
        "post as excerpt": PostEmail(excerpt).for_subscriber(reader),
        "confirm": confirmation_message(
            SubscriberFactory(status="pending"), consent_id=1
        ),
        "welcome": welcome_message(reader),
        "change of address": change_of_address,
        "comment digest": comment_digest,
        "correction": CorrectionEmail(
            PostUpdate.objects.create(
                post=post,
                kind=PostUpdate.Kind.CORRECTION,
                wrong="Inspectors rated the service Inadequate.",
                right="Inspectors rated the service Requires improvement.",
            )
        ).for_subscriber(reader),
    }
