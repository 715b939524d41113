"""Staff who may only look (issue 17, finding 3): every admin action and every
admin page that writes declares the permission it needs, so a viewer runs none.

The walk covers every registered admin and every action it has, so a new action
is covered without a new test; a new model needs one row in `one_of_everything`.
"""

from datetime import date, timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin, messages
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from newsletter.models import (
    Batch,
    Delivery,
    DigestSettings,
    Event,
    Mailing,
    Subscriber,
    Suppression,
)
from newsletter.subscriptions import address_suppress
from posts.comments.models import PostCommentSettings
from posts.models import Sponsorship

from .factories import (
    CategoryFactory,
    CommentFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
    TagFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    """A staff user with the view permission on every model, and no other."""
    user = UserFactory(username="viewer", is_superuser=False)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


@pytest.fixture
def one_of_everything(db):
    """A row of every model the admin shows, each in a state its actions change."""
    reader = SubscriberFactory(email="reader@example.org")
    Group.objects.create(name="Editors")
    PostFactory()  # a draft: "publish" would publish it
    post = PublishedPostFactory()
    InspectionFactory(organisations=[OrganisationFactory()])
    TagFactory()
    Sponsorship.objects.create(
        category=CategoryFactory(),
        name="Probation Institute",
        url="https://example.org/",
        starts_on=date(2026, 1, 1),
        ends_on=date(2026, 12, 31),
    )
    CommentFactory(post=post)  # pending
    PostCommentSettings.objects.create(post=post, comments_open=True)
    announcement = Mailing.objects.create(
        kind=Mailing.Kind.POST, post=post, status=Mailing.Status.SENDING
    )
    digest = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST,
        frequency="daily",
        period=date(2026, 11, 30),
        status=Mailing.Status.SENDING,
    )
    for mailing in (announcement, digest):
        batch = Batch.objects.create(
            mailing=mailing,
            number=1,
            status=Batch.Status.UNCERTAIN,
            size=1,
            uncertain=1,
        )
        Delivery.objects.create(
            mailing=mailing,
            batch=batch,
            subscriber=reader,
            status=Delivery.Status.UNCERTAIN,
        )
    DigestSettings.objects.create()
    address_suppress(email="gone@example.org", reason=Suppression.Reason.MANUAL)
    Event.objects.create(esp="postmark", event_id="1", event_type="delivered", raw={})
    login = {"user_agent": "curl", "ip_address": "192.0.2.1", "username": "x"}
    # Recent: axes itself clears expired ones at every login.
    AccessAttempt.objects.create(
        **login, get_data="", post_data="", failures_since_start=1
    )
    AccessLog.objects.create(**login)
    AccessFailureLog.objects.create(**login)


def every_row() -> dict:
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values())
        for model in admin.site._registry
    }


def every_action() -> list[tuple]:
    return [
        (model, name)
        for model, model_admin in admin.site._registry.items()
        for _, name, _ in model_admin._get_base_actions()
    ]


# Every action of every admin, each over all the rows of its model.
each_action = pytest.mark.parametrize(
    ("model", "action"),
    every_action(),
    ids=[f"{model._meta.label}.{name}" for model, name in every_action()],
)


def changelist_of(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def run_on_every_row(client, model, action: str, **confirmed):
    selected = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
    return client.post(
        changelist_of(model),
        {"action": action, "_selected_action": selected, "index": "0", **confirmed},
    )


@pytest.mark.usefixtures("one_of_everything")
@each_action
def test_a_viewer_can_run_no_admin_action(
    viewer, model, action, django_capture_on_commit_callbacks
):
    assert model._default_manager.exists(), "add a row of it to one_of_everything"
    before = every_row()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_on_every_row(viewer, model, action)
    # Refused: the changelist again (no action offered) or back to it with
    # "No action selected", never the action's answer (a file, a message).
    assert response.status_code in (200, 302)
    assert "Content-Disposition" not in response
    if response.status_code == 302:
        assert response["Location"] == changelist_of(model)
        told = [str(m) for m in messages.get_messages(response.wsgi_request)]
        assert told == ["No action selected."]
    assert every_row() == before
    assert callbacks == []
    assert mail.outbox == []


@pytest.mark.usefixtures("one_of_everything")
@each_action
def test_every_admin_action_answers_one_allowed_to_run_it(
    client, model, action, django_capture_on_commit_callbacks
):
    """The other side of the viewer's: each action runs (or asks to confirm) for
    an administrator, over every row, and answers; none fails."""
    client.force_login(UserFactory(username="root", is_superuser=True))
    with django_capture_on_commit_callbacks(execute=False):
        response = run_on_every_row(client, model, action)
    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response["Location"] == changelist_of(model)
        told = [str(m) for m in messages.get_messages(response.wsgi_request)]
        offered = admin.site._registry[model].get_actions(response.wsgi_request)
        # "No action selected" only where the admin offers it to no one (the
        # ledger's rows are never deleted, say).
        assert told
        assert ("No action selected." in told) == (action not in offered)


# What each role may act on from a list; every other admin's actions, run by them,
# change nothing. A Contributor acts only on their own drafts (none here).
ROLES_ACT_ON = {
    "Contributor": set(),
    "Editor": {
        "posts.Post",
        "posts.Inspection",
        "posts.Category",
        "posts.Tag",
        "posts.Region",
        "posts.Area",
        "posts.Organisation",
        "comments.Comment",
        "comments.PostCommentSettings",
        "newsletter.Mailing",
    },
}


# Each role with each action of the admins whose rows are not theirs to act on.
NOT_THEIRS = [
    (role, model, action)
    for role, theirs in ROLES_ACT_ON.items()
    for model, action in every_action()
    if model._meta.label not in theirs
]


@pytest.mark.usefixtures("one_of_everything")
@pytest.mark.parametrize(
    ("role", "model", "action"),
    NOT_THEIRS,
    ids=[f"{role}-{model._meta.label}.{action}" for role, model, action in NOT_THEIRS],
)
def test_a_role_runs_no_action_on_what_is_not_theirs_even_confirmed(
    client, role, model, action, django_capture_on_commit_callbacks
):
    """Asked of the list's POST itself, confirmation included ("post": "yes", as
    the page of "Delete selected" sends it), not of the actions it offers."""
    user = StaffFactory(username=role.lower(), role=role)
    # Their own post, published: a Contributor may no longer change or delete it.
    PublishedPostFactory(author=user)
    client.force_login(user)
    before = every_row()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = run_on_every_row(client, model, action, post="yes")
    assert response.status_code in (200, 302, 403)
    assert "Content-Disposition" not in response
    assert every_row() == before
    assert callbacks == []
    assert mail.outbox == []


def test_cleaning_up_expired_login_attempts_keeps_the_recent_ones(client):
    client.force_login(UserFactory(username="root", is_superuser=True))
    login = {"user_agent": "curl", "get_data": "", "post_data": "", "username": "x"}
    recent = AccessAttempt.objects.create(
        **login, ip_address="192.0.2.1", failures_since_start=5
    )
    expired = AccessAttempt.objects.create(
        **login, ip_address="192.0.2.2", failures_since_start=5
    )
    AccessAttempt.objects.filter(pk=expired.pk).update(
        attempt_time=timezone.now() - timedelta(days=2)
    )
    response = client.post(
        reverse("admin:axes_accessattempt_changelist"),
        {
            "action": "cleanup_expired_attempts",
            "_selected_action": [recent.pk, expired.pk],
            "index": "0",
        },
    )
    assert response.status_code == 302
    assert list(AccessAttempt.objects.values_list("pk", flat=True)) == [recent.pk]
    told = [str(m) for m in messages.get_messages(response.wsgi_request)]
    assert told == ["Cleaned up 1 expired access attempts."]


def test_a_viewer_cannot_import_subscribers(viewer):
    upload = SimpleUploadedFile(
        "readers.csv", b"email,name,consent_source,consent_date\nnew@example.org,,x,\n"
    )
    response = viewer.post(
        reverse("admin:newsletter_subscriber_import"), {"file": upload}
    )
    assert response.status_code == 403
    assert not Subscriber.objects.exists()


def test_a_viewer_cannot_send_a_test_of_a_posts_email(
    viewer, django_capture_on_commit_callbacks
):
    post = PublishedPostFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = viewer.post(reverse("admin:posts_post_email_test", args=[post.pk]))
    # 404 rather than 403: one who may not review posts sees only their own.
    assert response.status_code == 404
    assert callbacks == []
    assert mail.outbox == []


@pytest.mark.parametrize("action", ["export_csv", "download_data"])
def test_exporting_subscribers_takes_the_export_permission_not_just_change(
    client, action
):
    SubscriberFactory(email="reader@example.org")
    editor = UserFactory(username="editor", is_superuser=False)
    editor.user_permissions.set(
        Permission.objects.filter(codename__in=["view_subscriber", "change_subscriber"])
    )
    client.force_login(editor)
    export = {
        "action": action,
        "_selected_action": list(Subscriber.objects.values_list("pk", flat=True)),
        "index": "0",
    }
    changelist = reverse("admin:newsletter_subscriber_changelist")
    assert "Content-Disposition" not in client.post(changelist, export)
    editor.user_permissions.add(Permission.objects.get(codename="export_subscriber"))
    editor = type(editor).objects.get(pk=editor.pk)  # forget the cached permissions
    response = client.post(changelist, export)
    assert response["Content-Disposition"].startswith("attachment")
    assert b"reader@example.org" in b"".join(response)
