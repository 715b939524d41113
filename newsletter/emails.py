"""Every email is three templates (subject, text body, HTML body) and one call.

The post email is rendered once per send and personalised per recipient by
replacing placeholders, which costs microseconds instead of a template render.

Headers are built only from settings and from values passed through header_safe(),
and the list headers are plain ASCII kept whole: Django's compat32 policy folds a long
List-Unsubscribe only at the ", " between its <...> targets, never inside one, and
never RFC 2047-encodes an ASCII value (tests/test_emails.py checks the raw bytes).
"""

import copy
import html
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from email.utils import make_msgid, parseaddr
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from urllib.parse import urlsplit, urlunsplit

import css_inline
from anymail.message import AnymailMessage
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db.models import Exists, prefetch_related_objects
from django.template import Context
from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import iri_to_uri
from django.utils.formats import date_format
from django.utils.text import Truncator, get_text_list

from posts.images import email_image
from posts.markdown import alignment_inline, places_as_print, whole_links
from posts.models import Inspection, Organisation, Post, PostUpdate, Sponsorship
from posts.related import related_posts
from posts.validators import normalise_email

from .engagement import (
    LinkTracker,
    reader_part_add,
    reader_parts,
    reader_slot_add,
    readers_html_size,
)
from .models import DEFAULT_TIME_ZONE, Subscriber, SubscriberTopic, day_of
from .plaintext import html_to_text
from .tokens import Purpose, make_token

# Gmail clips an HTML part beyond about 102 KB and hides the rest, footer and
# unsubscribe link included. Below this size as its readers get it (links
# tracked: readers_html_size), with room for each reader's own links, the post
# goes in full; above it, as an excerpt with a link to the site.
EMAIL_HTML_MAX_BYTES = 100_000

# Inlined once per render. Rules that cannot live in a style attribute (media
# queries for small screens and dark mode) stay in the <style> element.
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


# Unicode's control category (Cc): C0, DEL and C1. A pattern, as testing each
# character's category cost a digest's batch more than its HTTP call.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def header_safe(value: str) -> str:
    """One line of text fit for a header: no CR, LF or other control characters."""
    return _CONTROL.sub("", " ".join(value.split()))


def _render_text(template_name: str, context: dict) -> str:
    """A template whose output is text, not HTML (a subject, a text part): values
    go in as written. Django escapes for HTML whatever the file's name, and an
    inbox shows a post titled "Derby & Derbyshire" as "Derby &amp; Derbyshire"."""
    return get_template(template_name).template.render(
        Context(context, autoescape=False)
    )


def render_email(name: str, context: dict) -> RenderedEmail:
    context = {"site_url": settings.SITE_URL, **context}
    subject = _render_text(f"email/{name}-subject.txt", context)
    return RenderedEmail(
        subject=header_safe(subject),
        text=_render_text(f"email/{name}-body-text.txt", context),
        html=_inliner.inline(render_to_string(f"email/{name}-body-html.html", context)),
    )


def site_link(view_name: str, **kwargs) -> str:
    return settings.SITE_URL + reverse(view_name, kwargs=kwargs)


def site_domain() -> str:
    return _domain(settings.SITE_URL)


@lru_cache(maxsize=8)  # three times per email, and tests change SITE_URL
def _domain(url: str) -> str:
    host = urlsplit(url).hostname or "localhost"
    return host.encode("idna").decode("ascii")


def _header_url(url: str) -> str:
    """The URL in ASCII, its host in the IDNA form: Django RFC 2047-encodes a
    header that is not ASCII, and no mail program reads a link out of that."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host = _domain(url) + (f":{parts.port}" if parts.port else "")
    return iri_to_uri(urlunsplit(parts._replace(netloc=host)))


@lru_cache(maxsize=8)  # every reader's headers: a reader's cost was 8 µs more
def _unsubscribe_mailto(mailbox: str) -> str:
    return f"<mailto:{normalise_email(mailbox)}?subject=unsubscribe>"


def list_headers(*, unsubscribe_url: str) -> dict[str, str]:
    """RFC 2919 List-Id, RFC 2369 List-Unsubscribe and RFC 8058 one-click.

    Gmail and Yahoo require the one-click pair on bulk mail: the mail client POSTs
    "List-Unsubscribe=One-Click" to the https URL, without a cookie or a page.
    """
    targets = [f"<{_header_url(unsubscribe_url)}>"]
    if settings.NEWSLETTER_UNSUBSCRIBE_MAILTO:
        targets.append(_unsubscribe_mailto(settings.NEWSLETTER_UNSUBSCRIBE_MAILTO))
    return {
        "List-Id": f"On Probation <posts.{site_domain()}>",
        "List-Unsubscribe": ", ".join(targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


# Every email here is sent by a program: auto-replies (a reader away, a ticket
# system) must not answer it, at Reply-To, the editor, once per reader and
# mailing. RFC 3834's header, and Exchange's, which does not read RFC 3834's.
AUTOMATIC = {
    "Auto-Submitted": "auto-generated",
    "X-Auto-Response-Suppress": "OOF, AutoReply",
}


def replies_address() -> str:
    """Where readers' replies go (NEWSLETTER_REPLY_TO, without its name): the
    address a page names to a reader no link of ours can reach."""
    return parseaddr(settings.NEWSLETTER_REPLY_TO)[1]


def build_message(
    email: RenderedEmail, *, to: str, headers: dict | None = None, connection=None
) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=header_safe(email.subject),
        body=email.text,
        from_email=settings.NEWSLETTER_FROM_EMAIL,
        to=[to],
        reply_to=[settings.NEWSLETTER_REPLY_TO],
        # Django adds Date; the Message-ID names our own domain, not this host's.
        headers={
            "Message-ID": make_msgid(domain=site_domain()),
            **AUTOMATIC,
            **(headers or {}),
        },
        connection=connection,
    )
    message.attach_alternative(email.html, "text/html")
    return message


def build_bulk_message(
    email: RenderedEmail,
    *,
    unsubscribe_urls: dict[str, str],
    merge_data: dict[str, dict],
    connection=None,
) -> AnymailMessage:
    """One message to many readers (the addresses of `unsubscribe_urls`), each
    with their own list headers and `merge_data`, which the provider (or our
    backend for it) fills in. The provider assigns each copy its own Message-ID."""
    message = AnymailMessage(
        subject=header_safe(email.subject),
        body=email.text,
        from_email=settings.NEWSLETTER_FROM_EMAIL,
        to=list(unsubscribe_urls),
        reply_to=[settings.NEWSLETTER_REPLY_TO],
        connection=connection,
    )
    message.attach_alternative(email.html, "text/html")
    # Each reader's, AUTOMATIC too: a header of the message's own would take our
    # Postmark backend off its fast path (Payload._reader_cut).
    message.merge_headers = {
        address: {**AUTOMATIC, **list_headers(unsubscribe_url=url)}
        for address, url in unsubscribe_urls.items()
    }
    message.merge_data = merge_data
    return message


# The reader's own links in every post email: they never expire.
_PERSONAL_LINKS = {
    Purpose.UNSUBSCRIBE: "newsletter:unsubscribe",
    Purpose.PREFERENCES: "newsletter:preferences",
}


def unsubscribe_url(subscriber: Subscriber) -> str:
    """The reader's one-click unsubscribe link."""
    return site_link(
        _PERSONAL_LINKS[Purpose.UNSUBSCRIBE],
        token=make_token(subscriber, Purpose.UNSUBSCRIBE),
    )


def preferences_url(subscriber: Subscriber) -> str:
    """The reader's preference centre."""
    return site_link(
        _PERSONAL_LINKS[Purpose.PREFERENCES],
        token=make_token(subscriber, Purpose.PREFERENCES),
    )


def confirmation_message(
    subscriber: Subscriber, *, consent_id: int
) -> EmailMultiAlternatives:
    """The double opt-in; its link confirms that one consent (that request)."""
    token = make_token(subscriber, Purpose.CONFIRM, detail=str(consent_id))
    email = render_email(
        "confirm",
        {
            "subscriber": subscriber,
            "confirm_url": site_link("newsletter:confirm", token=token),
            "max_age_days": confirm_max_age_days(),
        },
    )
    return build_message(email, to=subscriber.email)


def confirm_max_age_days() -> int:
    """How long a confirmation link works, as the email and the pages around it
    say (NEWSLETTER_CONFIRM_MAX_AGE_DAYS)."""
    return settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS // 86400


# How many of the latest posts a welcome looks through for one on the reader's
# topics.
WELCOME_POSTS_LOOKED_AT = 20


def _first_followed(
    subscriber: Subscriber, posts: Sequence[Post], frequency: str
) -> Post | None:
    """The first of the posts the reader would have been sent, by the rule that
    chooses a new post's audience (SubscriberQuerySet.following): asked of every
    post in one statement."""
    if not posts:
        return None
    keys = Post.objects.filter(pk__in=[post.pk for post in posts]).topic_keys()
    reader = Subscriber.objects.filter(pk=subscriber.pk)
    follows = reader.values(
        **{
            f"post_{post.pk}": Exists(
                reader.following(keys.get(post.pk, ()), frequency=frequency)
            )
            for post in posts
        }
    ).first()
    return next((p for p in posts if follows and follows[f"post_{p.pk}"]), None)


def welcome_message(subscriber: Subscriber) -> EmailMultiAlternatives:
    """Sent once a subscription is confirmed: what to expect, and how to leave."""
    leave_url = unsubscribe_url(subscriber)
    frequency = subscriber.frequency()
    chosen = subscriber.topics.exclude(value="").exists()
    posts = list(Post.objects.published()[:WELCOME_POSTS_LOOKED_AT])
    followed = _first_followed(subscriber, posts, frequency)
    latest = followed or (posts[0] if posts else None)
    email = render_email(
        "welcome",
        {
            "subscriber": subscriber,
            # What they chose: the topics they follow or every post, as published
            # or in a digest, and when that arrives.
            "chosen": chosen,
            "digest": SubscriberTopic.Frequency(frequency).label.lower(),
            "digest_arrival": subscriber.digest_arrival(frequency),
            "unsubscribe_url": leave_url,
            "preferences_url": preferences_url(subscriber),
            "latest_post": latest,
            "latest_post_on_topics": chosen and followed is not None,
            "latest_post_url": (
                settings.SITE_URL + latest.get_absolute_url() if latest else ""
            ),
        },
    )
    return build_message(
        email,
        to=subscriber.email,
        headers=list_headers(unsubscribe_url=leave_url),
    )


# Placeholders survive HTML escaping (and css-inline) unchanged, and tokens contain
# only URL-safe characters and ':', so substituting them into rendered HTML is safe.
UNSUBSCRIBE_URL = "%%unsubscribe_url%%"
PREFERENCES_URL = "%%preferences_url%%"
# The post's date as each reader reads it, in their own time zone.
POST_DATE = "%%post_date%%"
_PLACEHOLDER = re.compile(f"({UNSUBSCRIBE_URL}|{PREFERENCES_URL}|{POST_DATE})")
# What a message to many readers fills in for each, by the merge field it names.
_MERGE_FIELDS = {
    UNSUBSCRIBE_URL: "unsubscribe_url",
    PREFERENCES_URL: "preferences_url",
    POST_DATE: "post_date",
}


def post_email_context(post: Post, *, full: bool) -> dict:
    """What the post templates need: the post, its links, and what the post page
    shows around it (the inspection fact box, related posts, the sponsor line)."""
    post_url = settings.SITE_URL + post.get_absolute_url()
    body_html = _images_for_mail(post.body_html)
    # The text part reads the places in the post itself ("[note 1]"); the HTML
    # part has them as print has them.
    body_text = html_to_text(whole_links(body_html, page_url=post_url)) if full else ""
    body_html = whole_links(places_as_print(body_html), page_url=post_url)
    # A table's alignment in the cell's own style, which wins over the layout's
    # (text-align: left) as css-inline merges them.
    body_html = alignment_inline(body_html)
    summary = post.summary
    return {
        "post": post,
        "post_url": post_url,
        "web_url": post_url,
        "full": full,
        "summary": summary,
        "preheader": Truncator(summary).chars(140),
        "body_html": body_html,
        "body_text": body_text,
        # As the post page shows them: a reader sent the post after a correction
        # gets it with the post, and no correction email.
        "updates": list(post.updates.all()),
        "post_date": POST_DATE,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "preferences_url": PREFERENCES_URL,
        **_publication_context(post),
    }


# An image in a post body as the sanitiser writes it (each value in double quotes),
# and one of its attributes.
_BODY_IMAGE = re.compile(r"<img\b[^>]*>")
_ATTRIBUTE = re.compile(r'\s([a-z]+)="([^"]*)"')


def _images_for_mail(body_html: str) -> str:
    """The body with each image uploaded here as every mail program shows it
    (posts.images.email_image), held to the column by a width attribute: Outlook
    for Windows reads no max-width, and showed a 1200px image 1200px wide. The
    layout's CSS (height: auto) keeps its proportions where CSS is read, and
    Outlook keeps them given a width alone."""

    def for_mail(image: re.Match) -> str:
        attributes = dict(_ATTRIBUTE.findall(image[0]))
        shown = email_image(html.unescape(attributes.get("src", "")))
        if shown is None:  # from elsewhere: its size is not known here
            return image[0]
        src, width = shown
        if attributes.get("width", "").isdigit():  # the author's, if narrower
            width = min(width, int(attributes["width"]))
        attributes.pop("height", None)  # the author's, for another width
        attributes.update(src=html.escape(src), width=str(width))
        return "<img" + "".join(f' {k}="{v}"' for k, v in attributes.items()) + ">"

    return _BODY_IMAGE.sub(for_mail, body_html)


def _with_owners(organisation: Organisation) -> str:
    """ "Norfolk and Suffolk CRC (owned by Sodexo Justice Services and Nacro)", as
    the page says who ran what was inspected."""
    owners = [owner.name for owner in organisation.owners.all()]
    if not owners:
        return organisation.name
    return f"{organisation.name} (owned by {get_text_list(owners, 'and')})"


def _fact_box(inspection: Inspection) -> dict:
    """An inspection's facts as the email's box says them: what the page's
    (templates/posts/_facts.html) says, in an email's plainer frame."""
    facts = [
        ("Inspected by", inspection.inspectorate),
        ("Inspection", inspection.get_type_display()),
    ]
    if inspection.area:
        facts.append(("Area", f"{inspection.area}, {inspection.area.region}"))
    if organisations := "; ".join(map(_with_owners, inspection.organisations.all())):
        facts.append(("Organisations", organisations))
    if fieldwork := inspection.fieldwork_said:
        said = "".join(f"{words}{day:%-d %B %Y}" for words, day in fieldwork)
        facts.append(("Fieldwork", said))
    if inspection.published_on:
        facts.append(("Report published", f"{inspection.published_on:%-d %B %Y}"))
    if inspection.recommendations is not None:
        facts.append(("Recommendations", str(inspection.recommendations)))
    return {
        "title": inspection.title,
        "report_url": inspection.report_url,
        "facts": facts,
        "ratings": [("Overall", inspection.get_overall_display())]
        + [(r.standard, r.get_rating_display()) for r in inspection.ratings.all()],
        "findings": inspection.key_findings_list,
    }


def _publication_context(post: Post) -> dict:
    inspections = post.inspections.select_related("area__region").prefetch_related(
        "organisations__owners", "ratings"
    )
    # A box for each inspection, in the order the post's page shows them.
    context = {"fact_boxes": [_fact_box(i) for i in inspections]}
    context["related_posts"] = [
        {
            "title": item.post.title,
            "url": settings.SITE_URL + item.post.get_absolute_url(),
        }
        for item in related_posts(post)
    ]
    context["sponsors"] = sponsor_lines([post]).get(post.pk, [])
    return context


def sponsor_lines(posts: Collection[Post]) -> dict[int, list[dict[str, str]]]:
    """The sponsors (templates/email/_sponsor.*) of each sponsored post, by post
    id, in Sponsorship.objects.of_posts' order, read in one statement for them
    all: a digest batch's posts each name theirs, as sponsored content must
    wherever it is sent. Every copy, in the
    post's own email or a digest, names the sponsor of the day the post was
    announced, however late its batch goes (past midnight, resumed, retried);
    before that, the day it will go (Post.first_seen_on), as the author's
    preview shows it."""
    days = {
        post.pk: (
            timezone.localdate(post.announced_at)
            if post.announced_at
            else post.first_seen_on()
        )
        for post in posts
    }
    return {
        post_id: [
            {
                "name": sponsor.name,
                "url": sponsor.url,
                "text": sponsor.posts_sponsored_by,
            }
            for sponsor in sponsors
        ]
        for post_id, sponsors in Sponsorship.objects.of_posts(days).items()
    }


_PATH_SLOT = "--slot--"  # survives reverse() unescaped


def filled(pieces: list[str], values: dict[str, str]) -> str:
    """The text cut at its placeholders (the odd pieces), with their values; one
    with none stays as it is (the date placeholder a draft's author typed: a draft
    has no date to fill in)."""
    pieces = pieces.copy()
    pieces[1::2] = [values.get(p, p) for p in pieces[1::2]]
    return "".join(pieces)


class Encoded(str):
    """A body that carries its own JSON encoding (`json`, as json.dumps writes it),
    for an HTTP provider's request. JSON-encoding a string is escaping it character
    by character, so text assembled from pieces is encoded by joining their
    encodings, made once (json_inner): a digest batch's bodies are 500 readers'
    assemblies of the same pieces, and encoding each whole cost a worker more than
    any other step of sending it. To anything else it is the text; and what is
    made from it (replaced, joined, substituted) is a plain str, encoded whole."""

    json: str

    @classmethod
    def of(cls, text: str, encoding: str) -> "Encoded":
        body = cls(text)
        body.json = encoding
        return body


def json_inner(text: str) -> str:
    """The text JSON-encoded as json.dumps(text) encodes it (its C encoder, without
    dumps' own steps: a digest encodes four small values per reader), or as it
    carries its encoding (Encoded), without its quotes: encodings of pieces join
    into the encoding of the joined pieces."""
    if isinstance(text, Encoded):
        return text.json[1:-1]
    return encode_basestring_ascii(text)[1:-1]


class ReaderLinks:
    """The readers' own links, as unsubscribe_url() and preferences_url() make
    them, for many readers: reverse() once, not per reader, as it costs more than
    signing the token."""

    def __init__(self) -> None:
        self._slots = {
            purpose: site_link(view, token=_PATH_SLOT)
            for purpose, view in _PERSONAL_LINKS.items()
        }

    def link(self, subscriber: Subscriber, purpose: Purpose) -> str:
        return self._slots[purpose].replace(_PATH_SLOT, make_token(subscriber, purpose))


class BulkEmail:
    """An email to many readers, rendered once (the `template` over `context()`)
    and addressed to each by filling in their own links."""

    template: str

    def __init__(self, *, mailing_id: int | None = None) -> None:
        # A mailing's links go through the counting redirect; a test send's do not.
        self._tracker = LinkTracker(mailing_id) if mailing_id else None
        self._links = ReaderLinks()
        # Tracked once chosen: only the links of the email sent get Link rows.
        self._cut(self._tracked(self._render()))

    def _cut(self, rendered: RenderedEmail) -> None:
        self.rendered = rendered
        # Cut once at the placeholders (the odd pieces): addressing a copy is then
        # one join per body.
        self._pieces = [
            _PLACEHOLDER.split(body) for body in (rendered.text, rendered.html)
        ]

    def for_batch(self, batch_id: int) -> "BulkEmail":
        """This email as a batch sends it: its counted links name the batch, so
        that a click is timed from when its batch went, not the mailing."""
        if self._tracker is None:
            return self
        email = copy.copy(self)
        html = self._tracker.batch_marked(self.rendered.html, batch_id)
        email._cut(replace(self.rendered, html=html))
        return email

    def context(self) -> dict:
        raise NotImplementedError

    def reader_dates(self, time_zone: str) -> dict[str, str]:
        """The email's dates as a reader in `time_zone` reads them, by placeholder."""
        return {}

    def _render(self) -> RenderedEmail:
        """The email as its readers get it, before its links are tracked."""
        return render_email(self.template, self.context())

    def for_subscriber(
        self, subscriber: Subscriber, *, connection=None
    ) -> EmailMultiAlternatives:
        return self._addressed(
            to=subscriber.email,
            links={
                UNSUBSCRIBE_URL: self._links.link(subscriber, Purpose.UNSUBSCRIBE),
                PREFERENCES_URL: self._links.link(subscriber, Purpose.PREFERENCES),
                **self.reader_dates(subscriber.time_zone),
            },
            connection=connection,
            reader_id=subscriber.pk if self._tracker else None,
        )

    def for_many(
        self, subscribers: Sequence[Subscriber], *, merge_field: str, connection=None
    ) -> AnymailMessage:
        """One message to many subscribers, personalised by the provider (or by
        our Postmark backend, which then posts each subscriber their own).

        Only each subscriber's pk, email and time zone are read, so the sender
        passes its claimed ledger rows rather than model instances. `merge_field`
        is the provider's merge syntax with NAME for the field (e.g.
        "%recipient.NAME%"): the bodies carry each reader's own links (and a
        post's date) through it, and each reader gets their own list headers
        (anymail's merge_headers). The provider assigns each copy its own
        Message-ID.
        """
        dated = {}  # by time zone: a few for a batch's readers
        for s in subscribers:
            if s.time_zone not in dated:
                dated[s.time_zone] = {
                    _MERGE_FIELDS[placeholder]: value
                    for placeholder, value in self.reader_dates(s.time_zone).items()
                }
        links = {
            s.email: {
                "unsubscribe_url": self._links.link(s, Purpose.UNSUBSCRIBE),
                "preferences_url": self._links.link(s, Purpose.PREFERENCES),
                **dated[s.time_zone],
            }
            for s in subscribers
        }
        text, html = self.rendered.text, self.rendered.html
        for placeholder, field in _MERGE_FIELDS.items():
            merged = merge_field.replace("NAME", field)
            text, html = (
                text.replace(placeholder, merged),
                html.replace(placeholder, merged),
            )
        # Their clicks are theirs, if they agreed: the provider fills each
        # reader's part (nothing for the others) after every counted link.
        parts = reader_parts([s.pk for s in subscribers]) if self._tracker else {}
        if parts:
            html = reader_slot_add(html, merge_field.replace("NAME", "reader_part"))
            for s in subscribers:
                links[s.email]["reader_part"] = parts.get(s.pk, "")
        return build_bulk_message(
            RenderedEmail(subject=self.rendered.subject, text=text, html=html),
            unsubscribe_urls={
                email: personal["unsubscribe_url"] for email, personal in links.items()
            },
            merge_data=links,
            connection=connection,
        )

    def _tracked(self, email: RenderedEmail) -> RenderedEmail:
        if self._tracker is None:
            return email
        return replace(email, html=self._tracker.tracked(email.html))

    def test_message(self, *, to: str) -> EmailMultiAlternatives:
        """The email as a reader gets it, marked as a test, for the author's inbox.

        The author is not a subscriber, so the personal links are dead ones that
        the site answers with "this link is not valid".
        """
        rejected = "test"  # not a secret: a token every view refuses
        message = self._addressed(
            to=to,
            links={
                UNSUBSCRIBE_URL: site_link("newsletter:unsubscribe", token=rejected),
                PREFERENCES_URL: site_link("newsletter:preferences", token=rejected),
                **self.reader_dates(DEFAULT_TIME_ZONE),
            },
        )
        message.subject = header_safe(f"[TEST] {message.subject}")
        return message

    def _addressed(
        self,
        *,
        to: str,
        links: dict[str, str],
        connection=None,
        reader_id: int | None = None,
    ) -> EmailMultiAlternatives:
        text, html = (filled(pieces, links) for pieces in self._pieces)
        if reader_id is not None:  # their clicks are theirs, if they agreed
            html = reader_part_add(html, subscriber_id=reader_id)
        personal = RenderedEmail(subject=self.rendered.subject, text=text, html=html)
        return build_message(
            personal,
            to=to,
            connection=connection,
            headers=list_headers(unsubscribe_url=links[UNSUBSCRIBE_URL]),
        )


class PostEmail(BulkEmail):
    """A post's announcement.

    The author chooses the full post or an excerpt; a full post whose HTML part
    would be clipped by Gmail goes as an excerpt, and `shortened` says so. The
    author's preview and check and the mailing decide alike, on the size its
    readers get (`size`), whether or not this email's links are tracked.
    """

    template = "post"

    def __init__(self, post: Post, *, mailing_id: int | None = None) -> None:
        # Read once, for every render of this email (full, shortened, shared).
        prefetch_related_objects([post], "updates")
        self.post = post
        self._dates: dict[str, dict[str, str]] = {}  # by time zone
        self.full = post.email_format == Post.EmailFormat.FULL
        self.shortened = False
        super().__init__(mailing_id=mailing_id)

    def _render(self) -> RenderedEmail:
        email = super()._render()
        self.size = readers_html_size(email.html)
        if self.full and self.size > EMAIL_HTML_MAX_BYTES:
            self.full, self.shortened = False, True
            email = super()._render()
            self.size = readers_html_size(email.html)
        return email

    def context(self) -> dict:
        return post_email_context(self.post, full=self.full)

    def reader_dates(self, time_zone: str) -> dict[str, str]:
        """The post dated in the reader's time zone, as a digest dates it: the
        email is rendered once, and each reader's copy filled in with the date
        of their zone (a few for a batch's readers)."""
        if self.post.published_at is None:
            return {}
        if time_zone not in self._dates:
            day = day_of(self.post.published_at, time_zone)
            self._dates[time_zone] = {POST_DATE: date_format(day, "j F Y")}
        return self._dates[time_zone]


class CorrectionEmail(BulkEmail):
    """A correction or update to a post, for the readers sent its earlier text:
    what changed first, then a link to the post, which shows it dated."""

    template = "correction"

    def __init__(
        self, post_update: PostUpdate, *, mailing_id: int | None = None
    ) -> None:
        self.post_update = post_update
        self.post = post_update.post
        super().__init__(mailing_id=mailing_id)

    def context(self) -> dict:
        update = self.post_update
        post_url = settings.SITE_URL + self.post.get_absolute_url()
        return {
            "update": update,
            "post": self.post,
            "post_url": post_url,
            "web_url": post_url,
            "preheader": Truncator(update.right or update.note).chars(140),
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "preferences_url": PREFERENCES_URL,
        }


def html_size(email: RenderedEmail) -> int:
    return len(email.html.encode())


def _author_address(author_id: int) -> str:
    """The address of the desk member who asked for a test, read as it is sent:
    the queue holds their id."""
    authors = get_user_model().objects.filter(pk=author_id)
    return authors.values_list("email", flat=True).first() or ""


def post_test_send(*, post_id: int, author_id: int) -> None:
    """Send the author a test of a post's email through the normal backend."""
    post = Post.objects.filter(pk=post_id).first()
    if post is not None and (to := _author_address(author_id)):
        PostEmail(post).test_message(to=to).send()


def correction_test_send(*, post_update_id: int, author_id: int) -> None:
    """Send the author a test of a correction's email through the normal backend."""
    update = PostUpdate.objects.select_related("post").filter(pk=post_update_id)
    post_update = update.first()
    if post_update is not None and (to := _author_address(author_id)):
        CorrectionEmail(post_update).test_message(to=to).send()
