"""Related posts: curated links, symmetric types, suggestions, the admin's one click."""

from datetime import timedelta

import pytest

from posts.models import Post, RelatedLink
from posts.related import MAX_CANDIDATES, related_posts, suggestions

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    UserFactory,
    admin_post_form_of,
)

pytestmark = pytest.mark.django_db


def titles(items) -> list[str]:
    return [item.post.title for item in items]


def link(from_post: Post, to_post: Post, type: str = "see_also", order: int = 0):
    return RelatedLink.objects.create(
        from_post=from_post, to_post=to_post, type=type, order=order
    )


def test_curated_links_come_first_in_the_authors_order():
    post = PublishedPostFactory()
    first, second = (
        PublishedPostFactory(title="First"),
        PublishedPostFactory(title="Second"),
    )
    link(post, second, order=2)
    link(post, first, order=1)
    assert titles(related_posts(post)) == ["First", "Second"]


def test_a_symmetric_link_shows_on_both_posts_and_a_follow_up_only_on_its_own():
    original, same_theme, follow_up = PublishedPostFactory.create_batch(3)
    link(original, same_theme, type="same_theme")
    link(original, follow_up, type="follow_up")
    assert [r.post for r in related_posts(same_theme)] == [original]
    assert original not in [r.post for r in related_posts(follow_up)]
    labels = {r.post: r.label for r in related_posts(original)}
    assert labels == {same_theme: "Same theme", follow_up: "Follow-up"}


def test_suggestions_fill_the_box_up_to_three_after_curated_links():
    area = AreaFactory()
    post = InspectionFactory(area=area).post
    curated = PublishedPostFactory(title="Curated")
    link(post, curated)
    for n in range(4):
        InspectionFactory(area=area, post=PublishedPostFactory(title=f"Same area {n}"))
    box = related_posts(post)
    assert len(box) == 3
    assert box[0].post == curated and box[0].curated
    assert [item.curated for item in box[1:]] == [False, False]


def test_never_the_post_itself_nor_an_unpublished_post():
    area = AreaFactory()
    post = InspectionFactory(area=area).post
    draft = PostFactory(title="Draft in the same area")
    InspectionFactory(area=area, post=draft)
    link(post, draft)
    scheduled = PublishedPostFactory(
        title="Scheduled", published_at=post.published_at.replace(year=2999)
    )
    InspectionFactory(area=area, post=scheduled)
    shown = [r.post for r in related_posts(post)]
    assert post not in shown
    assert draft not in shown
    assert scheduled not in shown
    assert post not in [s.post for s in suggestions(post, limit=50)]


def test_suggestions_rank_a_shared_organisation_above_a_shared_region():
    area = AreaFactory()
    crc = OrganisationFactory()
    post = InspectionFactory(area=area, organisations=[crc]).post
    same_region = InspectionFactory(
        area=AreaFactory(region=area.region), post=PublishedPostFactory(title="Region")
    ).post
    same_crc = InspectionFactory(
        area=AreaFactory(), organisations=[crc], post=PublishedPostFactory(title="CRC")
    ).post
    unrelated = InspectionFactory(post=PublishedPostFactory(title="Elsewhere")).post
    ranked = suggestions(post)
    assert [s.post for s in ranked] == [same_crc, same_region]
    assert unrelated not in [s.post for s in ranked]
    assert any(reason.startswith("organisation:") for reason in ranked[0].reasons)


def test_equal_suggestions_put_the_newer_post_first_every_time():
    area = AreaFactory()
    post = InspectionFactory(area=area).post
    older = InspectionFactory(
        area=area,
        post=PublishedPostFactory(
            title="Older", published_at=post.published_at - timedelta(days=2)
        ),
    ).post
    newer = InspectionFactory(
        area=area,
        post=PublishedPostFactory(
            title="Newer", published_at=post.published_at - timedelta(days=1)
        ),
    ).post
    assert [s.post for s in suggestions(post)] == [newer, older]
    assert [s.post for s in suggestions(post)] == [newer, older]


def test_an_owner_links_the_companies_it_owned():
    owner = OrganisationFactory(kind="owner", name="Sodexo Justice Services")
    norfolk, other = OrganisationFactory(), OrganisationFactory()
    norfolk.owners.add(owner)
    other.owners.add(owner)
    post = InspectionFactory(organisations=[norfolk]).post
    sibling = InspectionFactory(organisations=[other]).post
    [suggestion] = suggestions(post)
    assert suggestion.post == sibling
    assert "owner: Sodexo Justice Services" in suggestion.reasons


def test_shared_category_and_words_count_too():
    category = CategoryFactory()
    post = PublishedPostFactory(title="Unpaid work in the community")
    post.categories.add(category)
    close = PublishedPostFactory(title="Unpaid work placements")
    close.categories.add(category)
    far = PublishedPostFactory(title="Leadership changes")
    far.categories.add(category)
    assert titles(suggestions(post)) == ["Unpaid work placements", "Leadership changes"]


def test_an_earlier_post_on_the_same_provider_is_suggested_behind_a_busy_category():
    # Given an archive where every post is filed under one category, with more
    # posts since the provider's earlier inspection than suggestions are scored from
    category = CategoryFactory()
    crc = OrganisationFactory()
    post = InspectionFactory(organisations=[crc]).post
    earlier = InspectionFactory(
        organisations=[crc],
        post=PublishedPostFactory(
            title="The CRC's inspection three years ago",
            published_at=post.published_at - timedelta(days=3 * 365),
        ),
    ).post
    since = Post.objects.bulk_create(
        PostFactory.build(
            status=Post.Status.PUBLISHED,
            published_at=post.published_at - timedelta(days=days),
        )
        for days in range(1, MAX_CANDIDATES + 2)
    )
    category.posts.add(post, earlier, *since)
    # When the post's page shows its related posts, then the same provider's
    # earlier inspection comes first, as its score says.
    assert titles(related_posts(post))[0] == "The CRC's inspection three years ago"


def test_admin_change_page_suggests_and_adds_a_related_post_in_one_click(client):
    client.force_login(UserFactory())
    area = AreaFactory()
    post = InspectionFactory(area=area).post
    neighbour = InspectionFactory(
        area=area, post=PublishedPostFactory(title="Neighbour")
    ).post
    html = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "Neighbour" in html
    assert f'name="to_post" value="{neighbour.pk}"' in html
    response = client.post(
        f"/admin/posts/post/{post.pk}/add-related/", {"to_post": neighbour.pk}
    )
    assert response.status_code == 302
    created = RelatedLink.objects.get(from_post=post)
    assert (created.to_post, created.type) == (neighbour, "same_area")
    # Once linked, it is no longer suggested; adding it twice makes no second link.
    html = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert f'name="to_post" value="{neighbour.pk}"' not in html
    client.post(f"/admin/posts/post/{post.pk}/add-related/", {"to_post": neighbour.pk})
    assert RelatedLink.objects.filter(from_post=post).count() == 1


def test_adding_a_related_post_linked_already_says_so(client):
    # The second "Add" (a page opened before the first, a double click) said
    # "Linked … as …", though it linked nothing.
    client.force_login(UserFactory())
    post = PostFactory()
    neighbour = PublishedPostFactory(title="Neighbour")
    url = f"/admin/posts/post/{post.pk}/add-related/"
    first = client.post(url, {"to_post": neighbour.pk}, follow=True)
    again = client.post(url, {"to_post": neighbour.pk}, follow=True)
    assert "Linked “Neighbour” as same theme." in first.content.decode()
    assert [str(m) for m in again.context["messages"]] == [
        "“Neighbour” was linked already, as same theme: nothing changed."
    ]
    assert RelatedLink.objects.filter(from_post=post).count() == 1


@pytest.mark.parametrize("bad", ["", "nonsense", "999999", "self", "draft"])
def test_admin_add_related_refuses_what_cannot_be_linked(client, bad):
    client.force_login(UserFactory())
    post = PublishedPostFactory()
    value = {"self": post.pk, "draft": PostFactory().pk}.get(bad, bad)
    response = client.post(
        f"/admin/posts/post/{post.pk}/add-related/", {"to_post": value}, follow=True
    )
    assert response.status_code == 200
    assert "That post cannot be linked." in response.content.decode()
    assert not RelatedLink.objects.exists()


def test_the_related_posts_form_refuses_a_link_from_a_post_to_itself(client):
    # The inline leaves its own post out of the model's checks, so the database's
    # constraint was the first to see it, and the desk answered with a 500.
    client.force_login(StaffFactory(role="Editor"))
    post = PublishedPostFactory()
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            **{
                "links_out-TOTAL_FORMS": "1",
                "links_out-0-to_post": str(post.pk),
                "links_out-0-type": "see_also",
                "links_out-0-order": "0",
            },
        ),
    )
    assert response.status_code == 200
    assert "A post cannot be related to itself." in response.content.decode()
    assert not RelatedLink.objects.exists()


@pytest.mark.parametrize(
    "written",
    [" {} ", "+{}", "0_{}", "arabic-indic digits"],
    ids=["spaces", "sign", "underscore", "arabic-indic"],
)
def test_admin_add_related_reads_the_post_only_from_its_id_as_written(client, written):
    # int() also reads spaces, a sign, underscores and other scripts' digits: such
    # a value linked a post the page never offered.
    client.force_login(UserFactory())
    post, other = PublishedPostFactory(), PublishedPostFactory()
    value = (
        "".join(chr(0x660 + int(digit)) for digit in str(other.pk))
        if written == "arabic-indic digits"
        else written.format(other.pk)
    )
    response = client.post(
        f"/admin/posts/post/{post.pk}/add-related/", {"to_post": value}, follow=True
    )
    assert "That post cannot be linked." in response.content.decode()
    assert not RelatedLink.objects.exists()
