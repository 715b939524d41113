from django.contrib import admin
from django.urls import include, path

from . import views

newsletter_patterns = [
    path("subscribe/", views.subscribe, name="subscribe"),
    path("subscribe/confirm/<str:token>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("outbox/", views.outbox_list, name="outbox"),
    path("outbox/<str:name>/", views.outbox_message, name="outbox_message"),
    path("healthz", views.healthz, name="healthz"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include((newsletter_patterns, "newsletter"))),
    path("", include("posts.urls")),
]
