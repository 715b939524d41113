import re
import threading
from datetime import timedelta
from functools import partial

import pytest
from anymail.exceptions import AnymailAPIError
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.messages import get_messages
from django.core import mail, signing
from django.core.cache import cache
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter import comment_emails
from newsletter.models import Suppression
from newsletter.subscriptions import (
    address_suppress,
    commenter_delete,
    suppression_lift,
)
from posts import throttle
from posts.comments import services as comments
from posts.comments.models import BODY_MAX_LENGTH, Comment, PostCommentSettings
from posts.comments.tasks import purge_comment_personal_data
from posts.comments.views import HELD_MESSAGE, VERIFIED_COOKIE, VERIFIED_COOKIE_SALT
from posts.models import FormerSlug, Post
from posts.validators import AddressPeriod

from .factories import CommentFactory, PostFactory, PublishedPostFactory, UserFactory
from .locks import (
    as_it_commits,
    as_taken_down,
    in_a_thread,
    until_done_or_waiting_for_a_lock,
)

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Alex Officer",
    "email": "Alex@Example.ORG",
    "body": "Our caseloads match what the inspectors found.",
}


@pytest.fixture
def post():
    return PublishedPostFactory()


def comment_on(client, post, **overrides):
    return client.post(
        f"/posts/{post.slug}/comments/",
        {**FORM, **overrides},
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux) " + "x" * 400,
    )


def proved_browser(email: str) -> Client:
    """A browser that proved `email` through its emailed link: it holds the cookie
    that link's button sets, signed as Django signs it."""
    browser = Client()
    signer = signing.get_cookie_signer(salt=VERIFIED_COOKIE + VERIFIED_COOKIE_SALT)
    browser.cookies[VERIFIED_COOKIE] = signer.sign(email)
    return browser


def comments_section(rf, post) -> str:
    """The partial the post page includes at its end, rendered as that page would."""
    request = rf.get(post.get_absolute_url())
    request.user = AnonymousUser()
    return render_to_string("posts/comments.html", {"post": post}, request=request)


# Posting --------------------------------------------------------------------------


def test_a_comment_as_long_as_its_box_allows_is_taken_line_breaks_and_all(client, post):
    """The box counts a line break as one character against its 5,000, as browsers
    do, but sends it as two (CR LF): a comment the box allowed was refused as too
    long, by as many characters as it had line breaks."""
    paragraph = "x" * 99
    body = "\r\n".join([paragraph] * 50)  # 4,999 as the box counts it
    assert len(body.replace("\r\n", "\n")) <= BODY_MAX_LENGTH < len(body)
    response = comment_on(client, post, body=body)
    assert response.status_code == 302
    assert Comment.objects.get().body == body.replace("\r\n", "\n")


def test_a_new_comment_is_held_for_moderation_and_not_shown(client, rf, post):
    response = comment_on(client, post)

    assert response.status_code == 302
    assert response["Location"] == f"/posts/{post.slug}/#comments"
    comment = Comment.objects.get()
    assert comment.status == Comment.Status.PENDING
    assert comment.email == "alex@example.org"
    assert comment.ip_address == "127.0.0.1"
    assert comment.user_agent.startswith("Mozilla/5.0")
    assert len(comment.user_agent) == 255
    assert FORM["body"] not in comments_section(rf, post)


def test_a_comment_sent_again_by_a_reload_is_recorded_once(client, post):
    first, again = comment_on(client, post), comment_on(client, post)
    assert (first.status_code, again.status_code) == (302, 302)
    assert again["Location"] == first["Location"]
    assert Comment.objects.count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_comment_sent_twice_at_once_by_a_double_click_is_recorded_once(
    post, monkeypatch
):
    """Each request looked for the other's copy before it was written: the
    comment was recorded twice, and its writer asked twice to confirm it."""
    looked, go_on = threading.Event(), threading.Event()
    allow = throttle.allow

    def first_waits_before_writing(scope, *args, **kwargs):
        if scope == "comments-address" and not looked.is_set():
            looked.set()
            go_on.wait(timeout=10)
        return allow(scope, *args, **kwargs)

    monkeypatch.setattr(throttle, "allow", first_waits_before_writing)
    answers = []

    def click() -> threading.Thread:
        def run() -> None:
            try:
                answers.append(comment_on(Client(), post).status_code)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    first = click()
    assert looked.wait(timeout=10)
    second = click()
    until_done_or_waiting_for_a_lock(second)
    go_on.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert answers == [302, 302]
    assert Comment.objects.count() == 1


def test_the_commenter_is_told_the_comment_awaits_approval(client, post):
    response = comment_on(client, post)
    # The comments partial on the post page shows this message after the redirect.
    assert [str(m) for m in get_messages(response.wsgi_request)] == [HELD_MESSAGE]


def test_an_approved_comment_appears_under_the_post(client, rf, post):
    comment_on(client, post, website="https://probation.example.org/blog")
    comments.comments_approve(comments=Comment.objects.all())

    html = comments_section(rf, post)
    comment = Comment.objects.get()
    assert f'id="comment-{comment.pk}"' in html
    assert FORM["body"] in html
    assert "1 comment<" in html
    assert (
        '<a href="https://probation.example.org/blog" rel="nofollow ugc" '
        'itemprop="url"><bdi itemprop="name">Alex Officer</bdi></a>'
    ) in html


def test_the_commenters_email_is_never_shown(client, rf, post):
    comment_on(client, post)
    comments.comments_approve(comments=Comment.objects.all())
    section = comments_section(rf, post)
    # The comment is on the page, with its name and words...
    assert "Alex Officer" in section and FORM["body"] in section
    # ...and not its address, in any case.
    assert "alex@example.org" not in section.lower()


def test_the_form_marks_its_required_fields(rf, post):
    html = comments_section(rf, post)
    assert html.count("(required)") == 3
    assert "Website (optional)" in html
    assert f'action="/posts/{post.slug}/comments/#comments"' in html
    # No per-reader token: the post page is cached whole for every reader.
    assert "csrfmiddlewaretoken" not in html


def test_a_refused_comment_says_so_first_and_links_each_error_to_its_field(
    client, post
):
    page = comment_on(client, post, name="", body="").content.decode()
    assert "<title>Error: Your comment — " in page
    assert 'class="error-summary" role="alert"' in page
    assert '<a href="#id_name">Name: This field is required.</a>' in page
    assert '<a href="#id_body">Comment: This field is required.</a>' in page
    assert 'aria-describedby="id_body_helptext id_body_error"' in page
    assert '<ul class="errorlist" id="id_body_error">' in page


def test_a_comment_refused_for_a_limit_says_so_in_the_pages_title(
    client, post, settings
):
    """A screen reader starts at the title: a comment refused for its client's
    limit (or sent from another site, or replying to a comment gone) came back
    titled as the form is before anything went wrong."""
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 1
    comment_on(client, post)

    page = comment_on(client, post, body="Another comment.")

    assert page.status_code == 429
    assert f"<title>Error: Your comment — {post.title} — On Probation</title>" in (
        page.text
    )


# Known commenters prove their address ---------------------------------------------


@pytest.fixture
def confirm(celery_eager, django_capture_on_commit_callbacks):
    """Comment as `client` would, run what waits for the commit (the email), and
    return the confirmation links emailed."""

    def comment_and_read_mail(client, post, **overrides):
        with django_capture_on_commit_callbacks(execute=True):
            response = comment_on(client, post, **overrides)
        links = [
            re.search(r"https?://\S+/comments/confirm/\S+/", message.body).group()
            for message in mail.outbox
        ]
        return response, links

    return comment_and_read_mail


def answer(response) -> tuple:
    return (
        response.status_code,
        response["Location"],
        [str(message) for message in get_messages(response.wsgi_request)],
    )


def test_an_address_with_approved_comments_is_not_enough_to_publish_at_once(
    client, post
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    comment_on(client, post)

    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_known_and_unknown_addresses_get_the_same_answer(post):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    known = comment_on(Client(), post, email="alex@example.org")
    unknown = comment_on(Client(), post, email="nobody@example.org")

    assert answer(known) == answer(unknown)
    assert answer(known) == (302, f"/posts/{post.slug}/#comments", [HELD_MESSAGE])


def test_sending_a_published_comments_words_again_does_not_tell_whose_address_it_is(
    post,
):
    """A reload finds its comment, published or not: a stranger who copied a
    published comment's text and tried addresses read "your comment is published"
    for the writer's, and so learnt the address the page never shows."""
    CommentFactory(
        post=post,
        email="alex@example.org",
        body=FORM["body"],
        status=Comment.Status.APPROVED,
    )

    right = comment_on(Client(), post, email="Alex@Example.org")
    wrong = comment_on(Client(), post, email="nobody@example.org")

    assert answer(right) == answer(wrong)
    assert answer(right) == (302, f"/posts/{post.slug}/#comments", [HELD_MESSAGE])


def test_the_browser_that_proved_the_address_is_told_its_resent_comment_is_published(
    client, post, confirm
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post, body="My first words here.")
    client.post(links[0])

    comment_on(client, post)
    again = comment_on(client, post)

    comment = Comment.objects.get(post=post, body=FORM["body"])
    assert comment.status == Comment.Status.APPROVED
    assert again["Location"] == f"/posts/{post.slug}/#comment-{comment.pk}"
    assert answer(again)[2][-1] == "Thank you: your comment is published."


def test_a_known_commenter_confirms_by_email_and_the_comment_is_published(
    client, post, confirm
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    _, links = confirm(client, post)

    assert [message.to for message in mail.outbox] == [["alex@example.org"]]
    assert "Confirm your address" in mail.outbox[0].subject
    comment = Comment.objects.get(post=post)
    # Following the link only shows the comment and a button: scanners follow links.
    page = client.get(links[0])
    assert page.status_code == 200
    assert "confirm and publish</button>" in page.text
    assert comment.body in page.text
    comment.refresh_from_db()
    assert comment.status == Comment.Status.PENDING

    response = client.post(links[0])

    assert response.status_code == 302
    assert response["Location"] == f"/posts/{post.slug}/#comment-{comment.pk}"
    comment.refresh_from_db()
    assert comment.status == Comment.Status.APPROVED
    cookie = response.cookies["comment_verified"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) >= 365 * 86400


def test_a_head_request_on_the_emailed_link_is_answered_and_confirms_nothing(
    client, post, confirm
):
    """Mail scanners and link checkers ask with HEAD: answered as the page is (it
    was a 405), and never taken for the button."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)

    response = client.head(links[0])

    assert response.status_code == 200
    assert "comment_verified" not in response.cookies
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_opening_the_emailed_link_changes_nothing_and_leaves_it_to_confirm(
    client, post, confirm
):
    """Mail scanners open links: the page only shows the comment and its button,
    and the link still proves the address once its owner presses it."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)

    scanned = Client().get(links[0])

    assert scanned.status_code == 200
    assert "comment_verified" not in scanned.cookies
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING
    confirmed = client.post(links[0])
    assert "comment_verified" in confirmed.cookies
    assert Comment.objects.get(post=post).status == Comment.Status.APPROVED


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_used_link_proves_the_address_to_no_other_browser(
    client, post, confirm, method
):
    """The link proves the address once: forwarded, or opened by anyone else who
    reads the email, it gave a stranger's browser the commenter's proven identity
    for a year, and the stranger's comments under the commenter's name skipped
    moderation."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    client.post(links[0])
    stranger = Client()

    response = getattr(stranger, method)(links[0])

    assert response.status_code == 410
    assert "This link has been used" in response.text
    assert "It is mine" not in response.text  # no button to press again
    assert "comment_verified" not in response.cookies
    comment_on(stranger, post, body="Posing as Alex.")
    assert Comment.objects.get(body="Posing as Alex.").status == "pending"


def test_a_link_used_while_its_comment_waits_confirms_nothing_more(
    client, post, confirm
):
    """Used while its comment stayed held (comments closed meanwhile), the link
    does not prove the address again once a moderator has seen to the comment."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    comments.comments_close(posts=Post.objects.filter(pk=post.pk))
    assert "comment_verified" in client.post(links[0]).cookies

    again = Client().post(links[0])

    assert again.status_code == 410
    assert "comment_verified" not in again.cookies
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_a_link_whose_publishing_failed_is_not_spent_and_works_again(
    post, confirm, monkeypatch
):
    """The link was marked used before its comment was published, apart: publishing
    failed, and the commenter's one link was spent on a comment still held, every
    press after told "This link has been used"."""
    commenter = Client(raise_request_exception=False)
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(commenter, post)

    def publishing_fails(**kwargs):
        raise RuntimeError("publishing failed")

    with monkeypatch.context() as failing:
        failing.setattr(comments, "comments_approve", publishing_fails)
        failed = commenter.post(links[0])

    assert failed.status_code == 500
    held = Comment.objects.get(post=post)
    assert held.confirmation_used_at is None
    assert held.status == Comment.Status.PENDING
    confirmed = commenter.post(links[0])
    assert confirmed.status_code == 302
    assert "comment_verified" in confirmed.cookies
    held.refresh_from_db()
    assert held.confirmation_used_at is not None
    assert held.status == Comment.Status.APPROVED


def test_the_emailed_links_pages_are_kept_by_no_cache(client, post, confirm):
    """The page shows a comment awaiting moderation to whoever holds the link, as
    every other page an emailed token opens: a browser or proxy must not keep it,
    nor the answer that sets the verified cookie."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)

    shown = client.get(links[0])
    confirmed = client.post(links[0])
    refused = client.get("/comments/confirm/forged/")

    for response in (shown, confirmed, refused):
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]


def test_a_stranger_using_a_commenters_address_cannot_make_the_email_speak(
    client, post, confirm
):
    """The email goes to whoever owns the address: nothing a stranger typed is in
    it, and its link shows them the comment before they publish anything."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    phishing = "Security team: your account is locked, call 0900 000 000"

    _, links = confirm(
        client, post, name=phishing, body="Cheap pills at https://spam.example/"
    )

    (message,) = mail.outbox
    assert "Security team" not in message.body
    assert "Security team" not in message.alternatives[0][0]
    assert "spam.example" not in message.body
    page = Client().get(links[0])
    assert escape(phishing) in page.text
    assert "spam.example" in page.text
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_a_confirmed_browser_publishes_later_comments_at_once(client, post, confirm):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    client.post(links[0])

    response, _ = confirm(client, post, body="And another thought.")

    later = Comment.objects.get(body="And another thought.")
    assert later.status == Comment.Status.APPROVED
    assert response["Location"] == f"/posts/{post.slug}/#comment-{later.pk}"
    assert len(mail.outbox) == 1  # no second confirmation


def test_a_confirmed_browser_does_not_vouch_for_another_address(client, post, confirm):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    CommentFactory(email="sam@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    client.post(links[0])

    comment_on(client, post, email="sam@example.org", body="Pretending to be Sam.")

    assert Comment.objects.get(body="Pretending to be Sam.").status == "pending"


def test_confirmation_of_known_commenters_can_be_turned_off(
    client, post, confirm, settings
):
    settings.COMMENTS_AUTO_APPROVE_KNOWN = False
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    _, links = confirm(client, post)

    assert links == []
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


@pytest.mark.parametrize("status", ["none", Comment.Status.SPAM])
def test_an_address_without_approved_comments_is_sent_no_confirmation(
    client, post, confirm, status
):
    if status != "none":
        CommentFactory(email="alex@example.org", status=status)

    _, links = confirm(client, post)

    assert links == []
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_no_link_promising_publication_is_emailed_once_comments_have_closed(
    client, post, celery_eager, django_capture_on_commit_callbacks
):
    """The email says confirming publishes the comment at once: sent late (a worker
    down for a while), after the author closed comments, it promised what its page
    then refused."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    with django_capture_on_commit_callbacks() as emails_to_send:
        comment_on(client, post)
    comments.comments_close(posts=Post.objects.filter(pk=post.pk))

    for send in emails_to_send:
        send()

    assert mail.outbox == []
    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


def test_a_known_address_is_emailed_at_most_once_an_hour(post, confirm):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    confirm(Client(), post, body="First.")
    confirm(Client(), post, body="Second.")

    assert len(mail.outbox) == 1


def test_a_confirmation_not_sent_to_a_blocked_address_leaves_its_hour_unused(
    post, confirm
):
    """Nothing is sent to an address that bounced, yet its comment was recorded
    as sent its confirmation: once the desk lifted the bounce, the commenter's
    next comment within the hour was sent no link. The commenter is answered the
    same, blocked or not: the worker decides, after the answer."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    address_suppress(email="alex@example.org", reason=Suppression.Reason.HARD_BOUNCE)

    while_blocked, links = confirm(Client(), post, body="First.")
    assert links == []
    suppression_lift(suppression=Suppression.objects.get())
    once_lifted, links = confirm(Client(), post, body="Second.")

    assert [message.to for message in mail.outbox] == [["alex@example.org"]]
    assert answer(while_blocked) == answer(once_lifted)
    assert answer(once_lifted) == (302, f"/posts/{post.slug}/#comments", [HELD_MESSAGE])


@pytest.mark.parametrize("known", [True, False])
def test_every_held_comment_leaves_the_same_work_for_the_worker(
    client, post, known, django_capture_on_commit_callbacks
):
    # Whether to email the commenter is the worker's decision, so the request takes
    # as long for a known address as for an unknown one.
    if known:
        CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)

    with django_capture_on_commit_callbacks() as callbacks:
        comment_on(client, post)

    assert len(callbacks) == 1
    assert mail.outbox == []


def test_a_refused_confirmation_is_sent_on_the_next_try(post, fake_esp):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    held = CommentFactory(email="alex@example.org", post=post)
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)

    with pytest.raises(AnymailAPIError):
        comment_emails.comment_confirmation_send(comment_id=held.pk)
    assert fake_esp.count == 0

    assert comment_emails.comment_confirmation_send(comment_id=held.pk)
    assert not comment_emails.comment_confirmation_send(comment_id=held.pk)
    assert fake_esp.recipients() == {"alex@example.org": 1}


def test_a_confirmation_the_provider_may_have_taken_is_not_sent_again(post, fake_esp):
    """The provider took the confirmation and its answer was lost (the connection
    broke, or the worker was killed once it had handed it over): the queue runs
    the task again, which sends no second copy."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    held = CommentFactory(email="alex@example.org", post=post)
    fake_esp.set_faults(drop_after_accept_next=1)

    with pytest.raises(AnymailAPIError):
        comment_emails.comment_confirmation_send(comment_id=held.pk)
    comment_emails.comment_confirmation_send(comment_id=held.pk)

    assert fake_esp.recipients() == {"alex@example.org": 1}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_two_comments_held_at_once_send_their_commenter_one_confirmation(
    post, fake_esp, monkeypatch
):
    """Two comments from one address, held together: their tasks ran at once, and
    each read the hour's earlier confirmations before the other's claim was
    committed, so both sent one."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    first, second = CommentFactory.create_batch(2, email="alex@example.org", post=post)
    claimed, go_on = threading.Event(), threading.Event()
    is_blocked = comment_emails.is_blocked

    def first_waits_once_claimed(email: str) -> bool:
        if not claimed.is_set():
            claimed.set()
            go_on.wait(timeout=10)  # before its claim commits
        return is_blocked(email)

    monkeypatch.setattr(comment_emails, "is_blocked", first_waits_once_claimed)
    answers = []
    one = in_a_thread(
        lambda: comment_emails.comment_confirmation_send(comment_id=first.pk), answers
    )
    assert claimed.wait(timeout=10)
    other = in_a_thread(
        lambda: comment_emails.comment_confirmation_send(comment_id=second.pk),
        answers,
    )
    # The other's claim goes through at once, or waits for the first's locks.
    until_done_or_waiting_for_a_lock(other)
    go_on.set()
    one.join(timeout=10)
    other.join(timeout=10)

    assert sorted(answers) == [False, True]
    assert fake_esp.recipients() == {"alex@example.org": 1}


def test_a_forged_cookie_publishes_nothing(client, post):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    client.cookies["comment_verified"] = "alex@example.org"

    comment_on(client, post)

    assert Comment.objects.get(post=post).status == Comment.Status.PENDING


@pytest.mark.parametrize("token", ["forged", "WzEsImFiYyJd:1:abc", "x" * 300])
def test_a_forged_confirmation_link_is_refused_and_changes_nothing(client, post, token):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    held = CommentFactory(email="alex@example.org", post=post)

    response = client.post(f"/comments/confirm/{token}/")

    assert response.status_code == 400
    assert "not valid" in response.text
    assert "comment_verified" not in response.cookies
    held.refresh_from_db()
    assert held.status == Comment.Status.PENDING


@pytest.mark.parametrize(
    "comment_id",
    [str, float, lambda pk: [pk], lambda pk: "x", lambda pk: 2**63],
    ids=["its-id-as-text", "its-id-as-a-float", "a-list", "text", "beyond-bigint"],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_signed_link_whose_comment_id_is_not_one_is_refused_and_changes_nothing(
    client, post, method, comment_id
):
    """Only the site signs these links, yet one of another shape (another
    release's, a leaked key's) is answered as a forged one, never with a 500."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    held = CommentFactory(email="alex@example.org", post=post)
    token = signing.dumps(
        [comment_id(held.pk), comments._address_digest(held.email)],
        salt=comments._CONFIRMATION_SALT,
    )

    response = getattr(client, method)(f"/comments/confirm/{token}/")

    assert response.status_code == 400
    assert "comment_verified" not in response.cookies
    held.refresh_from_db()
    assert held.status == Comment.Status.PENDING


def test_a_comment_marked_as_spam_stays_spam_when_its_link_is_followed(
    client, post, confirm
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    comments.comments_mark_spam(comments=Comment.objects.filter(post=post))

    response = client.post(links[0])

    assert response.status_code == 302
    assert Comment.objects.get(post=post).status == Comment.Status.SPAM


def test_a_comment_marked_as_spam_while_its_link_is_followed_stays_spam(
    client, post, confirm, monkeypatch
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    held = Comment.objects.get(post=post)
    comments_are_open = comments.comments_are_open

    def moderator_marks_it_as_spam_meanwhile(*, post):
        comments.comments_mark_spam(comments=Comment.objects.filter(pk=held.pk))
        return comments_are_open(post=post)

    monkeypatch.setattr(
        comments, "comments_are_open", moderator_marks_it_as_spam_meanwhile
    )

    client.post(links[0])

    held.refresh_from_db()
    assert held.status == Comment.Status.SPAM


@pytest.mark.parametrize("closed_by", ["the author", "age"])
def test_a_link_followed_after_comments_closed_leaves_the_comment_to_the_moderators(
    client, post, confirm, settings, closed_by
):
    """Following the link publishes as posting does: a post that takes no more
    comments takes none through an emailed link that no moderator saw."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    if closed_by == "the author":
        comments.comments_close(posts=Post.objects.filter(pk=post.pk))
    else:
        settings.COMMENTS_CLOSE_AFTER_DAYS = 1
        Post.objects.filter(pk=post.pk).update(
            published_at=timezone.now() - timedelta(days=2)
        )

    response = client.post(links[0])

    assert Comment.objects.get(post=post).status == Comment.Status.PENDING
    # Sent to the post's comments, where theirs is not: told why, not only
    # that the address is confirmed.
    status, location, messages = answer(response)
    assert (status, location, messages[-1]) == (
        302,
        f"/posts/{post.slug}/#comments",
        "Thank you: your address is confirmed. Your comment waits for the "
        "author's approval.",
    )
    assert "comment_verified" in response.cookies  # the address is proved all the same


def test_a_link_for_a_reply_to_a_comment_since_marked_as_spam_publishes_nothing(
    client, post, confirm
):
    """A reply is shown only under a comment readers see: published under spam it
    would be hidden, yet its writer was told "your comment is published"."""
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    replied_to = CommentFactory(post=post, status=Comment.Status.APPROVED)
    _, links = confirm(client, post, parent=replied_to.pk)
    comments.comments_mark_spam(comments=Comment.objects.filter(pk=replied_to.pk))

    page = client.get(links[0])
    response = client.post(links[0])

    reply = Comment.objects.get(parent=replied_to)
    assert reply.status == Comment.Status.PENDING
    assert "it is published" not in page.text
    assert response["Location"] == f"/posts/{post.slug}/#comments"


def test_the_link_of_a_reply_hidden_with_its_comment_does_not_call_it_published(
    client, post
):
    """An approved reply under a comment since marked as spam is hidden with it:
    the link's page said "This one is published already", and its button "your
    comment is published", sending the reader to a comment the page does not show."""
    spam = CommentFactory(post=post, status=Comment.Status.SPAM)
    reply = CommentFactory(
        post=post, parent=spam, email="alex@example.org", status="approved"
    )
    link = f"/comments/confirm/{comments.comment_confirmation_token(comment=reply)}/"

    page = client.get(link)
    response = client.post(link)

    assert "published already" not in page.text
    assert "This one is not published." in page.text
    assert answer(response) == (
        302,
        f"/posts/{post.slug}/#comments",
        ["Thank you: your address is confirmed."],
    )


@pytest.mark.parametrize("approved", [False, True], ids=["held", "published"])
def test_a_link_followed_after_the_post_was_unpublished_confirms_without_a_404(
    client, post, confirm, approved
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    if approved:  # at the desk: the link proves the address once
        comments.comments_approve(comments=Comment.objects.filter(post=post))
    Post.objects.filter(pk=post.pk).update(status=Post.Status.DRAFT)

    response = client.post(links[0], follow=True)

    assert response.status_code == 200
    assert "your address is confirmed" in response.text
    assert "comment_verified" in response.client.cookies
    status = Comment.Status.APPROVED if approved else Comment.Status.PENDING
    assert Comment.objects.get(post=post).status == status


@pytest.mark.parametrize("since", ["comments closed", "marked as spam"])
def test_the_confirmation_page_promises_publication_only_where_it_publishes(
    client, post, confirm, since
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    page = client.get(links[0]).text
    assert "confirm, and it is published" in page
    assert "It is mine: confirm and publish" in page

    if since == "comments closed":
        PostCommentSettings.objects.create(post=post, comments_open=False)
        expected = "This one waits for the author's approval."
    else:
        Comment.objects.filter(post=post).update(status=Comment.Status.SPAM)
        expected = "This one is not published."
    page = client.get(links[0]).text
    assert "confirm, and it is published" not in page
    assert "It is mine: confirm</button>" in page
    assert expected in page
    client.post(links[0])
    assert not Comment.objects.filter(post=post).approved().exists()


def test_a_link_for_a_comment_whose_address_was_changed_is_refused(
    client, post, confirm
):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    Comment.objects.filter(post=post).update(email="sam@example.org")

    assert client.post(links[0]).status_code == 400


def test_a_confirmed_reader_still_gets_the_cached_post_page(client, post, confirm):
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    verified = client.post(links[0]).cookies["comment_verified"].value
    # The reader comes back later: the browser has only the long-lived cookie.
    reader = Client()
    reader.cookies["comment_verified"] = verified

    first = reader.get(post.get_absolute_url())
    with CaptureQueriesContext(connection) as queries:
        second = reader.get(post.get_absolute_url())

    assert first.status_code == second.status_code == 200
    assert not second.cookies
    assert len(queries) == 0
    assert second.content == first.content


def test_links_become_clickable_with_nofollow_ugc(rf, post):
    CommentFactory(
        post=post,
        status=Comment.Status.APPROVED,
        body="The report: https://www.justiceinspectorates.gov.uk/hmiprobation/ ok",
    )
    html = comments_section(rf, post)
    assert (
        '<a href="https://www.justiceinspectorates.gov.uk/hmiprobation/" '
        'rel="nofollow ugc">'
    ) in html


def test_hostile_html_is_shown_escaped(rf, post):
    CommentFactory(
        post=post,
        status=Comment.Status.APPROVED,
        name='<img src=x onerror="alert(1)">',
        body='<script>alert("x")</script> <a href="javascript:alert(1)">me</a>',
    )
    html = comments_section(rf, post)
    assert "<script>" not in html
    assert "<img" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


@pytest.mark.parametrize("website", ["", "https://example.org/"])
def test_a_name_written_right_to_left_keeps_the_date_after_it_in_order(
    rf, post, website
):
    """Not isolated, an Arabic or Hebrew name pulled the date's leading day into
    its own direction: "محمد · 7 December 2026" showed as "7 · محمد December
    2026"."""
    comment = CommentFactory(
        post=post, status=Comment.Status.APPROVED, name="محمد", website=website
    )

    html = comments_section(rf, post)

    assert '<bdi itemprop="name">محمد</bdi>' in html
    assert f"Reply to <bdi>{comment.name}</bdi>" in html
    reply_page = Client().get(f"/posts/{post.slug}/comments/{comment.pk}/reply/")
    assert "<h1>Reply to <bdi>محمد</bdi></h1>" in reply_page.text


@pytest.mark.parametrize(
    "website",
    [
        "javascript:alert(1)",
        "ftp://example.org/",
        "data:text/html,hi",
        # No address to read (an IPv6 host unclosed): percent-encoding it was a 500.
        "[",
        "http://[::1",
    ],
)
def test_a_website_must_be_a_web_address(client, post, website):
    response = comment_on(client, post, website=website)
    assert response.status_code == 400
    assert "Enter a valid URL" in response.text or "web address" in response.text
    assert not Comment.objects.exists()


def test_a_website_without_scheme_is_taken_as_https(client, post):
    comment_on(client, post, website="probation.example.org")
    assert Comment.objects.get().website == "https://probation.example.org"


def test_a_website_is_stored_as_a_browser_would_ask_for_it(client, admin_client, post):
    """Typed as it was, a website's < > " { | made the link on the post page
    invalid HTML; the desk's form stores it the same way as the reader's."""
    comment_on(client, post, website='example.org/Ynys Môn?q=<probation>&"x"|{y}')
    comment = Comment.objects.get()
    encoded = "https://example.org/Ynys%20M%C3%B4n?q=%3Cprobation%3E&%22x%22%7C%7By%7D"
    assert comment.website == encoded

    response = admin_client.post(
        f"/admin/comments/comment/{comment.pk}/change/",
        {
            "status": "approved",
            "name": comment.name,
            "email": comment.email,
            "website": "https://example.org/a[1]^b`c%zz",
            "body": comment.body,
        },
    )

    assert response.status_code == 302
    comment.refresh_from_db()
    assert comment.website == "https://example.org/a%5B1%5D%5Eb%60c%25zz"


def test_missing_fields_are_named_and_nothing_is_saved(client, post):
    response = comment_on(client, post, name="", email="not-an-address", body=" ")
    assert response.status_code == 400
    assert response.content.decode().count("errorlist") >= 3
    assert not Comment.objects.exists()


def test_a_comment_from_a_page_opened_before_the_post_was_renamed_is_taken(
    client, post
):
    """The author changed the post's address while the reader was writing: the
    form they send names the post's former address."""
    FormerSlug.objects.create(slug="its-first-address", post=post)

    response = client.post("/posts/its-first-address/comments/", FORM)

    assert response.status_code == 302
    assert response["Location"] == f"/posts/{post.slug}/#comments"
    assert Comment.objects.get().post == post


def test_draft_posts_take_no_comments(client):
    draft = PostFactory()
    assert comment_on(client, draft).status_code == 404
    assert not Comment.objects.exists()


def test_a_comment_sent_after_the_post_was_unpublished_is_given_back_to_copy(
    client, post
):
    """The author took the post down while the reader was writing: the answer is
    no bare 404 page that loses their text, and it says the post takes no
    comments now."""
    written = "I worked in this office <for years> & saw it change."
    Post.objects.filter(pk=post.pk).update(status=Post.Status.DRAFT)

    response = comment_on(client, post, body=written)

    assert response.status_code == 404
    assert "not open for comments" in response.text
    assert "so your\ncomment was not sent." in response.text
    assert escape(written) in response.text
    assert not Comment.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_known_commenters_comment_sent_as_the_post_is_taken_down_is_given_back():
    """The comment read the post as open before the unpublish committed, and was
    then published under the post taken off the site."""
    post = PublishedPostFactory()
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    editor = Client()
    editor.force_login(UserFactory())
    written = "Written as the post went <down>."

    response = as_taken_down(
        post,
        editor,
        lambda: comment_on(proved_browser("alex@example.org"), post, body=written),
    )

    assert response.status_code == 404
    assert escape(written) in response.text
    assert not Comment.objects.filter(post=post).exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_comment_sent_as_the_post_is_deleted_is_given_back_not_a_500():
    """The comment was written under the post the author had just deleted: the
    database refused its link to the post, a 500 that lost the reader's text."""
    post = PublishedPostFactory()
    author = Client()
    author.force_login(UserFactory())

    def delete_the_post():
        response = author.post(f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302

    _, response = as_it_commits(
        delete_the_post, lambda: comment_on(Client(), post, body="Too late.")
    )

    assert response.status_code == 404
    assert "Too late." in response.text
    assert not Comment.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_the_author_deleting_a_post_as_a_comment_is_written_deletes_both():
    """The deletion read the post's comments before the comment being written
    committed, which the database then found under the deleted post: the author's
    delete was refused, a 500."""
    post = PublishedPostFactory()
    author = Client()
    author.force_login(UserFactory())

    def write_a_comment() -> Comment:
        return comments.comment_post(
            post=post, name="Alex", email="alex@example.org", body="Just in time."
        )

    def delete_the_post() -> int:
        response = author.post(f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"})
        return response.status_code

    _, deleted = as_it_commits(write_a_comment, delete_the_post, must_wait=True)

    assert deleted == 302
    assert not Post.objects.filter(pk=post.pk).exists()
    assert not Comment.objects.exists()


def test_an_unpublished_post_is_answered_as_an_unknown_one(client, post):
    """The page that gives the text back must not tell a prober that a draft is
    behind an address, nor its title."""
    draft = PostFactory(title="A draft nobody has seen")

    unknown = client.post("/posts/no-such-post/comments/", FORM)
    unpublished = client.post(f"/posts/{draft.slug}/comments/", FORM)

    assert unknown.status_code == unpublished.status_code == 404
    assert unknown.text == unpublished.text
    assert "A draft nobody has seen" not in unpublished.text


def test_the_comment_forms_address_opened_again_goes_to_the_posts_comments(
    client, post
):
    """A comment sent back (a field left empty, too many sent) leaves the reader at
    the address the form posts to; opened again (reloaded from the address bar,
    tabs the browser restores, a bookmark) it was a blank 405 page."""
    address = f"/posts/{post.slug}/comments/"
    assert comment_on(client, post, body="").status_code == 400

    for ask in (client.get, client.head):
        response = ask(address)
        assert response.status_code == 302
        assert response["Location"] == f"/posts/{post.slug}/#comments"
    assert client.put(address).status_code == 405
    assert not Comment.objects.exists()


# Replies --------------------------------------------------------------------------


def test_a_reply_is_shown_beneath_its_comment(client, rf, post):
    parent = CommentFactory(post=post, status=Comment.Status.APPROVED, body="First.")

    comment_on(client, post, parent=parent.pk, body="A reply.")
    reply = Comment.objects.get(parent=parent)
    comments.comments_approve(comments=Comment.objects.filter(pk=reply.pk))

    html = comments_section(rf, post)
    assert html.index("First.") < html.index('class="comment-replies"')
    assert html.index('class="comment-replies"') < html.index("A reply.")
    assert "2 comments<" in html


def test_a_reply_to_a_reply_joins_the_top_level_comment(client, post):
    top = CommentFactory(post=post, status=Comment.Status.APPROVED)
    reply = CommentFactory(post=post, parent=top, status=Comment.Status.APPROVED)

    comment_on(client, post, parent=reply.pk)

    assert Comment.objects.latest("id").parent == top


@pytest.mark.parametrize(
    "case", ["pending", "spam", "other post", "unknown", "under a hidden comment"]
)
def test_a_reply_to_a_comment_readers_cannot_see_is_refused(client, post, case):
    target = {
        "pending": lambda: CommentFactory(post=post),
        "spam": lambda: CommentFactory(post=post, status=Comment.Status.SPAM),
        "other post": lambda: CommentFactory(status=Comment.Status.APPROVED),
        "unknown": lambda: Comment(pk=987654),
        # Approved, but in the thread of a comment marked as spam since.
        "under a hidden comment": lambda: CommentFactory(
            post=post,
            status=Comment.Status.APPROVED,
            parent=CommentFactory(post=post, status=Comment.Status.SPAM),
        ),
    }[case]()
    before = Comment.objects.count()

    response = comment_on(client, post, parent=target.pk)

    assert response.status_code == 400
    assert "not available" in response.content.decode()
    assert Comment.objects.count() == before


@pytest.mark.parametrize("meanwhile", ["deleted", "marked as spam"])
def test_a_reply_to_a_comment_gone_meanwhile_can_be_sent_again_as_a_comment(
    client, post, meanwhile
):
    """The reader wrote a reply while a moderator took its comment away: the form
    comes back with their text, and sending it again posts it under the post."""
    top = CommentFactory(post=post, status=Comment.Status.APPROVED)
    replying_to = top.pk
    if meanwhile == "deleted":
        top.delete()
    else:
        comments.comments_mark_spam(comments=Comment.objects.filter(pk=top.pk))

    refused = comment_on(client, post, parent=replying_to, body="My considered reply.")

    assert refused.status_code == 400
    assert "My considered reply." in refused.text
    # The reader presses the button again: the page's form sends its hidden parent.
    (parent_on_the_page,) = re.findall(
        r'name="parent"(?: value="(\d*)")?', refused.text
    )
    again = comment_on(
        client, post, parent=parent_on_the_page, body="My considered reply."
    )
    assert again.status_code == 302
    assert Comment.objects.get(body="My considered reply.").parent is None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_reply_sent_as_its_comments_writer_erases_it_is_given_back_not_a_500():
    """The reply's comment was read as there, and gone by the time the reply was
    written: the database refused the reply's link to it, a 500 that lost the
    reader's text."""
    top = CommentFactory(email="sam@example.org", status=Comment.Status.APPROVED)
    erasure = partial(commenter_delete, email="sam@example.org")

    _, reply = as_it_commits(
        erasure, lambda: comment_on(Client(), top.post, parent=top.pk, body="Yes.")
    )

    assert reply.status_code == 400
    assert "not available" in reply.text
    assert "Yes." in reply.text
    assert not Comment.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_comments_writer_erasing_it_as_a_reply_is_written_keeps_the_reply():
    """The erasure did not see the reply being written, and deleted the comment
    under it: whichever committed second was refused, the erasure (a 500, nothing
    erased) or the reply."""
    top = CommentFactory(email="sam@example.org", status=Comment.Status.APPROVED)

    def reply() -> Comment:
        return comments.comment_post(
            post=top.post,
            parent_id=top.pk,
            name="Alex",
            email="alex@example.org",
            body="Yes.",
        )

    _, erased = as_it_commits(reply, partial(commenter_delete, email="sam@example.org"))

    assert erased == 1
    (kept,) = Comment.objects.all()
    assert (kept.body, kept.parent) == ("Yes.", None)


def test_the_reply_page_quotes_the_comment_and_carries_its_id(client, post):
    top = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Quoted.")
    reply = CommentFactory(post=post, parent=top, status=Comment.Status.APPROVED)

    response = client.get(f"/posts/{post.slug}/comments/{reply.pk}/reply/")

    html = response.content.decode()
    assert response.status_code == 200
    assert f"Reply to {reply.name}" in html
    assert f'name="parent" value="{reply.pk}"' in html


def test_the_reply_page_answers_a_head_request(client, post):
    comment = CommentFactory(post=post, status=Comment.Status.APPROVED)

    response = client.head(f"/posts/{post.slug}/comments/{comment.pk}/reply/")

    assert response.status_code == 200  # it was a 405


def test_a_reply_sent_back_with_a_problem_is_still_headed_as_a_reply(client, post):
    top = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Quoted.")

    response = comment_on(client, post, parent=top.pk, email="not-an-address")

    assert response.status_code == 400
    html = response.content.decode()
    assert f"<h1>Reply to <bdi>{top.name}</bdi></h1>" in html
    assert "Quoted." in html
    assert f'name="parent" value="{top.pk}"' in html


def test_a_reply_to_a_reply_sent_back_with_a_problem_still_names_whom_it_answers(
    client, post
):
    """Replying to Sam's reply under Jo's comment, a reader who left out their
    address was sent back to a page headed "Reply to Jo", quoting Jo."""
    top = CommentFactory(post=post, status="approved", name="Jo", body="Jo's words.")
    reply = CommentFactory(
        post=post, parent=top, status="approved", name="Sam", body="Sam's words."
    )
    reply_page = client.get(f"/posts/{post.slug}/comments/{reply.pk}/reply/").text
    parent = re.search(r'name="parent" value="(\d+)"', reply_page).group(1)

    response = comment_on(client, post, parent=parent, email="")

    assert response.status_code == 400
    assert "<h1>Reply to <bdi>Sam</bdi></h1>" in response.text
    assert "Sam&#x27;s words." in response.text
    comment_on(client, post, parent=parent)
    assert Comment.objects.latest("id").parent == top  # in Jo's thread all the same


@pytest.mark.parametrize(
    "case", ["pending", "spam", "deleted", "other post", "under a hidden comment"]
)
def test_the_reply_page_of_a_comment_readers_do_not_see_says_so_on_the_post(
    client, post, case
):
    """A comment taken off the post after the page with its Reply link was
    opened: the link led to "Page not found", for a post that is there."""
    comment = {
        "pending": lambda: CommentFactory(post=post),
        "spam": lambda: CommentFactory(post=post, status=Comment.Status.SPAM),
        "deleted": lambda: Comment(pk=987654),
        "other post": lambda: CommentFactory(status=Comment.Status.APPROVED),
        "under a hidden comment": lambda: CommentFactory(
            post=post,
            status=Comment.Status.APPROVED,
            parent=CommentFactory(post=post, status=Comment.Status.SPAM),
        ),
    }[case]()

    response = client.get(f"/posts/{post.slug}/comments/{comment.pk}/reply/")

    assert answer(response) == (
        302,
        f"/posts/{post.slug}/#comments",
        [
            "The comment you wanted to reply to is not available any more. "
            "You can still comment on the post."
        ],
    )
    assert "The comment you wanted to reply to" in client.get(response["Location"]).text


def test_the_reply_page_of_a_comment_gone_from_a_closed_post_offers_no_comment(
    client, post
):
    PostCommentSettings.objects.create(post=post, comments_open=False)
    spam = CommentFactory(post=post, status=Comment.Status.SPAM)

    response = client.get(f"/posts/{post.slug}/comments/{spam.pk}/reply/")

    assert answer(response)[2] == [
        "The comment you wanted to reply to is not available any more."
    ]


def test_a_reply_sent_after_the_post_was_unpublished_is_given_back_to_copy(
    client, post
):
    """The reader opened the reply page, and the author took the post down while
    they wrote: what the page's form sends is answered as a comment would be, but
    of a reply, with their text to copy, and the page names neither the post nor
    the comment."""
    top = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Quoted.")
    page = client.get(f"/posts/{post.slug}/comments/{top.pk}/reply/").text
    (action,) = re.findall(r'<form method="post" action="([^"#]*)', page)
    (parent,) = re.findall(r'name="parent" value="(\d+)"', page)
    written = "I worked in this office <for years> & saw it change."
    Post.objects.filter(pk=post.pk).update(status=Post.Status.DRAFT)

    response = client.post(action, {**FORM, "parent": parent, "body": written})

    assert response.status_code == 404
    assert "not open for comments" in response.text
    # Said of what they wrote: a reply, not a comment.
    assert "so your reply was not sent." in response.text
    assert "comment was not sent" not in response.text
    assert escape(written) in response.text
    assert post.title not in response.text
    assert "Quoted." not in response.text
    assert Comment.objects.filter(parent=top).count() == 0


def test_the_reply_page_of_an_unpublished_post_is_that_of_an_unknown_one(client, post):
    """Opening a reply link after the post was taken down is the 404 its own page
    gives, the same as for an address no post had: it names no post, nor what the
    comment said."""
    top = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Quoted.")
    Post.objects.filter(pk=post.pk).update(status=Post.Status.DRAFT)

    unpublished = client.get(f"/posts/{post.slug}/comments/{top.pk}/reply/")
    unknown = client.get(f"/posts/no-such-post/comments/{top.pk}/reply/")

    assert unpublished.status_code == unknown.status_code == 404
    assert unpublished.text == unknown.text
    assert post.title not in unpublished.text
    assert "Quoted." not in unpublished.text


# Closing --------------------------------------------------------------------------


def test_the_author_can_close_comments_on_a_post(client, rf, post):
    CommentFactory(post=post, status=Comment.Status.APPROVED, body="Earlier.")
    PostCommentSettings.objects.create(post=post, comments_open=False)

    response = comment_on(client, post)

    assert response.status_code == 403
    assert "Comments are closed" in response.content.decode()
    assert Comment.objects.count() == 1
    html = comments_section(rf, post)
    assert "Earlier." in html
    assert "Comments are closed." in html
    assert "<form" not in html
    assert "Reply to" not in html


def test_a_comment_sent_after_closing_is_given_back_to_copy(client, post):
    """The page was open when the reader began writing: what they wrote is not
    lost with the refusal."""
    written = "I worked in this office <for years> & saw it change."
    PostCommentSettings.objects.create(post=post, comments_open=False)

    response = comment_on(client, post, body=written)

    assert response.status_code == 403
    assert "Comments are closed" in response.text
    assert escape(written) in response.text
    assert not Comment.objects.exists()


def test_comments_close_by_themselves_after_the_set_number_of_days(client, settings):
    settings.COMMENTS_CLOSE_AFTER_DAYS = 30
    old = PublishedPostFactory(published_at=timezone.now() - timedelta(days=31))
    recent = PublishedPostFactory(published_at=timezone.now() - timedelta(days=29))

    assert comment_on(client, old).status_code == 403
    assert comment_on(client, recent).status_code == 302
    assert list(Comment.objects.values_list("post", flat=True)) == [recent.pk]


def test_zero_days_means_comments_never_close_by_age(client, settings):
    settings.COMMENTS_CLOSE_AFTER_DAYS = 0
    old = PublishedPostFactory(published_at=timezone.now() - timedelta(days=3000))
    assert comment_on(client, old).status_code == 302


def test_the_desk_says_whether_readers_may_comment_now_not_only_the_switch(
    admin_client, settings
):
    """A ticked "Comments open" on a post older than the set number of days left
    its comments closed, while the desk's list showed them open and its form named
    a setting where the author reads the days."""
    settings.COMMENTS_CLOSE_AFTER_DAYS = 30
    old = PublishedPostFactory(published_at=timezone.now() - timedelta(days=31))
    recent = PublishedPostFactory(published_at=timezone.now() - timedelta(days=29))
    for post in (old, recent):
        PostCommentSettings.objects.create(post=post, comments_open=True)

    page = admin_client.get("/admin/comments/postcommentsettings/").content.decode()

    readers_may_comment = dict(
        re.findall(
            r'value="(\d+)".*?<td class="field-open_to_readers_now">'
            r'<img src="[^"]*" alt="(True|False)">',
            page,
        )
    )
    assert readers_may_comment == {str(old.pk): "False", str(recent.pk): "True"}
    form = admin_client.get(
        f"/admin/comments/postcommentsettings/{old.pk}/change/"
    ).content.decode()
    assert "close by themselves 30 days after publication" in form
    assert "COMMENTS_CLOSE_AFTER_DAYS" not in form


def test_the_admin_can_close_comments_from_the_queue(admin_client, client):
    first, second = PublishedPostFactory(), PublishedPostFactory()
    PostCommentSettings.objects.create(post=second, comments_open=True)
    spam = [CommentFactory(post=first), CommentFactory(post=second)]

    response = admin_action(admin_client, "close_comments_on_posts", spam)

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Closed comments on 2 posts."
    ]
    assert set(PostCommentSettings.objects.values_list("post", "comments_open")) == {
        (first.pk, False),
        (second.pk, False),
    }
    assert comment_on(client, first).status_code == 403


def test_closing_comments_takes_the_permission_to_change_comment_settings(client):
    post = PublishedPostFactory()
    moderator = UserFactory(username="mod", is_superuser=False)
    moderator.user_permissions.set(
        Permission.objects.filter(codename__in=["view_comment", "change_comment"])
    )
    client.force_login(moderator)
    comment = CommentFactory(post=post)

    admin_action(client, "close_comments_on_posts", [comment])
    assert not PostCommentSettings.objects.filter(comments_open=False).exists()

    moderator.user_permissions.add(
        Permission.objects.get(codename="change_postcommentsettings")
    )
    admin_action(client, "close_comments_on_posts", [comment])
    assert PostCommentSettings.objects.get(post=post).comments_open is False


# Moderation in the admin ----------------------------------------------------------


def test_the_desk_offers_view_on_site_only_for_a_comment_readers_can_see(admin_client):
    # "View on site" of a waiting comment led to the post's page, without it.
    shown = CommentFactory(status="approved")
    waiting = CommentFactory(post=shown.post)
    reply_to_spam = CommentFactory(
        post=shown.post,
        parent=CommentFactory(post=shown.post, status="spam"),
        status="approved",
    )
    under_a_draft = CommentFactory(status="approved", post=PostFactory())

    def offered(comment) -> bool:
        page = admin_client.get(f"/admin/comments/comment/{comment.pk}/change/")
        assert page.status_code == 200
        return "View on site" in page.text

    assert offered(shown)
    assert not offered(waiting)
    assert not offered(reply_to_spam)
    assert not offered(under_a_draft)


def admin_action(admin_client, action, selected, **extra):
    return admin_client.post(
        "/admin/comments/comment/",
        {"action": action, "_selected_action": [c.pk for c in selected], **extra},
    )


def test_the_admin_queue_shows_pending_comments_by_default(admin_client):
    CommentFactory(body="Waiting for approval.")
    CommentFactory(body="Already published.", status=Comment.Status.APPROVED)

    html = admin_client.get("/admin/comments/comment/").content.decode()
    assert "Waiting for approval." in html
    assert "Already published." not in html

    everything = admin_client.get(
        "/admin/comments/comment/?status=all"
    ).content.decode()
    assert "Waiting for approval." in everything
    assert "Already published." in everything


def test_a_commenters_comments_are_found_by_their_address_as_they_write_it(
    admin_client,
):
    """A commenter who is no reader asks by email for their comments' erasure:
    the moderators find them however the address is stored."""
    CommentFactory(email="sam@xn--bcher-kva.example", body="Mine.")
    CommentFactory(email="other@example.org", body="Not mine.")

    found = admin_client.get(
        "/admin/comments/comment/", {"status": "all", "q": "Sam@Bücher.example"}
    )

    assert [c.body for c in found.context["cl"].result_list] == ["Mine."]


def test_a_search_from_the_queue_finds_a_commenters_comments_whatever_their_status(
    admin_client,
):
    """The search box of the queue as it opens (no status chosen): a moderator
    handling a commenter's erasure by email found only the comments still
    waiting, and deleted those, leaving the published ones on the site."""
    mine = [
        CommentFactory(email="sam@example.org", status=status, body=f"Mine, {status}.")
        for status in Comment.Status.values
    ]
    CommentFactory(email="other@example.org", body="Not mine.")

    found = admin_client.get("/admin/comments/comment/", {"q": "Sam@Example.org"})

    assert {c.pk for c in found.context["cl"].result_list} == {c.pk for c in mine}
    queue = admin_client.get("/admin/comments/comment/")
    assert [c.body for c in queue.context["cl"].result_list] == [
        "Mine, pending.",
        "Not mine.",
    ]


def test_the_admin_approves_in_bulk(admin_client):
    waiting = CommentFactory.create_batch(3)

    response = admin_action(admin_client, "approve", waiting[:2])

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Approved 2 comments."
    ]
    assert sorted(Comment.objects.values_list("status", flat=True)) == [
        "approved",
        "approved",
        "pending",
    ]


def test_approving_a_reply_to_a_comment_marked_as_spam_says_it_stays_hidden(
    admin_client, rf
):
    """A reply shows only under a comment readers see: the moderator who approves
    one written to a comment since marked as spam is told it stays hidden, rather
    than that it is approved and nothing more."""
    spam = CommentFactory(status=Comment.Status.SPAM)
    reply = CommentFactory(post=spam.post, parent=spam)
    other = CommentFactory(post=spam.post)

    response = admin_action(admin_client, "approve", [reply, other])

    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert messages == [
        "Approved 2 comments. 1 of them replies to a comment readers do not see "
        "(marked as spam or waiting), and stays hidden with it."
    ]
    assert f"comment-{reply.pk}" not in comments_section(rf, spam.post)


@pytest.mark.parametrize("replied_to_is", ["spam", "pending"])
def test_approving_a_hidden_reply_on_its_page_says_it_stays_hidden(
    admin_client, rf, replied_to_is
):
    """The digest's "Review this comment" leads to the comment's page: approved
    there, a reply to a comment readers do not see said only "changed
    successfully", and the moderator took it as published."""
    replied_to = CommentFactory(status=replied_to_is)
    reply = CommentFactory(post=replied_to.post, parent=replied_to)

    response = admin_client.post(
        f"/admin/comments/comment/{reply.pk}/change/",
        {
            "status_when_opened": "pending",
            "status": "approved",
            "name": reply.name,
            "email": reply.email,
            "website": "",
            "body": reply.body,
        },
    )

    assert response.status_code == 302
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert (
        "It replies to a comment readers do not see (marked as spam or waiting), "
        "and stays hidden with it." in messages
    )
    assert f"comment-{reply.pk}" not in comments_section(rf, replied_to.post)


def test_approving_a_reply_readers_see_on_its_page_warns_of_nothing(admin_client):
    replied_to = CommentFactory(status="approved")
    reply = CommentFactory(post=replied_to.post, parent=replied_to)

    response = admin_client.post(
        f"/admin/comments/comment/{reply.pk}/change/",
        {
            "status_when_opened": "pending",
            "status": "approved",
            "name": reply.name,
            "email": reply.email,
            "website": "",
            "body": reply.body,
        },
    )

    messages = get_messages(response.wsgi_request)
    assert [m.level_tag for m in messages] == ["success"]


def test_the_admin_marks_spam_in_bulk(admin_client):
    waiting = CommentFactory.create_batch(2)
    response = admin_action(admin_client, "mark_spam", waiting)
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Marked 2 comments as spam."
    ]
    assert set(Comment.objects.values_list("status", flat=True)) == {"spam"}


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_two_moderators_approving_one_comment_at_once_leave_one_in_its_history():
    """The desk's history names who approved a comment: the second of two
    moderators at once changed nothing, and is not named for it."""
    comment = CommentFactory()
    # Superusers: the roles' groups, made by a migration, are gone once an
    # earlier test's transaction is flushed.
    first, second = UserFactory(), UserFactory()

    def approve(moderator) -> str:
        client = Client()
        client.force_login(moderator)
        response = admin_action(client, "approve", [comment])
        return [str(said) for said in get_messages(response.wsgi_request)]

    said_first, said_second = as_it_commits(
        partial(approve, first), partial(approve, second), must_wait=True
    )

    assert (said_first, said_second) == (
        ["Approved 1 comment."],
        ["Approved 0 comments."],
    )
    assert [entry.user for entry in LogEntry.objects.all()] == [first]


def test_marking_a_comment_as_spam_says_the_replies_it_hides_with_it(admin_client, rf):
    """Other readers' approved replies go off the page with a comment marked as
    spam: the moderator is told, rather than only that one comment was marked."""
    published = CommentFactory(status=Comment.Status.APPROVED)
    replies = CommentFactory.create_batch(
        2, post=published.post, parent=published, status=Comment.Status.APPROVED
    )

    response = admin_client.post(
        "/admin/comments/comment/?status=approved",
        {"action": "mark_spam", "_selected_action": [published.pk]},
    )

    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert messages == [
        "Marked 1 comment as spam. 2 approved replies to them are hidden with "
        "them: readers no longer see them."
    ]
    section = comments_section(rf, published.post)
    assert not any(f"comment-{reply.pk}" in section for reply in replies)


def test_the_admin_deletes_in_bulk_after_confirming(admin_client):
    waiting = CommentFactory.create_batch(2)
    keep = CommentFactory()

    admin_action(admin_client, "delete_selected", waiting, post="yes")

    assert list(Comment.objects.all()) == [keep]


@pytest.mark.parametrize(
    ("url", "shows"),
    [
        ("/admin/comments/comment/{pk}/change/", lambda comment: comment.body),
        ("/admin/comments/postcommentsettings/", lambda comment: comment.post.title),
        # The post is picked by a search (autocomplete): the form is what shows.
        (
            "/admin/comments/postcommentsettings/add/",
            lambda comment: "Untick to close comments on this post.",
        ),
    ],
    ids=["comment", "settings", "settings-add"],
)
def test_the_comment_admin_pages_open(admin_client, url, shows):
    comment = CommentFactory(
        body="A reply the desk is to read.",
        parent=CommentFactory(status=Comment.Status.APPROVED),
    )
    PostCommentSettings.objects.create(post=comment.post, comments_open=False)
    response = admin_client.get(url.format(pk=comment.pk))
    assert response.status_code == 200
    assert shows(comment) in response.text


def test_an_address_edited_at_the_desk_is_stored_as_the_reader_would_be_found(
    admin_client,
):
    """Export and erasure find a person's comments by the stored form of their
    address: an address the desk typed otherwise would hide the comment from both."""
    comment = CommentFactory(email="sam@example.org", status=Comment.Status.APPROVED)

    response = admin_client.post(
        f"/admin/comments/comment/{comment.pk}/change/",
        {
            "status": "approved",
            "name": comment.name,
            "email": " Sam@B\u00fccher.Example ",
            "website": "",
            "body": comment.body,
        },
    )

    assert response.status_code == 302
    comment.refresh_from_db()
    assert comment.email == "sam@xn--bcher-kva.example"
    theirs = [AddressPeriod("sam@b\u00fccher.example")]
    assert len(comments.comments_for_addresses(addresses=theirs)) == 1


@pytest.mark.parametrize(
    ("opened_as", "decided_meanwhile"),
    [
        # Another moderator hides it: the edit must not bring the spam back.
        (Comment.Status.APPROVED, "mark_spam"),
        # Its writer confirms it: the edit must not take it off the post again.
        (Comment.Status.PENDING, "approve"),
    ],
)
def test_a_desk_edit_from_a_page_opened_before_a_decision_on_the_comment_is_refused(
    admin_client, rf, opened_as, decided_meanwhile
):
    """The change page sends the status it showed: saved after someone else had
    approved the comment or marked it as spam, it undid that, silently."""
    comment = CommentFactory(status=opened_as, body="Our caseloads are hihg.")
    url = f"/admin/comments/comment/{comment.pk}/change/"
    page = admin_client.get(url)
    as_the_page_holds = dict(
        re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text)
    )
    decided = Comment.objects.filter(pk=comment.pk)
    if decided_meanwhile == "mark_spam":
        comments.comments_mark_spam(comments=decided)
    else:
        comments.comments_approve(comments=decided)
    status_now = Comment.objects.get(pk=comment.pk).status

    response = admin_client.post(
        url,
        {
            **as_the_page_holds,
            "status": opened_as,
            "name": comment.name,
            "email": comment.email,
            "website": "",
            "body": "Our caseloads are high.",
        },
    )

    assert response.status_code == 200
    assert "since you opened it" in response.text
    comment.refresh_from_db()
    assert (comment.status, comment.body) == (status_now, "Our caseloads are hihg.")
    shown = "hihg" in comments_section(rf, comment.post)
    assert shown == (status_now == Comment.Status.APPROVED)


def test_a_comment_set_to_spam_on_its_page_says_the_replies_it_hides_with_it(
    admin_client,
):
    """The change page's status is the queue's "Mark as spam" for one comment:
    it says so too of the approved replies that go off the post page with it."""
    published = CommentFactory(status=Comment.Status.APPROVED)
    CommentFactory(post=published.post, parent=published, status="approved")
    url = f"/admin/comments/comment/{published.pk}/change/"

    response = admin_client.post(
        url,
        {
            "status_when_opened": "approved",
            "status": "spam",
            "name": published.name,
            "email": published.email,
            "website": "",
            "body": published.body,
        },
    )

    assert response.status_code == 302
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert "1 approved reply to it is hidden with it: readers no longer see it." in (
        messages
    )


def test_a_page_that_may_only_view_a_comment_shows_no_status_to_check(client):
    viewer = UserFactory(username="viewer", is_superuser=False)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_comment"))
    client.force_login(viewer)
    comment = CommentFactory()

    page = client.get(f"/admin/comments/comment/{comment.pk}/change/")

    assert page.status_code == 200
    assert comment.body in page.text
    assert "when opened" not in page.text.lower()


def test_staff_cannot_add_comments_in_the_admin(admin_client):
    assert admin_client.get("/admin/comments/comment/add/").status_code == 403


# Abuse ----------------------------------------------------------------------------


def test_a_filled_honeypot_looks_accepted_but_saves_nothing(client, post):
    response = comment_on(client, post, homepage="http://spam.example")
    assert response.status_code == 302
    assert not Comment.objects.exists()


def test_too_many_comments_from_one_address_are_refused(client, post, settings):
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 2
    assert comment_on(client, post, body="One.").status_code == 302
    assert comment_on(client, post, body="Two.").status_code == 302

    refused = comment_on(client, post, body="Three.")

    assert refused.status_code == 429
    assert "wait an hour" in refused.content.decode()
    assert refused["Retry-After"] == "3600"
    assert Comment.objects.count() == 2
    other = client.post(
        f"/posts/{post.slug}/comments/", FORM, REMOTE_ADDR="198.51.100.7"
    )
    assert other.status_code == 302


def test_too_many_comments_under_one_email_address_are_refused_from_any_client(
    post, settings, monkeypatch
):
    """Many clients, one address: a stranger must not pile comments (and the
    emails a known address may be sent) onto someone else's address."""
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 1
    monkeypatch.setattr(comments, "COMMENTS_MAX_PER_ADDRESS_PER_HOUR", 2)
    clients = (f"198.51.100.{n}" for n in range(1, 10))
    url = f"/posts/{post.slug}/comments/"
    for said in ("One.", "Two."):
        sent = {**FORM, "body": said}
        assert Client().post(url, sent, REMOTE_ADDR=next(clients)).status_code == 302

    written = "Third time, from a third client."
    refused = Client().post(url, {**FORM, "body": written}, REMOTE_ADDR=next(clients))

    assert refused.status_code == 429
    assert refused["Retry-After"] == "3600"
    assert "under this email address" in refused.text
    assert escape(written) in refused.text  # given back in the form, to send later
    assert Comment.objects.count() == 2
    other = {**FORM, "email": "sam@example.org"}
    assert Client().post(url, other, REMOTE_ADDR=next(clients)).status_code == 302


def test_the_addresss_owner_is_not_locked_out_by_comments_under_it(
    client, post, confirm, monkeypatch
):
    """A browser that proved the address is its owner: what strangers sent under
    the address does not stop them commenting."""
    monkeypatch.setattr(comments, "COMMENTS_MAX_PER_ADDRESS_PER_HOUR", 2)
    CommentFactory(email="alex@example.org", status=Comment.Status.APPROVED)
    _, links = confirm(client, post)
    client.post(links[0])
    url = f"/posts/{post.slug}/comments/"
    for n in range(1, 4):
        Client().post(url, FORM, REMOTE_ADDR=f"198.51.100.{n}")

    response = comment_on(client, post, body="Still me.")

    assert response.status_code == 302
    assert Comment.objects.get(body="Still me.").status == Comment.Status.APPROVED


def test_one_ipv6_network_shares_one_rate_limit(client, post, settings):
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 1
    url = f"/posts/{post.slug}/comments/"
    assert client.post(url, FORM, REMOTE_ADDR="2001:db8::1").status_code == 302
    assert client.post(url, FORM, REMOTE_ADDR="2001:db8::2").status_code == 429
    assert client.post(url, FORM, REMOTE_ADDR="2001:db8:1::1").status_code == 302


def test_more_links_than_allowed_are_refused(client, post, settings):
    settings.COMMENTS_MAX_LINKS = 2
    three = "See https://a.example/ and www.b.example and http://c.example/x."

    response = comment_on(client, post, body=three)

    assert response.status_code == 400
    assert "at most 2 links" in response.content.decode()
    assert not Comment.objects.exists()
    assert comment_on(client, post, body=three[:40]).status_code == 302


@pytest.mark.parametrize(
    "max_links, said",
    [(0, "Please include no links."), (1, "Please include at most 1 link.")],
)
def test_the_link_limit_is_said_in_good_english(
    client, post, settings, max_links, said
):
    """The author may allow one link, or none: the reader was asked for "at most
    1 links", or "at most 0 links"."""
    settings.COMMENTS_MAX_LINKS = max_links

    response = comment_on(
        client, post, body="See https://a.example/ and https://b.example/."
    )

    assert response.status_code == 400
    assert said in response.text


def test_addresses_typed_in_a_comment_are_not_links_and_not_counted_as_links(
    client, rf, post, settings
):
    """A reader giving three colleagues' addresses was refused "at most 2 links":
    the text made each a mailto: link, which also handed every address typed on
    the page to the harvesters that collect them from mailto: links. An address
    stays plain text, and only what is shown as a link counts."""
    settings.COMMENTS_MAX_LINKS = 2
    three = "Write to a.b@example.org, sam@example.net or jo@probation.example."

    assert comment_on(client, post, body=three).status_code == 302

    Comment.objects.update(status=Comment.Status.APPROVED)
    html = comments_section(rf, post)
    assert "mailto:" not in html
    assert "Write to a.b@example.org, sam@example.net or jo@probation.example." in html


@pytest.mark.parametrize(
    ("field", "length"), [("name", 101), ("body", 5001), ("website", 201)]
)
def test_over_long_fields_are_refused(client, post, field, length):
    value = "https://e.example/" + "a" * (length - 18) if field == "website" else ""
    response = comment_on(client, post, **{field: value or "a" * length})
    assert response.status_code == 400
    assert "at most" in response.content.decode()
    assert not Comment.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("body", "Hello\x07 there"),
        ("body", "Hello\x00"),
        ("name", "Alex\x1b[31m"),
        ("name", "Alex \u202eevil"),
        ("body", "Delete\x7f me"),
    ],
)
def test_control_characters_are_refused_with_a_clear_message(
    client, post, field, value
):
    response = comment_on(client, post, **{field: value})
    assert response.status_code == 400
    html = response.content.decode()
    assert "control characters" in html or "Null characters" in html
    assert not Comment.objects.exists()


def test_a_refused_comment_is_shown_back_as_written_but_for_what_was_refused(
    client, post
):
    """Its line breaks kept (they are the reader's text), the control character
    it was refused for left out: HTML forbids it in a page."""
    response = comment_on(client, post, body="First line.\nSecond\x0b line.")
    assert response.status_code == 400
    html = response.content.decode()
    assert "First line.\nSecond line.</textarea>" in html
    assert "\x0b" not in html


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "\u200b"), ("name", "\u3164\u3164"), ("body", "\u200b\n\u2800\ufeff")],
)
def test_a_name_or_comment_that_shows_nothing_is_refused(client, post, field, value):
    # Published, it would be a blank byline or an empty comment.
    response = comment_on(client, post, **{field: value})
    assert response.status_code == 400
    assert "blank or invisible characters" in response.content.decode()
    assert not Comment.objects.exists()


# A domain whose every label is 17 CJK characters: 120 characters as typed, over the
# 253 that DNS (and so any provider) takes once written in ASCII.
TOO_LONG_IN_ASCII = "a@" + ".".join(["\u5f32\u96db\u5613" * 5 + "\u6eb6\u5d17"] * 6)


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("jos\u00e9@example.org", "accented or non-Latin letters before the @"),
        (TOO_LONG_IN_ASCII + ".example", "Enter a valid email address."),
        ("r" * 65 + "@example.org", "longer than email allows (64 characters)"),
    ],
)
def test_an_address_no_provider_can_deliver_to_is_refused_as_subscribing_refuses_it(
    client, post, email, problem
):
    response = comment_on(client, post, email=email)

    assert response.status_code == 400
    assert problem in response.text
    assert not Comment.objects.exists()


def test_an_internationalised_domain_is_stored_in_its_ascii_form(client, post):
    assert comment_on(client, post, email="Alex@B\u00fccher.example").status_code == 302
    assert Comment.objects.get().email == "alex@xn--bcher-kva.example"


def test_odd_client_headers_are_stored_safely(client, post):
    response = client.post(
        f"/posts/{post.slug}/comments/",
        FORM,
        REMOTE_ADDR="unix:/run/gunicorn.sock",
        HTTP_USER_AGENT="Bot\x00\x1b[0m/1.0",
    )
    assert response.status_code == 302
    comment = Comment.objects.get()
    assert (comment.ip_address, comment.user_agent) == (None, "Bot[0m/1.0")


def test_line_breaks_and_tabs_are_kept(client, post):
    comment_on(client, post, body="First line\r\n\tindented\r\n\r\nNew paragraph")
    assert Comment.objects.get().body == "First line\n\tindented\n\nNew paragraph"


def _sometimes(valid: str, other: st.SearchStrategy | None = None):
    """Often valid values, so the accepting paths are exercised too."""
    return st.just(valid) | (st.text(max_size=300) if other is None else other)


@hypothesis_settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.fixed_dictionaries(
        {
            "name": _sometimes("Alex"),
            "email": _sometimes("alex@example.org", st.emails() | st.text()),
            "body": _sometimes("Agreed: https://a.example/"),
        },
        optional={
            "website": _sometimes("https://x.example/"),
            "parent": st.text(max_size=25) | st.integers().map(str),
            "homepage": st.sampled_from(["", "x"]),
        },
    ),
    user_agent=st.text(max_size=300),
)
def test_no_input_causes_an_error_and_refused_input_saves_nothing(
    client, post, data, user_agent
):
    cache.clear()
    # An example sent again would be the same comment, recorded once.
    Comment.objects.all().delete()
    before = Comment.objects.count()

    response = client.post(
        f"/posts/{post.slug}/comments/", data, HTTP_USER_AGENT=user_agent
    )

    assert response.status_code in (302, 400)
    event(f"status {response.status_code}")
    saved = Comment.objects.count() - before
    assert saved == (response.status_code == 302 and not data.get("homepage"))


# Personal data --------------------------------------------------------------------


def test_old_ip_addresses_are_forgotten_and_old_spam_deleted(settings):
    settings.COMMENTS_KEEP_IP_DAYS = 30
    long_ago = timezone.now() - timedelta(days=31)
    old = CommentFactory(created_at=long_ago, status=Comment.Status.APPROVED)
    CommentFactory(created_at=long_ago, status=Comment.Status.SPAM)
    recent_spam = CommentFactory(status=Comment.Status.SPAM)
    recent = CommentFactory()

    purge_comment_personal_data()

    old.refresh_from_db()
    assert (old.ip_address, old.user_agent) == (None, "")
    assert old.email  # still how their data is found on request
    assert set(Comment.objects.all()) == {old, recent_spam, recent}
    recent.refresh_from_db()
    assert recent.ip_address == "192.0.2.10"


@pytest.mark.parametrize(
    "mark_spam",
    [
        lambda desk, comment: desk.post(
            "/admin/comments/comment/?status=approved",
            {"action": "mark_spam", "_selected_action": [comment.pk]},
        ),
        lambda desk, comment: desk.post(
            f"/admin/comments/comment/{comment.pk}/change/",
            {
                "status": "spam",
                "name": comment.name,
                "email": comment.email,
                "website": "",
                "body": comment.body,
            },
        ),
    ],
    ids=["desk-bulk-action", "desk-change-page"],
)
def test_an_old_comment_marked_as_spam_is_kept_a_while_to_be_undone(
    admin_client, settings, mark_spam
):
    """The purge deletes spam COMMENTS_KEEP_IP_DAYS after it was marked, not after
    it was written: a month-old comment marked by mistake was gone within six
    hours, before anyone could put it back."""
    settings.COMMENTS_KEEP_IP_DAYS = 30
    comment = CommentFactory(
        created_at=timezone.now() - timedelta(days=60),
        status=Comment.Status.APPROVED,
    )
    mark_spam(admin_client, comment)
    assert Comment.objects.get().status == Comment.Status.SPAM

    purge_comment_personal_data()

    assert Comment.objects.filter(pk=comment.pk).exists()
    comments.comments_approve(comments=Comment.objects.filter(pk=comment.pk))
    assert Comment.objects.get().status == Comment.Status.APPROVED


def test_a_comment_waiting_for_a_moderator_outlives_its_confirmation_link(settings):
    """A held comment waits for a moderator, not for its writer: the emailed link
    only lets a known commenter skip the wait, and most are sent none. So its
    link expiring deletes nothing; only the IP address and browser go, in time."""
    settings.COMMENTS_KEEP_IP_DAYS = 30
    waiting = CommentFactory(
        created_at=timezone.now() - timedelta(days=31),
        confirmation_sent_at=timezone.now() - timedelta(days=31),
    )
    assert timedelta(days=31).total_seconds() > comments.CONFIRMATION_MAX_AGE_SECONDS

    purge_comment_personal_data()

    waiting.refresh_from_db()
    assert waiting.status == Comment.Status.PENDING
    assert (waiting.name, waiting.email) != ("", "")
    assert (waiting.ip_address, waiting.user_agent) == (None, "")


@pytest.mark.django_db(transaction=True)
def test_spam_there_was_before_its_marking_was_recorded_is_kept_a_while(settings):
    """Spam from before the purge went by when it was marked: when is not known,
    and old spam marked by mistake must not go at deploy, so it counts as now."""
    settings.COMMENTS_KEEP_IP_DAYS = 30
    executor = MigrationExecutor(connection)
    # Every app's latest: going back also took back the other apps' migrations
    # that depend on the later comments ones (newsletter 0014, and 0015 with a
    # column of Suppression), which its own latest alone left unapplied.
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([("comments", "0001_initial")])
    OldComment = executor.loader.project_state(
        ("comments", "0001_initial")
    ).apps.get_model("comments", "Comment")
    long_ago = timezone.now() - timedelta(days=60)
    for status in ("spam", "approved"):
        OldComment.objects.create(
            post_id=PublishedPostFactory().pk,
            name="Sam",
            email="sam@example.org",
            body=f"Written long ago, now {status}.",
            status=status,
            created_at=long_ago,
        )
    executor.loader.build_graph()
    executor.migrate(latest)

    purge_comment_personal_data()

    assert Comment.objects.count() == 2
    assert Comment.objects.get(status="spam").marked_spam_at > long_ago
    assert Comment.objects.get(status="approved").marked_spam_at is None


@pytest.mark.django_db(transaction=True)
def test_websites_stored_before_they_were_encoded_are_encoded_at_deploy():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()  # every app's, as above
    executor.migrate([("comments", "0002_comment_marked_spam_at")])
    OldComment = executor.loader.project_state(
        ("comments", "0002_comment_marked_spam_at")
    ).apps.get_model("comments", "Comment")
    post_id = PublishedPostFactory().pk
    for website in (
        'https://example.org/?q=<probation>&"x"',
        "https://example.org/" + "<>" * 90,  # too long once encoded
        "https://example.org/fine",
    ):
        OldComment.objects.create(
            post_id=post_id, name="Sam", email="s@example.org", website=website
        )
    executor.loader.build_graph()
    executor.migrate(latest)

    assert list(Comment.objects.order_by("pk").values_list("website", flat=True)) == [
        "https://example.org/?q=%3Cprobation%3E&%22x%22",
        "",
        "https://example.org/fine",
    ]


def test_replies_hidden_with_a_spam_comment_stay_hidden_once_it_is_deleted(
    rf, post, settings
):
    """Marking a comment as spam hides its thread; the purge that deletes the spam
    a month later must not bring the thread back, with nobody's say."""
    settings.COMMENTS_KEEP_IP_DAYS = 30
    long_ago = timezone.now() - timedelta(days=31)
    abuse = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Abuse.")
    CommentFactory(
        post=post,
        parent=abuse,
        status=Comment.Status.APPROVED,
        body="Answering the abuse.",
    )
    comments.comments_mark_spam(comments=Comment.objects.filter(pk=abuse.pk))
    Comment.objects.update(created_at=long_ago)
    Comment.objects.spam().update(marked_spam_at=long_ago)
    assert "Answering the abuse." not in comments_section(rf, post)

    purge_comment_personal_data()

    assert not Comment.objects.filter(pk=abuse.pk).exists()
    assert "Answering the abuse." not in comments_section(rf, post)
    assert comments.comment_counts(posts=[post]) == {}


@pytest.mark.parametrize(
    "delete",
    [
        lambda desk, abuse: desk.post(
            "/admin/comments/comment/?status=spam",
            {
                "action": "delete_selected",
                "_selected_action": [abuse.pk],
                "post": "yes",
            },
        ),
        lambda desk, abuse: desk.post(
            f"/admin/comments/comment/{abuse.pk}/delete/", {"post": "yes"}
        ),
        lambda desk, abuse: comments.comments_delete_for_addresses(
            addresses=[AddressPeriod(abuse.email)]
        ),
    ],
    ids=["desk-bulk-delete", "desk-delete-page", "persons-erasure"],
)
def test_replies_hidden_with_a_spam_comment_stay_hidden_whoever_deletes_it(
    admin_client, rf, post, delete
):
    """As with the purge: a moderator clearing the spam queue, or the spammer's
    address asking for erasure, must not bring the hidden thread back."""
    abuse = CommentFactory(post=post, status=Comment.Status.APPROVED, body="Abuse.")
    CommentFactory(
        post=post,
        parent=abuse,
        status=Comment.Status.APPROVED,
        body="Answering the abuse.",
    )
    comments.comments_mark_spam(comments=Comment.objects.filter(pk=abuse.pk))

    delete(admin_client, abuse)

    assert not Comment.objects.filter(pk=abuse.pk).exists()
    assert "Answering the abuse." not in comments_section(rf, post)
    assert comments.comment_counts(posts=[post]) == {}


def test_replies_hidden_with_a_comment_put_back_to_wait_wait_again_once_it_is_deleted(
    admin_client, rf, post
):
    """A moderator set a published comment back to waiting, which hides its
    replies, then deleted it: the replies came back as comments of their own, with
    nobody's say. They wait for a moderator, and the next digest lists them."""
    taken_back = CommentFactory(post=post, status="approved", body="Taken back.")
    reply = CommentFactory(
        post=post,
        parent=taken_back,
        status="approved",
        body="Answering it.",
        moderators_notified_at=timezone.now() - timedelta(days=2),
    )
    taken_back.status = Comment.Status.PENDING
    comments.comment_edit(comment=taken_back)
    assert "Answering it." not in comments_section(rf, post)

    admin_client.post(
        f"/admin/comments/comment/{taken_back.pk}/delete/", {"post": "yes"}
    )

    assert not Comment.objects.filter(pk=taken_back.pk).exists()
    assert "Answering it." not in comments_section(rf, post)
    assert comments.comment_counts(posts=[post]) == {}
    assert list(Comment.objects.awaiting_moderators()) == [reply]


def test_the_purge_runs_on_beat():
    from newsletter.celery import app
    from newsletter.settings import CELERY_BEAT_SCHEDULE

    app.loader.import_default_modules()
    for entry in ("purge-comment-personal-data", "email-comment-digest"):
        assert CELERY_BEAT_SCHEDULE[entry]["task"] in app.tasks


def test_a_persons_comments_are_deleted_on_request_and_replies_to_them_stay():
    theirs = CommentFactory(email="sam@example.org", status=Comment.Status.APPROVED)
    reply = CommentFactory(post=theirs.post, parent=theirs)
    CommentFactory(email="sam@example.org", post=theirs.post)

    deleted = comments.comments_delete_for_addresses(
        addresses=[AddressPeriod(" Sam@Example.org ")]
    )

    assert deleted == 2
    assert list(Comment.objects.all()) == [reply]
    reply.refresh_from_db()
    assert reply.parent is None


def test_a_persons_comments_are_in_their_data_export(settings):
    mine = CommentFactory(email="sam@example.org", body="My view.")
    CommentFactory(email="someone@example.org")

    exported = comments.comments_for_addresses(
        addresses=[AddressPeriod("Sam@example.org")]
    )

    assert len(exported) == 1
    assert exported[0]["comment"] == "My view."
    assert exported[0]["post_url"] == (settings.SITE_URL + mine.post.get_absolute_url())
    # Whoever posted it may not own the address: their IP and browser stay here.
    assert "ip_address" not in exported[0]
    assert "user_agent" not in exported[0]


def test_a_persons_comments_are_those_written_while_the_address_was_theirs():
    # Sam had the address from the first to the second change of hands.
    took, left = (
        timezone.now() - timedelta(days=30),
        timezone.now() - timedelta(days=10),
    )
    for days_ago, body in [(40, "Before."), (20, "Sam's."), (5, "After.")]:
        CommentFactory(
            email="sam@example.org",
            body=body,
            created_at=timezone.now() - timedelta(days=days_ago),
        )
    sams = [AddressPeriod("sam@example.org", after=took, until=left)]

    exported = comments.comments_for_addresses(addresses=sams)
    deleted = comments.comments_delete_for_addresses(addresses=sams)

    assert [row["comment"] for row in exported] == ["Sam's."]
    assert deleted == 1
    assert list(Comment.objects.values_list("body", flat=True)) == ["Before.", "After."]


def test_no_addresses_name_no_comments():
    CommentFactory()
    assert comments.comments_for_addresses(addresses=[]) == []
    assert comments.comments_delete_for_addresses(addresses=[]) == 0
    assert Comment.objects.exists()


# Counts on listings ---------------------------------------------------------------


def test_listings_count_approved_comments_in_one_query(django_assert_num_queries):
    posts = PublishedPostFactory.create_batch(10)
    CommentFactory.create_batch(3, post=posts[0], status=Comment.Status.APPROVED)
    CommentFactory(post=posts[0], parent=None)  # pending: not counted
    CommentFactory(post=posts[1], status=Comment.Status.SPAM)
    listed = list(Post.objects.published().for_listing())

    with django_assert_num_queries(1):
        html = render_to_string("posts/_post_list.html", {"posts": listed})

    assert html.count("3 comments") == 1
    assert html.count("#comments") == 1


def test_listings_count_the_comments_the_post_page_shows(client, rf):
    post = PublishedPostFactory()
    hidden = CommentFactory(post=post, status=Comment.Status.APPROVED)
    CommentFactory(post=post, parent=hidden, status=Comment.Status.APPROVED)
    CommentFactory(post=post, status=Comment.Status.APPROVED)
    # The first turns out to be abuse: marked as spam, its thread leaves the page.
    comments.comments_mark_spam(comments=Comment.objects.filter(pk=hidden.pk))
    listed = list(Post.objects.published().for_listing())

    listing = render_to_string("posts/_post_list.html", {"posts": listed})

    assert "1 comment<" in comments_section(rf, post)
    assert ">1 comment</a>" in listing


def test_deleting_a_post_deletes_its_comments():
    post = PostFactory()
    CommentFactory(post=post)
    post.delete()
    assert not Comment.objects.exists()


def test_a_reader_comments_from_a_cached_post_page_without_a_csrf_token(post):
    reader = Client(enforce_csrf_checks=True)
    first, second = (
        reader.get(post.get_absolute_url()),
        reader.get(post.get_absolute_url()),
    )
    assert first.status_code == second.status_code == 200
    assert 'id="comments"' in second.content.decode()
    response = reader.post(
        f"/posts/{post.slug}/comments/",
        {"name": "Alex", "email": "alex@example.org", "body": "A fair summary."},
    )
    assert response.status_code == 302
    assert Comment.objects.get().body == "A fair summary."


@pytest.mark.parametrize("origin", ["https://elsewhere.example", "null"])
def test_a_comment_another_site_makes_a_readers_browser_send_is_refused(
    client, post, settings, origin
):
    # The comment form takes no CSRF token, so a page elsewhere could have each of
    # its visitors' browsers post comments: from their addresses, recorded as the
    # commenter's, and each under its own client limit. Browsers say where a form
    # was sent from (Origin); only the site's own pages' are taken.
    settings.COMMENTS_MAX_PER_IP_PER_HOUR = 1
    forged = client.post(f"/posts/{post.slug}/comments/", FORM, HTTP_ORIGIN=origin)
    assert forged.status_code == 403
    assert "from this site" in forged.text
    assert FORM["body"] in forged.text  # the reader's words come back
    assert not Comment.objects.exists()
    # Nothing counted against the reader's own limit: their own comment is taken.
    own = client.post(
        f"/posts/{post.slug}/comments/", FORM, HTTP_ORIGIN="http://testserver"
    )
    assert own.status_code == 302
    assert Comment.objects.get().body == FORM["body"]


def test_a_comment_sent_with_redis_down_is_held_for_the_moderators(
    client, post, redis_down, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = comment_on(client, post)
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [HELD_MESSAGE]
    assert Comment.objects.get().status == Comment.Status.PENDING
    assert "email_comment_confirmation" in caplog.text  # it could not be queued
