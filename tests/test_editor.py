"""The post editor in the admin: a live preview from the site's own renderer, a
toolbar, the post's images to insert, and a textarea that works without JavaScript."""

import html

import pytest
from django.contrib.auth.models import Permission
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from posts import checks
from posts.markdown import render_markdown
from posts.models import Post, PostImage

from .factories import PostFactory, UserFactory, admin_post_form

pytestmark = pytest.mark.django_db

PREVIEW_URL = "/admin/posts/post/preview/"
# A one-pixel GIF: the smallest image Pillow reads.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01"
    b"\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


@pytest.fixture
def author(client):
    user = UserFactory()
    client.force_login(user)
    return user


def test_the_preview_is_what_readers_get_sanitised(client, author):
    body = (
        "## Findings\n\nCaseloads were **too high**. [x](javascript:alert(1))\n\n"
        "<script>alert(1)</script>\n\n"
        '<img src="https://e.org/a.png" onerror="alert(2)" alt="Staff">'
    )
    response = client.post(PREVIEW_URL, {"body": body})
    assert response.status_code == 200
    preview = response.json()
    assert preview["html"] == render_markdown(body)
    assert '<h2 id="user-content-findings">Findings</h2>' in preview["html"]
    assert "<script" not in preview["html"] and "onerror" not in preview["html"]
    assert 'href="javascript' not in preview["html"]


def test_the_preview_counts_words_and_reading_time(client, author):
    preview = client.post(PREVIEW_URL, {"body": "word " * 500}).json()
    assert (preview["words"], preview["minutes"]) == (500, 3)
    empty = client.post(PREVIEW_URL, {}).json()
    assert empty == {"html": "", "words": 0, "minutes": 1, "problems": ""}


def test_the_preview_counts_the_words_readers_will_see(client, author):
    note = "<!-- " + "a note to the desk " * 100 + "-->"
    link = "[the report](https://example.org/" + "/".join(["report"] * 250) + ")"
    body = f"{'word ' * 458}{link}\n\n{note}"
    preview = client.post(PREVIEW_URL, {"body": body}).json()
    assert (preview["words"], preview["minutes"]) == (460, 2)


def test_the_preview_lists_the_texts_warnings_as_saving_would(client, author):
    """The author saw a warning only on saving: a link to a post not yet live,
    written minutes before, went unnoticed until then."""
    PostFactory(slug="kent-draft")
    body = (
        "See [Kent](/posts/kent-draft/), [the board](#the-board) and "
        "[x](javascript:alert(1)).\n\n![](https://example.org/chart.png)"
    )
    preview = client.post(PREVIEW_URL, {"body": body}).json()
    listed = checks.post_problems(PostFactory(body=body))
    problems = html.unescape(preview["problems"])
    assert "<h2>Checks before publishing, on this text</h2>" in problems
    assert problems.count("<li") == len(listed) == 4
    for problem in listed:
        said = "Blocks publishing:" if problem.blocking else "Warning:"
        assert f"<strong>{said}</strong> {problem.message}</li>" in problems


def test_the_preview_of_a_post_linking_to_its_own_address_warns_as_saving_would(
    client, author
):
    """A post's link to its own address goes live with it, and saving says
    nothing of it; the preview, not told which post it was, warned of it."""
    body = "Share [this post](/posts/kent-draft/)."
    draft = PostFactory(slug="kent-draft", body=body)
    assert checks.post_problems(draft, checks=checks.BODY_CHECKS) == []
    preview = client.post(PREVIEW_URL, {"body": body, "slug": "kent-draft"}).json()
    assert preview["problems"] == ""
    # A new post, not saved yet: the slug the author typed is its address.
    body = "Share [this post](/posts/surrey-new/)."
    preview = client.post(PREVIEW_URL, {"body": body, "slug": "surrey-new"}).json()
    assert preview["problems"] == ""
    # Another post's address is still checked.
    preview = client.post(PREVIEW_URL, {"body": body, "slug": "kent-draft"}).json()
    assert "leads to nothing on this site" in html.unescape(preview["problems"])


def test_the_preview_of_a_text_without_problems_lists_none(client, author):
    preview = client.post(PREVIEW_URL, {"body": "[a](https://example.org/)"}).json()
    assert preview["problems"] == ""


def test_the_preview_answers_only_a_post_with_a_csrf_token(author):
    client = Client(enforce_csrf_checks=True)
    client.force_login(author)
    assert client.post(PREVIEW_URL, {"body": "hi"}).status_code == 403
    assert client.get(PREVIEW_URL).status_code == 405


def test_the_preview_is_for_staff_who_may_write_posts(client):
    # Not logged in: the admin's login page, not a preview.
    response = client.post(PREVIEW_URL, {"body": "**hi**"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    # A reader with an account but no staff status: the same.
    client.force_login(
        UserFactory(username="reader", is_staff=False, is_superuser=False)
    )
    assert client.post(PREVIEW_URL, {"body": "**hi**"}).status_code == 302
    # Staff who may only look at posts: refused.
    viewer = UserFactory(username="viewer", is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_post"))
    client.force_login(viewer)
    assert client.post(PREVIEW_URL, {"body": "**hi**"}).status_code == 403
    # Staff who may write posts: a preview.
    writer = UserFactory(username="writer", is_superuser=False)
    writer.user_permissions.add(Permission.objects.get(codename="add_post"))
    client.force_login(writer)
    assert client.post(PREVIEW_URL, {"body": "**hi**"}).status_code == 200


def test_the_change_form_has_the_editor_with_no_inline_script_or_style(client, author):
    post = PostFactory()
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    start = page.index('<div class="markdown-editor"')
    editor = page[start : page.index("markdown-editor-stats", start)]
    assert f'data-preview-url="{PREVIEW_URL}"' in editor
    for button in ("heading", "bold", "link", "list", "quote"):
        assert f'data-markdown="{button}"' in editor
    # Toolbar and preview appear only once the script runs; the textarea is there.
    assert 'role="toolbar" aria-label="Markdown" hidden' in editor
    assert '<textarea name="body"' in editor
    assert "<script" not in editor and "style=" not in editor
    assert '<script src="/static/posts/admin/editor.js"' in page
    assert 'href="/static/posts/admin/editor.css"' in page
    assert finders.find("posts/admin/editor.js") and finders.find(
        "posts/admin/editor.css"
    )


def test_the_posts_images_can_be_inserted_from_the_toolbar(client, author, media):
    post = PostFactory()
    image = PostImage.objects.create(
        post=post,
        image=SimpleUploadedFile("staff.gif", PIXEL, content_type="image/gif"),
        alt="Probation staff [at work]",
    )
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    # Its brackets escaped: as typed, "[at work](…)" was a link, and no image.
    snippet = rf"![Probation staff \[at work\]]({image.image.url})"
    assert f'data-snippet="{snippet}"' in page


def test_a_new_post_is_written_and_saved_with_the_textarea_alone(client, author):
    response = client.post(
        "/admin/posts/post/add/",
        admin_post_form(slug="plain-form", body="Written **without** JavaScript."),
    )
    assert response.status_code == 302
    post = Post.objects.get(slug="plain-form")
    assert post.body_html == "<p>Written <strong>without</strong> JavaScript.</p>\n"
