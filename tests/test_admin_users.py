"""The desk's staff accounts: made, given a role, stopped and removed by an
Administrator, without losing the record of who did what at the desk."""

from html import unescape
from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client

from newsletter.models import Mailing
from posts.comments.models import Comment
from posts.models import Post, PostEvent

from .factories import CommentFactory, PostFactory, StaffFactory, desk
from .test_roles import daily_digest, user_form

pytestmark = pytest.mark.django_db

User = get_user_model()
USERS = "/admin/auth/user/"


@pytest.fixture
def administrator():
    return StaffFactory(username="ada", role="Administrator")


def changed_a_post_at_the_desk(user) -> None:
    """What the admin records when `user` saves a post's page."""
    post = PostFactory()
    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=Post.objects.filter(pk=post.pk),
        action_flag=CHANGE,
        change_message="Changed title.",
        single_object=True,
    )


def delete_selected(client: Client, *users):
    return client.post(
        USERS,
        {
            "action": "delete_selected",
            "_selected_action": [user.pk for user in users],
            "post": "yes",
        },
    )


def test_an_account_with_desk_history_is_kept_and_the_desk_says_to_deactivate_it(
    administrator,
):
    # Deleting the account deleted, with it, the admin's record of every post
    # its holder published, changed or deleted.
    departed = StaffFactory(username="eden", role="Editor")
    changed_a_post_at_the_desk(departed)

    response = desk(administrator).post(
        f"{USERS}{departed.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 200
    assert "deactivate" in unescape(response.text)
    assert User.objects.filter(pk=departed.pk).exists()
    assert LogEntry.objects.filter(user=departed).count() == 1


def test_deleting_selected_accounts_keeps_them_all_if_one_has_desk_history(
    administrator,
):
    departed = StaffFactory(username="eden", role="Editor")
    changed_a_post_at_the_desk(departed)
    never_used = StaffFactory(username="casey", role="Contributor")

    response = delete_selected(desk(administrator), never_used, departed)

    assert response.status_code == 200
    assert "deactivate" in unescape(response.text)
    assert User.objects.filter(pk__in=[departed.pk, never_used.pk]).count() == 2
    assert LogEntry.objects.filter(user=departed).count() == 1


def test_an_account_that_published_is_kept_with_the_posts_history(administrator):
    # A post's history names who published it; deleted, it named nobody.
    departed = StaffFactory(username="eden", role="Editor")
    post = PostFactory()
    PostEvent.objects.create(post=post, kind=PostEvent.Kind.PUBLISHED, by=departed)

    response = desk(administrator).post(
        f"{USERS}{departed.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 200
    assert post.events.get().by == departed


def test_an_account_with_no_history_is_deleted(administrator):
    never_used = StaffFactory(username="casey", role="Contributor")
    also_never_used = StaffFactory(username="cole", role="Contributor")
    client = desk(administrator)

    response = client.post(f"{USERS}{never_used.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    response = delete_selected(client, also_never_used)
    assert response.status_code == 302

    assert not User.objects.filter(username__in=["casey", "cole"]).exists()


def test_an_account_with_desk_history_is_kept_when_deleted_from_the_shell():
    # A script or `manage.py shell` deleted it all the same, and with it the
    # admin's record of what its holder did and who published their posts.
    departed = StaffFactory(username="eden", role="Editor")
    changed_a_post_at_the_desk(departed)
    post = PostFactory()
    PostEvent.objects.create(post=post, kind=PostEvent.Kind.PUBLISHED, by=departed)

    # Each in its own transaction, as in the shell: the refusal rolls it back.
    said = "2 entries of what eden did at the desk"
    with pytest.raises(ProtectedError, match=said), transaction.atomic():
        User.objects.get(pk=departed.pk).delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        User.objects.filter(username__in=["eden"]).delete()

    assert User.objects.filter(pk=departed.pk).exists()
    assert LogEntry.objects.filter(user=departed).count() == 1
    assert post.events.get().by == departed


def test_an_account_with_no_history_is_deleted_from_the_shell():
    StaffFactory(username="casey", role="Contributor")

    User.objects.get(username="casey").delete()

    assert not User.objects.filter(username="casey").exists()


def test_the_delete_page_of_an_account_with_history_says_why_before_asking(
    administrator,
):
    departed = StaffFactory(username="eden", role="Editor")
    changed_a_post_at_the_desk(departed)

    page = unescape(desk(administrator).get(f"{USERS}{departed.pk}/delete/").text)

    assert "1 entry of what eden did at the desk" in page
    assert "untick “Active”" in page
    assert 'name="post"' not in page  # no button to delete it anyway


def test_who_paused_resumed_and_cancelled_a_mailing_is_in_its_history(administrator):
    # The controls recorded nothing: a mailing's history named nobody, and
    # the account of the Editor who cancelled it was deleted as one unused.
    editor = StaffFactory(username="eden", role="Editor")
    digest = daily_digest(23, status=Mailing.Status.SENDING)
    client = desk(editor)
    for action in ("pause", "resume", "cancel"):
        response = client.post(
            "/admin/newsletter/mailing/",
            # Cancelling asks first: answered yes.
            {"action": action, "_selected_action": [digest.pk], "post": "yes"},
        )
        assert response.status_code == 302

    history = LogEntry.objects.filter(object_id=str(digest.pk)).order_by("pk")
    assert [(entry.user, entry.get_change_message()) for entry in history] == [
        (editor, "Paused."),
        (editor, "Resumed."),
        (editor, "Cancelled."),
    ]
    response = desk(administrator).post(f"{USERS}{editor.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200
    assert User.objects.filter(pk=editor.pk).exists()


def test_who_approved_marked_as_spam_and_closed_comments_is_in_their_history(
    administrator,
):
    # The moderation list's actions recorded nothing: a comment's history named
    # nobody, and the account of the Editor who moderated was deleted as unused.
    editor = StaffFactory(username="eden", role="Editor")
    waiting, spam, already_approved = (
        CommentFactory(),
        CommentFactory(),
        CommentFactory(status=Comment.Status.APPROVED),
    )
    client = desk(editor)
    for action, comments in (
        ("approve", [waiting, already_approved]),
        ("mark_spam", [spam]),
        ("close_comments_on_posts", [waiting]),
    ):
        response = client.post(
            "/admin/comments/comment/?status=all",
            {"action": action, "_selected_action": [c.pk for c in comments]},
        )
        assert response.status_code == 302

    history = LogEntry.objects.order_by("pk")
    assert [
        (entry.user, entry.get_edited_object(), entry.get_change_message())
        for entry in history
    ] == [
        (editor, waiting, "Approved."),
        (editor, spam, "Marked as spam."),
        (editor, waiting.post.comment_settings, "Closed comments."),
    ]
    response = desk(administrator).post(f"{USERS}{editor.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200
    assert User.objects.filter(pk=editor.pk).exists()


def test_the_administrator_role_is_neither_renamed_changed_nor_deleted(administrator):
    # Renamed or deleted, `manage.py ensure_admin` failed at the next deploy
    # (it gives the site's owner the role by name), and a release's new
    # permissions went to no one; one permission taken from it, no Administrator
    # could give a role any more (only one holding every permission does).
    role = Group.objects.get(name="Administrator")
    holds = set(role.permissions.all())
    client = desk(administrator)
    page = f"/admin/auth/group/{role.pk}"

    assert client.get(f"{page}/change/").status_code == 200  # to read
    renamed = {"name": "Admins", "permissions": [next(iter(holds)).pk]}
    assert client.post(f"{page}/change/", renamed).status_code == 403
    assert client.post(f"{page}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [role.pk], "post": "yes"},
    )
    assert response.status_code == 403

    role.refresh_from_db()
    assert (role.name, set(role.permissions.all())) == ("Administrator", holds)
    call_command("ensure_admin", stdout=StringIO())
    assert User.objects.get(username="admin").groups.filter(pk=role.pk).exists()


def test_an_administrator_does_not_lock_themselves_out_on_their_own_page(
    administrator,
):
    # Unticking their own Active, Staff status or role took effect at once: out
    # of the desk, with nobody there to bring them back.
    response = desk(administrator).post(
        f"{USERS}{administrator.pk}/change/",
        user_form(administrator, is_active="", is_staff="", groups=[], first_name="A"),
    )

    assert response.status_code == 302
    administrator.refresh_from_db()
    assert administrator.first_name == "A"
    assert (administrator.is_active, administrator.is_staff) == (True, True)
    assert administrator.groups.filter(name="Administrator").exists()
    assert desk(administrator).get(USERS).status_code == 200


def test_the_list_of_accounts_shows_which_are_deactivated(administrator):
    # Deactivating is how a departed colleague's account is kept, and the list
    # showed them as any other member of the desk.
    departed = StaffFactory(username="eden", role="Editor", is_active=False)

    page = desk(administrator).get(USERS).text

    assert "column-is_active" in page
    row = next(row for row in page.split("<tr") if f"/{departed.pk}/change/" in row)
    assert 'alt="False"' in row


def test_the_delete_page_of_an_author_says_their_posts_lose_the_byline(
    administrator,
):
    # Their posts stay, naming no author: the page listed nothing of them.
    author = StaffFactory(username="casey", role="Contributor")
    PostFactory(title="A report", author=author)

    page = unescape(desk(administrator).get(f"{USERS}{author.pk}/delete/").text)

    assert "The byline of the post “A report” (the post stays)" in page
