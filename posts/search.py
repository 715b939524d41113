"""Ranked full-text search over posts and the facts of their inspections.

PostgreSQL uses its own text search: a weighted tsvector stored on the post and
GIN-indexed, ranked by ts_rank, highlighted by ts_headline. SQLite uses an FTS5 table
kept by index_post, ranked by bm25, highlighted by snippet(). Both weigh a match in
the title most, then the inspection facts and the excerpt, then the body; both AND
the words of the query together, and words in quotes are a phrase ("…", or as
phones and other languages type them: “…”, „…“, «…», or in single typographic
quotes). Both fold accents: "mon" finds "Ynys Môn", and "Môn" finds "Mon". Both
read a word whole across the invisible characters pasted into it (INVISIBLE_IN_WORDS).
Both find an abbreviation and the name it stands for as one (ABBREVIATIONS), and a
post by the years of its inspections and its publication (search_facts).
Snippets come from search_text, the post's words without Markdown or HTML.
"""

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.contrib.postgres.lookups import Unaccent
from django.contrib.postgres.search import (
    SearchHeadline,
    SearchQuery,
    SearchRank,
    SearchVector,
)
from django.db import connection
from django.db.models import Expression, F, Func, QuerySet, TextField, Value
from django.db.models.functions import (
    Coalesce,
    Greatest,
    Least,
    Lower,
    NullIf,
    Replace,
    StrIndex,
    Substr,
)
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .markdown import plain_text
from .models import Post
from .validators import without_control_characters

# english with each word unaccented before it is stemmed (migration 0007 creates
# it), so that the stored document, the query and the highlighting all fold accents,
# as SQLite's FTS5 index (remove_diacritics) does.
CONFIG = "english_unaccent"
# Enough for anyone paging through results (100 pages), and it bounds the work: on
# PostgreSQL a query matching more posts ranks only its newest MAX_RESULTS matches,
# so that a word found in every post does not rank the whole archive.
MAX_RESULTS = 1000
MAX_TERMS = 12
MAX_QUERY_LENGTH = 200
# ts_headline parses all the text it is given, so it gets a window of the post's
# text around the first occurrence of the query's first word (or of any form of its
# first name): a long post costs no more than a short one, and a match deep in it
# is still shown. (SQLite's snippet() finds its window itself.)
HEADLINE_LEAD = 150
HEADLINE_WINDOW = 600
# Characters no page shows that Word and PDFs leave inside a word: the soft hyphen
# (Word's optional hyphen, in text pasted from an inspection report), the
# zero-width space, the word joiner and the zero-width no-break space (a byte
# order mark). Both databases' parsers read each as a break: "rehabil\u00aditation"
# was "rehabil" and "itation", which no search for rehabilitation found. They are
# taken out of what is indexed and of the query. Not the zero-width (non-)joiners:
# Persian and Indic scripts spell words with them, and the query's words are
# parted at them as the post's are.
INVISIBLE_IN_WORDS = "\u00ad\u200b\u2060\ufeff"
_WITHOUT_INVISIBLE = dict.fromkeys(map(ord, INVISIBLE_IN_WORDS))
# Private-use characters mark highlights in the raw text; the text is escaped and
# only then are they turned into <mark>, so post text can never inject markup.
_START, _STOP = "\ue000", "\ue001"
# ts_headline parses the text it is given afresh, where "2022-23" is 2022 and -23,
# "Sodexo/Nacro" one file path and "St.Helens" one host name (see _words): none of
# them was highlighted. It is given the hyphens, slashes and full stops _words
# reads as a space as these private-use characters, which it reads as the index
# read them, between words, and which are put back after.
_HEADLINE_STAND_INS = {"-": "\ue002", "/": "\ue003", ".": "\ue004"}
_SPACES = dict.fromkeys(_HEADLINE_STAND_INS, " ")
# A full stop between a letter or digit and a letter: "failed.Inspectors" (its
# space lost), "St.Helens", "www.justice.gov.uk". Not before a digit: "2.0" and
# "1.5m" are numbers, one word each on both sides.
_FULL_STOP_BEFORE_A_LETTER = r"(?<=\w)\.(?=[[:alpha:]])"
# "CRC's" (or with a typographic apostrophe): the s is no word a post must hold,
# though SQLite's index keeps it as one. Only outside quotes: inside, the words are
# matched as the post has them.
_POSSESSIVE = re.compile(r"(?<=\w)['\u2019]s\b", re.IGNORECASE)
# A word, or a number with a decimal point kept whole ("2.0", "1.5m"): PostgreSQL's
# parser stores "2.0" as one token, which "2" and "0" never match (and they match
# a post that has both anywhere). SQLite's index holds "2" "0", found as a phrase.
_WORD = re.compile(r"\w*\d(?:\.\d\w*)+|\w+")
# Phones type “…” for "…" (and readers of other languages „…“ or «…»): each is a
# phrase, as straight double quotes are. None of them is ever anything but a
# quote, so each is read as ".
_DOUBLE_QUOTES = str.maketrans(
    dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb", '"')
)
# Single typographic quotes too, but the closing one (U+2019) is also the
# apostrophe ("CRC\u2019s"), and phones type the opening one (U+2018) for an
# apostrophe at the start of a word ("\u201890s"): words in single quotes are a
# phrase only when the quote is closed, by a U+2019 that no letter follows.
_SINGLE_QUOTED = re.compile(r"\u2018([^\u2018]*?)\u2019(?!\w)")
# Words joined by hyphens ("2022-23", "high-risk"): found side by side, as a
# phrase, as they are written, not each anywhere in a post.
_JOINED = re.compile(r"\w-\w")
# The site writes British English, but a phone's American dictionary (or an
# American reader) types "license", "offenses" or "behavior programs", which found
# nothing: such a word is searched in its British spelling too (as typed as well,
# for a post quoting an American source). Stemming matches the rest of the word.
_BRITISH_SPELLINGS = [
    (re.compile(r"(lic|off|def)ense(s?)"), r"\1ence\2"),
    (
        re.compile(r"(behavi|lab|neighb|col|fav|hon|rum|endeav)or(s|al|ally|ed|ing)?"),
        r"\1our\2",
    ),
    (re.compile(r"(\w{2,})iz(e|es|ed|ing|ation|ations)"), r"\1is\2"),
    (re.compile(r"(\w+)yz(e|es|ed|ing)"), r"\1ys\2"),
    (re.compile(r"program(s?)"), r"programme\1"),
    (re.compile(r"center(s?)"), r"centre\1"),
    (re.compile(r"counselor(s?)"), r"counsellor\1"),
]

# The field's abbreviations and the names they stand for: posts write one or the
# other, readers type either, and each found only the posts that wrote it. A
# search for any form of a name finds every form (SearchQueryText.parse reads
# them), each word for word. A form must be no English word: "DIP" (the Drug
# Interventions Programme) would find the posts on the name for every "dip".
ABBREVIATIONS = {
    # The public probation service of 2014-21. (Prison reports use NPS for new
    # psychoactive substances too, which this publication seldom writes of.)
    "NPS": ("National Probation Service",),
    # The private companies of 2014-21; the plural as a form of its own, as
    # PostgreSQL's stemmer leaves "CRCs" whole (no vowel before its s).
    "CRC": (
        "CRCs",
        "Community Rehabilitation Company",
        "Community Rehabilitation Companies",
    ),
    # The agency over prisons and probation since 2017.
    "HMPPS": ("HM Prison and Probation Service",),
    # The inspectorate whose reports the posts discuss, which calls itself "HMI
    # Probation". (Elsewhere HMIP may be the prisons' inspectorate.)
    "HMIP": ("HMI Probation", "HM Inspectorate of Probation"),
    # The department over HMPPS, and the probation service's policy.
    "MoJ": ("Ministry of Justice",),
}


def british_spelling(word: str) -> str | None:
    """The word's British spelling, if it is an American spelling of one."""
    for american, british in _BRITISH_SPELLINGS:
        if american.fullmatch(word.lower()):
            return american.sub(british, word.lower())
    return None


def _indexed(field: str) -> Expression:
    """A column's text as both databases index it: without INVISIBLE_IN_WORDS."""
    text = F(field)
    for char in INVISIBLE_IN_WORDS:
        text = Replace(text, Value(char), output_field=TextField())
    return text


def _words(text: Expression, *, apart: dict[str, str] = _SPACES) -> Func:
    # PostgreSQL's parser reads "Sodexo/Nacro" or "NPS/CRC" as one file path, a
    # single word no search for either name finds, "2022-23" as 2022 and the
    # negative number -23 (as "-1.5" is one), which no search for the year or for
    # 23 (or 1.5) finds, and "St.Helens" or "failed.Inspectors" as a host name, one
    # word (the query, like SQLite's parser, reads words on both sides of each).
    for char in "/-":
        text = Replace(text, Value(char), Value(apart[char]), output_field=TextField())
    return Func(
        text,
        Value(_FULL_STOP_BEFORE_A_LETTER),
        Value(apart["."]),
        Value("g"),
        function="REGEXP_REPLACE",
        output_field=TextField(),
    )


def post_search_vector() -> SearchVector:
    """The weighted document, stored in Post.search_vector on PostgreSQL."""
    return (
        SearchVector(_words(_indexed("title")), weight="A", config=CONFIG)
        + SearchVector(_words(_indexed("search_facts")), weight="B", config=CONFIG)
        + SearchVector(_words(_indexed("excerpt")), weight="B", config=CONFIG)
        # The body's words as its page shows them (search_text), as SQLite's
        # index has them: indexed as typed, a note in an HTML comment, which no
        # page shows, found the post, and a sentence quoted across a link did not.
        + SearchVector(_words(_indexed("search_text")), weight="C", config=CONFIG)
    )


def query_text(typed: str) -> str:
    """The query as it is searched and shown: in Unicode's compatibility form (an
    accent typed as a character of its own split "Môn" in two, and full-width
    letters were words only PostgreSQL's parser read), without control characters
    (HTML forbids them in a page, and a right-to-left override showed the query
    reversed) or the invisible characters pasted inside a word (INVISIBLE_IN_WORDS),
    spacing collapsed, lower case (search ignores case anyway), capped.
    The same words typed another way are the same page, so the page cache keeps one
    copy of it."""
    words = (
        without_control_characters(w)
        for w in unicodedata.normalize("NFKC", typed)
        .translate(_WITHOUT_INVISIBLE)
        .split()
    )
    return " ".join(w for w in words if w).lower()[:MAX_QUERY_LENGTH].rstrip()


# Each form of a name in ABBREVIATIONS, as the words of a query, to its name.
_NAME_OF_FORM = {
    tuple(_WORD.findall(form.lower())): name
    for name, forms in ABBREVIATIONS.items()
    for form in (name, *forms)
}
_LONGEST_FORM = max(map(len, _NAME_OF_FORM))


def _names_apart(run: list[str]) -> tuple[list[str], list[str]]:
    """The words typed in a row, without the names among them (a form of one of
    ABBREVIATIONS, its words in order, the longest read first), and those names."""
    words, names = [], []
    start = 0
    while start < len(run):
        for length in range(min(_LONGEST_FORM, len(run) - start), 0, -1):
            form = tuple(word.lower() for word in run[start : start + length])
            if name := _NAME_OF_FORM.get(form):
                names.append(name)
                start += length
                break
        else:
            words.append(run[start])
            start += 1
    return words, names


def _forms(name: str) -> list[str]:
    """A name's forms, each as the words to find in a row."""
    return [
        " ".join(_WORD.findall(form.lower())) for form in (name, *ABBREVIATIONS[name])
    ]


@dataclass(frozen=True)
class SearchQueryText:
    """What a reader typed, as the words to find anywhere, the phrases to find
    word for word (between quotes, straight or typographic; a double quote left
    open runs to the end), and the names of ABBREVIATIONS to find in any of their
    forms (typed loose, or as a phrase that is the whole name: "NPS staff" in
    quotes is a phrase as typed)."""

    words: list[str]
    phrases: list[list[str]]
    names: list[str]

    @classmethod
    def parse(cls, query: str) -> "SearchQueryText":
        words: list[str] = []
        phrases: list[list[str]] = []
        names: list[str] = []
        runs: list[list[str]] = [[]]  # words typed in a row, where a name may be
        budget = MAX_TERMS
        query = _SINGLE_QUOTED.sub(r'"\1"', query.translate(_DOUBLE_QUOTES))
        for phrase, loose in re.findall(r'"([^"]*)"?|([^"]+)', query):
            parts = [phrase] if phrase else _POSSESSIVE.sub("", loose).split()
            for part in parts:
                found = _WORD.findall(part)[:budget]
                budget -= len(found)
                if (
                    (phrase or _JOINED.search(part))
                    and len(found) > 1
                    and tuple(word.lower() for word in found) not in _NAME_OF_FORM
                ):
                    phrases.append(found)
                    runs.append([])
                else:
                    runs[-1].extend(found)
            runs.append([])
        for run in runs:
            loose_words, named = _names_apart(run)
            words.extend(loose_words)
            names.extend(named)
        return cls(words=words, phrases=phrases, names=names)

    def __bool__(self) -> bool:
        return bool(self.words or self.phrases or self.names)

    def anchors(self) -> list[str]:
        """What to find in plain text, lowercased, where the snippet starts: the
        start of the first word, what stemming keeps of it (inspection, inspected
        → inspect), give or take; or a name's every form, as a post may hold any
        one of them ("NPS" or "national probation service")."""
        first = [*self.words, *(p[0] for p in self.phrases)]
        if not first:
            return _forms(self.names[0])
        word = first[0].lower()
        # The site's own spelling, which its posts have.
        word = british_spelling(word) or word
        return [word[: max(4, len(word) - 3)]]

    def _either_spelling(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The words spelt one way only, and each American spelling with its
        British one."""
        plain, either = [], []
        for word in self.words:
            if british := british_spelling(word):
                either.append((word, british))
            else:
                plain.append(word)
        return plain, either

    def postgres(self) -> SearchQuery:
        plain, either = self._either_spelling()
        parts = [SearchQuery(" ".join(plain), config=CONFIG)] if plain else []
        parts += [
            SearchQuery(american, config=CONFIG) | SearchQuery(british, config=CONFIG)
            for american, british in either
        ]
        parts += [
            SearchQuery(" ".join(p), config=CONFIG, search_type="phrase")
            for p in self.phrases
        ]
        parts += [
            reduce(
                or_,
                (
                    SearchQuery(form, config=CONFIG, search_type="phrase")
                    for form in _forms(name)
                ),
            )
            for name in self.names
        ]
        combined = parts[0]
        for part in parts[1:]:
            combined &= part
        return combined

    def fts5(self) -> str:
        # Each word and phrase quoted: FTS5 operators typed by a reader are words.
        plain, either = self._either_spelling()
        return " AND ".join(
            [
                *(f'"{" ".join(p)}"' for p in [*([w] for w in plain), *self.phrases]),
                *(f'("{american}" OR "{british}")' for american, british in either),
                *(
                    "(" + " OR ".join(f'"{form}"' for form in _forms(name)) + ")"
                    for name in self.names
                ),
            ]
        )


@dataclass(frozen=True)
class SearchResult:
    post: Post
    snippet: SafeString


def only_common_words(terms: SearchQueryText) -> bool:
    """True when PostgreSQL drops every word as a stop word ("the of and").
    SQLite's index keeps every word, so there nothing is too common."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT numnode(plainto_tsquery(%s::regconfig, %s))",
            [
                CONFIG,
                " ".join(
                    [*terms.words, *(w for p in terms.phrases for w in p), *terms.names]
                ),
            ],
        )
        return cursor.fetchone()[0] == 0


def ranked_post_ids(terms: SearchQueryText) -> list[int]:
    """Ids of published posts matching the query, best first, ties newest first."""
    if not terms:
        return []
    if connection.vendor == "postgresql":
        search_query = terms.postgres()
        # Ranked in the same scan that finds them (a second pass over the posts to
        # re-read their vectors costs more), then sorted by rank in the database,
        # so that only the ids come back: no rank to convert, nothing to sort here.
        newest = (
            Post.objects.published()
            .filter(search_vector=search_query)
            .annotate(rank=SearchRank(F("search_vector"), search_query))
            .order_by("-published_at", "-id")
            .values("id", "published_at", "rank")[:MAX_RESULTS]
        )
        sql, params = newest.query.sql_with_params()
        with connection.cursor() as cursor:
            # Stable: equal ranks stay newest first, then by id.
            cursor.execute(
                f"SELECT id FROM ({sql}) AS newest "  # noqa: S608 (Django's SQL)
                "ORDER BY rank DESC, published_at DESC, id DESC",
                params,
            )
            return [row[0] for row in cursor.fetchall()]
    # Only published posts before the cap: drafts (indexed too) capped first
    # took the places of posts a reader may see, and the count said fewer.
    published, published_params = (
        Post.objects.published().values("id").query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rowid FROM posts_search WHERE posts_search MATCH %s "  # noqa: S608 (Django's SQL)
            f"AND rowid IN ({published}) "
            "ORDER BY bm25(posts_search, 10.0, 4.0, 4.0, 1.0), rowid DESC "
            "LIMIT %s",
            [terms.fts5(), *published_params, MAX_RESULTS],
        )
        return [row[0] for row in cursor.fetchall()]


def search_results(terms: SearchQueryText, post_ids: list[int]) -> list[SearchResult]:
    """The posts with these ids (one page), in this order, each with a snippet."""
    posts = Post.objects.filter(id__in=post_ids).only("title", "slug", "published_at")
    if connection.vendor == "postgresql":
        text = _indexed("search_text")
        # Where the first of them is (StrIndex's 0, not there, is left out):
        # unaccented on both sides, "mon" finds "Môn", and "Môn" finds "Mon".
        found_at = [
            NullIf(StrIndex(Lower(Unaccent(text)), Unaccent(Value(anchor))), 0)
            for anchor in terms.anchors()
        ]
        first = Least(*found_at) if len(found_at) > 1 else found_at[0]
        window = Substr(
            text,
            Greatest(Coalesce(first, 0) - HEADLINE_LEAD, 1),
            HEADLINE_WINDOW,
        )
        posts = posts.annotate(
            headline=SearchHeadline(
                _words(window, apart=_HEADLINE_STAND_INS),
                terms.postgres(),
                config=CONFIG,
                start_sel=_START,
                stop_sel=_STOP,
                max_words=30,
                min_words=15,
                max_fragments=2,
                fragment_delimiter=" … ",
            )
        )
        found = {post.id: post for post in posts}
        headlines = {}
        for post_id, post in found.items():
            headline = post.headline
            for char, stand_in in _HEADLINE_STAND_INS.items():
                headline = headline.replace(stand_in, char)
            headlines[post_id] = headline
    else:
        found = {post.id: post for post in posts}
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rowid, snippet(posts_search, -1, %s, %s, ' … ', 32) "
                "FROM posts_search WHERE posts_search MATCH %s "
                "AND rowid IN (SELECT value FROM json_each(%s))",
                [_START, _STOP, terms.fts5(), json.dumps(post_ids)],
            )
            headlines = dict(cursor.fetchall())
    return [
        SearchResult(post=found[post_id], snippet=highlight(headlines.get(post_id, "")))
        for post_id in post_ids
        if post_id in found
    ]


def highlight(marked_text: str) -> SafeString:
    escaped = escape(marked_text.replace("\n", " "))
    return mark_safe(  # noqa: S308 (escaped above; only our own tags added)
        escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")
    )


def search_facts(post: Post) -> str:
    """What the post shows beside its text, as readers would search for it: its
    inspections' facts (the fact box: report, its type unless local, area,
    organisations, the standards rated and the key findings), the author's name
    (the byline), its categories and tags, and its updates and corrections as they
    read now (the note and what the post should say). Not the ratings themselves:
    the inspections page filters by them, and "good" would otherwise find every
    post rated Good on any standard; nor "local", for the same reason. Nor what a
    correction says the post said wrongly: the post no longer says it.
    Last, the years of its inspections' fieldwork and reports and of the post's
    publication, as words: readers look reports up by area and year ("Durham
    2019"), and a page's dates are no words the index holds."""
    lines = []
    days = [timezone.localdate(post.published_at)] if post.published_at else []
    for inspection in post.inspections.select_related("area__region").prefetch_related(
        "organisations__owners", "ratings"
    ):
        days += [inspection.fieldwork_start, inspection.fieldwork_end]
        days.append(inspection.published_on)
        lines.append(inspection.title)
        lines.append(inspection.inspectorate)
        if inspection.type != inspection.Type.LOCAL:
            lines.append(f"{inspection.get_type_display()} inspection")
        if inspection.area:
            lines.append(f"{inspection.area.name}, {inspection.area.region.name}")
        for organisation in inspection.organisations.all():
            lines.append(organisation.name)
            lines.extend(owner.name for owner in organisation.owners.all())
        lines.extend(rating.standard for rating in inspection.ratings.all())
        lines.extend(inspection.key_findings_list)
    lines.append(post.byline)
    lines.extend(category.name for category in post.categories.all())
    lines.extend(tag.name for tag in post.tags.all())
    for update in post.updates.all():
        lines.extend([update.right, update.note])
    lines.extend(str(year) for year in sorted({day.year for day in days if day}))
    return "\n".join(line for line in dict.fromkeys(lines) if line)


def index_posts(posts: QuerySet[Post]) -> None:
    """Bring the search entries of posts saved without save() (bulk_create, with
    search_text set) up to date in one statement, from their stored columns."""
    if connection.vendor == "postgresql":
        posts.update(search_vector=post_search_vector())
    elif connection.vendor == "sqlite":
        ids = json.dumps(list(posts.values_list("id", flat=True)))
        entries, params = (
            Post.objects.filter(id__in=posts.values("id"))
            .order_by()
            .values_list(
                "id",
                *map(_indexed, ["title", "search_facts", "excerpt", "search_text"]),
            )
            .query.sql_with_params()
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM posts_search WHERE rowid IN "
                "(SELECT value FROM json_each(%s))",
                [ids],
            )
            cursor.execute(
                "INSERT INTO posts_search (rowid, title, facts, excerpt, body) "
                + entries,  # Django's SQL
                params,
            )


def index_post(post: Post) -> None:
    """Bring the post's search entry up to date with the post and its inspections."""
    facts = search_facts(post)
    text = plain_text(post.body_html)
    if (facts, text) != (post.search_facts, post.search_text):
        Post.objects.filter(pk=post.pk).update(search_facts=facts, search_text=text)
        post.search_facts, post.search_text = facts, text
    # From the stored columns, after the facts above are written.
    index_posts(Post.objects.filter(pk=post.pk))
