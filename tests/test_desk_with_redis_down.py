"""The desk with Redis down (a restart, a blip): saving, publishing, scheduling or
deleting a post was a 500, as the page cache's generation could not be bumped, nor
the post's email rung on the broker. The author's change is kept, each failure is
logged, and the email goes once Redis is back, rung by the reaper (an image's
renditions and the post's link check, by beat's posts.tasks.ring_lost_doorbells)."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.core.files.storage import default_storage
from django.utils import timezone

from newsletter import delivery
from newsletter.enqueue import QUEUE_UNREACHABLE, SENT_ONCE_THE_QUEUE_IS_BACK
from newsletter.models import Batch, Delivery, Mailing, Subscriber
from posts import services
from posts.models import ImageToResize, LinkCheck, Post
from posts.tasks import ring_lost_doorbells

from .factories import (
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
    admin_post_form,
    admin_post_form_of,
    desk_action,
    png,
    reader_added_at_the_desk,
    rung_long_ago,
)

pytestmark = pytest.mark.django_db

CACHE_FAILED = "Could not retire the cached pages: the cache is unreachable"


def flash(response) -> str:
    """The messages the desk shows after a redirect, as one string."""
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


@pytest.fixture
def desk(client):
    client.force_login(StaffFactory(role="Editor"))
    client.raise_request_exception = False
    return client


def test_a_post_saved_at_the_desk_with_redis_down_is_saved(
    desk, redis_down, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            "/admin/posts/post/add/",
            admin_post_form(
                title="Court work in Kent",
                body="See [the report](https://example.org/r).",
            ),
        )
    assert response.status_code == 302
    assert Post.objects.filter(title="Court work in Kent").exists()
    assert CACHE_FAILED in caplog.text
    # Its links' check could not be queued.
    assert "links_check_enqueue" in caplog.text


def test_a_post_published_at_the_desk_with_redis_down_is_emailed_once_redis_is_back(
    desk,
    redis_down,
    caplog,
    reaped_once_redis_is_back,
    django_capture_on_commit_callbacks,
):
    SubscriberFactory(email="reader@example.org")
    post = PostFactory(title="Derby: Inadequate")

    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            f"/admin/posts/post/{post.pk}/change/",
            admin_post_form_of(post, status="published"),
        )

    assert response.status_code == 302
    post.refresh_from_db()
    assert post.status == Post.Status.PUBLISHED and post.announced_at is not None
    mailing = Mailing.objects.get(post=post)
    assert mailing.status == Mailing.Status.PLANNING
    assert CACHE_FAILED in caplog.text
    assert "_mailing_create" in caplog.text  # its planning could not be rung
    assert SENT_ONCE_THE_QUEUE_IS_BACK in flash(response)
    assert not mail.outbox

    # The broker back, the reaper rings the mailing whose doorbell was lost.
    assert reaped_once_redis_is_back()["mailings_rung"] == 1
    [email] = mail.outbox
    assert email.to == ["reader@example.org"]
    assert "Derby: Inadequate" in email.subject


def test_a_post_scheduled_at_the_desk_with_redis_down_is_scheduled(
    desk, redis_down, caplog, django_capture_on_commit_callbacks
):
    post = PostFactory()
    tomorrow = timezone.localtime() + timedelta(days=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            f"/admin/posts/post/{post.pk}/change/",
            admin_post_form_of(post, status="published", published_at=tomorrow),
        )
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.status == Post.Status.PUBLISHED and post.announced_at is None
    assert CACHE_FAILED in caplog.text
    assert SENT_ONCE_THE_QUEUE_IS_BACK in flash(response)


def test_posts_published_by_the_desks_action_with_redis_down_are_published(
    desk, redis_down, caplog, django_capture_on_commit_callbacks
):
    drafts = PostFactory.create_batch(2)
    with django_capture_on_commit_callbacks(execute=True):
        response = desk_action(desk, "publish", *drafts)
    assert response.status_code == 302
    assert Post.objects.published().count() == 2
    assert Mailing.objects.count() == 2
    assert CACHE_FAILED in caplog.text
    assert SENT_ONCE_THE_QUEUE_IS_BACK in flash(response)


def test_a_post_published_with_no_email_or_with_redis_up_says_nothing_of_the_queue(
    desk, request, django_capture_on_commit_callbacks
):
    redis_back = request.getfixturevalue("redis_down")
    not_emailed = PostFactory(email_subscribers=False)
    form = admin_post_form_of(not_emailed, status="published")
    del form["email_subscribers"]
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(f"/admin/posts/post/{not_emailed.pk}/change/", form)
    assert response.status_code == 302
    assert Post.objects.get(pk=not_emailed.pk).is_published
    assert SENT_ONCE_THE_QUEUE_IS_BACK not in flash(response)

    redis_back()
    request.getfixturevalue("celery_eager")
    emailed = PostFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            f"/admin/posts/post/{emailed.pk}/change/",
            admin_post_form_of(emailed, status="published"),
        )
    assert response.status_code == 302
    assert Mailing.objects.filter(post=emailed).exists()
    assert SENT_ONCE_THE_QUEUE_IS_BACK not in flash(response)


def test_a_post_deleted_at_the_desk_with_redis_down_is_deleted(
    desk, redis_down, caplog, django_capture_on_commit_callbacks
):
    desk.force_login(StaffFactory(role="Administrator"))
    post = PublishedPostFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Post.objects.filter(pk=post.pk).exists()
    assert CACHE_FAILED in caplog.text


def test_a_post_with_an_image_uploaded_with_redis_down_is_saved_with_it(
    desk, redis_down, caplog, media, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            "/admin/posts/post/add/",
            admin_post_form(
                featured_image=png(800, 600), featured_image_alt="An office"
            ),
        )
    assert response.status_code == 302
    assert Post.objects.get().featured_image
    # Its renditions could not be queued: the page shows the original.
    assert "PostAdmin.save_related.<locals>.<lambda>" in caplog.text


def test_renditions_and_a_link_check_rung_with_redis_down_are_rung_again_once_back(
    desk, redis_down, media, request, django_capture_on_commit_callbacks
):
    """Lost for good, they were: the page showed the original, the post's links
    were never checked, and nothing said so."""
    renditions = media / "renditions"
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(
            "/admin/posts/post/add/",
            admin_post_form(
                featured_image=png(1000, 600),
                featured_image_alt="An office",
                body="See [the intranet](http://192.168.1.1/).",
            ),
        )
    assert response.status_code == 302
    post = Post.objects.get()
    assert not renditions.exists() and not post.link_checks.exists()

    redis_down()
    request.getfixturevalue("celery_eager")
    # Beat's first run comes soon: a ring that young may be in the queue still.
    assert ring_lost_doorbells.delay().get() == {
        "renditions_rung": 0,
        "link_checks_rung": 0,
    }
    rung_long_ago()
    rung = ring_lost_doorbells.delay().get()
    assert rung == {"renditions_rung": 1, "link_checks_rung": 1}
    assert sorted(p.name for p in renditions.rglob("*.webp")) == [
        f"{Path(post.featured_image.name).name}-480w.webp",
        f"{Path(post.featured_image.name).name}-800w.webp",
    ]
    assert post.link_checks.get().outcome == LinkCheck.Outcome.REFUSED
    # Done: nothing is rung again.
    rung_long_ago()
    assert ring_lost_doorbells.delay().get() == {
        "renditions_rung": 0,
        "link_checks_rung": 0,
    }


def test_beat_rings_a_few_lost_renditions_a_run_and_forgets_those_made_or_gone(
    media, monkeypatch, celery_eager
):
    monkeypatch.setattr(services, "RENDITIONS_RUNG_PER_RUN", 1)
    for name in ("posts/2026/one.png", "posts/2026/two.png"):
        services.image_resize_rung(name=default_storage.save(name, png(1000, 600)))
    rung_long_ago()
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
    assert ring_lost_doorbells.delay().get()["renditions_rung"] == 1
    assert len(list((media / "renditions").rglob("*.webp"))) == 4
    # Made, they are forgotten; so is an image deleted since (with its post).
    services.image_resize_rung(name="posts/2026/gone.png")
    rung_long_ago()
    for _one_a_run in range(3):
        assert ring_lost_doorbells.delay().get()["renditions_rung"] == 0
    assert not ImageToResize.objects.exists()


def test_a_test_email_asked_for_with_redis_down_is_refused_not_said_to_be_on_its_way(
    desk, redis_down, django_capture_on_commit_callbacks
):
    editor = StaffFactory(role="Editor", email="editor@example.org")
    desk.force_login(editor)
    post = PublishedPostFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = desk.post(f"/admin/posts/post/{post.pk}/email/test/")
    assert response.status_code == 302
    shown = flash(response)
    assert QUEUE_UNREACHABLE in shown
    assert "on its way" not in shown


@pytest.fixture
def paused_mailing(settings):
    """A post's mailing to two readers, planned into a queued batch, paused."""
    SubscriberFactory(email="reader@example.org")
    SubscriberFactory(email="another@example.org")
    mailing = delivery.mailing_create_for_post(post=PublishedPostFactory())
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    delivery.mailing_pause(mailing_id=mailing.pk)
    return mailing


def test_a_mailing_resumed_at_the_desk_with_redis_down_goes_once_redis_is_back(
    desk,
    paused_mailing,
    redis_down,
    caplog,
    reaped_once_redis_is_back,
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        response = desk_action(desk, "resume", paused_mailing)
    assert response.status_code == 302
    paused_mailing.refresh_from_db()
    assert paused_mailing.paused_at is None
    assert "mailing_resume" in caplog.text  # its batches could not be rung
    assert SENT_ONCE_THE_QUEUE_IS_BACK in flash(response)
    assert not mail.outbox

    assert reaped_once_redis_is_back()["batches_rung"] == 1
    assert sorted(m.to[0] for m in mail.outbox) == [
        "another@example.org",
        "reader@example.org",
    ]


def test_an_uncertain_batch_resent_at_the_desk_with_redis_down_goes_once_redis_is_back(
    desk,
    paused_mailing,
    redis_down,
    caplog,
    reaped_once_redis_is_back,
    django_capture_on_commit_callbacks,
):
    desk.force_login(StaffFactory(role="Administrator"))  # settles batches
    batch = paused_mailing.batches.get()
    Delivery.objects.update(status=Delivery.Status.UNCERTAIN)
    Batch.objects.update(status=Batch.Status.UNCERTAIN)
    Mailing.objects.update(status=Mailing.Status.DONE, paused_at=None, pause_reason="")
    with django_capture_on_commit_callbacks(execute=True):
        response = desk_action(desk, "resend", batch)
    assert response.status_code == 302
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED
    assert "batch_resend" in caplog.text
    assert SENT_ONCE_THE_QUEUE_IS_BACK in flash(response)

    assert reaped_once_redis_is_back()["batches_rung"] == 1
    assert len(mail.outbox) == 2


def test_a_reader_added_at_the_desk_with_redis_down_is_refused_not_left_unconfirmed(
    desk, redis_down, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = reader_added_at_the_desk(desk, email="sam@example.org")
    assert response.status_code == 200
    assert QUEUE_UNREACHABLE in response.text
    assert not Subscriber.objects.exists()
