"""Every email is three templates (subject, text body, HTML body) and one call.

The post email is rendered once per send and personalised per recipient by
replacing placeholders, which costs microseconds instead of a template render.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import make_msgid
from urllib.parse import urlsplit

from anymail.message import AnymailMessage
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from posts.models import Post

from .models import Subscriber
from .tokens import Purpose, make_token


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_email(name: str, context: dict) -> RenderedEmail:
    context = {"site_url": settings.SITE_URL, **context}
    subject = render_to_string(f"email/{name}-subject.txt", context)
    return RenderedEmail(
        # A subject is one line whatever the template's whitespace.
        subject=" ".join(subject.split()),
        text=render_to_string(f"email/{name}-body-text.txt", context),
        html=render_to_string(f"email/{name}-body-html.html", context),
    )


def site_link(view_name: str, **kwargs) -> str:
    return settings.SITE_URL + reverse(view_name, kwargs=kwargs)


def build_message(
    email: RenderedEmail, *, to: str, headers: dict | None = None, connection=None
) -> EmailMultiAlternatives:
    domain = urlsplit(settings.SITE_URL).hostname or "localhost"
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.text,
        from_email=settings.NEWSLETTER_FROM_EMAIL,
        to=[to],
        headers={"Message-ID": make_msgid(domain=domain), **(headers or {})},
        connection=connection,
    )
    message.attach_alternative(email.html, "text/html")
    return message


def confirmation_message(subscriber: Subscriber) -> EmailMultiAlternatives:
    token = make_token(subscriber, Purpose.CONFIRM)
    email = render_email(
        "confirm",
        {
            "subscriber": subscriber,
            "confirm_url": site_link("newsletter:confirm", token=token),
            "max_age_days": settings.NEWSLETTER_CONFIRM_MAX_AGE // 86400,
        },
    )
    return build_message(email, to=subscriber.email)


# Placeholders survive HTML escaping unchanged, and tokens contain only URL-safe
# characters and ':', so substituting them into rendered HTML is safe.
_UNSUBSCRIBE_URL = "%%unsubscribe_url%%"
_PATH_SLOT = "--slot--"  # survives reverse() unescaped


class PostEmail:
    """A post rendered once, ready to be addressed to each subscriber."""

    def __init__(self, post: Post) -> None:
        self.post = post
        self.rendered = render_email(
            "post",
            {
                "post": post,
                "post_url": settings.SITE_URL + post.get_absolute_url(),
                "unsubscribe_url": _UNSUBSCRIBE_URL,
            },
        )

    def for_subscriber(
        self, subscriber: Subscriber, *, connection=None
    ) -> EmailMultiAlternatives:
        unsubscribe_url = unsubscribe_link(subscriber)
        personal = RenderedEmail(
            subject=self.rendered.subject,
            text=self.rendered.text.replace(_UNSUBSCRIBE_URL, unsubscribe_url),
            html=self.rendered.html.replace(_UNSUBSCRIBE_URL, unsubscribe_url),
        )
        return build_message(
            personal,
            to=subscriber.email,
            connection=connection,
            headers=one_click_headers(unsubscribe_url),
        )

    def for_many(
        self,
        subscribers: Sequence[Subscriber],
        *,
        body_link: str,
        merge_body_link: bool,
        connection=None,
    ) -> AnymailMessage:
        """One provider batch call to many subscribers, personalised by the provider.

        Only each subscriber's pk and email are read, so the sender passes its
        claimed ledger rows rather than model instances.

        Each recipient gets their own one-click List-Unsubscribe headers (anymail's
        merge_headers). The bodies are shared, so their unsubscribe link becomes
        `body_link`, written in the provider's merge syntax; with merge_body_link
        each recipient's own URL is passed as merge data "unsubscribe_url".
        """
        # reverse() once, not per recipient: it costs more than signing the token.
        url = site_link("newsletter:unsubscribe", token=_PATH_SLOT)
        links = {
            s.email: url.replace(_PATH_SLOT, make_token(s, Purpose.UNSUBSCRIBE))
            for s in subscribers
        }
        message = AnymailMessage(
            subject=self.rendered.subject,
            body=self.rendered.text.replace(_UNSUBSCRIBE_URL, body_link),
            from_email=settings.NEWSLETTER_FROM_EMAIL,
            to=list(links),
            connection=connection,
        )
        message.attach_alternative(
            self.rendered.html.replace(_UNSUBSCRIBE_URL, body_link), "text/html"
        )
        message.merge_headers = {
            email: one_click_headers(link) for email, link in links.items()
        }
        if merge_body_link:
            message.merge_data = {
                email: {"unsubscribe_url": link} for email, link in links.items()
            }
        return message


def unsubscribe_link(subscriber: Subscriber) -> str:
    return site_link(
        "newsletter:unsubscribe", token=make_token(subscriber, Purpose.UNSUBSCRIBE)
    )


def one_click_headers(unsubscribe_url: str) -> dict[str, str]:
    # RFC 2369 and RFC 8058: mail clients show an unsubscribe button that POSTs
    # "List-Unsubscribe=One-Click" to this URL.
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
