from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from . import preference_views, views, webhooks
from .admin.view_on_site import view_on_site

newsletter_patterns = [
    path("subscribe/", views.subscribe, name="subscribe"),
    path("subscribe/confirm/<str:token>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path(
        "preferences/email/confirm/<str:token>/",
        preference_views.change_email_confirm,
        name="change_email",
    ),
    path(
        "preferences/once/<str:token>/",
        preference_views.one_time,
        name="one_time",
    ),
    path("preferences/<str:token>/", preference_views.preferences, name="preferences"),
    path(
        "preferences/<str:token>/email/",
        preference_views.change_email_request,
        name="preferences_email",
    ),
    path(
        "preferences/<str:token>/topics/",
        preference_views.topics,
        name="preferences_topics",
    ),
    path(
        "preferences/<str:token>/export/",
        preference_views.export,
        name="preferences_export",
    ),
    path(
        "preferences/<str:token>/delete/",
        preference_views.delete,
        name="preferences_delete",
    ),
    path(
        "comments/data/",
        views.comment_data_request,
        name="comment_data_request",
    ),
    path(
        "comments/data/<str:token>/",
        views.comment_data,
        name="comment_data",
    ),
    path("r/<str:token>/", views.click, name="click"),
    path("outbox/", views.outbox_list, name="outbox"),
    path("outbox/<str:name>/", views.outbox_message, name="outbox_message"),
    path("healthz", views.healthz, name="healthz"),
    path("robots.txt", views.robots, name="robots"),
    # Asked for by every browser (and feed reader) whatever the page links. The
    # icon's name without the hash collectstatic gives it: a browser keeps a
    # permanent redirect for good, and a hashed name changes with the icon.
    path(
        "favicon.ico",
        RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True),
        name="favicon",
    ),
]

urlpatterns = [
    # Before the admin's own: Django's "View on site" asks no permission of the
    # object (newsletter/admin/view_on_site.py).
    path(
        "admin/r/<int:content_type_id>/<path:object_id>/",
        admin.site.admin_view(view_on_site),
    ),
    path("admin/", admin.site.urls),
    # Only the configured provider's, and only with a secret; every other is a 404.
    path("anymail/<str:esp>/tracking/", webhooks.tracking, name="tracking_webhook"),
    path("", include((newsletter_patterns, "newsletter"))),
    path("", include("posts.urls")),
    path("", include("posts.comments.urls")),
]

# With the security headers, wherever the error is raised (views.server_error).
handler400 = "newsletter.views.bad_request"
handler500 = "newsletter.views.server_error"
