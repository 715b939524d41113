from django.urls import path

from . import comment_views, views

app_name = "posts"

urlpatterns = [
    path("", views.home, name="home"),
    path("posts/<slug:slug>/", views.detail, name="detail"),
    path(
        "posts/<slug:slug>/comments/",
        comment_views.comment_create,
        name="comment_create",
    ),
    path(
        "posts/<slug:slug>/comments/<int:comment_id>/reply/",
        comment_views.comment_reply,
        name="comment_reply",
    ),
]
