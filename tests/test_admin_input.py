"""Malformed input to the author's desk is refused and changes nothing: a NUL
character anywhere, ids that are not ids in an action's selection, dates no
calendar holds in a changelist's lookups, and ids no column holds in a form.
Each was a 500 from Django's own admin, in ours and in third-party admins alike.
"""

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.db import connection

from posts.models import Inspection

from .factories import (
    AreaFactory,
    CommentFactory,
    InspectionFactory,
    OrganisationFactory,
    PublishedPostFactory,
    SubscriberFactory,
    TagFactory,
    UserFactory,
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
