"""A post's body as the author writes it in Markdown, and as readers get it: on the
post's page and in both parts of its email."""

import re

import pytest

from newsletter.emails import PostEmail
from newsletter.models import Link
from posts.markdown import render_markdown
from posts.models import Post
from posts.search import index_posts
from posts.services import post_publish

from .factories import PostFactory, PublishedPostFactory
from .migrating import migrate_again_after

pytestmark = pytest.mark.django_db


def everywhere(client, body: str) -> dict[str, str]:
    """The body's post as its page, its email's HTML and its email's text show it,
    each with its lines joined (the text part wraps at 72 characters)."""
    post = PublishedPostFactory(body=body, email_format=Post.EmailFormat.FULL)
    email = PostEmail(post).rendered
    shown = {
        "page": client.get(post.get_absolute_url()).text,
        "email": email.html,
        "text": email.text,
    }
    return {where: " ".join(text.split()) for where, text in shown.items()}


def test_the_authors_words_reach_readers_as_written_but_for_dashes_and_quotes(client):
    """markdown-it's typographer made "(c)" ©, "(r)" ® and "(tm)" ™: an inspection's
    recommendation (c), or section 3(c) of an Act, read as a copyright sign. It
    also made "+-" ±, ".." an ellipsis, and cut "????", "!!!!" and ",," short."""
    shown = everywhere(
        client,
        "Recommendations (a), (b) and (c) were met, under section 3(c); (r) and "
        "(tm) too. Caseloads of 50 +-5. Which ones????\n\n"
        'Staffing -- the "core" problem --- was the officers\' ... and more.',
    )
    for where, text in shown.items():
        assert "(b) and (c) were met, under section 3(c); (r) and (tm) too" in text, (
            where
        )
        assert "50 +-5. Which ones????" in text, where
        assert "©" not in text and "®" not in text and "™" not in text, where
        # What a writer means by these still becomes the sign they mean.
        assert (
            "Staffing \u2013 the \u201ccore\u201d problem \u2014 was the "
            "officers\u2019 \u2026 and more"
        ) in text, where


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_keep_their_authors_words_after_the_deploy(client):
    post = PublishedPostFactory(body="Recommendation (c) was met.")
    Post.objects.filter(pk=post.pk).update(
        body_html="<p>Recommendation © was met.</p>"  # as it was stored
    )
    migrate_again_after("posts", "0022_uploads_under_a_random_folder")
    assert "Recommendation (c) was met." in client.get(post.get_absolute_url()).text


def test_a_body_written_from_a_top_level_heading_keeps_its_headings(client):
    """The page's one h1 is the post's title, and the sanitiser dropped a body's:
    "# Findings", the first heading an author writes in Markdown (or pastes from
    elsewhere), reached readers as a line of bare text run into the next."""
    post = PublishedPostFactory(
        body="# Findings\n\nCaseloads were high.\n\n## Leadership\n\nIt was clear.",
        email_format=Post.EmailFormat.FULL,
    )
    email = PostEmail(post).rendered
    for html in (client.get(post.get_absolute_url()).text, email.html):
        # The email's headings carry the layout's style.
        assert re.search(r"<h2\b[^>]*>Findings</h2>", html)
        assert re.search(r"<h3\b[^>]*>Leadership</h3>", html)
    assert "Findings\n========\n\nCaseloads were high." in email.text
    assert "Leadership\n----------\n\nIt was clear." in email.text


def test_the_text_part_keeps_a_list_items_paragraphs_and_lists_inside_it():
    """A second paragraph of a list item, and a list inside it, began at the
    left margin (or two spaces in, under "1. "), so the text part read them as
    the list's end or a list of their own."""
    post = PublishedPostFactory(
        body="1. Staffing\n\n"
        "   Officers carried caseloads of 60 or more, well above the 50 the "
        "service aims for.\n\n"
        "   - Kent\n   - Surrey\n"
        "2. Leadership\n",
        email_format=Post.EmailFormat.FULL,
    )
    assert (
        "1. Staffing\n\n"
        "   Officers carried caseloads of 60 or more, well above the 50 the\n"
        "   service aims for.\n\n"
        "   - Kent\n"
        "   - Surrey\n\n"
        "2. Leadership"
    ) in PostEmail(post).rendered.text


REPORT = "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/kent/"
PRISON_SERVICE = "www.gov.uk/government/organisations/hm-prison-and-probation-service"
WRITTEN_OUT = (
    f"The report: {REPORT}. The service (at {PRISON_SERVICE}) answered; "
    "probation.gov did not."
)


def test_a_web_address_written_out_is_a_link_on_the_page_and_in_the_email(client):
    """An address an author pastes into a sentence reached readers as bare text,
    on the page and in the email, for them to copy. Not a name like
    "probation.gov" mid-sentence, nor the full stop or bracket after one."""
    post = PublishedPostFactory(body=WRITTEN_OUT, email_format=Post.EmailFormat.FULL)
    email = PostEmail(post).rendered
    for html in (client.get(post.get_absolute_url()).text, email.html):
        assert re.search(rf'<a href="{re.escape(REPORT)}"[^>]*>{REPORT}</a>\.', html)
        assert re.search(
            rf'<a href="http://{PRISON_SERVICE}"[^>]*>{PRISON_SERVICE}</a>\)', html
        )
        assert "; probation.gov did not." in html
    # The text part shows each address once, where it was written, delimited.
    text = " ".join(email.text.split())
    assert f"The report: <{REPORT}>. The service (at <http://{PRISON_SERVICE}>)" in (
        text
    )
    assert text.count(REPORT) == 1 and text.count(PRISON_SERVICE) == 1


def test_a_web_address_written_out_is_counted_in_a_mailing_like_any_link(
    django_capture_on_commit_callbacks,
):
    post = PostFactory(body=WRITTEN_OUT, email_format=Post.EmailFormat.FULL)
    with django_capture_on_commit_callbacks(execute=False):
        post_publish(post=post)  # its mailing, not yet sent
    mailing = post.mailings.get()
    email = PostEmail(post, mailing_id=mailing.pk).rendered
    counted = set(Link.objects.filter(mailing=mailing).values_list("url", flat=True))
    assert {REPORT, f"http://{PRISON_SERVICE}"} <= counted
    assert f'href="{REPORT}"' not in email.html  # through the redirect


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_get_their_web_addresses_as_links_after_the_deploy(
    client,
):
    post = PublishedPostFactory(body=f"The report: {REPORT}.")
    Post.objects.filter(pk=post.pk).update(
        body_html=f"<p>The report: {REPORT}.</p>"  # as it was stored
    )
    migrate_again_after(
        "posts", "0028_search_categories_tags_corrections_and_inspection_type"
    )
    assert f'<a href="{REPORT}"' in client.get(post.get_absolute_url()).text


# markdown-it writes an address's href encoded (%C3%A9, %5B1%5D, Punycode) and its
# text as the author wrote it.
ENCODED = "https://www.gov.uk/guidance/café-probation-[2024]"
ENCODED_HREF = "https://www.gov.uk/guidance/caf%C3%A9-probation-%5B2024%5D"


def test_a_web_address_written_out_with_letters_its_link_encodes_is_once_in_place(
    django_capture_on_commit_callbacks,
):
    """An address holding an accented letter or a bracket reached the text part of
    a mailing as the address, then a reference [1] to itself under Links: twice,
    for the reader to wonder which to follow."""
    post = PostFactory(
        body=f"The guidance: {ENCODED}. See [the report]({REPORT}).",
        email_format=Post.EmailFormat.FULL,
    )
    with django_capture_on_commit_callbacks(execute=False):
        post_publish(post=post)
    email = PostEmail(post, mailing_id=post.mailings.get().pk).rendered
    text = " ".join(email.text.split())
    assert f"The guidance: <{ENCODED_HREF}>. See the report [1]." in text
    assert text.count("probation-") == 1
    assert f"Links: [1] {REPORT}" in text  # a link with words of its own, as ever


SECTIONS = (
    "The [findings](#findings) come first, then [the later ones](#findings-1).\n\n"
    "# Findings\n\nCaseloads were high.\n\n"
    "## Findings\n\nStill high a year on.\n\n"
    "## Officers\u2019 *caseloads*\n\nOver 50."
)


def test_a_link_to_one_of_the_posts_own_headings_goes_to_it_on_the_page(client):
    """An inspection report refers to its own sections: "[Findings](#findings)"
    went nowhere, as no heading had an id. Each heading now has one from its
    words, a second "Findings" its own, under a prefix that no id of the page
    and no name a script reads can be ("comments", "location")."""
    post = PublishedPostFactory(body=SECTIONS)
    page = client.get(post.get_absolute_url()).text
    assert '<h2 id="user-content-findings">Findings</h2>' in page
    assert '<h3 id="user-content-findings-1">Findings</h3>' in page
    assert '<h3 id="user-content-officers-caseloads">' in page
    assert 'href="#user-content-findings"' in page
    assert 'href="#user-content-findings-1"' in page


def test_an_id_in_the_authors_own_html_is_kept_only_under_the_prefix(client):
    post = PublishedPostFactory(
        body='<h2 id="location">Kent</h2>\n\n<p id="content">Text</p>\n\n'
        '<a href="#location" id="comments">Up</a>'
    )
    page = client.get(post.get_absolute_url()).text
    assert '<h2 id="user-content-location">Kent</h2>' in page
    assert '<a href="#user-content-location" id="user-content-comments"' in page
    assert '<p id="content">' not in page and "<p>Text</p>" in page


def test_an_id_in_the_authors_own_html_leaves_the_headings_and_notes_theirs(client):
    """An author's <a id="fn1"> took the id of the first note, and <a id="findings">
    that of the heading "Findings": the note's [1] landed on the author's anchor.
    An id the renderer makes is the heading's or the note's; an author's id of the
    same name goes, as does an author's id written twice, and any other is kept
    under the prefix, for the author's own "#" link to it."""
    post = PublishedPostFactory(
        body='<a id="fn1">Here</a> <a id="fnref1">There</a> <a id="findings">F</a> '
        '<a id="user-content-fn1">U</a> <a id="kent">Kent</a> <a id="kent">Again</a>'
        "\n\n## Findings\n\nCited.[^a] [Back to Kent](#kent)\n\n[^a]: The source."
    )
    page = client.get(post.get_absolute_url()).text
    ids = re.findall(r'\sid="([^"]*)"', page)
    assert len(ids) == len(set(ids))
    assert '<li id="user-content-fn1">' in page
    assert 'id="user-content-fnref1"' in re.search(r"Cited\.<sup>(.*?)</sup>", page)[1]
    assert '<h2 id="user-content-findings">Findings</h2>' in page
    anchors = page.replace(' rel="noopener noreferrer"', "")
    assert "<a>Here</a> <a>There</a> <a>F</a>" in anchors
    assert '<a id="user-content-user-content-fn1">U</a>' in anchors
    assert '<a id="user-content-kent">Kent</a> <a>Again</a>' in anchors
    assert '<a href="#user-content-kent"' in page


def test_a_place_in_the_post_is_no_link_in_its_email_as_in_print(
    django_capture_on_commit_callbacks,
):
    """Each note's number and each note's way back was a counted link to the
    post's page (a post of 10 notes, 20), and the way back left the email for the
    website. The email holds the whole post, as its text part does: a section's
    name stays as words, a note's number a plain superscript, the way back goes."""
    post = PostFactory(
        body=SECTIONS + "\n\n" + NOTED, email_format=Post.EmailFormat.FULL
    )
    with django_capture_on_commit_callbacks(execute=False):
        post_publish(post=post)
    mailing = post.mailings.get()
    email = PostEmail(post, mailing_id=mailing.pk).rendered
    counted = set(Link.objects.filter(mailing=mailing).values_list("url", flat=True))
    assert not any("#" in url for url in counted)
    assert "user-content-f" not in " ".join(re.findall(r'href="[^"]*"', email.html))
    html = " ".join(email.html.split())
    assert "The findings come first, then the later ones." in html
    assert (
        "Caseloads were high.<sup>[1]</sup> Leadership was clear.<sup>[2]</sup>" in html
    )
    assert re.search(
        r"<li[^>]*>\s*<p[^>]*>HMI Probation, Kent report, 2024\.</p>", html
    )
    assert "Back to the text" not in html and "\u21a9" not in html
    # The web page keeps both ways.
    page = " ".join(post.body_html.split())
    assert 'href="#user-content-findings"' in page
    assert page.count('aria-label="Back to the text"') == 3


NOTED = (
    "Caseloads were high.[^1] Leadership was clear.[^kent] Both.[^1]\n\n"
    "[^1]: HMI Probation, Kent report, 2024.\n"
    "[^kent]: Inspectors' interviews with [the board](https://example.org/board)."
)


def test_footnotes_are_notes_at_the_end_with_a_way_back_on_the_page(client):
    """An author citing sources wrote "[^1]" and "[^1]: source", which readers
    got as they were typed."""
    post = PublishedPostFactory(body=NOTED)
    page = client.get(post.get_absolute_url()).text
    assert "[^" not in page
    assert re.search(
        r'high\.<sup><a href="#user-content-fn1" id="user-content-fnref1"[^>]*>'
        r"\[1\]</a></sup>",
        page,
    )
    assert re.search(
        r'<li id="user-content-fn1">\s*<p>HMI Probation, Kent report, 2024\. '
        r'<a href="#user-content-fnref1"',
        page,
    )
    assert '<li id="user-content-fn2">' in page
    # Cited again, a note has the same number, and a way back to each citation.
    assert re.search(r'id="user-content-fnref1:1"[^>]*>\[1\]</a>', page)
    assert 'href="#user-content-fnref1:1"' in page
    assert '<a href="https://example.org/board"' in page
    # The way back is named for a screen reader, and is no word of the post.
    assert re.search(
        r'<a href="#user-content-fnref1" aria-label="Back to the text"', page
    )
    post.refresh_from_db()
    assert post.search_text == (
        "Caseloads were high.[1] Leadership was clear.[2] Both.[1] HMI Probation, "
        "Kent report, 2024. Inspectors\u2019 interviews with the board."
    )


def test_the_notes_are_a_list_named_notes_on_the_page_and_in_the_email(client):
    """A screen reader's user met an unnamed list at the end of the post. Its name
    is no word of the post: not in the search text, nor the email's text part."""
    shown = everywhere(client, NOTED)
    for where in ("page", "email"):  # the email's with its style
        assert re.search(r'<ol aria-label="Notes"[ >]', shown[where])
    post = Post.objects.get()
    assert "Notes" not in post.search_text
    assert "Notes" not in shown["text"]


def test_a_heading_named_like_a_note_leaves_the_notes_links_to_the_note(client):
    """A heading "fn1" had the id of the first note, and "fnref1" that of where
    it is cited: the note's [1] and its way back landed on the heading."""
    post = PublishedPostFactory(
        body="## fn1\n\n## FNref1\n\n## fn1\n\nCited.[^a]\n\n[^a]: The source."
    )
    page = client.get(post.get_absolute_url()).text
    ids = re.findall(r'\sid="([^"]*)"', page)
    assert len(ids) == len(set(ids))
    assert '<li id="user-content-fn1">' in page
    assert 'id="user-content-fnref1"' in re.search(r"Cited\.<sup>(.*?)</sup>", page)[1]
    headings = re.findall(r'<h[2-6] id="user-content-([^"]*)">', page)
    assert len(headings) == 3
    assert not set(headings) & {"fn1", "fnref1"}


def test_footnotes_in_both_parts_of_the_email(client):
    shown = everywhere(client, NOTED)
    assert "[^" not in shown["email"] and "[^" not in shown["text"]
    # The text part: each note's number where it is cited, the notes at the end,
    # with no way back (an arrow) and no link to the page for either.
    text = shown["text"]
    assert (
        "Caseloads were high.[note 1] Leadership was clear.[note 2] Both.[note 1]"
    ) in text
    assert (
        "1. HMI Probation, Kent report, 2024. 2. Inspectors' interviews with the "
        "board [1]"
    ) in text.replace("\u2019", "'")
    assert "\u21a9" not in text and "user-content" not in text


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_get_their_headings_and_footnotes_after_the_deploy(
    client,
):
    sections = PublishedPostFactory(body=SECTIONS)
    noted = PublishedPostFactory(body=NOTED)
    plain = PublishedPostFactory(body="Caseloads were high.")
    Post.objects.filter(pk=sections.pk).update(  # as they were stored
        body_html="<p>Findings</p><h2>Findings</h2>"
    )
    Post.objects.filter(pk=noted.pk).update(
        body_html="<p>Caseloads were high.[^1]</p>",
        search_text="Caseloads were high.[^1]",
    )
    index_posts(Post.objects.filter(pk=noted.pk))  # its entry from that text
    assert noted.title not in client.get("/search/", {"q": "interviews"}).text
    Post.objects.filter(pk=plain.pk).update(search_text="as it was")
    migrate_again_after("posts", "0029_web_addresses_written_out_as_links")
    page = client.get(sections.get_absolute_url()).text
    assert '<h2 id="user-content-findings">Findings</h2>' in page
    assert '<li id="user-content-fn1">' in client.get(noted.get_absolute_url()).text
    # Its words as they read now are searched: the source, not "[^1]".
    noted.refresh_from_db()
    assert "[^" not in noted.search_text and "Kent report" in noted.search_text
    assert noted.title in client.get("/search/", {"q": "board"}).text
    # A post whose body renders as it did is left as it was, its search text too.
    plain.refresh_from_db()
    assert plain.search_text == "as it was"


@pytest.mark.django_db(transaction=True)
def test_posts_saved_before_get_their_notes_named_after_the_deploy(client):
    noted = PublishedPostFactory(body='<a id="fn1">Here</a>\n\n' + NOTED)
    old_html = noted.body_html.replace(' aria-label="Notes"', "").replace(
        "<a>Here</a>", '<a id="user-content-fn1">Here</a>'
    )
    Post.objects.filter(pk=noted.pk).update(body_html=old_html)  # as it was stored
    migrate_again_after("posts", "0030_headings_named_and_footnotes")
    page = client.get(noted.get_absolute_url()).text
    assert '<ol aria-label="Notes">' in page
    assert page.count('id="user-content-fn1"') == 1


def test_a_caret_before_a_link_leaves_it_a_link_not_an_inline_note():
    # Pandoc's inline notes ("^[…]"), on by default in the footnote plugin, made
    # "^[the report](…)" a note reading "the report" and dropped its link.
    html = render_markdown("Rated ^[the report](https://example.org/a).")
    assert '<a href="https://example.org/a"' in html
    assert "user-content-fn" not in html
