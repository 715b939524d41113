"""Markdown for post bodies: rendered once when a post is saved, then sanitised."""

import nh3
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"typographer": True}).enable(
    ["table", "strikethrough", "replacements", "smartquotes"]
)

# What a post body may contain after rendering. Anything else (scripts, styles,
# event handlers, javascript: and data: URLs) is removed, not escaped.
ALLOWED_TAGS = {
    "a", "abbr", "blockquote", "br", "code", "del", "em", "figcaption", "figure",
    "h2", "h3", "h4", "h5", "h6", "hr", "img", "li", "ol", "p", "pre", "strong",
    "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title", "width", "height"},
    "ol": {"start"},
    "td": {"align"},
    "th": {"align", "scope"},
}


def render_markdown(text: str) -> str:
    return nh3.clean(
        _markdown.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
