"""Checks before publishing: each check, the link checker's guard against reaching
our own network (SSRF), and the admin that shows the checks and enforces them."""

import base64
import datetime
import http.server
import ipaddress
import random
import re
import socket
import threading
import time

import pytest
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from posts import checks, links
from posts.links import address_is_public, post_links_check, url_check
from posts.models import FormerSlug, LinkCheck, Post
from posts.services import post_links_check_rung
from posts.tasks import check_post_links

from .factories import (
    AreaFactory,
    CategoryFactory,
    CommentFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    RegionFactory,
    TagFactory,
    UserFactory,
    admin_post_form,
)

pytestmark = pytest.mark.django_db

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


def messages_of(problems: list[checks.Problem]) -> str:
    return " | ".join(problem.message for problem in problems)


# The checks, one by one ------------------------------------------------------------


def test_an_image_without_alt_text_is_a_warning():
    post = PostFactory(
        body="![](https://example.org/a.png) ![Staff](https://e.org/b.png)"
    )
    [problem] = checks.check_alt_text(post)
    assert problem.level == checks.Level.WARNING
    assert problem.message.startswith("1 image in the body has no alt text ")


def test_the_alt_text_warning_says_which_images():
    # Of an inspection's charts, which: the author had to look through them all.
    post = PostFactory(
        body="![Caseloads](/media/posts/a.png) ![](/media/posts/b%20c.png)\n\n"
        '<img src="/media/posts/d.png?w=1&amp;h=2" alt=" ">'
    )
    [problem] = checks.check_alt_text(post)
    assert problem.message == (
        "2 images in the body have no alt text (/media/posts/b%20c.png, "
        "/media/posts/d.png?w=1&h=2): describe each one, as in "
        "![what it shows](address)."
    )
    assert (
        checks.check_alt_text(PostFactory(body="![Staff](https://e.org/b.png)")) == []
    )


@pytest.mark.parametrize(
    "link",
    [
        "[click](javascript:alert(1))",
        "[click](JavaScript:alert(1))",
        "![pixel](data:image/png;base64,AAAA)",
        "<file:///etc/passwd>",
        "[ref][r]\n\n[r]: vbscript:msgbox",
        '<a href="java&#09;script:alert(1)">click</a>',
        "<p><a href='data:text/html,hi'>x</a></p>",
        # A space inside the quotes: the value was not read at all.
        '<a href=" javascript:alert(1)">click</a>',
    ],
)
def test_a_link_with_a_scheme_other_than_http_blocks_publishing(link):
    # The sanitiser removes these from the page; the author must still hear of it,
    # since the reader would get a dead link.
    [problem] = checks.check_link_schemes(PostFactory(body=f"See {link}."))
    assert problem.blocking
    assert "http(s)" in problem.message


def test_web_mail_and_relative_links_pass_the_scheme_check():
    body = "[a](https://e.org) [b](http://e.org) [c](mailto:x@e.org) [d](/x/) [e](#f)"
    assert checks.check_link_schemes(PostFactory(body=body)) == []


def without_https(post: Post) -> list[checks.Problem]:
    return [p for p in checks.post_problems(post) if "no https://" in p.message]


@pytest.mark.parametrize(
    "link",
    [
        "[the report](www.justiceinspectorates.gov.uk/hmiprobation/kent/)",
        "[the report](justiceinspectorates.gov.uk/report.pdf)",
        "![A chart of caseloads](chart.png)",
        '<a href="www.gov.uk/probation">GOV.UK</a>',
    ],
)
def test_a_link_without_its_https_is_a_warning(link):
    # A browser reads it as a page under the post's own address (the page's
    # /posts/<slug>/www.gov.uk/…, and the email's the same), where there is none.
    [problem] = without_https(PostFactory(body=f"See {link}."))
    assert problem.level == checks.Level.WARNING


def test_a_link_to_a_heading_without_its_hash_says_to_write_the_hash():
    # Told to write it whole (https://…), the author of "[the findings](findings)"
    # was sent looking for a web address that was never meant.
    post = PostFactory(body="See [the findings](findings).\n\n## Findings\n\nHigh.")
    [problem] = without_https(post)
    assert problem.message == (
        "The link \u201cfindings\u201d has no https:// in front, so readers' browsers "
        "look for it under this post's address, where there is no page: to go to "
        "the heading \u201cFindings\u201d, write #findings."
    )


def test_an_email_address_without_its_mailto_says_to_write_the_mailto():
    # Told to write it whole (https://…), the author of "[the press office]
    # (press@justice.gov.uk)" was sent looking for a web address.
    post = PostFactory(body="Ask [the press office](press@justice.gov.uk).")
    [problem] = without_https(post)
    assert problem.message == (
        "The link \u201cpress@justice.gov.uk\u201d has no https:// in front, so "
        "readers' browsers look for it under this post's address, where there is "
        "no page: to write to that address, write mailto:press@justice.gov.uk."
    )


def test_links_from_the_post_to_its_own_parts_and_other_pages_are_no_warning():
    body = (
        "[a](https://e.org) [b](mailto:x@e.org) [c](/area/kent/) [d](#findings) "
        "[e](?page=2) [f](../kent/) ![g](/media/posts/chart.png)"
    )
    assert without_https(PostFactory(body=body)) == []


REPORT = (
    "The [findings](#findings) come first; see [the board's view](#the-board).[^1]"
    "\n\n## Findings\n\nCaseloads were high.\n\n## Officers\u2019 caseloads\n\n"
    "Over 50.[^2]\n\n[^1]: HMI Probation, Kent report, 2024.\n"
    "[^3]: Inspectors' interviews."
)


def test_a_link_to_no_heading_of_the_post_is_a_warning_naming_those_it_has():
    """ "[the board's view](#the-board)" (a typo, or a heading renamed since)
    goes nowhere on the page and lands on the page's top from the email."""
    problems = checks.check_links_within_the_post(PostFactory(body=REPORT))
    [nowhere] = [p for p in problems if "#the-board" in p.message]
    assert nowhere.level == checks.Level.WARNING
    assert nowhere.message == (
        "The link \u201cthe board\u2019s view\u201d goes to #the-board, which is no "
        "heading of this post, so it takes readers nowhere: this post's "
        "headings are \u201cFindings\u201d (#findings) and \u201cOfficers\u2019 "
        "caseloads\u201d (#officers-caseloads)."
    )
    assert not any("#findings," in p.message for p in problems)


def test_a_footnote_cited_but_never_written_or_written_but_never_cited_is_a_warning():
    # "[^2]" reaches readers as typed; "[^3]: …" not at all.
    problems = checks.check_links_within_the_post(PostFactory(body=REPORT))
    assert [p.message for p in problems if "[^" in p.message] == [
        "The note [^2] is cited but never written, so readers see \u201c[^2]\u201d as "
        "typed: write it below the text, as \u201c[^2]: the source\u201d.",
        "The note [^3] is written but cited nowhere, so readers never see it: cite "
        "it in the text as \u201c[^3]\u201d, or delete it.",
    ]
    assert all(p.level == checks.Level.WARNING for p in problems)


def test_an_escaped_citation_is_the_authors_own_text_and_no_warning():
    # "\[^2]" is how an author writes "[^2]" as text: readers see it as meant.
    post = PostFactory(
        body="Cited.[^1] Written as text: \\[^2] and [^3\\].\n\n[^1]: Kent."
    )
    assert checks.check_links_within_the_post(post) == []


def test_a_footnote_written_twice_is_a_warning():
    # The footnote plugin shows the last "[^1]: …" alone: the first source was
    # lost to readers, and the page gave no sign of it.
    post = PostFactory(
        body="Cited.[^1] Again.[^2]\n\n[^1]: Kent report.\n[^2]: Survey.\n\n"
        "[^1]: Surrey report.\n\n```\n[^2]: in code, as typed\n```"
    )
    assert [p.message for p in checks.check_links_within_the_post(post)] == [
        "The note [^1] is written more than once, and readers see only the last: "
        "give each its own label (“[^1]”, “[^1b]”) and cite each, or delete the "
        "one not wanted."
    ]


def test_links_to_the_posts_headings_notes_and_own_ids_are_no_warning():
    body = (
        "[a](#findings) [b](#officers-caseloads) [c](#findings-1) [d](#kent) "
        "[e](#canfyddiadau-ŵyr) [f](https://e.org/#x) [g](/area/kent/#top) "
        "[h](#) Cited.[^1] Twice.[^1] Code: `[^9]`\n\n"
        "# Findings\n\n## Findings\n\n## Officers\u2019 *caseloads*\n\n"
        "## Canfyddiadau ŵyr\n\n"
        '<a id="kent">Kent</a>\n\n    [^8] in a code block\n\n'
        "[^1]: The source, see [the top](#findings)."
    )
    assert checks.check_links_within_the_post(PostFactory(body=body)) == []


def test_a_post_without_headings_says_so_of_its_link_to_nowhere():
    [problem] = checks.check_links_within_the_post(
        PostFactory(body="Back to [the top](#top).")
    )
    assert problem.message.endswith("this post has no headings.")


# Links to the site's own pages: a reader following one to a page that is not
# there, or to a post not live, gets "Page not found".


def site_links(post: Post) -> list[str]:
    return [problem.message for problem in checks.check_links_to_the_site(post)]


def no_page(link: str) -> str:
    return (
        f"The link \u201c{link}\u201d leads to nothing on this site, so readers get "
        f"\u201cPage not found\u201d or a broken image: check its address."
    )


def post_not_live(link: str) -> str:
    return (
        f"The link \u201c{link}\u201d goes to a post readers cannot see (a draft, "
        f"in review, scheduled or taken off the site), so they get \u201cPage not "
        f"found\u201d: publish that post first, or link elsewhere."
    )


def test_a_link_to_a_post_readers_cannot_see_or_to_no_page_is_a_warning(
    settings, media
):
    settings.SITE_URL = "https://probation.example"
    PostFactory(slug="kent-draft")
    PostFactory(slug="surrey-in-review", status=Post.Status.REVIEW)
    PostFactory(
        slug="sussex-scheduled",
        status=Post.Status.PUBLISHED,
        published_at=timezone.now() + datetime.timedelta(days=1),
    )
    body = (
        "[a](/posts/no-such-post/) [b](/posts/kent-draft/) "
        "[c](/posts/surrey-in-review/#findings) "
        "[d](https://probation.example/posts/sussex-scheduled/) "
        "[e](https://PROBATION.example:443/posts/nowhere/?utm_source=x) "
        "[f](/no-such-page/) ![g](/media/posts/missing.png) "
        '<img alt="h" src="/static/no-such.css"> [a again](/posts/no-such-post/)'
    )
    post = PostFactory(body=body)
    assert site_links(post) == [
        no_page("/posts/no-such-post/"),
        post_not_live("/posts/kent-draft/"),
        post_not_live("/posts/surrey-in-review/#findings"),
        post_not_live("https://probation.example/posts/sussex-scheduled/"),
        no_page("https://PROBATION.example:443/posts/nowhere/?utm_source=x"),
        no_page("/no-such-page/"),
        no_page("/media/posts/missing.png"),
        no_page("/static/no-such.css"),
    ]
    assert all(
        problem.level == checks.Level.WARNING
        for problem in checks.check_links_to_the_site(post)
    )
    assert set(site_links(post)) <= set(
        messages_of(checks.post_problems(post)).split(" | ")
    )


def test_a_link_to_a_post_taken_off_the_site_is_a_warning():
    taken_down = PublishedPostFactory(slug="kent")
    taken_down.status = Post.Status.DRAFT
    taken_down.save()
    assert site_links(PostFactory(body="[Kent](/posts/kent/)")) == [
        post_not_live("/posts/kent/")
    ]


def listing_not_live(link: str) -> str:
    return (
        f"The link \u201c{link}\u201d goes to a listing with no published post yet, "
        f"so readers get \u201cPage not found\u201d: publish a post filed under it "
        f"first, or link elsewhere."
    )


def answered_not_found(client, links: list[str]) -> list[str]:
    """Those of the links the site answers "Page not found", as a reader's browser
    follows them (APPEND_SLASH's redirect too)."""
    return [link for link in links if client.get(link, follow=True).status_code == 404]


@pytest.fixture
def kent():
    """A live post of March 2019 filed under a category, a tag, an area, its region
    and an organisation, each of which has its page."""
    kent = PublishedPostFactory(
        slug="kent",
        published_at=datetime.datetime(2019, 3, 5, 12, tzinfo=datetime.UTC),
    )
    InspectionFactory(
        post=kent,
        area=AreaFactory(slug="kent", region=RegionFactory(slug="south-east")),
        organisations=[OrganisationFactory(slug="kss-crc")],
    )
    kent.categories.add(CategoryFactory(slug="youth-justice"))
    kent.tags.add(TagFactory(slug="caseloads"))
    return kent


def test_a_link_to_a_listing_of_nothing_readers_can_see_is_a_warning(
    kent, client, django_assert_max_num_queries
):
    """Only the address's shape was asked of the site ("/category/<slug>/"), so a
    link to a category, tag, place or organisation that is not there or has no
    post live yet, or to a month with nothing published, passed, and readers got
    "Page not found", as the site's own answer to each says."""
    PostFactory(slug="surrey").categories.add(CategoryFactory(slug="in-draft-only"))
    missing = [
        "/category/no-such-category/",
        "/category/in-draft-only/",
        "/category/no-such-category/feed/",
        "/tag/no-such-tag/?page=2",
        "/area/no-such-area/#findings",
        "/region/no-such-region",
        "/organisation/no-such-organisation/",
        "/archive/2019/04/",
        "/archive/2019/13/",
        "/posts/surrey/comments/",
        "/posts/surrey/comments/1/reply/",
    ]
    there = [
        "/category/youth-justice/",
        "/category/youth-justice/feed/",
        "/tag/caseloads/?page=2",
        "/area/kent/#findings",
        "/region/south-east",
        "/organisation/kss-crc/",
        "/archive/2019/03/",
    ]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in missing + there))
    # One question for each kind of page, however many links: categories, tags,
    # areas, regions, organisations, months, posts, comments; and the report links.
    with django_assert_max_num_queries(9):
        warned = site_links(post)
    assert warned == [
        no_page("/category/no-such-category/"),
        listing_not_live("/category/in-draft-only/"),
        no_page("/category/no-such-category/feed/"),
        no_page("/tag/no-such-tag/?page=2"),
        no_page("/area/no-such-area/#findings"),
        no_page("/region/no-such-region"),
        no_page("/organisation/no-such-organisation/"),
        no_page("/archive/2019/04/"),
        no_page("/archive/2019/13/"),
        post_not_live("/posts/surrey/comments/"),
        post_not_live("/posts/surrey/comments/1/reply/"),
    ]
    assert answered_not_found(client, missing + there) == missing


def pages_with(part: str, patterns=None, namespace: str = "") -> list[tuple]:
    """Each of the site's URL patterns with the part ("slug") in its address: (its
    name, its address's parts)."""
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found += pages_with(
                part, pattern.url_patterns, pattern.namespace or namespace
            )
        elif part in pattern.pattern.converters:
            found.append((f"{namespace}:{pattern.name}", pattern.pattern.converters))
    return found


def test_a_link_to_any_page_whose_slug_names_nothing_is_a_warning(client):
    """Each page with a slug in its address, a page added later too: the comment
    form's address among them, which a GET redirects to the post's comments."""
    links = [
        reverse(
            name,
            kwargs={part: "no-such-slug" if part == "slug" else 1 for part in parts},
        )
        for name, parts in pages_with("slug")
    ]
    assert len(links) >= 8
    post = PostFactory(body=" ".join(f"[x]({link})" for link in links))
    assert site_links(post) == [no_page(link) for link in links]
    assert answered_not_found(client, links) == links


def test_a_link_to_the_reply_page_of_a_comment_readers_cannot_see_is_a_warning(
    client,
):
    """The reply page answers only for a comment readers see, on its own post: a
    link to one held for moderation, marked as spam (its replies with it), or of
    another post passed, as its comment was not asked of, and readers get "Page
    not found"."""
    kent = PublishedPostFactory(slug="kent")
    FormerSlug.objects.create(post=kent, slug="kent-2023")
    approved = CommentFactory(post=kent, status="approved")
    spam = CommentFactory(post=kent, status="spam")
    hidden = [
        CommentFactory(post=kent, status="pending"),
        spam,
        CommentFactory(post=kent, status="approved", parent=spam),
        CommentFactory(status="approved"),
    ]
    shown = [approved, CommentFactory(post=kent, status="approved", parent=approved)]
    reply = "/posts/{}/comments/{}/reply/"
    missing = [reply.format("kent", comment.pk) for comment in hidden]
    there = [reply.format("kent", comment.pk) for comment in shown]
    there.append(reply.format("kent-2023", approved.pk))
    post = PostFactory(body=" ".join(f"[x]({link})" for link in missing + there))
    assert site_links(post) == [
        f"The link \u201c{link}\u201d goes to the reply page of a comment readers "
        f"cannot see (held for moderation, marked as spam, or not on that post), so "
        f"they are sent to the post's comments, told it is not available any more: "
        f"link to the post's comments instead."
        for link in missing
    ]
    # Each sends the reader back to the post's comments; each other one opens.
    for link in missing:
        assert client.get(link)["Location"] == "/posts/kent/#comments"
    assert answered_not_found(client, missing + there) == []


def on_the_desk(link: str) -> str:
    return (
        f"The link \u201c{link}\u201d goes to the desk, which readers cannot open "
        f"(they get its login page): link to the page readers see."
    )


def test_a_link_to_the_desk_is_a_warning(client):
    """An address copied from the desk (a post's page there, its "View on site"
    button) passed as a page of the site, and readers get the desk's login page."""
    kent = PublishedPostFactory(slug="kent")
    post_type = ContentType.objects.get_for_model(Post)
    desk = [
        f"/admin/posts/post/{kent.pk}/change/",
        f"/admin/r/{post_type.pk}/{kent.pk}/",
        "/admin",
    ]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in desk))
    assert site_links(post) == [on_the_desk(link) for link in desk]
    for link in desk:
        landed_on = client.get(link, follow=True).redirect_chain[-1][0]
        assert landed_on.startswith(reverse("admin:login"))


def emailed(link: str) -> str:
    return (
        f"The link \u201c{link}\u201d is one reader's link from an email, so readers "
        f"following it get an error, or act as that reader: link to the page itself."
    )


def test_a_link_from_a_readers_email_is_a_warning(client):
    """A link copied from an email (its confirmation, preferences, unsubscribe or
    counted link) passed as a page of the site: others following it get an
    error (an expired link, a token mistyped) or that reader's own page."""
    links = [reverse(name, args=["not-a-token"]) for name, _ in pages_with("token")]
    assert len(links) >= 10
    post = PostFactory(body=" ".join(f"[x]({link})" for link in links))
    assert site_links(post) == [emailed(link) for link in links]
    assert all(client.get(link, follow=True).status_code >= 400 for link in links)


def test_a_link_to_the_development_outbox_is_a_warning(client):
    """/outbox/ lists the mail a development machine sent (DEBUG only): it opened
    on the author's machine, passed the checks, and readers get "Page not found"."""
    links = ["/outbox/", "/outbox/20261208-kent.eml/"]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in links))
    assert site_links(post) == [
        f"The link \u201c{link}\u201d goes to the outbox of a development machine, "
        f"which readers get \u201cPage not found\u201d for: link to the page itself."
        for link in links
    ]
    assert answered_not_found(client, links) == links


def test_a_link_to_a_listing_the_post_itself_brings_live_is_no_warning():
    """As a link to the post's own address: publishing it puts its category, its
    inspection's area and this month's archive on the site."""
    post = PostFactory(
        body=f"[a](/category/new-series/) [b](/area/dover/) "
        f"[c](/archive/{timezone.localdate():%Y/%m}/)"
    )
    post.categories.add(CategoryFactory(slug="new-series"))
    InspectionFactory(post=post, area=AreaFactory(slug="dover"))
    assert site_links(post) == []


def test_links_with_a_query_or_a_place_and_to_feeds_warn_only_where_no_page_is(
    settings, kent, client
):
    """A query string or a "#place" is no part of the page's address, and the
    site's feeds, sitemap and robots.txt are pages as any other."""
    settings.SITE_URL = "https://probation.example"
    missing = [
        "/sitemap.xml/",
        "/feed/rss/",
        "/robots.txt/",
        "/posts/kent/feed/",
        # One "/" too many: APPEND_SLASH adds one only to an address without it.
        "/posts/kent//",
        "/region/south-east//",
    ]
    there = [
        "/feed/",
        "/feed/atom",
        "/category/youth-justice/feed/?format=rss#latest",
        "/sitemap.xml",
        "/robots.txt",
        "/category/youth-justice/?page=99#top",
        "/search/?q=kent#results",
        "/subscribe/?page=/posts/kent/",
        "/posts/kent/?utm_source=x#user-content-findings",
        "https://probation.example/archive/2019/03/?page=2#x",
    ]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in missing + there))
    assert site_links(post) == [no_page(link) for link in missing]
    assert answered_not_found(client, missing + there) == missing


def filters_refused(link: str, refused: str) -> str:
    return (
        f"The link \u201c{link}\u201d filters the inspections by what readers "
        f"cannot choose ({refused}: none of that name, or none with a published "
        f"post), so they get an error page and no inspections: check its address."
    )


def test_a_link_to_the_inspections_filtered_by_what_readers_cannot_choose_is_a_warning(
    kent, client
):
    """The index answers a region, organisation or rating readers cannot choose
    (mistyped, or with no published post) with its form's error and a 400: the
    link passed, as only the address's path was asked of the site."""
    kent.inspections.get().organisations.get().owners.add(
        OrganisationFactory(slug="sodexo", kind="owner")
    )
    draft = PostFactory(slug="surrey")
    InspectionFactory(post=draft, area=AreaFactory(region=RegionFactory(slug="west")))
    missing = {
        "/inspections/?region=nowhere": "region=nowhere",
        "/inspections/?region=west&rating=good": "region=west",
        "/inspections/?organisation=no-such&rating=brilliant#x": (
            "organisation=no-such, rating=brilliant"
        ),
        "/inspections/?owner=kss-crc": "owner=kss-crc",
    }
    there = [
        "/inspections/",
        "/inspections/?region=south-east&rating=good",
        "/inspections/?organisation=kss-crc&region=#table",
        "/inspections/?page=2",
        "/inspections/?owner=sodexo&utm_source=x",
    ]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in [*missing, *there]))
    # The post itself counted as live, as for its listings: it brings its own
    # inspection's region and organisations onto the index.
    InspectionFactory(
        post=post,
        area=AreaFactory(region=RegionFactory(slug="east")),
        organisations=[OrganisationFactory(slug="nacro", kind="owner")],
    )
    post.body += " [y](/inspections/?region=east&owner=nacro)"
    assert site_links(post) == [
        filters_refused(link, refused) for link, refused in missing.items()
    ]
    assert [
        link for link in [*missing, *there] if client.get(link).status_code == 400
    ] == list(missing)


def test_links_to_the_sites_live_pages_and_files_are_no_warning(
    settings, media, django_assert_max_num_queries
):
    settings.SITE_URL = "https://probation.example"
    live = PublishedPostFactory(slug="kent")
    FormerSlug.objects.create(post=live, slug="kent-2023")
    (media / "posts").mkdir(parents=True)
    (media / "posts" / "chart.png").write_bytes(b"png")
    body = (
        "[a](/posts/kent/) [b](https://probation.example/posts/kent/#comments) "
        "[c](/posts/kent-2023/) [d](/posts/kent) [e](/) [f](https://probation.example) "
        "[g](/inspections/?rating=good) [h](/feed/) [i](/search/?q=kent) "
        "[j](/subscribe/) ![k](/media/posts/chart.png) [l](/static/site.css) "
        "[m](https://example.org/posts/nowhere/) [n](mailto:x@e.org) [o](#top) "
        "[p](//example.org/x) [q](?page=2) [r](../kent/) "
        "[s](/posts/" + "draft-of-itself/)"
    )
    post = PostFactory(slug="draft-of-itself", body=body)
    # One question for all the body's post links, however many; one for the
    # post's report links.
    with django_assert_max_num_queries(2):
        assert site_links(post) == []


def place_not_on(link: str, headings: str) -> str:
    return (
        f"The link \u201c{link}\u201d goes to a place that post's page does not "
        f"have, so readers land at its top: {headings}"
    )


def test_a_link_to_a_place_another_post_does_not_have_is_a_warning(settings, client):
    """ "/posts/kent/#findings" passed: on Kent's page its heading's place is
    #user-content-findings (every id of a body is, for the page's own to stay
    apart), so readers landed at the top of the page, as for a place mistyped or
    a heading renamed since."""
    settings.SITE_URL = "https://probation.example"
    kent = PublishedPostFactory(
        slug="kent", body="## Findings\n\nHigh.\n\n## Officers\u2019 caseloads"
    )
    FormerSlug.objects.create(post=kent, slug="kent-2023")
    PublishedPostFactory(slug="surrey", body="No headings.")
    comment = CommentFactory(post=kent, status="approved")
    kents = (
        "its headings are \u201cFindings\u201d (#user-content-findings) and "
        "\u201cOfficers\u2019 caseloads\u201d (#user-content-officers-caseloads)."
    )
    missing = {
        "/posts/kent/#findings": "its heading \u201cFindings\u201d is at "
        "#user-content-findings.",
        "/posts/kent-2023/#user-content-findnigs": kents,
        "https://probation.example/posts/kent/?x=1#nowhere": kents,
        "/posts/surrey/#findings": "it has no headings.",
        "/posts/draft-of-itself/#background": "its headings are "
        "\u201cContext\u201d (#user-content-context).",
    }
    there = [
        "/posts/kent/#user-content-findings",
        "/posts/kent-2023/#user-content-officers-caseloads",
        "/posts/kent/#comments",
        f"/posts/kent/#comment-{comment.pk}",
        "/posts/kent/#top",
        "/posts/kent/#",
        "/posts/kent/#user-content-officers%2Dcaseloads",
        "/posts/draft-of-itself/#user-content-context",
    ]
    post = PostFactory(
        slug="draft-of-itself",
        body=" ".join(f"[x]({link})" for link in [*missing, *there]) + "\n\n## Context",
    )
    assert site_links(post) == [
        place_not_on(link, headings) for link, headings in missing.items()
    ]
    # What the page has: each id it does not is one the post's page lacks.
    kents_page = client.get("/posts/kent/").text
    ids = set(re.findall(r'\sid="([^"]*)"', kents_page))
    assert {"user-content-findings", "comments", f"comment-{comment.pk}"} <= ids
    assert "findings" not in ids and "nowhere" not in ids


def test_a_link_to_a_comment_readers_cannot_see_is_a_warning(client):
    """A comment's own address (/posts/kent/#comment-5, its "View on site" at the
    desk) passed for one held for moderation or marked as spam, which its page
    does not show: readers landed at the page's top."""
    kent = PublishedPostFactory(slug="kent")
    shown = CommentFactory(post=kent, status="approved")
    held = CommentFactory(post=kent, status="pending")
    elsewhere = CommentFactory(status="approved")
    links = [
        held.get_absolute_url(),
        f"/posts/kent/#comment-{elsewhere.pk}",
        shown.get_absolute_url(),
    ]
    post = PostFactory(body=" ".join(f"[x]({link})" for link in links))
    not_on_it = (
        "that comment is not on it (held for moderation, marked as spam, or of "
        "another post)."
    )
    assert site_links(post) == [place_not_on(link, not_on_it) for link in links[:2]]
    ids = re.findall(r'\sid="([^"]*)"', client.get("/posts/kent/").text)
    assert f"comment-{shown.pk}" in ids and f"comment-{held.pk}" not in ids


def test_a_link_to_any_place_a_posts_page_has_is_no_warning(client):
    """Each id on a post's page as readers get it (its body's, its comments',
    its inspection's, its corrections' and its forms'), linked from another post."""
    kent = PublishedPostFactory(
        slug="kent", body="## Findings\n\nHigh.[^1]\n\n[^1]: Kent."
    )
    InspectionFactory(post=kent, organisations=[OrganisationFactory()])
    kent.updates.create(kind="correction", wrong="Ten.", right="Eleven.")
    approved = CommentFactory(post=kent, status="approved")
    CommentFactory(post=kent, status="approved", parent=approved)
    PublishedPostFactory(slug="surrey").tags.add(*kent.tags.all())
    ids = re.findall(r'\sid="([^"]*)"', client.get("/posts/kent/").text)
    assert len(ids) >= 12
    post = PostFactory(body=" ".join(f"[x](/posts/kent/#{id})" for id in ids))
    assert site_links(post) == []


SITE_HOSTS = ["probation.example", "www.probation.example"]


def test_a_link_to_the_site_is_read_as_a_browser_reads_it(settings):
    """Browsers read a backslash in a link's path as "/" and drop its tabs and
    newlines: "/posts\\kent/" opens the post, and was warned as leading to
    nothing. One to no post still is, named as the author wrote it."""
    settings.SITE_URL = "https://probation.example"
    PublishedPostFactory(slug="kent")
    body = (
        '<a href="/posts\\kent/">a</a> <a href="/posts/ke&#9;nt/">b</a> '
        '<a href="https://probation.example\\posts\\kent\\">c</a> '
        '<a href="/posts/kent/?q=a\\b">d</a> <a href="/posts\\nowhere/">e</a>'
    )
    assert site_links(PostFactory(body=body)) == [no_page("/posts\\nowhere/")]


def test_an_ampersand_in_a_links_query_is_read_as_a_browser_reads_it(settings):
    """ "&region=" and "&copy=" in a query are no characters to a browser, which
    reads a reference with no ";" only where no letter, digit or "=" follows: the
    link checker fetched "?a=1®ion=east" and "©=2", another address."""
    body = (
        "[a](https://e.org/?a=1&region=east&copy=2) "
        '<a href="https://e.org/?b=1&amp;reg=2&para;&not&#x41;&copy x">b</a> '
        "<a href='/posts/kent/?a=1&sect=2'>c</a>"
    )
    assert links.web_links(PostFactory(body=body)) == [
        "https://e.org/?a=1&region=east&copy=2",
        "https://e.org/?b=1&reg=2\u00b6\u00acA\u00a9 x",
    ]
    assert links.site_path("/posts/kent&copy=1/") == "/posts/kent&copy=1/"


def test_a_link_relative_to_the_posts_address_is_asked_of_the_site(client):
    """ "../kent/" on a post's page (and in its email, made whole from the post's
    address) opens /posts/kent/: the checks left it alone, and "../kentt/" or a
    draft's address passed."""
    PublishedPostFactory(slug="kent")
    PostFactory(slug="surrey-draft")
    body = (
        "[a](../kent/) [b](../kentt/) [c](../surrey-draft/#x) [d](./) [e](?page=2) "
        "[f](../../category/nowhere/) <a href='..\\kent/'>g</a> [h](#findings)"
    )
    post = PostFactory(slug="dover", body=body)
    assert site_links(post) == [
        no_page("../kentt/"),
        post_not_live("../surrey-draft/#x"),
        no_page("../../category/nowhere/"),
    ]


def test_a_raw_html_link_across_lines_is_read_whole_as_a_browser_reads_it(settings):
    """A raw-HTML address broken over lines (wrapped by an editor) was cut at its
    newline: "/posts/" was warned as leading to nothing, and the page it does go
    to (browsers drop newlines and tabs from an address) was never asked of."""
    settings.SITE_URL = "https://probation.example"
    PublishedPostFactory(slug="kent")
    body = (
        "See <a href=\"/posts/\nkent/\">Kent</a>, <a href='/posts/\tkent/'>again</a>"
        ' and <a\nhref="/posts/\nnowhere/">nowhere</a>.'
    )
    post = PostFactory(body=body)
    assert site_links(post) == [no_page("/posts/\nnowhere/")]
    assert checks.check_links_under_the_post(post) == []


@pytest.mark.parametrize(
    "site_url, link",
    [
        ("https://probation.example", "https://www.probation.example/posts/x/"),
        ("https://www.probation.example", "https://probation.example/posts/x/"),
        ("https://probation.example", "http://probation.example/posts/x/"),
        ("https://probation.example", "http://WWW.Probation.Example:80/posts/x/"),
        ("https://probation.example", "https://probation.example./posts/x/"),
        ("https://probation.example", "//probation.example/posts/x/"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/posts/x/"),
    ],
)
def test_a_link_to_the_site_by_another_of_its_names_is_asked_of_the_site(
    settings, site_url, link
):
    """Only SITE_URL's host, exactly, was the site's: a link by its www. (or bare)
    name, over http, with a trailing dot or from "//" was fetched by the link
    checker as another site's, a request to ourselves, and one to a post not
    there or not live was no warning."""
    settings.SITE_URL = site_url
    settings.ALLOWED_HOSTS = [*SITE_HOSTS, "127.0.0.1"]
    PostFactory(slug="kent-draft")
    PublishedPostFactory(slug="kent")
    missing, draft, live = (
        link.replace("/x/", f"/{slug}/") for slug in ["nowhere", "kent-draft", "kent"]
    )
    post = PostFactory(body=f"[a]({missing}) [b]({draft}) [c]({live})")
    assert site_links(post) == [no_page(missing), post_not_live(draft)]
    assert links.web_links(post) == []


@pytest.mark.parametrize(
    "allowed_hosts, link",
    [
        # The site does not answer that name: readers get its 400, or nothing.
        (["probation.example"], "https://www.probation.example/posts/kent/"),
        (["*"], "https://www.probation.example/posts/kent/"),
        (SITE_HOSTS, "https://staging.probation.example/posts/kent/"),
        # Another server on the same host.
        (SITE_HOSTS, "https://probation.example:8443/posts/kent/"),
        (SITE_HOSTS, "http://probation.example:443/posts/kent/"),
        (SITE_HOSTS, "https://probation.example:0/posts/kent/"),
    ],
)
def test_a_link_to_a_name_or_port_the_site_does_not_answer_is_fetched(
    settings, allowed_hosts, link
):
    settings.SITE_URL = "https://probation.example"
    settings.ALLOWED_HOSTS = allowed_hosts
    PublishedPostFactory(slug="kent")
    post = PostFactory(body=f"[a]({link})")
    assert site_links(post) == []
    assert links.web_links(post) == [link]


def test_a_body_without_links_to_the_site_asks_the_database_nothing(
    django_assert_num_queries,
):
    body = "[a](https://example.org/posts/x/) Plain words."
    # As the editor's preview checks it, as the author types.
    with django_assert_num_queries(0):
        assert site_links(Post(body=body)) == []
    # Saved, the post has its inspections' report links to ask for too.
    post = PostFactory(body=body)
    with django_assert_num_queries(1):
        assert site_links(post) == []


@pytest.mark.parametrize(
    "link",
    [
        "//",
        "///",
        "/%",
        "/%00",
        "/posts/%ZZ/",
        "/posts/\u0175yr-\u2603/",
        "/posts/" + "a" * 5000 + "/",
        "/media/../../etc/passwd",
        "/static/../newsletter/settings.py",
        "/media/" + "a" * 5000 + ".png",
        "http://[::1",
        "https://probation.example:99999/posts/x/",
        "javascript:alert(1)",
        "/posts/x/../../admin/",
        "/posts/x/comments/99999999999999999999/reply/",
        "/inspections/?region=%00&rating=%FF",
        "/posts/x/#%FF%00",
        "/posts/live/#comment-99999999999999999999",
        "/posts/live/#comment-" + "9" * 5000,
        "..%2F..%2F",
        "../[",
    ],
)
def test_an_odd_link_to_the_site_is_a_warning_never_a_crash(
    settings, media, client, link
):
    settings.SITE_URL = "https://probation.example"
    PublishedPostFactory(slug="live")
    post = PostFactory(body=f'[x]({link}) <a href="{link}">y</a>')
    checks.post_problems(post)
    user = UserFactory()
    client.force_login(user)
    assert client.get(f"/admin/posts/post/{post.pk}/change/").status_code == 200
    response = client.post("/admin/posts/post/preview/", {"body": post.body})
    assert response.status_code == 200


def test_an_empty_excerpt_is_a_warning():
    assert checks.check_excerpt(PostFactory(excerpt="  ")) != []
    assert checks.check_excerpt(PostFactory(excerpt="One sentence.")) == []


def test_an_inspection_without_its_facts_is_a_warning():
    inspection = InspectionFactory(
        overall="narrative", area=None, report_url="", title="Kent 2023"
    )
    [problem] = checks.check_inspection_facts(inspection.post)
    assert problem.message == (
        "The inspection “Kent 2023” lacks its rating, its area, the organisation "
        "inspected, the link to the report."
    )


def test_an_inspection_with_its_facts_passes_and_old_narrative_ones_too():
    InspectionFactory(
        organisations=[OrganisationFactory()],
        report_url="https://www.justiceinspectorates.gov.uk/hmiprobation/",
    )
    narrative = InspectionFactory(
        overall="narrative",
        published_on=datetime.date(2017, 3, 1),
        organisations=[OrganisationFactory()],
        report_url="https://www.justiceinspectorates.gov.uk/hmiprobation/",
    )
    assert all(checks.check_inspection_facts(p) == [] for p in Post.objects.all())
    assert narrative.post.inspections.count() == 1


def test_a_title_already_used_is_a_warning():
    PublishedPostFactory(title="Suffolk: under strain")
    assert checks.check_title_unused(PostFactory(title="SUFFOLK: under strain"))
    assert checks.check_title_unused(PostFactory(title="Norfolk")) == []


def test_dead_links_come_from_the_link_checkers_stored_results():
    post = PostFactory(body="[a](https://a.example/) [b](https://b.example/)")
    assert checks.check_dead_links(post) == []  # not checked yet
    LinkCheck.objects.create(post=post, url="https://a.example/", outcome="ok")
    LinkCheck.objects.create(
        post=post, url="https://b.example/", outcome="dead", detail="HTTP 404"
    )
    assert messages_of(checks.check_dead_links(post)) == (
        "The link https://b.example/ looks dead (HTTP 404)."
    )
    # A link no longer in the body is no longer a problem.
    post.body = "[a](https://a.example/)"
    assert checks.check_dead_links(post) == []


def test_blocking_problems_come_first():
    post = PostFactory(excerpt="", body="[x](javascript:1)")
    problems = checks.post_problems(post)
    assert [p.level for p in problems] == ["blocking", "warning"]


# The link checker ------------------------------------------------------------------


class _Site(http.server.BaseHTTPRequestHandler):
    """/ok answers 200, /gone 404, /to?… redirects to the query's address."""

    def do_HEAD(self):
        if self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/to?"))
        else:
            self.send_response({"/ok": 200, "/gone": 404}.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_working_link_a_dead_one_and_one_that_redirects_to_a_working_one(site):
    assert url_check(f"{site}/ok", trusted_networks=LOOPBACK).outcome == "ok"
    dead = url_check(f"{site}/gone", trusted_networks=LOOPBACK)
    assert (dead.outcome, dead.detail) == ("dead", "HTTP 404")
    redirected = url_check(f"{site}/to?{site}/ok", trusted_networks=LOOPBACK)
    assert redirected.outcome == "ok"


def test_a_host_that_does_not_exist_is_dead():
    assert url_check("https://no-such-host.invalid/").outcome == "dead"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://172.16.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, mapped into IPv6
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0/",
        "http://localhost:8000/",  # a hostname resolving to loopback
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",  # hexadecimal, shortened
        "http://127.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
    ],
)
def test_the_link_checker_never_reaches_a_private_or_local_address(url):
    result = url_check(url)
    assert result.outcome == LinkCheck.Outcome.REFUSED


@pytest.mark.parametrize(
    "url",
    [
        # NAT64 (64:ff9b::/96): a gateway on an IPv6-only network forwards these
        # to the IPv4 address in their last 32 bits, private ones included.
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # 169.254.169.254
        "http://[64:ff9b::a00:5]/",  # 10.0.0.5
        "http://[::127.0.0.1]/",  # IPv4-compatible, deprecated
        "http://[64:ff9b:1::a00:5]/",  # local-use NAT64, RFC 8215
        "http://[fec0::1]/",  # site-local, deprecated
    ],
)
def test_an_ipv6_address_leading_to_a_private_network_is_refused(url):
    assert url_check(url, timeout=0.5).outcome == LinkCheck.Outcome.REFUSED


def test_a_nat64_address_of_a_public_ipv4_host_is_judged_by_that_host():
    nat64_of = ipaddress.ip_address("64:ff9b::5db8:d822")  # 93.184.216.34
    assert address_is_public(nat64_of)


def test_a_redirect_to_a_private_address_is_refused(site):
    for target in (
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://127.0.0.2/",  # only the test site's own 127.0.0.1 is trusted
        "http://[::1]/",
        "http://2130706434/",
    ):
        result = url_check(f"{site}/to?{target}", trusted_networks=LOOPBACK)
        assert result.outcome == LinkCheck.Outcome.REFUSED, target


def test_a_redirect_to_a_malformed_address_is_reported_never_a_crash(site):
    result = url_check(f"{site}/to?http://[::1/", trusted_networks=LOOPBACK)
    assert (result.outcome, result.detail) == ("dead", "not a valid address")


@pytest.fixture
def trickling_site():
    """A server that answers a byte every 0.2 seconds, each within any socket
    timeout, for five seconds (it would go on for hours)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer():
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(25):
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(b"X")
                except OSError:  # the checker hung up
                    return

    threading.Thread(target=answer, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    listener.close()


def test_a_server_answering_a_byte_at_a_time_gets_only_the_timeout(trickling_site):
    started = time.monotonic()
    result = url_check(trickling_site, timeout=1, trusted_networks=LOOPBACK)
    assert time.monotonic() - started < 3
    assert (result.outcome, result.detail) == ("dead", "no answer in time")


def test_the_link_checker_connects_to_the_address_it_checked(site, monkeypatch):
    # DNS rebinding: the name answers a trusted address when checked, another one
    # (127.0.0.2, where nothing listens) when asked again. The checker must not ask
    # again: it connects to the address it judged.
    port = site.rsplit(":", 1)[1]
    real_getaddrinfo = socket.getaddrinfo
    asked = []

    def rebinding_dns(host, *args, **kwargs):
        if host != "rebind.test":
            return real_getaddrinfo(host, *args, **kwargs)
        asked.append(host)
        address = "127.0.0.1" if len(asked) == 1 else "127.0.0.2"
        return real_getaddrinfo(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    result = url_check(f"http://rebind.test:{port}/ok", trusted_networks=LOOPBACK)
    assert (result.outcome, asked) == ("ok", ["rebind.test"])


def test_the_link_checker_task_stores_what_it_found_and_forgets_removed_links(
    celery_eager,
):
    post = PostFactory(body="[intranet](http://10.0.0.5/) [x](https://nope.invalid/)")
    LinkCheck.objects.create(post=post, url="https://gone-from-body.example/")
    check_post_links.delay(post.pk)
    found = dict(LinkCheck.objects.filter(post=post).values_list("url", "outcome"))
    assert found == {"http://10.0.0.5/": "refused", "https://nope.invalid/": "dead"}
    assert "private or local" in messages_of(checks.check_dead_links(post))
    assert post_links_check(post_id=999999) == 0


def test_a_link_from_two_slashes_to_another_site_is_checked_over_https(
    site, celery_eager
):
    """Readers' browsers open "//example.org/x" over https, the page's scheme: the
    link checker took it for no web link, and a broken one was never warned."""
    post = PostFactory(
        body='[the report](//nope.invalid/report.pdf) <a href="/\\nope.invalid/b">b</a>'
    )
    check_post_links.delay(post.pk)
    assert messages_of(checks.check_dead_links(post)) == (
        "The link //nope.invalid/report.pdf looks dead (no such host). | "
        "The link /\\nope.invalid/b looks dead (no such host)."
    )
    # Fetched over https: the test site answers http alone.
    over_https = url_check(
        site.removeprefix("http:") + "/ok", trusted_networks=LOOPBACK
    )
    assert (over_https.outcome, over_https.detail) == ("dead", "bad certificate or TLS")


def test_a_full_address_of_the_site_is_left_to_its_own_check_and_warned_of_once(
    settings, celery_eager
):
    """The link checker fetched the site's own addresses too, so a page not there
    got two warnings for one link: "looks dead (HTTP 404)" and "leads to nothing"."""
    settings.SITE_URL = "https://probation.example"
    ours = "https://probation.example/posts/nowhere/"
    post = PostFactory(body=f"[a]({ours}) [b](https://nope.invalid/)")
    assert links.unchecked(post) == {"https://nope.invalid/"}
    # A result stored by the checker before it left them alone is not shown.
    LinkCheck.objects.create(post=post, url=ours, outcome="dead", detail="HTTP 404")
    check_post_links.delay(post.pk)
    checked = LinkCheck.objects.filter(post=post).values_list("url", flat=True)
    assert list(checked) == ["https://nope.invalid/"]
    said = messages_of(checks.post_problems(post)).split(" | ")
    assert [message for message in said if ours in message] == [no_page(ours)]


def test_a_report_link_to_the_site_is_left_to_its_own_check_and_warned_of_once(
    settings, media, celery_eager
):
    """An inspection's report link to the site's own address (a report kept under
    /media/) was fetched by the link checker, where the body's are asked of the
    site: a report not there was "looks dead", or not checked at all."""
    settings.SITE_URL = "https://probation.example"
    ours = "https://probation.example/media/reports/kent.pdf"
    post = PostFactory(body="[b](https://nope.invalid/)")
    InspectionFactory(post=post, report_url=ours)
    assert links.web_links(post) == ["https://nope.invalid/"]
    check_post_links.delay(post.pk)
    checked = LinkCheck.objects.filter(post=post).values_list("url", flat=True)
    assert list(checked) == ["https://nope.invalid/"]
    said = messages_of(checks.post_problems(post)).split(" | ")
    assert [message for message in said if ours in message] == [no_page(ours)]
    (media / "reports").mkdir(parents=True)
    (media / "reports" / "kent.pdf").write_bytes(b"%PDF")
    assert ours not in messages_of(checks.post_problems(post))


class _WelshSite(http.server.BaseHTTPRequestHandler):
    """Answers /Ynys_Môn… only when asked as browsers ask, percent-encoded UTF-8;
    /hen redirects there with the raw UTF-8 in its Location, as some servers do."""

    def do_HEAD(self):
        if self.path == "/hen":
            self.send_response(301)
            # send_header writes Latin-1: these are the UTF-8 bytes of /Ynys_Môn.
            self.send_header("Location", "/Ynys_Môn".encode().decode("latin-1"))
        else:
            self.send_response(200 if self.path.startswith("/Ynys_M%C3%B4n") else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def welsh_site(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WelshSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # The task checks with no trusted network: every host is this local site.
    monkeypatch.setattr(links, "public_address", lambda *args: "127.0.0.1")
    yield f"http://cymru.example:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_link_with_a_non_ascii_path_is_checked_never_a_crash(
    celery_eager, welsh_site
):
    # Welsh place names in a report's address, or a link pasted as raw HTML (the
    # Markdown parser percent-encodes only its own links): the whole check of the
    # post failed on the first one, and none of its links was checked.
    post = PostFactory(
        body=f'See <a href="{welsh_site}/Ynys_Môn">Ynys Môn</a> and '
        f"[the old address]({welsh_site}/hen)."
    )
    InspectionFactory(post=post, report_url=f"{welsh_site}/Ynys_Môn/adroddiad")
    check_post_links.delay(post.pk)
    found = dict(LinkCheck.objects.filter(post=post).values_list("url", "outcome"))
    assert found == {
        f"{welsh_site}/Ynys_Môn": "ok",
        f"{welsh_site}/hen": "ok",
        f"{welsh_site}/Ynys_Môn/adroddiad": "ok",
    }


# In the admin ----------------------------------------------------------------------


@pytest.fixture
def author(client):
    user = UserFactory()
    client.force_login(user)
    return user


def test_the_posts_page_in_the_admin_shows_its_checks(client, author):
    post = PostFactory(
        excerpt="", body="[x](javascript:alert(1)) ![](https://e.org/a.png)"
    )
    LinkCheck.objects.create(
        post=post, url="https://e.org/a.png", outcome="dead", detail="HTTP 404"
    )
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "Checks before publishing" in page
    assert "Blocks publishing:" in page and "uses javascript:" in page
    assert "The excerpt is empty" in page
    assert "1 image in the body has no alt text" in page
    assert "looks dead (HTTP 404)" in page


def test_the_checks_say_when_links_are_waiting_for_the_checker(client, author):
    post = PostFactory(body="[a](https://a.example/)")
    post_links_check_rung(post_id=post.pk)  # saved at the desk
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "1 link waiting for the link checker" in page


def test_the_checks_say_when_no_check_is_coming_and_how_to_ask_for_one(client, author):
    """Beat gives up a check that kept failing (posts_to_check_again): "reload the
    page in a moment" stayed on the post's page for good."""
    post = PostFactory(body="[a](https://a.example/) [b](https://b.example/)")
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "waiting for the link checker" not in page
    assert (
        "2 links not checked: the link checker could not run. Save the post to "
        "check them again."
    ) in page


def test_saving_a_post_unchanged_checks_the_links_no_check_went_through(
    client, author, celery_eager, django_capture_on_commit_callbacks
):
    """What the checks tell the author to do once beat gave a check up: the body
    unchanged, saving rang nothing if any link had ever been checked."""
    body = "[a](http://192.168.1.1/) [b](http://192.168.1.2/)"
    post = PostFactory(body=body)
    LinkCheck.objects.create(post=post, url="http://192.168.1.1/", outcome="ok")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/admin/posts/post/{post.pk}/change/",
            admin_post_form(title=post.title, slug=post.slug, body=body),
        )
    assert LinkCheck.objects.get(post=post, url="http://192.168.1.2/").outcome == (
        "refused"
    )


def test_a_link_too_long_to_index_leaves_the_posts_other_links_checked(
    client, author, celery_eager, django_capture_on_commit_callbacks
):
    """A link of some thousands of characters (a document's sharing link, its
    token) did not fit the checks' unique index: the whole check failed, again at
    every ring and every save, and none of the post's links was ever checked."""
    token = base64.urlsafe_b64encode(random.Random(1).randbytes(3000)).decode()
    body = f"[report](http://10.0.0.5/share?token={token}) [intranet](http://10.0.0.6/)"
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/posts/post/add/", admin_post_form(body=body))
    post = Post.objects.get()
    found = dict(LinkCheck.objects.filter(post=post).values_list("url", "outcome"))
    assert found == {"http://10.0.0.6/": "refused"}
    page = client.get(f"/admin/posts/post/{post.pk}/change/").text
    assert "not checked: the link checker" not in page
    assert "waiting for the link checker" not in page


def test_saving_a_post_queues_its_links_for_checking(
    client, author, celery_eager, django_capture_on_commit_callbacks
):
    post = PostFactory()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/admin/posts/post/{post.pk}/change/",
            admin_post_form(
                title=post.title, slug=post.slug, body="[a](http://192.168.1.1/)"
            ),
        )
    assert LinkCheck.objects.get(post=post).outcome == "refused"


def publish_form(post: Post, **fields) -> dict:
    return admin_post_form(
        **{
            "title": post.title,
            "slug": post.slug,
            "excerpt": post.excerpt,
            "body": post.body,
            "status": "published",
            **fields,
        }
    )


def test_a_blocking_problem_stops_the_publish_with_a_clear_message(client, author):
    post = PostFactory(body="[win a prize](javascript:steal())")
    response = client.post(
        f"/admin/posts/post/{post.pk}/change/",
        publish_form(post, publish_despite_warnings="on"),
    )
    assert response.status_code == 200
    assert "cannot be published until this is fixed" in response.content.decode()
    post.refresh_from_db()
    assert post.status == Post.Status.DRAFT


def test_a_warning_asks_to_confirm_before_publishing(
    client, author, django_capture_on_commit_callbacks
):
    post = PostFactory(excerpt="")
    response = client.post(f"/admin/posts/post/{post.pk}/change/", publish_form(post))
    assert response.status_code == 200
    assert "Publish despite warnings" in response.content.decode()
    assert "The excerpt is empty" in response.content.decode()
    post.refresh_from_db()
    assert post.status == Post.Status.DRAFT

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/admin/posts/post/{post.pk}/change/",
            publish_form(post, publish_despite_warnings="on"),
        )
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.is_published


def warnings_shown(page: str) -> str:
    """What the post's page sends back with the box: the warnings it showed."""
    shown = re.search(r'name="warnings_shown" value="([^"]*)"', page)
    return shown[1] if shown else ""


def test_ticking_the_box_confirms_only_the_warnings_the_page_showed(
    client, author, django_capture_on_commit_callbacks
):
    """The author saw one warning on the post's page (its empty excerpt), ticked
    "Publish despite warnings" for it, and published at the same time a body
    with a link to no heading: a warning no page had shown was confirmed too."""
    post = PostFactory(excerpt="")
    url = f"/admin/posts/post/{post.pk}/change/"
    page = client.get(url).content.decode()
    assert "The excerpt is empty" in page
    body = "See [the findings](#findings)."
    response = client.post(
        url,
        publish_form(
            post,
            body=body,
            publish_despite_warnings="on",
            warnings_shown=warnings_shown(page),
        ),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "Check these warnings" in page and "#findings, which is no heading" in page
    post.refresh_from_db()
    assert post.status == Post.Status.DRAFT
    # Shown them both, the author confirms them.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url,
            publish_form(
                post,
                body=body,
                publish_despite_warnings="on",
                warnings_shown=warnings_shown(page),
            ),
        )
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.is_published


def test_a_post_without_problems_publishes_without_asking(client, author):
    post = PostFactory()
    response = client.post(f"/admin/posts/post/{post.pk}/change/", publish_form(post))
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.is_published


def test_saving_a_draft_or_a_post_already_published_is_not_stopped(client, author):
    draft = PostFactory(body="[x](javascript:1)")
    published = PublishedPostFactory(excerpt="")
    for post in (draft, published):
        form = publish_form(post, status=post.status)
        response = client.post(f"/admin/posts/post/{post.pk}/change/", form)
        assert response.status_code == 302, post


# What the newsletter adds: the email's size and subject ---------------------------


def test_an_email_over_100_kb_and_a_long_subject_are_warnings(client, author):
    body = "\n\n".join(["Inspectors read case files in every team. " * 8] * 300)
    post = PostFactory(title="A" * 90, body=body)
    page = client.get(f"/admin/posts/post/{post.pk}/change/").content.decode()
    assert "Gmail clips it" in page
    assert "subject (the title) is 90 characters" in page

    response = client.post(f"/admin/posts/post/{post.pk}/change/", publish_form(post))
    assert "Gmail clips it" in response.content.decode()
    post.refresh_from_db()
    assert post.status == Post.Status.DRAFT


def test_a_post_not_emailed_has_no_email_warnings(client, author):
    post = PostFactory(title="A" * 90)
    form = publish_form(post)
    del form["email_subscribers"]
    response = client.post(f"/admin/posts/post/{post.pk}/change/", form)
    assert response.status_code == 302
    assert not [m for m in get_messages(response.wsgi_request) if "subject" in str(m)]


def test_the_publish_action_holds_back_posts_with_problems(client, author):
    clean = PostFactory(title="Kent: court work")
    unsafe = PostFactory(title="Kent: a bad link", body="[x](javascript:1)")
    response = client.post(
        "/admin/posts/post/",
        {"action": "publish", "_selected_action": [clean.pk, unsafe.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "Published 1 post." in page
    assert "Not published, as the checks before publishing found problems: " in page
    assert "Kent: a bad link" in page
    assert Post.objects.get(pk=clean.pk).is_published
    assert Post.objects.get(pk=unsafe.pk).status == Post.Status.DRAFT


def test_the_publish_action_holds_back_a_post_whose_report_is_yet_to_come(
    client, author
):
    """Written under the report's embargo: published from the list today, it would
    show the report as out; scheduled for the report's day, it goes then."""
    report_on = timezone.localdate() + datetime.timedelta(days=2)
    early = PostFactory(title="Kent: under embargo")
    on_time = PostFactory(
        title="Kent: on the day",
        published_at=timezone.now().replace(hour=12) + datetime.timedelta(days=2),
    )
    for post in (early, on_time):  # with every fact, so no warning holds it back
        InspectionFactory(
            post=post,
            published_on=report_on,
            organisations=[OrganisationFactory()],
            report_url="https://www.justiceinspectorates.gov.uk/hmiprobation/kent/",
        )

    response = client.post(
        "/admin/posts/post/",
        {"action": "publish", "_selected_action": [early.pk, on_time.pk]},
        follow=True,
    )

    page = response.content.decode()
    assert "Not published, as the checks before publishing found problems: " in page
    assert "Scheduled 1 post for their publication time" in page
    assert Post.objects.get(pk=early.pk).status == Post.Status.DRAFT
    assert Post.objects.get(pk=on_time.pk).status == Post.Status.PUBLISHED
    problems = [p.message for p in checks.post_problems(Post.objects.get(pk=early.pk))]
    assert any("comes out on" in problem for problem in problems), problems


@pytest.mark.parametrize(
    "link",
    [
        "http://[::1",
        "http://e.org:99999/",
        "http:///no-host",
        "http://\u2603.invalid/",
    ],
)
def test_a_malformed_link_is_reported_never_a_crash(client, author, celery_eager, link):
    post = PostFactory(body=f"[x]({link}) <{link}>")
    check_post_links.delay(post.pk)
    assert set(
        LinkCheck.objects.filter(post=post).values_list("outcome", flat=True)
    ) <= {"dead"}
    assert client.get(f"/admin/posts/post/{post.pk}/change/").status_code == 200
    assert url_check(link).outcome == "dead"
