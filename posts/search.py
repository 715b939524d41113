"""Ranked full-text search over posts and the facts of their inspections.

PostgreSQL uses its own text search: a weighted tsvector stored on the post and
GIN-indexed, ranked by ts_rank, highlighted by ts_headline. SQLite uses an FTS5 table
kept by index_post, ranked by bm25, highlighted by snippet(). Both weigh a match in
the title most, then the inspection facts and the excerpt, then the body, and both
AND the words of the query together.
"""

import json
import re
from dataclasses import dataclass

from django.contrib.postgres.search import (
    SearchHeadline,
    SearchQuery,
    SearchRank,
    SearchVector,
)
from django.db import connection
from django.db.models import F, TextField, Value
from django.db.models.functions import Concat
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .models import Post

CONFIG = "english"
# Enough for anyone paging through results; keeps a vague query cheap.
MAX_RESULTS = 100
MAX_TERMS = 12
# Private-use characters mark highlights in the raw text; the text is escaped and
# only then are they turned into <mark>, so post text can never inject markup.
_START, _STOP = "\ue000", "\ue001"


def post_search_vector() -> SearchVector:
    """The weighted document, stored in Post.search_vector on PostgreSQL."""
    return (
        SearchVector("title", weight="A", config=CONFIG)
        + SearchVector("search_facts", weight="B", config=CONFIG)
        + SearchVector("excerpt", weight="B", config=CONFIG)
        + SearchVector("body", weight="C", config=CONFIG)
    )


@dataclass(frozen=True)
class SearchResult:
    post: Post
    snippet: SafeString


def search_terms(query: str) -> list[str]:
    return re.findall(r"\w+", query)[:MAX_TERMS]


def ranked_post_ids(query: str) -> list[int]:
    """Ids of published posts matching every word of the query, best first."""
    terms = search_terms(query)
    if not terms:
        return []
    if connection.vendor == "postgresql":
        search_query = SearchQuery(" ".join(terms), config=CONFIG)
        ids = list(
            Post.objects.filter(search_vector=search_query)
            .annotate(rank=SearchRank(F("search_vector"), search_query))
            .order_by("-rank", "-published_at", "-id")
            .values_list("id", flat=True)[:MAX_RESULTS]
        )
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rowid FROM posts_search WHERE posts_search MATCH %s "
                "ORDER BY bm25(posts_search, 10.0, 4.0, 4.0, 1.0), rowid DESC "
                "LIMIT %s",
                [_fts_query(terms), MAX_RESULTS],
            )
            ids = [row[0] for row in cursor.fetchall()]
    visible = set(
        Post.objects.published().filter(id__in=ids).values_list("id", flat=True)
    )
    return [post_id for post_id in ids if post_id in visible]


def search_results(query: str, post_ids: list[int]) -> list[SearchResult]:
    """The posts with these ids, in this order, each with a highlighted snippet."""
    terms = search_terms(query)
    posts = Post.objects.for_listing().in_bulk(post_ids)
    if connection.vendor == "postgresql":
        headlines = dict(
            Post.objects.filter(id__in=post_ids)
            .annotate(
                headline=SearchHeadline(
                    Concat("excerpt", Value(" … "), "body", output_field=TextField()),
                    SearchQuery(" ".join(terms), config=CONFIG),
                    config=CONFIG,
                    start_sel=_START,
                    stop_sel=_STOP,
                    max_words=40,
                    min_words=20,
                    max_fragments=2,
                    fragment_delimiter=" … ",
                )
            )
            .values_list("id", "headline")
        )
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rowid, snippet(posts_search, -1, %s, %s, ' … ', 32) "
                "FROM posts_search WHERE posts_search MATCH %s "
                "AND rowid IN (SELECT value FROM json_each(%s))",
                [_START, _STOP, _fts_query(terms), json.dumps(post_ids)],
            )
            headlines = dict(cursor.fetchall())
    return [
        SearchResult(post=posts[post_id], snippet=highlight(headlines.get(post_id, "")))
        for post_id in post_ids
        if post_id in posts
    ]


def highlight(marked_text: str) -> SafeString:
    escaped = escape(marked_text.replace("\n", " "))
    return mark_safe(  # noqa: S308 (escaped above; only our own tags added)
        escaped.replace(_START, "<mark>").replace(_STOP, "</mark>")
    )


def _fts_query(terms: list[str]) -> str:
    # Each term quoted: FTS5 operators typed by a reader are words, not syntax.
    return " ".join(f'"{term}"' for term in terms)


def inspection_facts(post: Post) -> str:
    lines = []
    for inspection in post.inspections.select_related("area__region").prefetch_related(
        "organisations__owners"
    ):
        lines.append(inspection.title)
        lines.append(inspection.inspectorate)
        if inspection.area:
            lines.append(f"{inspection.area.name}, {inspection.area.region.name}")
        for organisation in inspection.organisations.all():
            lines.append(organisation.name)
            lines.extend(owner.name for owner in organisation.owners.all())
    return "\n".join(dict.fromkeys(lines))


def index_post(post: Post) -> None:
    """Bring the post's search entry up to date with the post and its inspections."""
    facts = inspection_facts(post)
    if facts != post.search_facts:
        Post.objects.filter(pk=post.pk).update(search_facts=facts)
        post.search_facts = facts
    if connection.vendor == "postgresql":
        # From the stored columns, after the facts above are written.
        Post.objects.filter(pk=post.pk).update(search_vector=post_search_vector())
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM posts_search WHERE rowid = %s", [post.pk])
            cursor.execute(
                "INSERT INTO posts_search (rowid, title, facts, excerpt, body) "
                "VALUES (%s, %s, %s, %s, %s)",
                [post.pk, post.title, facts, post.excerpt, post.body],
            )
