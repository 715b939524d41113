"""The reader's and the author's journeys in a real browser: Debian's Chromium
driven by Playwright, against a live server with a real Celery worker and the dev
outbox as the only email provider. Also axe-core on the public pages, and
mobile-width screenshots of them under var/artefacts/."""

import os
import re
import time
import uuid
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunPython
from django.utils import timezone

from newsletter import delivery, outbox, tokens
from newsletter.emails import PostEmail, preferences_url
from newsletter.models import Consent, Subscriber
from newsletter.subscriptions import CONSENT_WORDING
from newsletter.tokens import Purpose, make_token
from posts.comments.models import Comment
from posts.comments.services import comment_confirmation_token
from posts.demo_content import FRESH_POST
from posts.models import Post, PostEvent, Sponsorship

from .browser import (
    AXE_SCRIPT,
    CHROMIUM,
    CHROMIUM_ARGS,
    MOBILE,
    NARROWEST,
    VIEWPORTS,
    accessibility_violations,
    save_screenshot,
    wider_than_the_screen,
)
from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
    UserFactory,
    create_inspectorate,
    png,
)
from .required import require

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM, "apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API keeps an event loop in this thread; the test's own
    # ORM calls are still synchronous, which Django must be told it may allow.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def site(live_server, settings):
    """The live site as a newcomer runs it: DEBUG on, emails in the outbox."""
    settings.DEBUG = True
    settings.EMAIL_BACKEND = "newsletter.outbox.OutboxBackend"
    settings.SITE_URL = live_server.url
    return live_server.url


@pytest.fixture
def worker(site, start_test_worker):
    with start_test_worker() as worker:
        yield worker


def new_page(browser, **options):
    """A page in a fresh context that records Content-Security-Policy violations."""
    page = browser.new_context(**options).new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda message: (
            "Content Security Policy" in message.text
            and page.csp_violations.append(message.text)
        ),
    )
    page.set_default_timeout(20_000)
    return page


def axe_page(browser, width: str, scheme: str, viewports=VIEWPORTS):
    """A page at a width of `viewports` ("phone", "desktop") in a colour scheme
    ("light", "dark"), open to axe-core: it is injected as a script, which the
    site's CSP rightly forbids."""
    return new_page(
        browser,
        viewport=viewports[width],
        is_mobile=width == "phone",
        color_scheme=scheme,
        bypass_csp=True,
    )


def log_in(page, site: str, username: str) -> None:
    """Log in to the admin as a user made by the factories (their password)."""
    page.goto(f"{site}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("correct horse battery staple")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Log out").or_(
        page.get_by_role("button", name="Log out")
    ).wait_for()


def wait_for_email(subject: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in outbox.message_names():
            message = outbox.read_message(name)
            if message is not None and subject in message["Subject"]:
                return
        time.sleep(0.2)
    raise AssertionError(f"no email with subject {subject!r} after {timeout:.0f}s")


def open_email(page, site: str, subject: str):
    """Open an email from the outbox; returns the frame showing its HTML part."""
    page.goto(f"{site}/outbox/")
    page.get_by_role("link", name=subject).first.click()
    return page.frame_locator("iframe.outbox-frame")


@pytest.mark.usefixtures("worker")
def test_reader_subscribes_confirms_reads_a_new_post_and_unsubscribes(browser, site):
    reader = new_page(browser)

    # The reader subscribes on the site.
    reader.goto(f"{site}/subscribe/")
    reader.get_by_label("Email address").fill("sam@example.org")
    reader.get_by_label("Name (optional)").fill("Sam")
    reader.get_by_role("button", name="Subscribe").click()
    reader.get_by_role("heading", name="Check your inbox").wait_for()

    # ... opens the confirmation email from the outbox and confirms.
    wait_for_email("Confirm")
    email = open_email(reader, site, "Confirm your subscription")
    email.get_by_role("link", name="Confirm my subscription").click()
    reader.get_by_role("button", name="Confirm my subscription").click()
    reader.get_by_text("subscribed", exact=False).first.wait_for()
    assert Subscriber.objects.get(email="sam@example.org").status == "active"

    # The author logs in to the admin, writes a post with an inspection and a
    # related link, and publishes it.
    UserFactory(username="author")
    AreaFactory(name="Cardiff", slug="cardiff")
    earlier = PublishedPostFactory(title="Cardiff youth justice")
    author = new_page(browser)
    log_in(author, site, "author")
    author.goto(f"{site}/admin/posts/post/add/")
    author.locator("#id_title").press_sequentially("Wales: unpaid work restarts")
    assert author.locator("#id_slug").input_value() == "wales-unpaid-work-restarts"
    author.locator("#id_excerpt").fill("Inspectors found the backlog shrinking.")
    author.locator("#id_body").fill("## Findings\n\nUnpaid work is **back**.")
    author.locator("#id_status").select_option("published")
    # The inspection it reports on, with its area picked from the autocomplete.
    author.get_by_role(
        "button", name=re.compile("Add another inspection", re.I)
    ).click()
    author.locator("#id_inspections-0-title").fill(
        "An inspection of probation services in Cardiff"
    )
    pick_autocomplete(author, "#id_inspections-0-area", "Cardiff")
    author.locator("#id_inspections-0-overall").select_option("good")
    # A related link to an earlier post.
    author.get_by_role(
        "button", name=re.compile("Add another related post", re.I)
    ).click()
    pick_autocomplete(author, "#id_links_out-0-to_post", "Cardiff youth justice")
    author.locator("#id_links_out-0-type").select_option("same_area")
    author.get_by_role("button", name="Save", exact=True).click()
    # The inspection lacks its organisation and report link: the desk warns, and
    # keeps all the author typed, inspection and related post, until they choose.
    author.get_by_text("lacks the organisation inspected").wait_for()
    assert not Post.objects.filter(slug="wales-unpaid-work-restarts").exists()
    assert author.locator("#id_inspections-0-title").input_value() == (
        "An inspection of probation services in Cardiff"
    )
    author.locator("#id_publish_despite_warnings").check()
    author.get_by_role("button", name="Save", exact=True).click()
    author.get_by_text("was added successfully").wait_for()
    post = Post.objects.published().get(slug="wales-unpaid-work-restarts")
    assert post.inspections.get().area.name == "Cardiff"
    assert post.links_out.get().to_post == earlier
    author.goto(f"{site}{post.get_absolute_url()}")
    author.get_by_text("Good", exact=True).first.wait_for()
    author.get_by_role("link", name="Cardiff youth justice").first.wait_for()

    # The reader's email arrives; its link opens the post.
    wait_for_email("Wales: unpaid work restarts")
    email = open_email(reader, site, "Wales: unpaid work restarts")
    email.get_by_role("link", name="Wales: unpaid work restarts").click()
    reader.get_by_role("heading", name="Wales: unpaid work restarts").wait_for()
    assert reader.url == f"{site}/posts/wales-unpaid-work-restarts/"

    # The unsubscribe link in the email shows a button and changes nothing yet.
    email = open_email(reader, site, "Wales: unpaid work restarts")
    reader.get_by_text("Headers").click()
    headers = reader.locator("details dl").inner_text()
    one_click_url = re.search(r"List-Unsubscribe\s+<(\S+)>", headers)[1]
    email.get_by_role("link", name="Unsubscribe", exact=True).click()
    reader.get_by_role("button", name="Unsubscribe").wait_for()
    assert Subscriber.objects.get(email="sam@example.org").status == "active"

    # The mail client's one-click unsubscribe (RFC 8058): a bare POST, no cookie.
    response = browser.new_context().request.post(
        one_click_url,
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 200
    assert Subscriber.objects.get(email="sam@example.org").status == "unsubscribed"

    # The preference centre, from the same email, says so and offers a way back.
    email = open_email(reader, site, "Wales: unpaid work restarts")
    email.get_by_role("link", name="Change what you receive").click()
    reader.get_by_text("unsubscribed", exact=False).first.wait_for()
    assert reader.get_by_role("button", name=re.compile("subscribe", re.I)).count()

    assert reader.csp_violations == author.csp_violations == []


def test_reader_chooses_a_weekly_digest_on_friday_at_seven(browser, site):
    sam = SubscriberFactory(email="sam@example.org")
    reader = new_page(browser)
    reader.goto(preferences_url(sam))

    reader.get_by_role("radio", name="Weekly digest").check()
    reader.get_by_label("Day, for weekly digests").select_option(label="Friday")
    reader.get_by_label("Hour").select_option(label="07:00")
    assert reader.get_by_label("Your time zone").input_value() == "Europe/London"
    reader.get_by_role("button", name="Save my choices").click()
    reader.get_by_text(
        "Your digest arrives every Friday at 07:00, London (UK) time."
    ).wait_for()
    sam.refresh_from_db()
    assert (sam.digest_weekday, sam.digest_hour, sam.time_zone) == (
        4,
        7,
        "Europe/London",
    )
    assert sam.topics.get().frequency == "weekly"

    # Back in the preference centre, the choice is what the page shows.
    reader.goto(preferences_url(sam))
    assert reader.get_by_role("radio", name="Weekly digest").is_checked()
    assert reader.get_by_label("Day, for weekly digests").input_value() == "4"
    assert reader.get_by_label("Hour").input_value() == "7"
    assert reader.csp_violations == []


def test_a_tab_opened_earlier_saves_only_what_the_reader_changed_in_it(browser, site):
    """Two tabs of the preference centre: the newer chooses a weekly digest; the
    older, still showing every post as published, then changes only the hour.
    It sent back what it showed, and the reader was as published again."""
    sam = SubscriberFactory(email="sam@example.org")
    older, newer = new_page(browser), new_page(browser)
    older.goto(preferences_url(sam))
    newer.goto(preferences_url(sam))
    newer.get_by_role("radio", name="Weekly digest").check()
    newer.get_by_role("button", name="Save my choices").click()
    newer.get_by_text("How often: weekly digest.").wait_for()

    older.get_by_label("Hour").select_option(label="09:00")
    older.get_by_role("button", name="Save my choices").click()

    older.get_by_text("How often: weekly digest.").wait_for()
    sam.refresh_from_db()
    assert sam.digest_hour == 9
    assert sam.topics.get().frequency == "weekly"


def test_reader_comments_and_sees_it_once_the_author_approves_it(browser, site):
    post = PublishedPostFactory(title="Suffolk: caseloads too high")
    reader = new_page(browser)
    reader.goto(f"{site}{post.get_absolute_url()}")  # now in the page cache

    # The reader leaves a reply under the post; it is held for moderation.
    reader.get_by_label(re.compile("^Name")).fill("Jo")
    reader.get_by_label(re.compile("^Email")).fill("jo@example.org")
    reader.get_by_role("textbox", name=re.compile("^Comment")).fill(
        "Our office sees the same."
    )
    reader.get_by_role("button", name="Post comment").click()
    reader.get_by_text("once the author has approved it").wait_for()
    assert reader.get_by_text("Our office sees the same.").count() == 0
    assert Comment.objects.get().status == Comment.Status.PENDING

    # The author approves it from the moderation queue in the admin.
    UserFactory(username="author")
    author = new_page(browser)
    log_in(author, site, "author")
    author.goto(f"{site}/admin/comments/comment/")
    author.get_by_role("link", name=re.compile("Our office sees the same")).wait_for()
    author.locator("input.action-select").first.check()
    author.locator("select[name=action]").select_option("approve")
    author.get_by_role("button", name="Go").click()
    author.get_by_text("Approved 1 comment.").wait_for()

    # The reader reloads the post, served from the page cache, and sees it.
    reader.reload()
    reader.get_by_text("Our office sees the same.").wait_for()
    assert "1 comment" in reader.get_by_role("heading", level=2).all_inner_texts()
    assert reader.csp_violations == author.csp_violations == []


@pytest.mark.usefixtures("worker")
def test_author_corrects_a_sent_post_and_its_reader_is_told(browser, site):
    SubscriberFactory(email="sam@example.org")
    post = PublishedPostFactory(
        title="Suffolk: caseloads too high",
        body="Inspectors rated the service Inadequate.",
    )
    delivery.mailing_create_for_post(post=post)
    wait_for_email("Suffolk: caseloads too high")

    # The author adds a correction on the post's page and saves it.
    UserFactory(username="author")
    author = new_page(browser)
    author.goto(f"{site}/admin/login/")
    author.get_by_label("Username").fill("author")
    author.get_by_label("Password").fill("correct horse battery staple")
    author.get_by_role("button", name="Log in").click()
    author.goto(f"{site}/admin/posts/post/{post.pk}/change/")
    author.locator("#id_body").fill(
        "Inspectors rated the service Requires improvement."
    )
    author.get_by_role(
        "button", name=re.compile("Add another post update", re.I)
    ).click()
    author.locator("#id_updates-0-kind").select_option("correction")
    author.locator("#id_updates-0-wrong").fill("The service was rated Inadequate.")
    author.locator("#id_updates-0-right").fill(
        "The service was rated Requires improvement."
    )
    author.get_by_role("button", name="Save and continue editing").click()
    author.get_by_text("was changed successfully").wait_for()

    # ... chooses to email it, sees who it reaches and a preview, and confirms.
    author.get_by_role("link", name=re.compile("Email it to the readers")).click()
    author.locator("#reach").get_by_text("1 reader who received the post").wait_for()
    author.get_by_title("The HTML email at phone width").wait_for()
    author.get_by_role("button", name="Email the correction to these readers").click()
    author.get_by_text("is on its way to the readers").wait_for()

    # The reader's correction arrives; its link opens the post, which shows it.
    wait_for_email("Correction: Suffolk: caseloads too high")
    reader = new_page(browser)
    email = open_email(reader, site, "Correction: Suffolk: caseloads too high")
    email.get_by_text("The service was rated Inadequate.").wait_for()
    email.get_by_role("link", name="Read the post").click()
    reader.get_by_text("it should say", exact=False).wait_for()
    assert reader.url == f"{site}{post.get_absolute_url()}"
    assert reader.csp_violations == author.csp_violations == []


def pick_autocomplete(page, select: str, text: str) -> None:
    """Choose `text` in one of the admin's autocomplete (select2) fields."""
    page.locator(f"{select} + .select2").click()
    page.locator(".select2-dropdown .select2-search__field").fill(text)
    page.locator(".select2-results__option", has_text=text).first.click()


# Every page a reader can reach, each opened by a function that takes the
# browser's page, the site's address and the demo publication (seed_demo), and
# makes the rows its link needs. The dev outbox's pages are not the reader's.
READERS_PAGES = {}


def readers_page(open_page):
    READERS_PAGES[open_page.__name__.replace("_", "-")] = open_page
    return open_page


@readers_page
def home(page, site, demo):
    demo.publish()
    page.goto(f"{site}/")


@readers_page
def archive_month(page, site, demo):
    page.goto(f"{site}/archive/{demo.inspected.published_at:%Y/%m}/")


@readers_page
def category(page, site, demo):
    demo.publish()
    page.goto(f"{site}/category/on-probation/")  # the sponsored one


@readers_page
def tag(page, site, demo):
    demo.publish()
    page.goto(f"{site}/tag/resettlement/")


@readers_page
def area(page, site, demo):
    demo.publish()
    page.goto(f"{site}/area/suffolk/")


@readers_page
def region(page, site, demo):
    demo.publish()
    page.goto(f"{site}/region/east-of-england/")


@readers_page
def organisation(page, site, demo):
    demo.publish()
    page.goto(f"{site}/organisation/sodexo-justice-services/")


@readers_page
def inspections(page, site, demo):
    demo.publish()
    page.goto(f"{site}/inspections/")


@readers_page
def inspections_filtered_by_a_name_we_do_not_know(page, site, demo):
    demo.publish()
    page.goto(f"{site}/inspections/?region=atlantis")


@readers_page
def search_with_results(page, site, demo):
    demo.publish()
    page.goto(f"{site}/search/?q=probation")


@readers_page
def search_with_a_later_page(page, site, demo):
    demo.publish()
    page.goto(f"{site}/search/?q=probation")
    page.get_by_role("link", name="More results").click()
    page.get_by_text("Page 2 of").wait_for()


@readers_page
def search_with_none(page, site, demo):
    demo.publish()
    page.goto(f"{site}/search/?q=zebrafish")


@readers_page
def search_of_common_words(page, site, demo):
    demo.publish()
    page.goto(f"{site}/search/?q=the")


@readers_page
def post_with_an_inspections_facts_and_ratings_comments_closed(page, site, demo):
    page.goto(f"{site}{demo.inspected.get_absolute_url()}")


@readers_page
def post_open_for_comments_with_a_reply(page, site, demo):
    page.goto(f"{site}{demo.fresh.get_absolute_url()}")


@readers_page
def comment_with_errors(page, site, demo):
    page.goto(f"{site}{demo.fresh.get_absolute_url()}")
    page.get_by_role("button", name="Post comment").click()
    page.get_by_role("alert").get_by_text("There is a problem").wait_for()


@readers_page
def comment_reply(page, site, demo):
    page.goto(f"{site}{demo.fresh.get_absolute_url()}")
    page.get_by_role("link", name="Reply to Jo Whitfield").click()
    page.get_by_role("heading", name="Reply to Jo Whitfield").wait_for()


@readers_page
def comment_confirm(page, site, demo):
    comment = Comment.objects.filter(post=demo.fresh).first()
    token = comment_confirmation_token(comment=comment)
    page.goto(f"{site}/comments/confirm/{token}/")


@readers_page
def comment_confirm_invalid(page, site, demo):
    page.goto(f"{site}/comments/confirm/nonsense/")


@readers_page
def subscribe(page, site, demo):
    page.goto(f"{site}/subscribe/")


@readers_page
def subscribe_with_errors(page, site, demo):
    page.goto(f"{site}/subscribe/")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("This field is required.", exact=True).wait_for()


@readers_page
def subscribe_done(page, site, demo):
    page.goto(f"{site}/subscribe/")
    page.get_by_label("Email address").fill(f"{uuid.uuid4().hex}@example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()


@readers_page
def subscribe_too_often(page, site, demo):
    demo.settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 0
    page.goto(f"{site}/subscribe/")
    page.get_by_label("Email address").fill("sam@example.org")
    page.get_by_role("button", name="Subscribe").click()


@readers_page
def subscribe_without_its_cookie(page, site, demo):
    page.goto(f"{site}/subscribe/")
    page.context.clear_cookies()  # a browser that keeps none
    page.get_by_label("Email address").fill("sam@example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_role("heading", name="Your form could not be sent").wait_for()


def _confirm_token() -> str:
    """The link in the confirmation email of a reader who asked for Suffolk."""
    reader = SubscriberFactory(status="pending", confirmed_at=None)
    reader.confirmation_sent_at = timezone.now()
    reader.save()
    consent = Consent.objects.create(
        subscriber=reader, wording=CONSENT_WORDING, topics=["area:suffolk"]
    )
    return make_token(reader, Purpose.CONFIRM, detail=str(consent.pk))


@readers_page
def confirm(page, site, demo):
    token = _confirm_token()
    page.goto(f"{site}/subscribe/confirm/{token}/")


@readers_page
def confirmed(page, site, demo):
    token = _confirm_token()
    page.goto(f"{site}/subscribe/confirm/{token}/")
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_text("subscribed", exact=False).first.wait_for()


@readers_page
def confirm_link_expired(page, site, demo):
    token = _confirm_token()
    demo.monkeypatch.setitem(tokens.MAX_AGE, Purpose.CONFIRM, -1)
    page.goto(f"{site}/subscribe/confirm/{token}/")


@readers_page
def link_not_valid(page, site, demo):
    page.goto(f"{site}/unsubscribe/nonsense/")


@readers_page
def unsubscribe(page, site, demo):
    page.goto(f"{site}/unsubscribe/{make_token(demo.reader(), Purpose.UNSUBSCRIBE)}/")


@readers_page
def unsubscribed(page, site, demo):
    page.goto(f"{site}/unsubscribe/{make_token(demo.reader(), Purpose.UNSUBSCRIBE)}/")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading").first.wait_for()


def _preferences(page, site, reader) -> None:
    page.goto(f"{site}/preferences/{make_token(reader, Purpose.PREFERENCES)}/")


@readers_page
def preferences(page, site, demo):
    _preferences(page, site, demo.reader())


@readers_page
def preferences_paused(page, site, demo):
    _preferences(page, site, demo.reader())
    page.get_by_role("button", name="Pause the newsletter").click()
    page.get_by_role("heading", name="Your newsletter is paused").wait_for()


@readers_page
def preferences_while_paused(page, site, demo):
    _preferences(page, site, demo.reader(paused_at=timezone.now()))


@readers_page
def preferences_unsubscribed(page, site, demo):
    _preferences(page, site, demo.reader(status="unsubscribed"))


@readers_page
def preferences_topics_saved(page, site, demo):
    _preferences(page, site, demo.reader())
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_role("heading", name="Your choices are saved").wait_for()


@readers_page
def preferences_change_of_address_with_errors(page, site, demo):
    _preferences(page, site, demo.reader())
    page.get_by_label("New email address").fill("not-an-address")
    page.get_by_role("button", name="Email me the link", exact=True).click()
    page.get_by_text("Enter a valid email address.", exact=True).wait_for()


@readers_page
def preferences_change_of_address_asked(page, site, demo):
    _preferences(page, site, demo.reader())
    page.get_by_label("New email address").fill("new@example.org")
    page.get_by_role("button", name="Email me the link", exact=True).click()
    page.get_by_role("heading", name="Check your inbox").wait_for()


@readers_page
def preferences_delete(page, site, demo):
    token = make_token(demo.reader(), Purpose.PREFERENCES)
    page.goto(f"{site}/preferences/{token}/delete/")


def _one_time(page, site, demo, detail: str) -> None:
    reader = demo.reader(one_time_link_sent_at=timezone.now())
    token = make_token(reader, Purpose.ONE_TIME, detail=detail)
    page.goto(f"{site}/preferences/once/{token}/")


@readers_page
def one_time_link_export(page, site, demo):
    _one_time(page, site, demo, "export")


@readers_page
def one_time_link_change_of_address(page, site, demo):
    _one_time(page, site, demo, "change-email:new@example.org")


@readers_page
def one_time_link_delete_done(page, site, demo):
    _one_time(page, site, demo, "delete")
    page.get_by_role("button", name="Delete my data").click()
    page.get_by_role("heading", name="Your data is deleted").wait_for()


@readers_page
def one_time_link_expired(page, site, demo):
    demo.monkeypatch.setitem(tokens.MAX_AGE, Purpose.ONE_TIME, -1)
    _one_time(page, site, demo, "export")


def _new_address_link(demo) -> str:
    reader = demo.reader(email_change_requested_at=timezone.now())
    # A new address each time: once one reader has it, it is nobody else's.
    new_email = f"{uuid.uuid4().hex}@example.org"
    token = make_token(reader, Purpose.CHANGE_EMAIL, detail=new_email)
    return f"/preferences/email/confirm/{token}/"


@readers_page
def new_address_confirm(page, site, demo):
    page.goto(f"{site}{_new_address_link(demo)}")


@readers_page
def new_address_confirmed(page, site, demo):
    page.goto(f"{site}{_new_address_link(demo)}")
    page.get_by_role("button", name="Confirm my new address").click()
    page.get_by_role("heading", name="Your address is changed").wait_for()


@readers_page
def not_found(page, site, demo):
    demo.settings.DEBUG = False
    page.goto(f"{site}/posts/no-such-post/")


@readers_page
def bad_request(page, site, demo):
    # More fields than Django parses (DATA_UPLOAD_MAX_NUMBER_FIELDS): a 400.
    demo.settings.DEBUG = False
    page.goto(f"{site}/search/?" + "&".join(f"f{n}=1" for n in range(1001)))


class DemoPublication:
    """seed_demo's posts, made the first time a page asks for one (a third of the
    pages need none), and readers made as a page needs them."""

    def __init__(self, settings, monkeypatch) -> None:
        self.settings, self.monkeypatch = settings, monkeypatch
        self.published = False

    def publish(self) -> None:
        if not self.published:
            call_command("seed_demo", stdout=StringIO())
            self.published = True

    @property
    def inspected(self) -> Post:
        self.publish()
        return Post.objects.get(slug="suffolk-probation-inspection-2017")

    @property
    def fresh(self) -> Post:
        self.publish()
        return Post.objects.get(slug=FRESH_POST["slug"])

    def reader(self, **fields) -> Subscriber:
        return SubscriberFactory(**fields)


@pytest.mark.usefixtures("roles", "celery_eager")
@pytest.mark.parametrize("name", READERS_PAGES)
def test_every_readers_page_is_accessible_and_fits_a_phone_and_a_desk_light_and_dark(
    browser, site, settings, monkeypatch, name
):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    demo = DemoPublication(settings, monkeypatch)
    found = {}
    # A reader's page has every impact checked, minor included, where the desk's
    # has Django's own to live with; and its phone is the narrowest.
    viewports = {**VIEWPORTS, "phone": NARROWEST}
    for width in viewports:
        for scheme in ("light", "dark"):
            page = axe_page(browser, width, scheme, viewports)
            READERS_PAGES[name](page, site, demo)
            save_screenshot(page, f"reader-{name}-{width}-{scheme}")
            found[width, scheme] = accessibility_violations(page, at_least="minor") + [
                f"wider than the screen: {element}"
                for element in wider_than_the_screen(page, viewports[width]["width"])
            ]
            page.context.close()
    assert found == {variant: [] for variant in found}


def test_a_post_with_a_table_of_ratings_and_a_long_address_fits_the_narrowest_phone(
    browser, site
):
    """An inspection's ratings by standard, as a Markdown table, and a report's
    address quoted as code: the page stayed as wide as the table, and the phone
    zoomed every word of the post out to fit it."""
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    report = "https://www.justiceinspectorates.gov.uk/hmiprobation/inspections/suffolk/"
    post = PublishedPostFactory(
        body="## Ratings by standard\n\n"
        "| Standard | Leadership | Staffing | Services | Case supervision | Overall |\n"
        "|---|---|---|---|---|---|\n"
        "| Rating | Requires improvement | Inadequate | Requires improvement"
        " | Good | Requires improvement |\n\n"
        f"```\n{report}\n```\n"
    )
    for scheme in ("light", "dark"):
        page = axe_page(browser, "phone", scheme, {"phone": NARROWEST})
        page.goto(f"{site}{post.get_absolute_url()}")
        page.get_by_role("cell", name="Inadequate").wait_for()
        page.get_by_text(report).wait_for()
        save_screenshot(page, f"reader-post-with-a-wide-table-{scheme}")
        assert wider_than_the_screen(page, NARROWEST["width"]) == []
        # The table scrolls in its own box, from the keyboard too, its words whole.
        box = page.get_by_role("region", name="Table")
        assert box.evaluate("box => box.scrollWidth > box.clientWidth")
        box.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.activeElement.scrollLeft > 0")
        for role, word in [
            ("columnheader", "Standard"),
            ("columnheader", "Leadership"),
            ("cell", "Inadequate"),
        ]:
            assert (
                page.get_by_role(role, name=word, exact=True).evaluate(
                    """cell => { const words = document.createRange();
                    words.selectNodeContents(cell);
                    return words.getClientRects().length; }"""
                )
                == 1
            ), f"{word} is broken across lines"
        # Nothing between the share links to wrap at: "Facebook" broke in two.
        share = page.get_by_role("navigation", name="Share this post")
        for link in share.get_by_role("link").all():
            assert link.evaluate("link => link.getClientRects().length") == 1
        assert accessibility_violations(page, at_least="minor") == []
        page.context.close()


def test_a_place_with_a_long_name_fits_the_narrowest_phone(browser, site):
    """Anglesey's village of 58 letters, the area of an inspection: the fact box's
    columns were as wide as its longest word, and the phone zoomed the whole post
    out to fit it."""
    village = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch"
    inspection = InspectionFactory(
        area=AreaFactory(name=village, slug="llanfairpwll"),
        organisations=[OrganisationFactory(name=f"{village} Youth Justice Service")],
    )
    page = axe_page(browser, "phone", "dark", {"phone": NARROWEST})
    for url in [
        inspection.post.get_absolute_url(),
        "/inspections/",
        "/area/llanfairpwll/",
    ]:
        page.goto(f"{site}{url}")
        assert village in page.content(), url
        assert wider_than_the_screen(page, NARROWEST["width"]) == [], url
    page.context.close()


def test_a_sponsors_wide_logo_fits_the_narrowest_phone(browser, site):
    """A sponsor's logo is often a wordmark ten times as wide as it is high: held
    to the line's height, it was wider than a phone, on the post and the listings,
    and the phone zoomed the whole page out to fit it."""
    today = timezone.localdate()
    category = CategoryFactory(slug="youth-justice")
    post = PublishedPostFactory()
    post.categories.add(category)
    Sponsorship.objects.create(
        category=category,
        name="Acme Training",
        url="https://acme.example/",
        logo="sponsors/acme.png",
        starts_on=today,
        ends_on=today,
    )
    page = axe_page(browser, "phone", "dark", {"phone": NARROWEST})
    wordmark = png(1200, 120).read()
    page.route(
        "**/media/sponsors/**",
        lambda route: route.fulfill(body=wordmark, content_type="image/png"),
    )
    for url in [post.get_absolute_url(), "/", "/category/youth-justice/"]:
        page.goto(f"{site}{url}")
        page.wait_for_function(
            "document.querySelector('.sponsor img').naturalWidth === 1200"
        )
        assert wider_than_the_screen(page, NARROWEST["width"]) == [], url
    page.context.close()


def test_a_post_email_with_a_table_of_ratings_fits_a_phone(browser):
    """The same table in the post's email: a phone's mail app showed the whole
    email zoomed out to the table's width, every word of it small."""
    post = PublishedPostFactory(
        body="| Standard | Leadership | Staffing | Services | Case supervision |"
        " Overall |\n|---|---|---|---|---|---|\n| Rating | Requires improvement |"
        " Inadequate | Requires improvement | Good | Requires improvement |\n"
    )
    html = PostEmail(post).for_subscriber(SubscriberFactory()).alternatives[0][0]
    page = new_page(browser, viewport=NARROWEST, is_mobile=True)
    page.set_content(html)
    page.get_by_role("cell", name="Inadequate").wait_for()
    assert wider_than_the_screen(page, NARROWEST["width"]) == []
    page.context.close()


def test_a_tables_right_aligned_figures_stay_right_on_the_page_and_in_the_email(
    browser, site
):
    """Caseloads right-aligned in the Markdown (|--:|) showed left-aligned: the
    sanitiser dropped the alignment, on the page and in the email."""
    post = PublishedPostFactory(
        body="| Area | Caseload | Rating |\n|:--|--:|:-:|\n| Kent | 48 | Good |\n"
    )
    alignment = "cell => getComputedStyle(cell).textAlign"
    page = new_page(browser)
    page.goto(f"{site}{post.get_absolute_url()}")
    email = new_page(browser)
    email.set_content(
        PostEmail(post).for_subscriber(SubscriberFactory()).alternatives[0][0]
    )
    for shown in (page, email):
        aligned = {
            word: shown.get_by_role(role, name=word, exact=True).evaluate(alignment)
            for role, word in [
                ("columnheader", "Area"),
                ("columnheader", "Caseload"),
                ("columnheader", "Rating"),
                ("cell", "Kent"),
                ("cell", "48"),
                ("cell", "Good"),
            ]
        }
        assert aligned == {
            "Area": "left",
            "Caseload": "right",
            "Rating": "center",
            "Kent": "left",
            "48": "right",
            "Good": "center",
        }
    assert page.csp_violations == []
    page.context.close()
    email.context.close()


def test_a_posts_links_to_its_own_sections_and_notes_go_to_them(browser, site):
    """An author's "[Findings](#findings)" went nowhere, as no heading had an
    id, and "[^1]" was shown as typed."""
    filler = "\n\n".join(["Officers carried caseloads above the target."] * 40)
    post = PublishedPostFactory(
        body=f"Read [the findings](#findings) first.[^1]\n\n{filler}\n\n"
        f"# Findings\n\nCaseloads were high.\n\n{filler}\n\n"
        "[^1]: HMI Probation, Kent report, 2024."
    )
    page = new_page(browser)
    page.goto(f"{site}{post.get_absolute_url()}")
    target = "() => document.querySelector(':target')?.textContent.trim()"
    page.get_by_role("link", name="the findings").click()
    page.wait_for_url(re.compile("#user-content-findings$"))
    assert page.evaluate(target) == "Findings"
    page.get_by_role("link", name="[1]").click()
    page.wait_for_url(re.compile("#user-content-fn1$"))
    assert page.evaluate(target).startswith("HMI Probation, Kent report, 2024.")
    page.get_by_role("link", name="Back to the text").click()  # the way back
    page.wait_for_url(re.compile("#user-content-fnref1$"))
    assert page.evaluate(target) == "[1]"
    assert page.get_by_role("link", name="[1]").is_visible()
    page.context.close()


def test_a_posts_notes_are_a_list_named_notes_that_axe_passes(browser, site):
    """A screen reader met the notes at the end of a post as an unnamed list."""
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    post = PublishedPostFactory(
        body="## Findings\n\nCaseloads were high.[^1]\n\n### Kent\n\nAs were Kent's."
        "[^2]\n\n[^1]: HMI Probation, 2024.\n[^2]: Kent report."
    )
    page = axe_page(browser, "desktop", "light")
    page.goto(f"{site}{post.get_absolute_url()}")
    notes = page.get_by_role("list", name="Notes")
    assert notes.get_by_role("listitem").count() == 2
    assert accessibility_violations(page, at_least="minor") == []
    page.context.close()


def test_a_refused_form_puts_the_reader_on_its_errors_and_each_links_to_its_field(
    browser, site
):
    page = new_page(browser, viewport=MOBILE, is_mobile=True)
    page.goto(f"{site}/subscribe/")
    page.get_by_role("button", name="Subscribe").click()
    # Focus, where a screen reader reads from, is on the summary: no script.
    summary = page.get_by_role("alert")
    summary.get_by_text("There is a problem").wait_for()
    assert page.title() == "Error: Subscribe — On Probation"
    assert page.evaluate("document.activeElement.className") == "error-summary"
    summary.get_by_role("link", name="Email address: This field is required.").click()
    page.keyboard.type("sam@example.org")
    assert page.get_by_label("Email address").input_value() == "sam@example.org"
    page.context.close()


def test_a_refused_choice_links_to_the_radio_where_the_reader_chooses_again(
    browser, site
):
    """The summary's "How often" link went to the radios' div, which cannot take
    focus: the reader following it stayed where they were."""
    page = new_page(browser)
    page.goto(f"{site}/subscribe/")
    page.get_by_label("Email address").fill("sam@example.org")
    # What a page from before a change of choices sends: no radio offers it now.
    first = page.locator("input[name=frequency]").first
    first.evaluate("radio => { radio.value = 'hourly'; radio.checked = true; }")
    page.get_by_role("button", name="Subscribe").click()
    summary = page.get_by_role("alert")
    summary.get_by_role("link", name=re.compile("^How often: ")).click()
    assert page.evaluate("document.activeElement.id") == "id_frequency_0"
    page.keyboard.press("ArrowDown")  # on the radios, the reader chooses again
    assert page.evaluate("document.activeElement.id") == "id_frequency_1"
    page.context.close()


def test_author_writes_markdown_and_sees_the_preview_as_readers_will(browser, site):
    UserFactory(username="author")
    author = new_page(browser, viewport={"width": 1400, "height": 1000})
    log_in(author, site, "author")
    author.goto(f"{site}/admin/posts/post/add/")
    preview = author.get_by_role("region", name="Preview, as readers will see it")

    # The author types; the preview follows, rendered by the site itself.
    body = author.locator("#id_body")
    body.press_sequentially("## Findings\n\nCaseloads were too high.\n\n")
    preview.get_by_role("heading", name="Findings").wait_for()
    preview.get_by_text("Caseloads were too high.").wait_for()

    # The toolbar puts Markdown where the cursor is.
    author.get_by_role("button", name="Bold").click()
    body.press_sequentially("Unpaid work")
    preview.locator("strong", has_text="Unpaid work").wait_for()
    assert "**Unpaid work**" in body.input_value()
    author.get_by_text("7 words, about 1 min to read").wait_for()
    save_screenshot(author, "admin-editor")

    # A link to a post the site does not have: the checks under the preview say
    # so as the author types, in the words saving would, read out as they change.
    body.press_sequentially(" See [Kent](/posts/kent-next/).")
    checks = author.locator(".markdown-editor-problems")
    checks.get_by_role(
        "heading", name="Checks before publishing, on this text"
    ).wait_for()
    checks.get_by_role("listitem").filter(
        has_text="Warning: The link “/posts/kent-next/” leads to nothing on this site"
    ).wait_for()
    assert checks.get_attribute("aria-live") == "polite"
    # Given that address as its slug, the link is to the post itself, which goes
    # live with it: no warning, as on saving. Another slug, and it is back.
    slug = author.locator("#id_slug")
    slug.fill("kent-next")
    checks.get_by_role("heading").wait_for(state="detached")
    slug.fill("kent-later")
    checks.get_by_role("heading").wait_for()
    # Fixed, the list goes.
    body.fill(body.input_value().replace(" See [Kent](/posts/kent-next/).", ""))
    checks.get_by_role("heading").wait_for(state="detached")

    # Leaving with unsaved changes asks first; the author stays.
    dialogs = []
    author.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.dismiss()))
    with pytest.raises(Exception, match="ERR_ABORTED"):
        author.goto(f"{site}/admin/")
    assert dialogs == ["beforeunload"]
    assert author.url.endswith("/admin/posts/post/add/")
    assert "**Unpaid work**" in body.input_value()
    assert author.csp_violations == []


def test_a_long_posts_preview_scrolls_from_the_keyboard(browser, site):
    """A post of findings with no link in it: the preview, taller than its box,
    takes the keyboard's focus, so the author reads to its end without a mouse."""
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    UserFactory(username="author")
    post = PublishedPostFactory(
        body="\n\n".join(f"Finding {n}: caseloads were too high." for n in range(80))
    )
    author = new_page(
        browser, viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )
    log_in(author, site, "author")
    author.goto(f"{site}/admin/posts/post/{post.pk}/change/")
    preview = author.get_by_role("region", name="Preview, as readers will see it")
    last = preview.get_by_text("Finding 79:")
    last.wait_for()
    assert not last.evaluate(
        "line => line.getBoundingClientRect().top"
        " < line.closest('section').getBoundingClientRect().bottom"
    )

    author.locator("#id_body").focus()
    author.keyboard.press("Tab")
    assert preview.evaluate("region => region === document.activeElement")
    assert preview.evaluate("region => getComputedStyle(region).outlineStyle") != (
        "none"
    )
    author.keyboard.press("End")
    author.wait_for_function(
        "() => document.activeElement.scrollTop > 0"
        " && document.activeElement.scrollTop + document.activeElement.clientHeight"
        " >= document.activeElement.scrollHeight - 1"
    )
    violations = accessibility_violations(author, excusing=DJANGO_ADMINS_OWN)
    assert violations == [], "\n".join(violations)


# What axe finds on the admin's change page that Django's own admin puts there: the
# help icons of its two-list selector, the unlabelled halves of its date-and-time
# widget, the search box and chosen list of its autocomplete for many (select2, as
# an inspection's organisations) and its breadcrumbs' links told apart by colour
# alone. Not ours to fix.
DJANGO_ADMINS_OWN = (
    'label[for="id_categories_',
    'label[for="id_tags_',
    "#id_published_at_",
    ".select2-search__field",
    ".select2-selection--multiple > ",
    ".breadcrumbs > a",
)


@pytest.fixture
def roles(db):
    """The roles' groups. The roles migration made them, but the flush after each
    transactional test removed them: run its create_roles again, on the
    migrations' own state, whatever the migration's file is called."""
    loader = MigrationLoader(connection)
    create_roles = next(
        operation.code
        for migration in loader.disk_migrations.values()
        for operation in migration.operations
        if isinstance(operation, RunPython)
        and operation.code.__name__ == "create_roles"
    )
    with connection.schema_editor() as schema_editor:
        create_roles(loader.project_state().apps, schema_editor)


@pytest.mark.usefixtures("roles")
def test_a_contributor_writes_with_the_live_preview_and_submits_for_review(
    browser, site
):
    jo = StaffFactory(username="jo", role="Contributor")
    contributor = new_page(browser, viewport={"width": 1400, "height": 1000})
    log_in(contributor, site, "jo")
    contributor.goto(f"{site}/admin/posts/post/add/")

    # Their form has no say in when, whether or how the post reaches readers.
    status = contributor.locator("#id_status")
    assert status.locator("option").evaluate_all(
        "options => options.map(option => option.value)"
    ) == ["draft", "review"]
    for field in ("published_at", "email_subscribers", "email_format"):
        assert contributor.locator(f"[name^={field}]").count() == 0, field

    # They write; the preview follows their typing.
    contributor.locator("#id_title").press_sequentially("Kent: court work")
    assert contributor.locator("#id_slug").input_value() == "kent-court-work"
    contributor.locator("#id_excerpt").fill("Inspectors sat in on court work.")
    preview = contributor.get_by_role("region", name="Preview, as readers will see it")
    body = contributor.locator("#id_body")
    body.press_sequentially("## In court\n\nReports were **late**.")
    preview.get_by_role("heading", name="In court").wait_for()
    preview.locator("strong", has_text="late").wait_for()
    body.press_sequentially(" Then on time.")
    preview.get_by_text("Then on time.", exact=False).wait_for()
    save_screenshot(contributor, "admin-contributor-editor")

    # ... and send it to an editor.
    status.select_option("review")
    contributor.get_by_role("button", name="Save", exact=True).click()
    contributor.get_by_text("was added successfully").wait_for()
    post = Post.objects.get(slug="kent-court-work")
    assert (post.status, post.author) == (Post.Status.REVIEW, jo)
    assert post.events.filter(kind=PostEvent.Kind.SUBMITTED, by=jo).exists()
    assert contributor.csp_violations == []


@pytest.mark.usefixtures("roles")
def test_an_editor_sees_the_checks_approves_and_publishes(browser, site):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    jo = StaffFactory(username="jo", role="Contributor")
    post = PostFactory(
        title="Kent: court work",
        excerpt="",
        author=jo,
        status=Post.Status.REVIEW,
        email_subscribers=False,
    )
    sam = StaffFactory(username="sam", role="Editor")
    # axe-core is injected as a script, which the site's CSP rightly forbids.
    editor = new_page(
        browser, viewport={"width": 1400, "height": 1000}, bypass_csp=True
    )
    log_in(editor, site, "sam")

    # The list says what waits for them, and leads to it.
    editor.goto(f"{site}/admin/posts/post/")
    editor.get_by_text("1 post waits for review").wait_for()
    editor.get_by_role("link", name="show them").click()
    editor.get_by_role("link", name="Kent: court work").click()

    # The post's page shows what the checks found.
    checks = editor.get_by_role("group", name="Checks before publishing")
    checks.get_by_text("Warning:").wait_for()
    checks.get_by_text("The excerpt is empty", exact=False).wait_for()
    save_screenshot(editor, "admin-editor-checks")
    violations = accessibility_violations(editor, excusing=DJANGO_ADMINS_OWN)
    assert violations == [], "\n".join(violations)

    # They publish it, knowingly.
    editor.locator("#id_status").select_option("published")
    editor.get_by_label("Publish despite warnings").check()
    editor.get_by_role("button", name="Save", exact=True).click()
    editor.get_by_text("was changed successfully").wait_for()
    post.refresh_from_db()
    assert post.is_published
    assert set(post.events.filter(by=sam).values_list("kind", flat=True)) == {
        PostEvent.Kind.APPROVED,
        PostEvent.Kind.PUBLISHED,
    }


@pytest.mark.usefixtures("worker")
def test_reader_on_a_phone_finds_suffolk_by_typing_and_subscribes_to_it(browser, site):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    create_inspectorate()
    reader = new_page(browser, viewport=MOBILE, is_mobile=True)
    reader.goto(f"{site}/subscribe/")
    reader.get_by_label("Email address").fill("sam@example.org")
    # The groups are collapsed, with their counts; the reader types instead.
    assert not reader.get_by_role("checkbox", name="Suffolk", exact=True).is_visible()
    reader.get_by_text("Organisations and their owners (212)").wait_for()
    finder = reader.get_by_label(re.compile("^Find a region"))
    finder.press_sequentially("suff")
    reader.get_by_text("topics match “suff”").wait_for()
    assert not reader.get_by_role("checkbox", name="Essex", exact=True).is_visible()
    # From the filter box, by keyboard: down to the results, then to Suffolk.
    finder.press("ArrowDown")
    suffolk = reader.get_by_role("checkbox", name="Suffolk", exact=True)
    for _ in range(10):
        if suffolk.evaluate("box => box === document.activeElement"):
            break
        reader.keyboard.press("Tab")
    reader.keyboard.press("Space")
    assert suffolk.is_checked()
    chosen = reader.get_by_role("list", name="Your choice")
    chosen.get_by_text("Suffolk", exact=True).wait_for()
    chosen.get_by_role("button", name="Remove Suffolk").wait_for()
    save_screenshot(reader, "mobile-subscribe-topic-picker")
    assert reader.csp_violations == []

    # The reader submits; the subscription asks for Suffolk and nothing else.
    reader.get_by_role("button", name="Subscribe").click()
    reader.get_by_role("heading", name="Check your inbox").wait_for()
    wait_for_email("Confirm")
    consent = Consent.objects.get(subscriber__email="sam@example.org")
    assert consent.topics == ["area:suffolk"]
    assert consent.frequency == "instant"


def test_the_topic_picker_on_a_phone_has_no_accessibility_violations(browser, site):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    create_inspectorate()
    # axe-core is injected as a script, which the site's CSP rightly forbids.
    page = new_page(browser, viewport=NARROWEST, bypass_csp=True, is_mobile=True)
    page.goto(f"{site}/subscribe/")
    page.get_by_label(re.compile("^Find a region")).fill("east of england")
    page.get_by_role("checkbox", name="East of England", exact=True).check()
    page.get_by_label(re.compile("^Find a region")).fill("nacro")
    page.get_by_role("checkbox", name=re.compile("^Nacro")).check()
    page.get_by_role("list", name="Your choice").get_by_text(
        re.compile("^Covers what it owned: ")
    ).wait_for()
    page.get_by_role("list", name="Your choice").get_by_text(
        re.compile("^Covers its areas: ")
    ).wait_for()
    save_screenshot(page, "mobile-subscribe-topic-picker-chosen")
    assert accessibility_violations(page, at_least="minor") == []


@pytest.mark.usefixtures("worker")
def test_without_javascript_the_picker_is_a_plain_form_that_works(browser, site):
    create_inspectorate()
    reader = new_page(
        browser, viewport=MOBILE, is_mobile=True, java_script_enabled=False
    )
    reader.goto(f"{site}/subscribe/")
    assert not reader.get_by_label(re.compile("^Find a region")).is_visible()
    reader.get_by_label("Email address").fill("jo@example.org")
    reader.get_by_text("Areas (150)").click()
    reader.get_by_role("checkbox", name="Suffolk", exact=True).check()
    reader.get_by_text("Organisations and their owners (212)").click()
    reader.get_by_role("checkbox", name=re.compile("^Sodexo Justice Services")).check()
    save_screenshot(reader, "mobile-subscribe-topic-picker-without-javascript")
    reader.get_by_role("button", name="Subscribe").click()
    reader.get_by_role("heading", name="Check your inbox").wait_for()
    wait_for_email("Confirm")
    consent = Consent.objects.get(subscriber__email="jo@example.org")
    assert consent.topics == ["area:suffolk", "organisation:sodexo-justice-services"]
