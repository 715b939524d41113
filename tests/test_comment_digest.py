import re

import pytest
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.core.mail.backends import locmem

from newsletter.comment_tasks import send_comment_digest
from newsletter.models import Suppression
from newsletter.subscriptions import address_suppress, suppression_lift
from posts.comments.models import Comment
from posts.comments.services import comments_approve

from .factories import CommentFactory, StaffFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def test_staff_get_one_digest_of_the_pending_comments():
    UserFactory(username="editor", email="editor@example.org")
    UserFactory(username="reader", email="reader@example.org", is_staff=False)
    UserFactory(username="noemail", email="")
    CommentFactory.create_batch(2, name="Pat Waiting")
    CommentFactory(name="Already Approved", status=Comment.Status.APPROVED)

    send_comment_digest.delay()

    assert [message.to for message in mail.outbox] == [["editor@example.org"]]
    message = mail.outbox[0]
    assert message.subject == "2 new comments waiting for approval — On Probation"
    assert message.body.count("Pat Waiting") == 2
    assert "Already Approved" not in message.body
    assert "/admin/comments/comment/?status=pending" in message.body
    html = message.alternatives[0][0]
    assert html.count("Pat Waiting") == 2


def test_each_comment_is_reported_once():
    UserFactory(email="editor@example.org")
    CommentFactory(name="First Batch")
    send_comment_digest.delay()

    send_comment_digest.delay()
    assert len(mail.outbox) == 1

    CommentFactory(name="Second Batch")
    send_comment_digest.delay()
    assert len(mail.outbox) == 2
    assert "Second Batch" in mail.outbox[1].body
    assert "First Batch" not in mail.outbox[1].body


def test_a_digest_of_many_long_comments_is_not_clipped_by_gmail():
    """Gmail shows only the first 102 KB of an email's HTML: a digest of 200 long
    comments (195 KB) was clipped, hiding most of them and the queue's button.
    Those beyond what one digest holds wait for the next."""
    UserFactory(email="editor@example.org")
    CommentFactory.create_batch(120, body="A long comment. " * 40)

    for _ in range(4):
        send_comment_digest.delay()

    sizes = [len(message.alternatives[0][0].encode()) for message in mail.outbox]
    assert max(sizes) < 102_000
    reported = [int(message.subject.split()[0]) for message in mail.outbox]
    assert sum(reported) == 120


def test_a_digest_that_lists_some_of_the_waiting_comments_says_how_many_more_wait():
    """A flood of comments: the digest lists what one email holds, and says the
    rest are waiting, rather than telling moderators that 50 wait when 120 do."""
    UserFactory(email="editor@example.org")
    CommentFactory.create_batch(120)

    send_comment_digest.delay()

    message = mail.outbox[0]
    assert "70 more comments are waiting" in message.body
    assert "70 more comments are waiting" in message.alternatives[0][0]


def test_a_digest_that_lists_every_waiting_comment_mentions_no_more():
    UserFactory(email="editor@example.org")
    CommentFactory.create_batch(2)

    send_comment_digest.delay()

    assert "more comment" not in mail.outbox[0].body


def test_the_digest_shows_a_hostile_comment_as_text():
    UserFactory(email="editor@example.org")
    CommentFactory(body='<script>alert("x")</script>', name="<b>Bold</b>")

    send_comment_digest.delay()

    html = mail.outbox[0].alternatives[0][0]
    assert "<script>" not in html
    assert "<b>Bold" not in html
    assert "&lt;script&gt;" in html


def test_a_name_written_right_to_left_keeps_the_date_after_it_in_order():
    """Not isolated, an Arabic or Hebrew name pulled the date after it into its
    own direction: "محمد · 7 December" showed as "7 · محمد December". The site's
    pages isolate it in a <bdi>, which mail apps support patchily: the email
    isolates it with Unicode's own marks (FSI … PDI), in both parts."""
    UserFactory(email="editor@example.org")
    CommentFactory(name="محمد")

    send_comment_digest.delay()

    message = mail.outbox[0]
    assert "\n\u2068محمد\u2069, " in message.body
    assert " · \u2068محمد\u2069 · " in message.alternatives[0][0]


def test_a_comment_of_one_very_long_word_is_wrapped_to_a_phones_width():
    """Spam is often one long address, a name can be 100 letters without a
    space: unbroken, a mail app zooms the whole digest out to that line's width
    (the layout breaks long words only in a post's tables and code)."""
    UserFactory(email="editor@example.org")
    CommentFactory(name="N" * 100, body="See https://spam.example/" + "x" * 400)

    send_comment_digest.delay()

    html = mail.outbox[0].alternatives[0][0]
    comment_block = re.search(r'<div style="([^"]*)">\s*<p[^>]*>On “', html)
    assert "word-break:break-word" in comment_block.group(1).replace(" ", "")


def test_without_staff_addresses_nothing_is_sent_and_comments_wait():
    UserFactory(email="")
    comment = CommentFactory()

    send_comment_digest.delay()

    assert mail.outbox == []
    comment.refresh_from_db()
    assert comment.moderators_notified_at is None


def test_a_refused_digest_leaves_the_comments_for_the_next_one(fake_esp):
    UserFactory(email="editor@example.org")
    CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)

    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()
    assert fake_esp.count == 0

    send_comment_digest.delay()
    assert fake_esp.recipients() == {"editor@example.org": 1}
    assert "Pat Waiting" in fake_esp.messages[0]["payload"]["TextBody"]


def test_only_those_who_may_moderate_comments_get_the_digest():
    StaffFactory(username="writer", email="writer@example.org", role="Contributor")
    StaffFactory(username="editor", email="editor@example.org", role="Editor")
    UserFactory(username="owner", email="owner@example.org")  # a superuser
    UserFactory(username="gone", email="gone@example.org", is_active=False)
    CommentFactory(name="Pat Waiting")

    send_comment_digest.delay()

    assert sorted(message.to[0] for message in mail.outbox) == [
        "editor@example.org",
        "owner@example.org",
    ]


def test_a_mailbox_two_moderators_share_gets_one_digest():
    UserFactory(username="editor", email="Editor@Example.org")
    UserFactory(username="editor-at-home", email="editor@example.org")
    CommentFactory(name="Pat Waiting")

    send_comment_digest.delay()

    assert [message.to for message in mail.outbox] == [["editor@example.org"]]


def test_a_moderator_whose_address_is_suppressed_is_not_sent_the_digest():
    """A hard bounce, a spam complaint or the author's own suppression: nothing may
    be sent to the address (is_blocked), which the other emails about comments
    refused and the digest did not, writing to it again every digest. A
    moderator who only left the newsletter still gets the digest."""
    for name in ("bounced", "complained", "suppressed", "left"):
        UserFactory(username=name, email=f"{name}@example.org")
    address_suppress(email="bounced@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    address_suppress(
        email="complained@example.org", reason=Suppression.Reason.COMPLAINT
    )
    address_suppress(email="suppressed@example.org", reason=Suppression.Reason.MANUAL)
    address_suppress(email="left@example.org", reason=Suppression.Reason.UNSUBSCRIBED)
    CommentFactory(name="Pat Waiting")

    send_comment_digest.delay()

    assert [message.to for message in mail.outbox] == [["left@example.org"]]


def test_comments_wait_for_a_moderator_the_digest_may_reach():
    """Every moderator's address suppressed: the comments are not counted as
    reported to nobody, and the digest after the desk lifts the suppression
    tells of them."""
    UserFactory(email="editor@example.org")
    address_suppress(email="editor@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    comment = CommentFactory(name="Pat Waiting")

    send_comment_digest.delay()
    assert mail.outbox == []
    comment.refresh_from_db()
    assert comment.moderators_notified_at is None

    suppression_lift(suppression=Suppression.objects.get())
    send_comment_digest.delay()
    assert [message.to for message in mail.outbox] == [["editor@example.org"]]
    assert "Pat Waiting" in mail.outbox[0].body


def test_a_moderator_the_provider_will_not_deliver_to_does_not_stop_the_others_digest(
    fake_esp,
):
    """One moderator's address refused for good (a hard bounce, someone who left):
    the others still get each comment once, and the comments count as reported."""
    UserFactory(username="gone", email="gone@example.org")
    UserFactory(username="editor", email="editor@example.org")
    fake_esp.mark_inactive("gone@example.org")
    comment = CommentFactory(name="Pat Waiting")

    send_comment_digest.delay()
    send_comment_digest.delay()  # the next hour's: nothing new

    assert fake_esp.recipients() == {"editor@example.org": 1}
    comment.refresh_from_db()
    assert comment.moderators_notified_at is not None


def test_moderators_reached_before_the_provider_failed_get_the_digest_once(fake_esp):
    """The provider fails for a while (a 503) on the second moderator's copy: the
    next digest sends it to those not reached, not again to those who have it."""
    UserFactory(username="first", email="first@example.org")
    UserFactory(username="second", email="second@example.org")
    UserFactory(username="third", email="third@example.org")
    CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(faults_after=1, fail_5xx_next=1, fail_5xx_status=503)

    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()
    send_comment_digest.delay()  # the next hour's
    send_comment_digest.delay()

    assert fake_esp.recipients() == {
        "first@example.org": 1,
        "second@example.org": 1,
        "third@example.org": 1,
    }
    assert all("Pat Waiting" in m["payload"]["TextBody"] for m in fake_esp.messages)


def test_moderators_after_one_the_provider_may_have_taken_still_get_the_digest(
    fake_esp,
):
    """The provider took the second moderator's copy and the connection broke
    before its answer: that copy is not sent again (a second is worse than none),
    and the third moderator gets theirs with the next digest."""
    UserFactory(username="first", email="first@example.org")
    UserFactory(username="second", email="second@example.org")
    UserFactory(username="third", email="third@example.org")
    CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(faults_after=1, drop_after_accept_next=1)

    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()
    send_comment_digest.delay()

    assert fake_esp.recipients() == {
        "first@example.org": 1,
        "second@example.org": 1,
        "third@example.org": 1,
    }


class WorkerKilled(BaseException):
    """The worker's process killed (an out-of-memory kill, a deploy)."""


def test_a_worker_killed_mid_digest_leaves_no_moderator_a_second_copy(monkeypatch):
    """Killed as it hands the second moderator's copy to the provider: the queue
    runs the digest again (late acknowledgement), or the next hour's does. The
    first moderator is not sent it again, and the third still gets it."""
    UserFactory(username="first", email="first@example.org")
    UserFactory(username="second", email="second@example.org")
    UserFactory(username="third", email="third@example.org")
    CommentFactory(name="Pat Waiting")
    handed_over = locmem.EmailBackend.send_messages

    def killed_at_the_second(backend, messages):
        if messages[0].to == ["second@example.org"]:
            raise WorkerKilled
        return handed_over(backend, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", killed_at_the_second)
    with pytest.raises(WorkerKilled):
        send_comment_digest.delay()
    monkeypatch.undo()
    send_comment_digest.delay()

    copies = [message.to[0] for message in mail.outbox]
    assert sorted(copies) == ["first@example.org", "third@example.org"]
    assert all("Pat Waiting" in message.body for message in mail.outbox)


def test_a_copy_owed_after_the_comments_were_dealt_with_is_not_sent(fake_esp):
    """The second moderator's copy was refused; before the next digest, the first
    approved the comment: the second is not told of a comment no longer waiting."""
    UserFactory(username="first", email="first@example.org")
    UserFactory(username="second", email="second@example.org")
    comment = CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(faults_after=1, fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()

    comments_approve(comments=Comment.objects.filter(pk=comment.pk))
    send_comment_digest.delay()

    assert fake_esp.recipients() == {"first@example.org": 1}


def test_a_copy_owed_to_someone_no_longer_a_moderator_is_not_sent(fake_esp):
    """The second moderator's copy was refused; before the next digest, they left
    the desk (their account closed): the comments waiting, readers' names and
    words, are no longer theirs to read."""
    UserFactory(username="first", email="first@example.org")
    leaver = UserFactory(username="second", email="second@example.org")
    CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(faults_after=1, fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()

    leaver.is_active = False
    leaver.save()
    send_comment_digest.delay()

    assert fake_esp.recipients() == {"first@example.org": 1}


def test_comments_whose_digest_reached_no_moderator_go_to_the_moderators_then(
    fake_esp,
):
    """The only moderator's copy was refused (the provider down), and before the
    next digest they left the desk and another editor came: the copy is not
    sent to the leaver, and the comments, which were told to no one, are in the
    new editor's digest rather than counted as reported for ever."""
    leaver = UserFactory(username="leaver", email="leaver@example.org")
    CommentFactory(name="Pat Waiting")
    fake_esp.set_faults(faults_after=0, fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(AnymailAPIError):
        send_comment_digest.delay()

    leaver.is_active = False
    leaver.save()
    UserFactory(username="editor", email="editor@example.org")
    send_comment_digest.delay()
    send_comment_digest.delay()  # the next hour's
    send_comment_digest.delay()

    assert fake_esp.recipients() == {"editor@example.org": 1}
    assert "Pat Waiting" in fake_esp.messages[0]["payload"]["TextBody"]


def test_a_reply_says_whose_comment_it_answers():
    """The digest said "a reply", and the moderator had to open the post to
    learn what it replied to: a reply reads differently once its comment is
    known."""
    UserFactory(email="editor@example.org")
    answered = CommentFactory(
        name="Alex Original",
        body="Caseloads in the north are far too high\nfor anyone to manage well.",
        status=Comment.Status.APPROVED,
    )
    CommentFactory(name="Pat Reply", post=answered.post, parent=answered)

    send_comment_digest.delay()

    [message] = mail.outbox
    text = message.body.replace("\u2068", "").replace("\u2069", "")
    html = message.alternatives[0][0].replace("\u2068", "").replace("\u2069", "")
    answers = "a reply to Alex Original: “Caseloads in the north are far too …”"
    assert answers in text
    assert answers in html
