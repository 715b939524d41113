"""The author's email tools in the admin: preview, test send, and the size warning."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.utils import timezone

from posts.models import Post, Sponsorship

from .factories import (
    CategoryFactory,
    PostFactory,
    PublishedPostFactory,
    UserFactory,
    admin_post_form,
)

pytestmark = pytest.mark.django_db

LONG_BODY = "\n\n".join(
    ["Inspectors read case files and interviewed staff in every team. " * 8] * 250
)


def flash(response) -> str:
    """The messages the admin shows after a redirect, as one string."""
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.fixture
def author(client):
    user = UserFactory(email="editor@example.org")
    client.force_login(user)
    return user


def test_author_previews_a_post_as_its_email_at_two_widths_and_as_text(client, author):
    post = PostFactory(title="Derby & Nottingham", body="## Findings\n\n- one\n- two")
    page = client.get(f"/admin/posts/post/{post.pk}/email/")
    assert page.status_code == 200
    content = page.content.decode()
    assert content.count("<iframe") == 2
    assert 'width="700"' in content and 'width="375"' in content
    # The whole HTML email sits escaped inside srcdoc, and the text part below it.
    assert 'srcdoc="&lt;!DOCTYPE html&gt;' in content
    assert "Derby &amp;amp; Nottingham" in content
    assert "Findings\n========" in content
    assert "- one\n- two" in content


def test_change_form_links_to_the_email_preview_and_tells_the_format(client, author):
    post = PostFactory()
    page = client.get(f"/admin/posts/post/{post.pk}/change/")
    assert f"/admin/posts/post/{post.pk}/email/" in page.content.decode()
    assert "Subscribers get the whole post" in page.content.decode()


def test_a_post_not_emailed_is_not_said_to_reach_subscribers(client, author):
    """With "Email to subscribers" unticked nobody is emailed the post (nor is it
    in a digest), but its page and its preview said "Subscribers get the whole
    post": the author read it as going out."""
    post = PostFactory(email_subscribers=False)
    for url in (
        f"/admin/posts/post/{post.pk}/change/",
        f"/admin/posts/post/{post.pk}/email/",
    ):
        content = client.get(url).content.decode()
        assert "Subscribers get" not in content
        assert "Not emailed: “Email to subscribers” is unticked." in content
        assert "Ticked, subscribers would get the whole post" in content


def test_send_a_test_to_me_goes_through_the_backend_marked_test(
    client, author, celery_eager, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory(title="Derby: Inadequate")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/posts/post/{post.pk}/email/test/")
    assert response.status_code == 302
    assert [m.to for m in mail.outbox] == [["editor@example.org"]]
    message = mail.outbox[0]
    assert message.subject == "[TEST] Derby: Inadequate"
    assert message.extra_headers["List-Unsubscribe-Post"] == (
        "List-Unsubscribe=One-Click"
    )
    assert "on its way to editor@example.org" in flash(response)


def test_send_a_test_needs_an_address_a_post_and_a_post_request(
    client, celery_eager, django_capture_on_commit_callbacks
):
    client.force_login(UserFactory(email=""))
    post = PostFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/posts/post/{post.pk}/email/test/")
        assert client.get(f"/admin/posts/post/{post.pk}/email/test/").status_code == 405
        assert client.post("/admin/posts/post/999999/email/test/").status_code == 404
        assert client.get("/admin/posts/post/nope/email/").status_code == 404
    assert response.status_code == 302
    assert "no email address" in flash(response)
    assert mail.outbox == []


def test_email_tools_are_for_staff_only(client):
    post = PostFactory()
    response = client.get(f"/admin/posts/post/{post.pk}/email/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_saving_a_post_too_long_for_an_inbox_warns_the_author(client, author):
    post = PostFactory()
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form(title=post.title, slug=post.slug, body=LONG_BODY),
    )
    assert response.status_code == 302
    assert "too long for an inbox" in flash(response)
    assert Post.objects.get(pk=post.pk).body == LONG_BODY.strip()


def test_saving_a_post_with_an_image_without_alt_text_warns_the_author(client, author):
    post = PostFactory()
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form(
            title=post.title,
            slug=post.slug,
            body="![](https://example.org/a.png) ![A chart](https://example.org/b.png)",
        ),
    )
    assert response.status_code == 302
    assert "1 image has no alt text" in flash(response)
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "1 image has no alt text" in page


def test_a_draft_whose_author_typed_the_emails_date_placeholder_previews(
    client, author
):
    """The email fills in the post's date, in each reader's zone, where its
    template left %%post_date%%: typed by the author into a draft (which has no
    date yet), its preview was a 500. Left as typed."""
    typed = "%%post_date%%"
    post = PostFactory(title=f"About {typed}", body=f"Write {typed} in the template.")
    page = client.get(f"/admin/posts/post/{post.pk}/email/")
    assert page.status_code == 200
    content = page.content.decode()
    assert f"Write {typed} in the template." in content  # the text part, as typed
    assert f"About {typed}" in content


def test_a_scheduled_posts_preview_shows_the_sponsor_of_the_day_it_goes_out(
    client, author
):
    """The preview of a post scheduled for next week named this week's sponsor:
    the email names the one in force the day it goes, as the preview now does.
    A post already live goes today, and names today's."""
    today = timezone.localdate()
    category = CategoryFactory(name="Youth justice")
    for name, starts_on in [
        ("Sponsor Now", today),
        ("Sponsor Then", today + timedelta(days=10)),
    ]:
        Sponsorship.objects.create(
            category=category,
            name=name,
            url="https://sponsor.example/",
            starts_on=starts_on,
            ends_on=starts_on + timedelta(days=3),
        )
    scheduled = PublishedPostFactory(
        published_at=timezone.now() + timedelta(days=11), announced_at=None
    )
    live = PublishedPostFactory(
        published_at=timezone.now() - timedelta(days=30), announced_at=None
    )
    for post in (scheduled, live):
        post.categories.add(category)

    preview = client.get(f"/admin/posts/post/{scheduled.pk}/email/").content.decode()
    assert "Sponsor Then" in preview and "Sponsor Now" not in preview
    preview = client.get(f"/admin/posts/post/{live.pk}/email/").content.decode()
    assert "Sponsor Now" in preview and "Sponsor Then" not in preview
