"""/sitemap.xml: posts and every listing page that has something published on it."""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.sitemaps import Sitemap
from django.db.models.functions import Greatest
from django.urls import reverse

from .models import Area, Category, Organisation, Post, Region, Tag


class OnSiteUrl(Sitemap):
    """Locations on SITE_URL, not on the host name the request came in on."""

    def get_protocol(self, protocol=None) -> str:
        return urlsplit(settings.SITE_URL).scheme

    def get_domain(self, site=None) -> str:
        return urlsplit(settings.SITE_URL).netloc


# A post scheduled for later changes what readers see when its time comes, after
# it was last saved.
LAST_CHANGED = Greatest("updated_at", "published_at")


class PostSitemap(OnSiteUrl):
    changefreq = "monthly"

    def items(self):
        return (
            Post.objects.published()
            .only("slug")
            .annotate(last_changed=LAST_CHANGED)
            .order_by("id")
        )

    def lastmod(self, post: Post):
        return post.last_changed


class PagesSitemap(OnSiteUrl):
    """No lastmod, as the feeds send no Last-Modified (posts.feeds): the newest
    live post's date moved back when that post was taken down or deleted, and a
    crawler that read the page with it had no cause to read it again."""

    changefreq = "daily"

    def items(self) -> list[str]:
        return ["posts:home", "posts:inspections"]

    def location(self, name: str) -> str:
        return reverse(name)


class ListingSitemap(OnSiteUrl):
    """The listing pages of one model, for those with a published post on them.
    No lastmod, as the home page has none (PagesSitemap): their newest post's date
    would move back when that post is taken down, deleted or filed elsewhere."""

    changefreq = "weekly"

    def __init__(self, model) -> None:
        self.model = model

    def items(self):
        return self.model.objects.with_published_posts().order_by("slug")


class ArchiveSitemap(OnSiteUrl):
    """The months with a published post, as the home page's archive lists them."""

    changefreq = "monthly"

    def items(self):
        return Post.objects.published().datetimes("published_at", "month")

    def location(self, month) -> str:
        # Four digits, as the home page's links write it (its date filter's "Y"):
        # strftime's %Y writes a year before 1000 short, an address of no month.
        return reverse(
            "posts:archive",
            kwargs={"year": f"{month.year:04d}", "month": f"{month.month:02d}"},
        )


SITEMAPS = {
    "pages": PagesSitemap,
    "posts": PostSitemap,
    "categories": ListingSitemap(Category),
    "tags": ListingSitemap(Tag),
    "areas": ListingSitemap(Area),
    "regions": ListingSitemap(Region),
    "organisations": ListingSitemap(Organisation),
    "archive": ArchiveSitemap,
}
