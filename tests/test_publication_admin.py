"""The author's desk for the publication: every admin page opens, edits re-index."""

import re
from datetime import timedelta
from html import unescape
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape

from newsletter.models import Mailing, SubscriberTopic
from posts.models import (
    Inspection,
    Organisation,
    Post,
    PostEvent,
    PostImage,
    PostUpdate,
    RelatedLink,
    StandardRating,
)

from .factories import (
    AreaFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
    UserFactory,
    admin_inspection_form_of,
    admin_post_form,
    admin_post_form_of,
    unpublish_at_the_desk,
)
from .locks import as_it_commits

pytestmark = pytest.mark.django_db


def post_page_queries(client, *, rows: int) -> int:
    """The queries of a published post's page at the desk with `rows` of each
    inline: inspections (two organisations each), related posts, images, updates."""
    post = PublishedPostFactory()
    for i in range(rows):
        InspectionFactory(
            post=post, organisations=[OrganisationFactory(), OrganisationFactory()]
        )
        # Drafts, so that the email preview's related box is the same for any number.
        RelatedLink.objects.create(
            from_post=post, to_post=PostFactory(), type="see_also", order=i
        )
        PostImage.objects.create(
            post=post, image=SimpleUploadedFile(f"photo{i}.png", b"png"), alt="A photo"
        )
        PostUpdate.objects.create(post=post, note=f"Update {i}")
    return list_queries(client, f"/admin/posts/post/{post.pk}/change/")


def test_a_posts_page_takes_as_many_queries_for_10_rows_of_each_inline_as_for_2(
    client, media
):
    """Each inspection read its organisations, area and region, each related post
    its two posts, each update its post and its emails, one at a time: 99 queries
    for 2 rows of each, 198 for 10."""
    client.force_login(UserFactory())
    post_page_queries(client, rows=1)  # what Django caches once (content types)

    assert post_page_queries(client, rows=2) == post_page_queries(client, rows=10)


def test_a_posts_page_names_what_each_row_chose(client):
    # Read for every row at once, the names still go to their own rows.
    client.force_login(UserFactory())
    post = PublishedPostFactory()
    first, second = (
        OrganisationFactory(name="Seetec"),
        OrganisationFactory(name="Nacro"),
    )
    kent = InspectionFactory(post=post, organisations=[first])
    surrey = InspectionFactory(post=post, organisations=[first, second])
    linked = PublishedPostFactory(title="The follow-up")
    RelatedLink.objects.create(from_post=post, to_post=linked, type="see_also")

    page = client.get(f"/admin/posts/post/{post.pk}/change/").text

    def chosen(name: str) -> list[str]:
        select = re.search(rf'<select name="{name}".*?</select>', page, re.S)[0]
        return re.findall(r'<option value="\d+" selected>([^<]*)</option>', select)

    assert chosen("inspections-0-area") == [kent.area.name]
    assert chosen("inspections-1-area") == [surrey.area.name]
    assert chosen("inspections-0-organisations") == ["Seetec"]
    assert chosen("inspections-1-organisations") == ["Nacro", "Seetec"]
    assert chosen("links_out-0-to_post") == ["The follow-up"]


def test_each_related_post_row_names_its_post_field_as_its_column_does(client):
    """Django's wrapper of an autocomplete field shares its attributes with the
    page's first copy of the field, not the row's: only rows after the first were
    named."""
    client.force_login(UserFactory())
    post = PublishedPostFactory()
    for title in ("The follow-up", "The next inspection"):
        RelatedLink.objects.create(
            from_post=post, to_post=PublishedPostFactory(title=title), type="see_also"
        )

    page = client.get(f"/admin/posts/post/{post.pk}/change/").text

    for row in ("0", "1", "__prefix__"):
        select = re.search(rf'<select name="links_out-{row}-to_post"[^>]*>', page)[0]
        assert 'aria-label="Post"' in select, select


@pytest.fixture
def author(client):
    call_command("seed_demo", stdout=StringIO())
    client.force_login(UserFactory())
    return client


def list_queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


def test_the_post_and_inspection_lists_take_as_many_queries_for_20_rows_as_for_2(
    client,
):
    """A post's author and an inspection's area may be empty, so Django's own
    select_related() left them out, and each row read its own."""
    client.force_login(UserFactory())

    def add(n: int) -> None:
        for _ in range(n):
            writer = UserFactory()
            InspectionFactory(post=PublishedPostFactory(author=writer))

    add(2)
    for_2 = [list_queries(client, f"/admin/posts/{m}/") for m in ("post", "inspection")]
    add(18)
    for_20 = [
        list_queries(client, f"/admin/posts/{m}/") for m in ("post", "inspection")
    ]
    assert for_20 == for_2


@pytest.mark.parametrize(
    "model", ["post", "inspection", "organisation", "area", "region", "category",
              "tag", "sponsorship"],
)  # fmt: skip
def test_admin_list_add_and_change_pages_open(author, model):
    model_class = apps.get_model("posts", model)
    name = model_class._meta.verbose_name
    listing = author.get(f"/admin/posts/{model}/")
    assert listing.status_code == 200
    assert f"Select {name} to change" in listing.text
    adding = author.get(f"/admin/posts/{model}/add/")
    assert adding.status_code == 200
    assert f"Add {name}" in adding.text
    first = model_class.objects.first()
    change = author.get(f"/admin/posts/{model}/{first.pk}/change/")
    assert change.status_code == 200
    assert escape(str(first)) in change.text


def test_post_change_page_shows_inspection_links_and_suggestions(author):
    post = Post.objects.get(slug="derby-city-pdu-requires-improvement-2023")
    html = author.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "An inspection of probation services in: Derby City PDU" in html
    assert "Suggestions" in html
    # Leicester and Nottingham are linked already, so they are not suggested again.
    linked = set(post.links_out.values_list("to_post__title", flat=True))
    assert {
        "Leicester, Leicestershire and Rutland PDU rated Inadequate",
        "Nottingham City PDU rated Inadequate despite better staffing",
    } <= linked
    suggested = re.findall(
        r'name="to_post" value="\d+">Add</button> ([^<]*) <small>', html
    )
    assert suggested  # others are suggested
    assert linked.isdisjoint(unescape(title) for title in suggested), suggested


def test_editing_an_inspection_in_the_admin_updates_search(author):
    inspection = Inspection.objects.get(area__slug="suffolk")
    waveney = AreaFactory(name="Lowestoft and Waveney", slug="waveney")
    form = {
        "post": inspection.post_id,
        "inspectorate": inspection.inspectorate,
        "title": inspection.title,
        "type": inspection.type,
        "area": waveney.pk,
        "organisations": list(inspection.organisations.values_list("pk", flat=True)),
        "overall": inspection.overall,
        "key_findings": inspection.key_findings,
        "ratings-TOTAL_FORMS": "0",
        "ratings-INITIAL_FORMS": "0",
    }
    response = author.post(f"/admin/posts/inspection/{inspection.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    html = author.get("/search/", {"q": "Waveney"}).content.decode()
    assert inspection.post.title in html


def test_an_inspection_moved_to_another_post_in_the_admin_leaves_the_first_posts_search(
    client,
):
    # Put on the wrong post and moved to the right one, it kept the wrong post
    # in the results for its area, as if that post still reported on it.
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory(area=AreaFactory(name="Waveney", slug="waveney"))
    wrong = inspection.post
    right = PublishedPostFactory(title="Waveney: the right post")

    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(inspection, post=right.pk),
    )

    assert response.status_code == 302
    found = client.get("/search/", {"q": "Waveney"}).text
    assert right.title in found
    assert wrong.title not in found


@pytest.mark.parametrize("where", ["its page", "the list"])
def test_an_inspection_deleted_in_the_admin_leaves_its_posts_search(client, where):
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory(area=AreaFactory(name="Waveney", slug="waveney"))
    post = inspection.post
    assert post.title in client.get("/search/", {"q": "Waveney"}).text

    if where == "its page":
        url = f"/admin/posts/inspection/{inspection.pk}/delete/"
        response = client.post(url, {"post": "yes"})
    else:
        response = client.post(
            "/admin/posts/inspection/",
            {
                "action": "delete_selected",
                "_selected_action": [inspection.pk],
                "post": "yes",
            },
        )

    assert response.status_code == 302
    assert not Inspection.objects.exists()
    assert post.title not in client.get("/search/", {"q": "Waveney"}).text


def test_renaming_an_owner_in_the_admin_updates_search(author):
    sodexo = Organisation.objects.get(slug="sodexo-justice-services")
    response = author.post(
        f"/admin/posts/organisation/{sodexo.pk}/change/",
        {"name": "Zodiac Justice Holdings", "slug": sodexo.slug, "kind": "owner"},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    html = author.get("/search/", {"q": "Zodiac"}).content.decode()
    assert "Suffolk probation: far more needed" in html


@pytest.mark.parametrize("where", ["its page", "the list"])
def test_an_organisation_deleted_in_the_admin_leaves_its_posts_search(client, where):
    client.force_login(StaffFactory(role="Editor"))
    zodiac = OrganisationFactory(name="Zodiac Justice", slug="zodiac")
    post = InspectionFactory(organisations=[zodiac]).post
    assert post.title in client.get("/search/", {"q": "Zodiac"}).text

    if where == "its page":
        url = f"/admin/posts/organisation/{zodiac.pk}/delete/"
        response = client.post(url, {"post": "yes"})
    else:
        response = client.post(
            "/admin/posts/organisation/",
            {
                "action": "delete_selected",
                "_selected_action": [zodiac.pk],
                "post": "yes",
            },
        )

    assert response.status_code == 302
    assert not Organisation.objects.exists()
    assert post.title not in client.get("/search/", {"q": "Zodiac"}).text


def test_the_report_link_is_a_web_address(client):
    # Readers follow it from the fact box: an ftp: link (which URLField takes)
    # opens in no current browser.
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory()
    url = f"/admin/posts/inspection/{inspection.pk}/change/"
    refused = client.post(
        url,
        admin_inspection_form_of(inspection, report_url="ftp://example.org/report.pdf"),
    )
    assert refused.status_code == 200
    assert "Link to an http or https address." in refused.text
    assert (
        client.post(
            url,
            admin_inspection_form_of(
                inspection, report_url="justiceinspectorates.gov.uk/r"
            ),
        ).status_code
        == 302
    )
    inspection.refresh_from_db()
    assert inspection.report_url == "https://justiceinspectorates.gov.uk/r"


@pytest.mark.parametrize(
    "again, refusal",
    [
        ("Leadership", "Please correct the duplicate data for standard"),
        # Only the very same name was refused: the fact box rated "Leadership"
        # Good and "LEADERSHIP" Inadequate, two rows for one standard.
        ("LEADERSHIP", "“LEADERSHIP” is rated twice"),
    ],
)
def test_an_inspection_has_one_rating_per_standard(client, again, refusal):
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory()
    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(
            inspection,
            **{
                "ratings-TOTAL_FORMS": "2",
                "ratings-0-standard": "Leadership",
                "ratings-0-rating": "good",
                "ratings-0-order": "0",
                "ratings-1-standard": again,
                "ratings-1-rating": "inadequate",
                "ratings-1-order": "1",
            },
        ),
    )
    assert response.status_code == 200
    assert refusal in unescape(response.text)
    assert not StandardRating.objects.exists()


@pytest.mark.parametrize(
    ("dates", "refusal"),
    [
        (
            {"fieldwork_start": "2024-03-15", "fieldwork_end": "2024-03-01"},
            "Fieldwork cannot end before it starts.",
        ),
        (
            {"fieldwork_start": "2024-03-04", "published_on": "2023-01-01"},
            "The report cannot come out before the fieldwork it reports on.",
        ),
        (
            {
                "fieldwork_start": "2024-03-04",
                "fieldwork_end": "2024-03-15",
                "published_on": "2024-03-10",
            },
            "The report cannot come out before the fieldwork it reports on.",
        ),
    ],
)
def test_inspection_dates_out_of_order_are_refused(client, dates, refusal):
    # The fact box showed them as typed: fieldwork ending before it began.
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory()
    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(inspection, **dates),
    )
    assert response.status_code == 200
    assert escape(refusal) in response.text
    inspection.refresh_from_db()
    assert inspection.fieldwork_start is None
    assert inspection.published_on is None


def test_inspection_dates_in_order_are_saved(client):
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory()
    dates = {
        "fieldwork_start": "2024-03-04",
        "fieldwork_end": "2024-03-15",
        "published_on": "2024-06-20",
    }
    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(inspection, **dates),
    )
    assert response.status_code == 302
    inspection.refresh_from_db()
    assert str(inspection.fieldwork_end) == "2024-03-15"


FUTURE_REPORT = "The report cannot come out after the post about it:"


@pytest.mark.parametrize(
    ("post", "report_in_days", "refused"),
    [
        ("live", 0, False),
        ("live", 1, True),
        # Written under the report's embargo, for the day it comes out.
        ("scheduled in 3 days", 3, False),
        ("scheduled in 3 days", 4, True),
        ("draft", 30, False),
    ],
)
def test_a_report_dated_after_its_post_goes_live_is_refused(
    client, post, report_in_days, refused
):
    goes_live = {
        "live": timezone.now() - timedelta(days=1),
        "scheduled in 3 days": timezone.now() + timedelta(days=3),
        "draft": None,
    }[post]
    inspection = InspectionFactory(
        post=PublishedPostFactory(
            published_at=goes_live, status="draft" if post == "draft" else "published"
        )
    )
    report_on = timezone.localdate() + timedelta(days=report_in_days)
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(inspection, published_on=report_on.isoformat()),
    )

    assert response.status_code == (200 if refused else 302)
    assert (FUTURE_REPORT in response.text) == refused
    inspection.refresh_from_db()
    assert inspection.published_on == (None if refused else report_on)


def its_row(inspection: Inspection, **fields) -> dict:
    """The post's form's inspections, one row: this inspection as stored, with
    `fields` changed."""
    row = {
        **admin_inspection_form_of(inspection),
        "id": inspection.pk,
        "organisations": [o.pk for o in inspection.organisations.all()],
        "report_url": inspection.report_url,
        "published_on": inspection.published_on or "",
        **fields,
    }
    del row["ratings-TOTAL_FORMS"], row["ratings-INITIAL_FORMS"]
    return {
        **{f"inspections-0-{name}": value for name, value in row.items()},
        "inspections-TOTAL_FORMS": "1",
        "inspections-INITIAL_FORMS": "1",
    }


NO_REPORT_LINK = "lacks the link to the report"


def test_an_inspection_completed_as_the_post_is_published_is_not_warned_of(client):
    """The author adds the missing report link and publishes in one save: the
    checks read the inspection as it was stored, and asked them to publish
    despite a warning already fixed."""
    post = PostFactory()
    inspection = InspectionFactory(post=post, organisations=[OrganisationFactory()])
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            status="published",
            **its_row(inspection, report_url="https://example.org/kent.pdf"),
        ),
    )

    assert response.status_code == 302, NO_REPORT_LINK in response.text
    post.refresh_from_db()
    assert post.status == "published"
    inspection.refresh_from_db()
    assert inspection.report_url == "https://example.org/kent.pdf"


def test_an_inspection_emptied_as_the_post_is_published_is_warned_of(client):
    """The author deletes the report link and publishes in one save: the checks
    read the link as it was stored, and published with no warning."""
    post = PostFactory()
    inspection = InspectionFactory(
        post=post,
        organisations=[OrganisationFactory()],
        report_url="https://example.org/kent.pdf",
    )
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post, status="published", **its_row(inspection, report_url="")
        ),
    )

    assert response.status_code == 200
    assert NO_REPORT_LINK in response.text
    post.refresh_from_db()
    assert post.status == "draft"
    inspection.refresh_from_db()
    assert inspection.report_url == "https://example.org/kent.pdf"


def test_a_new_post_published_with_an_incomplete_inspection_is_warned_of(client):
    """Its inspection is saved with it: a post not yet saved had no inspections
    for the checks to read, and went live with no warning."""
    client.force_login(StaffFactory(role="Editor"))
    inspection = {
        "title": "Probation services in Kent",
        "inspectorate": "HM Inspectorate of Probation",
        "type": "local",
        "area": AreaFactory().pk,
        "organisations": [OrganisationFactory().pk],
        "overall": "good",
    }

    response = client.post(
        "/admin/posts/post/add/",
        admin_post_form(
            status="published",
            **{f"inspections-0-{name}": value for name, value in inspection.items()},
            **{"inspections-TOTAL_FORMS": "1", "inspections-INITIAL_FORMS": "0"},
        ),
    )

    assert response.status_code == 200
    assert NO_REPORT_LINK in response.text
    assert not Post.objects.exists()
    assert not Inspection.objects.exists()


def test_publishing_a_post_whose_report_is_yet_to_come_is_refused(client):
    # Written under the report's embargo, and published before the report is out.
    post = PostFactory(title="Kent: under embargo")
    report_on = timezone.localdate() + timedelta(days=2)
    inspection = InspectionFactory(post=post, published_on=report_on)
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            status="published",
            publish_despite_warnings="on",
            **its_row(inspection, published_on=report_on.isoformat()),
        ),
    )

    assert response.status_code == 200
    assert FUTURE_REPORT in response.text
    post.refresh_from_db()
    assert post.status == "draft"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
@pytest.mark.django_db(transaction=True)
def test_a_double_click_on_save_of_a_new_post_saves_it_once_and_says_so():
    """Both clicks' forms found the slug free, neither having committed: the
    second's insert then met the first's row, and the author got a server error."""
    author = UserFactory()
    first, second = Client(), Client(raise_request_exception=False)
    first.force_login(author)
    second.force_login(author)
    form = admin_post_form(title="Court work in Kent", slug="court-work-in-kent")

    saved, again = as_it_commits(
        lambda: first.post("/admin/posts/post/add/", form),
        lambda: second.post("/admin/posts/post/add/", form),
        must_wait=True,  # the second, for the first's
    )

    assert saved.status_code == 302
    assert again.status_code == 200
    assert "Post with this Slug already exists." in unescape(again.text)
    assert list(Post.objects.values_list("slug", flat=True)) == ["court-work-in-kent"]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
@pytest.mark.django_db(transaction=True)
def test_a_post_scheduled_by_another_editor_as_the_list_publishes_it_keeps_its_time():
    """The list's action read the draft, ran the checks, then saved the post as it
    had read it: scheduled meanwhile by another editor, it went live there and
    then, before its report's embargo lifted, its readers were emailed, and the
    other editor's title was undone."""
    SubscriberFactory()
    post = PostFactory(title="Kent: court work", email_subscribers=True)
    monday = timezone.now().replace(microsecond=0) + timedelta(days=3)
    scheduling, publishing = logged_in(UserFactory()), logged_in(UserFactory())
    form = admin_post_form_of(
        post, status="published", published_at=monday, title="Kent: embargoed"
    )

    scheduled, published = as_it_commits(
        lambda: scheduling.post(f"/admin/posts/post/{post.pk}/change/", form),
        lambda: publishing.post(
            "/admin/posts/post/",
            {"action": "publish", "_selected_action": [post.pk]},
            follow=True,
        ),
        must_wait=True,  # the list, for the other editor's save
    )

    assert scheduled.status_code == 302
    post.refresh_from_db()
    assert (post.status, post.published_at) == (Post.Status.PUBLISHED, monday)
    assert post.title == "Kent: embargoed"
    assert not post.is_published
    assert not Mailing.objects.exists()
    assert list(post.events.values_list("kind", flat=True)) == [
        PostEvent.Kind.SCHEDULED
    ]
    assert page_messages(published) == [
        "Not published, as they are published or scheduled already: "
        "Kent: embargoed (scheduled)."
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two connections at once")
@pytest.mark.django_db(transaction=True)
def test_a_draft_published_as_its_contributor_submits_it_for_review_stays_published():
    """The list's action read the draft, then saved it as in review once the
    editor's publication committed: a Contributor took a published post off the
    site, which their role may not, and its email was paused."""
    SubscriberFactory()
    # A Contributor's rights on posts (the roles' groups go with the flush).
    contributor = StaffFactory()
    contributor.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_post", "change_post"])
    )
    post = PostFactory(title="Kent: court work", author=contributor)
    editor, submitting = logged_in(UserFactory()), logged_in(contributor)

    published, submitted = as_it_commits(
        lambda: editor.post(
            f"/admin/posts/post/{post.pk}/change/",
            admin_post_form_of(post, status="published"),
        ),
        lambda: submitting.post(
            "/admin/posts/post/",
            {"action": "submit_for_review", "_selected_action": [post.pk]},
            follow=True,
        ),
        must_wait=True,  # the contributor's action, for the editor's save
    )

    assert published.status_code == 302
    post.refresh_from_db()
    assert post.status == Post.Status.PUBLISHED and post.is_published
    assert list(post.events.values_list("kind", flat=True)) == [
        PostEvent.Kind.PUBLISHED
    ]
    assert Mailing.objects.get(post=post).paused_at is None
    assert page_messages(submitted) == [
        "Not submitted for review, as they are not drafts: "
        "Kent: court work (published)."
    ]


def test_a_key_finding_edited_at_the_desk_is_searched_by_its_new_words(client):
    client.force_login(StaffFactory(role="Editor"))
    inspection = InspectionFactory(key_findings="Caseloads were high.")
    response = client.post(
        f"/admin/posts/inspection/{inspection.pk}/change/",
        admin_inspection_form_of(
            inspection, key_findings="Caseloads were unmanageable."
        ),
    )
    assert response.status_code == 302
    assert inspection.post.title in client.get("/search/", {"q": "unmanageable"}).text


def desk_user_form(user, **fields) -> dict:
    """What the desk's user form sends for `user` as it is."""
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "date_joined_0": "2026-01-05",
        "date_joined_1": "09:00:00",
        **fields,
    }


def test_an_author_renamed_at_the_desk_is_searched_by_the_new_name(client):
    client.force_login(UserFactory())
    reader = Client()
    author = UserFactory(first_name="Hester", last_name="Quaile")
    post = PublishedPostFactory(title="A report", author=author)
    # Pages cached before: the post's, showing the old byline, and a search.
    assert "Hester Quaile" in reader.get(post.get_absolute_url()).text
    assert "Nothing found" in reader.get("/search/", {"q": "Marchbanks"}).text
    response = client.post(
        f"/admin/auth/user/{author.pk}/change/",
        desk_user_form(author, last_name="Marchbanks"),
    )
    assert response.status_code == 302
    assert post.title in reader.get("/search/", {"q": "Marchbanks"}).text
    assert "Nothing found" in reader.get("/search/", {"q": "Quaile"}).text
    assert "Hester Marchbanks" in reader.get(post.get_absolute_url()).text


def test_an_author_deleted_at_the_desk_is_no_longer_searched_by_name(client):
    client.force_login(UserFactory())
    author = UserFactory(first_name="Hester", last_name="Quaile")
    PublishedPostFactory(title="A report", author=author)
    response = client.post(f"/admin/auth/user/{author.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert "Nothing found" in client.get("/search/", {"q": "Quaile"}).text


def owner_chosen_at_the_desk(
    client: Client, organisation: Organisation, owner: Organisation
):
    """An Administrator saves the organisation's page with this one owner; the
    response."""
    client.force_login(StaffFactory(role="Administrator"))
    return client.post(
        f"/admin/posts/organisation/{organisation.pk}/change/",
        {"name": organisation.name, "kind": organisation.kind, "owners": [owner.pk]},
    )


@pytest.mark.parametrize("owner", ["itself", "what it owns"])
def test_an_organisation_cannot_be_owned_by_itself_or_by_what_it_owns(client, owner):
    # Saved so, a post's fact box read "Kent CRC (owned by Kent CRC)", and its
    # page "Includes inspections of Kent CRC".
    crc = OrganisationFactory(name="Kent CRC", kind="crc")
    seetec = OrganisationFactory(name="Seetec", kind="owner")
    crc.owners.add(seetec)
    changed, chosen = {"itself": (crc, crc), "what it owns": (seetec, crc)}[owner]

    response = owner_chosen_at_the_desk(client, changed, chosen)

    assert response.status_code == 200
    assert "cannot own itself" in unescape(response.text)
    assert list(changed.owners.all()) == ([seetec] if changed == crc else [])


def test_an_organisation_cannot_be_owned_by_what_it_owns_at_any_remove(client):
    # Kent CRC owned by Seetec, Seetec by a holding company: the holding company
    # owned by Kent CRC went round the loop on every owner's page.
    crc = OrganisationFactory(name="Kent CRC", kind="crc")
    seetec = OrganisationFactory(name="Seetec", kind="owner")
    holding = OrganisationFactory(name="Seetec Holdings", kind="owner")
    crc.owners.add(seetec)
    seetec.owners.add(holding)

    response = owner_chosen_at_the_desk(client, holding, crc)

    assert response.status_code == 200
    assert "cannot own itself" in unescape(response.text)
    assert list(holding.owners.all()) == []


def test_a_loop_already_saved_elsewhere_does_not_stop_an_organisation_saving(client):
    first = OrganisationFactory(name="First", kind="owner")
    second = OrganisationFactory(name="Second", kind="owner")
    crc = OrganisationFactory(name="Kent CRC", kind="crc")
    # Bad data from before the check: the walk up from Kent CRC's owner goes round it.
    first.owners.add(second)
    second.owners.add(first)

    response = owner_chosen_at_the_desk(client, crc, first)

    assert response.status_code == 302
    assert list(crc.owners.all()) == [first]


# What the author is told of a save that publishes a post, or gives it a time.


def readers_of_posts_as_published_and_of_digests() -> None:
    """Three readers who get posts as they are published, one of a weekly digest,
    and one who paused their newsletter."""
    SubscriberFactory.create_batch(3)
    SubscriberTopic.objects.create(
        subscriber=SubscriberFactory(), kind="everything", frequency="weekly"
    )
    SubscriberFactory(paused_at=timezone.now())


def said(response) -> list[str]:
    """The messages on the page, as text."""
    return [
        unescape(re.sub(r"<[^>]+>", "", str(message)))
        for message in response.context["messages"]
    ]


def desk_time(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def test_publishing_with_a_past_date_says_it_is_live_now_dated_then_and_emailed(
    client,
):
    """The author meant next year's date and typed last year's: the post went
    live at once, below a year of posts, and was emailed to every reader, and the
    page said only that the post was changed successfully."""
    readers_of_posts_as_published_and_of_digests()
    PublishedPostFactory(published_at=timezone.now() - timedelta(days=30))
    post = PostFactory(title="Kent: court work")
    client.force_login(StaffFactory(role="Editor"))
    typed = timezone.localtime().replace(microsecond=0) - timedelta(days=365)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post, status="published", published_at=typed, publish_despite_warnings="on"
        ),
        follow=True,
    )

    assert Mailing.objects.filter(post=post).count() == 1
    assert (
        "“Kent: court work” is on the site now, dated in the past "
        f"({desk_time(typed)}): it is listed as of then, below the 1 post "
        "published since. "
        "Emailing it now to 3 readers who get posts as they are published; "
        "readers of digests get it in their next one."
    ) in said(response)
    level = next(m.level_tag for m in response.context["messages"] if "dated" in str(m))
    assert level == "warning"


def test_publishing_now_says_it_is_live_dated_now_and_emailed(client):
    readers_of_posts_as_published_and_of_digests()
    post = PostFactory(title="Kent: court work")
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
        follow=True,
    )

    post.refresh_from_db()
    assert (
        "“Kent: court work” is on the site now "
        f"(dated {desk_time(post.published_at)}). "
        "Emailing it now to 3 readers who get posts as they are published; "
        "readers of digests get it in their next one."
    ) in said(response)


def test_scheduling_says_when_it_goes_live_and_who_its_email_goes_to_then(client):
    readers_of_posts_as_published_and_of_digests()
    post = PostFactory(title="Kent: court work")
    client.force_login(StaffFactory(role="Editor"))
    when = timezone.localtime().replace(microsecond=0) + timedelta(days=2)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post, status="published", published_at=when, publish_despite_warnings="on"
        ),
        follow=True,
    )

    assert not Mailing.objects.exists()
    assert (
        f"“Kent: court work” goes live on {desk_time(when)}: until then it is "
        "scheduled, not on the site. "
        "Its email goes then to the readers who get posts as they are published "
        "(3 as of now); readers of digests get it in their next one."
    ) in said(response)


def test_publishing_a_post_unticked_says_it_is_not_emailed(client):
    readers_of_posts_as_published_and_of_digests()
    post = PostFactory(title="Kent: court work")
    client.force_login(StaffFactory(role="Editor"))

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            status="published",
            publish_despite_warnings="on",
            email_subscribers="",
        ),
        follow=True,
    )

    assert not Mailing.objects.exists()
    assert any(
        message.endswith(
            "It is not emailed, nor in digests: “Email to subscribers” is unticked."
        )
        for message in said(response)
    )


def test_a_post_back_on_the_site_says_its_paused_email_is_still_paused_and_where(
    client,
):
    """Taken down as its email went out (which paused it), then published again:
    its email stayed paused, rightly (the pause is the author's to lift), and the
    save said nothing, so the readers not yet sent it waited unnoticed."""
    readers_of_posts_as_published_and_of_digests()
    post = PostFactory(title="Kent: court work")
    editor = StaffFactory(role="Editor")
    client.force_login(editor)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
    )
    mailing = Mailing.objects.get(post=post)
    post.refresh_from_db()
    unpublish_at_the_desk(post)
    post.refresh_from_db()

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="published", publish_despite_warnings="on"),
        follow=True,
    )

    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    page = response.content.decode()
    url = reverse("admin:newsletter_mailing_change", args=[mailing.pk])
    assert f'<a href="{url}">' in page
    assert any(
        "Its email is still paused: nobody more gets it until you resume it on its "
        "mailing's page." in message
        for message in said(response)
    )


def published_at_the_desk(client, title: str, **fields) -> Post:
    post = PostFactory(title=title)
    client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post, status="published", publish_despite_warnings="on", **fields
        ),
    )
    return Post.objects.get(pk=post.pk)


def test_unpublishing_says_the_post_is_off_the_site_and_its_email_paused(client):
    """Taken down as its email went out: the page said only that the post was
    changed successfully, not that its email stopped, nor what brings it back."""
    readers_of_posts_as_published_and_of_digests()
    client.force_login(StaffFactory(role="Editor"))
    post = published_at_the_desk(client, "Kent: court work")
    mailing = Mailing.objects.get(post=post)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft"),
        follow=True,
    )

    mailing.refresh_from_db()
    assert mailing.paused_at is not None
    url = reverse("admin:newsletter_mailing_change", args=[mailing.pk])
    assert f'<a href="{url}">' in response.content.decode()
    assert (
        "“Kent: court work” is off the site: its page is not found until you "
        "publish it again. Its email is paused (a batch going out stops within "
        "a second): the readers it has not reached get it only once you publish "
        "the post again and resume its email on its mailing's page. "
        "Digests not yet sent go without it."
    ) in said(response)
    assert client.get(post.get_absolute_url()).status_code == 404


def test_unpublishing_a_post_whose_email_went_out_says_its_readers_have_it(client):
    readers_of_posts_as_published_and_of_digests()
    client.force_login(StaffFactory(role="Editor"))
    post = published_at_the_desk(client, "Kent: court work")
    Mailing.objects.filter(post=post).update(status=Mailing.Status.DONE)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft"),
        follow=True,
    )

    assert (
        "“Kent: court work” is off the site: its page is not found until you "
        "publish it again. Its email had gone out: its readers have it, and its "
        "link leads nowhere until the post is back. "
        "Digests not yet sent go without it."
    ) in said(response)


def test_taking_back_a_scheduled_post_says_it_no_longer_goes_live_nor_out(client):
    readers_of_posts_as_published_and_of_digests()
    client.force_login(StaffFactory(role="Editor"))
    when = timezone.localtime().replace(microsecond=0) + timedelta(days=2)
    post = published_at_the_desk(client, "Kent: court work", published_at=when)

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, status="draft"),
        follow=True,
    )

    assert not Mailing.objects.exists()
    assert (
        f"“Kent: court work” no longer goes live on {desk_time(when)}: it is not "
        "scheduled any more. Nobody was emailed it: its email goes out once you "
        "publish it again."
    ) in said(response)


def test_two_related_posts_swapped_between_their_rows_are_saved_not_a_500():
    """The author re-picks the posts of two rows to put them in the other order:
    saved a row at a time, the first met the second's link to the same post
    (the table's one link per pair), and the page was a server error."""
    post = PostFactory()
    first, second = PublishedPostFactory(), PublishedPostFactory()
    rows = [
        RelatedLink.objects.create(from_post=post, to_post=to, type="see_also", order=i)
        for i, to in enumerate([first, second])
    ]
    swapped = {"links_out-TOTAL_FORMS": "2", "links_out-INITIAL_FORMS": "2"}
    for i, (row, to) in enumerate(zip(rows, [second, first], strict=True)):
        swapped |= {
            f"links_out-{i}-id": row.pk,
            f"links_out-{i}-from_post": post.pk,
            f"links_out-{i}-to_post": to.pk,
            f"links_out-{i}-type": "see_also",
            f"links_out-{i}-order": str(i),
        }
    client = Client()
    client.force_login(UserFactory())

    response = client.post(
        f"/admin/posts/post/{post.pk}/change/", admin_post_form_of(post, **swapped)
    )

    assert response.status_code == 302
    assert list(post.links_out.values_list("to_post", "order")) == [
        (second.pk, 0),
        (first.pk, 1),
    ]
