"""Malformed input to the author's desk is refused and changes nothing: a NUL
character anywhere, ids that are not ids in an action's selection, dates no
calendar holds in a changelist's lookups, and ids no column holds in a form.
Each was a 500 from Django's own admin, in ours and in third-party admins alike.
"""

import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from newsletter.models import Subscriber
from posts.models import Area, Inspection, Organisation, Post

from .factories import (
    AreaFactory,
    CommentFactory,
    InspectionFactory,
    OrganisationFactory,
    PublishedPostFactory,
    SubscriberFactory,
    TagFactory,
    UserFactory,
    admin_inspection_form_of,
    admin_post_form,
    admin_post_form_of,
    admin_subscriber_form,
)

pytestmark = pytest.mark.django_db

# More digits than any integer column holds, PostgreSQL's bigint and SQLite's alike.
TOO_BIG = "9" * 30


@pytest.fixture
def desk(client):
    client.force_login(UserFactory(username="admin"))
    return client


@pytest.fixture
def rows(db) -> dict:
    """A few rows for the requests to name, and for their counts to stay put."""
    post = PublishedPostFactory()
    organisation = OrganisationFactory()
    InspectionFactory(post=post, organisations=[organisation])
    CommentFactory(post=post)
    return {
        "post": post.pk,
        "subscriber": SubscriberFactory().pk,
        "organisation": organisation.pk,
        "area": AreaFactory().pk,
        "tag": TagFactory().pk,
        "group": Group.objects.create(name="Proofreaders").pk,
        "user": UserFactory(username="proofreader", is_superuser=False).pk,
    }


def row_counts() -> dict:
    """Every model the desk shows, the rows that join them (a post's tags, a
    group's permissions) and the desk's history, where an admin change is
    written."""
    models = {LogEntry}
    for model in admin.site._registry:
        models.add(model)
        models.update(field.remote_field.through for field in model._meta.many_to_many)
    return {model._meta.label: model._default_manager.count() for model in models}


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/newsletter/subscriber/", {"status": "\x00"}),
        ("/admin/newsletter/subscriber/", {"email__startswith": "\x00"}),
        ("/admin/newsletter/subscriber/", {"q": "\x00"}),
        (
            "/admin/autocomplete/",
            {
                "app_label": "posts",
                "model_name": "inspection",
                "field_name": "area",
                "term": "\x00",
            },
        ),
        ("/admin/newsletter/postreport/{post}/link/", {"url": "\x00"}),
        ("/admin/axes/accessattempt/", {"username": "\x00"}),
    ],
)
def test_a_nul_character_in_a_query_is_a_400(desk, rows, path, data):
    # A 500 on PostgreSQL, whose text cannot hold NUL; refused on every database.
    response = desk.get(path.format(**rows), data)
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/posts/tag/add/", {"name": "Kent\x00", "slug": "kent"}),
        ("/admin/posts/tag/{tag}/change/", {"name": "Kent", "slug": "kent\x00"}),
        (
            "/admin/newsletter/subscriber/",
            {
                "action": "delete_selected",
                "_selected_action": "{subscriber}",
                "index": "0",
                "q": "\x00",
            },
        ),
    ],
)
def test_a_nul_character_in_a_form_is_a_400_that_changes_nothing(
    desk, rows, path, data
):
    before = row_counts()
    response = desk.post(
        path.format(**rows),
        {key: value.format(**rows) for key, value in data.items()},
    )
    assert response.status_code == 400
    assert row_counts() == before


@pytest.mark.parametrize("header", ["HTTP_USER_AGENT", "HTTP_ACCEPT"])
@pytest.mark.parametrize("password", ["wrong", "right-password-1"])
def test_a_nul_character_in_a_login_header_is_a_400_that_records_nothing(
    client, header, password
):
    """django-axes records the User-Agent and Accept of every login, right or
    wrong: a NUL in either was a 500 on PostgreSQL, a login refused for a header."""
    UserFactory(username="editor", password="right-password-1")
    before = row_counts()
    response = client.post(
        "/admin/login/",
        {"username": "editor", "password": password},
        **{header: "Mozilla/5.0\x00"},
    )
    assert response.status_code == 400
    assert b"NUL" in response.content
    assert row_counts() == before
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("length", [151, 256, 100_000])
def test_a_login_with_a_username_longer_than_any_is_a_400_that_records_nothing(
    client, length
):
    """Django's login form shows the username's limit but does not check it, and
    django-axes records every failed login's username in 255 characters: a longer
    one was a 500 on PostgreSQL (and 100 kB kept on SQLite)."""
    UserFactory(username="editor", password="right-password-1")
    before = row_counts()
    response = client.post(
        "/admin/login/", {"username": "e" * length, "password": "wrong"}
    )
    assert response.status_code == 400
    assert b"username" in response.content
    assert row_counts() == before


@pytest.mark.parametrize("selected", ["abc", "", "1.5", "\x00", "1e3", TOO_BIG])
@pytest.mark.parametrize("confirmed", [False, True], ids=["index", "confirmed"])
def test_a_selection_that_is_not_ids_is_a_400_that_changes_nothing(
    desk, rows, selected, confirmed
):
    # The confirmation page of delete_selected posts its selection back with
    # post=yes and no index.
    step = {"post": "yes"} if confirmed else {"index": "0"}
    before = row_counts()
    response = desk.post(
        "/admin/newsletter/subscriber/",
        {"action": "delete_selected", "_selected_action": [selected], **step},
    )
    assert response.status_code == 400
    assert b"Nothing was changed." in response.content
    assert row_counts() == before


def every_action() -> list[tuple]:
    return [
        (model, name)
        for model, model_admin in admin.site._registry.items()
        for _, name, _ in model_admin._get_base_actions()
    ]


@pytest.mark.parametrize(
    ("model", "action"),
    every_action(),
    ids=[f"{model._meta.label}.{name}" for model, name in every_action()],
)
def test_every_action_of_every_admin_refuses_a_selection_that_is_not_ids(
    desk, rows, model, action
):
    # One id that is not one refuses the whole selection.
    selected = [str(rows["post"]), "abc"]
    before = row_counts()
    response = desk.post(
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/",
        {"action": action, "_selected_action": selected, "index": "0"},
    )
    assert response.status_code == 400
    assert row_counts() == before


@pytest.mark.parametrize(
    ("path", "query"),
    [
        # The date hierarchy: its next day, month or year is past 9999.
        (
            "/admin/posts/post/",
            "published_at__year=9999&published_at__month=12&published_at__day=31",
        ),
        ("/admin/posts/post/", "published_at__year=9999"),
        ("/admin/posts/post/", f"published_at__year={TOO_BIG}"),
        ("/admin/comments/comment/", "created_at__year=9999&created_at__month=12"),
        ("/admin/axes/accessattempt/", "attempt_time__year=9999"),
        ("/admin/axes/accesslog/", f"attempt_time__year={TOO_BIG}"),
        # A year lookup the changelist passes on to the database.
        ("/admin/posts/post/", "created_at__year=0"),
        ("/admin/posts/post/", "created_at__year=-1"),
        ("/admin/posts/post/", "created_at__year=99999"),
        ("/admin/newsletter/mailing/", "created_at__year=0"),
        ("/admin/newsletter/subscriber/", "created_at__year=-1"),
        ("/admin/newsletter/suppression/", "created_at__year=99999"),
        ("/admin/newsletter/postreport/", "created_at__year=0"),
        ("/admin/comments/comment/", "created_at__year=9999"),
        ("/admin/auth/user/", "date_joined__year=0"),
    ],
)
def test_a_date_no_calendar_holds_in_a_changelist_is_a_400(desk, rows, path, query):
    # A year Django's admin does not check itself; 0, -1 or 99999 as the date
    # hierarchy's year it does (back to the changelist with ?e=1).
    response = desk.get(f"{path}?{query}")
    assert response.status_code == 400
    assert b"date" in response.content


@pytest.mark.parametrize(
    ("given", "day", "time"),
    [
        ("2026-06-01 10:30", "01/06/2026", "10:30:00"),
        ("not a time", "", ""),
        ("2026-02-30 10:30", "", ""),
    ],
)
def test_a_publication_time_in_the_add_pages_address_is_shown_or_left_out(
    desk, given, day, time
):
    # Any field's first value can be given in the add page's address; the day
    # and time boxes could not split a time given so, and the page was a 500.
    response = desk.get("/admin/posts/post/add/", {"published_at": given})
    assert response.status_code == 200
    shown = {
        name: re.search(rf'<input[^>]* name="{name}"( value="([^"]*)")?', response.text)
        for name in ("published_at_0", "published_at_1")
    }
    assert (shown["published_at_0"][2] or "", shown["published_at_1"][2] or "") == (
        day,
        time,
    )


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/admin/posts/inspection/add/", "post", "abc"),
        ("/admin/posts/inspection/add/", "post", "1e308"),
        ("/admin/posts/inspection/add/", "area", "abc"),
        ("/admin/posts/inspection/add/", "area", "\x00"),
        ("/admin/posts/inspection/add/", "organisations", "abc"),
        ("/admin/posts/inspection/add/", "organisations", "1e308"),
        ("/admin/comments/postcommentsettings/add/", "post", "abc"),
    ],
)
def test_an_autocomplete_field_given_no_id_is_a_400_that_changes_nothing(
    desk, rows, path, field, value
):
    before = row_counts()
    response = desk.post(path, {field: value, "title": "A title"})
    assert response.status_code == 400
    assert row_counts() == before
    assert not Inspection.objects.filter(title="A title").exists()


@pytest.mark.skipif(
    connection.vendor != "sqlite", reason="only SQLite refuses to bind such an int"
)
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/admin/posts/post/{post}/change/", "tags"),
        ("/admin/posts/post/{post}/change/", "categories"),
        ("/admin/posts/organisation/{organisation}/change/", "owners"),
        ("/admin/auth/group/{group}/change/", "permissions"),
        ("/admin/auth/user/{user}/change/", "groups"),
    ],
)
def test_an_id_no_column_holds_in_a_change_form_is_a_400_that_changes_nothing(
    desk, rows, path, field
):
    before = row_counts()
    response = desk.post(path.format(**rows), {field: TOO_BIG})
    assert response.status_code == 400
    assert row_counts() == before


# Control characters the desk's forms may receive (NUL is refused before them, as
# a 400): C0 and DEL, the C1 line break, Unicode's line separator and a
# right-to-left override.
CONTROLS = {
    "escape": "\x1b",
    "delete": "\x7f",
    "next-line": "\x85",
    "line-separator": "\u2028",
    "right-to-left-override": "\u202e",
}
# What a single line must not hold either, though text of several lines may.
LINE_BREAKS = {"line-feed": "\n", "carriage-return-line-feed": "\r\n", "tab": "\t"}
REFUSED = "This contains invisible control characters"


def with_control(field: str, char: str) -> dict:
    """A form field's value with the character inside it (a form strips the ends)."""
    return {field: f"Court work{char} in Kent"}


def refused_and_nothing_changed(response, before: dict, message=REFUSED) -> bool:
    return (
        response.status_code == 200
        and message in response.text
        and row_counts() == before
    )


@pytest.mark.parametrize(
    "char", [*CONTROLS.values(), *LINE_BREAKS.values()], ids=[*CONTROLS, *LINE_BREAKS]
)
@pytest.mark.parametrize("field", ["title", "featured_image_alt"])
def test_a_control_character_in_a_posts_line_is_a_form_error_that_saves_nothing(
    desk, field, char
):
    before = row_counts()
    response = desk.post(
        "/admin/posts/post/add/", admin_post_form(**with_control(field, char))
    )
    assert refused_and_nothing_changed(response, before)


CORRECTION_ROW = {
    "updates-TOTAL_FORMS": "1",
    "updates-0-kind": "update",
    "updates-0-made_on": "2026-11-24",
}


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS)
@pytest.mark.parametrize(
    "field", ["body", "excerpt", "updates-0-note", "updates-0-wrong"]
)
def test_a_control_character_in_a_posts_text_is_a_form_error_that_saves_nothing(
    desk, field, char
):
    before = row_counts()
    response = desk.post(
        "/admin/posts/post/add/",
        admin_post_form(**CORRECTION_ROW, **with_control(field, char)),
    )
    assert refused_and_nothing_changed(response, before)


def test_a_posts_text_keeps_its_line_breaks_and_tabs(desk):
    body = "Inspectors sat in on court work.\r\n\r\n\tThey found it wanting."
    note = "Updated on publication\r\nof the council's reply."
    excerpt = "Court work in Kent.\r\nThe inspectors' verdict."
    response = desk.post(
        "/admin/posts/post/add/",
        admin_post_form(
            **CORRECTION_ROW, body=body, excerpt=excerpt, **{"updates-0-note": note}
        ),
    )
    assert response.status_code == 302, response.text[-2000:]
    post = Post.objects.get(slug="court-work-in-kent")
    assert "\tThey found it wanting." in post.body
    assert post.excerpt.splitlines() == [
        "Court work in Kent.",
        "The inspectors' verdict.",
    ]
    assert post.updates.get().note.splitlines() == [
        "Updated on publication",
        "of the council's reply.",
    ]


@pytest.mark.parametrize("char", CONTROLS.values(), ids=CONTROLS)
@pytest.mark.parametrize(
    "field",
    ["inspectorate", "title", "key_findings", "report_url", "ratings-0-standard"],
)
def test_a_control_character_in_an_inspections_facts_is_a_form_error_that_saves_nothing(
    desk, field, char
):
    inspection = InspectionFactory(title="Suffolk")
    form = admin_inspection_form_of(
        inspection,
        key_findings="Caseloads too high.\r\nRisk assessments too thin.",
        report_url="https://www.justiceinspectorates.gov.uk/hmiprobation/",
        **{
            "ratings-TOTAL_FORMS": "1",
            "ratings-0-standard": "Leadership",
            "ratings-0-rating": "good",
            "ratings-0-order": "0",
        },
    )
    form.update(with_control(field, char))
    message = REFUSED
    if field == "report_url":
        form[field] = f"https://www.justiceinspectorates.gov.uk/{char}report/"
        # Where a link has spaces: U+0085 and U+2028 are spaces to Unicode.
        message = "Enter a valid URL." if char.isspace() else REFUSED
    before = row_counts()
    response = desk.post(f"/admin/posts/inspection/{inspection.pk}/change/", form)
    assert refused_and_nothing_changed(response, before, message)
    inspection.refresh_from_db()
    assert (inspection.title, inspection.key_findings) == ("Suffolk", "")


@pytest.mark.parametrize(
    "char", ["\x1b", "\u2028", "\n"], ids=["escape", "line-separator", "line-feed"]
)
@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/posts/region/add/", {"slug": "kent"}),
        ("/admin/posts/area/add/", {"slug": "kent", "region": "{region}"}),
        ("/admin/posts/organisation/add/", {"slug": "kent", "kind": "crc"}),
        ("/admin/posts/category/add/", {"slug": "kent"}),
        ("/admin/posts/tag/add/", {"slug": "kent"}),
        ("/admin/posts/organisation/{organisation}/change/", {"slug": "kent"}),
    ],
    ids=["region", "area", "organisation", "category", "tag", "renamed"],
)
def test_a_control_character_in_a_topics_name_is_a_form_error_that_saves_nothing(
    desk, rows, path, form, char
):
    region = Area.objects.get(pk=rows["area"]).region_id
    before = row_counts()
    response = desk.post(
        path.format(**rows),
        {
            **{key: value.format(region=region) for key, value in form.items()},
            "kind": "crc",
            **with_control("name", char),
        },
    )
    assert refused_and_nothing_changed(response, before)
    assert not Organisation.objects.filter(slug="kent").exists()


@pytest.mark.parametrize(
    "char", [*CONTROLS.values(), *LINE_BREAKS.values()], ids=[*CONTROLS, *LINE_BREAKS]
)
@pytest.mark.parametrize("page", ["add", "change"])
def test_a_control_character_in_a_readers_name_at_the_desk_is_a_form_error(
    desk, rows, page, char
):
    # The subscribe form, the reader's confirmation page and the import refuse
    # such a name: typed here, it greeted the reader in their emails, and the
    # desk's export of the reader was refused by its own import.
    path = {
        "add": "/admin/newsletter/subscriber/add/",
        "change": f"/admin/newsletter/subscriber/{rows['subscriber']}/change/",
    }[page]
    before = row_counts()
    response = desk.post(
        path,
        admin_subscriber_form(email="sam@example.org", **with_control("name", char)),
    )
    assert refused_and_nothing_changed(response, before)
    assert not Subscriber.objects.filter(name__startswith="Court work").exists()


def test_a_readers_name_of_nothing_visible_is_a_form_error_at_the_desk(desk, rows):
    before = row_counts()
    response = desk.post(
        "/admin/newsletter/subscriber/add/",
        admin_subscriber_form(email="sam@example.org", name="\u200b\u3164"),
    )
    assert refused_and_nothing_changed(response, before, "shows nothing but blank")


def admin_comment_form(comment, **changes) -> dict:
    return {
        "status": comment.status,
        "name": comment.name,
        "email": comment.email,
        "website": comment.website,
        "body": comment.body,
        **changes,
    }


@pytest.mark.parametrize(
    ("field", "char"),
    [
        ("name", "\x1b"),
        ("name", "\u202e"),
        ("name", "\n"),
        ("body", "\x0b"),
        ("body", "\u2028"),
        ("body", "\u202e"),
    ],
    ids=[
        "name-escape",
        "name-right-to-left-override",
        "name-line-feed",
        "body-vertical-tab",
        "body-line-separator",
        "body-right-to-left-override",
    ],
)
def test_a_control_character_in_a_comment_edited_at_the_desk_is_a_form_error(
    desk, field, char
):
    """Refused on the reader's form, a moderator's edit let them through to the
    post page (where HTML forbids most of them) and the moderators' digest."""
    comment = CommentFactory()
    before = row_counts()

    response = desk.post(
        f"/admin/comments/comment/{comment.pk}/change/",
        admin_comment_form(comment, **with_control(field, char)),
    )

    assert refused_and_nothing_changed(response, before)
    assert getattr(type(comment).objects.get(pk=comment.pk), field) == getattr(
        comment, field
    )


def test_a_comment_edited_at_the_desk_keeps_its_line_breaks_and_tabs(desk):
    """As the reader's form stores them, line breaks as LF: the desk's textarea
    sends CR LF, as every browser's does, and kept so, the comment was counted
    long by a character a line."""
    comment = CommentFactory()

    desk.post(
        f"/admin/comments/comment/{comment.pk}/change/",
        admin_comment_form(comment, body="First line.\r\n\r\n\tSecond line."),
    )

    comment.refresh_from_db()
    assert comment.body == "First line.\n\n\tSecond line."


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"body": "\u200b\n\u2800\ufeff"}, "blank or invisible characters"),
        ({"name": "\u3164\u3164"}, "blank or invisible characters"),
        (
            {"body": "See https://a.example/ and www.b.example and http://c.ex/x."},
            "at most 2 links",
        ),
        ({"body": "a" * 5001}, "at most 5000 characters"),
    ],
    ids=["blank-comment", "blank-name", "too-many-links", "too-long"],
)
def test_a_desk_edit_the_readers_form_would_refuse_is_a_form_error_that_saves_nothing(
    desk, settings, changes, problem
):
    """The desk took what the reader's form refuses (a comment of nothing visible,
    a name that shows blank, more links than allowed): published under the
    author's approval, a blank byline or a link farm."""
    settings.COMMENTS_MAX_LINKS = 2
    comment = CommentFactory(name="Alex Officer", body="Our caseloads are high.")
    before = row_counts()

    response = desk.post(
        f"/admin/comments/comment/{comment.pk}/change/",
        admin_comment_form(comment, **changes),
    )

    assert refused_and_nothing_changed(response, before, problem)
    comment.refresh_from_db()
    assert (comment.name, comment.body) == ("Alex Officer", "Our caseloads are high.")


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/admin/newsletter/subscriber/", {"q": "\x00"}),
        ("post", "/admin/login/", {"username": "e" * 256, "password": "wrong"}),
        ("post", "/admin/posts/post/", {"action": "publish", "_selected_action": "x"}),
        ("get", "/admin/posts/post/", {"created_at__year": "0"}),
    ],
    ids=["nul", "username", "selection", "date"],
)
def test_the_desks_400_for_malformed_input_carries_every_security_header(
    desk, rows, method, path, data
):
    """Made above the CSP middleware, the desk's 400 went out without the site's
    Content-Security-Policy, which every other 400 of the site (handler400) has."""
    response = getattr(desk, method)(path, data)
    assert response.status_code == 400
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(
    ("day", "why"),
    [
        ("31/12/9999", "The date is after {next_year}: a typo in the year?"),
        ("01/01/0001", "The date is before 1990: a typo in the year?"),
    ],
)
def test_a_publication_year_typed_wrong_is_a_form_error_that_saves_nothing(
    desk, rows, day, why
):
    # Year 9999 was taken: the post list's date link to it was then a 400 (its
    # next year is past any the calendar holds). Year 1 published with a warning
    # only that the post was dated in the past.
    post = Post.objects.get(pk=rows["post"])
    response = desk.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, published_at_0=day),
    )
    assert response.status_code == 200
    next_year = timezone.localdate().year + 1
    assert response.context["adminform"].form.errors["published_at"] == [
        why.format(next_year=next_year)
    ]
    assert Post.objects.get(pk=post.pk).published_at == post.published_at
