from django.urls import path

from . import views

app_name = "comments"

urlpatterns = [
    path("posts/<slug:slug>/comments/", views.comment_create, name="create"),
    path(
        "posts/<slug:slug>/comments/<int:comment_id>/reply/",
        views.comment_reply,
        name="reply",
    ),
    path("comments/confirm/<str:token>/", views.comment_confirm, name="confirm"),
]
