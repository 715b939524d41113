"""The reader's preference centre, reached by a personal link in every email.

The link is the reader's key, so every change is a POST with a CSRF token from the
page itself; a GET or HEAD only shows the page (mail scanners and link checkers
follow links). The link
also travels in every newsletter, so anyone the reader forwards one to holds it:
topics, pause, unsubscribe and withdrawing consent stay one click, but exporting,
deleting or moving the reader's data, or agreeing to per-reader engagement, takes
a one-time link sent to the reader's address.
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import get_text_list
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from posts.clients import client_address
from posts.validators import readable_email

from . import digests, subscriptions
from .emails import replies_address
from .enqueue import QueueUnreachable, queue_reachable
from .forms import ChangeEmailForm, DigestTimeForm, TopicsForm, followed_keys
from .models import Subscriber, SubscriberTopic, Suppression
from .subscriptions import OneTimeRequest
from .templatetags.addresses import mailto
from .tokens import (
    InvalidToken,
    LinkUsed,
    Purpose,
    SubscriptionGone,
    read_change_made,
    read_token,
    read_token_detail,
)
from .views import (
    FormPage,
    _digest_time_said,
    _done,
    _queue_unreachable,
    _resumed,
    _token_error,
    _too_many,
    allow_email_to,
    allow_subscribe_from,
)


def _current_topics(
    subscriber: Subscriber, data: QueryDict | None = None
) -> TopicsForm:
    """The topics form as the page fills it in; with `data`, as sent from it
    (_as_the_reader_changed_it), so that has_changed() tells whether the reader
    changed their topics or how often, or only sent them back with a new digest
    time."""
    topics = list(subscriber.topics.all())
    followed = followed_keys(topics)
    form = TopicsForm(
        data,
        following=followed,
        initial={
            "topics": followed,
            "frequency": subscriber.frequency(),
        },
    )
    # The page keeps what it showed, to tell what the reader changed on it.
    for name in ("topics", "frequency"):
        form.fields[name].show_hidden_initial = True
    return form


def _as_the_reader_changed_it(subscriber: Subscriber, data: QueryDict) -> QueryDict:
    """The topics form as sent, each field the reader left as its page showed it
    (its hidden initial value) as their subscription has it now: a page opened
    before they changed it in another tab sends back what it showed, which
    undid that change (or was refused: a topic no longer followed nor offered).
    A POST not from the page, without those values, is taken as sent."""
    now = {
        "topics": followed_keys(subscriber.topics.all()),
        "frequency": [subscriber.frequency()],
        "digest_hour": [_or_empty(subscriber.digest_hour)],
        "digest_weekday": [_or_empty(subscriber.digest_weekday)],
        "time_zone": [subscriber.time_zone],
    }
    from_the_page = "initial-frequency" in data
    data = data.copy()
    for name, values in now.items():
        shown = f"initial-{name}"
        if not from_the_page:
            data.setlist(shown, values)  # compared with what the reader has now
        elif sorted(data.getlist(name)) == sorted(data.getlist(shown)):
            data.setlist(name, values)
            data.setlist(shown, values)
    return data


def _or_empty(value: int | None) -> str:
    return "" if value is None else str(value)


def _followed_at_each_frequency(subscriber: Subscriber, form: TopicsForm) -> str:
    """What the reader follows at which frequency, in words, when the desk gave
    their topics different ones: the form shows only one, the first's. "" when
    they are all at one."""
    rows = list(subscriber.topics.all())
    if len({row.frequency for row in rows}) < 2:
        return ""
    names = {
        option.key: option.name
        for group in form.topic_groups
        for option in group.options
    }
    said = []
    for frequency in SubscriberTopic.Frequency:
        followed = [
            names[f"{row.kind}:{row.value}"] if row.value else "every post"
            for row in rows
            if row.frequency == frequency
        ]
        if followed:
            how = (
                "as published"
                if frequency == SubscriberTopic.Frequency.INSTANT
                else f"in a {frequency.label.lower()}"
            )
            said.append(f"{get_text_list(followed, 'and')} {how}")
    return f"You follow {', '.join(said[:-1])}, and {said[-1]}."


def _current_digest_time(subscriber: Subscriber) -> DigestTimeForm:
    return DigestTimeForm(
        initial={
            "digest_hour": subscriber.digest_hour,
            "digest_weekday": subscriber.digest_weekday,
            "time_zone": subscriber.time_zone,
        }
    )


# Why nothing is sent to a reader's address, as they are told: the desk's
# suppression is not the provider's report.
_WHY_BLOCKED = {
    Suppression.Reason.HARD_BOUNCE: "Our email provider reported that mail to this "
    "address bounced",
    Suppression.Reason.SOFT_BOUNCES: "Our email provider reported that mail to this "
    "address bounced again and again",
    Suppression.Reason.COMPLAINT: "An email we sent to this address was marked as spam",
    Suppression.Reason.MANUAL: "We took this address off our list",
}


def _why_blocked(subscriber: Subscriber) -> SafeString:
    """What the reader is told of their address's suppression, if it blocks it."""
    reason = subscriptions.blocked_because(subscriber.email)
    if reason is None:
        return SafeString()
    return format_html(
        "{}, so we no longer send to it. Please write to us at {} if you want it "
        "restored, or your data deleted.",
        _WHY_BLOCKED[reason],
        mailto(replies_address()),
    )


def _page(
    request: HttpRequest,
    subscriber: Subscriber,
    form: ChangeEmailForm,
    topics_form: TopicsForm | None = None,
    digest_time_form: DigestTimeForm | None = None,
    status=200,
) -> HttpResponse:
    page = _centre(request, subscriber, form, topics_form, digest_time_form)
    return render(request, page.template, page.context, status=status)


def _centre(
    request: HttpRequest,
    subscriber: Subscriber,
    form: ChangeEmailForm,
    topics_form: TopicsForm | None = None,
    digest_time_form: DigestTimeForm | None = None,
    *,
    engagement_ticked: bool | None = None,
) -> FormPage:
    """The preference centre's page, its forms as sent (or as the reader's
    subscription stands); engagement_ticked: the box as the reader sent it."""
    if engagement_ticked is None:
        engagement_ticked = subscriber.engagement_agreed_at is not None
    # One form is sent at a time, and the page's one error summary lists its
    # errors: the address, or the topics with their digest time.
    sent = (form, None) if topics_form is None else (topics_form, digest_time_form)
    topics_form = topics_form or _current_topics(subscriber)
    return FormPage(
        "newsletter/preferences.html",
        {
            "subscriber": subscriber,
            "blocked": _why_blocked(subscriber),
            "replies_address": replies_address(),
            "form": form,
            "sent_form": sent[0],
            "sent_and_form": sent[1],
            "topics_form": topics_form,
            "followed_at_each_frequency": _followed_at_each_frequency(
                subscriber, topics_form
            ),
            "digest_time_form": digest_time_form or _current_digest_time(subscriber),
            "token": request.resolver_match.kwargs["token"],
            "engagement_offered": _engagement_offered(subscriber),
            "engagement_ticked": engagement_ticked,
            "engagement_wording": subscriptions.ENGAGEMENT_CONSENT_WORDING,
            "consent_wording": subscriptions.CONSENT_WORDING,
        },
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = read_token(token, Purpose.PREFERENCES)
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.PREFERENCES)
    if request.method != "POST":
        return _page(request, subscriber, ChangeEmailForm())
    action = request.POST.get("action")
    active = subscriber.status == Subscriber.Status.ACTIVE
    if action == "pause" and active:
        subscriptions.subscriber_pause(subscriber=subscriber)
        return _done(
            request,
            subscriber,
            "Your newsletter is paused",
            "Nothing will be sent until you resume it from this page.",
        )
    if action == "resume" and active:
        subscriptions.subscriber_resume(subscriber=subscriber)
        return _resumed(request, subscriber)
    if action in ("pause", "resume"):  # a page opened before the reader left
        return _not_subscribed(request, subscriber)
    if action == "unsubscribe":
        subscriptions.subscriber_unsubscribe(subscriber=subscriber)
        return _done(
            request,
            subscriber,
            "You are unsubscribed",
            f"Nothing more will be sent to {readable_email(subscriber.email)}. You "
            "can resubscribe from this page at any time.",
        )
    # Also while the editor asks from a page opened before the address was blocked
    # (no longer offered the box): the tick is refused as any link to it is.
    if action == "engagement" and (
        _engagement_offered(subscriber) or settings.NEWSLETTER_PER_READER_ENGAGEMENT
    ):
        agreed = subscriber.engagement_agreed_at is not None
        wanted = request.POST.get("engagement") == "1"
        if wanted and not agreed and settings.NEWSLETTER_PER_READER_ENGAGEMENT:
            # Whoever holds a forwarded link cannot agree for the reader; anyone
            # may withdraw, since that keeps less.
            return _send_one_time_link(
                request,
                subscriber,
                OneTimeRequest.ENGAGEMENT,
                _centre(request, subscriber, ChangeEmailForm(), engagement_ticked=True),
            )
        if agreed and not wanted:
            subscriptions.engagement_withdraw(subscriber=subscriber)
        return _engagement_saved(request, subscriber)
    if action == "resubscribe" and active:  # a page opened before they confirmed
        return _done(
            request,
            subscriber,
            "You are subscribed already",
            "Your newsletter is paused: nothing comes until you resume it."
            if subscriber.paused_at
            else f"New posts arrive at {readable_email(subscriber.email)}.",
            status=400,
        )
    if action == "resubscribe":
        if why := _why_blocked(subscriber):
            return _done(
                request,
                subscriber,
                "This address cannot be resubscribed here",
                why,
                status=409,
            )
        # The subscribe form's limits: each request stores a consent with the
        # client's address, and may send the reader a confirmation.
        centre = _centre(request, subscriber, ChangeEmailForm())
        if not (allow_subscribe_from(request) and allow_email_to(subscriber.email)):
            return _too_many(request, centre)
        if not queue_reachable():
            return _queue_unreachable(request, centre)
        try:
            subscriptions.subscription_request(
                email=subscriber.email,
                name=subscriber.name,
                ip_address=client_address(request) or None,
                # The consent records where it was asked for: this page shows the
                # form's wording beside its button.
                source=subscriptions.CONSENT_SOURCE_PREFERENCES,
            )
        except QueueUnreachable:  # lost since it was asked: the request taken back
            return _queue_unreachable(request, centre)
        return _done(
            request,
            subscriber,
            "Check your inbox",
            # Nothing goes the second time in a day: the first email's link works.
            "A confirmation link is on its way to "
            f"{readable_email(subscriber.email)}. We send at most one a day: if we "
            "sent you one earlier today, use the link in that email. Your "
            "subscription starts again when you click it.",
        )
    return _done(
        request,
        subscriber,
        "Nothing to do",
        "That change does not apply to your subscription as it stands.",
        status=400,
    )


def _not_subscribed(request: HttpRequest, subscriber: Subscriber) -> HttpResponse:
    """What a page opened before the reader left (unsubscribed, bounced, …)
    answers a change that only a current subscription takes."""
    next_step = (
        "Your preferences say why, and what you can do."
        if subscriptions.is_blocked(subscriber.email)
        else "To receive the newsletter again, resubscribe from your preferences."
    )
    return _done(
        request,
        subscriber,
        "You are not subscribed",
        f"Nothing is sent to you, and nothing has changed. {next_step}",
        status=400,
    )


def _engagement_offered(subscriber: Subscriber) -> bool:
    """Whether the centre shows the engagement box: to a reader who agreed, until
    they withdraw, the setting turned off since or their address blocked (what
    was kept by their agreement stays until they withdraw, which needs no email);
    and while the editor asks, to a reader whose address can be sent the link
    that agrees (_send_one_time_link), not to one that bounced, complained or
    was suppressed."""
    if subscriber.engagement_agreed_at is not None:
        return True
    return settings.NEWSLETTER_PER_READER_ENGAGEMENT and not subscriptions.is_blocked(
        subscriber.email
    )


def _engagement_saved(request: HttpRequest, subscriber: Subscriber) -> HttpResponse:
    if not subscriber.engagement_agreed_at:
        said = (
            "The editor sees nothing of what you do with emails: "
            "they are counted only with everyone else's."
        )
    elif settings.NEWSLETTER_PER_READER_ENGAGEMENT:
        said = "The editor can see which links you follow and whether you open emails."
    else:
        # Agreed, and kept so, while the editor asks no more (_engagement_offered).
        said = (
            "The editor has turned this off: nothing more is kept about what you "
            "do with emails. What was kept before stays until you untick the box, "
            "which deletes it."
        )
    return _done(request, subscriber, "Your choice is saved", said)


def _a_get_shows_the_page(
    view: Callable[[HttpRequest, str], HttpResponse],
) -> Callable[[HttpRequest, str], HttpResponse]:
    """For the addresses the page's forms post to: the reader is left at one once
    its form is sent, and opened again (a bookmark, tabs the browser restores) it
    shows the page, which a GET may, rather than a blank 405."""

    @wraps(view)
    def a_post_or_the_page(request: HttpRequest, token: str) -> HttpResponse:
        if request.method != "POST":
            return redirect("newsletter:preferences", token=token)
        return view(request, token)

    return require_http_methods(["GET", "HEAD", "POST"])(a_post_or_the_page)


@never_cache
@_a_get_shows_the_page
def topics(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = read_token(token, Purpose.PREFERENCES)
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.PREFERENCES)
    if subscriber.status != Subscriber.Status.ACTIVE:
        # The page offers topics only to a current subscription; a tab opened
        # before the reader left would be told when digests arrive, and none does.
        return _not_subscribed(request, subscriber)
    sent = _as_the_reader_changed_it(subscriber, request.POST)
    form = _current_topics(subscriber, sent)
    when = DigestTimeForm(sent)
    # Both checked, so every error shows at once, and nothing is saved unless
    # everything is valid.
    if not all([form.is_valid(), when.is_valid()]):
        return _page(request, subscriber, ChangeEmailForm(), form, when, status=400)
    # Topics and digest time are one form: a reader who changed only the time
    # sent their topics back, and a reader the desk gave topics at different
    # frequencies would lose all but one.
    topics_changed = form.has_changed()
    try:
        with transaction.atomic():
            if topics_changed:
                subscriptions.topics_set(
                    subscriber=subscriber,
                    topics=form.cleaned_data["topics"],
                    frequency=form.cleaned_data["frequency"],
                )
            digests.digest_time_set(
                subscriber=subscriber,
                hour=when.cleaned_data["digest_hour"],
                weekday=when.cleaned_data["digest_weekday"],
                time_zone=when.cleaned_data["time_zone"],
            )
    except Subscriber.DoesNotExist:
        # Erased since the link was read: it names nobody now, as it will next time.
        return _token_error(request, SubscriptionGone(), purpose=Purpose.PREFERENCES)
    subscriber.refresh_from_db(fields=["digest_owed_until"])
    if followed := _followed_at_each_frequency(subscriber, form):
        # Kept as the desk set them: each digest's time is said.
        frequencies = set(subscriber.topics.values_list("frequency", flat=True))
        said = [followed] + [
            _digest_time_said(subscriber, frequency)
            for frequency in SubscriberTopic.Frequency
            if frequency in frequencies
        ]
    else:
        chosen = form.cleaned_data["topics"]
        frequency = form.cleaned_data["frequency"]
        how_often = SubscriberTopic.Frequency(frequency).label
        said = [
            f"You follow {'the topics you chose' if chosen else 'every post'}.",
            f"How often: {how_often.lower()}.",
            _digest_time_said(subscriber, frequency),
        ]
    if subscriber.digest_owed_until:
        # What waited for their digest was announced without them: say where it goes.
        said.append(
            "Anything your digest was still to bring comes in one last digest,"
            " at your usual hour."
        )
    if subscriber.paused_at:
        # Kept for when they resume: choosing topics does not resume them.
        said.append("Your newsletter is paused: nothing comes until you resume it.")
    return _done(
        request, subscriber, "Your choices are saved", " ".join(filter(None, said))
    )


@never_cache
@_a_get_shows_the_page
def change_email_request(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = read_token(token, Purpose.PREFERENCES)
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.PREFERENCES)
    if subscriber.status != Subscriber.Status.ACTIVE:
        return _only_a_subscription_moves(request, subscriber)
    form = ChangeEmailForm(request.POST)
    # Said here, where only the address's own page shows it: the link's request
    # would do nothing, spend the day's change and tell of a link on its way.
    if form.is_valid() and form.cleaned_data["new_email"] == subscriber.email:
        form.add_error("new_email", "That is your address already.")
    if not form.is_valid():
        return _page(request, subscriber, form, status=400)
    return _send_one_time_link(
        request,
        subscriber,
        OneTimeRequest.CHANGE_EMAIL,
        _centre(request, subscriber, form),
        new_email=form.cleaned_data["new_email"],
    )


def _only_a_subscription_moves(
    request: HttpRequest, subscriber: Subscriber
) -> HttpResponse:
    """A reader not subscribed asked to move (subscriptions.email_change_request
    sends nothing for them)."""
    return _done(
        request,
        subscriber,
        "Nothing to do",
        "Only a current subscription can move to another address.",
        status=400,
    )


def _send_one_time_link(
    request: HttpRequest,
    subscriber: Subscriber,
    one_time_request: OneTimeRequest,
    sent_from: FormPage,
    *,
    new_email: str = "",
) -> HttpResponse:
    """Send the reader's address a link that does what they asked; refused, the
    page they asked from again (sent_from), as they sent it."""
    if subscriptions.is_blocked(subscriber.email):
        return _done(
            request,
            subscriber,
            "We cannot email this address",
            format_html(
                "We no longer send to this address, so we cannot send you the link "
                "this needs. Please write to us at {} instead.",
                mailto(replies_address()),
            ),
            status=409,
        )
    if not allow_email_to(subscriber.email, budget="one-time-link"):
        return _too_many(request, sent_from)
    if not queue_reachable():
        return _queue_unreachable(request, sent_from)
    try:
        subscriptions.one_time_link_request(
            subscriber=subscriber, request=one_time_request, new_email=new_email
        )
    except QueueUnreachable:  # lost since it was asked
        return _queue_unreachable(request, sent_from)
    # Whoever holds this page's link may not be the reader: the answer says only
    # that the reader's own inbox has the way on.
    return _done(
        request,
        subscriber,
        "Check your inbox",
        "We sent a link to your address. Open it within the hour to go on; it "
        "works once. If you did not ask for it, nothing happens.",
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def change_email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber, new_email = read_token_detail(token, Purpose.CHANGE_EMAIL)
    except InvalidToken as error:
        return _change_made_or_token_error(request, token, error)
    if request.method != "POST":
        return render(
            request,
            "newsletter/preferences_change_email.html",
            {"subscriber": subscriber, "new_email": new_email},
        )
    if not subscriptions.email_change_confirm(
        subscriber=subscriber, new_email=new_email
    ):
        # Whoever holds this link proved no address of the subscription's (the
        # reader may have mistyped theirs): told only what the page showed, not
        # how the subscription stands, nor given its preferences.
        return _done(
            request,
            None,
            "The address could not be changed",
            f"{readable_email(new_email)} cannot be used for this subscription, so "
            "nothing has changed: its address stays "
            f"{readable_email(subscriber.email)}.",
            status=409,
        )
    # What the reader did meanwhile (unsubscribed, paused) stands at the new address.
    address = readable_email(subscriber.email)
    if subscriber.status != Subscriber.Status.ACTIVE:
        goes = f"You are not subscribed, so nothing is sent to {address}."
    elif subscriber.paused_at:
        goes = f"Your newsletter is paused: when you resume it, it goes to {address}."
    else:
        goes = f"From now on the newsletter goes to {address}."
    # Said as tokens.py keeps them: an old email's unsubscribe link still lets the
    # reader leave (RFC 8058), and its preferences link is retired with the address.
    return _done(
        request,
        subscriber,
        "Your address is changed",
        f"{goes} The preferences links in older emails no longer work: use the one "
        "below. Their unsubscribe links still do.",
    )


def _change_made_or_token_error(
    request: HttpRequest, token: str, error: InvalidToken
) -> HttpResponse:
    """A change-of-address link used already says so, however old, not "subscribe
    again" nor "expired, ask again": it was sent only to the address it names, so
    its holder learns nothing new, and is told nothing of what the reader did
    since nor given their preferences."""
    try:
        new_email = read_change_made(token)
    except SubscriptionGone as gone:  # however old: no newer link will come
        return _token_error(request, gone, purpose=Purpose.CHANGE_EMAIL)
    except InvalidToken:
        if not error.expired:
            return _token_error(request, error, purpose=Purpose.CHANGE_EMAIL)
        return _done(
            request,
            None,
            "This link has expired",
            "Links that confirm a new address work for "
            f"{settings.NEWSLETTER_CHANGE_EMAIL_MAX_AGE_SECONDS // 86400} days. "
            "Ask for a new one from the preferences link in any newsletter email.",
            status=410,
        )
    return _done(
        request,
        None,
        "Your address is already changed",
        # Not "the newest email we sent": that may be this link's own, which has
        # no preferences link. Every newsletter email has one; a reader paused
        # or gone gets none until subscribing again starts it, said without
        # saying which they are.
        f"This link changed your address to {readable_email(new_email)}. There is "
        "nothing more to do with it. For your preferences, use the link at the end "
        f"of any newsletter email sent to {readable_email(new_email)}. None comes "
        "while the newsletter is paused or stopped: subscribe with that address "
        "again to start it.",
    )


@never_cache
@_a_get_shows_the_page
def export(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = read_token(token, Purpose.PREFERENCES)
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.PREFERENCES)
    return _send_one_time_link(
        request,
        subscriber,
        OneTimeRequest.EXPORT,
        _centre(request, subscriber, ChangeEmailForm()),
    )


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def delete(request: HttpRequest, token: str) -> HttpResponse:
    try:
        subscriber = read_token(token, Purpose.PREFERENCES)
    except InvalidToken as error:
        return _token_error(request, error, purpose=Purpose.PREFERENCES)
    page = FormPage("newsletter/preferences_delete.html", {"subscriber": subscriber})
    if request.method != "POST":
        return render(request, page.template, page.context)
    return _send_one_time_link(request, subscriber, OneTimeRequest.DELETE, page)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def one_time(request: HttpRequest, token: str) -> HttpResponse:
    """The link sent to the reader's address: a page with a button, whose POST does
    what was asked for, once."""
    try:
        subscriber, detail = read_token_detail(token, Purpose.ONE_TIME)
        one_time_request, new_email = subscriptions.read_one_time_detail(detail)
    except LinkUsed as used:
        return _one_time_link_used(request, erased=used.subscriber is None)
    except InvalidToken as error:
        if not error.expired:
            return _token_error(request, error, purpose=Purpose.ONE_TIME)
        return _done(
            request,
            None,
            "This link has expired",
            "Links like this work for an hour. Ask for a new one from the "
            "preferences link in any newsletter email.",
            status=410,
        )
    except ValueError:  # signed by us, so never in practice
        return _token_error(request, InvalidToken(), purpose=Purpose.ONE_TIME)
    if (
        one_time_request == OneTimeRequest.ENGAGEMENT
        and not settings.NEWSLETTER_PER_READER_ENGAGEMENT
    ):
        # Turned off since the link was sent: there is nothing to agree to.
        return _done(
            request,
            subscriber,
            "Nothing to do",
            "The editor no longer asks to see what readers do with emails.",
            status=400,
        )
    if (
        one_time_request == OneTimeRequest.CHANGE_EMAIL
        and subscriber.status != Subscriber.Status.ACTIVE
    ):
        # Unsubscribed (or bounced) since it was asked: the new address would be
        # sent nothing, so the page offers nothing, and the link is kept for a
        # reader who subscribes again within its hour.
        return _only_a_subscription_moves(request, subscriber)
    page = FormPage(
        "newsletter/one_time.html",
        {
            "subscriber": subscriber,
            "request": one_time_request.value,
            "new_email": new_email,
            "engagement_wording": subscriptions.ENGAGEMENT_CONSENT_WORDING,
        },
    )
    if request.method != "POST":
        return render(request, page.template, page.context)
    # Refused before the link is used up, with its button again: it still works.
    if one_time_request == OneTimeRequest.CHANGE_EMAIL and not allow_email_to(
        new_email
    ):
        return _too_many(request, page)
    # The new address's confirmation is all it does.
    if one_time_request == OneTimeRequest.CHANGE_EMAIL and not queue_reachable():
        return _queue_unreachable(request, page)
    if not subscriptions.one_time_link_use(subscriber=subscriber):  # a double click
        return _one_time_link_used(request, erased=False)
    if one_time_request == OneTimeRequest.EXPORT:
        try:
            return data_download(subscriber)
        except Subscriber.DoesNotExist:
            # Erased since the link was spent (another tab): nobody's to give.
            return _token_error(request, InvalidToken(), purpose=Purpose.ONE_TIME)
    if one_time_request == OneTimeRequest.DELETE:
        return _delete(request, subscriber)
    if one_time_request == OneTimeRequest.ENGAGEMENT:
        subscriptions.engagement_agree(
            subscriber=subscriber, ip_address=client_address(request) or None
        )
        return _engagement_saved(request, subscriber)
    try:
        subscriptions.email_change_request(subscriber=subscriber, new_email=new_email)
    except QueueUnreachable:
        # Lost since it was asked: the day's turn is given back, and the link
        # works again once the queue is back.
        subscriptions.one_time_link_give_back(subscriber=subscriber)
        return _queue_unreachable(request, page)
    # The same answer whether or not the address is free, so this page does not
    # reveal who else subscribes.
    return _done(
        request,
        subscriber,
        "Check the new inbox",
        f"If {readable_email(new_email)} can receive the newsletter, a link to "
        "confirm it is on its way there (at most one change a day). Until you click "
        f"it, your address stays {readable_email(subscriber.email)}.",
    )


# What outlives a reader's erasure, as docs/security.md says: the suppression
# list's keyed hash, with when its reader joined (the week) and left, for the
# desk's count of readers, and what the provider keeps, beyond the site's reach.
KEPT_AFTER_DELETING = (
    "We keep only a one-way keyed fingerprint of each address, so nothing is sent "
    "to it unless you subscribe again, with the week you joined and when you left, "
    "to count our readers. The service that delivers our emails keeps "
    "its own records of the emails it sent you, with your address, until they "
    "expire or we delete them there."
)


def _one_time_link_used(request: HttpRequest, *, erased: bool) -> HttpResponse:
    """A one-time link clicked again: it was good, and the reader is told what
    became of it rather than that it is not valid."""
    if erased:
        return _done(
            request,
            None,
            "Your data is deleted",
            "Your data has been deleted, so this link has nothing left to do. "
            f"{KEPT_AFTER_DELETING} You can subscribe again at any time.",
            status=410,
        )
    return _done(
        request,
        None,
        "This link has been used",
        "Links like this work once, and this one, or a newer one we sent you, has "
        "been used. To do it again, ask for a new link from the preferences link "
        "in any newsletter email.",
        status=410,
    )


def data_download(subscriber: Subscriber) -> HttpResponse:
    """The reader's data as they download it: from their one-time link, or from
    the desk for a reader who wrote in (no link reaches an address we no longer
    send to)."""
    data = {
        "exported_at": timezone.now(),
        **subscriptions.subscriber_export(subscriber=subscriber),
    }
    response = JsonResponse(
        data, encoder=DjangoJSONEncoder, json_dumps_params={"indent": 2}
    )
    response["Content-Disposition"] = 'attachment; filename="my-newsletter-data.json"'
    return response


def _delete(request: HttpRequest, subscriber: Subscriber) -> HttpResponse:
    address = readable_email(subscriber.email)
    subscriptions.subscriber_delete(subscriber=subscriber)
    return _done(
        request,
        None,
        "Your data is deleted",
        f"We have deleted {address} and any address you had before it, your consent "
        "records, the record of what we sent you and your comments. "
        f"{KEPT_AFTER_DELETING}",
    )
