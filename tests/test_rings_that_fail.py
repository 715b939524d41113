"""Rings that fail: renditions and link checks. An image a worker cannot resize
was rung again by beat (posts.tasks.ring_lost_doorbells) every ten minutes for
ever, and twenty of them took every run's turn from the images waiting behind
them. An image that cannot be resized is given up at once, logged, and shown as
uploaded; a failure that may pass (storage refusing the renditions) is rung again,
a bounded number of times. A post's link check that keeps failing was rung again
for ever too, and is now treated the same."""

import logging
from datetime import timedelta
from io import BytesIO

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import F
from PIL import Image

from newsletter.celery import app as celery_app
from posts import links, services
from posts.images import rendition_name
from posts.models import ImageToResize, LinkCheck, Post
from posts.services import (
    LINK_CHECKS_RUNG_AGAIN_AT_MOST,
    LINK_CHECKS_RUNG_PER_RUN,
    RENDITIONS_RUNG_AGAIN_AT_MOST,
    RENDITIONS_RUNG_PER_RUN,
)
from posts.tasks import ring_lost_doorbells

from .factories import (
    PostFactory,
    UserFactory,
    admin_post_form,
    bomb,
    png,
    rung_long_ago,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]


@pytest.fixture(autouse=True)
def worker(celery_eager, monkeypatch):
    """Tasks run in-process, each failing as in a worker: on its own, not in the
    task that rang it (beat's)."""
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)


def logged(caplog, name: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and name in record.getMessage()
    ]


def test_an_image_too_tall_to_resize_is_given_up_at_once_and_shown_as_uploaded(
    client, media, caplog, on_commit
):
    """A long infographic: narrow enough to have a rendition, which would be taller
    than a WebP can be (16,383 pixels). The upload takes it."""
    client.force_login(UserFactory())
    response = on_commit(
        client.post,
        "/admin/posts/post/add/",
        admin_post_form(
            featured_image=png(500, 18_000, name="infographic.png"),
            featured_image_alt="Caseloads by region",
            status="published",
        ),
    )
    assert response.status_code == 302
    post = Post.objects.get()
    assert not ImageToResize.objects.exists()
    [message] = logged(caplog, post.featured_image.name)
    assert "cannot be resized" in message

    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 0
    html = client.get(post.get_absolute_url()).text
    assert f'src="{post.featured_image.url}"' in html
    assert "-480w.webp" not in html


def truncated_jpeg() -> bytes:
    buffer = BytesIO()
    Image.effect_noise((600, 400), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()[:3000]


def bomb_png() -> bytes:
    """200 megapixels decoded: beyond Pillow's own limit."""
    return bomb(20_000, 10_000).read()


@pytest.mark.parametrize(
    "content", [truncated_jpeg, bomb_png], ids=["truncated", "decompression-bomb"]
)
def test_an_image_stored_before_uploads_were_checked_that_cannot_be_decoded_is_given_up(
    content, media, caplog
):
    name = default_storage.save(
        "posts/2024/old.img", SimpleUploadedFile("old.img", content())
    )
    services.image_resize_rung(name=name)
    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
    assert not ImageToResize.objects.exists()
    assert len(logged(caplog, name)) == 1

    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 0
    assert not (media / "renditions").exists()


def test_an_image_stored_before_uploads_were_limited_is_given_up_undecoded(
    media, caplog
):
    """48 megapixels, within Pillow's own limit: decoded, a larger one (up to 179
    megapixels) took 700 MB, and a worker killed for it was given the same task
    again at once (acks_late), for ever, unseen by beat's count of rings."""
    name = default_storage.save("posts/2019/survey.png", bomb(8000, 6000))
    services.image_resize_rung(name=name)
    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
    assert not ImageToResize.objects.exists()
    [message] = logged(caplog, name)
    assert "more than 40 million pixels" in message
    assert not (media / "renditions").exists()


def storage_refuses_renditions_of(media, folder: str) -> None:
    """A file stands where the renditions of the images in `folder` go: storage
    refuses to write them, as a full or unreachable disk does for a while."""
    blocked = media / "renditions" / folder
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("")


def test_renditions_storage_refuses_are_rung_again_then_given_up_after_the_limit(
    media, caplog
):
    name = default_storage.save("posts/2026/office.png", png(1000, 600))
    services.image_resize_rung(name=name)
    storage_refuses_renditions_of(media, "posts/2026")
    for _ring in range(RENDITIONS_RUNG_AGAIN_AT_MOST):
        rung_long_ago()
        assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
        # Storage may come back: kept for beat's next run.
        assert ImageToResize.objects.filter(name=name).exists()
    assert not [message for message in logged(caplog, name) if "given up" in message]

    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 0
    assert not ImageToResize.objects.exists()
    [message] = [m for m in logged(caplog, name) if "given up" in m]
    assert f"after {RENDITIONS_RUNG_AGAIN_AT_MOST} rings" in message


def test_images_that_keep_failing_do_not_keep_a_newer_one_waiting(media):
    storage_refuses_renditions_of(media, "posts/failing")
    for number in range(RENDITIONS_RUNG_PER_RUN):
        services.image_resize_rung(
            name=default_storage.save(f"posts/failing/{number}.png", png(500, 300))
        )
    rung_long_ago()
    assert (
        ring_lost_doorbells.delay().get()["renditions_rung"] == RENDITIONS_RUNG_PER_RUN
    )
    # A photo uploaded a minute later, its ring lost too (a broker's restart).
    new = default_storage.save("posts/2026/new.png", png(500, 300))
    services.image_resize_rung(name=new)
    rung_long_ago()
    ImageToResize.objects.exclude(name=new).update(
        rung_at=F("rung_at") - timedelta(minutes=1)
    )

    assert (
        ring_lost_doorbells.delay().get()["renditions_rung"] == RENDITIONS_RUNG_PER_RUN
    )
    assert (media / rendition_name(new, 480)).exists()


# Link checks that fail ------------------------------------------------------------


@pytest.fixture
def checker_fails_on(monkeypatch):
    """The link checker raises on every link under `prefix`, as it would on a
    failure it does not foresee, every time; other links are checked."""

    def fail_on(prefix: str) -> None:
        real_url_check = links.url_check

        def url_check(url: str, **options):
            if url.startswith(prefix):
                raise RuntimeError("the checker failed")
            return real_url_check(url, **options)

        monkeypatch.setattr(links, "url_check", url_check)

    return fail_on


def post_with_links_check_rung(body: str) -> Post:
    post = PostFactory(body=body)
    services.post_links_check_rung(post_id=post.pk)
    return post


def test_a_link_check_that_keeps_failing_is_rung_again_then_given_up_after_the_limit(
    checker_fails_on, caplog
):
    checker_fails_on("https://failing.example/")
    post = post_with_links_check_rung("[a](https://failing.example/)")
    for _ring in range(LINK_CHECKS_RUNG_AGAIN_AT_MOST):
        rung_long_ago()
        assert ring_lost_doorbells.delay().get()["link_checks_rung"] == 1
    assert not [m for m in logged(caplog, f"post {post.pk}") if "given up" in m]

    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["link_checks_rung"] == 0
    [message] = [m for m in logged(caplog, f"post {post.pk}") if "given up" in m]
    assert f"after {LINK_CHECKS_RUNG_AGAIN_AT_MOST} rings" in message
    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["link_checks_rung"] == 0

    # The author saves the post again: its check is rung afresh, and again if lost.
    services.post_links_check_rung(post_id=post.pk)
    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["link_checks_rung"] == 1


def test_link_checks_that_keep_failing_do_not_keep_a_newer_one_waiting(
    checker_fails_on,
):
    checker_fails_on("https://failing.example/")
    for number in range(LINK_CHECKS_RUNG_PER_RUN):
        post_with_links_check_rung(f"[a](https://failing.example/{number})")
    rung_long_ago()
    assert (
        ring_lost_doorbells.delay().get()["link_checks_rung"]
        == LINK_CHECKS_RUNG_PER_RUN
    )
    # A post saved a minute later, its ring lost too (a broker's restart).
    new = post_with_links_check_rung("See [the intranet](http://192.168.1.1/).")
    rung_long_ago()
    Post.objects.exclude(pk=new.pk).update(
        links_check_rung_at=F("links_check_rung_at") - timedelta(minutes=1)
    )

    assert (
        ring_lost_doorbells.delay().get()["link_checks_rung"]
        == LINK_CHECKS_RUNG_PER_RUN
    )
    assert new.link_checks.get().outcome == LinkCheck.Outcome.REFUSED
