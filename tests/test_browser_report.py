"""A post's report in a real browser, on the demo data: its figures, the first
hours as charts and readers by what they follow, at desktop and phone width, in
the light and the dark scheme; screenshots under var/artefacts/, and axe-core."""

from io import StringIO

import pytest
from django.core.management import call_command

from posts.models import Post

from .browser import AXE_SCRIPT, VIEWPORTS, save_screenshot
from .browser import accessibility_violations as violations
from .factories import StaffFactory
from .required import require
from .test_browser import (  # noqa: F401 (browser and site are fixtures)
    DJANGO_ADMINS_OWN,
    axe_page,
    browser,
    log_in,
    roles,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_editor_reads_a_posts_report_on_a_desk_and_a_phone_light_and_dark(
    browser,  # noqa: F811
    site,  # noqa: F811
    roles,  # noqa: F811 (the Editor's group, made again after the last flush)
):
    require(AXE_SCRIPT, "npm install --prefix tests/browser (.ci/run does)")
    call_command("seed_demo", stdout=StringIO())
    post = Post.objects.get(slug="suffolk-probation-inspection-2017")
    StaffFactory(username="reporter", role="Editor")

    found = {}
    for width, viewport in VIEWPORTS.items():
        for scheme in ("light", "dark"):
            page = axe_page(browser, width, scheme)
            log_in(page, site, "reporter")
            page.goto(f"{site}/admin/newsletter/postreport/")
            page.get_by_role("link", name="Report").first.wait_for()
            page.goto(f"{site}/admin/newsletter/postreport/{post.pk}/change/")
            page.get_by_role("heading", name="The first hours").wait_for()
            chart = page.get_by_role("img", name="Opens and clicks in the first 72")
            assert chart.is_visible()
            page.get_by_role("rowheader", name="East of England").wait_for()
            page.get_by_text("A click counts as a machine").wait_for()
            # The chart fits the screen; a wide table scrolls inside its box.
            box = chart.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            # So does the table of links, however long their addresses.
            box = page.locator("table.report-links").bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
            save_screenshot(page, f"admin-report-{width}-{scheme}")
            found[width, scheme] = [
                violation
                for violation in violations(page)
                if not all(
                    target.startswith(DJANGO_ADMINS_OWN)
                    for target in violation.partition(") at ")[2].split(", ")
                )
            ]
            page.context.close()
    assert found == {variant: [] for variant in found}
