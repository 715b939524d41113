"""The nights London's clocks change: on the last Sunday of October 01:00-02:00
happens twice (BST, then GMT); on the last Sunday of March it never happens.
What the desk does with a time in those hours."""

from datetime import UTC, datetime

import pytest

from .factories import (
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    admin_post_form_of,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "published_at",
    [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 01:30, BST
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # the second 01:30, GMT
    ],
)
def test_a_post_published_in_the_hour_that_happens_twice_can_still_be_edited(
    client, published_at
):
    # Given a post published at 01:30 on 25 October 2026 (by "publish now" at
    # that hour), which the desk shows as 01:30 either way
    client.force_login(StaffFactory(role="Editor"))
    post = PublishedPostFactory(published_at=published_at)

    # When the editor corrects its title and saves the page as it was shown
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, title="Kent: court work under strain"),
    )

    # Then it saves, and the post keeps the moment it was published
    assert response.status_code == 302, response.context["adminform"].form.errors
    post.refresh_from_db()
    assert post.title == "Kent: court work under strain"
    assert post.published_at == published_at


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (
            "29/03/2026",
            "01:30 does not happen on that day: the clocks go forward. "
            "Choose another time.",
        ),
        (
            "25/10/2026",
            "01:30 happens twice on that day: the clocks go back. Choose another time.",
        ),
    ],
    ids=["never-happens", "happens-twice"],
)
def test_a_time_typed_in_a_changing_hour_is_refused_saying_why(client, day, why):
    # Django's own message ("couldn't be interpreted in time zone
    # Europe/London; it may be ambiguous or it may not exist") left the author
    # to work out which, and what to type instead.
    client.force_login(StaffFactory(role="Editor"))
    post = PostFactory()
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            status="published",
            published_at_0=day,
            published_at_1="01:30:00",
            publish_despite_warnings="on",
        ),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["published_at"] == [why]
    post.refresh_from_db()
    assert post.status == "draft"
