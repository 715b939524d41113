import calendar
from collections.abc import Sequence
from datetime import date
from urllib.parse import quote, urlencode

from django import forms
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import F, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.static import serve

from . import images, related, search
from .feeds import with_sponsors
from .forms import ReaderForm
from .models import (
    Area,
    Category,
    Inspection,
    Organisation,
    Post,
    PostQuerySet,
    Rating,
    Region,
    Tag,
)

POSTS_PER_PAGE = 10
INSPECTIONS_PER_PAGE = 20
SEARCH_RESULTS_PER_PAGE = 10
# What a listing's <meta name="description"> starts with: each says what it lists,
# so that search engines do not show one snippet under every listing.
ON_INSPECTIONS = "Posts on inspections of probation services"
# The characters of a <meta name="description"> that search engines show.
DESCRIPTION_LENGTH = 160


def meta_description(text: str, *, page: Page | None = None) -> str:
    """A page's <meta name="description"> (and a post's og: and twitter:
    description, which link previews show), cut after a whole word to what search
    engines show: cut mid-word, a list of organisations ended in half a name.
    A listing's later pages say which page they are, after the cut so that it is
    always shown: with page 1's words, search engines took them for copies of it."""
    note = (
        f" Page {page.number} of {page.paginator.num_pages}."
        if page is not None and page.number > 1
        else ""
    )
    length = DESCRIPTION_LENGTH - len(note)
    text = " ".join(text.split())
    if len(text) > length:
        kept = text[: length - 1]  # and the ellipsis
        if text[length - 1] != " ":
            # The cut fell in a word: drop its start, unless it is the only word.
            kept = kept.rpartition(" ")[0] or kept
        text = kept.rstrip(" ,;:") + "…"
    return text + note


def home(request: HttpRequest) -> HttpResponse:
    page = Paginator(Post.objects.published().for_listing(), POSTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    # Sponsored content says so wherever it is shown: a listing too.
    page.object_list = with_sponsors(page.object_list)
    months = Post.objects.published().datetimes("published_at", "month", order="DESC")
    return render(
        request,
        "posts/home.html",
        {
            "page": page,
            "description": meta_description(
                "The latest posts on inspections of probation and youth justice "
                "services in England and Wales.",
                page=page,
            ),
            "months": months,
            "canonical_url": listing_canonical_url(request, page),
        },
    )


def listing_canonical_url(
    request: HttpRequest, page, *, filters: dict[str, str] | None = None
) -> str:
    """The address of the page of a listing shown: a page number mistyped or out
    of range shows page 1 or the last page, and names it, not a copy of it; the
    inspections' filters as chosen, those left at "Any" and anything else left out."""
    query = {**(filters or {}), **({"page": page.number} if page.number > 1 else {})}
    return settings.SITE_URL + request.path + (f"?{urlencode(query)}" if query else "")


def detail(request: HttpRequest, slug: str) -> HttpResponse:
    posts = related.with_features(
        Post.objects.published().select_related("author")
    ).prefetch_related("inspections__ratings", "updates")
    post = posts.filter(slug=slug).first()
    if post is None:
        # An address the post had before the author changed its slug.
        moved = get_object_or_404(Post.objects.published(), former_slugs__slug=slug)
        # With the link's own query string (a campaign's utm parameters): only
        # the path is ours to change, and it stays on this site.
        query = request.META.get("QUERY_STRING", "")
        response = redirect(
            moved.get_absolute_url() + (f"?{query}" if query else ""), permanent=True
        )
        # Permanent for search engines, but asked again by browsers, which keep a
        # 301 for good otherwise: the address may be the post's own again (renamed
        # back: a redirect loop) or another post's (FormerSlug).
        patch_cache_control(response, no_cache=True)
        return response
    url = settings.SITE_URL + post.get_absolute_url()
    return render(
        request,
        "posts/detail.html",
        {
            "post": post,
            # Its excerpt, or its opening words as its email sums it up: its
            # title again was what a link preview already says above it.
            "description": meta_description(post.summary),
            "canonical_url": url,
            "related_posts": related.related_posts(post),
            "sponsors": post.sponsors(),
            "share_links": share_links(url=url, title=post.title),
            "featured_srcset": images.srcset(
                post.featured_image, post.featured_image_width
            ),
            "featured_url": (
                settings.SITE_URL + post.featured_image.url
                if post.featured_image
                else ""
            ),
        },
    )


def share_links(*, url: str, title: str) -> list[tuple[str, str]]:
    """Plain links to each service's share page: no scripts, no tracking pixels."""
    return [
        # Mail clients read "+" literally (RFC 6068): spaces must be %20.
        (
            "Email",
            "mailto:?" + urlencode({"subject": title, "body": url}, quote_via=quote),
        ),
        (
            "LinkedIn",
            "https://www.linkedin.com/sharing/share-offsite/?"
            + urlencode({"url": url}),
        ),
        ("X", "https://x.com/intent/post?" + urlencode({"url": url, "text": title})),
        (
            "Facebook",
            "https://www.facebook.com/sharer/sharer.php?" + urlencode({"u": url}),
        ),
    ]


def _listing(
    request: HttpRequest,
    posts,
    *,
    heading: str,
    description: str,
    intro: str = "",
    intro_links: Sequence[Area | Organisation] = (),
    feed_url: str = "",
) -> HttpResponse:
    page = Paginator(posts.for_listing(), POSTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    page.object_list = with_sponsors(page.object_list)
    return render(
        request,
        "posts/listing.html",
        {
            "page": page,
            "heading": heading,
            "description": meta_description(description, page=page),
            "intro": intro,
            # The places or organisations the intro names, each a list item and a
            # link: a name may hold a comma ("Leicester, Leicestershire and
            # Rutland"), and joined by commas they read as more than there are.
            "intro_links": intro_links,
            "feed_url": feed_url,
            "canonical_url": listing_canonical_url(request, page),
        },
    )


# A category, tag, area, region or organisation with no published post is a 404,
# as an empty topic would be: one made for a post not yet live would otherwise tell
# which inspection's report is next (ListedQuerySet.with_published_posts).


def category(request: HttpRequest, slug: str) -> HttpResponse:
    category = get_object_or_404(Category.objects.with_published_posts(), slug=slug)
    return _listing(
        request,
        Post.objects.published().filter(categories=category),
        heading=category.name,
        description=f"{ON_INSPECTIONS} filed under {category.name}.",
        feed_url=reverse("posts:category_feed", kwargs={"slug": category.slug}),
    )


def tag(request: HttpRequest, slug: str) -> HttpResponse:
    tag = get_object_or_404(Tag.objects.with_published_posts(), slug=slug)
    return _listing(
        request,
        Post.objects.published().filter(tags=tag),
        heading=f"Posts tagged “{tag.name}”",
        description=f"{ON_INSPECTIONS} tagged “{tag.name}”.",
    )


def area(request: HttpRequest, slug: str) -> HttpResponse:
    area = get_object_or_404(
        Area.objects.with_published_posts().select_related("region"), slug=slug
    )
    return _listing(
        request,
        Post.objects.published().in_area(area),
        heading=f"Inspections in {area.name}",
        description=f"{ON_INSPECTIONS} in {area.name}, {area.region.name}.",
        intro=f"{area.name} is in the {area.region.name} region.",
    )


def region(request: HttpRequest, slug: str) -> HttpResponse:
    region = get_object_or_404(Region.objects.with_published_posts(), slug=slug)
    areas = list(region.areas.with_published_posts())
    return _listing(
        request,
        Post.objects.published().in_region(region),
        heading=f"Inspections in the {region.name} region",
        description=f"{ON_INSPECTIONS} in the {region.name} region.",
        intro="Areas in this region:" if areas else "",
        intro_links=areas,
    )


def organisation(request: HttpRequest, slug: str) -> HttpResponse:
    organisation = get_object_or_404(
        Organisation.objects.with_published_posts(), slug=slug
    )
    owned = list(organisation.owned.with_published_posts())
    owned_names = ", ".join(owned_one.name for owned_one in owned)
    return _listing(
        request,
        Post.objects.published().about_organisation(organisation),
        heading=organisation.name,
        description=(
            f"Posts on inspections of {organisation.name} and of {owned_names}."
            if owned
            else f"Posts on inspections of {organisation.name}."
        ),
        intro=(
            f"{organisation.get_kind_display()}. Includes inspections of:"
            if owned
            else f"{organisation.get_kind_display()}."
        ),
        intro_links=owned,
    )


def archive(request: HttpRequest, year: str, month: str) -> HttpResponse:
    try:
        first = date(int(year), int(month), 1)  # also refuses year 0000
    except ValueError:
        raise Http404("No such month.") from None
    posts = Post.objects.published().filter(
        published_at__year=first.year, published_at__month=first.month
    )
    # As a category or a place without a live post: every month of years 1 to
    # 9999 was an empty page for crawlers, and the home page links only to these.
    if not posts.exists():
        raise Http404("Nothing published that month.")
    return _listing(
        request,
        posts,
        heading=f"Posts from {calendar.month_name[first.month]} {first.year}",
        description=(
            f"{ON_INSPECTIONS} published in "
            f"{calendar.month_name[first.month]} {first.year}."
        ),
    )


class InspectionFilter(ReaderForm):
    # A ReaderForm: a rating refused is quoted in its error, shown without the
    # control characters HTML forbids in a page.
    region = forms.ModelChoiceField(
        Region.objects.none(), to_field_name="slug", required=False, empty_label="Any"
    )
    organisation = forms.ModelChoiceField(
        Organisation.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="Any",
    )
    owner = forms.ModelChoiceField(
        Organisation.objects.none(),
        to_field_name="slug",
        required=False,
        empty_label="Any",
        label="Owner or partner",
    )
    rating = forms.ChoiceField(
        choices=[("", "Any"), *Rating.choices], required=False, label="Overall rating"
    )

    def __init__(self, *args, published: PostQuerySet | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Only those with a published post, as their pages; made per form, as
        # "published" is as of now. One named that has none is a 400, as one
        # that does not exist: a draft's provider is not to be found this way.
        # (The checks before publishing count the post checked as published.)
        published = Post.objects.published() if published is None else published
        organisations = Organisation.objects.filter(
            Organisation.objects.filed_under(published)
        )
        self.fields["region"].queryset = Region.objects.filter(
            Region.objects.filed_under(published)
        )
        self.fields["organisation"].queryset = organisations.exclude(
            kind=Organisation.Kind.OWNER
        )
        self.fields["owner"].queryset = organisations.filter(
            kind=Organisation.Kind.OWNER
        )


def inspections(request: HttpRequest) -> HttpResponse:
    """Every inspection the publication has covered, filtered by the reader's choice.

    A filter value that names nothing gets the form back with its error and a 400.
    """
    form = InspectionFilter(request.GET or None)
    found = (
        Inspection.objects.of_published_posts()
        .select_related("post", "area__region")
        # Each row links to its post: its text is no part of the table.
        .defer(*(f"post__{field}" for field in Post.TEXT_FIELDS))
        .prefetch_related(
            Prefetch(
                "organisations",
                queryset=Organisation.objects.exclude(kind=Organisation.Kind.OWNER),
            )
        )
        # Newest report first, one not yet dated last on every database.
        .order_by(F("published_on").desc(nulls_last=True), "-id")
    )
    status = 200
    chosen = ""
    filters = {}
    if form.is_bound and not form.is_valid():
        status = 400
        found = found.none()
    elif form.is_bound:
        choice = form.cleaned_data
        chosen = _inspections_chosen(choice)
        filters = {
            name: getattr(value, "slug", value)
            for name, value in choice.items()
            if value
        }
        if choice["region"]:
            found = found.filter(area__region=choice["region"])
        if choice["organisation"]:
            found = found.filter(organisations=choice["organisation"])
        if choice["owner"]:
            found = found.filter(
                Q(organisations=choice["owner"])
                | Q(organisations__owners=choice["owner"])
            )
        if choice["rating"]:
            found = found.filter(overall=choice["rating"])
        found = found.distinct()
    page = Paginator(found, INSPECTIONS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "posts/inspections.html",
        {
            "form": form,
            "page": page,
            "chosen": chosen,
            "description": meta_description(
                f"Inspections {chosen} that we have reported on, newest first."
                if chosen
                else "Every inspection of probation and youth justice services we "
                "have reported on, newest first, by region, organisation and rating.",
                page=page,
            ),
            # A 400 (a filter naming nothing) is no page of the index to name.
            "canonical_url": (
                listing_canonical_url(request, page, filters=filters)
                if status == 200
                else ""
            ),
        },
        status=status,
    )


def _inspections_chosen(choice: dict) -> str:
    """The reader's filters in words, for the page's title and description:
    a filtered page shared, or found by a search engine, says what it lists
    ("of Nacro and what it owned in the East of England region, rated
    Inadequate"); "" for none."""
    words = []
    if choice["organisation"]:
        words.append(f"of {choice['organisation'].name}")
    if choice["owner"]:
        words.append(f"of {choice['owner'].name} and what it owned")
    if choice["region"]:
        words.append(f"in the {choice['region'].name} region")
    chosen = " ".join(words)
    if choice["rating"]:
        rated = f"rated {Rating(choice['rating']).label}"
        chosen = f"{chosen}, {rated}" if chosen else rated
    return chosen


def search_page(request: HttpRequest) -> HttpResponse:
    query = search.query_text(request.GET.get("q", ""))
    terms = search.SearchQueryText.parse(query)
    ids = search.ranked_post_ids(terms)
    page = Paginator(ids, SEARCH_RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    results = search.search_results(terms, list(page.object_list)) if ids else []
    with_sponsors(result.post for result in results)
    too_common = bool(terms) and not ids and search.only_common_words(terms)
    # The pages' links carry the query as searched, not as typed: the page is the
    # same however the words were typed, and cached once (newsletter/pagecache.py).
    page_query = QueryDict(mutable=True)
    page_query["q"] = query
    # What a shared link's preview says: that posts were found only when they were.
    if results:
        description = f"{ON_INSPECTIONS} found for “{query}”, best first."
    elif query:
        description = (
            f"No posts on inspections of probation services found for “{query}”."
        )
    else:
        description = (
            "Search the posts on inspections of probation services by "
            "place, organisation, finding or word."
        )
    return render(
        request,
        "posts/search.html",
        {
            "query": query,
            "description": meta_description(description, page=page),
            "asked": "q" in request.GET,
            "has_words": bool(terms),
            "max_results": search.MAX_RESULTS,
            "too_common": too_common,
            "page": page,
            "page_query": page_query,
            "results": results,
        },
    )


def uploaded_file(request: HttpRequest, path: str, document_root: str) -> HttpResponse:
    """An uploaded image, in development only (posts/urls.py; production's nginx
    serves them): Django's own view, but an address too long for the file system
    is a 404, where the view's question to the disk ("File name too long") was a
    500."""
    try:
        return serve(request, path, document_root=document_root)
    except OSError as exc:
        raise Http404("No such file.") from exc
