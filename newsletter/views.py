import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from csp.decorators import csp_update
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from posts import throttle
from posts.clients import client_address, client_key
from posts.comments import services as comments
from posts.comments.models import Comment
from posts.validators import inbox_of, row_id_in

from . import clickredirect, comment_tasks, outbox, subscriptions, tasks
from .emails import confirm_max_age_days, preferences_url, replies_address
from .enqueue import QueueUnreachable, queue_reachable, ring
from .forms import CommentDataForm, ConfirmForm, SubscribeForm
from .models import Subscriber
from .tokens import (
    InvalidToken,
    Purpose,
    SubscriptionGone,
    read_sent_to,
    read_token_detail,
    read_unsubscribe,
)


@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        form = SubscribeForm(initial={"page": _referring_page(request)})
        return render(request, "newsletter/subscribe.html", {"form": form})
    form = SubscribeForm(request.POST)
    # Every POST counts against its client, valid or not, so no client can fill the
    # table or probe the form without limit.
    if not allow_subscribe_from(request):
        return _too_many(request, _subscribe_page(form))
    if not form.is_valid():
        return render(request, "newsletter/subscribe.html", {"form": form}, status=400)
    if form.is_from_a_bot():
        # The bot is told what a person is told, and nothing is stored or sent.
        return _subscribe_done(request)
    if not allow_email_to(form.cleaned_data["email"]):
        return _too_many(request, _subscribe_page(form))
    try:
        ring(
            tasks.subscribe,
            form.cleaned_data["email"],
            form.cleaned_data["name"],
            client_address(request) or None,
            form.cleaned_data["topics"],
            form.cleaned_data["frequency"],
            form.cleaned_data["page"],
        )
    except QueueUnreachable:
        return _queue_unreachable(request, _subscribe_page(form))
    # The same page, after the same work, for every address: neither the answer nor
    # its timing may reveal who subscribes.
    return _subscribe_done(request)


@dataclass(frozen=True)
class FormPage:
    """The page of the form a request was sent from, with what it is rendered
    with: the form bound to what the reader sent."""

    template: str
    context: dict


def _queue_unreachable(
    request: HttpRequest, form_page: FormPage | None = None
) -> HttpResponse:
    """Nothing asks for a visitor's request again once the task queue is back:
    they are told to, the same whatever the address, and nothing is stored."""
    response = _refused(
        request, form_page, "unavailable", "Please try again in a minute", status=503
    )
    response["Retry-After"] = "60"
    return response


def _refused(
    request: HttpRequest,
    form_page: FormPage | None,
    reason: str,
    title: str,
    *,
    status: int,
) -> HttpResponse:
    """The page saying why a request was not taken (newsletter/<reason>.html); for
    one sent from a form, the form's page again, as the reader sent it, with the
    same said above it: they send it again later without typing it all again."""
    if form_page is None:
        return render(
            request, f"newsletter/{reason}.html", {"title": title}, status=status
        )
    return render(
        request,
        form_page.template,
        {
            **form_page.context,
            "title": title,
            "refused": f"newsletter/_{reason}_said.html",
        },
        status=status,
    )


def _subscribe_page(form: SubscribeForm) -> FormPage:
    return FormPage("newsletter/subscribe.html", {"form": form})


def _subscribe_done(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "newsletter/subscribe_done.html",
        {"confirm_days": confirm_max_age_days()},
    )


def _referring_page(request: HttpRequest) -> str:
    """The path of this site's page that linked to the form, as the form keeps
    it: browsers send the Referer between the site's own pages
    (SECURE_REFERRER_POLICY is same-origin)."""
    try:
        referer = urlsplit(request.headers.get("Referer", ""))
    except ValueError:  # the client's to write: a bracketed host that is no IPv6
        return ""
    if referer.netloc != request.get_host():
        return ""
    return SubscribeForm.page_kept(referer.path)


def allow_subscribe_from(
    request: HttpRequest, *, budget: str = "subscribe-client"
) -> bool:
    """Count one subscribe request from this client (the form's, or a
    resubscribe from the preference centre); False once over the limit. A
    commenter's request for their data's link counts as much, on its own budget,
    "comment-data-client"."""
    return throttle.allow(
        budget,
        client_key(request),
        limit=settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT,
        window_seconds=settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS,
    )


def allow_email_to(address: str, *, budget: str = "subscribe-address") -> bool:
    """Count one email a visitor asks us to send to this address; False once over
    the limit. Subscribing and changing an address to it share one budget, so
    mixing them floods nobody's inbox. A reader's one-time links (their data,
    their address, their consent) have their own, "one-time-link": anyone may
    spend the first on any address, and must not so keep a reader from their own
    data. Counted per inbox: victim+1@, victim+2@, … flood one."""
    return throttle.allow(
        budget,
        inbox_of(address),
        limit=settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS,
        window_seconds=settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS,
    )


def _too_many(request: HttpRequest, form_page: FormPage | None = None) -> HttpResponse:
    response = _refused(request, form_page, "too_many", "Too many requests", status=429)
    response["Retry-After"] = str(settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS)
    return response


def _done(
    request: HttpRequest,
    subscriber: Subscriber | None,
    title: str,
    message: str,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "newsletter/preferences_done.html",
        {
            "title": title,
            "message": message,
            "preferences_url": preferences_url(subscriber) if subscriber else "",
        },
        status=status,
    )


def _digest_time_said(subscriber: Subscriber, frequency: str) -> str:
    """When the reader's digests now arrive, in words, for the page that confirms;
    "" for posts as they are published."""
    arrival = subscriber.digest_arrival(frequency)
    return f"Your digest arrives {arrival}." if arrival else ""


def _resumed(request: HttpRequest, subscriber: Subscriber) -> HttpResponse:
    """What a paused reader is told once they receive again, by the preference
    centre's Resume or by confirming a subscribe request: when posts come."""
    return _done(
        request,
        subscriber,
        "Your newsletter is back on",
        _digest_time_said(subscriber, subscriber.frequency())
        or "New posts will arrive as they are published.",
    )


def _token_error(
    request: HttpRequest, error: InvalidToken, *, purpose: Purpose
) -> HttpResponse:
    """The page for a link that does nothing, its way on the one for what the
    link was for: "subscribe again" only to a reader who came to subscribe, or
    whose subscription is gone. A preferences or change-of-address link went
    only to a reader who had confirmed: gone, they deleted it (or the desk did:
    subscriptions.subscriber_delete is all that deletes a confirmed reader), and
    no newer email has a link that works. A confirmation link's request may
    have been purged unconfirmed: it is only "not valid"."""
    deleted = isinstance(error, SubscriptionGone) and purpose in (
        Purpose.PREFERENCES,
        Purpose.CHANGE_EMAIL,
    )
    return render(
        request,
        "newsletter/bad_link.html",
        {
            "expired": error.expired,
            "deleted": deleted,
            "confirm_days": confirm_max_age_days(),
            "purpose": purpose,
            "replies_address": replies_address(),
        },
        status=410 if error.expired or deleted else 404,
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber, detail = read_token_detail(token, Purpose.CONFIRM)
    except InvalidToken as error:
        return _confirm_link_spent(request, token, error)
    consent_id = row_id_in(detail)
    consent = subscriber.consents.filter(pk=consent_id).first() if consent_id else None
    if consent is None:  # purged since, or no id at all: the link names nothing
        return _confirm_link_spent(request, token, InvalidToken())
    if consent.confirmed_at is not None:
        # Opened again once used: where the reader stands, not the button again.
        return _confirmed(request, subscriber)
    # Link scanners in corporate mail systems follow every link they see, so a
    # GET (or HEAD) only shows the request and a button; the reader's own POST
    # confirms.
    form = ConfirmForm(
        request.POST if request.method == "POST" else None,
        initial={"name": consent.name},
    )
    if request.method == "POST" and form.is_valid():
        # With the task queue down the reader is confirmed all the same: their
        # welcome is owed until a worker sends it (subscriptions.welcomes_reap).
        resumed = subscriptions.subscriber_confirm(
            subscriber=subscriber,
            consent_id=consent.pk,
            # A POST without the field (a plain client) keeps the request's.
            name=form.cleaned_data["name"] if "name" in request.POST else None,
            engagement=form.cleaned_data.get("engagement", False),
            ip_address=client_address(request) or None,
        )
        if resumed:
            return _resumed(request, subscriber)
        # This link is the newest: refused (the address suppressed since), no
        # other email's link can do better.
        return _confirmed(request, subscriber, newest_link=True)
    return render(
        request,
        "newsletter/confirm.html",
        {"subscriber": subscriber, "consent": consent, "form": form},
        status=400 if form.is_bound else 200,
    )


def _confirm_link_spent(
    request: HttpRequest, token: str, error: InvalidToken
) -> HttpResponse:
    """A confirmation link that can confirm nothing now: expired, retired by a
    newer one or by the reader's leaving, or naming a request purged since. A
    reader no longer pending is shown where they stand, however old the link:
    told it had expired, they subscribed again, and were sent nothing as they
    were subscribed. Only a reader still pending is told to ask for a new one."""
    try:
        reader = read_sent_to(token, Purpose.CONFIRM)
    except InvalidToken:
        return _token_error(request, error, purpose=Purpose.CONFIRM)
    if reader.status == Subscriber.Status.PENDING:
        return _token_error(request, error, purpose=Purpose.CONFIRM)
    return _confirmed(request, reader)


def _confirmed(
    request: HttpRequest, subscriber: Subscriber, *, newest_link: bool = False
) -> HttpResponse:
    """The link may be one confirmed long ago, or the address suppressed since:
    the page says where the reader stands now, not what the link asked for."""
    sent_at = None if newest_link else subscriber.confirmation_sent_at
    return render(
        request,
        "newsletter/confirmed.html",
        {
            "subscriber": subscriber,
            "receiving": Subscriber.objects.confirmed()
            .filter(pk=subscriber.pk)
            .exists(),
            # Leaving clears it (subscriptions.address_suppress): set on one out
            # of the audience, they asked again since, and that email's link,
            # while it works, is the way back.
            "newer_link_works": subscriber.status != Subscriber.Status.ACTIVE
            and sent_at is not None
            and timezone.now() - sent_at
            < timedelta(seconds=settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS),
            "preferences_url": preferences_url(subscriber),
        },
    )


@never_cache
@csrf_exempt  # RFC 8058: mail providers POST here with no cookie and no CSRF token
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber, sent_to = read_unsubscribe(token)
    except SubscriptionGone:
        # Their data erased: nothing goes under this link, which is what they
        # came for, and what a mail provider's one-click POST is answered.
        return render(request, "newsletter/unsubscribed.html", {"subscriber": None})
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.UNSUBSCRIBE)
    if request.method == "POST":
        subscriptions.subscriber_unsubscribe(subscriber=subscriber)
    # An email sent before the reader moved: its inbox may be someone else's
    # now, who learns neither the reader's new address nor how it stands.
    page = {
        "subscriber": subscriber,
        "sent_to": sent_to,
        "moved_since": sent_to != subscriber.email,
    }
    # The reader back at an old email's link after unsubscribing is told so, not
    # asked again as if it still went.
    if subscriptions.unsubscribed_themselves(subscriber=subscriber):
        return render(request, "newsletter/unsubscribed.html", page)
    # Paused, or out only for a bounce, a complaint or the desk's suppression
    # (which the desk may lift), nothing goes now: the page says so, and it is
    # still theirs to unsubscribe, so that nothing comes then.
    return render(request, "newsletter/unsubscribe.html", page)


# A commenter's own data, whether or not they read the newsletter: anyone asks by
# address, and only the address's owner, through the link emailed to it, may
# download or erase the comments written under it. The form answers the same for
# every address, after the same work (it only counts and queues), so that it
# tells nobody who has commented; the task emails only an address with comments.


@require_http_methods(["GET", "HEAD", "POST"])
def comment_data_request(request: HttpRequest) -> HttpResponse:
    form = CommentDataForm(request.POST if request.method == "POST" else None)
    page = FormPage(
        "newsletter/comment_data_request.html",
        {"form": form, "keep_ip_days": settings.COMMENTS_KEEP_IP_DAYS},
    )
    if request.method != "POST":
        return render(request, page.template, page.context)
    # Every POST counts against its client, valid or not, as the subscribe form's.
    if not allow_subscribe_from(request, budget="comment-data-client"):
        return _too_many(request, page)
    if not form.is_valid():
        return render(request, page.template, page.context, status=400)
    email = form.cleaned_data["email"]
    # Its own budget: strangers asking here must not spend the one a reader's
    # one-time links (their data, their address) draw on.
    if not allow_email_to(email, budget="comment-data-link"):
        return _too_many(request, page)
    try:
        ring(comment_tasks.email_commenter_data_link, email)
    except QueueUnreachable:
        return _queue_unreachable(request, page)
    return render(
        request,
        "newsletter/comment_data_sent.html",
        {
            "max_age_minutes": comments.DATA_LINK_MAX_AGE_SECONDS // 60,
            "replies_address": replies_address(),
        },
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def comment_data(request: HttpRequest, token: str) -> HttpResponse:
    """GET (and a scanner's HEAD): what we hold and two buttons; POST: the
    download, or the erasure, which ends the link with the comments it names."""
    try:
        email = comments.commenter_of_data_link(token=token)
    except comments.DataLinkInvalid as error:
        return render(
            request,
            "newsletter/comment_data.html",
            {"expired": error.expired, "invalid": True},
            status=410 if error.expired else 404,
        )
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "export":
        response = JsonResponse(
            {
                "exported_at": timezone.now(),
                **subscriptions.commenter_export(email=email),
            },
            encoder=DjangoJSONEncoder,
            json_dumps_params={"indent": 2},
        )
        response["Content-Disposition"] = 'attachment; filename="my-comments-data.json"'
        return response
    if action == "delete":
        subscriptions.commenter_delete(email=email)
        return render(request, "newsletter/comment_data.html", {"deleted": True})
    theirs = Comment.objects.written_under(
        subscriptions.commenter_addresses(email=email)
    )
    return render(
        request,
        "newsletter/comment_data.html",
        {"email": email, "count": theirs.count()},
        status=400 if request.method == "POST" else 200,
    )


def _outbox_only_in_debug() -> None:
    if not settings.DEBUG:
        raise Http404


def outbox_list(request: HttpRequest) -> HttpResponse:
    _outbox_only_in_debug()
    messages = []
    for name in outbox.message_names()[:200]:
        message = outbox.read_message(name)
        if message is not None:
            messages.append({"name": name, "message": message})
    return render(request, "newsletter/outbox_list.html", {"messages": messages})


# The email's HTML is shown in a sandboxed srcdoc frame (no scripts run there),
# which inherits this page's policy: emails need inline styles, and may show
# images from anywhere, as a mail client would.
@csp_update({"style-src": ["'unsafe-inline'"], "img-src": ["data:", "http:"]})
def outbox_message(request: HttpRequest, name: str) -> HttpResponse:
    _outbox_only_in_debug()
    message = outbox.read_message(name)
    if message is None:
        raise Http404
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    return render(
        request,
        "newsletter/outbox_message.html",
        {
            "name": name,
            "message": message,
            "headers": list(message.items()),
            "html": _links_open_the_window(html.get_content()) if html else "",
            "text": text.get_content() if text else "",
        },
    )


_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)


def _links_open_the_window(email_html: str) -> str:
    """The email with its links in the sandboxed frame opening in the whole window,
    not the frame: <base target="_top"> first in its <head>. Before the <!DOCTYPE>
    it put the email in quirks mode, shown as no reader's mail program shows it."""
    base = '<base target="_top">'
    head = _HEAD.search(email_html)
    if head is None:  # a fragment: no doctype to keep first
        return base + email_html
    return email_html[: head.end()] + base + email_html[head.end() :]


# What crawlers are kept from: the desk, the dev outbox, and every address that
# carries a reader's token (the link works for whoever follows it, and a crawler's
# copy would be in a search engine's index). Prefixes, so the tokens after them too.
ROBOTS_DISALLOWED = [
    "/admin/",
    "/outbox/",
    "/subscribe/confirm/",
    "/preferences/",
    "/unsubscribe/",
    "/comments/confirm/",
    "/comments/data/",
    "/r/",
]


@require_http_methods(["GET", "HEAD"])
@cache_control(public=True, max_age=86400)  # changes only with a release
def robots(request: HttpRequest) -> HttpResponse:
    lines = [
        "User-agent: *",
        *(f"Disallow: {path}" for path in ROBOTS_DISALLOWED),
        "",
        # Absolute, as the protocol asks: crawlers read it from any host name.
        f"Sitemap: {settings.SITE_URL}{reverse('posts:sitemap')}",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain")


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    # Anyone may ask: the answer says what is down, for a monitor, never which
    # software raised what.
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    checks["broker"] = "ok" if queue_reachable() else "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


@never_cache
@require_http_methods(["GET", "HEAD"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    """/r/<token>/: an email's link, counted, then followed; answered by
    clickredirect.py before the stack reaches here, but for errors."""
    response = clickredirect.followed(request, token)
    if response is None:
        raise Http404("This link is not valid.")
    return response


# The 400 and 500 pages (newsletter/urls.py's handlers). Django makes them where the
# exception is raised: above the CSP and X-Frame-Options middleware (in the page
# cache or the click redirect, which answer without the rest of the stack; in the
# common middleware, which refuses a Host header the site does not serve), a page
# went out without those headers. Added here, on errors only, so a cache hit and a
# click cost no more; each middleware adds a header only where there is none, so a
# page made further down keeps what it has.


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _security_headers_add(request, defaults.bad_request(request, exception))


def server_error(request: HttpRequest) -> HttpResponse:
    return _security_headers_add(request, defaults.server_error(request))


def _security_headers_add(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """The response with the headers the site's security middleware add."""
    for middleware in (CSPMiddleware, XFrameOptionsMiddleware, SecurityMiddleware):
        response = middleware(_unused).process_response(request, response)
    return response


def _unused(request: HttpRequest) -> HttpResponse:
    """The get_response a middleware is built with; process_response calls none."""
    raise NotImplementedError
