"""What every email carries: its parts, its links, and headers exact to the byte."""

import re
from datetime import date, timedelta
from html import unescape
from html.parser import HTMLParser
from io import BytesIO

import css_inline
import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from newsletter import subscriptions
from newsletter.delivery.postmark import EmailBackend
from newsletter.emails import (
    EMAIL_HTML_MAX_BYTES,
    WELCOME_POSTS_LOOKED_AT,
    CorrectionEmail,
    PostEmail,
    build_message,
    confirmation_message,
    html_size,
    post_email_context,
    render_email,
    welcome_message,
)
from newsletter.models import Link, Subscriber, SubscriberTopic
from newsletter.plaintext import html_to_text
from posts.demo_content import POSTS
from posts.markdown import render_markdown
from posts.models import Post, PostImage, PostUpdate, RelatedLink, Sponsorship
from posts.services import post_publish

from .email_types import every_email
from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    SubscriberFactory,
    UserFactory,
    admin_post_form,
)
from .migrating import migrate_again_after

pytestmark = pytest.mark.django_db

MARKDOWN_BODY = """\
## What inspectors found

Caseloads were **too high**, as the [inspection report](https://example.gov.uk/report)
and the [area page](/area/derby/) show.

1. Risk assessments were thin.
2. Home visits were rare.

- Staffing
- Training, see [the report](https://example.gov.uk/report) again

![A chart of caseloads](https://example.org/chart.png)
"""


class _Page(HTMLParser):
    """The links, images and root language of an HTML part."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: set[str] = set()
        self.images: list[dict] = []
        self.lang = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.add(attributes["href"])
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "html":
            self.lang = attributes.get("lang")


class _Text(HTMLParser):
    """The text an HTML fragment shows, entities read."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.feed(html)
        self.close()

    def handle_data(self, data):
        self.text += data


class _Contrast(HTMLParser):
    """Each visible piece of text of an inlined HTML part whose colour on its
    background is below WCAG AA (4.5:1), with the colours its inline styles give
    it (a mail client's own colours aside)."""

    _VOID = {"br", "img", "meta", "hr", "link"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [("", (0, 0, 0), (255, 255, 255), False)]
        self.low: list[tuple[str, float]] = []
        self.feed(html)

    @staticmethod
    def _luminance(rgb) -> float:
        def linear(c: float) -> float:
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (linear(c / 255) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    def handle_starttag(self, tag, attrs):
        _, colour, background, hidden = self.stack[-1]
        for name, value in re.findall(
            r"([\w-]+)\s*:\s*([^;]+)", dict(attrs).get("style") or ""
        ):
            if found := re.match(r"\s*#([0-9a-f]{6})\b", value, re.I):
                rgb = tuple(bytes.fromhex(found[1]))
                if name == "color":
                    colour = rgb
                elif name in {"background-color", "background"}:
                    background = rgb
            hidden = hidden or (name == "display" and value.startswith("none"))
        if tag not in self._VOID:
            self.stack.append((tag, colour, background, hidden))

    def handle_endtag(self, tag):
        tags = [entry[0] for entry in self.stack]
        if tag in tags[1:]:
            del self.stack[len(tags) - 1 - tags[::-1].index(tag) :]

    def handle_data(self, data):
        _, colour, background, hidden = self.stack[-1]
        light, dark = sorted(map(self._luminance, (colour, background)), reverse=True)
        ratio = (light + 0.05) / (dark + 0.05)
        if data.strip() and not hidden and ratio < 4.5:
            self.low.append((data.strip(), round(ratio, 1)))


def in_dark_mode(html: str) -> str:
    """The HTML part as a client that applies its dark-mode media query shows it:
    that query's rules inlined over the rest."""
    query = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\}", html, re.S)
    return css_inline.inline(
        html.replace("</head>", f"<style>{query[1]}</style></head>")
    )


def text_links(text: str) -> set[str]:
    return set(re.findall(r"(?:https?://|mailto:)[^\s<>\"]+", text))


def raw_header_fields(message) -> list[tuple[str, str]]:
    """(name, value) per header field of the raw bytes, folds kept as '\\n'."""
    raw = message.message().as_bytes()
    head = raw.split(b"\n\n", 1)[0].decode("ascii")  # a header is 7-bit or broken
    fields: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in {" ", "\t"}:
            name, value = fields[-1]
            fields[-1] = (name, value + "\n" + line)
        else:
            name, _, value = line.partition(":")
            fields.append((name, value.lstrip(" ")))
    return fields


def unfold(value: str) -> str:
    return value.replace("\n", "").strip()


def header(message, name: str) -> str:
    values = [v for n, v in raw_header_fields(message) if n.lower() == name.lower()]
    assert len(values) == 1, f"{name} appears {len(values)} times"
    return unfold(values[0])


@pytest.fixture
def post():
    return PublishedPostFactory(title="Derby: caseloads too high", body=MARKDOWN_BODY)


# Templates ----------------------------------------------------------------------


def test_every_email_type_has_a_subject_a_text_part_and_an_inlined_html_part(post):
    for name, message in every_email(post).items():
        html = message.alternatives[0][0]
        assert message.subject, name
        assert len(message.body) > 200, name
        assert "max-width: 600px" in html, name
        assert 'role="presentation"' in html, name
        # Inlined: the rules live in style attributes; only media queries stay.
        assert '<body style="' in html, name
        assert ".masthead {" not in html, name
        assert 'class="preheader"' in html, name


def test_every_html_part_declares_its_language_and_every_image_has_alt_text(post):
    emails = every_email(post)
    for name, message in emails.items():
        page = _Page(message.alternatives[0][0])
        assert page.lang == "en-GB", name
        assert all(image.get("alt") for image in page.images), name
    post_page = _Page(emails["post"].alternatives[0][0])
    assert post_page.images  # the body's chart is there, with its alt text


def test_every_html_part_reads_in_light_and_dark_mode(post):
    # Quotes are the reader's business here: a report quoted in a post, what a
    # post said and should say in a correction, the wording a reader agrees to.
    post.body = "> Inspectors found the service **not** safe.\n\n" + MARKDOWN_BODY
    post.save()
    emails = every_email(post)
    emails["correction"] = CorrectionEmail(
        PostUpdate.objects.create(
            post=post, wrong="Rated Inadequate.", right="Rated Requires improvement."
        )
    ).for_subscriber(SubscriberFactory())
    asking = SubscriberFactory(one_time_link_sent_at=timezone.now())
    subscriptions.one_time_link_send(
        subscriber_id=asking.pk,
        detail="engagement",
        requested_at=asking.one_time_link_sent_at,
    )
    emails["one-time-link (engagement)"] = mail.outbox[-1]
    for name, message in emails.items():
        html = message.alternatives[0][0]
        assert _Contrast(html).low == [], f"{name}, light"
        assert _Contrast(in_dark_mode(html)).low == [], f"{name}, dark"


def test_text_and_html_parts_carry_the_same_links(post):
    emails = every_email(post)
    # The digest is a round's: its HTML links go through the click redirect, its
    # text part's straight to the pages (docs/engagement.md). The post, built
    # outside a mailing, has no redirect in either.
    del emails["digest"]
    for name, message in emails.items():
        html_links = _Page(message.alternatives[0][0]).links
        assert text_links(message.body) == html_links, name


def test_every_text_part_keeps_its_lines_to_what_a_mail_program_shows_whole(post):
    """A plain-text reader shows a line as sent: the welcome's first sentence
    ran to 134 characters, then broke after "Probation's"; the change of
    address's and a sponsor's lines ran on too. Past 78 characters (RFC 5322)
    only a line that ends in its link, which breaking would cut."""
    for name, message in every_email(post).items():
        for line in message.body.splitlines():
            if not re.search(r"(https?://|mailto:)\S+$", line):
                assert len(line) <= 78, (name, line)


def test_a_posts_corrections_in_its_text_part_keep_to_the_same_lines(post):
    """Sent after a correction, the post's text part gave each update one line,
    what it said and should say and the note together."""
    PostUpdate.objects.create(
        post=post,
        kind=PostUpdate.Kind.CORRECTION,
        wrong="Inspectors rated the service Inadequate.",
        right="Inspectors rated the service Requires improvement.",
        note="We misread the report's table of ratings.",
    )
    text = PostEmail(post).for_subscriber(SubscriberFactory()).body
    said = " ".join(text.split())
    assert 'it should say "Inspectors rated the service Requires improvement."' in said
    assert max(len(line) for line in text.splitlines() if "://" not in line) <= 78


def test_post_text_part_reads_as_text_with_numbered_link_references(post):
    text = PostEmail(post).for_subscriber(SubscriberFactory()).body
    assert "What inspectors found\n=====================" in text
    assert "1. Risk assessments were thin.\n2. Home visits were rare.\n\n- " in text
    assert "- Staffing\n- Training" in text
    # One number per distinct link, listed once at the end.
    words = " ".join(text.split())
    assert "inspection report [1]" in words
    assert "the report [1] again" in words
    assert "area page [2]" in words
    assert text.count("[1] https://example.gov.uk/report") == 1
    assert "[2] http://127.0.0.1:8000/area/derby/" in text
    assert "[image: A chart of caseloads]" in text
    assert "**" not in text and "](" not in text and "## " not in text


def test_text_part_keeps_quotes_tables_code_and_line_breaks_readable():
    body = (
        "> The service was *not* safe.\n\n"
        "| Standard | Rating |\n|---|---|\n"
        "| Assessment | [Inadequate](https://example.org/r) |\n\n"
        "```\nrisk = high\n  review = overdue\n```\n\n"
        "First line  \nsecond line\n\n"
        "<script>alert(1)</script>"
    )
    text = PostEmail(PublishedPostFactory(body=body)).rendered.text
    assert "> The service was not safe." in text
    assert "Standard | Rating\nAssessment | Inadequate [1]" in text
    assert "risk = high\n  review = overdue" in text
    assert "First line\nsecond line" in text
    assert "[1] https://example.org/r" in text
    assert "alert" not in text and "<script>" not in text


def test_struck_out_words_reach_readers_struck_out():
    """An author correcting a rating in place ("rated ~~Good~~ Requires
    improvement"): the sanitiser dropped the <s> Markdown makes and kept its
    words, so the post and both parts of its email read "rated Good Requires
    improvement", the old rating as current."""
    post = PublishedPostFactory(
        body="The service was rated ~~Good~~ Requires improvement.",
        email_format=Post.EmailFormat.FULL,
    )
    assert "rated <s>Good</s> Requires improvement" in post.body_html
    email = PostEmail(post).rendered
    assert "<s>Good</s>" in email.html
    assert "rated ~~Good~~ Requires improvement" in email.text


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_show_their_struck_out_words_after_the_deploy(client):
    post = PublishedPostFactory(body="Rated ~~Good~~ Requires improvement.")
    Post.objects.filter(pk=post.pk).update(
        body_html="<p>Rated Good Requires improvement.</p>"  # as it was stored
    )
    migrate_again_after("posts", "0011_remake_renditions_under_whole_names")
    assert "Rated <s>Good</s> Requires" in client.get(post.get_absolute_url()).text


@pytest.mark.parametrize("start", ["\u00b2", "\u0663", "9" * 5000])
def test_a_list_start_that_is_no_number_counts_from_one_in_the_text_part(start):
    # The author may write a list's HTML: int() raised on these, so the desk
    # refused to save the post and its email could not be rendered.
    body = f'<ol start="{start}"><li>Caseloads</li><li>Risk</li></ol>\n\n7. Staffing'
    text = PostEmail(PublishedPostFactory(body=body)).rendered.text
    assert "1. Caseloads\n2. Risk" in text
    assert "7. Staffing" in text


MARKDOWN_PIECES = st.sampled_from(
    [
        "\n", "\n\n", "## ", "- ", "1. ", "   ", "> ", "| a | b |\n|---|---|\n| ",
        "```\n", "**", "_", "  \n", "<br>", "![alt](https://example.org/i.png)",
        "[link](https://example.org/a)", "[other](https://example.org/b?x=1&y=2)",
        "<https://example.org/c>", "[mail](mailto:ed@example.org)",
        "[bad](javascript:x)",
    ]
)  # fmt: skip
PRINTABLE = st.characters(blacklist_categories=["Cc", "Cs"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MARKDOWN_PIECES | st.text(PRINTABLE, max_size=8), max_size=30))
@example(["```\n", "<https://example.org/c>"])  # an address in a code block: text
@example(["^", "[link](https://example.org/a)"])  # no inline note: a "^" and a link
def test_any_post_body_gives_text_listing_exactly_the_html_links(pieces):
    html = render_markdown("".join(pieces))
    text = html_to_text(html)
    assert "\x00" not in text and "\x01" not in text
    references = dict(re.findall(r"^\[(\d+)\] (\S+)$", text, re.M))
    written_out = set(re.findall(r"<([a-z]+:[^\s<>]+)>", text))  # text is address
    # A link to a place in the post (a section, a note) is no address to list:
    # the text part holds the whole post.
    links = {link for link in _Page(html).links if not link.startswith("#")}
    # Each link of the HTML listed exactly once, numbered in order of appearance,
    # or written out in place; what reads as an address written out and is no
    # link is the author's own text (in a code block, "<https://…>" as typed).
    assert set(references.values()) | (written_out & links) == links
    shown = _Text(html).text
    assert all(f"<{address}>" in shown for address in written_out - links)
    assert len(references) == len(set(references.values()))
    assert list(references) == [str(n) for n in range(1, len(references) + 1)]


def test_relative_links_in_a_post_become_absolute_in_the_email(post):
    html = PostEmail(post).rendered.html
    assert 'href="http://127.0.0.1:8000/area/derby/"' in html
    assert 'href="/area/' not in html


def test_every_link_in_a_post_leads_where_it_does_on_the_post_page():
    # On the page a browser resolves the body's links against the page's address;
    # an inbox has no page, so the email carries them whole.
    post = PublishedPostFactory(
        slug="derby",
        body="[next](../kent/) [the findings](#findings) [page two](?page=2) "
        "[the report](//example.gov.uk/report) ![A chart](media/chart.png) "
        "[area](/area/derby/) [mail](mailto:ed@example.org) "
        "[elsewhere](https://example.org/a?b=1&c=2)",
    )
    html = PostEmail(post).rendered.html
    text = PostEmail(post).rendered.text
    page = "http://127.0.0.1:8000/posts/derby/"
    whole = {
        "http://127.0.0.1:8000/posts/kent/",
        page + "?page=2",
        "http://example.gov.uk/report",
        "http://127.0.0.1:8000/area/derby/",
        "mailto:ed@example.org",
        "https://example.org/a?b=1&c=2",
    }
    assert whole <= _Page(html).links
    # Both parts hold the whole post: a place in it is only words there
    # (posts.markdown.places_as_print).
    assert whole <= text_links(text)
    assert "user-content-findings" not in text
    assert not any("#" in link for link in _Page(html).links)
    assert "the findings" in text and "the findings" in html
    assert _Page(html).images[0]["src"] == page + "media/chart.png"


def test_a_link_a_browser_reads_as_another_sites_leads_there_in_the_email_too():
    # A browser reads a backslash as a slash, and drops tabs and leading spaces:
    # on the page these all go to example.org, and the email led to pages of
    # this site's that do not exist.
    post = PublishedPostFactory(
        body='<a href="/\\example.org/a">one</a> <a href="\\\\example.org/b">two</a> '
        '<a href="\\/example.org/c">three</a> <a href="/&#9;/example.org/d">four</a> '
        '<a href=" /\\example.org/e">five</a> <img src="/\\example.org/f.png" alt="">'
    )
    html = PostEmail(post).rendered.html
    text = PostEmail(post).rendered.text
    whole = {f"http://example.org/{path}" for path in "abcde"}
    assert whole <= _Page(html).links
    assert whole <= text_links(text)
    assert _Page(html).images[0]["src"] == "http://example.org/f.png"


def test_a_link_to_the_site_a_browser_reads_with_its_backslashes_as_slashes(
    settings,
):
    # On the page, "/posts\\kent/" opens /posts/kent/: so must the email's link,
    # made whole from it; a backslash in the query is the query's own, as sent.
    post = PublishedPostFactory(
        body='<a href="/posts\\kent/">one</a> <a href="/search/?q=a\\b">two</a>'
    )
    settings.SITE_URL = site = "https://onprobation.example"
    rendered = PostEmail(post).rendered
    whole = {f"{site}/posts/kent/", f"{site}/search/?q=a\\b"}
    assert whole <= {link.split("#")[0] for link in _Page(rendered.html).links}


# A post's images, as every mail program shows them ------------------------------------
# Outlook for Windows (Word's renderer), where much of this audience reads, shows no
# WebP and sizes an image by its width attribute alone, not by CSS.

COLUMN = (
    552  # the email's column: 600px less its padding (templates/email/_layout.html)
)


def image_file(
    width: int, height: int, image_format: str, name: str, *, transparent=False
) -> SimpleUploadedFile:
    buffer = BytesIO()
    picture = Image.new("RGBA" if transparent else "RGB", (width, height), "#1e5a96")
    if transparent:
        picture.paste((0, 0, 0, 0), (0, 0, 40, 40))
    picture.save(buffer, image_format)
    return SimpleUploadedFile(name, buffer.getvalue())


def post_showing(client, upload, *, on_commit=None) -> Post:
    """A post whose body shows `upload`, uploaded for the body at the desk and its
    Markdown pasted as the desk offers it; `on_commit` runs what the upload left
    for the commit (the worker's resizing), or nothing runs it."""
    client.force_login(UserFactory())
    post = PublishedPostFactory()
    form = admin_post_form(
        title=post.title,
        slug=post.slug,
        body=post.body,
        **{
            "images-TOTAL_FORMS": "1",
            "images-0-image": upload,
            "images-0-alt": "Caseloads per officer",
        },
    )
    url = f"/admin/posts/post/{post.pk}/change/"
    response = (
        on_commit(client.post, url, form) if on_commit else client.post(url, form)
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    markdown = re.search(r"!\[Caseloads per officer\]\([^)]+\)", client.get(url).text)
    post.body = f"Caseloads rose.\n\n{markdown[0]}\n"
    post.save()
    return post


def email_image(post: Post) -> dict:
    (image,) = _Page(PostEmail(post).rendered.html).images
    return image


def served(media, url: str) -> Image.Image:
    assert url.startswith("http://127.0.0.1:8000/media/"), url
    return Image.open(media / url.removeprefix("http://127.0.0.1:8000/media/"))


def style_of(image: dict) -> str:
    return image.get("style", "").replace(" ", "")


@pytest.mark.usefixtures("celery_eager")
def test_a_body_photo_reaches_every_mail_program_as_a_jpeg_the_columns_width(
    client, media, on_commit
):
    post = post_showing(
        client, image_file(3000, 1500, "JPEG", "photo.jpg"), on_commit=on_commit
    )
    image = email_image(post)
    assert image["width"] == str(COLUMN)
    assert "max-width:100%" in style_of(image) and "height:auto" in style_of(image)
    assert image["alt"] == "Caseloads per officer"
    with served(media, image["src"]) as shown:
        # Twice the column's width, sharp on a high-density screen.
        assert (shown.format, shown.size) == ("JPEG", (2 * COLUMN, COLUMN))
    # The post's page keeps its WebP renditions.
    assert "-1200w.webp" in post.body_html


@pytest.mark.usefixtures("celery_eager")
def test_a_transparent_body_image_reaches_mail_programs_as_a_png_keeping_it(
    client, media, on_commit
):
    upload = image_file(1600, 800, "PNG", "logo.png", transparent=True)
    image = email_image(post_showing(client, upload, on_commit=on_commit))
    assert image["width"] == str(COLUMN)
    with served(media, image["src"]) as shown:
        assert (shown.format, shown.size) == ("PNG", (2 * COLUMN, COLUMN))
        assert shown.convert("RGBA").getpixel((5, 5))[3] == 0


@pytest.mark.usefixtures("celery_eager")
def test_a_narrow_webp_reaches_mail_programs_as_a_jpeg_never_enlarged(
    client, media, on_commit
):
    upload = image_file(400, 300, "WEBP", "chart.webp")
    image = email_image(post_showing(client, upload, on_commit=on_commit))
    assert image["width"] == "400"
    with served(media, image["src"]) as shown:
        assert (shown.format, shown.size) == ("JPEG", (400, 300))


@pytest.mark.usefixtures("celery_eager")
def test_a_narrow_jpeg_reaches_mail_programs_as_uploaded(client, media, on_commit):
    upload = image_file(300, 200, "JPEG", "small.jpg")
    post = post_showing(client, upload, on_commit=on_commit)
    image = email_image(post)
    assert image["width"] == "300"
    assert image["src"] == "http://127.0.0.1:8000" + PostImage.objects.get().image.url
    assert not (media / "renditions").exists()  # nothing to make


def test_a_body_image_not_yet_resized_goes_as_uploaded_the_columns_width(client, media):
    post = post_showing(client, image_file(3000, 1500, "JPEG", "photo.jpg"))
    image = email_image(post)
    assert image["src"] == "http://127.0.0.1:8000" + PostImage.objects.get().image.url
    assert image["width"] == str(COLUMN)
    assert "max-width:100%" in style_of(image)


def test_an_image_from_elsewhere_keeps_its_address(post):
    (image,) = _Page(PostEmail(post).rendered.html).images
    assert image["src"] == "https://example.org/chart.png"


@pytest.mark.usefixtures("media")
def test_an_image_address_out_of_the_uploads_is_sent_as_written():
    post = PublishedPostFactory(
        body="![a](/media/../../etc/passwd) ![b](/media//etc/passwd) "
        "![c](/media/%00.png) ![d](/media/)"
    )
    images = _Page(PostEmail(post).rendered.html).images
    assert [image["src"] for image in images] == [
        "http://127.0.0.1:8000/media/../../etc/passwd",
        "http://127.0.0.1:8000/media//etc/passwd",
        "http://127.0.0.1:8000/media/%00.png",
        "http://127.0.0.1:8000/media/",
    ]


def test_post_email_has_a_web_link_a_preheader_and_a_footer_with_unsubscribe(post):
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    html = message.alternatives[0][0]
    unsubscribe_url = header(message, "List-Unsubscribe").strip("<>")
    assert "View this email on the web" in html
    assert post.excerpt in html.split('class="preheader"')[1].split("</div>")[0]
    assert "You receive this because you subscribed" in html
    assert f'href="{unsubscribe_url}"' in html
    assert f"Unsubscribe: {unsubscribe_url}" in message.body


def test_a_post_without_an_excerpt_is_previewed_in_its_words_as_written():
    # The summary stands in for the excerpt: the body's words, which the rendered
    # HTML holds escaped ("&amp;"); an inbox showed them so, in the preview line,
    # the excerpt's paragraph and the text part.
    post = PublishedPostFactory(
        excerpt="",
        body='Kent, Surrey & Sussex: caseloads > 50 and "thin" plans.',
        email_format=Post.EmailFormat.EXCERPT,
    )
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    html = message.alternatives[0].content
    preheader = html.split('class="preheader"')[1].split("</div>")[0]
    said = "Kent, Surrey & Sussex: caseloads > 50 and \u201cthin\u201d plans."
    assert said in message.body
    assert said in _Text(preheader).text
    assert said in _Text(html.split('class="summary"')[1]).text
    assert "&amp;" not in message.body and "&gt;" not in message.body


def test_fact_box_related_posts_sponsor_and_preferences_render_when_provided(post):
    context = post_email_context(post, full=True) | {
        "fact_boxes": [
            {
                "title": "Derby City PDU, inspected 2023",
                "facts": [("Inspected by", "HM Inspectorate of Probation")],
                "ratings": [("Overall", "Requires improvement")],
            }
        ],
        "related_posts": [
            {"title": "Nottingham City PDU", "url": "http://127.0.0.1:8000/posts/n/"}
        ],
        "sponsors": [
            {
                "name": "Probation Institute",
                "url": "https://example.org/pi/",
                "text": "Youth justice posts sponsored by",
            }
        ],
        "preferences_url": "http://127.0.0.1:8000/preferences/abc/",
        "unsubscribe_url": "http://127.0.0.1:8000/unsubscribe/abc/",
    }
    email = render_email("post", context)
    for part in (email.html, email.text):
        assert "Derby City PDU, inspected 2023" in part
        assert "Requires improvement" in part
        assert "Nottingham City PDU" in part
        assert "Probation Institute" in part
    assert '<span class="badge"' in email.html  # a labelled badge, not a colour
    assert text_links(email.text) == _Page(email.html).links
    bare = render_email("post", post_email_context(post, full=True))
    assert "Related posts" not in bare.html and 'class="badge"' not in bare.html


# Full post or excerpt -------------------------------------------------------------


def test_author_can_send_the_excerpt_with_a_link_to_read_on_the_site(post):
    post.email_format = Post.EmailFormat.EXCERPT
    email = PostEmail(post)
    assert not email.full and not email.shortened
    assert "Read the full post on the site" in email.rendered.html
    assert "Risk assessments were thin" not in email.rendered.html
    assert "Risk assessments were thin" not in email.rendered.text
    assert post.excerpt[:40] in email.rendered.text


def test_a_post_too_long_for_gmail_goes_as_an_excerpt():
    paragraph = "Inspectors read case files and interviewed staff in every team. " * 8
    long_post = PublishedPostFactory(body="\n\n".join([paragraph] * 250))
    email = PostEmail(long_post)
    assert email.shortened and not email.full
    assert html_size(email.rendered) < EMAIL_HTML_MAX_BYTES
    assert "Read the full post on the site" in email.rendered.html
    message = email.for_subscriber(SubscriberFactory())
    assert ">Unsubscribe</a>" in message.alternatives[0][0]


def html_part_as_sent(message) -> bytes:
    """The HTML part of a message as it goes over the wire, transfer-encoded."""
    [html] = [
        p for p in message.message().walk() if p.get_content_type() == "text/html"
    ]
    return html.as_bytes().partition(b"\n\n")[2].replace(b"\n", b"\r\n")


def test_a_post_gmail_would_clip_once_encoded_goes_as_an_excerpt():
    """A paragraph over 998 bytes (a line of the HTML) makes the HTML part go
    quoted-printable, where "é" is six bytes, not two: a post of 60 KB as written
    is some 150 KB as sent, and Gmail clipped it, the unsubscribe link with it."""
    paragraph = "Les inspecteurs ont évalué le numéro de série à l'hôpital. " * 40
    post = PublishedPostFactory(body="\n\n".join([paragraph] * 25))
    email = PostEmail(post)
    assert html_size(email.rendered) < EMAIL_HTML_MAX_BYTES * 0.8  # as written
    assert email.shortened and not email.full
    message = email.for_subscriber(SubscriberFactory())
    assert len(html_part_as_sent(message)) < EMAIL_HTML_MAX_BYTES


def test_longest_demo_post_is_sent_in_full_under_100_kb():
    longest = max(POSTS, key=lambda demo: len(demo["body"]))
    post = PublishedPostFactory(
        title=longest["title"], excerpt=longest["excerpt"], body=longest["body"]
    )
    email = PostEmail(post)
    assert email.full
    message = email.for_subscriber(SubscriberFactory())
    assert len(message.alternatives[0][0].encode()) < 100_000


def _a_post_of_links_just_under_the_limit(links: int) -> Post:
    """A full post summing up that many reports, a link to each, its HTML with
    the links as written just under the limit."""
    reports = "\n".join(
        f"- [Report {i}](https://example.gov.uk/r{i})" for i in range(links)
    )
    post = PostFactory(body=reports, email_format=Post.EmailFormat.FULL)
    whole = render_email("post", post_email_context(post, full=True))
    words = "Inspectors read case files. "
    room = EMAIL_HTML_MAX_BYTES - 1_500 - html_size(whole)
    post.body = f"{words * (room // len(words))}\n\n{reports}"
    post.save()
    whole = render_email("post", post_email_context(post, full=True))
    assert EMAIL_HTML_MAX_BYTES - 3_000 < html_size(whole) < EMAIL_HTML_MAX_BYTES
    return post


@pytest.mark.usefixtures("celery_eager")
def test_a_post_goes_to_its_readers_as_the_admin_said_it_would(
    django_capture_on_commit_callbacks,
):
    """The mailing sends every link through the counting redirect, some 50 bytes
    longer each: the author's preview and check count them so, and a post they
    show going as its excerpt goes as its excerpt."""
    SubscriberFactory(email="reader@example.org")
    post = _a_post_of_links_just_under_the_limit(120)
    assert PostEmail(post).shortened  # as the admin tells the author
    with django_capture_on_commit_callbacks(execute=True):
        post_publish(post=post)
    [message] = mail.outbox
    assert "Read the full post on the site" in message.alternatives[0][0]


def test_a_reader_who_agreed_to_engagement_gets_an_email_gmail_does_not_clip(
    settings, django_capture_on_commit_callbacks
):
    """Each counted link carries the agreed reader's ?reader=… part (some 55
    bytes): a full post of 200 links just under the limit without them would pass
    it with them, and Gmail would hide its end, the unsubscribe link with it. Every
    reader gets the same email, whether or not they agreed."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    agreed, other = SubscriberFactory(), SubscriberFactory()
    Subscriber.objects.filter(pk=agreed.pk).update(engagement_agreed_at=timezone.now())
    reports = "\n".join(
        f"- [Report {i}](https://example.gov.uk/r{i})" for i in range(200)
    )
    post = PostFactory(body=reports, email_format=Post.EmailFormat.FULL)
    with django_capture_on_commit_callbacks(execute=False):
        post_publish(post=post)  # its mailing, not yet sent
    mailing = post.mailings.get()
    tracked = PostEmail(post, mailing_id=mailing.pk).rendered
    words = "Inspectors read case files. "
    room = EMAIL_HTML_MAX_BYTES - 1_500 - html_size(tracked)
    post.body = f"{words * (room // len(words))}\n\n{reports}"
    post.save()
    email = PostEmail(Post.objects.get(pk=post.pk), mailing_id=mailing.pk)
    theirs = email.for_subscriber(agreed).alternatives[0][0]
    anyones = email.for_subscriber(other).alternatives[0][0]
    assert "?reader=" in theirs and "?reader=" not in anyones
    assert len(theirs.encode()) < EMAIL_HTML_MAX_BYTES
    assert ">Unsubscribe</a>" in theirs
    excerpt = "Read the full post on the site"
    assert (excerpt in theirs) == (excerpt in anyones)


@pytest.mark.usefixtures("celery_eager")
def test_a_shortened_post_counts_only_the_links_its_email_carried(
    django_capture_on_commit_callbacks,
):
    """The whole post, found too long, is not sent: its links get no Link row,
    and the post's report lists only the excerpt's."""
    SubscriberFactory()
    paragraph = "Inspectors read case files and interviewed staff in every team. " * 8
    body = "\n\n".join([paragraph] * 250)
    post = PostFactory(body=f"[The report](https://example.gov.uk/report)\n\n{body}")
    with django_capture_on_commit_callbacks(execute=True):
        post_publish(post=post)
    [message] = mail.outbox
    assert "Read the full post on the site" in message.alternatives[0][0]
    assert "example.gov.uk" not in message.alternatives[0][0]
    urls = set(Link.objects.filter(mailing__post=post).values_list("url", flat=True))
    assert "https://example.gov.uk/report" not in urls


# Headers, on the raw bytes --------------------------------------------------------


def test_bulk_email_carries_sender_and_list_headers_exactly_once(post, settings):
    settings.SITE_URL = "https://onprobation.example"
    settings.NEWSLETTER_REPLY_TO = "Editor <editor@onprobation.example>"
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    assert header(message, "From") == "On Probation <newsletter@localhost>"
    assert header(message, "Reply-To") == "Editor <editor@onprobation.example>"
    assert header(message, "Subject") == "Derby: caseloads too high"
    assert re.fullmatch(r"\w{3}, \d{1,2} \w{3} \d{4} .+", header(message, "Date"))
    assert re.fullmatch(
        r"<[^<>@\s]+@onprobation\.example>", header(message, "Message-ID")
    )
    assert header(message, "List-Id") == "On Probation <posts.onprobation.example>"
    assert re.fullmatch(
        r"<https://onprobation\.example/unsubscribe/[\w:-]+/>",
        header(message, "List-Unsubscribe"),
    )
    assert header(message, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"


def test_every_email_has_exactly_one_from_date_message_id_and_subject(post):
    for name, message in every_email(post).items():
        names = [field.lower() for field, _ in raw_header_fields(message)]
        for required in ("from", "date", "message-id", "subject", "reply-to"):
            assert names.count(required) == 1, f"{name}: {required}"


# Each reader away would otherwise answer every mailing, at Reply-To: the editor.
# RFC 3834's header, and Exchange's own, which ignores it.
QUIET = {
    "Auto-Submitted": "auto-generated",
    "X-Auto-Response-Suppress": "OOF, AutoReply",
}


def test_every_email_asks_auto_replies_to_stay_quiet(post):
    for name, message in every_email(post).items():
        for field, value in QUIET.items():
            assert header(message, field) == value, name


def test_a_batch_to_the_provider_asks_each_readers_auto_replies_too(post, fake_esp):
    readers = [SubscriberFactory(), SubscriberFactory()]
    batch = PostEmail(post).for_many(readers, merge_field="{{NAME}}")
    EmailBackend(per_reader=False).send_messages([batch])
    (request,) = fake_esp.messages
    assert len(request["payload"]) == 2
    for sent in request["payload"]:
        headers = {field["Name"]: field["Value"] for field in sent["Headers"]}
        assert QUIET.items() <= headers.items()


def test_reply_to_defaults_to_the_from_address(post):
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    assert header(message, "Reply-To") == header(message, "From")


def test_list_headers_are_never_encoded_or_broken_inside_their_brackets(settings):
    # A long site path and mailbox make each value far longer than a header line,
    # and non-ASCII names make Python reach for RFC 2047 encoding.
    settings.SITE_URL = "https://onprobation.example/" + "newsletter-archive/" * 8
    settings.NEWSLETTER_FROM_EMAIL = (
        "Über Probation — Ünïcode <news@onprobation.example>"
    )
    settings.NEWSLETTER_UNSUBSCRIBE_MAILTO = (
        "unsubscribe-requests-for-the-newsletter-" + "x" * 60 + "@onprobation.example"
    )
    title = "Überprüfung: inspectors\u2019 verdict on Derby " + "and more " * 12
    post = PublishedPostFactory(title=title)
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    fields = dict(raw_header_fields(message))
    unsubscribe_url = (
        settings.SITE_URL
        + "/unsubscribe/"
        + re.search(r"/unsubscribe/([^/]+)/", message.body).group(1)
        + "/"
    )
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert "=?" not in fields[name], name
        for bracketed in re.findall(r"<[^>]*>", fields[name]):
            assert "\n" not in bracketed, f"{name} folded inside {bracketed}"
    assert unfold(fields["List-Unsubscribe"]) == (
        f"<{unsubscribe_url}>, "
        f"<mailto:{settings.NEWSLETTER_UNSUBSCRIBE_MAILTO}?subject=unsubscribe>"
    )
    assert unfold(fields["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    # The non-ASCII values are encoded, as they must be, and appear exactly once.
    assert header(message, "From").startswith("=?utf-8?")
    assert header(message, "Subject").startswith("=?utf-8?")
    assert header(message, "Message-ID").endswith("@onprobation.example>")


def test_a_site_on_an_international_domain_keeps_one_click_unsubscribe_readable(
    client, settings
):
    """SITE_URL written as its owners write their domain, not in its xn-- form:
    the header was RFC 2047-encoded, which no mail program reads as a link, so
    Gmail and Yahoo offered no one-click unsubscribe."""
    settings.SITE_URL = "https://bücher.example"
    settings.NEWSLETTER_UNSUBSCRIBE_MAILTO = "abmelden@bücher.example"
    reader = SubscriberFactory()
    message = PostEmail(PublishedPostFactory()).for_subscriber(reader)

    targets = re.findall(r"<([^<>]*)>", header(message, "List-Unsubscribe"))
    assert "=?" not in header(message, "List-Unsubscribe")
    assert targets[1] == "mailto:abmelden@xn--bcher-kva.example?subject=unsubscribe"
    assert targets[0].startswith("https://xn--bcher-kva.example/unsubscribe/")
    # The mail program's one-click POST to that address unsubscribes the reader.
    client.post(
        targets[0].removeprefix("https://xn--bcher-kva.example"),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_cr_lf_in_a_title_or_a_name_never_reaches_a_header():
    post = PublishedPostFactory(title="Derby\r\nBcc: victim@example.org\nX-Evil: 1")
    reader = SubscriberFactory(name="Eve\r\nBcc: eve@example.org")
    pending = SubscriberFactory(name="Mal\nCc: mal@example.org", status="pending")
    messages = [
        PostEmail(post).for_subscriber(reader),
        welcome_message(reader),
        confirmation_message(pending, consent_id=1),
    ]
    for message in messages:
        names = [name.lower() for name, _ in raw_header_fields(message)]
        assert "bcc" not in names and "cc" not in names and "x-evil" not in names
    assert header(messages[0], "Subject") == ("Derby Bcc: victim@example.org X-Evil: 1")


def test_a_title_with_ampersands_quotes_and_brackets_reads_as_written_in_the_subject():
    # A subject is text, not HTML: an inbox shows "&amp;" as it is.
    title = "Derby & Derbyshire: \"O'Neill's\" caseloads <too high>"
    post = PublishedPostFactory(title=title)
    update = PostUpdate.objects.create(
        post=post, kind=PostUpdate.Kind.CORRECTION, note="We misread the report."
    )
    reader = SubscriberFactory()
    assert header(PostEmail(post).for_subscriber(reader), "Subject") == title
    assert header(CorrectionEmail(update).for_subscriber(reader), "Subject") == (
        f"Correction: {title}"
    )


def test_confirmation_email_has_no_list_headers_as_nobody_is_subscribed_yet():
    message = confirmation_message(SubscriberFactory(status="pending"), consent_id=1)
    names = {name.lower() for name, _ in raw_header_fields(message)}
    assert "list-unsubscribe" not in names
    assert header(message, "Message-ID")


def test_welcome_email_lets_the_new_reader_leave_in_one_click():
    message = welcome_message(SubscriberFactory())
    assert header(message, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    unsubscribe_url = header(message, "List-Unsubscribe").strip("<>")
    assert unsubscribe_url in message.body


def test_welcome_email_says_what_a_new_reader_chose_and_when_it_arrives():
    reader = SubscriberFactory()
    SubscriberTopic.objects.create(
        subscriber=reader, kind="region", value="wales", frequency="weekly"
    )
    message = welcome_message(reader)
    html = " ".join(message.alternatives[0].content.split())
    text = " ".join(message.body.split())
    for part in (html, text):
        assert (
            "each new post on the topics you chose comes to this address in a "
            "weekly digest" in part
        )
        assert "Your digest arrives every Monday at 07:00, London (UK) time" in part
        assert "Posts go out when they are published" not in part

    everything = welcome_message(SubscriberFactory())
    assert "each new post on On Probation comes to this address:" in " ".join(
        everything.body.split()
    )
    assert "Posts go out when they are published" in everything.body


def test_welcome_email_names_the_latest_post_on_the_readers_topics():
    """It named the site's latest post, on whatever topic, to a reader who had
    just chosen theirs."""
    cardiff = InspectionFactory(
        area=AreaFactory(slug="cardiff"),
        post__title="Cardiff, a year on",
        post__published_at=timezone.now() - timedelta(days=30),
    )
    InspectionFactory(post__title="Kent and Medway", area__slug="kent")
    reader, unmatched = SubscriberFactory(), SubscriberFactory()
    SubscriberTopic.objects.create(subscriber=reader, kind="area", value="cardiff")
    SubscriberTopic.objects.create(subscriber=unmatched, kind="area", value="leeds")

    message = welcome_message(reader)
    html = message.alternatives[0].content

    text, shown = (" ".join(part.split()) for part in (message.body, _Text(html).text))
    assert 'latest post on the topics you chose is "Cardiff, a year on"' in text
    assert "latest post on the topics you chose is Cardiff, a year on." in shown
    assert "Kent and Medway" not in text + html
    assert cardiff.post.get_absolute_url() in html
    # Nothing of theirs lately, or everything followed: the site's latest post.
    for everything in (
        welcome_message(unmatched),
        welcome_message(SubscriberFactory()),
    ):
        assert 'the latest post is "Kent and Medway"' in " ".join(
            everything.body.split()
        )


def test_welcome_email_reads_the_latest_posts_topics_in_a_handful_of_statements(
    django_assert_max_num_queries,
):
    """It read each of the latest posts' topics, and asked whether the reader
    followed each, one post at a time: ~120 statements for a reader whose topics
    matched none of them."""
    for n in range(WELCOME_POSTS_LOOKED_AT + 1):
        inspection = InspectionFactory(
            area__slug=f"area-{n}",
            post__title=f"Post {n}",
            post__published_at=timezone.now() - timedelta(days=n),
        )
        inspection.organisations.add(OrganisationFactory())
        inspection.ratings.create(standard="Leadership", rating="good")
        inspection.post.categories.add(CategoryFactory())
    oldest_looked_at, unmatched = SubscriberFactory(), SubscriberFactory()
    last = WELCOME_POSTS_LOOKED_AT - 1
    SubscriberTopic.objects.create(
        subscriber=oldest_looked_at, kind="area", value=f"area-{last}"
    )
    SubscriberTopic.objects.create(
        subscriber=unmatched, kind="area", value=f"area-{last + 1}"
    )

    with django_assert_max_num_queries(10):
        message = welcome_message(unmatched)
    assert 'the latest post is "Post 0"' in " ".join(message.body.split())
    with django_assert_max_num_queries(10):
        message = welcome_message(oldest_looked_at)
    assert f'topics you chose is "Post {last}"' in " ".join(message.body.split())


def test_welcome_email_keeps_the_greeting_after_a_right_to_left_name_in_order():
    """Not isolated, an Arabic or Hebrew name pulled the comma after it into its
    own direction: isolated as in every email (templatetags/bidi.py), in both
    parts."""
    message = welcome_message(SubscriberFactory(name="محمد"))
    assert message.body.startswith("Hello \u2068محمد\u2069,\n")
    assert "Hello \u2068محمد\u2069,</p>" in message.alternatives[0].content


def test_post_email_carries_the_inspection_related_posts_and_sponsor_of_the_post():
    category = CategoryFactory(name="On Probation")
    inspection = InspectionFactory(
        title="An inspection of probation services in Suffolk",
        area=AreaFactory(name="Suffolk", region__name="East of England"),
        overall="inadequate",
    )
    post = inspection.post
    post.categories.add(category)
    Sponsorship.objects.create(
        category=category,
        name="The Probation Institute",
        url="https://example.org/pi/",
        starts_on=timezone.localdate() - timedelta(days=1),
        ends_on=timezone.localdate() + timedelta(days=1),
    )
    earlier = PublishedPostFactory(title="Suffolk, two years on")
    RelatedLink.objects.create(from_post=post, to_post=earlier, type="same_area")

    message = PostEmail(post).for_subscriber(SubscriberFactory())
    html, text = message.alternatives[0].content, message.body
    for part in (html, text):
        assert "An inspection of probation services in Suffolk" in part
        assert "Suffolk, East of England" in part
        assert "Inadequate" in part
        assert "Suffolk, two years on" in part
        assert "On Probation posts sponsored by" in part
        assert "The Probation Institute" in part
    assert f"http://127.0.0.1:8000/posts/{earlier.slug}/" in html
    assert text_links(text) == _Page(html).links


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        (date(2024, 3, 4), date(2024, 3, 15), "4 March 2024 to 15 March 2024"),
        (date(2024, 3, 4), None, "began 4 March 2024"),
        (None, date(2024, 3, 15), "ended 15 March 2024"),
    ],
)
def test_post_emails_fact_box_says_the_fieldwork_and_findings_the_page_does(
    client, start, end, said
):
    """The page's fact box gives the fieldwork, the number of recommendations
    and the key findings; the email's left them out, in both parts."""
    inspection = InspectionFactory(
        fieldwork_start=start,
        fieldwork_end=end,
        recommendations=7,
        key_findings="Caseloads were too high.\nRisk assessments were thin.",
    )
    PostEmail(inspection.post).for_subscriber(SubscriberFactory()).send()
    [message] = mail.outbox
    html = message.alternatives[0].content
    page = client.get(inspection.post.get_absolute_url()).content.decode()

    box = html.split('class="facts"')[1].split(">", 1)[1].split("</table>")[0]
    for part in (" ".join(_Text(box).text.split()), message.body):
        assert f"Fieldwork: {said}" in part
        assert "Recommendations: 7" in part
        assert "Caseloads were too high." in part
        assert "Risk assessments were thin." in part
    assert "Key findings:\n- Caseloads were too high.\n- Risk" in message.body
    assert said in " ".join(_Text(page).text.split())


def test_post_emails_fact_box_names_who_ran_what_was_inspected_and_links_the_report():
    """The page says a CRC was "owned by" its companies and links the report; the
    email's box named the CRC alone, and its report was a title to search for."""
    crc = OrganisationFactory(name="Norfolk and Suffolk CRC")
    crc.owners.set(
        [
            OrganisationFactory(name="Sodexo Justice Services", kind="owner"),
            OrganisationFactory(name="Nacro", kind="owner"),
        ]
    )
    inspection = InspectionFactory(
        title="An inspection of probation services in Norfolk and Suffolk",
        report_url="https://www.justiceinspectorates.gov.uk/hmiprobation/norfolk/",
    )
    inspection.organisations.set([crc])

    PostEmail(inspection.post).for_subscriber(SubscriberFactory()).send()
    [message] = mail.outbox
    html = message.alternatives[0].content

    owned = "Norfolk and Suffolk CRC (owned by Nacro and Sodexo Justice Services)"
    assert owned in " ".join(_Text(html).text.split())
    assert f"Organisations: {owned}" in message.body
    assert inspection.report_url in _Page(html).links
    assert inspection.report_url in text_links(message.body)


def test_post_emails_fact_boxes_are_the_inspections_the_post_page_shows(client):
    """A box for each inspection, as the page has (the email had the first
    alone), in the page's order: one with no report date yet came first on
    PostgreSQL (NULL sorts first in descending order there) and last on SQLite,
    so the email's order was not its page's, by the database."""
    post = PublishedPostFactory()
    InspectionFactory(post=post, title="Kent, report to come", published_on=None)
    InspectionFactory(
        post=post,
        title="Suffolk, reported in May",
        published_on=timezone.localdate() - timedelta(days=30),
    )

    page = client.get(post.get_absolute_url()).content.decode()
    shown = re.findall(r'<p class="report-title">([^<]*)</p>', page)
    context = post_email_context(post, full=True)

    assert shown == ["Suffolk, reported in May", "Kent, report to come"]
    assert [box["title"] for box in context["fact_boxes"]] == shown
    message = PostEmail(post).for_subscriber(SubscriberFactory())
    for part in (message.body, message.alternatives[0][0]):
        assert part.index("Suffolk, reported in May") < part.index(
            "Kent, report to come"
        )


def preheader(message) -> str:
    """The hidden line a mail app shows after the subject in its list."""
    html = message.alternatives[0][0]
    hidden = re.search(r'<div class="preheader"[^>]*>(.*?)</div>', html, re.DOTALL)[1]
    return unescape(hidden).split("\u034f")[0].strip()


def test_each_emails_preview_line_says_what_the_subject_does_not_and_promises_no_more(
    post,
):
    """In a mail app's list: not the subject again, not empty (the app would
    show the first words it finds instead), and no "one click" where the link
    opens a page with a button on it."""
    emails = every_email(post)
    emails["weekly digest"] = build_message(
        render_email(
            "digest",
            {
                "subscriber": {"name": "Ann"},
                "mailing": {"frequency": "weekly"},
                "day": timezone.localdate(),
                "time_zone": timezone.get_current_timezone(),
                "posts": [
                    {"post": p, "url": url, "summary": p.summary}
                    for p, url in (
                        (post, "https://x.example/p/"),
                        (PublishedPostFactory(), "https://x.example/q/"),
                    )
                ],
                "unsubscribe_url": "https://x.example/u/",
                "preferences_url": "https://x.example/p/",
            },
        ),
        to="ann@example.org",
    )
    said = {name: preheader(message) for name, message in emails.items()}
    today = timezone.localdate()
    day = f"{today:%A} {today.day} {today:%B}"
    for name, message in emails.items():
        assert said[name], name
        assert said[name].lower() not in message.subject.lower(), name
        assert "one click" not in said[name].lower(), name
    assert said == {
        "post": "Inspectors found caseloads too high and risk assessments too thin.",
        "post as excerpt": "The first youth offending service to earn the top grade "
        "under the inspectorate's new framework, with court work of an "
        "exceptionally high st…",
        "correction": "Inspectors rated the service Requires improvement.",
        "confirm": "Open the link inside and confirm to start receiving On "
        "Probation's posts on probation inspections.",
        "welcome": "You are subscribed. Here is what to expect, and how to leave "
        "whenever you like.",
        "change of address": "Open the link inside and confirm to receive On "
        "Probation at this address instead.",
        "one-time link": "A link that works once, within 60 minutes.",
        "commenter's data link": "A link that works within 60 minutes.",
        "comment digest": f"On “{post.title}”. Readers see nothing until you approve.",
        "comment confirmation": "Open the link inside and confirm your address to "
        f"publish your comment on “{post.title}”.",
        "digest": f"{day}: what was published on the topics you follow.",
        "weekly digest": f"The week to {day}: what was published on the topics "
        "you follow.",
    }
