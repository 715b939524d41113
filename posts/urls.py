from django.conf import settings
from django.conf.urls.static import static
from django.contrib.sitemaps.views import sitemap
from django.urls import path, re_path

from . import feeds, views
from .sitemaps import SITEMAPS

app_name = "posts"

urlpatterns = [
    path("", views.home, name="home"),
    path("posts/<slug:slug>/", views.detail, name="detail"),
    path("category/<slug:slug>/", views.category, name="category"),
    path("category/<slug:slug>/feed/", feeds.CategoryFeed(), name="category_feed"),
    path("feed/", feeds.LatestPostsFeed(), name="feed"),
    path("feed/atom/", feeds.LatestPostsAtomFeed(), name="feed_atom"),
    path("sitemap.xml", sitemap, {"sitemaps": SITEMAPS}, name="sitemap"),
    path("tag/<slug:slug>/", views.tag, name="tag"),
    path("area/<slug:slug>/", views.area, name="area"),
    path("region/<slug:slug>/", views.region, name="region"),
    path("organisation/<slug:slug>/", views.organisation, name="organisation"),
    re_path(
        r"^archive/(?P<year>[0-9]{4})/(?P<month>[0-9]{2})/$",
        views.archive,
        name="archive",
    ),
    path("inspections/", views.inspections, name="inspections"),
    path("search/", views.search_page, name="search"),
]

# Uploaded images, in development only (static() adds nothing unless DEBUG is on);
# production's nginx serves MEDIA_ROOT (docker/nginx.conf.template).
urlpatterns += static(
    settings.MEDIA_URL, view=views.uploaded_file, document_root=settings.MEDIA_ROOT
)
