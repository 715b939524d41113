"""Each post's report: what became of its emails, and opens and clicks by people
and machines, in the admin, as CSV and from `manage.py post_report`."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from newsletter import engagement
from newsletter.engagement import post_report
from newsletter.models import Batch, Delivery, Link, Mailing, Subscriber
from newsletter.subscriptions import subscriber_unsubscribe

from . import test_webhooks as webhooks_test
from .factories import PostFactory, SubscriberFactory, UserFactory
from .test_engagement import (
    BROWSER,
    DATA,
    IPHONE_MAIL,
    REPORT,
    click,
    postmark_open_by,
    redirects,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

POST_URL = "http://127.0.0.1:8000/posts/suffolk/"
SCANNER = "Mozilla/5.0 (Windows NT 6.1; WOW64) BingPreview/1.0b"


@pytest.fixture
def later(monkeypatch):
    """Move the clock to an hour after `moment`."""

    def move(moment) -> None:
        monkeypatch.setattr(timezone, "now", lambda: moment + timedelta(hours=1))

    return move


def event(delivery: Delivery, payload: dict) -> dict:
    """A Postmark event about one reader's message, found by its metadata."""
    email = delivery.subscriber.email
    payload = {**payload, "Metadata": {"delivery": str(delivery.pk)}}
    payload["MessageID"] = f"message-{delivery.pk}"
    payload["Email" if "Email" in payload else "Recipient"] = email
    if "ID" in payload:
        payload["ID"] = delivery.pk * 10 + len(payload["RecordType"])
    return payload


@pytest.fixture
def story(publish, settings, client, later):
    """Suffolk's post goes to five readers and, in a digest, to a sixth; the
    provider reports back, readers and scanners follow its links."""
    for name in "abcde":
        SubscriberFactory(email=f"{name}@example.org")
    post = PostFactory(
        slug="suffolk",
        body=f"Read [the official report]({REPORT}) and [the figures]({DATA}).",
    )
    publish(post)
    email = mail.outbox[0]
    announcement = Mailing.objects.get(post=post)
    rows = {d.subscriber.email[0]: d for d in announcement.deliveries.all()}

    # A weekly digest carried it to a sixth reader.
    weekly = SubscriberFactory(email="weekly@example.org")
    digest = Mailing.objects.create(
        kind="digest", frequency="weekly", period="2026-11-30"
    )
    batch = Batch.objects.create(mailing=digest, number=1)
    carried = Delivery.objects.create(
        mailing=digest, batch=batch, subscriber=weekly, status="sent"
    )
    carried.posts.add(post)
    digest_link = Link.objects.create(mailing=digest, url=POST_URL)

    settings.EMAIL_BACKEND = webhooks_test.POSTMARK_BACKEND
    settings.ANYMAIL = {"WEBHOOK_SECRET": webhooks_test.SECRET}
    for payload in (
        event(rows["a"], webhooks_test.postmark_delivery()),
        event(rows["a"], postmark_open_by("Mozilla/5.0")),  # Apple's proxy
        event(rows["a"], postmark_open_by(IPHONE_MAIL, client="Apple Mail")),
        event(rows["b"], webhooks_test.postmark_delivery()),
        event(rows["b"], postmark_open_by("Mozilla/5.0")),  # Apple's proxy
        event(rows["c"], webhooks_test.postmark_bounce("HardBounce")),
        event(rows["d"], webhooks_test.postmark_bounce("SoftBounce")),
        event(rows["e"], webhooks_test.postmark_delivery()),
        event(rows["e"], webhooks_test.postmark_complaint()),
    ):
        assert webhooks_test.post_postmark(client, payload).status_code == 200

    later(announcement.created_at)
    links = redirects(email)
    click(client, links[REPORT], address="192.0.2.1")  # reader a
    click(client, links[REPORT], agent=SCANNER, address="203.0.113.9")
    click(client, links[DATA], agent=SCANNER, address="203.0.113.9")
    click(client, links["hidden"], agent=BROWSER, address="203.0.113.50")
    later(digest.created_at)
    click(client, f"/r/{engagement.click_token(digest_link.pk)}/", address="192.0.2.6")
    engagement.click_counts_flush()  # beat's minute has passed
    subscriber_unsubscribe(subscriber=Subscriber.objects.get(email="b@example.org"))
    return post


def link_counts(report: dict) -> dict:
    return {
        ("hidden" if link["hidden"] else link["url"]): (
            link["people"],
            link["machines"],
        )
        for link in report["links"]
    }


def test_the_report_counts_each_outcome_and_people_and_machines_apart(story):
    report = post_report(story)
    assert report["recipients"] == 6
    assert (report["as_published"], report["through_digests"]) == (5, 1)
    assert report["accepted"] == 6
    assert report["delivered"] == 3  # a, b and e (who then complained)
    assert (report["bounced"], report["bounced_hard"], report["bounced_soft"]) == (
        2,
        1,
        1,
    )
    assert report["complained"] == 1
    assert report["unsubscribed"] == 1
    assert report["opens"] == {"people": 1, "machines": 2}
    assert report["clicks"] == {"people": 2, "machines": 3}
    counts = link_counts(report)
    assert counts[REPORT] == (1, 1)
    assert counts[DATA] == (0, 1)
    assert counts["hidden"] == (0, 1)
    assert counts[POST_URL] == (1, 0)  # through the digest


def test_the_command_prints_the_same_figures_as_json(story):
    out = io.StringIO()
    call_command("post_report", "suffolk", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed == json.loads(json.dumps(post_report(story)))
    for key in ("recipients", "delivered", "bounced", "complained", "unsubscribed"):
        assert isinstance(printed[key], int)
    assert printed["opens"] == {"people": 1, "machines": 2}
    assert {"url", "people", "machines"} <= set(printed["links"][0])


def test_the_command_refuses_an_unknown_post_clearly():
    with pytest.raises(Exception, match="No post with the slug 'nothing'"):
        call_command("post_report", "nothing", "--json")


def test_the_admin_report_shows_the_figures_and_the_rules(admin_client, story):
    response = admin_client.get(f"/admin/newsletter/postreport/{story.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "A click counts as a machine" in page
    assert "Apple" in page
    assert REPORT in page
    assert "The hidden link" in page
    listing = admin_client.get("/admin/newsletter/postreport/")
    assert f"/admin/newsletter/postreport/{story.pk}/csv/" in listing.content.decode()


def test_the_report_downloads_as_csv(admin_client, story):
    response = admin_client.get(f"/admin/newsletter/postreport/{story.pk}/csv/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert ["Recipients", "6", "", ""] in rows
    assert ["Opens", "", "1", "2"] in rows
    assert [REPORT, "", "1", "1"] in rows


def test_a_report_for_nothing_is_a_404(admin_client):
    for path in (
        "/admin/newsletter/postreport/999/change/",
        "/admin/newsletter/postreport/x/csv/",
    ):
        assert admin_client.get(path).status_code == 404


def test_only_who_may_view_reports_sees_them(client, story):
    author = UserFactory(is_superuser=False)
    client.force_login(author)
    path = f"/admin/newsletter/postreport/{story.pk}/csv/"
    assert client.get(path).status_code == 403
    author.user_permissions.add(Permission.objects.get(codename="view_postreport"))
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("links", [2, 20])
def test_the_report_takes_the_same_queries_however_many_links(links):
    post = PostFactory(slug="suffolk")
    mailing = Mailing.objects.create(kind="post", post=post)
    batch = Batch.objects.create(mailing=mailing, number=1)
    for n in range(links):
        Link.objects.create(mailing=mailing, url=f"https://example.org/{n}", people=n)
        Delivery.objects.create(
            mailing=mailing, batch=batch, subscriber=SubscriberFactory(), status="sent"
        )
    with CaptureQueriesContext(connection) as queries:
        report = post_report(post)
    assert len(report["links"]) == links
    assert len(queries) == 3
