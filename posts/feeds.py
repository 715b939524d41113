"""RSS 2.0 and Atom feeds of published posts, site-wide and per category.

Links are absolute on SITE_URL, as in emails, rather than on whatever host name the
request came in on.
"""

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.syndication.views import Feed
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import (
    get_conditional_response,
    patch_cache_control,
    set_response_etag,
)
from django.utils.feedgenerator import Atom1Feed

from .markdown import alignment_inline, whole_links
from .models import Category, Inspection, Post, Sponsorship

FEED_SIZE = 20
# What XML 1.0 cannot hold (its Char production): C0 controls but tab, LF and CR,
# and U+FFFE and U+FFFF. Django's feed writer raises on the controls.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def absolute(path: str) -> str:
    return settings.SITE_URL + path


def with_sponsors(posts: Iterable[Post]) -> list[Post]:
    """The posts, each with the sponsors its page names (`sponsors_shown`, as
    Post.sponsors), read in one statement for the whole feed, listing or page
    of search results."""
    posts = list(posts)
    sponsors = Sponsorship.objects.of_posts(
        {post.pk: post.first_seen_on() for post in posts}
    )
    for post in posts:
        post.sponsors_shown = sponsors.get(post.pk, [])
    return posts


class LatestPostsFeed(Feed):
    title = "On Probation"
    description = "Independent reporting on probation inspections in England and Wales."
    language = "en-gb"
    # The feed's own author, for the entries of posts without one (an account
    # gone): Atom requires one or the other.
    author_name = "On Probation"

    def __call__(self, request, *args, **kwargs):
        response = super().__call__(request, *args, **kwargs)
        # Django's Last-Modified is the newest entry's date: a post taken down or
        # deleted moves it back, and a reader sending only If-Modified-Since was
        # told 304 and showed the post for ever. A date that only moves forward
        # would have to see deletions, corrections and renamed categories too;
        # without one, such a reader gets the whole feed, which the server renders
        # for its ETag on every poll anyway.
        response.headers.pop("Last-Modified", None)
        # Readers poll: a feed unchanged since the last poll is a 304 (its ETag,
        # a hash of the very bytes), and every poll asks (no-cache).
        patch_cache_control(response, no_cache=True)
        # Not Django's conditional_page, which leaves HEAD alone (a HEAD response
        # usually has no body to hash): the feed is rendered whole for a HEAD too,
        # the server dropping the body, so a reader's HEAD gets the ETag and the
        # 304 its GET would.
        set_response_etag(response)
        return get_conditional_response(
            request, etag=response.get("ETag"), response=response
        )

    def link(self) -> str:
        return absolute(reverse("posts:home"))

    def get_feed(self, obj, request):
        # The desk saves what an author pastes (a word processor's vertical tabs
        # and form feeds, &#1; in raw HTML), and a page or an email shows it: only
        # the feed cannot, so it leaves those characters out, of every text at once.
        feed = super().get_feed(obj, request)
        for fields in [feed.feed, *feed.items]:
            for name, value in fields.items():
                if isinstance(value, str):
                    fields[name] = _NOT_XML.sub("", value)
                elif isinstance(value, list | tuple):  # categories
                    fields[name] = [
                        _NOT_XML.sub("", v) if isinstance(v, str) else v for v in value
                    ]
        return feed

    def feed_url(self) -> str:
        return absolute(reverse("posts:feed"))

    # The whole post, and a correction with it: a reader reads the entry, not the
    # page, and an entry without it went on saying what the post got wrong.
    description_template = "posts/feed_entry.html"

    def get_context_data(self, **kwargs) -> dict:
        # Its links whole, as in an email: a feed reader has no page to resolve
        # "/media/…" or "../kent/" against, and showed them broken. Nor has it the
        # site's stylesheet, which aligns a table's figures.
        post = kwargs["item"]
        page_url = self.item_link(post)
        # Opened as its page opens: its sponsors (sponsored content says so
        # wherever it is shown, a feed reader too), its featured image, then the
        # inspection's facts (without them a feed reader learnt the rating only if
        # the body said it).
        opening = (
            render_to_string("posts/_sponsors.html", {"sponsors": post.sponsors_shown})
            if post.sponsors_shown
            else ""
        )
        opening += render_to_string("posts/_featured_image.html", {"post": post})
        opening += render_to_string("posts/_facts.html", {"post": post})
        body_html = whole_links(post.body_html, page_url=page_url)
        return {
            **super().get_context_data(**kwargs),
            "opening_html": whole_links(opening, page_url=page_url),
            "body_html": alignment_inline(body_html),
        }

    def posts(self):
        return Post.objects.published().prefetch_related(
            "updates",
            Prefetch(
                "inspections",
                queryset=Inspection.objects.select_related("area__region"),
            ),
            "inspections__organisations__owners",
            "inspections__ratings",
        )

    def items(self):
        return with_sponsors(self.posts().for_listing()[:FEED_SIZE])

    def item_title(self, post: Post) -> str:
        return post.title

    def item_link(self, post: Post) -> str:
        return absolute(post.get_absolute_url())

    def item_guid(self, post: Post) -> str:
        # Not the address, which changes with the slug: a feed reader would show
        # the post again as a new one. A tag URI (RFC 4151) of the post's row.
        host = urlsplit(settings.SITE_URL).hostname
        return f"tag:{host},{post.created_at:%Y-%m-%d}:post:{post.pk}"

    item_guid_is_permalink = False

    def item_pubdate(self, post: Post):
        return post.published_at

    def item_updateddate(self, post: Post):
        # When readers last had something new in the entry: an update or a
        # correction (prefetched). Not the post's last save (updated_at): a save
        # at the desk that changed nothing had feed readers mark it as updated.
        return max(
            [post.published_at]
            + [update.saved_at for update in post.updates.all() if update.saved_at]
        )

    def item_author_name(self, post: Post) -> str | None:
        return post.byline or None

    def item_categories(self, post: Post) -> list[str]:
        return [category.name for category in post.categories.all()]


class LatestPostsAtomFeed(LatestPostsFeed):
    feed_type = Atom1Feed
    subtitle = LatestPostsFeed.description

    def feed_url(self) -> str:
        return absolute(reverse("posts:feed_atom"))


class CategoryFeed(LatestPostsFeed):
    def get_object(self, request, slug: str) -> Category:
        # As its page (posts.views.category): none until a post in it is live.
        return get_object_or_404(Category.objects.with_published_posts(), slug=slug)

    def title(self, category: Category) -> str:
        return f"{category.name} — On Probation"

    def description(self, category: Category) -> str:
        return f"Posts filed under {category.name}."

    def link(self, category: Category) -> str:
        return absolute(category.get_absolute_url())

    def feed_url(self, category: Category) -> str:
        return absolute(reverse("posts:category_feed", kwargs={"slug": category.slug}))

    def items(self, category: Category):
        return with_sponsors(
            self.posts().filter(categories=category).for_listing()[:FEED_SIZE]
        )
