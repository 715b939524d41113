import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from posts import services
from posts.comments import services as comments
from posts.comments.models import Comment
from posts.models import Post

from .factories import CommentFactory, PostFactory, PublishedPostFactory, UserFactory

pytestmark = pytest.mark.django_db


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_a_post_page_read_twice_is_served_from_the_cache_the_second_time(client):
    post = PublishedPostFactory(title="Derby: Inadequate")
    first = client.get(post.get_absolute_url())
    assert queries_for(client, post.get_absolute_url()) == 0
    second = client.get(post.get_absolute_url())
    assert second.content == first.content
    assert second["Content-Security-Policy"] == first["Content-Security-Policy"]
    assert second["X-Frame-Options"] == "DENY"


def test_editing_a_post_shows_the_change_on_the_next_read(
    client, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory(title="Derby: Inadequate")
    client.get(post.get_absolute_url())
    client.get("/")
    with django_capture_on_commit_callbacks(execute=True):
        post.title = "Derby: Requires improvement"
        post.save()
    assert "Derby: Requires improvement" in client.get(post.get_absolute_url()).text
    assert "Derby: Requires improvement" in client.get("/").text


def test_publishing_a_post_shows_it_on_the_home_page_at_once(
    client, django_capture_on_commit_callbacks
):
    PublishedPostFactory(title="An older post")
    client.get("/")
    draft = PostFactory(title="Wales: unpaid work restarts")
    with django_capture_on_commit_callbacks(execute=True):
        services.post_publish(post=draft)
    assert "Wales: unpaid work restarts" in client.get("/").text


def test_a_scheduled_post_going_live_retires_the_cached_home_page(
    client, django_capture_on_commit_callbacks
):
    PublishedPostFactory(title="An older post")
    scheduled = PublishedPostFactory(title="Scheduled", announced_at=None)
    Post.objects.filter(pk=scheduled.pk).update(published_at=None)  # not visible yet
    assert "Scheduled" not in client.get("/").text
    Post.objects.filter(pk=scheduled.pk).update(published_at="2020-01-01T00:00Z")
    with django_capture_on_commit_callbacks(execute=True):
        services.posts_announce_due()
    assert "Scheduled" in client.get("/").text


def test_made_up_query_strings_are_answered_fresh_and_not_cached(client):
    PublishedPostFactory()
    client.get("/?utm=1")
    assert queries_for(client, "/?utm=1") > 0
    client.get("/?page=1")
    assert queries_for(client, "/?page=1") == 0


def test_the_logged_in_author_always_sees_fresh_pages():
    post = PublishedPostFactory()
    Client().get(post.get_absolute_url())  # cached for readers
    author = Client()
    author.force_login(UserFactory())
    assert queries_for(author, post.get_absolute_url()) > 0


def test_approving_a_comment_shows_it_on_the_cached_post_page_at_once(
    client, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory()
    held = CommentFactory(post=post, body="Held until the author approves it.")
    assert held.body not in client.get(post.get_absolute_url()).text  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        comments.comments_approve(comments=Comment.objects.filter(pk=held.pk))
    assert held.body in client.get(post.get_absolute_url()).text


HIDE = {
    "mark-spam": lambda comment: comments.comments_mark_spam(
        comments=Comment.objects.filter(pk=comment.pk)
    ),
    # What the admin's bulk "delete selected" does.
    "admin-delete": lambda comment: Comment.objects.filter(pk=comment.pk).delete(),
    "data-request-delete": lambda comment: comments.comments_delete_for_email(
        email=comment.email
    ),
}


@pytest.mark.parametrize("how", HIDE)
def test_hiding_a_comment_removes_it_from_the_cached_post_page_at_once(
    client, django_capture_on_commit_callbacks, how
):
    post = PublishedPostFactory()
    shown = CommentFactory(post=post, body="Approved earlier.", status="approved")
    assert shown.body in client.get(post.get_absolute_url()).text  # now cached
    with django_capture_on_commit_callbacks(execute=True):
        HIDE[how](shown)
    assert shown.body not in client.get(post.get_absolute_url()).text


def test_closing_comments_removes_the_form_from_the_cached_post_page(
    client, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory()
    assert "Leave a reply" in client.get(post.get_absolute_url()).text
    with django_capture_on_commit_callbacks(execute=True):
        comments.comments_close(posts=Post.objects.filter(pk=post.pk))
    assert "Comments are closed." in client.get(post.get_absolute_url()).text
