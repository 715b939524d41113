"""Markdown for post bodies: rendered once when a post is saved, then sanitised.

The admin's live preview renders through render_markdown too, so what the author
sees while typing is what readers get.
"""

import html
import html.entities
import re
import secrets
from collections import Counter
from typing import NamedTuple
from urllib.parse import urljoin

import nh3
from django.conf import settings
from django.utils.html import strip_tags
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.anchors.index import slugify
from mdit_py_plugins.footnote import footnote_plugin


class _WebAddresses(LinkifyIt):
    """The web addresses an author writes out in a sentence ("The report:
    https://…"), made links: those with http(s):// and those from "www.". Not a
    bare name ("probation.gov", "Probation.Service"): a sentence has too many
    that are no address; nor ftp:, mailto: or //host, which a reader's link
    would not be."""

    def __init__(self) -> None:
        super().__init__(options={"fuzzy_email": False})
        for scheme in ("ftp:", "mailto:", "//"):
            self.add(scheme, None)

    def match(self, text: str):
        return [
            link
            for link in super().match(text) or ()
            if link.schema or link.raw.lower().startswith("www.")
        ] or None


_web_addresses = _WebAddresses()

# Footnotes ("[^1]", and "[^1]: source" below) are an author's sources, listed
# at the end of the body, each with a way back to where it is cited.
_markdown = (
    MarkdownIt("commonmark", {"typographer": True, "linkify": True})
    .enable(["table", "strikethrough", "smartquotes", "linkify"])
    # Not Pandoc's inline notes ("^[…]"): a "^" before a link made it a note.
    .use(footnote_plugin, inline=False)
)
_markdown.linkify = _web_addresses

# Of the typographer's replacements, only the signs a writer means: "--" between
# spaces an en dash, "---" an em dash, "..." an ellipsis. markdown-it's own also
# made "(c)" ©, "(r)" ® and "(tm)" ™ (an inspection's recommendation (c), section
# 3(c) of an Act), "+-" ±, ".." an ellipsis, and cut "????" and ",," short.
# An unspaced "--" stays: it is in addresses written out ("/a--b/").
_TYPOGRAPHY = (
    (re.compile(r"(?<!-)---(?!-)"), "\u2014"),
    (re.compile(r"(?<!\S)--(?!\S)"), "\u2013"),
    (re.compile(r"\.\.\."), "\u2026"),
)


def _dashes_and_ellipses(state) -> None:
    for block in state.tokens:
        in_autolink = False  # <https://…>: its text is the address
        for token in block.children or ():
            if token.type in ("link_open", "link_close") and token.info == "auto":
                in_autolink = token.type == "link_open"
            elif token.type == "text" and not in_autolink:
                for pattern, sign in _TYPOGRAPHY:
                    token.content = pattern.sub(sign, token.content)


_markdown.core.ruler.before("smartquotes", "dashes_and_ellipses", _dashes_and_ellipses)


# The page's one h1 is the post's title, and the sanitiser drops a body's: a body
# written from "#" (as Markdown's first heading is, or pasted from elsewhere) has
# each heading one level down, its outline kept, rather than its top headings
# reaching readers as bare text.
def _headings_under_the_title(state) -> None:
    headings = [t for t in state.tokens if t.type in ("heading_open", "heading_close")]
    if any(heading.tag == "h1" for heading in headings):
        for heading in headings:
            heading.tag = f"h{min(int(heading.tag[1]) + 1, 6)}"


_markdown.core.ruler.push("headings_under_the_title", _headings_under_the_title)


# A note cited twice is "[1]" both times, not the plugin's "[1:1]" the second.
def _note_number(self, tokens, idx, options, env) -> str:
    return f"[{tokens[idx].meta['id'] + 1}]"


_markdown.add_render_rule("footnote_caption", _note_number)


# A note's way back to where it is cited: the plugin's arrow, which names nothing
# to a screen reader, named. ("\ufe0e": not shown as an emoji on iOS.)
def _back_to_the_text(self, tokens, idx, options, env) -> str:
    ident = self.rules["footnote_anchor_name"](tokens, idx, options, env)
    if tokens[idx].meta["subId"] > 0:  # the second place the note is cited
        ident += f":{tokens[idx].meta['subId']}"
    return f' <a href="#fnref{ident}" aria-label="Back to the text">\u21a9\ufe0e</a>'


_markdown.add_render_rule("footnote_anchor", _back_to_the_text)


# The notes a list named for a screen reader ("list, Notes, 2 items"), as GitHub
# names its by a heading it hides. A name, not a heading: no word of the post (its
# search text, the email's text part), no level in the page's outline, and the
# same in an email, where no stylesheet hides a heading.
def _notes_named(self, tokens, idx, options, env) -> str:
    return '<hr>\n<ol aria-label="Notes">\n'


def _notes_end(self, tokens, idx, options, env) -> str:
    return "</ol>\n"


_markdown.add_render_rule("footnote_block_open", _notes_named)
_markdown.add_render_rule("footnote_block_close", _notes_end)

# Each heading named by its words, as GitHub does ("Officers' caseloads" is
# "officers-caseloads", a second "Findings" "findings-1"), for the author's
# "[Findings](#findings)". The sanitiser puts them under ID_PREFIX.
# The notes' ids are the footnote plugin's fn1, fnref1 and fnref1:1: a heading
# "fn1" is named as a second of that name would be, "fn1-1", or the note's link
# would land on the heading. (No heading's name holds a ":".)
_NOTE_ID = re.compile(r"fn(ref)?[0-9]+")


def _heading_id(title: str) -> str:
    slug = slugify(title)
    return f"{slug}-1" if _NOTE_ID.fullmatch(slug) else slug


_markdown.use(anchors_plugin, max_level=6, slug_func=_heading_id)


# Each id the renderer makes (a heading's, a note's, where a note is cited) begins
# with the render's mark, for the sanitiser to tell it from an id in the author's
# own HTML, which must not take its name (render_markdown).
def _heading_ids_marked(state) -> None:
    for token in state.tokens:
        if token.type == "heading_open" and (ident := token.attrGet("id")):
            token.attrSet("id", state.env.get("id_mark", "") + ident)


_markdown.core.ruler.push("heading_ids_marked", _heading_ids_marked)


def _note_cited(self, tokens, idx, options, env) -> str:
    number = tokens[idx].meta["id"] + 1
    place = f"fnref{number}"
    if tokens[idx].meta["subId"] > 0:  # the second place the note is cited
        place += f":{tokens[idx].meta['subId']}"
    caption = self.rules["footnote_caption"](tokens, idx, options, env)
    mark = env.get("id_mark", "")
    return f'<sup><a href="#fn{number}" id="{mark}{place}">{caption}</a></sup>'


def _note_open(self, tokens, idx, options, env) -> str:
    return f'<li id="{env.get("id_mark", "")}fn{tokens[idx].meta["id"] + 1}">'


_markdown.add_render_rule("footnote_ref", _note_cited)
_markdown.add_render_rule("footnote_open", _note_open)

# A table column's alignment (|--:| for figures: caseloads, ratings) as a class,
# align-left, align-center or align-right, not as the style="text-align:…" that
# markdown-it writes: the site's Content-Security-Policy refuses style attributes,
# and HTML5 made align obsolete. The site's stylesheet aligns by the class; a feed
# or an email, which has none, gets it back as a style (alignment_inline).
ALIGNMENT_CLASSES = {"align-left", "align-center", "align-right"}


def _alignment_as_class(state) -> None:
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrGet("style")):
            token.attrs = {"class": "align-" + style.removeprefix("text-align:")}


_markdown.core.ruler.push("alignment_as_class", _alignment_as_class)

# What a post body may contain after rendering. Anything else (scripts, styles,
# event handlers, javascript: and data: URLs) is removed, not escaped. Every tag
# keeps lang and title (nh3's own default); span is how an author marks a Welsh
# name inside a sentence, <span lang="cy">, for a screen reader to say in Welsh.
ALLOWED_TAGS = {
    "a", "abbr", "blockquote", "br", "code", "del", "em", "figcaption", "figure",
    "h2", "h3", "h4", "h5", "h6", "hr", "img", "li", "ol", "p", "pre", "s", "span",
    "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "id", "aria-label"},  # id: where a footnote is cited
    "abbr": {"title"},
    **{heading: {"id"} for heading in ("h2", "h3", "h4", "h5", "h6")},
    "li": {"id"},  # a footnote
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start", "aria-label"},  # aria-label: the notes
    "th": {"scope"},
}

# An author's raw HTML may give an attribute a value no browser reads, which made
# the page invalid HTML: such a value is dropped, the attribute with it. An
# image's size is in whole pixels ("50%" and "auto" are CSS's), a list starts at a
# whole number, and a language is a BCP 47 tag's language, script and region
# ("cy", "en-GB", "zh-Hant-TW"): a rarer tag (a variant, an extension) goes too,
# as does "welsh"; one of that shape but unknown ("xx", "en-JJ") stays, as only
# IANA's registry of subtags tells it.
# Other attributes (title, alt, href) take any text.
_VALID_VALUES = {
    "width": re.compile(r"[0-9]+"),
    "height": re.compile(r"[0-9]+"),
    "start": re.compile(r"-?[0-9]+"),
    "scope": re.compile(r"row|col|rowgroup|colgroup", re.IGNORECASE),
    "lang": re.compile(
        r"([a-z]{2,3}(-[a-z]{4})?(-([a-z]{2}|[0-9]{3}))?)?", re.IGNORECASE
    ),
    "id": re.compile(r"\S+"),  # HTML's ids hold no space
}

# A body's ids (its headings', its footnotes', any in the author's HTML) each
# begin with this, as GitHub's do: the page around the body has ids of its own
# ("content", "related-heading") that an author's must not take, and a browser
# makes an element's id a global name that a script may read in place of its own
# ("location", "config": DOM clobbering), where no script's name has a hyphen. The
# body's own "#findings" links are written "#user-content-findings" to match: a
# "#" link in a body is to a place in it, as the page's ids are not the author's
# to know. Done by the sanitiser, so no id or "#" link leaves it otherwise.
ID_PREFIX = "user-content-"


def _valid_values(rendered: str, *, mark: str):
    """The sanitiser's check of each attribute's value, for one rendered body whose
    own ids begin with `mark`. One rule for the author's ids: each is kept under
    ID_PREFIX, for the author's "#" links to their own anchors, unless the renderer
    made that id (a heading's, a note's: <a id="fn1"> took the first note's) or
    the author wrote it before (an id is one place). Then it goes."""
    made = {
        html.unescape(ident)
        for ident in re.findall(rf'\sid="{re.escape(mark)}([^"]*)"', rendered)
    }
    authors = set()

    def valid_value(tag: str, attribute: str, value: str) -> str | None:
        valid = _VALID_VALUES.get(attribute)
        if valid is not None and not valid.fullmatch(value):
            return None
        if attribute == "id":
            if value.startswith(mark):
                return ID_PREFIX + value.removeprefix(mark)
            if value in made or value in authors:
                return None
            authors.add(value)
            return ID_PREFIX + value
        if attribute == "href" and value.startswith("#") and value != "#":
            return "#" + ID_PREFIX + value[1:]
        return value

    return valid_value


URL_SCHEMES = {"http", "https", "mailto"}

# The same Markdown, but keeping every link as written: markdown-it quietly drops
# javascript:, file: and most data: links, and the author's checks must see them.
# Addresses written out are links readers get, so the checks see them too.
_links_as_written = MarkdownIt("commonmark", {"linkify": True}).enable(
    ["table", "strikethrough", "linkify"]
)
_links_as_written.linkify = _web_addresses
_links_as_written.validateLink = lambda url: True
# A quoted value is whole up to its quote, newlines and spaces too: browsers drop
# the newlines and tabs of an address wrapped over lines (as_a_browser_reads).
_HTML_LINK = re.compile(
    r"""\b(?:href|src)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^"'\s>]+))""", re.IGNORECASE
)


def _html_links(raw_html: str) -> list[str]:
    return ["".join(value) for value in _HTML_LINK.findall(raw_html)]


# A table of many columns (an inspection's ratings by standard) scrolls sideways in
# a box of its own on a phone, its words whole: the box takes the keyboard's focus
# to scroll, named for whoever reaches it. Added after the sanitiser, which writes
# every table as a bare <table> and lets no author write a <div>.
TABLE_BOX = '<div class="table-box" role="region" aria-label="Table" tabindex="0">'


# The sanitiser gives every <a> its rel (last), and HTML allows rel only on a link:
# an author's anchor (<a id="kent">, no href) made the page invalid HTML.
_ANCHOR_REL = re.compile(
    r'<a((?:\s(?!href=)[a-z-]+="[^"]*")*) rel="noopener noreferrer">'
)


def render_markdown(text: str) -> str:
    # New each time: no author can write it in their HTML.
    mark = secrets.token_hex(8)
    rendered = _markdown.render(text, {"id_mark": mark})
    body = nh3.clean(
        rendered,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        allowed_classes={"td": ALIGNMENT_CLASSES, "th": ALIGNMENT_CLASSES},
        attribute_filter=_valid_values(rendered, mark=mark),
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    )
    body = _ANCHOR_REL.sub(r"<a\1>", body)
    return body.replace("<table>", TABLE_BOX + "<table>").replace(
        "</table>", "</table></div>"
    )


# A table cell's alignment class (in a tag: text may hold ' class="').
_ALIGNMENT_CLASS = re.compile(r'(<t[dh]\b[^>]*?\s)class="align-(left|center|right)"')


def alignment_inline(body_html: str) -> str:
    """The body with each table cell's alignment as a style, for a feed or an
    email: they have not the site's stylesheet, which aligns by the class, and a
    feed reader or a mail program keeps text-align where it keeps any style."""
    return _ALIGNMENT_CLASS.sub(r'\1style="text-align:\2"', body_html)


# What Markdown reads in a line of text, escaped by a backslash: brackets (a link's
# or an image's text), emphasis, strikethrough, code, HTML, entities, and the
# backslash itself. Not the rest, which the author reads more easily unescaped.
_MARKDOWN_SIGNS = re.compile(r"([\\\[\]*_~`<&])")


def escape_markdown(text: str) -> str:
    """Text to put in Markdown (an image's alt text) and read back as written:
    a "[" in it ended the image, and "*" or "`" became emphasis or code."""
    return _MARKDOWN_SIGNS.sub(r"\\\1", text)


def link_targets(text: str) -> list[str]:
    """Every link and image address in the Markdown, in order, as the author wrote
    it (links in raw HTML included), before the sanitiser removes any."""
    targets = []
    for block in _links_as_written.parse(text):
        if block.type == "html_block":
            targets += _html_links(block.content)
        for token in block.children or ():
            if token.type == "link_open":
                targets.append(token.attrGet("href"))
            elif token.type == "image":
                targets.append(token.attrGet("src"))
            elif token.type == "html_inline":
                targets += _html_links(token.content)
    return [target for target in targets if target]


# A citation the footnote plugin found no note for, left in the text as typed.
_CITATION = re.compile(r"\[\^([^\]\s]+)\]")

# The notes as the author wrote them, each in its place: the renderer's last step
# (footnote_tail) moves them to the end, and keeps one note of each label. Each
# sign the author escaped ("\[^2]", written to be read as typed) stays a token of
# its own (text_join made it text), so it begins no citation.
_notes_as_written = (
    MarkdownIt("commonmark")
    .enable(["table", "strikethrough"])
    .use(footnote_plugin, inline=False)
    .disable(["footnote_tail", "text_join"])
)


class NotesAstray(NamedTuple):
    """The labels of the footnotes readers would not get as the author meant."""

    unwritten: list[str]  # cited ("[^2]"), never written: readers see "[^2]"
    uncited: list[str]  # written ("[^3]: …"), never cited: readers never see it
    written_twice: list[str]  # readers see the last written alone


def notes_astray(text: str) -> NotesAstray:
    env: dict = {}
    written = []
    unwritten = []
    for block in _notes_as_written.parse(text, env):
        if block.type == "footnote_reference_open":
            written.append(block.meta["label"])
        for token in block.children or ():
            # Not in code, where "[^2]" is what the author means.
            if token.type == "text":
                unwritten += _CITATION.findall(token.content)
    refs = env.get("footnotes", {}).get("refs", {})  # ":label": -1 if not cited
    return NotesAstray(
        unwritten=list(dict.fromkeys(unwritten)),
        uncited=[label[1:] for label, cited in refs.items() if cited < 0],
        written_twice=[label for label, n in Counter(written).items() if n > 1],
    )


def word_count(text: str) -> int:
    return len(re.findall(r"\w+", text))


# Tags a page shows words apart at (a line break, a cell, a paragraph): the author's
# raw HTML may put their words side by side ("<td>Kent</td><td>Surrey</td>",
# "Kent<br>Surrey"), which the plain text ran together as one word, "KentSurrey",
# that no search for either finds. Only the inline tags join the words around them.
_INLINE_TAGS = {"a", "abbr", "code", "del", "em", "s", "span", "strong", "sub", "sup"}
_APART_TAG = re.compile(
    rf"</?(?:{'|'.join(sorted(ALLOWED_TAGS - _INLINE_TAGS))})\b[^>]*>", re.IGNORECASE
)


# A footnote's way back to where it is cited: an arrow, no word of the post.
_BACK_TO_THE_TEXT = re.compile(rf' ?<a href="#{ID_PREFIX}fnref[^"]*"[^>]*>[^<]*</a>')
# A link to a place in the body (ID_PREFIX taken off the place), and its words: a
# heading, a note where it is cited ("[1]"), a note's way back.
LINK_WITHIN = re.compile(
    rf'<a\b[^>]*?\shref="#{ID_PREFIX}([^"]*)"[^>]*>(.*?)</a>', re.S
)


def plain_text(body_html: str) -> str:
    """The words of a rendered body as a reader sees them, for snippets."""
    words = _APART_TAG.sub(" ", _BACK_TO_THE_TEXT.sub("", body_html))
    return " ".join(html.unescape(strip_tags(words)).split())


def places_as_print(body_html: str) -> str:
    """The body for an email, which holds the whole post: read as print, each
    place in it is no link (a mail program has no page to go to, and a link to the
    post's page would leave the email for the website). A section's name stays as
    words, a note's number a plain "[1]", and a note has no way back, as in the
    email's text part (newsletter.plaintext). The post's page keeps every link."""
    return LINK_WITHIN.sub(r"\2", _BACK_TO_THE_TEXT.sub("", body_html))


# A post body's links and images (in a tag: text may hold ' href="'), and a
# scheme that makes one whole.
_BODY_LINK = re.compile(r'(<(?:a|img)\b[^>]*?\s(?:href|src)=")([^"]*)(")')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_ENDS = "".join(map(chr, range(0x21)))
_TABS_AND_NEWLINES = re.compile(r"[\t\n\r]")
_QUERY_OR_PLACE = re.compile(r"[?#]")


# A character reference with no ";" ("&copy", "&region"), and whether "=" follows.
_UNENDED_REFERENCE = re.compile(r"&([A-Za-z0-9]+)(?![;A-Za-z0-9])(=?)")


def attribute_value(raw: str) -> str:
    """An attribute's value (a link's address) as a browser reads it, the HTML
    standard's way: a reference with no ";" is read only where it is a whole
    name of the old ones ("&copy" before a space), not when a letter, a digit
    or "=" follows ("?x=1&region=east", "&copy=2"), where html.unescape read
    "®ion=east"."""

    def kept(reference: re.Match) -> str:
        if reference[1] in html.entities.html5 and not reference[2]:
            return reference[0]
        return "&amp;" + reference[0][1:]

    return html.unescape(_UNENDED_REFERENCE.sub(kept, raw))


def as_a_browser_reads(url: str) -> str:
    """A link's address (as in the HTML) as a browser reads it, the WHATWG URL
    standard's way: spaces and controls at either end, and tabs and newlines
    anywhere, dropped, and a backslash in a web address's path read as "/"
    ("/\\host/" is "//host/", "/posts\\kent/" is "/posts/kent/"), though not in
    its query or #place, nor in an address of another scheme (mailto:)."""
    url = _TABS_AND_NEWLINES.sub("", attribute_value(url).strip(_ENDS))
    scheme = _SCHEME.match(url)
    if scheme and scheme[0].lower() not in ("http:", "https:"):
        return url
    query_or_place = _QUERY_OR_PLACE.search(url)
    path_ends = query_or_place.start() if query_or_place else len(url)
    return url[:path_ends].replace("\\", "/") + url[path_ends:]


def whole_links(body_html: str, *, page_url: str) -> str:
    """The body with each link whole: on the post's page a browser resolves them
    against the page ("../kent/", "#findings", "//host/"), but an inbox or a feed
    reader has no page. A path from the root goes on SITE_URL, which may carry a
    prefix."""

    def whole(link: re.Match) -> str:
        # As the page's browser reads it: "/\host/" went to that host from the
        # page, and to a page of this site's that does not exist from an email.
        url = as_a_browser_reads(link[2])
        if _SCHEME.match(url):
            return link[0]
        if url.startswith("/") and not url.startswith("//"):
            url = settings.SITE_URL + url
        else:
            url = urljoin(page_url, url)
        return link[1] + html.escape(url) + link[3]

    return _BODY_LINK.sub(whole, body_html)
