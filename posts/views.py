from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import Post

POSTS_PER_PAGE = 10


def home(request: HttpRequest) -> HttpResponse:
    posts = Post.objects.published().select_related("author")
    page = Paginator(posts, POSTS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "posts/home.html", {"page": page})


def detail(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post.objects.published(), slug=slug)
    return render(request, "posts/detail.html", {"post": post})
