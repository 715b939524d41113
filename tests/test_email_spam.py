"""Every email type scores well below SpamAssassin's threshold, offline.

`spamassassin -L -t` runs only the local rules (no DNS or network lists) on the raw
message, as a receiving server would see it before its network checks.
"""

import re
import subprocess
from pathlib import Path

import pytest
from django.core import mail
from django.test.signals import template_rendered
from django.utils import timezone

from newsletter.comment_emails import (
    comment_confirmation_send,
    comment_digest_send,
    commenter_data_link_send,
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
from posts.models import Post, PostUpdate

from .factories import (
    CommentFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
)
from .required import program

pytestmark = pytest.mark.django_db

# SpamAssassin marks spam at 5.0; a newsletter should be nowhere near it.
MAX_SCORE = 2.0

COMMENTER = "sam.commenter@example.org"

# Every email type is three templates here (docs/email.md), one its subject.
EMAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"


@pytest.fixture
def production_like(settings):
    settings.SITE_URL = "https://onprobation.example.org"
    settings.NEWSLETTER_FROM_EMAIL = "On Probation <newsletter@onprobation.example.org>"
    settings.NEWSLETTER_REPLY_TO = settings.NEWSLETTER_FROM_EMAIL


def spam_report(program: str, message) -> tuple[float, str]:
    result = subprocess.run(  # noqa: S603 (our own message, to a fixed program)
        [program, "-L", "-t"],
        input=message.message().as_bytes(linesep="\r\n"),
        capture_output=True,
        timeout=120,
        check=True,
    )
    output = result.stdout.decode("utf-8", "replace")
    score = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", output, re.M)
    assert score, output[-2000:]
    return float(score.group(1)), output


def every_email() -> dict[str, object]:
    longest = max(POSTS, key=lambda demo: len(demo["body"]))
    post = PublishedPostFactory(
        title=longest["title"], excerpt=longest["excerpt"], body=longest["body"]
    )
    excerpt = PublishedPostFactory(
        title=POSTS[1]["title"],
        excerpt=POSTS[1]["excerpt"],
        body=POSTS[1]["body"],
        email_format=Post.EmailFormat.EXCERPT,
    )
    reader = SubscriberFactory(
        name="Ann Reader",
        email_change_requested_at=timezone.now(),
        one_time_link_sent_at=timezone.now(),
    )
    # These are built and sent by their services; take them from the outbox.
    email_change_send(
        subscriber_id=reader.pk,
        new_email="ann@work.example.org",
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
    assert commenter_data_link_send(email=COMMENTER)
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


def test_every_email_type_scores_below_two_with_spamassassin(production_like):
    spamassassin = program(
        "spamassassin", "apt-get install spamassassin (.ci/run installs it)"
    )
    for name, message in every_email().items():
        score, report = spam_report(spamassassin, message)
        assert score < MAX_SCORE, f"{name} scored {score}:\n{report[-3000:]}"


def test_every_email_type_is_among_those_scored(production_like):
    """The test above said it scored every email type, and skipped a commenter's
    confirmation and link to their data, a reader's digest and one-time link:
    an email type added later would have been skipped as silently."""
    types = {
        path.name.removesuffix("-subject.txt")
        for path in EMAIL_TEMPLATES.glob("*-subject.txt")
    }
    rendered = set()

    def seen(sender, template, **kwargs) -> None:
        rendered.add(template.name)

    template_rendered.connect(seen)
    try:
        every_email()
    finally:
        template_rendered.disconnect(seen)

    assert {name for name in types if f"email/{name}-subject.txt" in rendered} == types
