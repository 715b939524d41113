import re
import threading
import time
from datetime import timedelta
from functools import partial

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.utils import timezone

from newsletter.admin.post_email import PostAdmin
from newsletter.models import Mailing
from posts.models import FormerSlug, Post, PostEvent, PostQuerySet
from posts.services import (
    post_publish,
    post_save_from_desk,
    post_submit_for_review,
    posts_announce_due,
)

from .factories import (
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    UserFactory,
    admin_post_form,
    admin_post_form_of,
    unpublish_at_the_desk,
)
from .locks import (
    in_a_thread,
    until_another_connection_waits_for_a_lock,
    until_done_or_waiting_for_a_lock,
)

pytestmark = pytest.mark.django_db


def test_markdown_body_is_rendered_once_and_sanitised():
    post = PostFactory(
        body="## Findings\n\n<script>alert(1)</script>[report](javascript:alert(1)) "
        '<a href="javascript:alert(2)">raw</a> <img src="x" onerror="alert(1)">'
    )
    assert '<h2 id="user-content-findings">Findings</h2>' in post.body_html
    assert "<script" not in post.body_html
    assert 'href="javascript' not in post.body_html
    assert "onerror" not in post.body_html


def test_the_reading_time_counts_the_words_the_page_shows(client):
    # 400 words read; a note to the desk in an HTML comment and the long
    # addresses of the links are not on the page, and take a reader no time.
    note = "<!-- " + "check this figure with the inspectorate " * 60 + "-->"
    link = "[the report](https://example.org/" + "/".join(["report"] * 80) + ")"
    post = PublishedPostFactory(body=f"{'word ' * 398}{link}\n\n{note}")

    html = client.get(post.get_absolute_url()).content.decode()

    assert "· 2 min read" in html


def test_a_welsh_name_the_author_marks_is_read_in_welsh():
    # A screen reader reads the page in en-GB: Welsh words read in English
    # sounds, unless they say they are Welsh (WCAG 3.1.2).
    post = PostFactory(
        body='Inspectors visited <span lang="cy">Caerdydd</span>.\n\n'
        '<blockquote lang="cy">Gwasanaeth prawf</blockquote>'
    )
    assert '<span lang="cy">Caerdydd</span>' in post.body_html
    assert '<blockquote lang="cy">Gwasanaeth prawf</blockquote>' in post.body_html


def test_published_excludes_drafts_and_scheduled_posts():
    visible = PublishedPostFactory()
    PostFactory()  # draft
    PublishedPostFactory(published_at=timezone.now() + timedelta(days=1))
    assert list(Post.objects.published()) == [visible]


def test_home_lists_published_posts_newest_first(client):
    older = PublishedPostFactory(published_at=timezone.now() - timedelta(days=2))
    newer = PublishedPostFactory(published_at=timezone.now() - timedelta(days=1))
    PostFactory(title="A draft nobody should see")
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.index(newer.title) < body.index(older.title)
    assert "A draft nobody should see" not in body


def test_home_paginates_and_survives_a_bad_page_number(client):
    for _ in range(12):
        PublishedPostFactory()
    assert "Page 2 of 2" in client.get("/?page=2").content.decode()
    nonsense = client.get("/?page=nonsense")
    assert nonsense.status_code == 200
    assert "Page 1 of 2" in nonsense.text
    too_far = client.get("/?page=999")
    assert too_far.status_code == 200
    assert "Page 2 of 2" in too_far.text


def test_post_page_shows_the_rendered_body(client):
    post = PublishedPostFactory(body="Inspectors found **47 cases** reviewed.")
    response = client.get(f"/posts/{post.slug}/")
    assert response.status_code == 200
    assert "<strong>47 cases</strong>" in response.content.decode()


def test_draft_and_scheduled_posts_are_not_found(client):
    draft = PostFactory()
    scheduled = PublishedPostFactory(published_at=timezone.now() + timedelta(hours=1))
    assert client.get(f"/posts/{draft.slug}/").status_code == 404
    assert client.get(f"/posts/{scheduled.slug}/").status_code == 404


def test_publishing_announces_once_and_creates_one_send(
    django_capture_on_commit_callbacks,
):
    post = PostFactory()
    with django_capture_on_commit_callbacks():
        post_publish(post=post)
        post_publish(post=post)
    post.refresh_from_db()
    assert post.status == Post.Status.PUBLISHED
    assert post.announced_at is not None
    assert Mailing.objects.filter(post=post).count() == 1


def test_post_not_marked_for_email_creates_no_send():
    post = PostFactory(email_subscribers=False)
    post_publish(post=post)
    assert not Mailing.objects.exists()


def test_publishing_a_post_read_before_another_editors_save_keeps_their_edits():
    # It saved the whole post as it had been read, and undid the other's title.
    post = PostFactory(title="Kent: court work")
    read_before = Post.objects.get(pk=post.pk)
    Post.objects.filter(pk=post.pk).update(title="Kent: court work, reviewed")
    post_publish(post=read_before)
    post.refresh_from_db()
    assert post.title == "Kent: court work, reviewed"
    assert post.is_published


def test_scheduled_post_is_announced_only_when_its_time_comes():
    post = PostFactory(published_at=timezone.now() + timedelta(hours=1))
    post_publish(post=post)
    assert not Mailing.objects.exists()
    Post.objects.filter(pk=post.pk).update(
        published_at=timezone.now() - timedelta(seconds=1)
    )
    assert posts_announce_due() == 1
    assert posts_announce_due() == 0
    assert Mailing.objects.filter(post=post).count() == 1


def test_a_post_taken_down_as_beat_announces_it_is_not_emailed(monkeypatch):
    """Beat lists the posts whose time has come, and the author takes one down
    before beat claims it: it is not announced (it was, and its readers were
    emailed a post that is not on the site)."""
    post = PostFactory(published_at=timezone.now() + timedelta(hours=1))
    post_publish(post=post)
    Post.objects.filter(pk=post.pk).update(
        published_at=timezone.now() - timedelta(seconds=1)
    )
    due = PostQuerySet.due_for_announcement

    def listed_as_the_author_takes_it_down(queryset: PostQuerySet) -> PostQuerySet:
        listed = [listed.pk for listed in due(queryset)]
        monkeypatch.setattr(PostQuerySet, "due_for_announcement", due)
        unpublish_at_the_desk(Post.objects.get(pk=post.pk))
        return Post.objects.filter(pk__in=listed)  # as read before the change

    monkeypatch.setattr(
        PostQuerySet, "due_for_announcement", listed_as_the_author_takes_it_down
    )
    assert posts_announce_due() == 0
    assert not Mailing.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_published_from_two_tabs_at_once_is_published_once():
    """Each tab read the post as a draft: its history said it was published
    twice, and the second save, not seeing the first's announcement, took it
    back and announced the post again."""
    post = PostFactory()
    editor = UserFactory()
    tabs = [Post.objects.get(pk=post.pk), Post.objects.get(pk=post.pk)]
    published, go_on = threading.Event(), threading.Event()
    announced_at = Post.objects.filter(pk=post.pk).values_list("announced_at")
    announced = []

    def publish_in(tab: Post, *, then_wait: bool) -> threading.Thread:
        def run() -> None:
            try:
                with transaction.atomic():
                    post_publish(post=tab, by=editor)
                    if then_wait:
                        announced.append(announced_at.get())
                        published.set()
                        go_on.wait(timeout=10)  # before committing
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    first = publish_in(tabs[0], then_wait=True)
    assert published.wait(timeout=10)
    second = publish_in(tabs[1], then_wait=False)
    until_another_connection_waits_for_a_lock()  # the second, for the first
    go_on.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert list(post.events.values_list("kind", flat=True)) == [
        PostEvent.Kind.PUBLISHED
    ]
    assert [announced_at.get()] == announced
    assert Mailing.objects.filter(post=post).count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_going_live_as_the_author_reschedules_it_is_not_emailed_off_the_site(
    client, monkeypatch
):
    """Its time came just after the desk found it not yet live and let the author
    give it a later one, and beat announced it before the save: its readers were
    emailed a post the save then took off the site until its new time."""
    client.force_login(UserFactory())  # no roles: the flush between tests drops them
    due = timezone.now() + timedelta(seconds=3)
    post = PublishedPostFactory(published_at=due, announced_at=None)
    validated, go_on = threading.Event(), threading.Event()
    save = PostAdmin.save_model

    def validated_then_saved(self, *args, **kwargs) -> None:
        validated.set()
        go_on.wait(timeout=10)
        save(self, *args, **kwargs)

    monkeypatch.setattr(PostAdmin, "save_model", validated_then_saved)
    later = timezone.localtime(due + timedelta(hours=1)).replace(microsecond=0)
    form = admin_post_form_of(post, published_at=later)
    responses = []
    desk = in_a_thread(
        lambda: client.post(f"/admin/posts/post/{post.pk}/change/", form), responses
    )
    assert validated.wait(timeout=10)
    while timezone.now() <= due:  # its time comes, and beat goes round
        time.sleep(0.05)
    beat = in_a_thread(posts_announce_due, [])
    until_done_or_waiting_for_a_lock(beat)
    go_on.set()
    desk.join(timeout=10)
    beat.join(timeout=10)

    assert responses[0].status_code == 302
    post.refresh_from_db()
    assert post.published_at == later and not post.is_published
    assert post.announced_at is None
    assert not Mailing.objects.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_two_editors_saving_two_posts_whose_time_has_come_both_save(monkeypatch):
    """Two posts scheduled for the same time, each saved by an editor as it came
    and before beat went round: each save, holding its own post, announced every
    post due, and waited for the other's, which waited for the first's (a
    deadlock, one editor's save lost with a server error)."""
    now = timezone.now()
    posts = [
        PublishedPostFactory(published_at=now, announced_at=None) for _ in range(2)
    ]
    both_validated = threading.Barrier(2, timeout=10)
    save = PostAdmin.save_model

    def validated_then_saved(self, *args, **kwargs) -> None:
        both_validated.wait()  # each holds its post (PostForm's check) by now
        save(self, *args, **kwargs)

    monkeypatch.setattr(PostAdmin, "save_model", validated_then_saved)

    def saved_at_the_desk(post: Post):
        editor = Client(raise_request_exception=False)
        editor.force_login(UserFactory())  # no roles: the flush drops them
        form = admin_post_form_of(post, title=f"{post.title}, corrected")
        return editor.post(f"/admin/posts/post/{post.pk}/change/", form).status_code

    answers = []
    desks = [in_a_thread(partial(saved_at_the_desk, post), answers) for post in posts]
    for desk in desks:
        desk.join(timeout=20)

    assert answers == [302, 302]
    assert not Post.objects.filter(title__endswith="corrected", announced_at=None)
    assert Post.objects.filter(title__endswith="corrected").count() == 2
    assert Mailing.objects.filter(post__in=posts).count() == 2


def test_author_publishes_from_the_admin_form(client):
    client.force_login(UserFactory())
    response = client.post(
        "/admin/posts/post/add/",
        admin_post_form(
            title="Suffolk: a probation service under strain",
            slug="suffolk-under-strain",
            body="Inspectors visited in **May**.",
            status="published",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    post = Post.objects.get(slug="suffolk-under-strain")
    assert post.is_published
    assert Mailing.objects.filter(post=post).count() == 1
    # Saving the published post again sends nothing more.
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, title=post.title + " (updated)"),
    )
    assert Mailing.objects.filter(post=post).count() == 1


def test_a_post_published_without_its_email_is_emailed_once_the_box_is_ticked(
    client,
):
    client.force_login(UserFactory())
    response = client.post(
        "/admin/posts/post/add/",
        admin_post_form(status="published", email_subscribers=""),
    )
    assert response.status_code == 302
    post = Post.objects.get()
    assert post.announced_at is not None
    assert not Mailing.objects.exists()

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/", admin_post_form_of(post), follow=True
    )
    assert Mailing.objects.filter(post=post, kind=Mailing.Kind.POST).count() == 1
    page = response.content.decode()
    assert "Emailing it now to 0 readers who get posts as they are published" in page
    assert "readers of digests get it in their next one" in page
    # Saved again, ticked: nothing more goes.
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, title=post.title + " (updated)"),
    )
    assert Mailing.objects.filter(post=post).count() == 1


def test_a_post_beat_announces_as_the_author_ticks_its_email_is_emailed(
    client, monkeypatch
):
    """Its time came while its page was open, unticked; beat announced it (no
    email, as unticked) just after the desk loaded the post for the author's
    save, which ticks the box: the save took it for not yet announced (as it
    loaded it), left its email to the announcement, and it was never emailed."""
    client.force_login(StaffFactory(role="Editor"))
    post = PublishedPostFactory(
        published_at=timezone.now() - timedelta(seconds=1),
        announced_at=None,
        email_subscribers=False,
    )
    load = PostAdmin.get_object

    def loaded_as_beat_announces_it(self, request, object_id, from_field=None):
        loaded = load(self, request, object_id, from_field)
        assert posts_announce_due() == 1
        return loaded

    monkeypatch.setattr(PostAdmin, "get_object", loaded_as_beat_announces_it)
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/", admin_post_form_of(post), follow=True
    )

    assert response.status_code == 200
    assert Mailing.objects.filter(post=post, kind=Mailing.Kind.POST).count() == 1
    assert "Emailing it now" in response.content.decode()


def test_unticking_a_sent_posts_box_says_it_does_not_call_its_email_back(client):
    client.force_login(UserFactory())
    client.post("/admin/posts/post/add/", admin_post_form(status="published"))
    post = Post.objects.get()
    mailing = Mailing.objects.get(post=post)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, email_subscribers=""),
        follow=True,
    )
    assert "Its email is not called back by unticking the box" in (
        response.content.decode()
    )
    assert list(Mailing.objects.filter(post=post)) == [mailing]


def ticked_while_off_the_site(client: Client) -> Post:
    """A post published without its email, taken down, and ticked while off the
    site: the desk promises its email for when it is back."""
    client.post(
        "/admin/posts/post/add/",
        admin_post_form(status="published", email_subscribers=""),
    )
    post = Post.objects.get()
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft", email_subscribers=""),
    )
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft"),
        follow=True,
    )
    assert "its email goes to its readers once you publish it again" in (
        response.content.decode()
    )
    assert not Mailing.objects.exists()
    post.refresh_from_db()
    return post


def test_a_post_ticked_while_off_the_site_is_emailed_when_it_is_back(client):
    client.force_login(UserFactory())
    post = ticked_while_off_the_site(client)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published"),
        follow=True,
    )
    assert Mailing.objects.filter(post=post, kind=Mailing.Kind.POST).count() == 1
    assert "Emailing it now to 0 readers who get posts as they are published" in (
        response.content.decode()
    )


def test_a_post_ticked_while_off_the_site_and_scheduled_back_is_emailed_at_its_time(
    client,
):
    client.force_login(StaffFactory(role="Editor"))
    post = ticked_while_off_the_site(client)
    when = timezone.localtime() + timedelta(hours=1)
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", published_at=when),
    )
    assert response.status_code == 302
    assert not Mailing.objects.exists()

    # Its time comes, and beat goes round.
    Post.objects.filter(pk=post.pk).update(
        published_at=timezone.now() - timedelta(seconds=1)
    )
    posts_announce_due()
    assert Mailing.objects.filter(post=post, kind=Mailing.Kind.POST).count() == 1


def test_a_post_ticked_while_off_the_site_and_published_from_the_list_is_emailed(
    client,
):
    client.force_login(StaffFactory(role="Editor"))
    post = ticked_while_off_the_site(client)

    response = client.post(
        "/admin/posts/post/",
        {"action": "publish", "_selected_action": [post.pk]},
        follow=True,
    )
    assert "Published 1 post." in response.content.decode()
    assert Mailing.objects.filter(post=post, kind=Mailing.Kind.POST).count() == 1


def test_an_unrelated_save_of_a_live_post_never_emailed_sends_nothing(client):
    """Its email goes when it is announced, when the box is ticked on it live, or
    when it is back on the site: a later save of its title is none of those."""
    client.force_login(StaffFactory(role="Editor"))
    post = PublishedPostFactory(email_subscribers=True)  # announced, no mailing
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, title=post.title + " (updated)"),
        follow=True,
    )
    assert response.status_code == 200
    assert not Mailing.objects.exists()
    assert "Emailing it now" not in response.content.decode()


def test_publish_action_on_the_post_list(client):
    client.force_login(UserFactory())
    drafts = PostFactory.create_batch(2)
    response = client.post(
        "/admin/posts/post/",
        {"action": "publish", "_selected_action": [p.pk for p in drafts]},
        follow=True,
    )
    assert "Published 2 posts." in response.content.decode()
    assert Mailing.objects.count() == 2


def test_a_published_posts_old_address_leads_to_its_new_one(client):
    # Its emails, feeds and other sites' links carry the address it went out under.
    client.force_login(StaffFactory(role="Editor"))
    post = PublishedPostFactory(slug="suffolk-2023")
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, slug="suffolk-requires-improvement-2023"),
    )
    assert response.status_code == 302
    client.logout()
    old = client.get("/posts/suffolk-2023/")
    assert old.status_code == 301
    assert old["Location"] == "/posts/suffolk-requires-improvement-2023/"
    assert client.get(old["Location"]).status_code == 200


def test_a_campaign_link_to_a_posts_old_address_keeps_its_query_string(client):
    # A newsletter or campaign link sent before the rename carries utm
    # parameters (or ?page=): the new address is reached with them, not without.
    post = PublishedPostFactory(slug="suffolk-2023")
    FormerSlug.objects.create(slug="suffolk-2019", post=post)

    old = client.get("/posts/suffolk-2019/?utm_source=newsletter&utm_campaign=june")

    assert (old.status_code, old["Location"]) == (
        301,
        "/posts/suffolk-2023/?utm_source=newsletter&utm_campaign=june",
    )


def test_a_browser_that_followed_an_old_address_asks_again_next_time(client):
    """A permanent redirect without a word on caching is kept by browsers for good:
    the author renaming the post back (a typo put right, then undone) sent those
    browsers round between its two addresses, a loop, and a new post taking the
    old address was never reached from them."""
    post = PublishedPostFactory(slug="suffolk-2023")
    FormerSlug.objects.create(slug="suffolk-2019", post=post)

    old = client.get("/posts/suffolk-2019/")

    assert old.status_code == 301
    assert "no-cache" in old["Cache-Control"].split(", ")


def test_a_draft_renamed_before_it_was_published_keeps_no_old_address(client):
    client.force_login(StaffFactory(role="Editor"))
    post = PostFactory(slug="first-try", published_at=timezone.now())
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, slug="second-try", status="published"),
    )
    assert client.get("/posts/second-try/").status_code == 200
    assert client.get("/posts/first-try/").status_code == 404


def test_a_new_post_may_take_an_old_address(client):
    client.force_login(StaffFactory(role="Editor"))
    renamed = PublishedPostFactory(slug="kent")
    client.post(
        f"/admin/posts/post/{renamed.pk}/change/",
        admin_post_form_of(renamed, slug="kent-2019"),
    )
    newer = PublishedPostFactory(slug="kent")
    assert client.get("/posts/kent/").context["post"] == newer


def test_a_live_post_given_a_time_to_come_is_refused_and_stays_on_the_site(client):
    # It was saved as "scheduled": its page answered 404 while its emails still
    # went out, and it came back later unannounced.
    client.force_login(StaffFactory(role="Editor"))
    yesterday = timezone.now().replace(microsecond=0) - timedelta(days=1)
    post = PublishedPostFactory(published_at=yesterday)
    later = timezone.localtime(timezone.now() + timedelta(days=3))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, published_at_0=later.strftime("%d/%m/%Y")),
    )

    assert response.status_code == 200
    assert "This post is already live" in response.text
    post.refresh_from_db()
    assert post.published_at == yesterday
    assert client.get(post.get_absolute_url()).status_code == 200
    assert not post.events.exists()


def test_rescheduling_a_post_is_in_its_history_with_the_new_time(client):
    client.force_login(StaffFactory(role="Editor"))
    first = timezone.now().replace(microsecond=0) + timedelta(days=2)
    post = PostFactory(published_at=first)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
    )
    post.refresh_from_db()
    later = first + timedelta(days=1)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post, published_at_0=timezone.localtime(later).strftime("%d/%m/%Y")
        ),
    )
    steps = list(post.events.values_list("kind", "for_time"))
    assert steps == [("scheduled", first), ("scheduled", later)]


def test_a_post_going_live_at_its_time_is_published_by_the_site_in_its_history(
    client,
):
    editor = StaffFactory(role="Editor")
    client.force_login(editor)
    soon = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    post = PostFactory(published_at=soon)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
    )
    # The hour has come: scheduled an hour before its time, which was a minute ago.
    went_live = timezone.now().replace(microsecond=0) - timedelta(minutes=1)
    Post.objects.filter(pk=post.pk).update(published_at=went_live)
    post.events.update(at=went_live - timedelta(hours=1))

    assert posts_announce_due() == 1
    assert posts_announce_due() == 0

    steps = list(post.events.values_list("kind", "for_time", "by", "at"))
    assert steps[1:] == [("published", None, None, went_live)]
    assert steps[0][:3] == ("scheduled", soon, editor.pk)
    page = client.get(f"/admin/posts/post/{post.pk}/change/").text
    assert "Published by the site" in page


def test_a_step_by_an_account_deleted_since_is_not_said_to_be_the_sites(client):
    """The site only ever publishes (a schedule's time come): a submission, an
    approval or a schedule by someone whose account was deleted since read as
    done "by the site". (Deleted before such an account was kept: its steps
    name nobody.)"""
    contributor, editor = StaffFactory(role="Contributor"), StaffFactory(role="Editor")
    post = PostFactory(author=contributor)
    post_submit_for_review(post=post, by=contributor)
    post.events.update(by=None)
    client.force_login(editor)

    page = client.get(f"/admin/posts/post/{post.pk}/change/").text

    assert "Submitted for review by the site" not in page
    assert "Submitted for review by an account since deleted" in page


def test_a_post_taken_down_and_scheduled_again_is_published_by_the_site_when_back():
    editor = StaffFactory(role="Editor")
    post = PublishedPostFactory()  # live, and readers were told
    sent = Mailing.objects.create(kind=Mailing.Kind.POST, post=post)
    post.status = Post.Status.DRAFT
    post_save_from_desk(post=post, previous_status="published", by=editor)
    back_at = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    post.published_at = back_at
    post_publish(post=post, by=editor)
    Post.objects.filter(pk=post.pk).update(published_at=timezone.now())  # its hour

    assert posts_announce_due() == 0  # readers are not told again
    posts_announce_due()

    steps = list(post.events.values_list("kind", "by"))
    assert steps == [
        ("unpublished", editor.pk),
        ("scheduled", editor.pk),
        ("published", None),
    ]
    assert list(Mailing.objects.filter(post=post)) == [sent]


@pytest.mark.parametrize("announced", [True, False], ids=["announced", "not yet"])
def test_a_live_post_renamed_at_the_desk_is_found_at_its_old_address(client, announced):
    # Not yet announced: its time came, and beat has yet to tell readers, but
    # readers (feeds, the sitemap, a link shared) read it at that address already.
    post = PublishedPostFactory(
        slug="suffolk", announced_at=timezone.now() if announced else None
    )
    client.force_login(StaffFactory(role="Editor"))
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, slug="suffolk-2019", publish_despite_warnings="on"),
    )
    assert response.status_code == 302
    client.logout()

    old = client.get("/posts/suffolk/")

    assert (old.status_code, old["Location"]) == (301, "/posts/suffolk-2019/")


@pytest.mark.parametrize("live", [True, False], ids=["live", "scheduled"])
@pytest.mark.parametrize("back_to", ["draft", "review"])
def test_a_post_set_back_to_draft_says_in_its_history_whether_it_was_live(
    live, back_to
):
    when = timezone.now() + timedelta(days=-1 if live else 1)
    post = PublishedPostFactory(published_at=when)

    editor = Client()
    editor.force_login(StaffFactory(role="Editor"))
    response = editor.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status=back_to),
    )
    assert response.status_code == 302

    kinds = list(post.events.order_by("at", "id").values_list("kind", flat=True))
    taken_back = "unpublished" if live else "unscheduled"
    assert kinds == [taken_back, *(["submitted"] if back_to == "review" else [])]
    history = editor.get(f"/admin/posts/post/{post.pk}/change/").text
    assert ("Unpublished by" in history) == live
    assert ("Unscheduled by" in history) == (not live)


def test_a_scheduled_post_given_a_time_already_come_is_published_in_its_history(
    client,
):
    # Brought forward to an hour ago, it went live and out to readers at once,
    # while its history still said it was scheduled for the day after tomorrow.
    editor = StaffFactory(role="Editor")
    client.force_login(editor)
    first = timezone.now().replace(microsecond=0) + timedelta(days=2)
    post = PostFactory(published_at=first)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
    )
    post.refresh_from_db()
    earlier = timezone.localtime(timezone.now() - timedelta(hours=1))

    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, published_at=earlier),
    )

    post.refresh_from_db()
    assert post.is_published and post.announced_at is not None
    steps = list(post.events.values_list("kind", "for_time", "by"))
    assert steps == [("scheduled", first, editor.pk), ("published", None, editor.pk)]
    page = client.get(f"/admin/posts/post/{post.pk}/change/").text
    assert "Published by" in page


def test_a_draft_once_scheduled_and_published_from_the_list_is_dated_now(client):
    """Scheduled for Monday, taken back to draft, published from the list on
    Thursday: it went live dated Monday, below the posts of the days between, in
    the listings and the feeds, where a feed reader never looks again."""
    client.force_login(StaffFactory(role="Editor"))
    PublishedPostFactory(
        title="Yesterday's", published_at=timezone.now() - timedelta(days=1)
    )
    late = PostFactory(
        title="Out at last", published_at=timezone.now() - timedelta(days=3)
    )
    client.post(
        "/admin/posts/post/", {"action": "publish", "_selected_action": [late.pk]}
    )
    late.refresh_from_db()
    assert late.is_published
    assert timezone.now() - late.published_at < timedelta(minutes=1)
    home = Client().get("/").content.decode()
    assert home.index("Out at last") < home.index("Yesterday&#x27;s")


def test_a_draft_once_scheduled_and_published_from_its_page_is_dated_now(client):
    """Scheduled for Monday, taken back to draft, published from its page on
    Thursday, its time left as the page showed it: it went live dated Monday,
    below the posts of the days between on the home page and in the feed."""
    client.force_login(StaffFactory(role="Editor"))
    PublishedPostFactory(
        title="Yesterday's", published_at=timezone.now() - timedelta(days=1)
    )
    late = PostFactory(
        title="Out at last", published_at=timezone.now() - timedelta(days=3)
    )

    response = client.post(
        f"/admin/posts/post/{late.pk}/change/",
        admin_post_form_of(late, status="published", publish_despite_warnings="on"),
    )

    assert response.status_code == 302
    late.refresh_from_db()
    assert late.is_published
    assert timezone.now() - late.published_at < timedelta(minutes=1)
    home = Client().get("/").content.decode()
    assert home.index("Out at last") < home.index("Yesterday&#x27;s")
    feed = Client().get("/feed/").content.decode()
    assert feed.index("Out at last") < feed.index("Yesterday")


def test_a_post_given_a_past_time_as_it_is_published_keeps_it(client):
    """An old report's post, backdated on purpose: the time the author sets as
    they publish is its date, below the posts since."""
    client.force_login(StaffFactory(role="Editor"))
    PublishedPostFactory(
        title="Yesterday's", published_at=timezone.now() - timedelta(days=1)
    )
    old = PostFactory(title="The 2019 report")
    when = timezone.localtime(timezone.now() - timedelta(days=30)).replace(
        microsecond=0
    )

    response = client.post(
        f"/admin/posts/post/{old.pk}/change/",
        admin_post_form_of(
            old, status="published", published_at=when, publish_despite_warnings="on"
        ),
    )

    assert response.status_code == 302
    old.refresh_from_db()
    assert old.is_published and old.published_at == when
    home = Client().get("/").content.decode()
    assert home.index("Yesterday&#x27;s") < home.index("The 2019 report")


def test_the_publish_action_says_which_posts_it_scheduled_rather_than_published(
    client,
):
    # A draft given a time to come was counted as "Published 1 post.": the
    # author took it to be on the site, where it answered 404 until its time.
    client.force_login(StaffFactory(role="Editor"))
    now = PostFactory(title="Live today")
    later = PostFactory(
        title="Out on Monday", published_at=timezone.now() + timedelta(days=3)
    )

    response = client.post(
        "/admin/posts/post/",
        {"action": "publish", "_selected_action": [now.pk, later.pk]},
        follow=True,
    )

    messages = [str(message) for message in response.context["messages"]]
    assert messages == [
        "Published 1 post.",
        "Scheduled 1 post for their publication time, still to come: Out on Monday.",
    ]
    later.refresh_from_db()
    assert later.status == Post.Status.PUBLISHED and not later.is_published


def test_the_desks_list_tells_a_scheduled_post_from_one_on_the_site(client):
    # Both read "Published" in the list, and its "Published" filter listed both:
    # the author took a post still to come to be on the site, where it was a 404.
    client.force_login(StaffFactory(role="Editor"))
    PublishedPostFactory(title="On the site")
    PublishedPostFactory(
        title="Out on Monday",
        published_at=timezone.now() + timedelta(days=3),
        announced_at=None,
    )

    rows = {
        title: status
        for title, status in re.findall(
            r'<th class="field-title"><a [^>]*>([^<]*)</a></th>'
            r'<td class="field-\w*status">([^<]*)</td>',
            client.get("/admin/posts/post/").content.decode(),
        )
    }
    assert rows == {"On the site": "Published", "Out on Monday": "Scheduled"}
    for shown, title in [("published", "On the site"), ("scheduled", "Out on Monday")]:
        page = client.get("/admin/posts/post/", {"status__exact": shown}).text
        assert title in page
        assert len(re.findall(r'<th class="field-title">', page)) == 1
