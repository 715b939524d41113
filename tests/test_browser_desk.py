"""The desk, the admin's front page, in a real browser on the demo data: at desktop
and phone width, in the light and the dark scheme; screenshots under
var/artefacts/, and axe-core finds no serious violation of ours, there or on the
other pages the desk adds to Django's admin."""

from urllib.parse import urlencode

import pytest
from django.core.management import call_command

from newsletter.models import Batch, Link, Mailing, Subscriber
from posts.models import Post, PostUpdate

from .browser import AXE_SCRIPT, DESKTOP, VIEWPORTS, save_screenshot
from .browser import accessibility_violations as axe_violations
from .factories import StaffFactory, UserFactory
from .required import require
from .test_browser import (  # noqa: F401 (fixtures)
    DJANGO_ADMINS_OWN,
    axe_page,
    browser,
    log_in,
    new_page,
    roles,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(site, roles):  # noqa: F811 (the fixtures imported above)
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    UserFactory(username="boss")
    return site


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_desk_reads_well_at_each_width_and_scheme(
    browser,  # noqa: F811
    demo,
    width,
    scheme,
):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    viewport = VIEWPORTS[width]
    page = axe_page(browser, width, scheme)
    log_in(page, demo, "boss")
    page.goto(f"{demo}/admin/")

    page.get_by_role("heading", name="Readers now").wait_for()
    chart = page.get_by_role("img", name="Readers per week, last 12 weeks")
    assert chart.is_visible()
    assert chart.bounding_box()["width"] <= viewport["width"]
    page.get_by_role("table", name="Readers per week, last 12 weeks: the figures")
    page.get_by_role("heading", name="Latest mailings").wait_for()
    if width == "desktop":
        # The mailings fit their half of the desk, each column heading on one
        # line: Django's dashboard CSS broke "Complaints" into "Compl" + "aints",
        # and the last column was out of sight until scrolled to.
        mailings = page.get_by_role("region", name="Latest mailings")
        scroller = mailings.locator(".desk-scroll")
        assert scroller.evaluate("box => box.scrollWidth <= box.clientWidth")
        lines = mailings.locator("thead th").evaluate_all(
            """cells => cells.map(cell => {
                const text = document.createRange();
                text.selectNodeContents(cell);
                return text.getClientRects().length;
            })"""
        )
        assert lines == [1, 1, 1, 1]
    # Nothing wider than the phone's screen but what scrolls in its own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    save_screenshot(page, f"admin-desk-{width}-{scheme}")
    assert axe_violations(page) == []


def test_the_desk_keeps_to_the_strict_csp(browser, demo):  # noqa: F811
    page = new_page(browser, viewport=DESKTOP)
    log_in(page, demo, "boss")
    page.goto(f"{demo}/admin/")
    page.get_by_role("heading", name="Growth").wait_for()
    assert page.csp_violations == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_desks_own_pages_have_no_serious_accessibility_violations(
    browser,  # noqa: F811
    demo,
    scheme,
    tmp_path,
):
    """Each page the desk adds to Django's admin, as the role that uses it: axe-core
    finds nothing serious on it but what Django's own widgets put there."""
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    post = Post.objects.get(slug="suffolk-probation-inspection-2017")
    correction = PostUpdate.objects.create(
        post=post,
        kind=PostUpdate.Kind.CORRECTION,
        wrong="The service was rated Inadequate.",
        right="The service was rated Requires improvement.",
    )
    # One announcement still going out, with a batch waiting to be settled.
    sending = post.mailings.get(kind=Mailing.Kind.POST)
    Mailing.objects.filter(pk=sending.pk).update(status=Mailing.Status.SENDING)
    Batch.objects.create(
        mailing=sending, number=99, status=Batch.Status.UNCERTAIN, size=3, uncertain=3
    )
    fixing = urlencode({"url": Link.objects.filter(mailing=sending).first().url})
    StaffFactory(username="jo", role="Contributor")
    StaffFactory(username="eden", role="Editor")
    rejected = tmp_path / "readers.csv"
    rejected.write_text(
        "email,name,consent_source,consent_date\n"
        "not an address,Sam,signup form,2024-01-01\n"
        "kim@example.org,Kim,signup form,2024-01-01\n"
    )
    wrong = tmp_path / "notes.csv"
    wrong.write_text("who,when\nSam,Monday\n")

    def writing(page):
        page.locator("#id_body").press_sequentially("## Findings\n\nToo **high**.")
        preview = page.get_by_role("region", name="Preview, as readers will see it")
        preview.get_by_role("heading", name="Findings").wait_for()

    def importing(page):
        page.get_by_label("CSV file").set_input_files(str(rejected))
        page.get_by_role("button", name="Check and import").click()
        page.get_by_role("heading", name="Rejected lines").wait_for()

    def importing_the_wrong_file(page):
        page.get_by_label("CSV file").set_input_files(str(wrong))
        page.get_by_role("button", name="Check and import").click()
        page.locator(".errorlist").first.wait_for()

    def asking_to_unsubscribe(page):
        page.locator("input.action-select").first.check()
        page.get_by_label("Action:").select_option("unsubscribe")
        page.get_by_role("button", name="Go").click()
        page.get_by_role("heading", name="Unsubscribe 1 reader?").wait_for()

    # (who, what, where, then what they do there)
    visits = [
        ("eden", "desk", "/admin/", None),
        ("eden", "report", f"/admin/newsletter/postreport/{post.pk}/change/", None),
        ("eden", "mailings", "/admin/newsletter/mailing/", None),
        ("eden", "mailing", f"/admin/newsletter/mailing/{sending.pk}/change/", None),
        (
            "eden",
            "correction",
            f"/admin/posts/post/{post.pk}/corrections/{correction.pk}/email/",
            None,
        ),
        ("eden", "email preview", f"/admin/posts/post/{post.pk}/email/", None),
        (
            "eden",
            "link fix",
            f"/admin/newsletter/postreport/{post.pk}/link/?{fixing}",
            None,
        ),
        ("jo", "live preview", "/admin/posts/post/add/", writing),
        ("boss", "batches", "/admin/newsletter/batch/?status__exact=uncertain", None),
        (
            "boss",
            "unsubscribing",
            "/admin/newsletter/subscriber/",
            asking_to_unsubscribe,
        ),
        ("boss", "import", "/admin/newsletter/subscriber/import/", None),
        ("boss", "import report", "/admin/newsletter/subscriber/import/", importing),
        (
            "boss",
            "import errors",
            "/admin/newsletter/subscriber/import/",
            importing_the_wrong_file,
        ),
    ]
    found = {}
    pages = {}
    for who, what, path, then in visits:
        if who not in pages:
            # axe-core is injected as a script, which the admin's CSP forbids.
            pages[who] = new_page(
                browser, viewport=DESKTOP, color_scheme=scheme, bypass_csp=True
            )
            log_in(pages[who], demo, who)
        page = pages[who]
        assert page.goto(f"{demo}{path}").ok, what
        if then:
            then(page)
        found[what] = axe_violations(page, excusing=DJANGO_ADMINS_OWN)
    assert found == {what: [] for what in found}, "\n".join(
        f"{what}: {violation}" for what in found for violation in found[what]
    )

    # The page no longer refreshes itself unasked: a labelled switch, which the
    # keyboard reaches, keeps it current or turns that off.
    page = pages["eden"]
    page.goto(f"{demo}/admin/newsletter/mailing/{sending.pk}/change/")
    switch = page.get_by_label("Update this page every 10 seconds")
    assert switch.is_checked()
    switch.focus()
    page.keyboard.press("Space")
    assert not switch.is_checked()


def test_the_editor_names_each_field_of_its_rows_as_its_column_does(
    browser,  # noqa: F811
    demo,
):
    """A published post's related posts and corrections are rows of fields under
    column headings: a screen reader, going from field to field, hears each one's
    name, and axe-core finds nothing serious of ours on the editor."""
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    post = Post.objects.get(slug="suffolk-probation-inspection-2017")
    PostUpdate.objects.create(
        post=post,
        kind=PostUpdate.Kind.CORRECTION,
        wrong="The service was rated Inadequate.",
        right="The service was rated Requires improvement.",
    )
    StaffFactory(username="eden", role="Editor")
    page = new_page(browser, viewport=DESKTOP, bypass_csp=True)
    log_in(page, demo, "eden")
    page.goto(f"{demo}/admin/posts/post/{post.pk}/change/")

    related = post.links_out.count()
    assert related
    links = page.locator('fieldset[aria-labelledby="links_out-heading"]')
    assert links.get_by_role("combobox", name="Type", exact=True).count() == related
    assert links.get_by_role("spinbutton", name="Order", exact=True).count() == related
    assert links.get_by_role("checkbox", name="Delete", exact=True).count() == related
    updates = page.locator('fieldset[aria-labelledby="updates-heading"]')
    updates.get_by_role("textbox", name="The post said", exact=True).wait_for()
    updates.get_by_role("checkbox", name="Delete", exact=True).wait_for()
    found = axe_violations(page, excusing=DJANGO_ADMINS_OWN)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("action", "said", "then"),
    [
        ("unsubscribe", "1 subscriber unsubscribed.", Subscriber.Status.UNSUBSCRIBED),
        ("suppress", "1 address suppressed.", Subscriber.Status.SUPPRESSED),
    ],
)
def test_stopping_readers_emails_from_their_list_asks_first(
    browser,  # noqa: F811
    demo,
    action,
    said,
    then,
):
    """Under the site's CSP: "No, take me back" leaves the readers as they were,
    and only "Yes" unsubscribes (or suppresses) them."""
    reader = Subscriber.objects.filter(status=Subscriber.Status.ACTIVE).first()
    page = new_page(browser, viewport=DESKTOP)
    log_in(page, demo, "boss")
    listed = f"{demo}/admin/newsletter/subscriber/?{urlencode({'q': reader.email})}"

    def ask():
        page.goto(listed)
        page.locator("input.action-select").first.check()
        page.get_by_label("Action:").select_option(action)
        page.get_by_role("button", name="Go").click()
        page.get_by_role("heading", name=f"{action.capitalize()} 1 reader?").wait_for()

    ask()
    page.get_by_role("link", name="No, take me back").click()
    page.wait_for_url(listed)
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE

    ask()
    page.get_by_role("button", name=f"Yes, {action} them").click()
    page.get_by_text(said).wait_for()
    reader.refresh_from_db()
    assert reader.status == then
