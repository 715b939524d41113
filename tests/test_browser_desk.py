"""The desk, the admin's front page, in a real browser on the demo data: at desktop
and phone width, in the light and the dark scheme; screenshots under
var/artefacts/, and axe-core finds no serious violation of ours."""

import pytest
from django.core.management import call_command

from .browser import AXE_SCRIPT, MOBILE, require, save_screenshot
from .browser import serious_accessibility_violations as axe_violations
from .factories import UserFactory
from .test_browser import (  # noqa: F401 (fixtures)
    browser,
    log_in,
    new_page,
    roles,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1280, "height": 1000}


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
    viewport = MOBILE if width == "phone" else DESKTOP
    # axe-core is injected as a script, which the site's CSP rightly forbids.
    page = new_page(
        browser,
        viewport=viewport,
        is_mobile=width == "phone",
        color_scheme=scheme,
        bypass_csp=True,
    )
    log_in(page, demo, "boss")
    page.goto(f"{demo}/admin/")

    page.get_by_role("heading", name="Readers now").wait_for()
    chart = page.get_by_role("img", name="Readers per week, last 12 weeks")
    assert chart.is_visible()
    assert chart.bounding_box()["width"] <= viewport["width"]
    page.get_by_role("table", name="Readers per week, last 12 weeks: the figures")
    page.get_by_role("heading", name="Latest mailings").wait_for()
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
