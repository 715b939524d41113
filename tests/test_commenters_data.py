"""A commenter who never subscribed gets a copy of, or erases, what the site keeps
about their comments (UK GDPR articles 15 and 17): they ask by address, and the
address's owner is emailed a link."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.core import mail
from django.core.cache import cache
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.logs import redact
from newsletter.models import PreviousAddress, Suppression
from newsletter.subscriptions import address_suppress
from posts.comments import services as comments
from posts.comments.models import Comment

from .factories import CommentFactory, StaffFactory, SubscriberFactory
from .test_personal_data import columns_naming

pytestmark = pytest.mark.django_db

ADDRESS = "sam@example.org"


@pytest.fixture
def ask(client, celery_eager, django_capture_on_commit_callbacks):
    """Ask for the link to an address's comments' data as a visitor would, the
    queued email sent; the answer and the links emailed."""

    def ask_for(email: str):
        sent_before = len(mail.outbox)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/comments/data/", {"email": email})
        links = [
            re.search(r"https?://\S+(/comments/data/\S+/)", message.body).group(1)
            for message in mail.outbox[sent_before:]
        ]
        return response, links

    return ask_for


def test_the_comment_form_links_to_the_commenters_data_page(client):
    comment = CommentFactory(status=Comment.Status.APPROVED)
    page = client.get(comment.post.get_absolute_url()).content.decode()
    assert 'href="/comments/data/"' in page
    assert client.get("/comments/data/").status_code == 200


def test_the_answer_is_the_same_whether_or_not_the_address_wrote_a_comment(ask):
    CommentFactory(email=ADDRESS)

    known, known_links = ask(ADDRESS)
    unknown, unknown_links = ask("nobody@example.org")

    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    assert "If comments were posted here with that address" in known.content.decode()
    # Only the address that wrote a comment is emailed, and only its owner sees it.
    assert len(known_links) == 1
    assert unknown_links == []
    assert [message.to for message in mail.outbox] == [[ADDRESS]]
    assert "sam" not in mail.outbox[0].body.replace(ADDRESS, "")


def test_a_commenter_we_no_longer_email_is_told_where_to_write_instead(ask, settings):
    """No link goes to an address that complained, bounced or asked never to be
    emailed; its commenter was told only to check their spam folder, and could
    never have their comments erased."""
    settings.NEWSLETTER_REPLY_TO = "On Probation <editor@probation.example>"
    # A link the reader's mail program opens, addressed.
    write_to_us = (
        'write to us at <a href="mailto:editor@probation.example">'
        "editor@probation.example</a>"
    )
    CommentFactory(email=ADDRESS)
    address_suppress(email=ADDRESS, reason=Suppression.Reason.COMPLAINT)

    response, links = ask(ADDRESS)

    assert links == []
    assert write_to_us in response.text


def test_the_link_downloads_exactly_that_addresss_comments(client, ask):
    mine = CommentFactory(email=ADDRESS, name="Sam", website="https://sam.example")
    CommentFactory(email="other@example.org", name="Kit", post=mine.post)
    _, [link] = ask("Sam@EXAMPLE.org")

    page = client.get(link)
    assert page.status_code == 200
    assert "We hold 1 comment posted with" in page.content.decode()
    download = client.post(link, {"action": "export"})

    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    data = json.loads(download.content)
    assert [(c["name"], c["email"], c["website"]) for c in data["comments"]] == [
        ("Sam", ADDRESS, "https://sam.example")
    ]
    # A link that opens the post from the downloaded file, not a bare path.
    assert [c["post_url"] for c in data["comments"]] == [
        f"http://127.0.0.1:8000/posts/{mine.post.slug}/"
    ]
    # Anyone may comment giving any address: the IP address may be a stranger's.
    assert "192.0.2.10" not in download.content.decode()
    assert Comment.objects.count() == 2


def test_a_post_since_unpublished_is_named_in_the_download_without_a_link(client, ask):
    """Each comment linked to its post, and a post the author has since taken
    off the site led to "Page not found"."""
    gone = CommentFactory(email=ADDRESS, post__title="Taken down")
    still = CommentFactory(email=ADDRESS, post__title="Still up")
    gone.post.status = gone.post.Status.DRAFT
    gone.post.save()
    _, [link] = ask(ADDRESS)

    data = json.loads(client.post(link, {"action": "export"}).content)

    by_title = {c["post"]: c for c in data["comments"]}
    assert by_title["Taken down"]["post_url"] is None
    assert by_title["Taken down"]["post_on_site"] is False
    assert by_title["Still up"]["post_url"] == (
        f"http://127.0.0.1:8000/posts/{still.post.slug}/"
    )
    assert by_title["Still up"]["post_on_site"] is True
    assert client.get(by_title["Still up"]["post_url"]).status_code == 200


def test_the_download_holds_what_the_desk_did_to_the_comments_but_not_who(client, ask):
    """A reader's export lists what the desk did to their comments (the admin's
    log, which the erasure rewrites); a commenter's, with "the same rights over
    their comments", left it out."""
    editor = StaffFactory(username="jo.bloggs", role="Editor")
    mine = CommentFactory(email=ADDRESS)
    someone_elses = CommentFactory(email="other@example.org", post=mine.post)
    for comment in (mine, someone_elses):
        LogEntry.objects.log_actions(
            user_id=editor.pk,
            queryset=[comment],
            action_flag=CHANGE,
            change_message="Approved.",
        )
    _, [link] = ask(ADDRESS)

    download = client.post(link, {"action": "export"})

    data = json.loads(download.content)
    assert [
        (entry["about"], entry["action"], entry["by"], entry["change"])
        for entry in data["desk_history"]
    ] == [(str(mine), "changed", "Editor", "Approved.")]
    assert "jo.bloggs" not in download.content.decode()


def test_erasing_leaves_no_row_naming_the_address_and_ends_the_link(client, ask):
    mine = CommentFactory(email=ADDRESS, name="Sam Commenter")
    CommentFactory(email=ADDRESS, status=Comment.Status.APPROVED)
    reply = CommentFactory(email="other@example.org", parent=mine, post=mine.post)
    _, [link] = ask(ADDRESS)

    response = client.post(link, {"action": "delete"})

    assert response.status_code == 200
    assert "Your comments are deleted" in response.content.decode()
    assert columns_naming(ADDRESS) == []
    assert columns_naming("Sam Commenter") == []
    # Another's reply stays, as a subscriber's erasure leaves it.
    assert Comment.objects.filter(pk=reply.pk, parent=None).exists()
    assert client.post(link, {"action": "export"}).status_code == 404


def test_what_a_reader_wrote_before_moving_away_from_the_address_stays_theirs(
    client, ask
):
    former = SubscriberFactory(email="now@example.org")
    theirs = CommentFactory(
        email=ADDRESS, created_at=timezone.now() - timedelta(days=10)
    )
    PreviousAddress.objects.create(
        subscriber=former, email=ADDRESS, moved_at=timezone.now() - timedelta(days=5)
    )
    _, links = ask(ADDRESS)
    assert links == []  # nothing written under it since it is its owner's

    CommentFactory(email=ADDRESS, name="Its owner now")
    _, [link] = ask(ADDRESS)
    data = json.loads(client.post(link, {"action": "export"}).content)
    assert [c["name"] for c in data["comments"]] == ["Its owner now"]

    client.post(link, {"action": "delete"})
    assert list(Comment.objects.all()) == [theirs]


def test_a_forged_or_expired_link_is_refused_clearly(client, ask, monkeypatch):
    CommentFactory(email=ADDRESS)
    _, [link] = ask(ADDRESS)
    forged = client.post(link.replace(":", "x:", 1), {"action": "export"})
    assert forged.status_code == 404
    assert "This link is not valid" in forged.content.decode()

    monkeypatch.setattr(comments, "DATA_LINK_MAX_AGE_SECONDS", -1)
    expired = client.post(link, {"action": "delete"})
    assert expired.status_code == 410
    assert "This link has expired" in expired.content.decode()
    assert Comment.objects.count() == 1


def test_a_head_or_get_of_the_link_changes_nothing(client, ask):
    CommentFactory(email=ADDRESS)
    _, [link] = ask(ADDRESS)
    assert client.head(link).status_code == 200
    assert client.get(link).status_code == 200
    assert client.post(link, {"action": "nonsense"}).status_code == 400
    assert Comment.objects.count() == 1


def test_asking_too_often_for_an_address_is_refused_and_sends_nothing(ask, settings):
    CommentFactory(email=ADDRESS)
    for _ in range(settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS):
        assert ask(ADDRESS)[0].status_code == 200
    response, links = ask(ADDRESS)
    assert response.status_code == 429
    assert links == []


@pytest.mark.parametrize(
    "limit",
    ["NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT", "NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS"],
)
def test_a_commenter_over_a_limit_gets_the_form_back_with_their_address(
    ask, settings, limit
):
    """The answer was a page saying "try again in an hour", with no form: the
    address typed was gone."""
    CommentFactory(email=ADDRESS)
    setattr(settings, limit, 0)
    response, links = ask(ADDRESS)
    assert response.status_code == 429
    assert response["Retry-After"] == str(
        settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS
    )
    assert "Too many requests" in response.text
    assert "try again in an hour" in response.text
    assert f'name="email" value="{ADDRESS}"' in response.text
    assert links == []
    assert not mail.outbox


def test_the_links_token_is_kept_out_of_the_logs():
    assert redact("GET /comments/data/abc:def:ghi/ 200") == (
        "GET /comments/data/[redacted] 200"
    )


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(email=st.text(max_size=300), token=st.text(min_size=1, max_size=80))
def test_bad_input_is_refused_and_never_a_500(client, celery_eager, email, token):
    cache.clear()
    response = client.post("/comments/data/", {"email": email})
    assert response.status_code in (200, 400)
    for method in (client.get, client.post):
        assert method(f"/comments/data/{token}/").status_code < 500


def test_asking_for_a_commenters_data_with_redis_down_is_refused_and_sends_nothing(
    client, redis_down
):
    CommentFactory(email="sam@example.org")
    response = client.post("/comments/data/", {"email": "sam@example.org"})
    assert response.status_code == 503
    assert "try again in a minute" in response.text
    assert not mail.outbox


def test_a_commenter_asking_with_redis_down_gets_the_form_back_with_their_address(
    client, redis_down
):
    CommentFactory(email=ADDRESS)
    response = client.post("/comments/data/", {"email": ADDRESS})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "try again in a minute" in response.text
    assert f'name="email" value="{ADDRESS}"' in response.text
    assert not mail.outbox


def test_an_international_address_is_named_as_its_commenter_writes_it(client, ask):
    """The page named the address in its stored ASCII form (xn--bcher-kva)."""
    CommentFactory(email="sam@xn--bcher-kva.example")
    _, [link] = ask("Sam@Bücher.example")

    page = client.get(link).text

    assert "posted with <strong>sam@bücher.example</strong>" in page
