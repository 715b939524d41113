from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import (
    require_http_methods,
    require_safe,
)

from posts.clients import client_address, client_key
from posts.models import Post
from posts.validators import row_id_in

from . import services
from .forms import CommentForm
from .models import Comment

HELD_MESSAGE = "Thank you: your comment will appear once the author has approved it."
# Set once the commenter follows the emailed link: it names the address this
# browser proved, so that commenter's later comments from it skip moderation.
VERIFIED_COOKIE = "comment_verified"
VERIFIED_COOKIE_SALT = "comments.verified"
VERIFIED_COOKIE_MAX_AGE_SECONDS = 365 * 86400


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
            "replying_to": replying_to or _replied_to(post, form),
            "problem": problem,
            "comments_open": services.comments_are_open(post=post),
        },
        status=status,
    )


def _too_many(
    request: HttpRequest, post: Post, form: CommentForm, *, problem: str
) -> HttpResponse:
    # The form comes back filled in, to send once the hour is over.
    response = _form_page(request, post, form, status=429, problem=problem)
    # As the subscribe form's answer says it: for clients and proxies that
    # read the header rather than the page.
    response["Retry-After"] = str(services.RATE_LIMIT_WINDOW_SECONDS)
    return response


def _replied_to(post: Post, form: CommentForm) -> Comment | None:
    """The comment a reply sent back with a problem answers, so that its page is
    still headed as a reply to it and quotes it."""
    parent = row_id_in(str(form.data.get("parent", "")))
    if parent is None:
        return None
    return Comment.objects.shown().filter(post=post, pk=parent).first()


def _published_post(slug: str) -> Post | None:
    # The form and reply links on a page opened before the author changed the
    # post's address name its former one: the reader's comment still reaches it.
    post = Post.objects.published().filter(slug=slug).first()
    return post or Post.objects.published().filter(former_slugs__slug=slug).first()


def _post_not_open(request: HttpRequest, form: CommentForm) -> HttpResponse:
    """The answer to a comment on a post that is not published: taken down while
    the reader wrote, or never there. The 404 the post's own page now gives, with
    the reader's text to keep; the same page either way, and without the post's
    title, so that it tells nobody a draft is behind the address."""
    reply = row_id_in(str(form.data.get("parent", ""))) is not None
    return render(
        request,
        "posts/comment_post_not_open.html",
        {"form": form, "reply": reply},
        status=404,
    )


def _shown(comment: Comment) -> bool:
    """Whether readers see the comment: only then is its writer told it is
    published, and sent to it (an approved reply is hidden with a comment marked
    as spam)."""
    return Comment.objects.shown().filter(pk=comment.pk).exists()


def _user_agent(request: HttpRequest) -> str:
    # Headers are the client's to fill: keep printable characters only (PostgreSQL
    # refuses NUL in text).
    return "".join(
        ch for ch in request.headers.get("User-Agent", "") if ch.isprintable()
    )


def _verified_email(request: HttpRequest) -> str:
    return request.get_signed_cookie(
        VERIFIED_COOKIE,
        default="",
        salt=VERIFIED_COOKIE_SALT,
        max_age=VERIFIED_COOKIE_MAX_AGE_SECONDS,
    )


def _sent_from_another_site(request: HttpRequest) -> bool:
    """Whether a browser says the form was sent from a page not on this site
    (Origin, which browsers send with every POST; "null" from a page that hides
    where it is). A request without one is no browser's, sent from its own client."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    own = f"{request.scheme}://{request.get_host()}"
    return origin not in (own, *settings.CSRF_TRUSTED_ORIGINS)


# Without a CSRF token in the form, the post page stays one cacheable page for
# every reader. A page elsewhere could then make its visitors' browsers post
# comments: from their addresses, which the moderators keep to trace abuse, and
# each under its own client limit. Browsers say where a form was sent from, so
# only the site's own pages' are taken; a direct POST meets the same honeypot,
# limits and moderation from its sender's own address.
@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def comment_create(request: HttpRequest, slug: str) -> HttpResponse:
    if request.method != "POST":
        # The address a refused comment leaves the reader at, opened again (a
        # reload, tabs the browser restores, a bookmark): the post's comments, as
        # the preference centre's forms' addresses, rather than a blank 405.
        return redirect(reverse("posts:detail", kwargs={"slug": slug}) + "#comments")
    post = _published_post(slug)
    form = CommentForm(request.POST)
    if post is None:
        return _post_not_open(request, form)
    if _sent_from_another_site(request):
        problem = (
            "Your browser says this comment was sent from another website. Comments "
            "are taken only from this site's own pages: please send it from here."
        )
        return _form_page(request, post, form, status=403, problem=problem)
    if services.comment_rate_limited(client=client_key(request)):
        problem = "You have sent a lot of comments. Please wait an hour and try again."
        return _too_many(request, post, form, problem=problem)
    if not form.is_valid():
        return _form_page(request, post, form, status=400)
    # A held comment gets the same answer whether or not its address is known, so
    # the form tells nobody who has commented here; only a browser that proved the
    # address sees its comment published.
    held = redirect(f"{post.get_absolute_url()}#comments")
    if form.is_from_a_bot:
        messages.info(request, HELD_MESSAGE)
        return held
    data = form.cleaned_data
    verified_email = _verified_email(request)
    try:
        comment = services.comment_post(
            post=post,
            parent_id=data["parent"],
            name=data["name"],
            email=data["email"],
            website=data["website"],
            body=data["body"],
            ip_address=client_address(request) or None,
            user_agent=_user_agent(request),
            verified_email=verified_email,
        )
    except services.PostNotPublished:
        return _post_not_open(request, form)
    except services.CommentsClosed:
        return _form_page(request, post, form, status=403)
    except services.TooManyComments:
        problem = (
            "A lot of comments have been sent under this email address. "
            "Please wait an hour and try again."
        )
        return _too_many(request, post, form, problem=problem)
    except services.ReplyNotPossible:
        # The reader's text comes back without the gone comment's id: with it, the
        # form would be refused each time it was sent again.
        data = request.POST.copy()
        data["parent"] = ""
        problem = (
            "The comment you replied to is not available any more. "
            "You can post yours as a comment on the post."
        )
        return _form_page(request, post, CommentForm(data), status=400, problem=problem)
    # The comment found may be one sent before, by whoever owns the address.
    if _shown(comment) and services.address_proved(
        email=comment.email, verified_email=verified_email
    ):
        messages.success(request, "Thank you: your comment is published.")
        return redirect(comment.get_absolute_url())
    messages.info(request, HELD_MESSAGE)
    return held


@require_safe
def comment_reply(request: HttpRequest, slug: str, comment_id: int) -> HttpResponse:
    """A page with the reply form, so replying works without JavaScript."""
    post = _published_post(slug)
    if post is None:
        raise Http404
    replying_to = Comment.objects.shown().filter(post=post, pk=comment_id).first()
    if replying_to is None:
        # Taken off the post since the page with its Reply link was opened: a
        # "Page not found" for a post that is there left the reader guessing.
        gone = "The comment you wanted to reply to is not available any more."
        if services.comments_are_open(post=post):
            gone += " You can still comment on the post."
        messages.info(request, gone)
        return redirect(f"{post.get_absolute_url()}#comments")
    # The comment itself, not its thread's first: the service puts the reply in
    # that thread, and a page sent back with a problem still names whom it answers.
    form = CommentForm(initial={"parent": replying_to.pk})
    return _form_page(request, post, form, replying_to=replying_to)


# As every page an emailed token opens: it shows a comment awaiting moderation,
# and its answer sets the verified cookie; neither is for a browser or proxy to keep.
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def comment_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the comment and a button (mail scanners follow links, people press
    buttons; and the one who owns the address sees what they would publish, which
    anyone may have typed); POST: the address is proved, the browser remembers it,
    once: the link proves nothing to the next browser that opens it.
    HEAD is answered as GET: a scanner's HEAD must never confirm."""
    try:
        if request.method in ("GET", "HEAD"):
            comment = services.comment_of_confirmation(token=token)
            publishes = services.confirming_publishes(comment=comment)
            return render(
                request,
                "posts/comment_confirm.html",
                {"comment": comment, "publishes": publishes, "shown": _shown(comment)},
            )
        comment = services.comment_confirm(token=token)
    except services.ConfirmationUsed:
        # Good once: whoever opens it again (a forwarded email, another browser)
        # is told so, and proves nothing.
        return render(request, "posts/comment_confirm.html", {"used": True}, status=410)
    except services.ConfirmationInvalid:
        return render(
            request, "posts/comment_confirm.html", {"invalid": True}, status=400
        )
    if not comment.post.is_published:
        # Unpublished since the link was sent: its page would be a 404.
        response = render(request, "posts/comment_confirm.html", {"confirmed": True})
    elif _shown(comment):
        messages.success(request, "Thank you: your comment is published.")
        response = redirect(comment.get_absolute_url())
    else:
        # Sent to the post's comments, where theirs is not: what becomes of it.
        waits = (
            " Your comment waits for the author's approval."
            if comment.status == Comment.Status.PENDING
            else ""
        )
        messages.info(request, f"Thank you: your address is confirmed.{waits}")
        response = redirect(f"{comment.post.get_absolute_url()}#comments")
    response.set_signed_cookie(
        VERIFIED_COOKIE,
        comment.email,
        salt=VERIFIED_COOKIE_SALT,
        max_age=VERIFIED_COOKIE_MAX_AGE_SECONDS,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return response
