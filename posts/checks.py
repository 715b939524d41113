"""Checks before publishing: what the author should fix or knowingly accept.

Each check reads a post and returns Problems; none writes. A blocking problem stops
the publish; a warning asks the author to confirm. The admin shows them on the
post's page and runs them again when the post is published; the editor's live
preview runs those that read the body alone as the author types. The newsletter adds
its own (the email's size and subject) through its post admin, since posts knows
nothing of email. Dead links come from the link checker's stored results
(posts.links, run by a worker), so reading them here costs no request.
"""

import datetime
import enum
import html
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation, ValidationError
from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef, Q
from django.http import QueryDict
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils import timezone
from django.utils.html import strip_tags

from .comments.models import Comment
from .desk import counted
from .links import link_scheme, report_links, site_path, web_links
from .markdown import (
    ID_PREFIX,
    LINK_WITHIN,
    URL_SCHEMES,
    as_a_browser_reads,
    attribute_value,
    link_targets,
    notes_astray,
)
from .models import (
    Area,
    Category,
    Inspection,
    LinkCheck,
    Listed,
    Organisation,
    Post,
    Rating,
    Region,
    Tag,
)
from .validators import clean_email, is_row_id, row_id_in
from .views import InspectionFilter


class Level(enum.StrEnum):
    BLOCKING = "blocking"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    level: Level
    message: str

    @property
    def blocking(self) -> bool:
        return self.level == Level.BLOCKING


# The inspectorate gave narrative judgements before its ratings began in June 2018.
GRADED_SINCE = datetime.date(2018, 6, 1)
_IMAGE_WITHOUT_ALT = re.compile(r'<img\b(?![^>]*\salt="[^"]*[^"\s])[^>]*>')
_SRC = re.compile(r'\ssrc="([^"]*)"')


def images_without_alt(body_html: str) -> list[str]:
    """The addresses of the images a reader who cannot see them (or whose mail
    client blocks them) would know nothing about."""
    return [
        html.unescape(src[1]) if (src := _SRC.search(image)) else ""
        for image in _IMAGE_WITHOUT_ALT.findall(body_html)
    ]


def check_alt_text(post: Post) -> list[Problem]:
    missing = images_without_alt(post.body_html)
    if not missing:
        return []
    images = counted(len(missing), "image in the body has", "images in the body have")
    # Which, or the author looks through every chart of the inspection for them.
    return [
        Problem(
            Level.WARNING,
            f"{images} no alt text "
            f"({', '.join(src[:80] for src in missing)}): describe each one, "
            f"as in ![what it shows](address).",
        )
    ]


def check_link_schemes(post: Post) -> list[Problem]:
    return [
        Problem(
            Level.BLOCKING,
            f"The link “{url[:80]}” uses {scheme}:, which readers' browsers must not "
            f"follow: link to an http(s) address instead.",
        )
        for url in link_targets(post.body)
        if (scheme := link_scheme(url)) and scheme not in URL_SCHEMES
    ]


# In the rendered body, where the sanitiser has put every id and "#" link under
# ID_PREFIX: each id, and each heading's.
_ID = re.compile(rf'\sid="{ID_PREFIX}([^"]*)"')
_HEADING = re.compile(rf'<h([2-6]) id="{ID_PREFIX}([^"]*)">(.*?)</h\1>', re.S)


def _words(fragment: str) -> str:
    return html.unescape(strip_tags(fragment)).strip()


def _headings(body_html: str) -> dict[str, str]:
    """The body's headings: each one's id (ID_PREFIX taken off), and its words."""
    return {
        html.unescape(id): _words(text)[:80]
        for _, id, text in _HEADING.findall(body_html)
    }


def check_links_under_the_post(post: Post) -> list[Problem]:
    """A link written without its https:// ("www.gov.uk/…") is read by a browser
    as a page under the post's own address, which the site never has: on the page
    and in every email it leads nowhere, and the link checker, which checks web
    addresses, never sees it."""
    headings = _headings(post.body_html)

    def how_to_write(url: str) -> str:
        # "[the findings](findings)": a heading's id without its "#".
        if (heading := headings.get(attribute_value(url).strip())) is not None:
            return f"to go to the heading “{heading}”, write #{url}."
        try:  # "[the press office](press@justice.gov.uk)"
            clean_email(attribute_value(url))
        except ValidationError:
            return "write it whole (https://…), or from the site's root (/…)."
        return f"to write to that address, write mailto:{url}."

    return [
        Problem(
            Level.WARNING,
            f"The link “{url[:80]}” has no https:// in front, so readers' browsers "
            f"look for it under this post's address, where there is no page: "
            f"{how_to_write(url)}",
        )
        for url in link_targets(post.body)
        if not link_scheme(url) and attribute_value(url).strip()[:1].isalnum()
    ]


def _listed(headings: dict[str, str]) -> str:
    """The headings, as “Findings” (#user-content-findings) and “Officers”
    (#user-content-officers); "" for none."""
    named = [f"“{words}” (#{id})" for id, words in headings.items()]
    return " and ".join([", ".join(named[:-1]), named[-1]] if len(named) > 1 else named)


def check_links_within_the_post(post: Post) -> list[Problem]:
    """A link to a heading the post does not have ("#findnigs", or a heading
    renamed since) does nothing on the page, and from the email opens the page
    at its top; a footnote cited and not written reaches readers as "[^2]", one
    written and not cited does not reach them at all, and of one written twice
    they get the last alone."""
    ids = {html.unescape(id) for id in _ID.findall(post.body_html)}
    if headings := _listed(_headings(post.body_html)):
        listed = f"this post's headings are {headings}."
    else:
        listed = "this post has no headings."
    # A browser reads the link's place with its %-escapes undone ("#ŵyr").
    nowhere = {
        target: _words(text)[:80]
        for target, text in LINK_WITHIN.findall(post.body_html)
        if unquote(html.unescape(target)) not in ids
    }
    notes = notes_astray(post.body)
    return [
        *(
            Problem(
                Level.WARNING,
                f"The link “{text}” goes to #{unquote(html.unescape(target))}, "
                f"which is no heading of this post, so it takes readers nowhere: "
                f"{listed}",
            )
            for target, text in nowhere.items()
        ),
        *(
            Problem(
                Level.WARNING,
                f"The note [^{label}] is cited but never written, so readers see "
                f"“[^{label}]” as typed: write it below the text, as "
                f"“[^{label}]: the source”.",
            )
            for label in notes.unwritten
        ),
        *(
            Problem(
                Level.WARNING,
                f"The note [^{label}] is written but cited nowhere, so readers "
                f"never see it: cite it in the text as “[^{label}]”, or delete it.",
            )
            for label in notes.uncited
        ),
        *(
            Problem(
                Level.WARNING,
                f"The note [^{label}] is written more than once, and readers see "
                f"only the last: give each its own label (“[^{label}]”, "
                f"“[^{label}b]”) and cite each, or delete the one not wanted.",
            )
            for label in notes.written_twice
        ),
    ]


def _file_exists(path: str) -> bool | None:
    """Whether an uploaded or static file is at the path, served by nginx or
    whitenoise before any view; None for a path outside both."""
    try:
        if path.startswith(settings.MEDIA_URL):
            return default_storage.exists(path.removeprefix(settings.MEDIA_URL))
        if path.startswith(settings.STATIC_URL):
            return bool(finders.find(path.removeprefix(settings.STATIC_URL)))
    except (SuspiciousFileOperation, OSError, ValueError):  # "..", too long, a NUL
        return False
    return None


# The site's pages that show what their address names: one whose post, category,
# tag, place or organisation is not there, or not for readers (a post not live, a
# listing no live post is filed under), is "Page not found", though its address
# has the right shape. A page added with a slug in its address belongs here
# (test_a_link_to_any_page_whose_slug_names_nothing_is_a_warning tries each).
_SHOWN_BY_SLUG: dict[str, type[Post | Listed]] = {
    "posts:detail": Post,
    # A GET redirects to the post's comments: its page, or its "Page not found".
    "comments:create": Post,
    # (The reply page, which names a comment of the post too, is a REPLY.)
    "posts:category": Category,
    "posts:category_feed": Category,
    "posts:tag": Tag,
    "posts:area": Area,
    "posts:region": Region,
    "posts:organisation": Organisation,
}
MONTH = "month"  # an archive's, by its first day
PageKind = type[Post | Listed] | str
# The desk's addresses, which answer readers with its login page.
DESK = "desk"
# An emailed link's page, its address carrying one reader's token (a confirmation,
# the preference centre, an unsubscribe, a counted link): others following it get
# an error, or act as that reader.
EMAILED = "emailed"
# A comment's reply page, by its post's slug and the comment's id: there only for
# a comment readers see, on that post.
REPLY = "reply"
# The outbox of a development machine (DEBUG only): it opens on the author's
# machine, and readers get "Page not found".
DEVELOPMENT = "development"
_DEVELOPMENT_ONLY = {"newsletter:outbox", "newsletter:outbox_message"}
# The inspections' index, whose filters (its query) are asked of its own form.
INSPECTIONS = "inspections"


def _page_or_what_it_shows(
    path: str,
) -> bool | str | tuple[PageKind, str | datetime.date | tuple[str, int]]:
    """What the page at the path shows, as (its kind, its name), to be asked of the
    database with the other links to pages of that kind; DESK for the desk's,
    EMAILED for an emailed link's, DEVELOPMENT for the outbox's, INSPECTIONS for
    the inspections' index; else whether a page is there. Without its last
    "/", as Django's APPEND_SLASH redirects to the address with it (only there:
    "/posts/kent//" is no page)."""
    slash_added = settings.APPEND_SLASH and not path.endswith("/")
    for candidate in [path, path + "/"] if slash_added else [path]:
        try:
            found = resolve(candidate)
        except Resolver404:
            continue
        if candidate.startswith(reverse("admin:index")):
            return DESK
        if "token" in found.kwargs:
            return EMAILED
        if found.view_name in _DEVELOPMENT_ONLY:
            return DEVELOPMENT
        if found.view_name == "posts:inspections":
            return INSPECTIONS
        if found.view_name == "comments:reply":
            return REPLY, (found.kwargs["slug"], found.kwargs["comment_id"])
        if (kind := _SHOWN_BY_SLUG.get(found.view_name)) is not None:
            return kind, found.kwargs["slug"]
        if found.view_name == "posts:archive":
            try:
                return MONTH, datetime.date(
                    int(found.kwargs["year"]), int(found.kwargs["month"]), 1
                )
            except ValueError:  # month 13, year 0: as the archive's own 404
                return False
        return True
    return False


def _live_slugs(slugs: set[str]) -> tuple[set[str], set[str]]:
    """Of these slugs, those a post has, and those a post readers can see has:
    its own or one it had before (FormerSlug), both of which its page answers
    to. One question for them all."""
    rows = (
        Post.objects.filter(Q(slug__in=slugs) | Q(former_slugs__slug__in=slugs))
        .annotate(live=Exists(Post.objects.published().filter(pk=OuterRef("pk"))))
        .values_list("slug", "former_slugs__slug", "live")
    )
    known, live = set(), set()
    for slug, former_slug, is_live in rows:
        known |= {slug, former_slug}
        if is_live:
            live |= {slug, former_slug}
    return known, live


def _there_and_live(kind: PageKind, names: set, post: Post) -> tuple[set, set]:
    """Of these names of pages of a kind, those that name something, and those
    readers can see, the post itself counted as live: publishing it puts its page,
    its month and what it is filed under on the site. One question for them all."""
    if kind is Post:
        known, live = _live_slugs(names - {post.slug})
        return known, live | {post.slug}
    if kind == REPLY:
        ids = {pk for _, pk in names if is_row_id(pk)}  # past a bigint: none
        shown = Comment.objects.shown().filter(pk__in=ids)
        rows = shown.values_list("pk", "post__slug", "post__former_slugs__slug")
        there = {(slug, pk) for pk, *slugs in rows for slug in slugs}
        return there, there
    if kind == MONTH:
        months = Q()
        for month in names:
            months |= Q(published_at__year=month.year, published_at__month=month.month)
        published = Post.objects.published().filter(months)
        live = {*published.dates("published_at", "month"), _month_of(post)}
        return live, live
    goes_live = Post.objects.published() | Post.objects.filter(pk=post.pk)
    rows = list(
        kind.objects.filter(slug__in=names)
        .annotate(live=kind.objects.filed_under(goes_live))
        .values_list("slug", "live")
    )
    return {slug for slug, _ in rows}, {slug for slug, is_live in rows if is_live}


def _month_of(post: Post) -> datetime.date:
    """The month whose archive lists the post once it is published (this one, for
    a post not yet given a time)."""
    return timezone.localdate(post.published_at).replace(day=1)


def _inspections_refused(url: str, post: Post) -> str:
    """The filters of a link to the inspections' index that readers cannot choose
    ("region=nowhere, rating=brilliant"), which its form answers with an error and
    no inspections; "" for none. The post itself counted as published: publishing
    it puts its inspections' regions and organisations on the index."""
    query = QueryDict(urlsplit(as_a_browser_reads(url)).query)
    published = Post.objects.published() | Post.objects.filter(pk=post.pk)
    form = InspectionFilter(query or None, published=published)
    if not form.is_bound or form.is_valid():
        return ""
    return ", ".join(f"{name}={form.data[name]}" for name in form.errors)


# The ids a post's page has of its own, around its body's (which are under
# ID_PREFIX): test_a_link_to_any_place_a_posts_page_has_is_no_warning reads them
# off a page, so that one added to its templates is not warned of.
_POST_PAGE_IDS = re.compile(
    r"content|comments|comments-heading|updates-heading|related-heading"
    r"|subscribe-heading|inspection-[0-9]+|id_\w+"
)
# A comment's place on its post's page (Comment.get_absolute_url), there only for
# a comment readers see.
_COMMENT_PLACE = re.compile(r"comment-([0-9]+)")


def _places_not_there(places: dict[str, tuple[str, str]], post: Post) -> dict:
    """Of links to places in posts' bodies ({link: (the post's slug, the
    place)}), those whose post has no such place, each with what to say of the
    post's headings instead. A browser lands at the page's top for those. One
    question for all the posts but this one."""
    slugs = {slug for slug, _ in places.values()} - {post.slug}
    bodies = {post.slug: post.body_html}
    rows = Post.objects.filter(Q(slug__in=slugs) | Q(former_slugs__slug__in=slugs))
    for slug, former_slug, body_html in rows.values_list(
        "slug", "former_slugs__slug", "body_html"
    ):
        bodies[slug] = bodies[former_slug] = body_html
    not_there = {}
    for url, (slug, place) in places.items():
        if place in {ID_PREFIX + html.unescape(id) for id in _ID.findall(bodies[slug])}:
            continue
        headings = _headings(bodies[slug])
        if place in headings:  # written without ID_PREFIX, as within a post
            instead = f"its heading “{headings[place]}” is at #{ID_PREFIX}{place}."
        elif listed := _listed(
            {ID_PREFIX + id: words for id, words in headings.items()}
        ):
            instead = f"its headings are {listed}."
        else:
            instead = "it has no headings."
        not_there[url] = instead
    return not_there


def _path_from_the_post(url: str, post: Post) -> str | None:
    """The path of this site a link relative to the post's page goes to ("../kent/"
    is /posts/kent/), as on its page and in its email (markdown.whole_links); None
    for another link, and for one under the post ("kent/"), which
    check_links_under_the_post tells of."""
    read = as_a_browser_reads(url)
    if link_scheme(read) or read[:1] in ("", "/", "#") or read[:1].isalnum():
        return None
    try:
        return site_path(urljoin(post.get_absolute_url(), read))
    except NoReverseMatch:  # the editor's preview, its slug not yet a slug
        return None


def check_links_to_the_site(post: Post) -> list[Problem]:
    """A link to a page of this site that is not there (a post's address
    mistyped, an image never uploaded, a category with no post live) or to a post
    readers cannot see (a draft, one scheduled or taken down) gets readers "Page
    not found". The link checker leaves these alone, the inspections' report
    links among them (links.site_path, one rule for both): this asks the site's
    own addresses, and the database once for each kind of page they show."""
    found = {}  # each link to the site: whether a page is there, or what it shows
    refused = {}  # each link to the inspections' index: what readers cannot choose
    for url in dict.fromkeys([*link_targets(post.body), *report_links(post)]):
        path = site_path(url) or _path_from_the_post(url, post)
        if path is not None:
            file = _file_exists(path)
            found[url] = _page_or_what_it_shows(path) if file is None else file
            if found[url] == INSPECTIONS:
                refused[url] = _inspections_refused(url, post)
    shown = defaultdict(set)
    place_of = {}  # each link to a post's page with a #place: the place
    for url, where in found.items():
        if not isinstance(where, tuple):
            continue
        shown[where[0]].add(where[1])
        if where[0] == REPLY:  # and its post
            shown[Post].add(where[1][0])
        if where[0] is Post and (
            place := unquote(urlsplit(as_a_browser_reads(url)).fragment)
        ):
            place_of[url] = place
            if comment := _COMMENT_PLACE.fullmatch(place):  # asked as its reply page
                shown[REPLY].add((where[1], row_id_in(comment[1])))
    known, live = set(), set()
    for kind, names in shown.items():
        there, seen = _there_and_live(kind, names, post)
        known |= {(kind, name) for name in there}
        live |= {(kind, name) for name in seen}
    for url, where in found.items():
        # A reply page's post not there or not live is what readers meet first.
        is_reply = isinstance(where, tuple) and where[0] == REPLY
        if is_reply and (Post, where[1][0]) not in live:
            found[url] = Post, where[1][0]
    not_there = {}  # each link to a place a live post's page lacks: what to say
    places = {}  # each link to a place in a live post's body: its slug and place
    for url, place in place_of.items():
        slug = found[url][1]
        if (Post, slug) not in live:
            continue
        if comment := _COMMENT_PLACE.fullmatch(place):
            if (REPLY, (slug, row_id_in(comment[1]))) not in live:
                not_there[url] = (
                    "that comment is not on it (held for moderation, marked as "
                    "spam, or of another post)."
                )
        # "#top", with no such id, is the page's top to a browser.
        elif not _POST_PAGE_IDS.fullmatch(place) and place.lower() != "top":
            places[url] = slug, place
    if places:
        not_there |= _places_not_there(places, post)

    def message(url: str, where: bool | str | tuple) -> str:
        if url in not_there:
            return (
                f"The link “{url[:80]}” goes to a place that post's page does not "
                f"have, so readers land at its top: {not_there[url]}"
            )
        if where == DESK:
            # Copied from the desk's address bar, or its "View on site" button.
            return (
                f"The link “{url[:80]}” goes to the desk, which readers cannot "
                f"open (they get its login page): link to the page readers see."
            )
        if where == EMAILED:
            return (
                f"The link “{url[:80]}” is one reader's link from an email, so "
                f"readers following it get an error, or act as that reader: link "
                f"to the page itself."
            )
        if where == INSPECTIONS:
            return (
                f"The link “{url[:80]}” filters the inspections by what readers "
                f"cannot choose ({refused[url][:80]}: none of that name, or none "
                f"with a published post), so they get an error page and no "
                f"inspections: check its address."
            )
        if where == DEVELOPMENT:
            return (
                f"The link “{url[:80]}” goes to the outbox of a development machine, "
                f"which readers get “Page not found” for: link to the page itself."
            )
        if isinstance(where, tuple) and where[0] == REPLY:
            return (
                f"The link “{url[:80]}” goes to the reply page of a comment readers "
                f"cannot see (held for moderation, marked as spam, or not on that "
                f"post), so they are sent to the post's comments, told it is not "
                f"available any more: link to the post's comments instead."
            )
        if where in known and where[0] is Post:
            return (
                f"The link “{url[:80]}” goes to a post readers cannot see (a draft, "
                f"in review, scheduled or taken off the site), so they get “Page "
                f"not found”: publish that post first, or link elsewhere."
            )
        if where in known:
            return (
                f"The link “{url[:80]}” goes to a listing with no published post "
                f"yet, so readers get “Page not found”: publish a post filed under "
                f"it first, or link elsewhere."
            )
        return (
            f"The link “{url[:80]}” leads to nothing on this site, so readers "
            f"get “Page not found” or a broken image: check its address."
        )

    return [
        Problem(Level.WARNING, message(url, where))
        for url, where in found.items()
        if where in (False, DESK, EMAILED, DEVELOPMENT)
        or refused.get(url)
        or url in not_there
        or (isinstance(where, tuple) and where not in live)
    ]


def check_dead_links(post: Post) -> list[Problem]:
    if post.pk is None:
        return []
    linked = web_links(post)
    return [
        Problem(
            Level.WARNING,
            f"The link {check.url} looks dead ({check.detail})."
            if check.outcome == LinkCheck.Outcome.DEAD
            else f"The link {check.url} points at a private or local address "
            f"({check.detail}): readers cannot reach it, and it was not checked.",
        )
        for check in post.link_checks.exclude(outcome=LinkCheck.Outcome.OK)
        if check.url in linked
    ]


def check_excerpt(post: Post) -> list[Problem]:
    if post.excerpt.strip():
        return []
    return [
        Problem(
            Level.WARNING,
            "The excerpt is empty: listings, feeds and email previews show it.",
        )
    ]


def _missing_facts(inspection: Inspection) -> list[str]:
    missing = []
    graded = inspection.published_on is None or inspection.published_on >= GRADED_SINCE
    if inspection.overall == Rating.NARRATIVE and graded:
        missing.append("its rating")
    if inspection.area is None and inspection.type == Inspection.Type.LOCAL:
        missing.append("its area")
    if not inspection.organisations.exists():
        missing.append("the organisation inspected")
    if not inspection.report_url:
        missing.append("the link to the report")
    return missing


def check_inspection_facts(post: Post) -> list[Problem]:
    if post.pk is None:
        return []
    return [
        Problem(
            Level.WARNING,
            f"The inspection “{inspection.title}” lacks {', '.join(missing)}.",
        )
        for inspection in post.inspections.select_related("area").prefetch_related(
            "organisations"
        )
        if (missing := _missing_facts(inspection))
    ]


def check_report_dates(post: Post) -> list[Problem]:
    """Inspection.clean refuses such a date on the inspection's own form; this
    stops a post whose inspection was dated earlier going live before its report
    (the list's Publish action saves no inspection form)."""
    if post.pk is None:
        return []
    last_day = post.last_day_for_its_report()
    return [
        Problem(
            Level.BLOCKING,
            f"The report of “{inspection.title}” comes out on "
            f"{day.day} {day:%B %Y}, after the post would go live: schedule the post "
            f"for that day, or correct the report's date.",
        )
        for inspection in post.inspections.all()
        if (day := inspection.published_on) and day > last_day
    ]


def check_title_unused(post: Post) -> list[Problem]:
    if not Post.objects.filter(title__iexact=post.title).exclude(pk=post.pk).exists():
        return []
    return [
        Problem(
            Level.WARNING,
            f"Another post is already titled “{post.title}”: readers may mix them up.",
        )
    ]


Check = Callable[[Post], list[Problem]]
# Those that read the body (and, once the post is saved, its report links): the
# editor's preview runs them as the author types.
BODY_CHECKS: list[Check] = [
    check_link_schemes,
    check_links_under_the_post,
    check_links_within_the_post,
    check_links_to_the_site,
    check_alt_text,
]
CHECKS: list[Check] = [
    *BODY_CHECKS,
    check_dead_links,
    check_excerpt,
    check_inspection_facts,
    check_report_dates,
    check_title_unused,
]


def post_problems(post: Post, *, checks: list[Check] = CHECKS) -> list[Problem]:
    """Every problem the publication's own checks (or those given) find, blocking
    ones first."""
    problems = [problem for check in checks for problem in check(post)]
    return sorted(problems, key=lambda problem: not problem.blocking)
