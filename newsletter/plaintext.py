"""Readable plain text from a post's sanitised HTML, for the text part of its email.

The text part carries what the HTML carries: headings underlined, lists as lists,
tables as rows, and each link as a numbered reference [1] listed at the end (an
address written out as its own link's text stays where it is, once). It is
made from the sanitised HTML rather than the Markdown so that both parts hold exactly
the same links (the sanitiser has already removed what the HTML may not carry).
"""

import re
import textwrap
from html.parser import HTMLParser

from markdown_it.common.normalize_url import normalizeLink

from posts.markdown import ID_PREFIX

WIDTH = 72

_BLOCKS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "ul", "ol",
    "table", "tr", "figure", "figcaption", "hr", "div",
}  # fmt: skip
# Words struck out (a rating corrected in place) are marked as Markdown marks
# them: written plain, the old words read as current.
_STRUCK_OUT = {"s", "del"}
# Consecutive blocks of these kinds are not separated by a blank line.
_TIGHT = {"li", "tr"}
# Stand for <br>, and for a space that must not break (before a reference number),
# until a block is wrapped; newlines in the source are only whitespace.
_BREAK = "\x00"
_GLUE = "\x01"
# A list start the text counts from: ASCII digits, as HTML reads them (isdigit()
# also takes "²", which int() refuses), at most nine, as CommonMark numbers lists;
# anything else counts from 1.
_LIST_START = re.compile(r"[0-9]{1,9}")
# A link to a place in the post itself (posts.markdown.ID_PREFIX): a section, a
# footnote where it is cited ("fn1", its number "[1]"), or a footnote's way back
# to where it is cited ("fnref1", an arrow).
_IN_THE_POST = re.compile("#" + re.escape(ID_PREFIX) + r"(fnref|fn(?=[0-9]))?")


def _is_address_itself(text: str, href: str) -> bool:
    """Whether a link's text is its address: as written, or from "www." (the
    renderer's http:// added), or as the author wrote an address that its href
    holds encoded (café, [2024], a name in Unicode: caf%C3%A9, %5B2024%5D,
    Punycode), as the renderer encodes it."""
    return href in {text, "http://" + text} or href in {
        normalizeLink(text),
        normalizeLink("http://" + text),
    }


class _TextWriter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []  # (kind, text)
        self.inline: list[str] = []
        self.kind = "p"
        # [ordered, next number, its item's marker's width] per open list
        self.lists: list[list] = []
        self.marker = ""  # a list item's bullet, waiting for the item's first block
        self.quote_depth = 0
        self.in_pre = False
        self.links: list[str] = []
        # Each open link's address, and where its text starts in self.inline.
        self.open_links: list[tuple[str | None, int]] = []
        self.row: list[str] | None = None

    # Blocks ------------------------------------------------------------------

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline = []
        if self.row is not None:  # inside a table cell: collected by the row
            cell = text.replace(_BREAK, " ")
            self.row.append(" ".join(cell.split()).replace(_GLUE, " "))
            return
        if not text.strip():
            return  # a list item's bullet waits for the item's first words
        # A list item's every block, and a list inside it, under the item's first
        # words: read from the margin, they were the list's end.
        outer = " " * sum(width for _, _, width in self.lists[:-1])
        rest = outer + " " * (self.lists[-1][2] if self.lists else 0)
        first = outer + self.marker if self.marker else rest
        self.marker = ""
        if self.in_pre:
            lines = [
                rest + line
                for line in text.strip("\n").replace(_BREAK, "\n").splitlines()
            ]
        else:
            lines = []
            for i, line in enumerate(text.split(_BREAK)):
                line = " ".join(line.split())
                lines += textwrap.wrap(
                    line,
                    WIDTH,
                    initial_indent=first if i == 0 else rest,
                    subsequent_indent=rest,
                    break_long_words=False,
                    break_on_hyphens=False,
                ) or [first if i == 0 else rest]
        if self.kind in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            underline = "=" if self.kind in {"h1", "h2"} else "-"
            lines.append(underline * max(len(line) for line in lines))
        if self.quote_depth:
            lines = [("> " * self.quote_depth + line).rstrip() for line in lines]
        self.blocks.append((self.kind, "\n".join(lines).replace(_GLUE, " ")))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag in _BLOCKS:
            self.flush()
        if tag in {"ul", "ol"}:
            start = attributes.get("start") or "1"
            self.lists.append(
                [tag == "ol", int(start) if _LIST_START.fullmatch(start) else 1, 0]
            )
        elif tag == "li" and self.lists:
            ordered, number, _ = self.lists[-1]
            self.marker = f"{number}. " if ordered else "- "
            self.lists[-1][1:] = [number + 1, len(self.marker)]
        elif tag == "blockquote":
            self.quote_depth += 1
        elif tag == "pre":
            self.in_pre = True
        elif tag == "tr":
            self.row = []
        elif tag in {"td", "th"}:
            self.inline = []
        elif tag == "hr":
            self.blocks.append(("hr", "* * *"))
        elif tag == "br":
            self.inline.append(_BREAK)
        elif tag == "img" and attributes.get("alt"):
            self.inline.append(f" [image: {attributes['alt']}] ")
        elif tag == "a":
            self.open_links.append((attributes.get("href"), len(self.inline)))
        elif tag in _STRUCK_OUT:
            self.inline.append("~~")
        if tag in _BLOCKS and tag not in {"ul", "ol", "table", "tr", "hr"}:
            self.kind = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.open_links:
            href, start = self.open_links.pop()
            if href and (place := _IN_THE_POST.search(href)):
                # The text part holds the whole post, with nowhere to jump to: a
                # section's name stays as words, a footnote's number reads apart
                # from the links' [1], [2], and the way back goes.
                if place[1] == "fn":
                    number = "".join(self.inline[start:]).strip("[] ")
                    self.inline[start:] = [f"[note {number}]"]
                elif place[1] == "fnref":
                    del self.inline[start:]
            elif href and _is_address_itself("".join(self.inline[start:]), href):
                # An address written out ("The report: https://…."): once, in
                # <>, which end it for a mail program that links it, as RFC
                # 3986 (appendix C) has it, before any text running on; as the
                # HTML's link has it, so both parts hold the same links.
                self.inline[start:] = [f"<{href}>"]
            elif href:
                # Numbered: a reference after words, for the links at the end.
                self.inline.append(f"{_GLUE}[{self.reference(href)}]")
            return
        if tag in _STRUCK_OUT:
            self.inline.append("~~")
            return
        if tag in {"td", "th"} and self.row is not None:
            self.flush()
            return
        if tag == "tr" and self.row is not None:
            cells, self.row = self.row, None
            self.blocks.append(("tr", " | ".join(cells)))
            return
        if tag == "table":
            self.blocks.append(("end", ""))  # a blank line after a table
        if tag in _BLOCKS:
            self.flush()
            self.kind = "li" if self.lists else "p"
        if tag in {"ul", "ol"} and self.lists:
            self.lists.pop()
            self.kind = "li" if self.lists else "p"
            if not self.lists:  # a blank line after a list, even before another
                self.blocks.append(("end", ""))
        elif tag == "blockquote":
            self.quote_depth = max(self.quote_depth - 1, 0)
        elif tag == "pre":
            self.in_pre = False

    def handle_data(self, data: str) -> None:
        self.inline.append(data.replace(_BREAK, "").replace(_GLUE, ""))

    def reference(self, href: str) -> int:
        if href not in self.links:
            self.links.append(href)
        return self.links.index(href) + 1

    # Result ------------------------------------------------------------------

    def text(self) -> str:
        self.flush()
        out = ""
        previous = None
        for kind, text in self.blocks:
            if kind == "end":
                previous = kind
                continue
            if previous is not None:
                out += "\n" if kind in _TIGHT and previous in _TIGHT else "\n\n"
            out += text
            previous = kind
        if self.links:
            out += "\n\nLinks:\n" + "\n".join(
                f"[{n}] {href}" for n, href in enumerate(self.links, start=1)
            )
        return out


def html_to_text(html: str) -> str:
    writer = _TextWriter()
    writer.feed(html)
    writer.close()
    return writer.text()
