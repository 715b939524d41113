"""The author fixes where a link of an email already sent goes (a broken report
link): every later click, in every email that carried the post (as published, in
a digest, in a correction), goes to the new address; the counts are kept, and the
report says what it was, who fixed it and when."""

import csv
import io
import json
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from newsletter import delivery, engagement
from newsletter.digest_tasks import start_due_digests
from newsletter.models import Link
from posts.models import Post
from posts.services import post_publish

from .factories import PostFactory, StaffFactory, UserFactory
from .test_corrections import clock, correction, reader  # noqa: F401 (a fixture)
from .test_engagement import DATA, REPORT, click, redirects
from .test_post_report import POST_URL, link_counts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

# Where the inspectorate moved its report after the email went out.
MOVED = "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/suffolk-2026/"
KENT_URL = "http://127.0.0.1:8000/posts/kent/"


@pytest.fixture
def emails(clock, on_commit):  # noqa: F811 (the fixture imported above)
    """Suffolk's post, which links to the inspectorate's report, goes to a reader
    as published and to another in Monday's weekly digest, beside Kent's post,
    which links to the same report; then a correction to Suffolk's goes to both.
    Each email, by who got it."""
    reader("instant@example.org")
    reader("weekly@example.org", "weekly")
    clock(23, 6, 30)
    suffolk = PostFactory(
        slug="suffolk",
        title="Suffolk: caseloads too high",
        body=f"Read [the official report]({REPORT}) and [the figures]({DATA}).",
    )
    on_commit(post_publish, post=suffolk)
    kent = PostFactory(slug="kent", title="Kent", body=f"See [the report]({REPORT}).")
    on_commit(post_publish, post=kent)
    clock(23, 7, 5)
    on_commit(start_due_digests.delay)
    clock(23, 9)
    on_commit(
        delivery.mailing_create_for_correction,
        post_update=correction(suffolk),
        include_uncertain=False,
    )
    clock(23, 12)  # hours later: clicks are people's
    found = {}
    for message in mail.outbox:
        kind = message.subject.split(":")[0]
        found[kind, message.to[0].split("@")[0]] = message
    return found


@pytest.fixture
def editor():
    client = Client()
    client.force_login(StaffFactory(username="eden", role="Editor"))
    return client


def fix_url(url: str) -> str:
    """The report's "Fix where this link goes" for the link to `url`."""
    post = Post.objects.get(slug="suffolk")
    return f"/admin/newsletter/postreport/{post.pk}/link/?url={quote(url, safe='')}"


def report_url() -> str:
    post = Post.objects.get(slug="suffolk")
    return f"/admin/newsletter/postreport/{post.pk}/change/"


def follow(client, message, url: str, address: str) -> str:
    response = click(client, redirects(message)[url], address=address)
    assert response.status_code == 302
    engagement.click_counts_flush()  # beat's minute passes: the report shows it
    return response["Location"]


def links() -> list[tuple]:
    return sorted(
        Link.objects.values_list(
            "mailing_id", "url", "people", "machines", "fixed_url", "fixed_at"
        )
    )


def test_the_editor_fixes_a_broken_link_and_later_clicks_go_to_the_new_address(
    client, emails, editor
):
    suffolk = emails["Suffolk", "instant"]
    assert follow(client, suffolk, REPORT, "192.0.2.1") == REPORT

    report = editor.get(report_url()).content.decode()
    assert f'href="{fix_url(REPORT)}">Fix where this link goes' in report
    form = editor.get(fix_url(REPORT))
    assert form.status_code == 200
    assert f'value="{REPORT}"' in form.content.decode()  # the current address
    response = editor.post(fix_url(REPORT), {"target": MOVED})
    assert response.status_code == 302
    assert response["Location"] == report_url()

    assert follow(client, suffolk, REPORT, "192.0.2.2") == MOVED
    # The post's other link, and Kent's post's link to the same report, stay.
    assert follow(client, suffolk, DATA, "192.0.2.3") == DATA
    assert follow(client, emails["Kent", "instant"], REPORT, "192.0.2.4") == REPORT

    report = editor.get(report_url())
    counts = link_counts(report.context["report"])
    assert counts[REPORT] == (2, 0)  # one click before the fix, one after: one row
    assert counts[DATA] == (1, 0)
    page = report.content.decode()
    assert MOVED in page
    assert f"fixed on 23 November 2026 by eden (was {REPORT})" in page
    fixed = Link.objects.get(mailing__post__slug="suffolk", url=REPORT)
    assert (fixed.fixed_url, fixed.fixed_by.username) == (MOVED, "eden")


def test_fixing_the_posts_own_address_reaches_its_digest_and_correction_too(
    client, emails, editor
):
    digest = emails["Your weekly digest", "weekly"]
    assert follow(client, digest, POST_URL, "192.0.2.1") == POST_URL
    moved = "https://archive.example.org/posts/suffolk/"

    response = editor.post(fix_url(POST_URL), {"target": moved})
    assert response.status_code == 302

    addresses = iter(f"192.0.2.{n}" for n in range(10, 20))
    for message in (
        emails["Suffolk", "instant"],
        digest,
        emails["Correction", "instant"],
        emails["Correction", "weekly"],
    ):
        assert follow(client, message, POST_URL, next(addresses)) == moved
    # Kent's post in the same digest still opens Kent's post.
    assert follow(client, digest, KENT_URL, next(addresses)) == KENT_URL
    # As published, the digest, and the one correction mailing.
    assert Link.objects.filter(fixed_url=moved).count() == 3
    report = editor.get(report_url()).context["report"]
    # The post's own email, and the digest's two clicks (before and after the
    # fix) counted apart.
    assert link_counts(report)[POST_URL] == (1, 0)
    assert report["clicks_in_digests"] == {"people": 2, "machines": 0}


def test_a_viewer_may_not_fix_a_link(client, emails):
    viewer = UserFactory(username="viewer", is_superuser=False)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(viewer)
    before = links()
    assert "Fix where" not in client.get(report_url()).content.decode()
    assert client.get(fix_url(REPORT)).status_code == 403
    assert client.post(fix_url(REPORT), {"target": MOVED}).status_code == 403
    assert links() == before


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("javascript:alert(document.cookie)", "starting with https:// or http://"),
        ("www.justiceinspectorates.gov.uk/report", "starting with https://"),
        (f"{MOVED}\r\nSet-Cookie: x=1", "invisible control characters"),
        ("https://example.org/\u202ereport", "invisible control characters"),
        ("", "Enter the address the link should go to."),
        (None, "Enter the address the link should go to."),
        (REPORT, "The link already goes there."),
        ("http://127.0.0.1:8000/r/abc/", "a redirect of the emails themselves"),
        # Scheme and host are the same whatever their case, the path once decoded.
        ("HTTP://127.0.0.1:8000/r/abc/", "a redirect of the emails themselves"),
        ("http://127.0.0.1:8000/%72/abc/", "a redirect of the emails themselves"),
        ("https://example.org/" + "a" * 2000, "at most 2000 characters"),
    ],
    ids=[
        "javascript",
        "no scheme",
        "line break",
        "bidi override",
        "empty",
        "missing",
        "unchanged",
        "a redirect",
        "a redirect in capitals",
        "a redirect percent-encoded",
        "too long",
    ],
)
def test_a_bad_address_is_refused_clearly_and_changes_nothing(
    client, emails, editor, target, error
):
    before = links()
    response = editor.post(
        fix_url(REPORT), {} if target is None else {"target": target}
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert links() == before
    assert follow(client, emails["Suffolk", "instant"], REPORT, "192.0.2.1") == REPORT


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/not-in-the-email",
        KENT_URL,  # another post's, in the digest that carried both
        "",
    ],
)
def test_only_a_link_of_the_posts_emails_can_be_fixed(emails, editor, url):
    before = links()
    assert editor.post(fix_url(url), {"target": MOVED}).status_code == 404
    assert links() == before


def test_an_unknown_post_is_a_404(editor):
    path = "/admin/newsletter/postreport/999/link/?url=https://example.org/"
    assert editor.get(path).status_code == 404


def test_the_report_command_prints_the_fix(emails, editor):
    editor.post(fix_url(REPORT), {"target": MOVED})
    out = io.StringIO()
    call_command("post_report", "suffolk", "--json", stdout=out)
    [link] = [link for link in json.loads(out.getvalue())["links"] if link["fixed"]]
    assert (link["url"], link["fixed"]["to"], link["fixed"]["by"]) == (
        REPORT,
        MOVED,
        "eden",
    )


def test_the_report_commands_text_prints_where_a_fixed_link_goes_now(emails, editor):
    """It printed the link at the address it had in the emails only, which no
    click goes to any more; the desk's report shows the new one, and the old."""
    editor.post(fix_url(REPORT), {"target": MOVED})
    out = io.StringIO()
    call_command("post_report", "suffolk", stdout=out)
    [line] = [line for line in out.getvalue().splitlines() if REPORT in line]
    fixed_at = Link.objects.filter(url=REPORT).values_list("fixed_at", flat=True)[0]
    assert line.endswith(
        f"  {MOVED} (fixed on {timezone.localtime(fixed_at):%-d %B %Y} by eden, "
        f"was {REPORT})"
    )


def test_the_reports_csv_lists_where_a_fixed_link_goes_now(emails, editor):
    """The download listed the link at the address it had in the emails only,
    where no click goes any more; it now says what the desk's report says."""
    editor.post(fix_url(REPORT), {"target": MOVED})
    post = Post.objects.get(slug="suffolk")
    response = editor.get(f"/admin/newsletter/postreport/{post.pk}/csv/")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    [row] = [row for row in rows if row and REPORT in row[0]]
    fixed_at = Link.objects.filter(url=REPORT).values_list("fixed_at", flat=True)[0]
    assert row[0] == (
        f"{MOVED} (fixed on {timezone.localtime(fixed_at):%-d %B %Y} by eden, "
        f"was {REPORT})"
    )


def test_addresses_with_query_strings_are_found_and_followed_whole(
    client, emails, editor
):
    fixed = DATA.replace("year=2026", "year=2026&quarter=3")
    assert editor.post(fix_url(DATA), {"target": fixed}).status_code == 302
    assert follow(client, emails["Suffolk", "instant"], DATA, "192.0.2.1") == fixed
