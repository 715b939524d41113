from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import comments
from .clients import client_address, client_key
from .comment_models import Comment
from .forms import CommentForm
from .models import Post

HELD_MESSAGE = "Thank you: your comment will appear once the author has approved it."


def _form_page(
    request: HttpRequest,
    post: Post,
    form: CommentForm,
    *,
    status: int = 200,
    replying_to: Comment | None = None,
    problem: str = "",
) -> HttpResponse:
    return render(
        request,
        "posts/comment_form_page.html",
        {
            "post": post,
            "form": form,
            "replying_to": replying_to,
            "problem": problem,
            "comments_open": comments.comments_are_open(post=post),
        },
        status=status,
    )


def _user_agent(request: HttpRequest) -> str:
    # Headers are the client's to fill: keep printable characters only (PostgreSQL
    # refuses NUL in text).
    return "".join(
        ch for ch in request.headers.get("User-Agent", "") if ch.isprintable()
    )


# Comments are anonymous, so a forged cross-site POST gains nothing a direct one
# would not (and meets the same honeypot, limits and moderation); without a CSRF
# token in the form, the post page stays one cacheable page for every reader.
@csrf_exempt
@require_POST
def comment_create(request: HttpRequest, slug: str) -> HttpResponse:
    post = get_object_or_404(Post.objects.published(), slug=slug)
    form = CommentForm(request.POST)
    ip_address = client_address(request) or None
    if comments.comment_rate_limited(client=client_key(request)):
        problem = "You have sent a lot of comments. Please wait an hour and try again."
        return _form_page(request, post, form, status=429, problem=problem)
    if not form.is_valid():
        return _form_page(request, post, form, status=400)
    if form.is_from_a_bot:
        # The same answer as a held comment, so a bot learns nothing.
        messages.info(request, HELD_MESSAGE)
        return redirect(f"{post.get_absolute_url()}#comments")
    data = form.cleaned_data
    try:
        comment = comments.comment_post(
            post=post,
            parent_id=data["parent"],
            name=data["name"],
            email=data["email"],
            website=data["website"],
            body=data["body"],
            ip_address=ip_address,
            user_agent=_user_agent(request),
        )
    except comments.CommentsClosed:
        return _form_page(request, post, form, status=403)
    except comments.ReplyNotPossible:
        problem = "The comment you replied to is not available any more."
        return _form_page(request, post, form, status=400, problem=problem)
    if comment.status == Comment.Status.APPROVED:
        messages.success(request, "Thank you: your comment is published.")
        return redirect(comment.get_absolute_url())
    messages.info(request, HELD_MESSAGE)
    return redirect(f"{post.get_absolute_url()}#comments")


@require_GET
def comment_reply(request: HttpRequest, slug: str, comment_id: int) -> HttpResponse:
    """A page with the reply form, so replying works without JavaScript."""
    post = get_object_or_404(Post.objects.published(), slug=slug)
    replying_to = get_object_or_404(
        Comment.objects.approved().filter(post=post), pk=comment_id
    )
    form = CommentForm(initial={"parent": replying_to.parent_id or replying_to.pk})
    return _form_page(request, post, form, replying_to=replying_to)
