"""The author's journey in a real browser: a reader finds a link of a sent email
broken; an Editor fixes where it goes from the post's report; the reader's next
click on the same email opens the right page (tests/test_browser.py's set-up)."""

import pytest

from newsletter.models import Link
from posts.services import post_publish

from .factories import (
    PostFactory,
    PublishedPostFactory,
    StaffFactory,
    SubscriberFactory,
)
from .test_browser import (  # noqa: F401 (fixtures)
    browser,
    log_in,
    new_page,
    open_email,
    roles,
    site,
    wait_for_email,
    worker,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.usefixtures("worker", "roles")
def test_an_editor_fixes_a_broken_link_of_a_sent_post_for_its_readers(
    browser,  # noqa: F811 (the fixture imported above)
    site,  # noqa: F811
):
    SubscriberFactory(email="sam@example.org")
    report = PublishedPostFactory(title="The inspectorate's report", slug="report")
    broken = f"{site}/posts/the-report/"  # a slug that never was
    post = PostFactory(
        title="Suffolk: caseloads too high",
        body=f"Read [the official report]({broken}).",
    )
    post_publish(post=post)
    wait_for_email("Suffolk: caseloads too high")

    # The reader follows the email's link and finds nothing there.
    reader = new_page(browser)
    email = open_email(reader, site, "Suffolk: caseloads too high")
    email.get_by_role("link", name="the official report").click()
    reader.wait_for_url(broken)
    reader.get_by_text("Not found", exact=False).first.wait_for()

    # An Editor opens the post's report and sends that link to the right page.
    StaffFactory(username="eden", role="Editor")
    editor = new_page(browser)
    log_in(editor, site, "eden")
    editor.goto(f"{site}/admin/newsletter/postreport/{post.pk}/change/")
    editor.get_by_role(
        "link", name=f"Fix where this link goes (the link to {broken})"
    ).click()
    field = editor.get_by_label("Where it should go")
    assert field.input_value() == broken
    field.fill("javascript:alert(1)")
    editor.get_by_role("button", name="Send the link there").click()
    editor.get_by_text("starting with https:// or http://").wait_for()
    assert not Link.objects.exclude(fixed_url="").exists()
    right = f"{site}{report.get_absolute_url()}"
    editor.get_by_label("Where it should go").fill(right)
    editor.get_by_role("button", name="Send the link there").click()
    editor.get_by_text("Every later click on this link").wait_for()
    editor.get_by_text(f"(was {broken})", exact=False).wait_for()

    # The same email's same link now opens the report.
    email = open_email(reader, site, "Suffolk: caseloads too high")
    email.get_by_role("link", name="the official report").click()
    reader.wait_for_url(right)
    reader.get_by_role("heading", name="The inspectorate's report").wait_for()
    assert reader.csp_violations == editor.csp_violations == []
