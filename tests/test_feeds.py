"""Syndication: RSS 2.0 and Atom feeds, per category too, and the sitemap."""

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import feedparser
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.http import http_date

from posts import services
from posts.models import Post, PostUpdate, Sponsorship, StandardRating

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    admin_post_form_of,
    png,
)
from .migrating import migrate_again_after
from .test_sponsorship import sponsor_words

pytestmark = pytest.mark.django_db

SITEMAP_NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = "https://onprobation.example"


@pytest.fixture
def posts():
    older = PublishedPostFactory(
        title="Older post", published_at=timezone.now() - timedelta(days=2)
    )
    newer = PublishedPostFactory(
        title="Newer post & <friends>", published_at=timezone.now() - timedelta(days=1)
    )
    PostFactory(title="Draft post")
    PublishedPostFactory(
        title="Scheduled post", published_at=timezone.now() + timedelta(days=1)
    )
    return older, newer


def parse(client, url: str, content_type: str):
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


@pytest.mark.parametrize(
    ("url", "content_type", "version"),
    [
        ("/feed/", "application/rss+xml", "rss20"),
        ("/feed/atom/", "application/atom+xml", "atom10"),
    ],
)
def test_site_feeds_parse_and_list_published_posts_newest_first(
    client, posts, url, content_type, version
):
    feed = parse(client, url, content_type)
    assert feed.version == version
    assert [entry.title for entry in feed.entries] == [
        "Newer post & <friends>",
        "Older post",
    ]
    assert feed.entries[0].link == (
        f"https://onprobation.example/posts/{posts[1].slug}/"
    )
    assert '<h2 id="user-content-findings">Findings</h2>' in feed.entries[0].summary


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/feed/", "application/rss+xml"),
        ("/feed/atom/", "application/atom+xml"),
        ("/category/courts/feed/", "application/rss+xml"),
    ],
)
def test_control_characters_the_desk_saved_are_left_out_of_the_feeds(
    client, url, content_type
):
    # Text pasted from a word processor brings vertical tabs and form feeds, and
    # raw HTML may write &#1;; the desk saves them, XML 1.0 cannot hold them, and
    # every feed that listed the post was a 500 until it dropped off.
    courts = CategoryFactory(name="Courts\x0c", slug="courts")
    post = PublishedPostFactory(
        title="Court\x0bwork", body="Pasted\x0b text.\n\n<p>Raw &#1; HTML</p>"
    )
    post.categories.add(courts)

    feed = parse(client, url, content_type)

    assert feed.entries[0].title == "Courtwork"
    assert "Pasted text." in feed.entries[0].description
    assert "Raw  HTML" in feed.entries[0].description


@pytest.mark.parametrize(
    ("url", "content_type"),
    [("/feed/", "application/rss+xml"), ("/feed/atom/", "application/atom+xml")],
)
def test_a_posts_entry_keeps_its_id_when_the_author_changes_its_slug(
    client, url, content_type
):
    # The id was the post's address: a feed reader took the post under its new
    # slug for a new post and showed it to its readers a second time.
    post = PublishedPostFactory(slug="suffolk-inspection")
    before = parse(client, url, content_type).entries[0]

    post.slug = "suffolk-inspection-good"
    services.post_save_from_desk(post=post, previous_status=post.status, by=None)
    after = parse(client, url, content_type).entries[0]

    assert after.link == "https://onprobation.example/posts/suffolk-inspection-good/"
    assert after.id == before.id
    assert "suffolk-inspection" not in after.id
    assert not after.guidislink


def test_the_atom_feed_names_an_author_for_posts_without_one(client):
    # RFC 4287: an entry needs an author, its own or the feed's; a post whose
    # author's account is gone has none, and validators refused the feed.
    PublishedPostFactory(author=None)
    response = client.get("/feed/atom/")
    atom = {"a": "http://www.w3.org/2005/Atom"}
    root = ElementTree.fromstring(response.content)  # noqa: S314 (our own response)
    entry = root.find("a:entry", atom)
    assert entry.find("a:author", atom) is None
    assert root.findtext("a:author/a:name", namespaces=atom) == "On Probation"


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/", "/category/courts/feed/"])
def test_a_feed_reader_asking_again_gets_304_until_the_feed_changes(client, url):
    # The feeds said Last-Modified and no Cache-Control, and answered every poll
    # with the whole feed: readers' caches could keep it by heuristic, a post
    # taken down included, and a poll saved nothing.
    courts = CategoryFactory(slug="courts")
    PublishedPostFactory().categories.add(courts)
    first = client.get(url)
    assert "no-cache" in first["Cache-Control"]

    again = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert again.status_code == 304
    assert again.content == b""

    PublishedPostFactory(title="Courts in Kent").categories.add(courts)
    changed = client.get(url, headers={"If-None-Match": first["ETag"]})
    assert changed.status_code == 200
    assert "Courts in Kent" in changed.content.decode()


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/", "/category/courts/feed/"])
def test_a_feed_readers_head_request_gets_the_headers_of_its_get(client, url):
    # HEAD was answered without the ETag a GET gets: a feed reader asking "has it
    # changed?" with a HEAD could neither learn the ETag nor be told 304.
    courts = CategoryFactory(slug="courts")
    PublishedPostFactory().categories.add(courts)
    got = client.get(url)

    head = client.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head["ETag"] == got["ETag"]
    assert head["Cache-Control"] == got["Cache-Control"]
    assert head.has_header("Last-Modified") == got.has_header("Last-Modified")

    unchanged = client.head(url, headers={"If-None-Match": got["ETag"]})
    assert unchanged.status_code == 304
    PublishedPostFactory(title="Courts in Kent").categories.add(courts)
    changed = client.head(url, headers={"If-None-Match": got["ETag"]})
    assert changed.status_code == 200
    assert changed["ETag"] != got["ETag"]


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/", "/category/courts/feed/"])
def test_a_reader_sending_only_if_modified_since_sees_a_post_taken_down(client, url):
    # Last-Modified was the newest entry's date: taking the newest post down moved
    # it back to the one before, and a reader asking "modified since my last
    # poll?" was told 304 and showed the taken-down post for ever.
    courts = CategoryFactory(slug="courts")
    days_ago = {"Older post": 2, "Taken down": 1}
    for title, days in days_ago.items():
        PublishedPostFactory(title=title).categories.add(courts)
        Post.objects.filter(title=title).update(
            published_at=timezone.now() - timedelta(days=days),
            updated_at=timezone.now() - timedelta(days=days),
        )
    first = client.get(url)
    assert "Taken down" in first.content.decode()
    polled = http_date()  # not before any Last-Modified the feed could have said

    post = Post.objects.get(title="Taken down")
    post.status = Post.Status.DRAFT
    services.post_save_from_desk(post=post, previous_status="published", by=None)
    after = client.get(url, headers={"If-Modified-Since": polled})

    assert after.status_code == 200
    assert "Taken down" not in after.content.decode()
    assert "Older post" in after.content.decode()
    # An unchanged feed is still a 304 to a reader sending its ETag.
    again = client.get(url, headers={"If-None-Match": after["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/"])
def test_a_correction_shows_in_the_posts_feed_entry(client, url):
    # The entry was the body alone: a feed reader went on showing what the post
    # got wrong, and a reader polling with the ETag was told nothing had changed.
    post = PublishedPostFactory(body="Inspectors met **12 officers**.")
    before = client.get(url)
    PostUpdate.objects.create(
        post=post,
        kind=PostUpdate.Kind.CORRECTION,
        wrong="12 officers",
        right="21 officers",
        note="We misread the table in the report.",
    )

    assert client.get(url, headers={"If-None-Match": before["ETag"]}).status_code == 200
    entry = parse(client, url, "application/").entries[0]
    assert "Correction" in entry.summary
    assert "it should say <q>21 officers</q>" in entry.summary
    assert "We misread the table in the report." in entry.summary
    assert "Inspectors met <strong>12 officers</strong>." in entry.summary


def test_a_desk_save_that_changes_nothing_leaves_the_entry_not_updated(client):
    # Its <updated> was the post's last save: a save at the desk that changed
    # nothing a reader sees had feed readers mark the post as updated. It moves
    # when the post gets an update or a correction, as the page shows one.
    went_live = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    post = PublishedPostFactory(published_at=went_live, announced_at=went_live)
    client.force_login(StaffFactory(role="Editor"))
    saved = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(post, publish_despite_warnings="on"),
    )
    assert saved.status_code == 302
    client.logout()

    entry = parse(client, "/feed/atom/", "application/atom+xml").entries[0]
    assert entry.updated_parsed == went_live.utctimetuple()

    correction = PostUpdate.objects.create(
        post=post, kind=PostUpdate.Kind.CORRECTION, note="We misread the table."
    )
    entry = parse(client, "/feed/atom/", "application/atom+xml").entries[0]
    assert entry.updated_parsed == correction.saved_at.utctimetuple()


@pytest.mark.parametrize(
    ("url", "content"),
    [
        ("/feed/", "channel/item/description"),
        ("/feed/atom/", "{http://www.w3.org/2005/Atom}entry/"
         "{http://www.w3.org/2005/Atom}summary"),
        ("/category/derby/feed/", "channel/item/description"),
    ],
)  # fmt: skip
def test_a_posts_links_and_images_are_whole_in_its_feed_entry(client, url, content):
    # A feed reader has no page to resolve "/media/…" against: the post's own
    # images (the editor inserts them so) and links to the site showed broken.
    post = PublishedPostFactory(
        slug="derby",
        body="![A chart](/media/posts/2024/chart.png) [Kent](../kent/) "
        "[the findings](#findings) [the report](https://example.gov.uk/r) "
        # A browser reads a backslash as a slash: another site's address.
        '<a href="/\\example.org/">elsewhere</a>',
    )
    post.categories.add(CategoryFactory(slug="derby"))
    feed = ElementTree.fromstring(client.get(url).content)  # noqa: S314 (our own)
    entry = feed.find(content).text
    assert 'src="https://onprobation.example/media/posts/2024/chart.png"' in entry
    assert 'href="https://onprobation.example/posts/kent/"' in entry
    findings = "https://onprobation.example/posts/derby/#user-content-findings"
    assert f'href="{findings}"' in entry
    assert 'href="https://example.gov.uk/r"' in entry
    assert 'href="https://example.org/"' in entry


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/"])
def test_a_posts_feed_entry_opens_with_its_inspections_facts(client, url):
    """As the post's page and its email open: the rating, each standard's, the
    key findings. The entry was the body alone, and a feed reader learnt how the
    service was rated only if the body happened to say it."""
    post = PublishedPostFactory(slug="derby", body="Our view of it.")
    inspection = InspectionFactory(
        post=post,
        title="An inspection of probation services in: Derby City PDU",
        area=AreaFactory(name="Derby", slug="derby-area"),
        overall="inadequate",
        key_findings="Caseloads were too high.",
    )
    StandardRating.objects.create(
        inspection=inspection, standard="2.1 Assessment", rating="good"
    )

    entry = parse(client, url, "application/").entries[0]
    facts, found, _ = entry.summary.partition("Our view of it.")
    assert found  # the body follows the facts
    assert "An inspection of probation services in: Derby City PDU" in facts
    assert "Inadequate" in facts
    assert "2.1 Assessment" in facts and "Good" in facts
    assert "Caseloads were too high." in facts
    # Its links whole, as the body's: a feed reader has no page to resolve them.
    assert 'href="https://onprobation.example/area/derby-area/"' in facts


@pytest.mark.usefixtures("media")
@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/"])
def test_a_posts_feed_entry_shows_its_featured_image_as_its_page_does(client, url):
    # The page opens with the post's picture; the entry left it out, and a feed
    # reader showed the post without it (and with no picture to list it by).
    post = PublishedPostFactory(
        body="Our view of it.",
        featured_image=png(800, 450),
        featured_image_alt="Derby's probation office & car park",
    )
    InspectionFactory(post=post, title="Derby City PDU")

    entry = parse(client, url, "application/").entries[0]
    image = (  # as feedparser writes it: attributes in alphabetical order
        '<img alt="Derby&#x27;s probation office &amp; car park" height="450" '
        f'src="https://onprobation.example{post.featured_image.url}" width="800" />'
    )
    assert image in entry.summary
    # Where the page shows it: above the inspection's facts and the body.
    assert entry.summary.index(image) < entry.summary.index("Derby City PDU")


def test_category_feed_lists_only_that_categorys_posts(client, posts):
    category = CategoryFactory(name="Youth justice", slug="youth-justice")
    posts[0].categories.add(category)
    feed = parse(client, "/category/youth-justice/feed/", "application/rss+xml")
    assert [entry.title for entry in feed.entries] == ["Older post"]
    assert feed.entries[0].tags[0].term == "Youth justice"
    assert feed.feed.title == "Youth justice — On Probation"


def test_unknown_category_feed_is_404(client):
    assert client.get("/category/nothing-here/feed/").status_code == 404


def test_pages_advertise_the_feeds(client, posts):
    html = client.get("/").content.decode()
    assert 'type="application/rss+xml"' in html
    assert 'href="/feed/atom/"' in html


def test_a_category_page_offers_its_own_feed_first(client, posts):
    # Its feed came after the site's two: a reader giving their feed reader the
    # category's address (which takes the first a page names) got every post.
    posts[0].categories.add(CategoryFactory(name="Youth justice", slug="youth"))
    html = client.get("/category/youth/").content.decode()
    first = re.search(r'<link rel="alternate"[^>]*>', html)[0]
    assert 'href="/category/youth/feed/"' in first
    assert 'title="Youth justice — On Probation"' in first


def test_feed_makes_a_bounded_number_of_queries(client, django_assert_max_num_queries):
    category = CategoryFactory()
    for post in PublishedPostFactory.create_batch(25):
        post.categories.add(category)
        # Each with the facts its entry opens with.
        inspection = InspectionFactory(post=post, organisations=[OrganisationFactory()])
        StandardRating.objects.create(
            inspection=inspection, standard="Leadership", rating="good"
        )
    # The posts, then each of what they show, for them all: categories, updates,
    # inspections (with their places), organisations, owners, ratings and sponsors.
    with django_assert_max_num_queries(8):
        feed = parse(client, "/feed/", "application/rss+xml")
    assert len(feed.entries) == 20  # a full feed, each entry with its category
    assert all(entry.tags[0].term == category.name for entry in feed.entries)


def test_sitemap_lists_published_posts_and_listing_pages_on_site_url(client, posts):
    inspection = InspectionFactory()
    category = CategoryFactory(slug="on-probation")
    posts[0].categories.add(category)
    CategoryFactory(slug="empty-category")
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    locations = {
        element.text
        # Our own response, not untrusted input.
        for element in ElementTree.fromstring(response.content).findall(  # noqa: S314
            "s:url/s:loc", SITEMAP_NS
        )
    }
    base = "https://onprobation.example"
    assert f"{base}/" in locations
    assert f"{base}/posts/{posts[0].slug}/" in locations
    assert f"{base}/category/on-probation/" in locations
    assert f"{base}/area/{inspection.area.slug}/" in locations
    assert f"{base}/region/{inspection.area.region.slug}/" in locations
    assert f"{base}/category/empty-category/" not in locations
    assert not any("draft" in location for location in locations)
    assert len([loc for loc in locations if "/posts/" in loc]) == 3


def test_sitemap_lists_the_months_of_the_archive_with_a_published_post(client):
    # The home page links to each month's archive; the sitemap, which says it
    # lists every listing page with something published, left them out.
    PublishedPostFactory(published_at=datetime(2025, 3, 14, 12, tzinfo=UTC))
    PostFactory(  # a draft once scheduled keeps its time
        status=Post.Status.DRAFT, published_at=datetime(2024, 1, 9, 12, tzinfo=UTC)
    )
    PublishedPostFactory(
        published_at=timezone.now() + timedelta(days=40)  # scheduled, not yet live
    )
    root = ElementTree.fromstring(client.get("/sitemap.xml").content)  # noqa: S314
    archive = sorted(
        element.text
        for element in root.findall("s:url/s:loc", SITEMAP_NS)
        if "/archive/" in element.text
    )
    assert archive == ["https://onprobation.example/archive/2025/03/"]
    assert client.get("/archive/2025/03/").status_code == 200


def test_a_post_dated_before_the_year_1000_leaves_the_sitemap_answering(client):
    # A year typed short at the desk ("0999" for 1999) is a date the desk takes
    # and publishes under: the home page linked to its month as /archive/0999/07/,
    # and the sitemap, writing the year as 999, found no such address (a 500 for
    # every crawler until the author found the post).
    PublishedPostFactory(published_at=datetime(999, 7, 1, 12, tzinfo=UTC))

    response = client.get("/sitemap.xml")

    assert response.status_code == 200
    root = ElementTree.fromstring(response.content)  # noqa: S314
    locations = [element.text for element in root.findall("s:url/s:loc", SITEMAP_NS)]
    assert "https://onprobation.example/archive/0999/07/" in locations
    assert 'href="/archive/0999/07/"' in client.get("/").content.decode()
    assert client.get("/archive/0999/07/").status_code == 200


def sitemap_lastmods(client) -> dict[str, str | None]:
    """Each location in the sitemap, with its lastmod (None when it has none)."""
    # Our own response, not untrusted input.
    root = ElementTree.fromstring(client.get("/sitemap.xml").content)  # noqa: S314
    return {
        url.findtext("s:loc", namespaces=SITEMAP_NS): url.findtext(
            "s:lastmod", namespaces=SITEMAP_NS
        )
        for url in root.findall("s:url", SITEMAP_NS)
    }


@pytest.mark.parametrize("how", ["taken down", "deleted"])
def test_the_home_and_inspections_pages_lastmod_never_goes_back(client, how):
    # Their lastmod was the newest live post's: taking that post down or
    # deleting it moved it back 30 days, to the post before, and a crawler that
    # read the home page with the post on it had no cause to read it again.
    month_ago = timezone.now() - timedelta(days=30)
    older = PublishedPostFactory(published_at=month_ago)
    Post.objects.filter(pk=older.pk).update(updated_at=month_ago)
    newest = PublishedPostFactory(published_at=timezone.now() - timedelta(minutes=1))
    pages = ["https://onprobation.example/", "https://onprobation.example/inspections/"]
    before = sitemap_lastmods(client)

    if how == "deleted":
        newest.delete()
    else:
        newest.status = Post.Status.DRAFT
        services.post_save_from_desk(post=newest, previous_status="published", by=None)
    after = sitemap_lastmods(client)

    for page in pages:
        assert page in after
        assert after[page] is None or after[page] >= before[page]


def test_sitemap_lastmod_of_a_scheduled_post_is_when_it_went_live(client):
    # Written and scheduled on Monday, live on Friday: the sitemap said Monday,
    # which crawlers then had no cause to read again.
    went_live = timezone.now() - timedelta(minutes=1)
    post = PublishedPostFactory(published_at=went_live)
    Post.objects.filter(pk=post.pk).update(updated_at=went_live - timedelta(days=4))

    lastmods = sitemap_lastmods(client)

    day = f"{timezone.localdate(went_live):%Y-%m-%d}"
    assert lastmods[f"https://onprobation.example/posts/{post.slug}/"] == day


def test_robots_txt_points_crawlers_at_the_sitemap(client):
    response = client.get("/robots.txt")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain"
    assert "public" in response["Cache-Control"]
    assert "max-age=86400" in response["Cache-Control"]
    assert "Sitemap: https://onprobation.example/sitemap.xml\n" in response.text


@pytest.mark.parametrize(
    "url_name",
    [
        "newsletter:confirm",
        "newsletter:preferences",
        "newsletter:preferences_topics",
        "newsletter:one_time",
        "newsletter:change_email",
        "newsletter:unsubscribe",
        "newsletter:click",
        "comments:confirm",
        "newsletter:comment_data",
    ],
)
def test_robots_txt_keeps_crawlers_from_readers_token_links(client, url_name):
    disallowed = [
        line.removeprefix("Disallow: ")
        for line in client.get("/robots.txt").text.splitlines()
        if line.startswith("Disallow: ")
    ]
    token_url = reverse(url_name, kwargs={"token": "a-readers-token"})
    assert any(token_url.startswith(path) for path in disallowed), token_url
    assert {"/admin/", "/outbox/"} <= set(disallowed)


def test_a_tables_alignment_reaches_a_feed_reader(client):
    # Figures right-aligned in the Markdown (|--:|) came out left-aligned: the
    # sanitiser dropped the alignment, and a feed reader has no site stylesheet.
    PublishedPostFactory(
        body="| Area | Caseload | Rating |\n|:--|--:|:-:|\n| Kent | 48 | Good |"
    )
    entry = parse(client, "/feed/", "application/rss+xml").entries[0]
    # feedparser sanitises as feed readers do: what survives it, they show.
    assert '<td style="text-align: right;">48</td>' in entry.description
    assert '<th style="text-align: center;">Rating</th>' in entry.description


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_align_their_tables_after_the_deploy(client):
    post = PublishedPostFactory(body="| Area | Caseload |\n|:--|--:|\n| Kent | 48 |")
    Post.objects.filter(pk=post.pk).update(  # as it was stored
        body_html="<table><tr><th>Area</th><th>Caseload</th></tr>"
        "<tr><td>Kent</td><td>48</td></tr></table>"
    )
    migrate_again_after("posts", "0019_search_the_words_pages_show")
    entry = parse(client, "/feed/", "application/rss+xml").entries[0]
    assert '<td style="text-align: right;">48</td>' in entry.description


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/feed/", "application/rss+xml"),
        ("/feed/atom/", "application/atom+xml"),
        ("/category/youth/feed/", "application/rss+xml"),
    ],
)
def test_a_sponsored_posts_feed_entry_names_its_sponsors_as_its_page_does(
    client, url, content_type
):
    # A feed reader read a sponsored post whole, and no word said it was
    # sponsored, nor by whom: sponsored content says so wherever it is shown.
    today = timezone.localdate()
    youth = CategoryFactory(name="Youth & justice", slug="youth")
    post = PublishedPostFactory(title="Sponsored")
    post.categories.add(youth)
    PublishedPostFactory(title="Not sponsored")
    name = 'Smith & "Sons" <Training>'
    Sponsorship.objects.create(
        category=youth,
        name=name,
        url="https://sponsor.example/?from=feed&to=readers",
        logo="sponsors/smith.png",
        starts_on=today,
        ends_on=today,
    )

    response = client.get(url)
    entries = {e.title: e for e in parse(client, url, content_type).entries}

    words = f"Youth & justice posts sponsored by {name}. "
    words += "Sponsors have no say in what we write."
    page = client.get(post.get_absolute_url()).content.decode()
    assert sponsor_words(entries["Sponsored"].summary) == sponsor_words(page) == [words]
    summary = entries["Sponsored"].summary
    assert 'href="https://sponsor.example/?from=feed&amp;to=readers"' in summary
    # Its logo's address whole: a feed reader has no page to resolve it against.
    assert 'src="https://onprobation.example/media/sponsors/smith.png"' in summary
    # Escaped once for HTML, and once more for the XML that carries it.
    assert "Smith &amp;amp; &amp;quot;Sons&amp;quot; &amp;lt;Training" in (
        response.content.decode()
    )
    assert "sponsored" not in entries.get("Not sponsored", {"summary": ""})["summary"]


def test_a_feed_reads_its_posts_sponsors_in_one_statement(client):
    # Each of a feed's sponsored posts names its sponsors, read for them all at
    # once: a feed of twenty sponsored posts makes no more statements than one.
    today = timezone.localdate()

    def add_sponsored_posts(count: int) -> None:
        for _ in range(count):
            category = CategoryFactory()
            PublishedPostFactory().categories.add(category)
            Sponsorship.objects.create(
                category=category,
                name=f"{category.name} Ltd",
                url="https://sponsor.example/",
                starts_on=today,
                ends_on=today,
            )

    def statements_and_entries():
        with CaptureQueriesContext(connection) as statements:
            feed = parse(client, "/feed/", "application/rss+xml")
        return len(statements), feed.entries

    add_sponsored_posts(1)
    one, entries = statements_and_entries()
    add_sponsored_posts(19)
    twenty, entries = statements_and_entries()

    assert len(entries) == 20
    for entry in entries:
        [category] = [tag.term for tag in entry.tags]
        assert sponsor_words(entry.summary) == [
            f"{category} posts sponsored by {category} Ltd. "
            "Sponsors have no say in what we write."
        ]
    assert twenty == one


@pytest.mark.parametrize("url", ["/feed/", "/feed/atom/", "/category/youth/feed/"])
@pytest.mark.parametrize("edit", ["sponsor renamed", "category renamed"])
def test_a_feed_reader_polling_sees_a_sponsorship_edited_since(client, url, edit):
    # Sponsored content names its sponsor wherever it is shown: a reader polling
    # with its validators must not be told 304 and keep the old sponsor line.
    today = timezone.localdate()
    youth = CategoryFactory(name="Youth justice", slug="youth")
    PublishedPostFactory(title="Sponsored").categories.add(youth)
    deal = Sponsorship.objects.create(
        category=youth,
        name="Acme Ltd",
        url="https://sponsor.example/",
        starts_on=today,
        ends_on=today,
    )
    first = client.get(url)
    polled = {"If-None-Match": first["ETag"], "If-Modified-Since": http_date()}
    assert client.get(url, headers=polled).status_code == 304

    if edit == "sponsor renamed":
        deal.name = "Bolt plc"
        deal.save()
        line = "Youth justice posts sponsored by Bolt plc. "
    else:
        youth.name = "Youth courts"
        youth.save()
        line = "Youth courts posts sponsored by Acme Ltd. "
    after = client.get(url, headers=polled)

    assert after.status_code == 200
    [entry] = feedparser.parse(after.content).entries
    assert sponsor_words(entry.summary) == [
        line + "Sponsors have no say in what we write."
    ]
    unchanged = {"If-None-Match": after["ETag"], "If-Modified-Since": http_date()}
    assert client.get(url, headers=unchanged).status_code == 304
