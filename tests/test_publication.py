"""The publication's pages: a post with its inspection facts, listings, inspections."""

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.views.defaults import server_error

from posts.models import (
    Inspection,
    Organisation,
    Post,
    PostUpdate,
    RelatedLink,
    StandardRating,
    Tag,
)
from posts.services import posts_announce_due

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    RegionFactory,
    TagFactory,
)
from .migrating import migrate_again_after

pytestmark = pytest.mark.django_db

SUFFOLK = "/posts/suffolk-probation-inspection-2017/"


@pytest.fixture
def demo():
    call_command("seed_demo", stdout=StringIO())


def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, url
    return response.content.decode()


def test_seed_demo_loads_every_fact_and_is_idempotent(demo):
    call_command("seed_demo", stdout=StringIO())
    assert Post.objects.published().count() == 13  # and a recent one, open for comments
    assert Inspection.objects.count() == 12
    assert StandardRating.objects.count() == 92
    assert RelatedLink.objects.count() == 24
    suffolk = Inspection.objects.get(area__slug="suffolk")
    assert suffolk.overall == "narrative"
    assert set(suffolk.organisations.values_list("slug", flat=True)) == {
        "norfolk-and-suffolk-crc",
        "nps-south-east-and-eastern",
    }
    crc = Organisation.objects.get(slug="norfolk-and-suffolk-crc")
    assert set(crc.owners.values_list("slug", flat=True)) == {
        "sodexo-justice-services",
        "nacro",
    }
    assert "Sodexo Justice Services" in suffolk.post.search_facts


def test_post_page_opens_with_the_inspection_facts_and_labelled_badges(client, demo):
    html = page(client, "/posts/hampshire-isle-of-wight-crc-good-2019/")
    facts = html.index('class="facts"')
    assert facts < html.index('class="post-body"')
    assert '<span class="badge badge-good">Good</span>' in html
    assert '<span class="badge badge-inadequate">Inadequate</span>' in html
    assert '<th scope="row">2.4 Reviewing</th>' in html
    assert 'href="/area/hampshire-and-isle-of-wight/"' in html
    assert 'href="/region/south-east/"' in html
    assert 'href="/organisation/purple-futures/"' in html  # the CRC's owner
    assert "First CRC to be rated Good overall." in html  # a key finding


def test_the_site_has_an_icon_where_browsers_ask_for_it(client, settings):
    """Every browser asks for /favicon.ico on a first visit: it was a 404, which
    filled the logs, and tabs showed no icon."""
    settings.WHITENOISE_USE_FINDERS = True  # as in development: no collectstatic
    icon = client.get("/favicon.ico", follow=True)
    html = page(client, "/")

    assert icon.status_code == 200
    assert icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)
    [linked] = re.findall(r'<link rel="icon" href="([^"]+)"', html)
    assert client.get(linked)["Content-Type"] == "image/svg+xml"


def test_an_unrated_inspection_says_so_in_words(client, demo):
    html = page(client, SUFFOLK)
    assert '<span class="badge badge-narrative">Narrative (not rated)</span>' in html


def test_post_page_has_canonical_url_social_meta_and_plain_share_links(
    client, demo, settings
):
    settings.SITE_URL = "https://onprobation.example"
    html = page(client, SUFFOLK)
    url = "https://onprobation.example" + SUFFOLK
    assert f'<link rel="canonical" href="{url}">' in html
    assert f'<meta property="og:url" content="{url}">' in html
    assert '<meta property="og:type" content="article">' in html
    assert '<meta name="twitter:card" content="summary">' in html
    encoded = "https%3A%2F%2Fonprobation.example%2Fposts%2Fsuffolk-probation-"
    assert f"https://www.linkedin.com/sharing/share-offsite/?url={encoded}" in html
    assert f"https://www.facebook.com/sharer/sharer.php?u={encoded}" in html
    assert "https://x.com/intent/post?url=" in html
    assert "mailto:?subject=Suffolk%20probation%3A%20far%20more" in html
    assert "<script" not in html


def test_post_page_shows_reading_time_categories_and_tags(client, demo):
    html = page(client, SUFFOLK)
    assert "min read" in html
    assert 'href="/category/on-probation/"' in html
    assert 'href="/tag/domestic-abuse/"' in html


def test_category_listing_shows_only_its_published_posts(client):
    category = CategoryFactory(name="Youth justice", slug="youth-justice")
    inside = PublishedPostFactory(title="Cardiff youth offending service")
    inside.categories.add(category)
    draft = PostFactory(title="A draft in the category")
    draft.categories.add(category)
    PublishedPostFactory(title="A post filed elsewhere")
    html = page(client, "/category/youth-justice/")
    assert inside.title in html
    assert draft.title not in html
    assert "A post filed elsewhere" not in html


def test_scheduled_post_appears_on_listings_only_when_due(client):
    category = CategoryFactory(slug="on-probation")
    scheduled = PublishedPostFactory(
        title="Scheduled for tomorrow",
        published_at=timezone.now() + timedelta(days=1),
        announced_at=None,
    )
    scheduled.categories.add(category)
    page(client, "/category/on-probation/", status=404)  # nothing live in it yet
    assert scheduled.title not in page(client, "/")
    Post.objects.filter(pk=scheduled.pk).update(
        published_at=timezone.now() - timedelta(minutes=1)
    )
    assert scheduled.title in page(client, "/category/on-probation/")
    # The cached home page is retired when beat announces the post (every 30 s).
    posts_announce_due()
    assert scheduled.title in page(client, "/")


def test_tag_area_region_and_archive_listings(client, demo):
    tagged = page(client, "/tag/county-lines/")
    assert "Cardiff" in tagged
    assert "Suffolk" not in tagged
    area = page(client, "/area/suffolk/")
    assert "Suffolk probation: far more needed" in area
    assert "Hertfordshire youth offending team" not in area
    # A region covers every area in it.
    region = page(client, "/region/east-of-england/")
    assert "Suffolk probation: far more needed" in region
    assert "Hertfordshire youth offending team rated Outstanding" in region
    assert "Derby City" not in region
    archive = page(client, "/archive/2023/02/")
    assert "Derby City" in archive
    assert "Suffolk probation" not in archive


def test_a_region_page_names_its_region_as_a_region(client):
    # "Inspections in the Wales" read as a slip; so did the London region's.
    InspectionFactory(
        area=AreaFactory(region=RegionFactory(name="Wales", slug="wales"))
    )
    html = page(client, "/region/wales/")
    assert "<h1>Inspections in the Wales region</h1>" in html
    assert "<title>Inspections in the Wales region — On Probation</title>" in html


def test_a_region_page_lists_its_areas_apart_each_a_link(client):
    """An area's name may hold a comma: joined by commas, the East Midlands' areas
    read "Derby, Leicester, Leicestershire and Rutland", as if Leicester were one
    of them, and none led to its area's page."""
    region = RegionFactory(name="East Midlands", slug="east-midlands")
    for name, slug in [
        ("Derby", "derby"),
        ("Leicester, Leicestershire and Rutland", "llr"),
    ]:
        InspectionFactory(area=AreaFactory(name=name, slug=slug, region=region))

    html = page(client, "/region/east-midlands/")

    assert "Areas in this region:" in html
    assert '<li><a href="/area/derby/">Derby</a></li>' in html
    llr = '<li><a href="/area/llr/">Leicester, Leicestershire and Rutland</a></li>'
    assert llr in html


def test_an_owner_page_lists_what_it_owned_each_a_link(client, demo):
    html = page(client, "/organisation/sodexo-justice-services/")

    assert "Includes inspections of:" in html
    owned = "Norfolk and Suffolk Community Rehabilitation Company"
    assert (
        f'<li><a href="/organisation/norfolk-and-suffolk-crc/">{owned}</a></li>' in html
    )


def test_an_owner_page_covers_the_organisations_it_owned(client, demo):
    html = page(client, "/organisation/sodexo-justice-services/")
    assert "Suffolk probation: far more needed" in html
    assert "Hampshire and Isle of Wight" not in html
    assert "Suffolk probation" in page(client, "/organisation/norfolk-and-suffolk-crc/")


@pytest.mark.parametrize(
    "url",
    [
        "/category/no-such-thing/",
        "/tag/no-such-thing/",
        "/area/no-such-thing/",
        "/region/no-such-thing/",
        "/organisation/no-such-thing/",
        "/archive/2023/13/",
        "/archive/2023/00/",
        "/posts/no-such-post/",
    ],
)
def test_unknown_listing_is_a_friendly_404(client, url):
    html = page(client, url, status=404)
    assert "Page not found" in html


def test_a_month_with_nothing_published_is_not_found(client):
    # Every month of years 0001 to 9999 answered 200 "Nothing published here yet":
    # endless empty pages for crawlers, where a category, tag or place without a
    # live post is a 404. A month whose only post is still to come tells nothing.
    soon = timezone.localtime() + timedelta(days=40)
    PublishedPostFactory(published_at=soon)
    PublishedPostFactory(published_at=datetime(2023, 2, 10, 9, tzinfo=UTC))

    assert client.get("/archive/2023/02/").status_code == 200
    for month in ("2023/03", "9999/12", f"{soon:%Y/%m}"):
        page(client, f"/archive/{month}/", status=404)


def test_the_500_page_renders_without_a_request_context():
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()


def test_listings_paginate_and_survive_bad_page_numbers(client):
    category = CategoryFactory(slug="comment")
    for post in PublishedPostFactory.create_batch(12):
        post.categories.add(category)
    assert "Page 2 of 2" in page(client, "/category/comment/?page=2")
    page(client, "/category/comment/?page=nonsense")
    page(client, "/category/comment/?page=999")


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ("/", "/"),
        ("/?page=1", "/"),
        ("/?page=2", "/?page=2"),
        ("/?page=nonsense", "/"),
        ("/?page=999", "/?page=2"),
        ("/category/comment/?page=999", "/category/comment/?page=2"),
        ("/category/comment/?page=0", "/category/comment/?page=2"),
        ("/category/comment/?page=x", "/category/comment/"),
    ],
)
def test_a_listing_page_names_the_page_it_shows_as_canonical(
    client, settings, asked, shown
):
    # A mistyped or out-of-range page number answers with page 1 or the last page:
    # without a canonical link, search engines found each a copy of another page.
    settings.SITE_URL = "https://onprobation.example"
    category = CategoryFactory(slug="comment")
    for post in PublishedPostFactory.create_batch(12):
        post.categories.add(category)
    html = page(client, asked)
    assert f'<link rel="canonical" href="https://onprobation.example{shown}">' in html


def meta_description(html: str) -> str:
    (content,) = re.findall(r'<meta name="description" content="([^"]*)">', html)
    return content


SITE_DESCRIPTION = (
    "Independent reporting on probation inspections in England and Wales."
)


def test_each_listing_says_what_it_lists_in_its_description(client):
    # Every listing had the site's one description: search engines showed the same
    # snippet under the home page, each area, tag, region and search.
    area = AreaFactory(
        name="Bath & <North> East Somerset", slug="bnes", region__name="South West"
    )
    post = PublishedPostFactory(title="Bath's report")
    InspectionFactory(area=area, post=post)
    post.tags.add(TagFactory(name='Women\'s "centres"', slug="womens-centres"))

    home = meta_description(page(client, "/"))
    in_area = meta_description(page(client, "/area/bnes/"))
    in_region = meta_description(page(client, area.region.get_absolute_url()))
    tagged = meta_description(page(client, "/tag/womens-centres/"))
    found = meta_description(page(client, "/search/?q=2.0"))

    assert SITE_DESCRIPTION not in (home, in_area, in_region, tagged, found)
    assert len({home, in_area, in_region, tagged, found}) == 5
    assert in_area == (
        "Posts on inspections of probation services in "
        "Bath &amp; &lt;North&gt; East Somerset, South West."
    )
    assert unescape(in_region) == (
        "Posts on inspections of probation services in the South West region."
    )
    assert unescape(tagged) == (
        'Posts on inspections of probation services tagged “Women\'s "centres"”.'
    )
    assert "“2.0”" in found


@pytest.mark.parametrize("query", ["zeppelin", "the of and", "!!!"])
def test_a_search_that_found_nothing_does_not_say_it_found_posts(client, query):
    # A shared search link's preview (its description) said posts were "found for
    # “zeppelin”, best first" over a page saying nothing was found.
    PublishedPostFactory(title="Caseloads in Kent")
    html = page(client, f"/search/?q={query}")
    assert unescape(meta_description(html)) == (
        f"No posts on inspections of probation services found for “{query}”."
    )


def test_a_listing_description_is_cut_to_what_search_engines_show(client):
    organisation = OrganisationFactory(name="A" * 100, slug="long")
    for n in range(3):
        run = OrganisationFactory(name=f"{n} " + "B" * 90)
        run.owners.add(organisation)
        InspectionFactory(organisations=[run])
    description = unescape(meta_description(page(client, "/organisation/long/")))
    assert description.startswith(f"Posts on inspections of {'A' * 100}")
    assert len(description) <= 160


def test_a_post_keeps_its_own_description(client):
    post = PublishedPostFactory(excerpt="Caseloads in Derby & Derbyshire.")
    assert meta_description(page(client, post.get_absolute_url())) == (
        "Caseloads in Derby &amp; Derbyshire."
    )


def test_a_post_without_an_excerpt_is_summed_up_by_its_opening_words(client):
    # Its description was its title again (a link preview said the title twice)
    # and the listings showed nothing under the title, where its email and the
    # digests sum it up by its opening words.
    PublishedPostFactory(
        title="Derby: caseloads",
        slug="derby-caseloads",
        excerpt="",
        body="Inspectors found caseloads *too high* in Derby & Derbyshire.",
    )
    post_page = page(client, "/posts/derby-caseloads/")
    assert meta_description(post_page) == (
        "Inspectors found caseloads too high in Derby &amp; Derbyshire."
    )
    assert (
        '<meta property="og:description" content="Inspectors found caseloads too '
        'high in Derby &amp; Derbyshire.">'
    ) in post_page
    assert "<p>Inspectors found caseloads too high in Derby &amp; Derbyshire.</p>" in (
        page(client, "/")
    )


def title(html: str) -> str:
    (text,) = re.findall(r"<title>([^<]*)</title>", html)
    return text


@pytest.mark.parametrize(
    "listing", ["/", "/category/comment/", "/inspections/", "/search/?q=caseloads"]
)
def test_a_listings_later_page_says_which_page_it_is(client, listing):
    # Page 2 had page 1's description: search engines took it for a copy of page 1.
    category = CategoryFactory(slug="comment")
    for inspection in InspectionFactory.create_batch(21):
        inspection.post.categories.add(category)

    first = page(client, listing)
    second = page(client, listing + ("&" if "?" in listing else "?") + "page=2")

    assert meta_description(second) != meta_description(first)
    assert "Page 2 of " in unescape(meta_description(second))
    assert "Page" not in unescape(meta_description(first))
    assert title(second) != title(first)
    assert "page 2" in title(second)


def assert_cut_after_a_whole_word(content: str, words: set[str]) -> None:
    shown = unescape(content)
    assert len(shown) <= 160
    assert shown.endswith("…")
    assert shown.removesuffix("…").split()[-1] in words


def test_a_long_description_is_cut_after_a_whole_word(client):
    # Cut at 160 characters whatever was there, a list of organisations ended in
    # half a name, and an excerpt in half a word.
    owner = OrganisationFactory(
        name="Sodexo Justice Services & Nacro", slug="sodexo", kind="owner"
    )
    names = [
        "Bedfordshire, Northamptonshire, Cambridgeshire & Hertfordshire CRC",
        "Kent, Surrey & Sussex CRC",
        "Norfolk & Suffolk CRC",
        "Northumbria CRC",
        "South Yorkshire CRC",
    ]
    for name in names:
        run = OrganisationFactory(name=name)
        run.owners.add(owner)
        InspectionFactory(organisations=[run])
    excerpt = (
        "Inspectors found caseloads in Derby & Derbyshire far too high, risk "
        "assessments too thin, and too few of the people on probation seen "
        "often enough by the same officer to build any working relationship."
    )
    post = PublishedPostFactory(excerpt=excerpt)

    listed = meta_description(page(client, "/organisation/sodexo/"))
    own = meta_description(page(client, post.get_absolute_url()))

    assert "&amp;" in listed and "& " not in listed
    assert_cut_after_a_whole_word(
        listed, {word.strip(",") for name in names for word in name.split()}
    )
    assert "&amp;" in own and "& " not in own
    assert_cut_after_a_whole_word(own, {word.strip(",") for word in excerpt.split()})


def test_a_long_excerpt_is_cut_the_same_way_for_social_previews(client):
    # og:description and twitter:description carried the whole excerpt, however
    # long: link previews showed a wall of text, cut by each service mid-word.
    excerpt = " ".join(
        ["Inspectors found caseloads in Derby & Derbyshire too high."] * 8
    )
    post = PublishedPostFactory(excerpt=excerpt)

    html = page(client, post.get_absolute_url())

    (og,) = re.findall(r'<meta property="og:description" content="([^"]*)">', html)
    (twitter,) = re.findall(
        r'<meta name="twitter:description" content="([^"]*)">', html
    )
    assert og == twitter == meta_description(html)
    assert_cut_after_a_whole_word(og, {word.strip(".") for word in excerpt.split()})


def test_a_long_descriptions_later_page_is_cut_to_say_which_page_it_is(client):
    owner = OrganisationFactory(
        name="Sodexo Justice Services & Nacro", slug="sodexo", kind="owner"
    )
    for n in range(11):
        run = OrganisationFactory(name=f"Kent, Surrey & Sussex CRC, area {n}")
        run.owners.add(owner)
        InspectionFactory(organisations=[run])

    shown = unescape(meta_description(page(client, "/organisation/sodexo/?page=2")))

    assert len(shown) <= 160
    assert "… Page 2 of " in shown


def test_inspections_index_filters_by_region_organisation_and_rating(client, demo):
    html = page(client, "/inspections/?region=east-midlands&rating=inadequate")
    table = html.split("<table", 1)[1]
    assert "Leicester, Leicestershire and Rutland PDU" in table
    assert "Nottingham City PDU" in table
    assert "Derby City PDU" not in table  # requires improvement
    assert "Suffolk" not in table
    html = page(client, "/inspections/?organisation=surrey-yos")
    assert html.count("Surrey Youth Offending Service</option>") == 1
    table = html.split("<table", 1)[1]
    assert table.count('class="badge') == 2
    table = page(client, "/inspections/?owner=nacro").split("<table", 1)[1]
    assert "Suffolk" in table
    assert table.count('class="badge') == 1


def test_a_filtered_inspections_page_says_what_it_lists(client, demo):
    html = page(client, "/inspections/?owner=nacro&rating=inadequate&page=1")
    chosen = "Inspections of Nacro and what it owned, rated Inadequate"
    assert f"<title>{chosen} — On Probation</title>" in html
    assert f'<p class="intro">{chosen}, newest first.</p>' in html
    assert unescape(meta_description(html)) == (
        f"{chosen} that we have reported on, newest first."
    )
    html = page(client, "/inspections/?region=east-midlands&organisation=surrey-yos")
    assert (
        "<title>Inspections of Surrey Youth Offending Service in the East Midlands"
        " region — On Probation</title>"
    ) in html
    # Unfiltered, or filtered by nothing: every inspection.
    for query in ("", "?region=&rating="):
        html = page(client, f"/inspections/{query}")
        assert "<title>Inspections — On Probation</title>" in html
        assert "Every inspection report we have written about" in html


@pytest.mark.parametrize(
    ("asked", "shown"),
    [
        ("", ""),
        ("?page=999", "?page=2"),
        ("?page=0", "?page=2"),
        ("?page=x", ""),
        # The form sent with every filter left at "Any".
        ("?region=&organisation=&owner=&rating=", ""),
        (
            "?rating=inadequate&region=coast&page=999",
            "?region=coast&rating=inadequate&page=2",
        ),
        ("?region=coast&utm_source=newsletter", "?region=coast"),
    ],
)
def test_an_inspections_page_names_the_page_it_shows_as_canonical(
    client, settings, asked, shown
):
    # As the listings: a mistyped or out-of-range page number, or the form sent
    # with nothing chosen, answered 200 with a copy of another page of the index
    # (which the sitemap lists), and nothing said which.
    settings.SITE_URL = "https://onprobation.example"
    coast = AreaFactory(region=RegionFactory(slug="coast"))
    for _ in range(21):  # two pages
        InspectionFactory(area=coast, overall="inadequate")
    (canonical,) = re.findall(
        r'<link rel="canonical" href="([^"]*)">', page(client, f"/inspections/{asked}")
    )
    assert unescape(canonical) == f"https://onprobation.example/inspections/{shown}"


@pytest.mark.parametrize(
    "query",
    [
        "region=atlantis",
        "rating=brilliant",
        "organisation=%00",
        "region=" + "x" * 5000,
        "rating=good&rating=bad",
    ],
)
def test_inspections_index_answers_a_bad_filter_with_400_and_the_form(
    client, demo, query
):
    html = page(client, f"/inspections/?{query}", status=400)
    assert "Some filters name nothing we know of" in html


@pytest.mark.parametrize("rating", ["%00", "%0B", "good%1B%07", "%E2%80%AEgood"])
def test_a_bad_filter_is_shown_back_without_control_characters(client, rating):
    # The rating's error quoted the value as sent: HTML forbids these in a page.
    InspectionFactory()
    html = page(client, f"/inspections/?rating={rating}", status=400)
    assert "Some filters name nothing we know of" in html
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\u202a-\u202e]", html)


def test_inspections_index_shows_only_inspections_of_published_posts(client):
    InspectionFactory(title="Published inspection report")
    InspectionFactory(title="Draft inspection report", post=PostFactory())
    html = page(client, "/inspections/")
    assert "Published inspection report" in html
    assert "Draft inspection report" not in html


@pytest.fixture
def embargoed():
    """An inspection of Kent CRC (owned by Seacourt Holdings), in Kent, South
    Coast, on a post in draft: its report is not out yet. Seacourt also owned
    a CRC already reported on."""
    owner = OrganisationFactory(name="Seacourt Holdings", slug="seacourt", kind="owner")
    reported = OrganisationFactory(name="Reported CRC", slug="reported-crc")
    reported.owners.add(owner)
    InspectionFactory(organisations=[reported])
    kent_crc = OrganisationFactory(name="Kent CRC", slug="kent-crc")
    kent_crc.owners.add(owner)
    kent = AreaFactory(
        name="Kent", slug="kent", region=RegionFactory(name="South Coast", slug="coast")
    )
    post = PostFactory()
    # Filed under a category and a tag made for it, which are news too.
    post.categories.add(CategoryFactory(name="Kent CRC report", slug="kent-report"))
    post.tags.add(TagFactory(name="Seacourt", slug="seacourt"))
    return InspectionFactory(post=post, area=kent, organisations=[kent_crc])


@pytest.mark.parametrize(
    "url",
    [
        "/area/kent/",
        "/region/coast/",
        "/organisation/kent-crc/",
        "/category/kent-report/",
        "/category/kent-report/feed/",
        "/tag/seacourt/",
    ],
)
def test_a_place_or_provider_only_a_post_not_yet_live_is_about_is_not_found(
    client, embargoed, url
):
    # Its page would tell which inspection's report is next, as would a
    # scheduled post's before its time.
    page(client, url, status=404)
    Post.objects.filter(pk=embargoed.post_id).update(
        status=Post.Status.PUBLISHED, published_at=timezone.now() + timedelta(days=1)
    )
    page(client, url, status=404)
    Post.objects.filter(pk=embargoed.post_id).update(published_at=timezone.now())
    assert embargoed.post.title in page(client, url)


def test_listings_do_not_name_what_only_a_post_not_yet_live_is_about(client, embargoed):
    owner = page(client, "/organisation/seacourt/")
    assert "Reported CRC" in owner
    assert "Kent CRC" not in owner
    InspectionFactory(area=AreaFactory(name="Surrey", region=embargoed.area.region))
    region = page(client, "/region/coast/")
    assert ">Surrey</a></li>" in region
    assert "Kent" not in region


def test_the_inspections_filters_offer_only_what_a_live_post_is_about(
    client, embargoed
):
    html = page(client, "/inspections/")
    assert "Seacourt Holdings" in html
    for name in ["Kent CRC", "South Coast"]:
        assert name not in html
    for query in ["organisation=kent-crc", "region=coast"]:
        page(client, f"/inspections/?{query}", status=400)


def test_inspections_index_puts_a_report_not_yet_dated_after_the_dated_ones(client):
    # PostgreSQL sorts an empty date first when newest come first: an inspection
    # whose report date the author had not yet given headed the table.
    InspectionFactory(title="Undated report")
    InspectionFactory(title="Newest report", published_on=date(2024, 6, 27))
    InspectionFactory(title="Older report", published_on=date(2019, 5, 8))
    titles = [i.title for i in client.get("/inspections/").context["page"]]
    assert titles == ["Newest report", "Older report", "Undated report"]


def test_inspections_index_reads_no_posts_text_in_a_fixed_number_of_queries(
    client, settings
):
    # Each row links to its post, and read the post's whole body, its HTML and
    # its search columns to do it: a page of long reports read them all.
    settings.PAGE_CACHE_SECONDS = 0
    for n in range(3):
        InspectionFactory(
            title=f"Report {n}",
            post=PublishedPostFactory(slug=f"report-{n}", body="Findings. " * 5000),
        )
    page(client, "/inspections/")  # per-process caches filled
    with CaptureQueriesContext(connection) as queries:
        html = page(client, "/inspections/")
    for n in range(3):
        assert f'<a href="/posts/report-{n}/">Report {n}</a>' in html
    # The count, the page, its organisations, and the filters' three lists.
    assert len(queries) == 6
    text_columns = ["body", "body_html", "search_facts", "search_text", "search_vector"]
    read = [
        column
        for column in text_columns
        for query in queries
        if f'"posts_post"."{column}"' in query["sql"]
    ]
    assert read == []


@pytest.fixture
def add_posts():
    """Adds posts with everything a page shows (categories, tags, inspections,
    ratings, a related link) to the same listings, so that a page can
    be read at one size and again at a larger one."""
    area = AreaFactory()
    category = CategoryFactory(slug="on-probation")
    owner = OrganisationFactory(kind="owner", slug="owner")
    crc = OrganisationFactory(slug="crc")
    crc.owners.add(owner)
    tag = Tag.objects.create(name="Staffing", slug="staffing")

    def add(count: int) -> None:
        for _ in range(count):
            inspection = InspectionFactory(area=area, organisations=[crc])
            StandardRating.objects.create(
                inspection=inspection, standard="2.1 Assessment", rating="good"
            )
            inspection.post.categories.add(category)
            inspection.post.tags.add(tag)
        # One link of the author's, whatever the size: with three, the page would
        # skip the suggestions and their queries.
        first, second = Post.objects.order_by("id")[:2]
        RelatedLink.objects.get_or_create(
            from_post=first, to_post=second, type="see_also"
        )

    return add


PAGES = [
    "/",
    "/posts/{first}/",
    "/category/on-probation/",
    "/tag/staffing/",
    "/area/{area}/",
    "/region/{region}/",
    "/organisation/owner/",
    "/organisation/crc/",
    "/archive/{year}/{month}/",
    "/inspections/",
    "/inspections/?rating=requires_improvement&organisation=crc",
    "/search/?q=inspection+probation",
]


def queries_for_page(client, url: str) -> tuple[int, str]:
    # Read twice: the first read may fill per-process caches (content types, the
    # URL resolver); the second is what every later reader costs.
    page(client, url)
    with CaptureQueriesContext(connection) as queries:
        html = page(client, url)
    return len(queries), html


@pytest.mark.parametrize("url", PAGES)
def test_pages_make_the_same_number_of_queries_at_2_and_at_20_posts(
    client, settings, add_posts, url
):
    # The page cache would answer the second read with no query at all.
    settings.PAGE_CACHE_SECONDS = 0
    add_posts(2)
    first = Post.objects.order_by("id").first()
    inspection = first.inspections.select_related("area__region").get()
    today = timezone.localdate()
    url = url.format(
        first=first.slug,
        area=inspection.area.slug,
        region=inspection.area.region.slug,
        year=today.year,
        month=f"{today.month:02d}",
    )
    at_2, html = queries_for_page(client, url)
    assert first.title in html or inspection.title in html

    add_posts(18)
    at_20, html = queries_for_page(client, url)
    newest = Post.objects.published().first()
    assert newest.title in html or newest.inspections.get().title in html
    assert at_20 == at_2 <= 20


def test_each_fact_box_of_a_post_on_two_inspections_has_a_heading_of_its_own(client):
    # Both were headed "The inspection": a screen reader's list of headings read
    # the same words twice, and nothing told the boxes apart but their order.
    post = PublishedPostFactory()
    InspectionFactory(post=post, title="Cardiff YOS", published_on=date(2024, 2, 5))
    InspectionFactory(post=post, title="Surrey YOS", published_on=date(2024, 1, 5))
    html = page(client, post.get_absolute_url())
    headings = re.findall(r'<section class="facts"[^>]*>\s*<h2[^>]*>([^<]*)</h2>', html)
    assert headings == ["Inspection 1 of 2", "Inspection 2 of 2"]

    alone = InspectionFactory(title="Derby City PDU").post
    html = page(client, alone.get_absolute_url())
    headings = re.findall(r'<section class="facts"[^>]*>\s*<h2[^>]*>([^<]*)</h2>', html)
    assert headings == ["The inspection"]


def test_dates_in_the_fact_box_are_machine_readable(client):
    inspection = InspectionFactory(
        fieldwork_start=date(2024, 3, 4),
        fieldwork_end=date(2024, 3, 15),
        published_on=date(2024, 6, 27),
    )
    html = page(client, inspection.post.get_absolute_url())
    assert '<time datetime="2024-03-04">4 March 2024</time>' in html
    assert '<time datetime="2024-06-27">27 June 2024</time>' in html


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        # Known only by its last day: the fact box said nothing of the fieldwork.
        (None, date(2024, 3, 15), 'ended <time datetime="2024-03-15">'),
        # Only its first day: it read as fieldwork of one day.
        (date(2024, 3, 4), None, 'began <time datetime="2024-03-04">'),
        (date(2024, 3, 4), date(2024, 3, 15), "2024</time> to <time datetime="),
    ],
)
def test_the_fact_box_says_what_it_knows_of_the_fieldwork(client, start, end, shown):
    inspection = InspectionFactory(fieldwork_start=start, fieldwork_end=end)
    html = page(client, inspection.post.get_absolute_url())
    assert "<dt>Fieldwork</dt>" in html
    assert shown in html


def test_post_shows_its_dated_updates_and_corrections_in_order(client):
    post = PublishedPostFactory()
    PostUpdate.objects.create(
        post=post,
        kind="update",
        made_on=date(2019, 9, 2),
        note="Inspectors returned in May 2019.",
    )
    PostUpdate.objects.create(
        post=post,
        kind="correction",
        made_on=date(2017, 6, 20),
        note="The report was published on 15 June, not 16 June. <b>Sorry</b>.",
    )
    html = page(client, post.get_absolute_url())
    correction = html.index('Correction, <time datetime="2017-06-20">20 June 2017')
    update = html.index('Update, <time datetime="2019-09-02">2 September 2019')
    assert correction < update
    assert "&lt;b&gt;Sorry&lt;/b&gt;" in html


RATINGS_TABLE = (
    "| Standard | Leadership | Overall |\n|---|---|---|\n| Rating | Good | Good |\n"
)


def test_a_table_scrolls_in_a_box_of_its_own_that_the_keyboard_reaches(client):
    """A table of many columns was as wide as its words: on a phone the whole post
    zoomed out to fit it (tests/test_browser.py sees it scroll instead)."""
    post = PublishedPostFactory(body=RATINGS_TABLE + '\n<div class="x">Note</div>')
    page = client.get(post.get_absolute_url()).text
    assert (
        '<div class="table-box" role="region" aria-label="Table" tabindex="0">'
        "<table>" in page
    )
    assert page.count('class="table-box"') == 1  # an author's own div is dropped


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_have_their_tables_boxed_after_the_deploy(client):
    post = PublishedPostFactory(body=RATINGS_TABLE)
    stored = post.body_html.replace(
        '<div class="table-box" role="region" aria-label="Table" tabindex="0">', ""
    ).replace("</table></div>", "</table>")
    Post.objects.filter(pk=post.pk).update(body_html=stored)
    migrate_again_after("posts", "0012_keep_struck_out_words")
    assert 'class="table-box"' in client.get(post.get_absolute_url()).text
