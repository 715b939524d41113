"""Search: ranked, over posts and their inspection facts, highlighted safely."""

import re
from datetime import UTC, date, datetime, timedelta
from importlib import import_module
from io import StringIO

import pytest
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from posts.models import Post, StandardRating
from posts.search import (
    CONFIG,
    SearchQueryText,
    index_post,
    index_posts,
    ranked_post_ids,
)

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    RegionFactory,
    TagFactory,
    UserFactory,
    admin_post_form_of,
)

pytestmark = pytest.mark.django_db


def results(client, query: str) -> str:
    response = client.get("/search/", {"q": query})
    assert response.status_code == 200
    return response.content.decode()


def result_titles(client, query: str) -> list[str]:
    html = results(client, query)
    return [
        chunk.split("</a>", 1)[0].split(">", 1)[1] for chunk in html.split("<h2>")[1:]
    ]


def test_searching_suffolk_finds_the_suffolk_inspection_first(client):
    call_command("seed_demo", stdout=StringIO())
    titles = result_titles(client, "Suffolk")
    assert titles[0] == "Suffolk probation: far more needed to protect the public"
    assert "<mark>Suffolk</mark>" in results(client, "Suffolk")


def test_a_title_match_outranks_a_mention_in_the_body(client):
    PublishedPostFactory(title="Staffing in Kent", body="Kent. " * 3)
    PublishedPostFactory(title="Wakefield rated Good", body="Unlike Kent, fine.")
    PublishedPostFactory(title="Nothing relevant", body="Nothing here.")
    assert result_titles(client, "kent") == ["Staffing in Kent", "Wakefield rated Good"]


def test_search_covers_area_region_and_organisation_names(client):
    area = AreaFactory(name="Zephyrshire", region=RegionFactory(name="Far North"))
    owner = OrganisationFactory(name="Quillworth Holdings", kind="owner")
    crc = OrganisationFactory(name="Marrowby CRC")
    crc.owners.add(owner)
    inspection = InspectionFactory(
        area=area, organisations=[crc], post=PublishedPostFactory(title="A report")
    )
    for words in ["Zephyrshire", "far north", "Marrowby", "Quillworth"]:
        assert result_titles(client, words) == [inspection.post.title], words


def test_stemming_finds_other_forms_of_a_word(client):
    PublishedPostFactory(title="Inspectors inspected the service")
    assert result_titles(client, "inspection") == ["Inspectors inspected the service"]


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("license recall", "Recall on licence"),
        ("sexual offenses", "Sexual offences"),
        ("behavior programs", "Accredited behaviour programmes"),
        ("organizations", "Organisations in the partnership"),
        ("analyzed", "Cases analysed"),
        ("counselor", "The counsellor"),
    ],
)
def test_an_american_spelling_finds_the_british_one(client, query, title):
    # A phone's American dictionary, or an American reader, typed "license":
    # nothing was found, though the site writes of recalls on licence.
    PublishedPostFactory(title=title, excerpt="", body=f"On {title.lower()}.")
    assert result_titles(client, query) == [title]
    snippet = results(client, query).split('class="snippet">', 1)[1]
    assert "<mark>" in snippet.split("</p>", 1)[0]


def test_an_american_spelling_still_finds_itself(client):
    PublishedPostFactory(title="A license from Texas")
    assert result_titles(client, "license") == ["A license from Texas"]


def test_every_word_must_match(client):
    PublishedPostFactory(title="Caseloads in Derby")
    PublishedPostFactory(title="Caseloads in Leicester")
    assert result_titles(client, "caseloads derby") == ["Caseloads in Derby"]


@pytest.mark.parametrize(
    "query", ["CRC's", "Durham\u2019s CRC", "tees valley's crc", "O'Brien's"]
)
def test_a_possessive_finds_the_word_without_it(client, query):
    # The "s" after the apostrophe was a word of its own that every post had to
    # hold: on SQLite "CRC's" found no post about the CRC.
    PublishedPostFactory(
        title="Durham Tees Valley CRC, led by Ms O'Brien",
        excerpt="Inspectors rated it Inadequate.",
        body="Inadequate.",
    )
    assert result_titles(client, query) == [
        "Durham Tees Valley CRC, led by Ms O&#x27;Brien"
    ]


@pytest.mark.parametrize("query", ["sodexo", "nacro", "nps", "kent surrey"])
def test_names_joined_by_a_slash_are_found_by_each_name(client, query):
    # PostgreSQL's parser read "Sodexo/Nacro" as one file path, a single word: a
    # search for Sodexo did not find the post.
    PublishedPostFactory(
        title="Kent/Surrey/Sussex CRC (Sodexo/Nacro)",
        excerpt="The NPS/CRC split, inspected.",
    )
    assert result_titles(client, query) == ["Kent/Surrey/Sussex CRC (Sodexo/Nacro)"]


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("2.0", "Probation reform 2.0"),
        ("version 2.0", "Probation reform 2.0"),
        ('"version 2.0"', "Probation reform 2.0"),
        ("1.5", "Caseloads grew"),
        ("£1.5m", "Caseloads grew"),
    ],
)
def test_a_number_with_a_decimal_point_finds_the_posts_that_hold_it(
    client, query, title
):
    # PostgreSQL's parser keeps "2.0" whole, one token, but the query split it into
    # "2" and "0", words no post holds: "2.0" found nothing. Nor is it "2" and "0"
    # anywhere in a post.
    PublishedPostFactory(title="Probation reform 2.0", body="Its version 2.0 began.")
    PublishedPostFactory(title="Caseloads grew", body="By 1.5 times, £1.5m more.")
    PublishedPostFactory(title="Teams", body="2 teams had 0 vacancies, 5 had 1.")
    assert result_titles(client, query) == [title]


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("2022-23", "Caseloads in 2022-23"),
        ('"2022-23"', "Caseloads in 2022-23"),
        ("-1.5", "Staffing fell"),
        ("1.5", "Staffing fell"),
        ("high-risk", "Caseloads in 2022-23"),
        ('"high risk"', "Caseloads in 2022-23"),
    ],
)
def test_words_and_numbers_joined_by_a_hyphen_are_found(client, query, title):
    # PostgreSQL's parser reads "2022-23" as 2022 and the negative number -23, and
    # "-1.5" as a negative number: a search for the financial year, or for 1.5,
    # found nothing. Words joined by a hyphen are found as they are written, side
    # by side, not anywhere in a post (2022 and 23 teams).
    for post_title, body in [
        ("Caseloads in 2022-23", "High-risk cases rose in the year."),
        ("Staffing fell", "Officers per team: -1.5."),
        ("Teams", "In 2022 most of 23 teams of 1 or 5 were high and at risk."),
    ]:
        PublishedPostFactory(title=post_title, excerpt="An inspection.", body=body)
    assert result_titles(client, query) == [title]


@pytest.mark.parametrize(
    ("query", "highlighted"),
    [
        ("inspectors", "failed. <mark>Inspectors</mark> found"),
        ("failed", "<mark>failed</mark>. Inspectors"),
        ("helens", "St. <mark>Helens</mark>"),
        ("st.helens", "<mark>St</mark>. <mark>Helens</mark>"),
        (
            "justice.gov.uk",
            "www. <mark>justice</mark>. <mark>gov</mark>. <mark>uk</mark>",
        ),
        ("2.0", "version <mark>2.0</mark>"),
    ],
)
def test_words_joined_by_a_full_stop_without_its_space_are_found(
    client, query, highlighted
):
    # PostgreSQL's parser read "failed.Inspectors" (a full stop whose space was
    # lost), "St.Helens" and "www.justice.gov.uk" as host names, one word each,
    # which no search for either part (nor for the address: the query is read as
    # its words) found. A number's decimal point keeps it whole.
    PublishedPostFactory(
        title="Merseyside",
        excerpt="",
        body="Supervision failed.Inspectors found St.Helens short of staff. "
        "Report at www.justice.gov.uk, version 2.0.",
    )
    html = results(client, query)
    assert result_titles(client, query) == ["Merseyside"]
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    # Each word marked, as the page shows them, without the space.
    assert highlighted.replace(". ", ".") in snippet


@pytest.mark.parametrize(
    ("query", "highlighted"),
    [
        ("2022-23", "<mark>2022-23</mark> caseloads"),
        ("nacro", "Sodexo/<mark>Nacro</mark> ran"),
        ("1.5", "by -<mark>1.5</mark> a team"),
    ],
)
def test_the_snippet_highlights_words_written_with_a_hyphen_or_slash(
    client, query, highlighted
):
    # On PostgreSQL a search found them but the snippet, parsed afresh, read
    # "2022-23" as 2022 and -23 and "Sodexo/Nacro" as a file path, and marked none.
    PublishedPostFactory(
        title="Staffing",
        excerpt="",
        body="In 2022-23 caseloads rose. Sodexo/Nacro ran it. Staff fell by -1.5 "
        "a team.",
    )
    html = results(client, query)
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    # A phrase's words may be marked one by one: "<mark>2022</mark>-<mark>23</mark>".
    assert highlighted in snippet.replace("</mark>-<mark>", "-")


@pytest.mark.parametrize("query", ["mon", "ynys mon", "cafe", "Ynys Môn", "CAFÉ"])
def test_a_search_finds_a_word_however_it_is_accented(client, query):
    # On PostgreSQL "mon" did not find "Ynys Môn", nor "cafe" "Café".
    PublishedPostFactory(
        title="Ynys Môn probation office", excerpt="Café-style reporting desks."
    )
    assert result_titles(client, query) == ["Ynys Môn probation office"]


@pytest.mark.parametrize("query", ["Môn", "ynys môn", "café"])
def test_an_accented_search_finds_the_word_written_without_accents(client, query):
    PublishedPostFactory(title="Ynys Mon probation office", body="A cafe next door.")
    assert result_titles(client, query) == ["Ynys Mon probation office"]


@pytest.mark.parametrize(
    "query",
    [
        "Mo\u0302n",  # the accent as a character of its own (macOS, some PDFs)
        # Full-width letters, as a Chinese or Japanese keyboard types them.
        "\uff59\uff4e\uff59\uff53 \uff4d\u00f4\uff4e",
        "\uff39\uff2e\uff39\uff33",
    ],
)
def test_a_word_typed_in_another_unicode_form_finds_the_post(client, query):
    # "Mo\u0302n" was the words "mo" and "n" on both databases, and full-width
    # letters found the post on PostgreSQL but nothing on SQLite.
    PublishedPostFactory(title="Ynys Môn probation office")
    assert result_titles(client, query) == ["Ynys Môn probation office"]


@pytest.mark.parametrize(
    "typed", ["\x00derby", "derby\x1b\x07", "\u202ederby", "derby \x00 \x85inadequate"]
)
def test_the_query_is_shown_without_control_characters(client, typed):
    # HTML forbids them in a page, and a right-to-left override showed the query
    # (and the page's title) reversed to whoever the link was shared with.
    PublishedPostFactory(title="Derby: Inadequate")
    html = results(client, typed)
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\u202a-\u202e]", html)
    assert "Derby: Inadequate" in html


def test_a_search_without_accents_highlights_the_accented_word(client):
    PublishedPostFactory(
        title="Anglesey", excerpt="", body="Caseloads on Ynys Môn rose again."
    )
    html = results(client, "mon")
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    assert "Ynys <mark>Môn</mark> rose" in snippet


def test_an_accented_word_deep_in_a_long_post_is_highlighted(client):
    filler = " ".join(f"word{n}" for n in range(1500))
    PublishedPostFactory(title="Long", body=f"{filler}\n\nThe Ynys Môn approach.")
    assert "<mark>Môn</mark>" in results(client, "mon")
    PublishedPostFactory(title="Longer", body=f"{filler}\n\nThe Ynys Mon approach.")
    assert "<mark>Mon</mark>" in results(client, "môn")


def test_drafts_and_scheduled_posts_are_not_found(client):
    PostFactory(title="Draft about Swindon")
    PublishedPostFactory(
        title="Scheduled about Swindon", published_at=timezone.now() + timedelta(days=1)
    )
    assert "Nothing found" in results(client, "Swindon")


def test_editing_a_post_updates_its_search_entry(client):
    post = PublishedPostFactory(title="Bexhill")
    post.title = "After the Grimsby inspection"
    post.save()
    assert result_titles(client, "Grimsby") == ["After the Grimsby inspection"]
    assert "Nothing found" in results(client, "Bexhill")


def test_snippets_highlight_matches_and_cannot_inject_markup(client):
    PublishedPostFactory(
        title="Escaping",
        excerpt="",
        body='Bedford <script>alert("x")</script> <b onmouseover=alert(1)>Bedford</b>',
    )
    html = results(client, "Bedford")
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    assert "<mark>Bedford</mark>" in snippet
    # The only markup is our own highlighting; the rest arrives as text.
    assert set(re.findall(r"</?(\w+)", snippet)) == {"mark"}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        '"',
        "NEAR(a b)",
        "probation OR",
        "-probation",
        "pro*",
        "a:b",
        "'; DROP TABLE posts_post; --",
        "ünïcödé",
        "x" * 5000,
        "\x00",
        "<script>",
        "_",
        "___ probation",
        "the of and",
        '"youth offending',
        'youth offending"',
        '"""',
        '"*"',
        "NEAR(",
        'NEAR("a" "b", 2)',
        "title:probation",
        "\x1b[31mprobation\x07",
        "\u202eprobation\r\n\t",
        '"' + "probation " * 2000,
        "probation^2 {title} AND NOT",
        "2019",
        "2019 2020",
        "2019-2020",
        "1234567890" * 4,
        "0" * 40 + " durham",
        "!?;:.,()[]{}",
        "2019!!",
        "nps " * 20,
        "hm prison and probation service " * 10,
        '"national probation service',
        "moj's crcs' hmip\u2019s",
    ],
)
def test_any_query_gets_a_clear_answer_never_an_error(client, query):
    PublishedPostFactory(title="Probation in Bristol")
    html = results(client, query)
    # One of the page's four answers, not just its search box.
    answers = re.findall(
        r"\d+ results? for “|\d+ results or more for “|Nothing found for “"
        r"|Type a word to search for\.|is too common to search for\.",
        html,
    )
    assert len(answers) == 1, html[html.index("<h1>") :]


def test_a_quoted_phrase_finds_the_words_together_not_apart(client):
    PublishedPostFactory(title="Youth offending teams in Kent", body="Staffing.")
    PublishedPostFactory(
        title="Offending behaviour programmes", body="Youth services were cut."
    )
    assert result_titles(client, '"youth offending"') == [
        "Youth offending teams in Kent"
    ]
    assert len(result_titles(client, "youth offending")) == 2


@pytest.mark.parametrize(
    "query",
    [
        "\u201cunpaid work\u201d",  # “…”: what a phone types for "…"
        "\u2018unpaid work\u2019",  # single typographic quotes
        "\u201eunpaid work\u201c",  # „…“
        "\u00abunpaid work\u00bb",  # «…»
        "\u00ab unpaid work \u00bb",
        "\u201cunpaid work",  # left open, as a straight quote may be
        "\u2018unpaid work\u2019 kent",
        "\u2018CRC\u2019s unpaid work\u2019",  # an apostrophe inside
    ],
)
def test_typographic_quotes_are_a_phrase_as_straight_ones_are(client, query):
    # A reader on a phone typing "unpaid work" in quotes sends “unpaid work”,
    # which was searched word by word: both posts came back.
    PublishedPostFactory(title="The CRC\u2019s unpaid work in Kent", body="Staffing.")
    PublishedPostFactory(title="Work in Kent", body="Unpaid fines rose.")
    assert result_titles(client, query) == ["The CRC\u2019s unpaid work in Kent"]


@pytest.mark.parametrize("query", ["\u2018unpaid fines", "\u2018unpaid\u2019s fines"])
def test_a_single_quote_never_closed_is_an_apostrophe_not_a_phrase(client, query):
    # Phones type an opening single quote for an apostrophe at the start of a
    # word too ("\u201890s"): alone, it does not make the rest a phrase.
    PublishedPostFactory(title="Unpaid work in Kent", body="Fines rose.")
    assert result_titles(client, query) == ["Unpaid work in Kent"]


def test_a_phrase_and_a_word_must_both_match(client):
    PublishedPostFactory(title="Youth offending in Kent")
    PublishedPostFactory(title="Youth offending in Essex")
    assert result_titles(client, '"youth offending" essex') == [
        "Youth offending in Essex"
    ]


def test_an_empty_query_asks_for_a_word(client):
    for query in ["", "  ", '""', "!!", "-"]:
        assert "Type a word to search for" in results(client, query), query


def test_the_query_is_shown_as_searched_lower_case_with_single_spaces(client):
    PublishedPostFactory(title="Youth offending in Kent")
    html = results(client, '  "Youth\t  Offending"  KENT ')
    assert 'value="&quot;youth offending&quot; kent"' in html
    assert "Youth offending in Kent" in html


def test_the_search_page_without_a_query_shows_only_the_form(client):
    html = client.get("/search/").content.decode()
    assert 'name="q"' in html
    assert "Type a word" not in html and "Nothing found" not in html


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's FTS5 index has no stop words"
)
def test_a_query_of_only_common_words_says_they_are_too_common(client):
    PublishedPostFactory(title="The state of probation and the courts")
    html = results(client, "the of and")
    assert "too common to search for" in html
    assert "Nothing found" not in html


def test_a_script_in_a_post_is_never_rendered_unescaped_in_a_snippet(client):
    PublishedPostFactory(
        title="Code",
        body="Bedford wrote `<script>alert(1)</script>` in a form.\n\n"
        "    <script>alert(2)</script> Bedford",
    )
    html = results(client, "Bedford")
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    assert "<mark>Bedford</mark>" in snippet
    # As text (SQLite) or left out (PostgreSQL's parser drops tags): never as markup.
    assert "<script" not in snippet
    assert set(re.findall(r"</?(\w+)", snippet)) == {"mark"}


def test_snippets_show_the_text_a_reader_sees_not_markdown(client):
    PublishedPostFactory(
        title="Markdown",
        excerpt="",
        body="## Findings\n\n**Bedford** was [rated](https://example.org/r) *Good*.",
    )
    html = results(client, "Bedford")
    snippet = html.split('class="snippet">', 1)[1].split("</p>", 1)[0]
    assert "<mark>Bedford</mark> was rated Good" in snippet
    for markdown in ["##", "**", "](", "https://"]:
        assert markdown not in snippet


def test_a_post_is_found_by_the_words_its_page_shows_and_no_others(client):
    # On PostgreSQL the body was indexed as the author typed it: a note to the
    # editor in an HTML comment, which no page shows, found the post, and a
    # sentence quoted as the page reads it, across a link, did not.
    PublishedPostFactory(
        title="Kent",
        body="Inspectors found the [Kent CRC](https://example.gov.uk/hmip/kent.pdf) "
        "was failing.\n\n<!-- Not to publish: the chief officer resigned. -->",
    )
    assert result_titles(client, '"Kent CRC was failing"') == ["Kent"]
    for hidden in ["resigned", "chief officer", "hmip", "pdf"]:
        assert result_titles(client, hidden) == [], hidden


@pytest.mark.parametrize(
    "body",
    [
        "<table><tr><td>Kent</td><td>Surrey</td></tr></table>",
        "| Areas |\n|---|\n| Kent<br>Surrey |",
        "<p>Kent was failing.</p><p>Surrey was not.</p>",
        "<ul><li>Kent</li><li>Surrey</li></ul>",
    ],
)
def test_words_apart_on_the_page_are_found_apart(client, body):
    # The author's raw HTML puts two cells, paragraphs or lines side by side: the
    # post's stored text ran them together ("KentSurrey", or "failing.Surrey",
    # which PostgreSQL reads as a web address), and no search for Surrey found it.
    PublishedPostFactory(title="Areas", excerpt="", body=body)
    assert result_titles(client, "surrey") == ["Areas"]
    assert "<mark>Surrey</mark>" in results(client, "surrey")


def test_a_match_deep_in_a_long_post_is_highlighted(client):
    filler = " ".join(f"word{n}" for n in range(1500))
    PublishedPostFactory(title="Long", body=f"{filler}\n\nThe Quillworthy approach.")
    html = results(client, "quillworthy")
    assert "<mark>Quillworthy</mark>" in html


@pytest.mark.parametrize(
    ("query", "written"),
    [("NPS", "National Probation Service"), ("National Probation Service", "NPS")],
)
def test_a_name_written_in_another_form_deep_in_a_long_post_is_highlighted(
    client, query, written
):
    """On PostgreSQL the snippet's window was found by the form typed: a long post
    with only the other form, deep down, showed its start, nothing highlighted."""
    filler = " ".join(f"word{n}" for n in range(1500))
    PublishedPostFactory(title="Long", body=f"{filler}\n\nThe {written} split.")
    snippet = results(client, query).split('class="snippet">')[1].split("</p>")[0]
    assert "<mark>" in snippet
    assert f"The {written} split" in re.sub("</?mark>", "", snippet)


def test_paging_through_all_results_shows_each_post_exactly_once(client):
    # Equal content and publication time: only the id tells them apart.
    published_at = timezone.now() - timedelta(hours=1)
    posts = [
        PublishedPostFactory(
            title="Luton inspection", body="Luton.", published_at=published_at
        )
        for _ in range(23)
    ]
    seen = []
    for page in ["1", "2", "3"]:
        html = client.get("/search/", {"q": "Luton", "page": page}).content.decode()
        seen += re.findall(r'<h2><a href="/posts/([^/]+)/">', html)
    assert sorted(seen) == sorted(post.slug for post in posts)
    assert len(seen) == len(set(seen)) == 23


def test_drafts_do_not_take_the_places_of_published_posts_under_the_cap(
    client, monkeypatch
):
    """On SQLite the newest matches were capped first and drafts left out after:
    drafts matching the words took the cap's places, and the count said fewer
    posts, or none, than were there."""
    monkeypatch.setattr("posts.search.MAX_RESULTS", 3)
    for n in range(2):
        PublishedPostFactory(title=f"Luton inspection {n}")
    for n in range(3):
        PostFactory(title=f"Luton draft {n}")

    html = results(client, "Luton")

    assert "2 results for “luton”" in html
    assert sorted(result_titles(client, "Luton")) == [
        "Luton inspection 0",
        "Luton inspection 1",
    ]


def test_a_results_page_makes_as_many_queries_with_ten_results_as_with_one(
    client, django_assert_num_queries
):
    PublishedPostFactory(title="Swindon once")
    with CaptureQueriesContext(connection) as one:
        html = results(client, "Swindon")
    assert html.count("<h2>") == 1
    for n in range(12):
        PublishedPostFactory(title=f"Swindon again {n}")
    with django_assert_num_queries(len(one)):
        html = results(client, "Swindon")
    assert html.count("<h2>") == 10


def test_results_paginate(client):
    for n in range(12):
        PublishedPostFactory(title=f"Luton inspection {n}")
    first = results(client, "Luton")
    assert "Page 1 of 2" in first
    assert len(result_titles(client, "Luton")) == 10
    second = client.get("/search/", {"q": "Luton", "page": "2"}).content.decode()
    assert "Page 2 of 2" in second
    assert second.count("<h2>") == 2
    # The title is what a screen reader says first, and what the history lists.
    assert "(page 2) — On Probation</title>" in second


def test_search_is_answered_from_the_full_text_index():
    PublishedPostFactory(title="Suffolk")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            plan = Post.objects.filter(
                search_vector=SearchQuery("suffolk", config=CONFIG)
            ).explain()
            assert "post_search_idx" in plan
        else:
            cursor.execute(
                "EXPLAIN QUERY PLAN SELECT rowid FROM posts_search "
                "WHERE posts_search MATCH 'suffolk'"
            )
            plan = " ".join(str(row) for row in cursor.fetchall())
            assert "VIRTUAL TABLE INDEX" in plan


PREVIOUS_POSTS_MIGRATION = ("posts", "0006_reject_control_characters")


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's FTS5 index folds accents"
)
def test_a_post_indexed_before_accents_were_folded_is_found_without_them(client):
    # Given a post indexed as the previous posts migration left it, with "Môn" stored
    # as written, so a search for "mon" misses it,
    post = PublishedPostFactory(title="Ynys Môn probation office")
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()  # every app's: see test_comments
    # The post's deferred foreign-key checks, run now: PostgreSQL alters no table
    # with them pending in the test's transaction (later migrations drop columns).
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    executor.migrate([PREVIOUS_POSTS_MIGRATION])
    old_query = SearchQuery("mon", config="english")
    assert not Post.objects.filter(pk=post.pk, search_vector=old_query).exists()
    # when the database is migrated forward,
    executor.loader.build_graph()
    executor.migrate(latest)
    # then a search without the accent finds it.
    assert result_titles(client, "mon") == ["Ynys Môn probation office"]


def test_search_covers_key_findings_the_standards_rated_and_the_byline(client):
    # What the post shows beside its text, a reader searches by too.
    post = PublishedPostFactory(
        title="A report", author=UserFactory(first_name="Hester", last_name="Quaile")
    )
    inspection = InspectionFactory(
        post=post,
        key_findings="Too few staff were trained in domestic abuse.\n"
        "Sentence plans were written late.",
    )
    StandardRating.objects.create(
        inspection=inspection, standard="Unpaid work", rating="inadequate"
    )
    index_post(post)
    for words in ['"domestic abuse"', "sentence plans", "unpaid work", "Quaile"]:
        assert result_titles(client, words) == ["A report"], words


def test_an_authors_username_is_searched_when_the_byline_shows_it(client):
    author = UserFactory(username="hquaile")
    PublishedPostFactory(title="A report", author=author)
    assert result_titles(client, "hquaile") == ["A report"]


def test_posts_indexed_before_findings_were_searched_are_found_by_them(client):
    # Given a post whose search entry was written before it held the findings,
    # the standards rated and the byline (as every post's was),
    post = PublishedPostFactory(
        title="A report", author=UserFactory(first_name="Hester", last_name="Quaile")
    )
    inspection = InspectionFactory(post=post, key_findings="Caseloads were vast.")
    StandardRating.objects.create(
        inspection=inspection, standard="Unpaid work", rating="good"
    )
    Post.objects.filter(pk=post.pk).update(search_facts=inspection.title)
    index_posts(Post.objects.filter(pk=post.pk))
    assert ranked_post_ids(SearchQueryText.parse("vast")) == []
    # when the posts migration that re-indexes them runs,
    migration = import_module("posts.migrations.0008_search_findings_standards_byline")
    state = MigrationLoader(connection).project_state(
        ("posts", "0008_search_findings_standards_byline")
    )
    migration.reindex(state.apps, connection.schema_editor())
    # then a search finds it by each.
    for words in ["vast", "unpaid work", "Quaile"]:
        assert result_titles(client, words) == ["A report"], words


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's FTS5 index reads hyphens"
)
def test_posts_indexed_before_hyphens_were_read_are_found_by_the_year(client):
    # Given a post whose search entry was written as the previous posts migration
    # wrote it, "2022-23" stored as 2022 and -23,
    post = PublishedPostFactory(title="Caseloads in 2022-23", excerpt="A report.")
    previous = import_module("posts.migrations.0008_search_findings_standards_byline")
    Post.objects.filter(pk=post.pk).update(
        search_vector=SearchVector(previous._words("title"), config=CONFIG)
    )
    assert ranked_post_ids(SearchQueryText.parse("2022-23")) == []
    # when the posts migration that re-indexes them runs,
    migration = import_module("posts.migrations.0010_search_words_across_hyphens")
    state = MigrationLoader(connection).project_state(
        ("posts", "0010_search_words_across_hyphens")
    )
    migration.reindex(state.apps, connection.schema_editor())
    # then a search for the year finds it.
    assert result_titles(client, "2022-23") == ["Caseloads in 2022-23"]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's FTS5 index holds the text"
)
def test_posts_indexed_from_their_markdown_are_found_by_their_pages_words(client):
    # Given a post whose search entry was written as the previous posts migration
    # wrote it, from the body as the author typed it,
    post = PublishedPostFactory(
        title="Kent",
        body="The [Kent CRC](https://example.gov.uk/kent.pdf) was failing.\n\n"
        "<!-- Not to publish: the chief officer resigned. -->",
    )
    previous = import_module("posts.migrations.0010_search_words_across_hyphens")
    Post.objects.filter(pk=post.pk).update(
        search_vector=SearchVector(previous._words("body"), config=CONFIG)
    )
    assert ranked_post_ids(SearchQueryText.parse("resigned")) == [post.pk]
    # when the posts migration that re-indexes them runs,
    migration = import_module("posts.migrations.0019_search_the_words_pages_show")
    state = MigrationLoader(connection).project_state(
        ("posts", "0019_search_the_words_pages_show")
    )
    migration.reindex(state.apps, connection.schema_editor())
    # then it is found by the words its page shows, and by those alone.
    assert result_titles(client, '"Kent CRC was failing"') == ["Kent"]
    assert ranked_post_ids(SearchQueryText.parse("resigned")) == []


def test_posts_with_raw_html_indexed_before_are_found_by_each_word(client):
    # Given a post whose stored text was written as plain_text wrote it before,
    # its raw HTML's cells run together,
    post = PublishedPostFactory(
        title="Areas", body="<table><tr><td>Kent</td><td>Surrey</td></tr></table>"
    )
    Post.objects.filter(pk=post.pk).update(search_text="KentSurrey")
    index_posts(Post.objects.filter(pk=post.pk))
    assert ranked_post_ids(SearchQueryText.parse("surrey")) == []
    # when the posts migration that writes it again runs,
    migration = import_module("posts.migrations.0024_search_words_apart_in_raw_html")
    state = MigrationLoader(connection).project_state(
        ("posts", "0024_search_words_apart_in_raw_html")
    )
    migration.search_text_again(state.apps, connection.schema_editor())
    # then a search for either word finds it.
    assert result_titles(client, "surrey") == ["Areas"]
    assert result_titles(client, "kent") == ["Areas"]


# Invisible characters that Word and PDFs leave inside a word: the soft hyphen
# (Word's optional hyphen), the zero-width space, the word joiner, the byte order
# mark (a zero-width no-break space).
INVISIBLE_IN_WORDS = ["\u00ad", "\u200b", "\u2060", "\ufeff"]


@pytest.mark.parametrize("invisible", INVISIBLE_IN_WORDS)
@pytest.mark.parametrize("where", ["title", "excerpt", "body", "key_findings"])
def test_a_word_with_an_invisible_break_pasted_in_it_is_found_whole(
    client, where, invisible
):
    # Pasted from an inspection report, "rehabil\u00aditation" was "rehabil" and
    # "itation" on both databases: a search for rehabilitation never found it.
    pasted = f"Rehabil{invisible}itation services were poor."
    if where == "key_findings":
        post = PublishedPostFactory(title="Derby")
        InspectionFactory(post=post, key_findings=pasted)
    else:
        fields = {"title": "Derby", "excerpt": "A report.", "body": "Caseloads."}
        post = PublishedPostFactory(**{**fields, where: pasted})
    assert result_titles(client, "rehabilitation services") == [post.title]


@pytest.mark.parametrize("invisible", INVISIBLE_IN_WORDS)
def test_a_query_with_an_invisible_break_in_a_word_finds_it_whole(client, invisible):
    # Copied from a report into the search box, the word was two, found nowhere.
    PublishedPostFactory(title="Derby", body="Rehabilitation services were poor.")
    html = results(client, f"rehabil{invisible}itation")
    assert result_titles(client, f"rehabil{invisible}itation") == ["Derby"]
    assert "<mark>Rehabilitation</mark>" in html
    assert invisible not in html


def test_a_word_with_a_soft_hyphen_in_it_is_highlighted_whole(client):
    PublishedPostFactory(
        title="Derby", excerpt="", body="Rehabil\u00aditation services were poor."
    )
    assert "<mark>Rehabilitation</mark>" in results(client, "rehabilitation")


def test_posts_indexed_with_invisible_breaks_in_their_words_are_found_whole(client):
    # Given a post whose search entry was written with the soft hyphen pasted
    # into its title, "rehabil" and "itation",
    post = PublishedPostFactory(
        title="Rehabil\u00aditation services", excerpt="", body="Caseloads."
    )
    # and one without any, whose entry is left as it is (here, emptied),
    other = PublishedPostFactory(title="Derby", excerpt="", body="Caseloads.")
    if connection.vendor == "postgresql":
        Post.objects.filter(pk=post.pk).update(
            search_vector=SearchVector("title", config=CONFIG)
        )
        Post.objects.filter(pk=other.pk).update(search_vector=None)
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE posts_search SET title = %s WHERE rowid = %s",
                [post.title, post.pk],
            )
            cursor.execute("DELETE FROM posts_search WHERE rowid = %s", [other.pk])
    assert ranked_post_ids(SearchQueryText.parse("rehabilitation")) == []
    # when the posts migration that re-indexes those holding one runs,
    migration = import_module(
        "posts.migrations.0026_search_words_whole_across_invisible_breaks"
    )
    state = MigrationLoader(connection).project_state(
        ("posts", "0026_search_words_whole_across_invisible_breaks")
    )
    migration.reindex(state.apps, connection.schema_editor())
    # then a search for the word finds it, and the others are not re-indexed.
    assert result_titles(client, "rehabilitation") == [post.title]
    assert result_titles(client, "derby") == []


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's FTS5 index reads full stops"
)
def test_posts_indexed_with_a_full_stop_between_words_are_found_by_each(client):
    # Given a post whose search entry was written as the previous posts migration
    # wrote it, "St.Helens" one host name,
    post = PublishedPostFactory(title="St.Helens", excerpt="", body="Caseloads.")
    previous = import_module(
        "posts.migrations.0026_search_words_whole_across_invisible_breaks"
    )
    Post.objects.filter(pk=post.pk).update(
        search_vector=SearchVector(
            previous._words(previous._indexed("title")), config=CONFIG
        )
    )
    # and one without a full stop, whose entry is left as it is (here, emptied),
    other = PublishedPostFactory(title="Derby", excerpt="", body="Caseloads.")
    Post.objects.filter(pk=other.pk).update(search_vector=None)
    assert ranked_post_ids(SearchQueryText.parse("helens")) == []
    # when the posts migration that re-indexes those with one runs,
    migration = import_module("posts.migrations.0027_search_words_apart_at_a_full_stop")
    state = MigrationLoader(connection).project_state(
        ("posts", "0027_search_words_apart_at_a_full_stop")
    )
    migration.reindex(state.apps, connection.schema_editor())
    # then a search for either word finds it, and the others are not re-indexed.
    assert result_titles(client, "helens") == ["St.Helens"]
    assert result_titles(client, "derby") == []


def test_a_post_is_found_by_its_categories_tags_corrections_and_inspection_type(
    client, admin_client
):
    # The post's page shows them, but no search for them found it.
    post = PublishedPostFactory(title="Derby", excerpt="", body="Caseloads.")
    category = CategoryFactory(name="Resettlement")
    tag = TagFactory(name="Polygraph testing")
    response = admin_client.post(
        f"/admin/posts/post/{post.pk}/change/",
        admin_post_form_of(
            post,
            categories=[category.pk],
            tags=[tag.pk],
            **{
                "updates-TOTAL_FORMS": "1",
                "updates-0-kind": "correction",
                "updates-0-made_on": "2026-11-24",
                "updates-0-wrong": "Led by Ms Quennell.",
                "updates-0-right": "Led by Ms Ashdown.",
                "updates-0-note": "The council replied in Marchmont Hall.",
            },
        ),
    )
    assert response.status_code == 302, response.text[-2000:]
    InspectionFactory(post=post, type="thematic")
    for words in ["resettlement", "polygraph", "ashdown", "marchmont", "thematic"]:
        assert result_titles(client, words) == ["Derby"], words
    # Not by what the correction says was wrong: the post no longer says it.
    assert result_titles(client, "quennell") == []


def filed_under(what: str, **fields):
    """A new category or tag (what), with a published post "Derby" under it."""
    post = PublishedPostFactory(title="Derby", excerpt="", body="Caseloads.")
    if what == "category":
        listed = CategoryFactory(**fields)
        post.categories.add(listed)
    else:
        listed = TagFactory(**fields)
        post.tags.add(listed)
    index_post(post)
    return listed


@pytest.mark.parametrize("what", ["category", "tag"])
def test_a_category_or_tag_renamed_at_the_desk_finds_its_posts_by_the_new_name(
    client, admin_client, what
):
    listed = filed_under(what, name="Resettlement", slug="resettlement")

    response = admin_client.post(
        f"/admin/posts/{what}/{listed.pk}/change/",
        {"name": "Through the gate", "slug": "resettlement"},
    )

    assert response.status_code == 302, response.text[-2000:]
    assert result_titles(client, "gate") == ["Derby"]
    assert result_titles(client, "resettlement") == []


@pytest.mark.parametrize("what", ["category", "tag"])
def test_a_category_or_tag_deleted_at_the_desk_no_longer_finds_its_posts(
    client, admin_client, what
):
    listed = filed_under(what, name="Resettlement")
    assert result_titles(client, "resettlement") == ["Derby"]

    response = admin_client.post(
        f"/admin/posts/{what}/{listed.pk}/delete/", {"post": "yes"}
    )

    assert response.status_code == 302, response.text[-2000:]
    assert result_titles(client, "resettlement") == []


def test_posts_indexed_before_categories_tags_and_corrections_are_found_by_them(
    client,
):
    # Given a post whose search entry was written before it held its categories,
    # tags, corrections and its inspection's type,
    post = PublishedPostFactory(title="Derby", excerpt="", body="Caseloads.")
    post.categories.add(CategoryFactory(name="Resettlement"))
    post.tags.add(TagFactory(name="Polygraph testing"))
    post.updates.create(kind="correction", wrong="Quennell", right="Ashdown")
    InspectionFactory(post=post, type="thematic")
    Post.objects.filter(pk=post.pk).update(search_facts="")
    index_posts(Post.objects.filter(pk=post.pk))
    assert ranked_post_ids(SearchQueryText.parse("resettlement")) == []
    # when the posts migration that writes them again runs,
    name = "0028_search_categories_tags_corrections_and_inspection_type"
    migration = import_module(f"posts.migrations.{name}")
    state = MigrationLoader(connection).project_state(("posts", name))
    migration.reindex(state.apps, connection.schema_editor())
    # then a search finds it by each.
    for words in ["resettlement", "polygraph", "ashdown", "thematic"]:
        assert result_titles(client, words) == ["Derby"], words


def reports_of_two_areas():
    """Durham's report of 2019-20, Kent's of 2019, Durham's of 2021 (a post of
    2022) and a post of 2019 on no inspection."""
    durham = AreaFactory(name="Durham")
    for title, published, area, fieldwork, report in [
        ("Durham's first", (2020, 3, 2), durham, (2019, 11, 4), (2020, 2, 20)),
        ("Kent's", (2019, 6, 3), AreaFactory(name="Kent"), (2019, 1, 7), (2019, 5, 9)),
        ("Durham's second", (2022, 1, 10), durham, (2021, 10, 4), (2021, 12, 6)),
    ]:
        post = PublishedPostFactory(
            title=title, published_at=datetime(*published, 9, tzinfo=UTC)
        )
        InspectionFactory(
            post=post,
            area=area,
            fieldwork_start=date(*fieldwork),
            fieldwork_end=date(*fieldwork) + timedelta(days=11),
            published_on=date(*report),
        )
    PublishedPostFactory(
        title="A comment", published_at=datetime(2019, 9, 2, 9, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("2019", ["A comment", "Durham&#x27;s first", "Kent&#x27;s"]),
        ("Durham 2019", ["Durham&#x27;s first"]),
        ("2020 durham", ["Durham&#x27;s first"]),
        ("2021 inspection", ["Durham&#x27;s second"]),
        ("2022", ["Durham&#x27;s second"]),
        ("Kent 2021", []),
    ],
)
def test_a_year_finds_the_inspections_and_posts_of_that_year(client, query, titles):
    # Readers look reports up by area and year: "Durham 2019" found nothing, as
    # no date of a post or of its inspection was searched.
    reports_of_two_areas()
    assert sorted(result_titles(client, query)) == titles


def test_posts_indexed_before_years_were_searched_are_found_by_them(client):
    # Given posts whose search entries were written before they held the years,
    reports_of_two_areas()
    for post in Post.objects.all():
        lines = post.search_facts.split("\n")
        facts = "\n".join(line for line in lines if not line.isdigit())
        Post.objects.filter(pk=post.pk).update(search_facts=facts)
    index_posts(Post.objects.all())
    assert ranked_post_ids(SearchQueryText.parse("2019")) == []
    # when the posts migration that writes them again runs,
    name = "0034_search_the_years_of_posts_and_their_inspections"
    migration = import_module(f"posts.migrations.{name}")
    state = MigrationLoader(connection).project_state(("posts", name))
    migration.reindex(state.apps, connection.schema_editor())
    # then a search finds them by their years,
    assert result_titles(client, "durham 2019") == ["Durham&#x27;s first"]
    # and their facts are as their next save writes them.
    stored = dict(Post.objects.values_list("pk", "search_facts"))
    for post in Post.objects.all():
        index_post(post)
    assert dict(Post.objects.values_list("pk", "search_facts")) == stored


@pytest.mark.parametrize(
    ("forms", "others"),
    [
        (["NPS", "National Probation Service"], []),
        (
            ["CRC", "CRCs", "Community Rehabilitation Company"],
            ["Community Rehabilitation Companies"],
        ),
        (["HMPPS", "HM Prison and Probation Service"], []),
        (["HMIP", "HM Inspectorate of Probation"], ["HMI Probation"]),
        (["MoJ", "Ministry of Justice"], []),
    ],
)
def test_an_abbreviation_and_the_name_it_stands_for_find_each_other(
    client, forms, others
):
    # The field writes "NPS", posts often spell it out, and the reverse: a
    # search for one form found only the posts that wrote that one.
    titles = [f"Post {n}" for n, _ in enumerate([*forms, *others])]
    for title, form in zip(titles, [*forms, *others], strict=True):
        PublishedPostFactory(title=title, excerpt="", body=f"The {form}'s view.")
    PublishedPostFactory(title="Neither", excerpt="", body="The council's view.")
    for query in [*forms, f'"{forms[-1]}"', f"{forms[-1]}'s"]:
        assert sorted(result_titles(client, query)) == titles, query
        snippet = results(client, query).split('class="snippet">')[1]
        assert "<mark>" in snippet.split("</p>", 1)[0], query


def test_an_abbreviation_and_a_year_find_the_posts_that_have_both(client):
    in_2019 = datetime(2019, 6, 3, 9, tzinfo=UTC)
    PublishedPostFactory(
        title="Old", body="The National Probation Service.", published_at=in_2019
    )
    PublishedPostFactory(title="New", body="The National Probation Service.")
    PublishedPostFactory(title="Other", published_at=in_2019)
    assert result_titles(client, "NPS 2019") == ["Old"]
    assert result_titles(client, "2019 national probation service") == ["Old"]


def test_a_names_words_apart_are_not_the_name(client):
    # "National Probation Service" is found word for word, as "NPS" is one
    # name: not by a post with the words apart.
    PublishedPostFactory(
        title="Standards", excerpt="", body="National standards for the service."
    )
    assert result_titles(client, "nps") == []
    assert result_titles(client, "national probation service") == []


def test_a_quoted_phrase_holding_a_name_is_found_as_typed(client):
    PublishedPostFactory(title="Short", excerpt="", body="NPS staff left.")
    PublishedPostFactory(
        title="Long", excerpt="", body="National Probation Service staff left."
    )
    assert result_titles(client, '"nps staff"') == ["Short"]
    assert sorted(result_titles(client, "nps staff")) == ["Long", "Short"]


def test_a_name_and_a_year_cost_a_page_the_queries_of_one_word(client):
    PublishedPostFactory(title="Swindon", body="The National Probation Service.")
    with CaptureQueriesContext(connection) as one_word:
        results(client, "swindon")
    with CaptureQueriesContext(connection) as name_and_year:
        html = results(client, f"NPS {timezone.now().year}")
    assert result_titles(client, f"NPS {timezone.now().year}") == ["Swindon"]
    assert "1 result for" in html
    assert len(name_and_year) == len(one_word)
