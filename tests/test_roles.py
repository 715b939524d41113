"""Roles on the desk: each can do what it should and nothing else, asked of the
admin's URLs and actions directly, not of the buttons it shows."""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from newsletter.models import DigestSettings, Mailing, Subscriber
from posts import services
from posts.comments.models import Comment
from posts.models import Inspection, Post, PostEvent, PostUpdate, RelatedLink

from .factories import (
    CommentFactory,
    InspectionFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    UserFactory,
    admin_inspection_form_of,
    admin_post_form,
    admin_post_form_of,
    desk,
    unpublish_at_the_desk,
)
from .locks import as_it_commits

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/posts/post/"


def change_url(post: Post) -> str:
    return f"/admin/posts/post/{post.pk}/change/"


@pytest.fixture
def contributor():
    return StaffFactory(username="casey", role="Contributor")


@pytest.fixture
def editor():
    return StaffFactory(username="eden", role="Editor")


@pytest.fixture
def administrator():
    return StaffFactory(username="ada", role="Administrator")


def form_for(post: Post, **fields) -> dict:
    return admin_post_form(
        **{"title": post.title, "slug": post.slug, "status": post.status, **fields}
    )


def test_the_admin_is_the_publications_desk(administrator):
    html = desk(administrator).get("/admin/").content.decode()
    assert "On Probation — the desk" in html
    assert "Django administration" not in html


def test_each_role_holds_its_permissions_and_no_more(
    contributor, editor, administrator
):
    assert contributor.has_perms(["posts.add_post", "posts.change_post"])
    for permission in (
        "posts.review_post",
        "posts.publish_post",
        "posts.email_post",
        "posts.add_postupdate",
        "newsletter.view_subscriber",
        "comments.change_comment",
    ):
        assert not contributor.has_perm(permission), permission
    assert editor.has_perms(
        [
            "posts.review_post",
            "posts.publish_post",
            "posts.email_post",
            "posts.add_postupdate",
            "comments.change_comment",
            "newsletter.change_mailing",
        ]
    )
    for permission in (
        "newsletter.view_subscriber",
        "newsletter.add_subscriber",
        "newsletter.change_batch",
        "newsletter.change_digestsettings",
        "auth.change_user",
    ):
        assert not editor.has_perm(permission), permission
    assert not administrator.is_superuser
    assert administrator.has_perms(
        [
            "newsletter.add_subscriber",
            "newsletter.change_batch",
            "newsletter.change_digestsettings",
            "posts.publish_post",
            "auth.change_user",
        ]
    )
    # Every permission there is, those of models added after the roles were made
    # (a previous address, a post's former slug) included.
    every = {
        f"{app_label}.{codename}"
        for app_label, codename in Permission.objects.values_list(
            "content_type__app_label", "codename"
        )
    }
    assert every - administrator.get_all_permissions() == set()
    assert {"newsletter.view_previousaddress", "posts.view_formerslug"} <= every


# Contributor


def test_a_contributors_form_offers_no_publication_time_nor_email(contributor):
    html = desk(contributor).get("/admin/posts/post/add/").content.decode()
    assert 'name="title"' in html
    assert 'name="published_at_0"' not in html
    assert 'name="email_subscribers"' not in html
    assert 'name="publish_despite_warnings"' not in html
    assert '<option value="review">In review</option>' in html
    assert '<option value="published"' not in html


def test_a_contributor_writes_a_draft_that_is_theirs(contributor):
    response = desk(contributor).post("/admin/posts/post/add/", admin_post_form())
    assert response.status_code == 302
    post = Post.objects.get(slug="court-work-in-kent")
    assert (post.author, post.status) == (contributor, Post.Status.DRAFT)


def test_a_contributor_posting_status_published_is_refused(contributor):
    post = PostFactory(author=contributor)
    response = desk(contributor).post(
        change_url(post), form_for(post, status="published")
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    post.refresh_from_db()
    assert (post.status, post.published_at, post.announced_at) == ("draft", None, None)
    assert not post.events.exists()


def test_a_contributor_cannot_schedule_nor_email_readers_whatever_the_request_says(
    contributor,
):
    post = PostFactory(author=contributor, email_subscribers=False)
    response = desk(contributor).post(
        change_url(post),
        form_for(
            post,
            published_at_0="2030-01-01",
            published_at_1="09:00",
            email_subscribers="on",
            email_format="excerpt",
        ),
    )
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.published_at is None
    assert post.email_subscribers is False
    assert post.email_format == Post.EmailFormat.FULL


def test_a_contributor_submits_a_draft_for_review(contributor):
    post = PostFactory(author=contributor)
    response = desk(contributor).post(change_url(post), form_for(post, status="review"))
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.status == Post.Status.REVIEW
    event = post.events.get()
    assert (event.kind, event.by) == (PostEvent.Kind.SUBMITTED, contributor)


def test_a_contributor_submits_drafts_with_the_list_action(contributor):
    post = PostFactory(author=contributor)
    response = desk(contributor).post(
        CHANGELIST, {"action": "submit_for_review", "_selected_action": [post.pk]}
    )
    post.refresh_from_db()
    assert post.status == Post.Status.REVIEW
    # It said "Submitted 1 post(s) for review."
    assert [str(m) for m in response.wsgi_request._messages] == [
        "Submitted 1 post for review."
    ]


def test_a_contributor_cannot_use_the_publish_action(contributor):
    post = PostFactory(author=contributor)
    desk(contributor).post(
        CHANGELIST, {"action": "publish", "_selected_action": [post.pk]}
    )
    post.refresh_from_db()
    assert post.status == Post.Status.DRAFT


def test_a_contributor_sees_and_edits_only_their_own_posts(contributor, editor):
    mine = PostFactory(author=contributor, title="My draft on Kent")
    theirs = PostFactory(author=editor, title="The editor's draft on Essex")
    client = desk(contributor)
    listing = client.get(CHANGELIST).content.decode()
    assert "My draft on Kent" in listing
    assert "Essex" not in listing
    assert "author__id__exact" not in listing  # no list of the desk's people
    assert client.get(change_url(mine)).status_code == 200
    # The admin answers as for a post that does not exist, and changes nothing.
    assert client.get(change_url(theirs)).status_code == 302
    client.post(change_url(theirs), form_for(theirs, title="Defaced"))
    client.post(f"/admin/posts/post/{theirs.pk}/delete/", {"post": "yes"})
    theirs.refresh_from_db()
    assert theirs.title == "The editor's draft on Essex"


def test_an_editors_post_list_offers_only_the_authors_of_posts(
    contributor, editor, administrator
):
    """The accounts of the desk are the Administrator's to see: the author filter
    names who wrote the posts listed, not one who wrote nothing, a superuser or
    a deactivated account."""
    PostFactory(author=contributor)
    UserFactory(username="root-owner", is_superuser=True)
    StaffFactory(username="left.in.2024", is_active=False, role="Editor")

    listing = desk(editor).get(CHANGELIST).content.decode()

    offered = set(re.findall(r"author__id__exact=(\d+)", listing))
    assert offered == {str(contributor.pk)}


def test_a_contributor_cannot_change_their_post_once_published(contributor):
    post = PublishedPostFactory(author=contributor)
    client = desk(contributor)
    page = client.get(change_url(post))
    assert page.status_code == 200  # read-only
    assert 'name="title"' not in page.content.decode()
    response = client.post(change_url(post), form_for(post, title="Quietly changed"))
    assert response.status_code == 403
    assert (
        client.post(f"/admin/posts/post/{post.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    post.refresh_from_db()
    assert post.title != "Quietly changed"


def test_an_editor_correcting_a_post_whose_authors_account_is_gone_takes_no_byline(
    editor,
):
    """A post keeps no byline once its author's account is deleted: an editor's
    later save (a typo fixed) put their own name on it, on its page and in the
    search, as if they had written it."""
    post = PublishedPostFactory(author=None)
    response = desk(editor).post(
        change_url(post), admin_post_form_of(post, title="Typo fixed")
    )
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.title == "Typo fixed"
    assert post.author is None
    assert editor.get_username() not in Client().get(post.get_absolute_url()).text


def test_a_contributor_links_related_posts_only_to_drafts_of_their_own(contributor):
    neighbour = PublishedPostFactory(title="A neighbour")
    draft = PostFactory(author=contributor)
    published = PublishedPostFactory(author=contributor)
    theirs = PublishedPostFactory()
    client = desk(contributor)

    def link(post):
        return client.post(
            f"/admin/posts/post/{post.pk}/add-related/", {"to_post": neighbour.pk}
        ).status_code

    assert link(theirs) == 404  # not theirs to see: as if it did not exist
    assert link(published) == 403  # theirs, but no longer theirs to change
    assert not RelatedLink.objects.exists()
    assert link(draft) == 302
    assert RelatedLink.objects.get().from_post == draft


def test_a_contributors_related_posts_are_published_ones_or_their_own(
    contributor, editor
):
    # The related posts' inline names the post it links to: a draft's id that
    # is not theirs would have shown them its title.
    hidden = PostFactory(author=editor, title="The editor's unpublished draft")
    published = PublishedPostFactory(author=editor, title="Published by the editor")
    draft = PostFactory(author=contributor)
    client = desk(contributor)

    def link_to(post):
        return client.post(
            change_url(draft),
            form_for(
                draft,
                **{
                    "links_out-TOTAL_FORMS": "1",
                    "links_out-0-to_post": str(post.pk),
                    "links_out-0-type": RelatedLink.Type.SEE_ALSO,
                    "links_out-0-order": "1",
                },
            ),
        )

    refused = link_to(hidden)
    assert refused.status_code == 200
    assert "Select a valid choice" in refused.content.decode()
    assert "unpublished draft" not in refused.content.decode()
    assert not RelatedLink.objects.exists()
    assert link_to(published).status_code == 302
    assert RelatedLink.objects.get().to_post == published
    assert "Published by the editor" in client.get(change_url(draft)).content.decode()


def test_a_contributor_saves_a_draft_linking_a_post_taken_down_since(
    contributor, editor
):
    """A Contributor's draft links to a published post; an editor takes that post
    off the site. The draft's page showed the link's post field empty, and every
    save of the draft, whatever it changed, was refused ("Select a valid
    choice"). The link stays as the author made it, its post named, and the
    draft saves; readers see the link once the post is back."""
    linked = PublishedPostFactory(author=editor, title="Published by the editor")
    draft = PostFactory(author=contributor)
    link = RelatedLink.objects.create(
        from_post=draft, to_post=linked, type=RelatedLink.Type.SEE_ALSO, order=1
    )
    unpublish_at_the_desk(linked)
    client = desk(contributor)

    page = client.get(change_url(draft)).content.decode()
    row = re.search(r'<select name="links_out-0-to_post".*?</select>', page, re.S)
    assert re.search(
        rf'<option value="{linked.pk}" selected>Published by the editor</option>',
        row[0],
    )
    response = client.post(
        change_url(draft),
        form_for(
            draft,
            body="A paragraph more.",
            **opened_at(client.get(change_url(draft))),
            **{
                "links_out-TOTAL_FORMS": "1",
                "links_out-INITIAL_FORMS": "1",
                "links_out-0-id": str(link.pk),
                "links_out-0-from_post": str(draft.pk),
                "links_out-0-to_post": str(linked.pk),
                "links_out-0-type": RelatedLink.Type.SEE_ALSO,
                "links_out-0-order": "1",
            },
        ),
    )

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.body == "A paragraph more."
    assert RelatedLink.objects.get().to_post == linked


def test_a_contributor_cannot_link_elsewhere_a_draft_an_editor_linked_from_theirs(
    contributor, editor
):
    """An editor links the contributor's draft to their own unpublished draft.
    Any other post of the contributor's then took that draft too, though the
    related posts' search never offers it: only the draft the editor linked
    names it, as its row."""
    hidden = PostFactory(author=editor, title="The editor's unpublished draft")
    linked_by_the_editor = PostFactory(author=contributor)
    RelatedLink.objects.create(
        from_post=linked_by_the_editor,
        to_post=hidden,
        type=RelatedLink.Type.SEE_ALSO,
        order=1,
    )
    other = PostFactory(author=contributor)
    client = desk(contributor)

    refused = client.post(
        change_url(other),
        form_for(
            other,
            **{
                "links_out-TOTAL_FORMS": "1",
                "links_out-0-to_post": str(hidden.pk),
                "links_out-0-type": RelatedLink.Type.SEE_ALSO,
                "links_out-0-order": "1",
            },
        ),
    )

    assert refused.status_code == 200
    assert "Select a valid choice" in refused.text
    assert "unpublished draft" not in refused.text
    assert not RelatedLink.objects.filter(from_post=other).exists()


def test_a_contributors_related_post_search_finds_published_posts_not_others_drafts(
    contributor, editor
):
    # The related posts' field is a search box: what it finds is all the author
    # can pick, so it offers what the field takes, published posts included.
    PublishedPostFactory(author=editor, title="Published by the editor")
    PostFactory(author=editor, title="The editor's unpublished draft")
    PostFactory(author=contributor, title="The contributor's draft")
    found = (
        desk(contributor)
        .get(
            "/admin/autocomplete/",
            {
                "app_label": "posts",
                "model_name": "relatedlink",
                "field_name": "to_post",
            },
        )
        .json()
    )
    assert sorted(result["text"] for result in found["results"]) == [
        "Published by the editor",
        "The contributor's draft",
    ]


def test_a_contributor_cannot_touch_the_inspection_of_someone_elses_post(contributor):
    inspection = InspectionFactory(title="The original title")
    client = desk(contributor)
    url = f"/admin/posts/inspection/{inspection.pk}/change/"
    assert client.get(url).status_code == 302
    client.post(url, {"post": inspection.post_id, "title": "Changed"})
    assert Inspection.objects.get(pk=inspection.pk).title == "The original title"


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_contributors_inspection_edit_waits_for_an_editor_publishing_the_post():
    """An editor publishes a Contributor's draft as the Contributor saves its
    inspection: the page was allowed on the draft as it stood, and the edit
    landed on the live post, unreviewed. It waits for the publishing, and is
    then refused."""
    # Permissions, not roles: a test whose database is flushed after it has none.
    contributor = StaffFactory(username="casey")
    contributor.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="posts",
            codename__in=[
                "view_post",
                "change_post",
                "view_inspection",
                "change_inspection",
            ],
        )
    )
    inspection = InspectionFactory(
        title="The original title", post=PostFactory(author=contributor)
    )
    client = desk(contributor)
    url = f"/admin/posts/inspection/{inspection.pk}/change/"
    assert client.get(url).status_code == 200

    as_it_commits(
        lambda: services.post_publish(post=Post.objects.get(pk=inspection.post_id)),
        lambda: client.post(url, admin_inspection_form_of(inspection, title="Changed")),
    )

    assert Post.objects.get(pk=inspection.post_id).is_published
    assert Inspection.objects.get(pk=inspection.pk).title == "The original title"


def test_a_contributor_cannot_open_the_email_of_a_correction_to_their_post(
    contributor, django_capture_on_commit_callbacks
):
    # An editor corrected the contributor's published post: the post stays
    # theirs to read, its updates and who received it are not.
    post = PublishedPostFactory(author=contributor)
    update = PostUpdate.objects.create(
        post=post, kind=PostUpdate.Kind.CORRECTION, wrong="Good", right="Inadequate"
    )
    client = desk(contributor)
    page = f"/admin/posts/post/{post.pk}/corrections/{update.pk}/email/"
    assert client.get(page).status_code == 403
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert client.post(page).status_code == 403
        assert client.post(f"{page}test/").status_code == 403
    assert callbacks == []
    assert not Mailing.objects.exists()


def test_a_contributor_is_offered_no_test_of_a_published_posts_email(
    contributor, editor
):
    """A test of an email is for those who may change its post: the contributor's
    published post offered them "send a test to yourself", and its button
    answered 403."""
    post = PublishedPostFactory(author=contributor)
    preview = f"/admin/posts/post/{post.pk}/email/"
    client = desk(contributor)
    change_page = client.get(change_url(post)).text
    assert preview in change_page
    assert "send a test" not in change_page
    page = client.get(preview)
    assert page.status_code == 200
    assert f"{preview}test/" not in page.text
    assert "Send a test to me" not in page.text
    assert client.post(f"{preview}test/").status_code == 403
    # Those who may change it are offered one, as before.
    assert "send a test to yourself" in desk(editor).get(change_url(post)).text
    assert f"{preview}test/" in desk(editor).get(preview).text


@pytest.mark.parametrize(
    "url",
    [
        "/admin/newsletter/subscriber/",
        "/admin/newsletter/subscriber/import/",
        "/admin/newsletter/mailing/",
        "/admin/newsletter/batch/",
        "/admin/newsletter/delivery/",
        "/admin/comments/comment/",
        "/admin/posts/sponsorship/",
        "/admin/auth/user/",
    ],
)
def test_a_contributor_cannot_open_readers_sends_comments_or_users(contributor, url):
    # A page that is there (a 404 would pass for an address the desk never had).
    assert desk(UserFactory(username="root")).get(url).status_code == 200
    assert desk(contributor).get(url).status_code == 403


def view_on_site(obj) -> str:
    """The change page's "View on site" link to `obj`."""
    content_type = ContentType.objects.get_for_model(obj)
    return f"/admin/r/{content_type.pk}/{obj.pk}/"


def test_view_on_site_gives_a_contributor_no_address_they_may_not_see(contributor):
    # Django's own answered any member of the desk with any object's address: the
    # slug of someone else's draft (its title, as typed), or that a comment
    # awaits moderation, and on which post.
    others_draft = PostFactory(slug="closing-the-kent-office")
    pending = CommentFactory(post=PublishedPostFactory())
    client = desk(contributor)
    for obj in (others_draft, pending):
        response = client.get(view_on_site(obj))
        assert response.status_code == 404
        assert "Location" not in response
    own = PostFactory(author=contributor, slug="my-draft")
    response = client.get(view_on_site(own))
    assert response.status_code == 302
    assert response["Location"].endswith("/posts/my-draft/")


# Editor


def test_the_editors_list_shows_what_waits_for_review(contributor, editor):
    PostFactory(author=contributor, title="Waiting one", status=Post.Status.REVIEW)
    PostFactory(author=contributor, title="Still a draft")
    client = desk(editor)
    assert "1 post waits for review" in client.get(CHANGELIST).content.decode()
    waiting = client.get(CHANGELIST, {"status__exact": "review"}).content.decode()
    assert "Waiting one" in waiting
    assert "Still a draft" not in waiting


def test_an_editor_approves_and_publishes_and_the_history_says_who(contributor, editor):
    post = PostFactory(author=contributor)
    desk(contributor).post(change_url(post), form_for(post, status="review"))
    client = desk(editor)
    response = client.post(change_url(post), form_for(post, status="published"))
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.is_published
    assert post.announced_at is not None
    assert [(e.kind, e.by) for e in post.events.all()] == [
        (PostEvent.Kind.SUBMITTED, contributor),
        (PostEvent.Kind.APPROVED, editor),
        (PostEvent.Kind.PUBLISHED, editor),
    ]
    html = client.get(change_url(post)).content.decode()
    assert "Submitted for review by casey" in html
    assert "Approved by eden" in html
    assert "Published by eden" in html


def opened_at(change_page) -> dict:
    """What the change page's form says of when it was opened, as it sends it."""
    field = re.search(r'name="opened_at" value="([^"]*)"', change_page.content.decode())
    return {"opened_at": field[1]} if field else {}


def test_a_save_over_someone_elses_since_the_form_was_opened_is_refused(editor):
    """Two editors open a draft; one publishes it; the other, whose page still
    says draft, saves a typo fix. That save unpublished the post and paused its
    emails, silently. It is refused, saying why; their text stays in the form."""
    other = StaffFactory(username="olu", role="Editor")
    post = PostFactory(author=editor)
    first, second = desk(editor), desk(other)
    opened = opened_at(first.get(change_url(post)))
    assert second.get(change_url(post)).status_code == 200
    published = second.post(change_url(post), form_for(post, status="published"))
    assert published.status_code == 302

    typo_fix = form_for(post, body="A typo fixed.", **opened)
    response = first.post(change_url(post), typo_fix)

    assert response.status_code == 200
    assert any(
        "saved by someone else since you opened it" in error
        for error in response.context["adminform"].form.non_field_errors()
    )
    assert "A typo fixed." in response.content.decode()  # theirs, to copy
    post.refresh_from_db()
    assert post.is_published and post.body != "A typo fixed."
    assert not post.events.filter(kind=PostEvent.Kind.UNPUBLISHED).exists()
    # Opened again, the page is the post as it is now, and saves.
    again = opened_at(first.get(change_url(post)))
    fixed = form_for(post, status="published", body="A typo fixed.", **again)
    assert first.post(change_url(post), fixed).status_code == 302
    post.refresh_from_db()
    assert post.is_published and post.body == "A typo fixed."


@pytest.mark.parametrize("change", ["edited", "deleted", "moved"])
def test_a_post_page_opened_before_its_inspection_changed_on_its_own_page_is_refused(
    editor, change
):
    """One editor opens a post, whose page shows its inspection; another corrects
    the inspection's rating on the inspection's own page, or deletes it. The first
    saves a word of the body, with the inspection as their page showed it: that
    put the old rating back, silently. It is refused, as a save over the post's.
    Moved to another post, the first's save was taken, and what they had typed
    in the inspection on their page dropped, silently."""
    inspection = InspectionFactory(post__author=editor, overall="requires_improvement")
    post = inspection.post
    as_opened = {
        **opened_at(desk(editor).get(change_url(post))),
        "inspections-TOTAL_FORMS": "1",
        "inspections-INITIAL_FORMS": "1",
        "inspections-0-id": inspection.pk,
        "inspections-0-post": post.pk,
        **{
            f"inspections-0-{name}": value
            for name, value in admin_inspection_form_of(inspection).items()
            if not name.startswith("ratings-")
        },
    }
    other = desk(StaffFactory(username="olu", role="Editor"))
    inspection_url = f"/admin/posts/inspection/{inspection.pk}"
    if change == "edited":
        response = other.post(
            f"{inspection_url}/change/",
            admin_inspection_form_of(inspection, overall="inadequate"),
        )
    elif change == "moved":
        response = other.post(
            f"{inspection_url}/change/",
            admin_inspection_form_of(inspection, post=PostFactory().pk),
        )
    else:
        response = other.post(f"{inspection_url}/delete/", {"post": "yes"})
    assert response.status_code == 302

    response = desk(editor).post(
        change_url(post),
        form_for(post, status="published", body="A word changed.", **as_opened),
    )

    assert response.status_code == 200
    assert any(
        "saved by someone else since you opened it" in error
        for error in response.context["adminform"].form.non_field_errors()
    )
    assert list(post.inspections.values_list("overall", flat=True)) == (
        ["inadequate"] if change == "edited" else []
    )
    assert post.body != "A word changed."


def test_an_editor_schedules_a_post_that_is_announced_only_when_due(editor):
    post = PostFactory(author=editor, status=Post.Status.REVIEW)
    when = timezone.localtime() + timedelta(days=2)
    desk(editor).post(
        change_url(post),
        form_for(
            post,
            status="published",
            published_at_0=when.strftime("%Y-%m-%d"),
            published_at_1=when.strftime("%H:%M:%S"),
        ),
    )
    post.refresh_from_db()
    assert post.status == Post.Status.PUBLISHED
    assert not post.is_published
    assert post.announced_at is None
    scheduled = post.events.get(kind=PostEvent.Kind.SCHEDULED)
    assert (scheduled.by, scheduled.for_time) == (editor, post.published_at)


def test_an_editor_publishes_with_the_list_action(contributor, editor):
    post = PostFactory(author=contributor, status=Post.Status.REVIEW)
    desk(editor).post(CHANGELIST, {"action": "publish", "_selected_action": [post.pk]})
    post.refresh_from_db()
    assert post.is_published


def test_an_editor_moderates_comments_but_cannot_see_readers(editor):
    waiting, spam = CommentFactory(), CommentFactory()
    client = desk(editor)
    assert client.get("/admin/comments/comment/").status_code == 200
    for action, comment in (("approve", waiting), ("mark_spam", spam)):
        response = client.post(
            "/admin/comments/comment/",
            {"action": action, "_selected_action": [comment.pk]},
        )
        assert response.status_code == 302
    waiting.refresh_from_db()
    spam.refresh_from_db()
    assert (waiting.status, spam.status) == (
        Comment.Status.APPROVED,
        Comment.Status.SPAM,
    )
    assert client.get("/admin/posts/post/add/").status_code == 200
    assert client.get("/admin/newsletter/subscriber/").status_code == 403
    assert client.get("/admin/newsletter/subscriber/import/").status_code == 403


def test_a_contributor_who_may_only_view_readers_is_offered_no_import(contributor):
    contributor.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    client = desk(contributor)

    page = client.get("/admin/newsletter/subscriber/")

    assert page.status_code == 200
    assert "Import from CSV" not in page.content.decode()
    assert client.get("/admin/newsletter/subscriber/import/").status_code == 403


def daily_digest(day: int, **fields) -> Mailing:
    """The daily digest round of that day of November 2026, at 07:00."""
    return Mailing.objects.create(
        kind=Mailing.Kind.DIGEST,
        frequency="daily",
        period=date(2026, 11, day),
        slot=datetime(2026, 11, day, 7, tzinfo=UTC),
        **fields,
    )


def test_an_editor_pauses_a_mailing_but_cannot_rewrite_it(editor):
    digest = daily_digest(23, status=Mailing.Status.SENDING, opens_people=3)
    other = daily_digest(24)
    client = desk(editor)
    page = f"/admin/newsletter/mailing/{digest.pk}/change/"
    assert client.get(page).status_code == 200  # shown, not a form
    for change in (
        {"opens_people": "999"},
        {"slot_0": "2026-11-24", "slot_1": "07:00"},
    ):
        assert client.post(page, change).status_code == 403
    digest.refresh_from_db()
    assert (digest.opens_people, digest.slot.day) == (3, 23)
    assert other.slot.day == 24
    response = client.post(
        "/admin/newsletter/mailing/",
        {"action": "pause", "_selected_action": [digest.pk]},
    )
    assert response.status_code == 302
    digest.refresh_from_db()
    assert digest.paused_at is not None


def test_the_uncertain_batches_of_a_mailing_link_only_for_who_may_settle_them(
    editor, administrator
):
    """Settling is an Administrator's: an Editor's mailing page linked to the
    batch list, which answered them 403. It says how many, with no link."""
    digest = daily_digest(23, status=Mailing.Status.SENDING)
    digest.batches.create(number=1, status="uncertain")
    page = f"/admin/newsletter/mailing/{digest.pk}/change/"
    batches = f"/admin/newsletter/batch/?mailing__id__exact={digest.pk}"
    for user, linked in ((editor, False), (administrator, True)):
        html = desk(user).get(page).content.decode()
        assert "1 to review" in html
        assert (escape(batches) in html) is linked
        if linked:
            assert desk(user).get(batches).status_code == 200
    assert desk(editor).get(batches).status_code == 403


@pytest.mark.parametrize("role", ["Contributor", "Editor"])
def test_only_an_administrator_sets_when_digests_go_even_before_anyone_has(role):
    # A new site has no row: DigestSettings.load() reads the defaults until
    # someone adds it.
    assert not DigestSettings.objects.exists()
    client = desk(StaffFactory(role=role))
    add = "/admin/newsletter/digestsettings/add/"
    assert client.get(add).status_code == 403
    assert client.post(add, {"hour": "3", "weekday": "5"}).status_code == 403
    assert not DigestSettings.objects.exists()


# Administrator


def test_an_administrator_sets_when_digests_go(administrator):
    response = desk(administrator).post(
        "/admin/newsletter/digestsettings/add/", {"hour": "6", "weekday": "2"}
    )
    assert response.status_code == 302
    assert DigestSettings.objects.values_list("hour", "weekday").get() == (6, 2)


def test_an_administrator_imports_readers(administrator):
    rows = io.StringIO()
    csv.writer(rows).writerows(
        [
            ["email", "name", "consent_source", "consent_date"],
            ["new.reader@example.org", "New", "Conference sheet", "2026-10-01"],
        ]
    )
    upload = SimpleUploadedFile("list.csv", rows.getvalue().encode(), "text/csv")
    response = desk(administrator).post(
        "/admin/newsletter/subscriber/import/", {"file": upload}
    )
    assert response.status_code == 200
    assert Subscriber.objects.filter(email="new.reader@example.org").exists()


def user_form(user, **fields) -> dict:
    """What the desk's user form sends for `user` as it is."""
    return {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "is_staff": "on",
        "groups": list(user.groups.values_list("pk", flat=True)),
        "date_joined_0": "2026-01-05",
        "date_joined_1": "09:00:00",
        **fields,
    }


def test_an_administrator_gives_roles_but_makes_no_superuser(administrator, editor):
    # Superusers hold every permission, later ones too: the Administrator's
    # role is the group's permissions, and not the way out of it.
    client = desk(administrator)
    for user in (editor, administrator):
        response = client.post(
            f"/admin/auth/user/{user.pk}/change/",
            user_form(user, is_superuser="on", first_name="Promoted"),
        )
        assert response.status_code == 302
        user.refresh_from_db()
        assert (user.first_name, user.is_superuser) == ("Promoted", False)


def test_an_administrator_cannot_change_a_superusers_account(administrator):
    root = StaffFactory(username="root", is_superuser=True)
    client = desk(administrator)
    password = f"/admin/auth/user/{root.pk}/password/"
    new = {
        "password1": "a fresh long passphrase",
        "password2": "a fresh long passphrase",
    }
    assert client.get(password).status_code == 403
    assert client.post(password, new).status_code == 403
    change = f"/admin/auth/user/{root.pk}/change/"
    assert (
        client.post(change, user_form(root, email="mine@example.org")).status_code
        == 403
    )
    assert (
        client.post(f"/admin/auth/user/{root.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    root.refresh_from_db()
    assert root.check_password("correct horse battery staple")
    assert root.email == "root@example.org"


def rights(user) -> tuple:
    user.refresh_from_db()
    return (
        set(user.groups.values_list("name", flat=True)),
        set(user.user_permissions.values_list("codename", flat=True)),
        user.is_staff,
        user.is_superuser,
    )


def test_an_editor_given_change_user_raises_nobodys_rights(
    editor, contributor, administrator
):
    # Given outside any role, as a superuser might to let them fix a typo in a
    # contributor's name: it is not a way to the Administrator's rights.
    editor.user_permissions.add(Permission.objects.get(codename="change_user"))
    outsider = UserFactory(username="outsider", is_staff=False, is_superuser=False)
    everything = {
        "groups": list(Group.objects.values_list("pk", flat=True)),
        "user_permissions": list(Permission.objects.values_list("pk", flat=True)),
        "is_staff": "on",
        "is_superuser": "on",
    }
    client = desk(editor)
    for user in (editor, contributor, outsider):
        before = rights(user)
        page = f"/admin/auth/user/{user.pk}/change/"
        assert client.get(page).status_code == 200
        response = client.post(
            page, user_form(user, **everything, first_name="Renamed")
        )
        assert response.status_code == 302
        assert rights(user) == before
        assert user.first_name == "Renamed"
    # Nor by taking over an account that holds more: not its page, nor its password.
    theirs = f"/admin/auth/user/{administrator.pk}"
    new = {
        "password1": "a fresh long passphrase",
        "password2": "a fresh long passphrase",
    }
    assert client.post(f"{theirs}/password/", new).status_code == 403
    taken = user_form(administrator, email="mine@example.org", is_active="")
    assert client.post(f"{theirs}/change/", taken).status_code == 403
    administrator.refresh_from_db()
    assert administrator.check_password("correct horse battery staple")
    assert (administrator.email, administrator.is_active) == ("ada@example.org", True)


def test_an_editor_given_change_user_cannot_reactivate_whom_an_administrator_stopped(
    editor, contributor, administrator
):
    """is_active was not among the rights: an Editor given auth.change_user
    brought back a Contributor an Administrator had deactivated."""
    desk(administrator).post(
        f"/admin/auth/user/{contributor.pk}/change/",
        user_form(contributor, is_active=""),
    )
    contributor.refresh_from_db()
    assert not contributor.is_active
    editor.user_permissions.add(Permission.objects.get(codename="change_user"))
    response = desk(editor).post(
        f"/admin/auth/user/{contributor.pk}/change/",
        user_form(contributor, is_active="on", first_name="Renamed"),
    )
    assert response.status_code == 302
    contributor.refresh_from_db()
    assert (contributor.first_name, contributor.is_active) == ("Renamed", False)


def test_an_editor_given_the_groups_permissions_cannot_add_to_what_a_role_holds(
    editor,
):
    editor.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_group", "change_group"])
    )
    role = Group.objects.get(name="Editor")
    before = set(role.permissions.all())
    everything = list(Permission.objects.values_list("pk", flat=True))
    client = desk(editor)
    page = f"/admin/auth/group/{role.pk}/change/"

    assert client.get(page).status_code == 200  # to read, not to change
    assert (
        client.post(page, {"name": "Editor", "permissions": everything}).status_code
        == 403
    )
    assert (
        client.post(
            "/admin/auth/group/add/", {"name": "All", "permissions": everything}
        ).status_code
        == 403
    )
    assert set(role.permissions.all()) == before
    assert not Group.objects.filter(name="All").exists()


def test_make_runs_admin_is_a_superuser_in_the_administrator_group(monkeypatch):
    monkeypatch.setenv("ADMIN_PASSWORD", "a long enough password")
    call_command("ensure_admin", stdout=StringIO())
    call_command("ensure_admin", stdout=StringIO())
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert list(admin.groups.values_list("name", flat=True)) == ["Administrator"]


# The demo shows it


def seed_demo() -> dict[str, str]:
    """Run seed_demo; the passwords it printed, by username."""
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return dict(
        line.split(" login: ")[1].split(" / ")
        for line in out.getvalue().splitlines()
        if " login: " in line and " / " in line
    )


def test_the_demo_prints_a_contributors_and_an_editors_login_once():
    passwords = seed_demo()
    User = get_user_model()
    for username, role in (("contributor", "Contributor"), ("editor", "Editor")):
        user = User.objects.get(username=username)
        assert user.check_password(passwords[username])
        assert user.is_staff and not user.is_superuser
        assert list(user.groups.values_list("name", flat=True)) == [role]
    counts = (User.objects.count(), Post.objects.count(), PostEvent.objects.count())
    assert seed_demo() == {}  # passwords as before, nothing made twice
    assert (
        User.objects.count(),
        Post.objects.count(),
        PostEvent.objects.count(),
    ) == counts


def test_the_demo_has_a_contributors_post_waiting_for_the_editor():
    seed_demo()
    User = get_user_model()
    contributor = User.objects.get(username="contributor")
    waiting = Post.objects.in_review().get()
    assert waiting.author == contributor
    assert waiting.events.get().kind == PostEvent.Kind.SUBMITTED
    editors_list = desk(User.objects.get(username="editor")).get(CHANGELIST)
    assert "1 post waits for review" in editors_list.content.decode()
    assert escape(waiting.title) in desk(contributor).get(CHANGELIST).content.decode()


def test_the_demo_has_a_recent_post_open_for_comments_with_comments_and_a_sponsor(
    client,
):
    seed_demo()
    html = client.get("/posts/how-to-read-a-probation-inspection-report/").text
    assert 'class="comment-form"' in html
    assert "Jo Whitfield" in html and "Sam Okafor" in html
    assert "On Probation posts sponsored by" in html
    assert "Example Training Partnership" in html
    # An older post keeps its comments, its form closed by age.
    old = client.get("/posts/suffolk-probation-inspection-2017/").text
    assert "A former PSO" in old
    assert 'class="comment-form"' not in old
