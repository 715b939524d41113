"""Each post's report: what became of its emails, and opens and clicks by people
and machines, in the admin, as CSV and from `manage.py post_report`."""

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from importlib import import_module

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from newsletter import engagement
from newsletter.delivery import mailing_pause, mailing_resume
from newsletter.models import (
    Batch,
    Delivery,
    Engagement,
    Link,
    Mailing,
    MailingHour,
    Subscriber,
    SubscriberTopic,
)
from newsletter.reports import post_report
from newsletter.subscriptions import subscriber_delete, subscriber_unsubscribe
from posts.models import Organisation, Post, Region
from posts.services import post_publish, post_save_from_desk

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
    digest.digest_posts.add(post)
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
    assert report["clicks"] == {"people": 1, "machines": 3}
    counts = link_counts(report)
    assert counts[REPORT] == (1, 1)
    assert counts[DATA] == (0, 1)
    assert counts["hidden"] == (0, 1)


def test_clicks_in_digests_are_counted_apart_from_the_posts_own_email(
    story, admin_client
):
    """Opens count the post's own email only: its clicks beside them must too,
    and a digest's clicks on its link to the post are said apart."""
    report = post_report(story)

    assert report["clicks"] == {"people": 1, "machines": 3}
    assert report["clicks_in_digests"] == {"people": 1, "machines": 0}
    assert link_counts(report).get(POST_URL, (0, 0)) == (0, 0)  # the email's own
    page = admin_client.get(f"/admin/newsletter/postreport/{story.pk}/change/").text
    assert "Clicks in digests" in page
    assert "link to this post" in page


def test_a_digests_clicks_still_count_after_the_post_changes_its_address(story):
    """The digest linked to the post's address as it was then: the author
    changing the slug since (its former address still leads to the post) took
    the digest's clicks out of the report."""
    story.slug = "suffolk-inspection"
    post_save_from_desk(post=story, previous_status=story.status, by=None)

    report = post_report(story)

    assert report["clicks_in_digests"] == {"people": 1, "machines": 0}


def test_a_delay_the_provider_retries_is_not_a_bounce(story, client):
    weekly = Delivery.objects.get(subscriber__email="weekly@example.org")
    delayed = event(weekly, webhooks_test.postmark_bounce("Transient"))
    assert webhooks_test.post_postmark(client, delayed).status_code == 200
    assert Delivery.objects.get(pk=weekly.pk).last_event == "deferred"
    report = post_report(story)
    assert (report["bounced"], report["bounced_soft"]) == (2, 1)


def test_an_out_of_office_reply_leaves_the_email_delivered(story, client):
    # Postmark reports an auto-reply as a "bounce" of type AutoResponder, after
    # the delivery: the email arrived, and an auto-reply says nothing against it.
    reader_a = Delivery.objects.get(
        mailing__post=story, subscriber__email="a@example.org"
    )
    away = event(reader_a, webhooks_test.postmark_bounce("AutoResponder"))
    assert webhooks_test.post_postmark(client, away).status_code == 200
    report = post_report(story)
    assert report["delivered"] == 3
    assert report["bounced"] == 2


def test_reactivating_a_bounced_address_leaves_its_bounce_counted(story, client):
    # Postmark reports the address's reactivation (SubscriptionChange, no longer
    # suppressed) about the message that bounced: the message still bounced.
    reader_c = Delivery.objects.get(
        mailing__post=story, subscriber__email="c@example.org"
    )
    reactivated = {
        **webhooks_test.postmark_subscription_change(),
        "SuppressSending": False,
        "SuppressionReason": None,
        "ChangedAt": "2026-11-27T09:00:00Z",
    }
    assert (
        webhooks_test.post_postmark(client, event(reader_c, reactivated)).status_code
        == 200
    )
    report = post_report(story)
    assert (report["bounced"], report["bounced_hard"]) == (2, 1)


def sent(post, subscriber, at: datetime, kind: str = "post") -> Delivery:
    """A ledger row, by hand: `post` went to `subscriber` at `at`, in its
    announcement or (kind "digest") in a weekly digest of its own."""
    if kind == "post":
        mailing, _ = Mailing.objects.get_or_create(kind="post", post=post)
    else:
        mailing = Mailing.objects.create(
            kind="digest", frequency="weekly", period=at.date(), slot=at
        )
    batch, _ = Batch.objects.get_or_create(mailing=mailing, number=1)
    row = Delivery.objects.create(
        mailing=mailing, batch=batch, subscriber=subscriber, status="sent", sent_at=at
    )
    if kind == "digest":
        row.posts.add(post)
        mailing.digest_posts.add(post)
    return row


def test_a_later_hard_bounce_leaves_an_earlier_soft_one_soft(story, client):
    # Reader d's mailbox was full for Suffolk's post; a week later Kent's email
    # finds the address gone, which suppresses it.
    suffolks_email = Delivery.objects.get(
        mailing__post=story, subscriber__email="d@example.org"
    )
    reader_d = suffolks_email.subscriber
    kent = PostFactory(slug="kent")
    kents_email = sent(kent, reader_d, suffolks_email.sent_at + timedelta(days=7))
    hard = event(kents_email, webhooks_test.postmark_bounce("HardBounce"))
    assert webhooks_test.post_postmark(client, hard).status_code == 200
    reader_d.refresh_from_db()
    assert reader_d.status == Subscriber.Status.BOUNCED
    suffolk = post_report(story)
    assert [suffolk[key] for key in ("bounced", "bounced_hard", "bounced_soft")] == [
        2,
        1,
        1,
    ]
    assert (post_report(kent)["bounced_hard"], post_report(kent)["bounced_soft"]) == (
        1,
        0,
    )


def test_a_reader_who_leaves_is_counted_by_the_latest_email_before_it_only():
    # Monday's post, then Wednesday's, then the reader leaves on Thursday: they
    # left after Wednesday's email, not Monday's as well.
    monday = datetime(2026, 11, 2, 9, tzinfo=UTC)
    reader = SubscriberFactory()
    kent, suffolk = PostFactory(slug="kent"), PostFactory(slug="suffolk")
    sent(kent, reader, monday)
    sent(suffolk, reader, monday + timedelta(days=2))
    Subscriber.objects.filter(pk=reader.pk).update(
        status=Subscriber.Status.UNSUBSCRIBED,
        unsubscribed_at=monday + timedelta(days=3),
    )
    assert post_report(kent)["unsubscribed"] == 0
    assert post_report(suffolk)["unsubscribed"] == 1


def test_a_reader_who_leaves_by_an_older_emails_own_link_is_counted_there_only(
    client, settings
):
    """Monday's post, then Wednesday's; on Thursday the reader uses the provider's
    unsubscribe link in Monday's email. Monday's report counted them (the
    provider said which email), and Wednesday's too (the latest before they
    left): one reader leaving, counted twice."""
    settings.EMAIL_BACKEND = webhooks_test.POSTMARK_BACKEND
    settings.ANYMAIL = {"WEBHOOK_SECRET": webhooks_test.SECRET}
    monday = timezone.now() - timedelta(days=3)
    reader = SubscriberFactory()
    kent, suffolk = PostFactory(slug="kent"), PostFactory(slug="suffolk")
    kents_email = sent(kent, reader, monday)
    sent(suffolk, reader, monday + timedelta(days=2))
    left = event(kents_email, webhooks_test.postmark_subscription_change())
    left["ChangedAt"] = timezone.now().isoformat()
    assert webhooks_test.post_postmark(client, left).status_code == 200
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert post_report(kent)["unsubscribed"] == 1
    assert post_report(suffolk)["unsubscribed"] == 0


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's execution of the counts"
)
def test_whether_a_reader_left_because_of_the_email_is_asked_only_of_those_who_left():
    """Whether a later email came before the reader left reads their ledger: asked
    of every recipient, it was most of a report's time (a second at 100,000
    readers)."""
    monday = datetime(2026, 11, 2, 9, tzinfo=UTC)
    kent = PostFactory(slug="kent")
    readers = SubscriberFactory.create_batch(60)
    for reader in readers:
        sent(kent, reader, monday)
        # In a group of the report's, whose figures count who left too.
        SubscriberTopic.objects.create(subscriber=reader, kind="region", value="kent")
    Subscriber.objects.filter(pk=readers[0].pk).update(
        status=Subscriber.Status.UNSUBSCRIBED, unsubscribed_at=monday + timedelta(1)
    )
    with CaptureQueriesContext(connection) as queries:
        report = post_report(kent)
    assert (report["recipients"], report["unsubscribed"]) == (60, 1)
    counts = [q["sql"] for q in queries if "unsubscribed_at" in q["sql"]]
    assert len(counts) == 2  # the figures, and the groups'
    for sql in counts:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        # Each subquery's scan: run once a reader who left (or bounced), at most.
        runs = re.findall(r"SubPlan \d+\n\s+->.*(?:loops=(\d+)\)|never executed)", plan)
        assert runs, plan
        assert max(int(loops or 0) for loops in runs) <= 1, plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's JIT")
def test_postgresql_compiles_no_statement():
    """The desk's and the reports' counts are estimated at millions, which set
    off JIT compilation that took as long as the counting."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)


def test_the_command_prints_the_same_figures_as_json(story):
    out = io.StringIO()
    call_command("post_report", "suffolk", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed == json.loads(json.dumps(post_report(story)))
    for key in ("recipients", "delivered", "bounced", "complained", "unsubscribed"):
        assert isinstance(printed[key], int)
    assert printed["opens"] == {"people": 1, "machines": 2}
    assert printed["clicks"] == {"people": 1, "machines": 3}
    assert printed["clicks_in_digests"] == {"people": 1, "machines": 0}
    assert {"url", "people", "machines"} <= set(printed["links"][0])
    assert len(printed["first_hours"]["bars"]) == 24
    assert set(printed["groups"]) == {"region", "organisation"}


def test_the_command_finds_a_post_by_the_slug_it_had_and_says_which(story, capsys):
    """An address from an old email or link names the post as it was: the report
    said there was no such post, though the post keeps its former slug."""
    story.slug = "suffolk-inspection"
    post_save_from_desk(post=story, previous_status=story.status, by=None)

    call_command("post_report", "suffolk", "--json")

    printed = capsys.readouterr()
    assert json.loads(printed.out) == json.loads(json.dumps(post_report(story)))
    assert "'suffolk' was this post's slug; it is now 'suffolk-inspection'." in (
        printed.err
    )


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
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    # Excel opened it as the machine's code page: a post on Ynys Môn was garbled.
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert ["Recipients", "6", "", ""] in rows
    assert ["Opens", "", "1", "2"] in rows
    assert ["Clicks", "", "1", "3"] in rows
    assert ["Clicks in digests", "", "1", "0"] in rows
    assert [REPORT, "", "1", "1"] in rows


def test_opens_not_tracked_are_not_counted_not_zero(publish, admin_client, settings):
    SubscriberFactory()
    post = PostFactory(slug="suffolk")
    publish(post)
    settings.NEWSLETTER_TRACK_OPENS = False

    assert post_report(post)["opens"] is None
    page = admin_client.get(f"/admin/newsletter/postreport/{post.pk}/change/")
    assert "not counted: open tracking is off" in page.content.decode()
    response = admin_client.get(f"/admin/newsletter/postreport/{post.pk}/csv/")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert ["Opens", "", "not counted: open tracking is off", ""] in rows
    out = io.StringIO()
    call_command("post_report", "suffolk", stdout=out)
    assert "not counted: open tracking is off" in out.getvalue()

    settings.NEWSLETTER_TRACK_OPENS = True
    assert post_report(post)["opens"] == {"people": 0, "machines": 0}


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


# The first hours: when opens and clicks came, after the email went out.

WENT_OUT = datetime(2026, 11, 2, 10, 40, tzinfo=UTC)


@pytest.fixture
def sent_at_twenty_to_eleven(publish, monkeypatch):
    """Suffolk's post went to one reader at 10:40; `at(hours, minutes)` sets the
    clock to that long after 10:00."""
    SubscriberFactory()
    post = PostFactory(slug="suffolk", body=f"Read [the report]({REPORT}).")
    publish(post)
    Mailing.objects.filter(post=post).update(created_at=WENT_OUT)
    Batch.objects.filter(mailing__post=post).update(claimed_at=WENT_OUT)
    Delivery.objects.filter(mailing__post=post).update(sent_at=WENT_OUT)

    def at(hours: int, minutes: int = 0, seconds: int = 0) -> None:
        moment = WENT_OUT.replace(minute=0) + timedelta(
            hours=hours, minutes=minutes, seconds=seconds
        )
        monkeypatch.setattr(timezone, "now", lambda: moment)

    return post, redirects(mail.outbox[0]), at


def bars(post) -> dict[str, tuple[int, int, int, int]]:
    """The chart's bars that are not empty: (opens by people, by machines,
    clicks by people, by machines) by hours after the email went out."""
    engagement.click_counts_flush()  # beat's minute has passed
    found = {}
    for bar in post_report(post)["first_hours"]["bars"]:
        figures = (*bar["opens"].values(), *bar["clicks"].values())
        if any(figures):
            found[bar["hours"]] = figures
    return found


def test_the_first_hours_count_clicks_and_opens_in_the_bar_of_their_hour(
    client, sent_at_twenty_to_eleven
):
    post, links, at = sent_at_twenty_to_eleven
    delivery = Delivery.objects.get(mailing__post=post)
    at(0, 50)
    click(client, links[REPORT], address="192.0.2.1")
    at(2, 59, 59)
    click(client, links[REPORT], address="192.0.2.2")
    engagement.open_record(delivery=delivery, machine=True, at=timezone.now())
    at(3)
    click(client, links[REPORT], address="192.0.2.3")
    click(client, links[REPORT], agent=SCANNER, address="203.0.113.9")
    engagement.open_record(delivery=delivery, machine=False, at=timezone.now())
    at(71, 59)
    click(client, links[REPORT], address="192.0.2.4")
    at(72)  # the fourth day: counted on the link, not in the chart
    click(client, links[REPORT], address="192.0.2.5")

    engagement.click_counts_flush()
    report = post_report(post)
    assert report["first_hours"]["from"] == "2026-11-02T10:00:00+00:00"
    assert len(report["first_hours"]["bars"]) == 24
    assert bars(post) == {
        "0-3": (0, 1, 2, 0),
        "3-6": (1, 0, 1, 1),
        "69-72": (0, 0, 1, 0),
    }
    assert report["clicks"] == {"people": 5, "machines": 1}


def test_a_scanners_burst_moves_its_earlier_click_to_machines_in_its_own_hour(
    client, sent_at_twenty_to_eleven
):
    post, links, at = sent_at_twenty_to_eleven
    at(5, 59, 59)
    click(client, links[REPORT], address="203.0.113.7")  # looks like a person
    at(6)
    click(client, links["hidden"], address="203.0.113.7")
    assert bars(post) == {"3-6": (0, 0, 0, 1), "6-9": (0, 0, 0, 1)}
    assert post_report(post)["clicks"] == {"people": 0, "machines": 2}


def test_the_first_hours_start_when_a_held_email_went_out(
    client, django_capture_on_commit_callbacks, monkeypatch
):
    """An announcement held as it was made (paused, or its post taken down at
    once) went out days later: its chart started when it was made, and the
    clicks of its real first hours fell outside it."""
    SubscriberFactory()
    post = PostFactory(slug="suffolk", body=f"Read [the report]({REPORT}).")
    with django_capture_on_commit_callbacks(execute=False):
        post_publish(post=post)
    mailing = Mailing.objects.get(post=post)
    assert mailing_pause(mailing_id=mailing.pk)
    resumed = mailing.created_at + timedelta(days=4)
    monkeypatch.setattr(timezone, "now", lambda: resumed)
    with django_capture_on_commit_callbacks(execute=True):
        assert mailing_resume(mailing_id=mailing.pk)
    monkeypatch.setattr(timezone, "now", lambda: resumed + timedelta(hours=1))
    click(client, redirects(mail.outbox[0])[REPORT], address="192.0.2.1")

    found = bars(post)

    went_out = resumed.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    assert post_report(post)["first_hours"]["from"] == went_out.isoformat()
    assert sum(figures[2] for figures in found.values()) == 1


def test_digests_sent_before_rounds_recorded_their_posts_still_count():
    """The newsletter migration that records each round's posts fills them in
    from the digests already sent."""
    post, other = PostFactory(slug="suffolk"), PostFactory(slug="kent")
    digest = Mailing.objects.create(
        kind="digest", frequency="weekly", period="2026-11-30"
    )
    batch = Batch.objects.create(mailing=digest, number=1)
    for held in ([post], [post, other]):
        row = Delivery.objects.create(
            mailing=digest, batch=batch, subscriber=SubscriberFactory(), status="sent"
        )
        row.posts.set(held)
    assert post_report(post)["through_digests"] == 0
    migration = import_module("newsletter.migrations.0012_mailing_digest_posts")
    with connection.cursor() as cursor:
        cursor.execute(migration.Migration.operations[-1].sql)
    assert set(digest.digest_posts.all()) == {post, other}
    assert post_report(post)["through_digests"] == 2
    assert post_report(other)["through_digests"] == 1


@pytest.mark.parametrize("announcement", [False, True], ids=["none", "to-nobody"])
def test_a_post_only_in_digests_has_no_first_hours_to_chart(admin_client, announcement):
    """Its readers all hear by digest: it has no announcement, or one that went to
    nobody, whose report drew 72 hours of zeros, as if nobody had opened it."""
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    if announcement:
        Mailing.objects.create(kind="post", post=post, status="done")
    digest = Mailing.objects.create(
        kind="digest", frequency="daily", period="2026-11-30"
    )
    batch = Batch.objects.create(mailing=digest, number=1)
    carried = Delivery.objects.create(
        mailing=digest, batch=batch, subscriber=SubscriberFactory(), status="sent"
    )
    carried.posts.add(post)
    digest.digest_posts.add(post)
    assert post_report(post)["first_hours"] == {"from": None, "bars": []}
    page = admin_client.get(f"/admin/newsletter/postreport/{post.pk}/change/")
    assert "only in digests: there are no first hours to chart" in page.content.decode()


# By what readers follow: regions and organisations, no group under ten named.


def readers_following(
    mailing: Mailing, count: int, *topics: tuple[str, str], **delivery
) -> list[Subscriber]:
    """`count` readers who follow the topics and were sent the mailing."""
    batch, _ = Batch.objects.get_or_create(mailing=mailing, number=1)
    readers = []
    for _ in range(count):
        reader = SubscriberFactory()
        for kind, value in topics:
            SubscriberTopic.objects.create(subscriber=reader, kind=kind, value=value)
        Delivery.objects.create(
            mailing=mailing,
            batch=batch,
            subscriber=reader,
            **{
                "status": "sent",
                "sent_at": WENT_OUT,
                "last_event": "delivered",
                **delivery,
            },
        )
        readers.append(reader)
    return readers


EAST = ("region", "east-of-england")
WALES = ("region", "wales")
SOUTH_EAST = ("region", "south-east")
NACRO = ("organisation", "nacro")
INTERSERVE = ("organisation", "interserve")
SODEXO = ("organisation", "sodexo-justice-services")


@pytest.fixture
def followed():
    """Suffolk's post went to readers who follow regions and organisations."""
    Region.objects.create(slug="east-of-england", name="East of England")
    Organisation.objects.create(slug="nacro", name="Nacro")
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    mailing = Mailing.objects.create(kind="post", post=post)
    # East of England: 12 readers, one bounced, one who left the next day.
    readers_following(mailing, 9, EAST, NACRO)
    readers_following(mailing, 1, EAST, NACRO, last_event="bounced")
    [leaver] = readers_following(mailing, 1, EAST, NACRO)
    Subscriber.objects.filter(pk=leaver.pk).update(
        status="unsubscribed", unsubscribed_at=WENT_OUT + timedelta(days=1)
    )
    readers_following(mailing, 1, EAST)
    # Two small regions, seven readers together: not shown even together.
    readers_following(mailing, 4, WALES)
    readers_following(mailing, 3, SOUTH_EAST, INTERSERVE, SODEXO)
    # Two small organisations, ten readers together (three follow both).
    readers_following(mailing, 4, INTERSERVE)
    readers_following(mailing, 3, SODEXO, last_event="bounced")
    # Readers who follow everything are in no group.
    readers_following(mailing, 20)
    return post


def test_a_cancelled_mailing_counts_as_recipients_only_who_it_was_sent_or_meant_for():
    # Cancelled half way: two sent, one refused, one uncertain, one still queued
    # when the batch was in flight, three skipped (never sent).
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    mailing = Mailing.objects.create(kind="post", post=post, status="cancelled")
    for status, count in (
        ("sent", 2),
        ("failed", 1),
        ("uncertain", 1),
        ("queued", 1),
        ("skipped", 3),
    ):
        at = WENT_OUT if status == "sent" else None
        readers_following(mailing, count, status=status, sent_at=at, last_event="")
    report = post_report(post)
    assert (report["recipients"], report["as_published"]) == (5, 5)
    assert report["accepted"] == 2
    assert (report["failed"], report["uncertain"], report["queued"]) == (1, 1, 1)
    assert report["skipped"] == 3
    assert "Skipped" in report["rules"]["deliveries"]


def test_readers_who_erased_their_data_since_still_count_as_its_emails_went(
    publish, admin_client
):
    """The post's mailing still counts the emails sent and refused to readers
    who erased their data since (their batches keep them); the report lost them
    with their ledger rows, and said fewer recipients than its mailing sent."""
    for name in "abcd":
        SubscriberFactory(email=f"{name}@example.org")
    post = PostFactory(slug="suffolk")
    publish(post)
    announcement = Mailing.objects.get(post=post)
    refused = announcement.deliveries.get(subscriber__email="d@example.org")
    Delivery.objects.filter(pk=refused.pk).update(status=Delivery.Status.FAILED)
    Batch.objects.filter(mailing=announcement).update(sent=3, failed=1)
    for name in "cd":
        subscriber_delete(
            subscriber=Subscriber.objects.get(email=f"{name}@example.org")
        )

    report = post_report(post)
    assert (report["recipients"], report["as_published"]) == (4, 4)
    assert (report["accepted"], report["failed"]) == (3, 1)
    assert "erased their data" in report["rules"]["deliveries"]
    mailing_page = admin_client.get(
        f"/admin/newsletter/mailing/{announcement.pk}/change/"
    ).content.decode()
    assert re.search(r"Sent:?</label>\s*<div class=\"readonly\">3<", mailing_page)


def test_groups_of_ten_or_more_are_shown_and_smaller_ones_folded(followed):
    groups = post_report(followed)["groups"]
    assert groups["region"] == [
        {
            "slug": "east-of-england",
            "name": "East of England",
            "readers": 12,
            "delivered": 11,
            "bounced": 1,
            "unsubscribed": 1,
        },
        {
            "slug": "",
            "name": "Other regions",
            "folded": 2,
            "readers": None,
            "delivered": None,
            "bounced": None,
            "unsubscribed": None,
        },
    ]
    assert groups["organisation"] == [
        {
            "slug": "nacro",
            "name": "Nacro",
            "readers": 11,
            "delivered": 10,
            "bounced": 1,
            "unsubscribed": 1,
        },
        {
            "slug": "",
            "name": "Other organisations",
            "folded": 2,
            "readers": 10,
            "delivered": 7,
            "bounced": 3,
            "unsubscribed": 0,
        },
    ]


def test_the_admin_report_names_no_group_under_ten(admin_client, followed):
    page = admin_client.get(f"/admin/newsletter/postreport/{followed.pk}/change/")
    text = page.content.decode()
    assert "East of England" in text
    assert "Other regions (2 smaller groups)" in text
    assert "Fewer than 10 readers together: not shown." in text
    for small in ("wales", "south-east", "interserve", "sodexo"):
        assert small not in text.lower()
    assert "Opens and clicks are not shown by group" in text
    rows = list(
        csv.reader(
            io.StringIO(
                admin_client.get(
                    f"/admin/newsletter/postreport/{followed.pk}/csv/"
                ).content.decode("utf-8-sig")
            )
        )
    )
    assert ["region", "readers", "delivered", "bounced", "unsubscribed"] in rows
    assert ["East of England", "12", "11", "1", "1"] in rows
    assert ["Other regions", "", "", "", ""] in rows


def test_the_command_prints_the_groups_and_hides_the_small_ones(followed):
    out = io.StringIO()
    call_command("post_report", "suffolk", stdout=out)
    printed = out.getvalue()
    assert (
        "region East of England: readers 12, delivered 11, bounced 1, unsubscribed 1"
        in printed
    )
    assert "region Other regions: fewer than 10 readers together, not shown" in printed
    assert "organisation Other organisations: readers 10, delivered 7" in printed


def queries_for_a_report(links: int, readers: int) -> int:
    """The queries one report takes for a post with that many links and readers
    (of a big region and a small one, a big organisation and a small one; all
    agreed to per-reader engagement, and opened the email and followed a link)."""
    post = PostFactory()
    mailing = Mailing.objects.create(kind="post", post=post)
    for n in range(links):
        Link.objects.create(mailing=mailing, url=f"https://example.org/{n}", people=n)
    MailingHour.objects.record(
        mailing_id=mailing.pk, at=mailing.created_at, clicks_people=1
    )
    big = readers_following(mailing, readers - 3, EAST, NACRO)
    small = readers_following(mailing, 3, WALES, INTERSERVE)
    agree(*big, *small)
    link = Link.objects.filter(mailing=mailing).first()
    for reader in big + small:
        for kind in ("open", "click"):
            Engagement.objects.create(
                subscriber=reader,
                mailing=mailing,
                kind=kind,
                link=link if kind == "click" else None,
                at=WENT_OUT,
            )
    with CaptureQueriesContext(connection) as queries:
        report = post_report(post)
    assert len(report["links"]) == links
    assert report["recipients"] == readers
    return len(queries)


def test_the_report_takes_the_same_queries_however_many_links_and_readers():
    assert queries_for_a_report(links=2, readers=15) == 8
    assert queries_for_a_report(links=20, readers=150) == 8


def test_groups_engagement_takes_one_query_more_however_many_readers(settings):
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    assert queries_for_a_report(links=2, readers=15) == 9
    assert queries_for_a_report(links=20, readers=150) == 9


def test_seed_demo_gives_the_demo_posts_a_history_to_report_once():
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    suffolk = Post.objects.get(slug="suffolk-probation-inspection-2017")
    assert Mailing.objects.filter(post=suffolk).count() == 1
    report = post_report(suffolk)
    assert report["recipients"] == report["accepted"] > 100
    assert 0 < report["bounced"] < 10 and report["delivered"] > 100
    assert report["opens"]["people"] > 0 and report["opens"]["machines"] > 0
    charted = {
        kind: {
            who: sum(bar[kind][who] for bar in report["first_hours"]["bars"])
            for who in ("people", "machines")
        }
        for kind in ("opens", "clicks")
    }
    assert charted == {"opens": report["opens"], "clicks": report["clicks"]}
    assert report["clicks"]["machines"] > report["clicks"]["people"] > 0
    assert report["groups"]["region"][0]["name"] == "East of England"
    # Only the demo's own readers are given a history.
    assert not Delivery.objects.exclude(subscriber__email__startswith="demo-reader-")


def test_seed_demo_run_again_makes_up_no_emails_for_the_authors_own_post(publish):
    """`make run` loads the demo each time it starts: a post the author published
    since without emailing readers was given the demo's made-up announcement,
    "sent" to 100 readers with their bounces and clicks, in its report."""
    call_command("seed_demo", stdout=io.StringIO())
    own = PostFactory(slug="own", email_subscribers=False)
    publish(own)

    call_command("seed_demo", stdout=io.StringIO())

    assert not Mailing.objects.filter(post=own).exists()
    assert post_report(own)["recipients"] == 0


# By what readers follow, with per-reader engagement on: opens and clicks from
# the readers who agreed, in groups where ten or more of them did.

KENT_URL = "http://127.0.0.1:8000/posts/kent/"


def agree(*readers: Subscriber) -> None:
    Subscriber.objects.filter(pk__in=[r.pk for r in readers]).update(
        engagement_agreed_at=WENT_OUT
    )


@pytest.fixture
def agreeing(settings):
    """With per-reader engagement on, Suffolk's post went to 15 readers in the
    East of England (12 agreed) and 12 in Wales (4 agreed), and in a digest to a
    16th in the East, who agreed; they opened and followed its links, and so did
    readers who did not agree, and a digest reader it did not reach."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    Region.objects.create(slug="east-of-england", name="East of England")
    Region.objects.create(slug="wales", name="Wales")
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    announcement = Mailing.objects.create(kind="post", post=post)
    east = readers_following(announcement, 15, EAST)
    wales = readers_following(announcement, 12, WALES)
    digest = Mailing.objects.create(
        kind="digest", frequency="weekly", period="2026-11-30"
    )
    [digest_reader, elsewhere] = readers_following(digest, 2, EAST)
    Delivery.objects.get(mailing=digest, subscriber=digest_reader).posts.add(post)
    digest.digest_posts.add(post)
    agree(*east[:12], *wales[:4], digest_reader, elsewhere)
    later = announcement.created_at + timedelta(hours=1)
    report = Link.objects.create(mailing=announcement, url=REPORT)
    hidden = Link.objects.create(
        mailing=announcement, url="http://127.0.0.1:8000/", hidden=True
    )
    to_post = Link.objects.create(mailing=digest, url=POST_URL)
    to_kent = Link.objects.create(mailing=digest, url=KENT_URL)

    def opened(mailing: Mailing, reader: Subscriber, *, machine=False) -> None:
        delivery = Delivery.objects.get(mailing=mailing, subscriber=reader)
        engagement.open_record(delivery=delivery, machine=machine, at=later)

    def clicked(link: Link, reader: Subscriber, *, agent=BROWSER, after=0) -> None:
        # What the reader's email carries: their signed part, if they agreed.
        html = engagement.reader_part_add(
            f'href="http://127.0.0.1:8000/r/{engagement.click_token(link.pk)}/"',
            subscriber_id=reader.pk,
        )
        part = re.search(r"\?reader=([^\"]+)", html)
        engagement.click_record(
            token=engagement.click_token(link.pk),
            head=False,
            user_agent=agent,
            client=f"192.0.2.{reader.pk % 250}",
            now=later + timedelta(seconds=after),
            reader=part[1] if part else "",
        )

    opened(announcement, east[0])
    opened(announcement, east[0], machine=True)  # Apple's proxy
    opened(announcement, east[1])
    opened(announcement, east[12])  # did not agree: not theirs
    clicked(report, east[0])
    clicked(report, east[1], agent=SCANNER)
    clicked(hidden, east[2])
    clicked(report, east[13])  # did not agree
    opened(digest, digest_reader)
    clicked(to_post, digest_reader)
    # Another post's link in the digest, a minute later (at once, it would be a
    # scanner's burst).
    clicked(to_kent, digest_reader, after=60)
    opened(digest, elsewhere)  # the digest did not carry this post to them
    clicked(to_post, elsewhere)
    for reader in wales[:4]:
        opened(announcement, reader)
        clicked(report, reader)
    engagement.click_counts_flush()  # beat's minute has passed
    return post


EAST_WITH_ENGAGEMENT = {
    "slug": "east-of-england",
    "name": "East of England",
    "readers": 16,
    "delivered": 16,
    "bounced": 0,
    "unsubscribed": 0,
    "agreed": 13,
    "opens": {"people": 3, "machines": 1},
    "clicks": {"people": 2, "machines": 2},
}
WALES_WITHOUT_ENGAGEMENT = {
    "slug": "wales",
    "name": "Wales",
    "readers": 12,
    "delivered": 12,
    "bounced": 0,
    "unsubscribed": 0,
    "agreed": None,
    "opens": None,
    "clicks": None,
}


def test_groups_count_the_opens_and_clicks_of_the_readers_who_agreed(agreeing):
    report = post_report(agreeing)
    assert report["readers_agreed"] == 17
    assert report["groups"]["region"] == [
        EAST_WITH_ENGAGEMENT,
        WALES_WITHOUT_ENGAGEMENT,
    ]
    assert report["groups"]["organisation"] == []
    assert "only the readers who agreed" in report["rules"]["groups"]
    assert "17 of this post's readers" in report["rules"]["groups"]


def test_the_admin_csv_and_command_say_the_groups_engagement_is_only_who_agreed(
    admin_client, agreeing
):
    page = admin_client.get(f"/admin/newsletter/postreport/{agreeing.pk}/change/")
    text = page.content.decode()
    assert "count only the 17 readers of this post who agreed" in text
    assert "Fewer than 10 agreed: opens and clicks not shown." in text
    assert "Opens and clicks are not shown by group" not in text
    rows = list(
        csv.reader(
            io.StringIO(
                admin_client.get(
                    f"/admin/newsletter/postreport/{agreeing.pk}/csv/"
                ).content.decode()
            )
        )
    )
    assert [
        "region",
        "readers",
        "delivered",
        "bounced",
        "unsubscribed",
        "agreed",
        "opens people",
        "opens machines",
        "clicks people",
        "clicks machines",
    ] in rows
    assert ["East of England", "16", "16", "0", "0", "13", "3", "1", "2", "2"] in rows
    assert ["Wales", "12", "12", "0", "0", "", "", "", "", ""] in rows
    out = io.StringIO()
    call_command("post_report", "suffolk", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["readers_agreed"] == 17
    assert printed["groups"]["region"] == [
        EAST_WITH_ENGAGEMENT,
        WALES_WITHOUT_ENGAGEMENT,
    ]
    out = io.StringIO()
    call_command("post_report", "suffolk", stdout=out)
    assert "only the 17 readers who agreed" in out.getvalue()
    assert (
        "region Wales: readers 12, delivered 12, bounced 0, unsubscribed 0, "
        "agreed not shown, opens people not shown" in out.getvalue()
    )


def test_with_the_setting_off_groups_show_no_opens_or_clicks(
    admin_client, agreeing, settings
):
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    report = post_report(agreeing)
    assert report["readers_agreed"] is None
    east = {
        k: v
        for k, v in EAST_WITH_ENGAGEMENT.items()
        if k in report["groups"]["region"][0]
    }
    assert report["groups"]["region"][0] == east
    assert set(east) == {
        "slug",
        "name",
        "readers",
        "delivered",
        "bounced",
        "unsubscribed",
    }
    page = admin_client.get(f"/admin/newsletter/postreport/{agreeing.pk}/change/")
    text = page.content.decode()
    assert "Opens and clicks are not shown by group" in text
    assert "Agreed to per-reader engagement" not in text


def test_small_groups_folded_together_show_their_engagement_once_per_reader(
    settings,
):
    """Wales and the South East have 7 readers each, 12 together (two follow
    both); all agreed and opened once."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    mailing = Mailing.objects.create(kind="post", post=post)
    readers = [
        *readers_following(mailing, 5, WALES),
        *readers_following(mailing, 5, SOUTH_EAST),
        *readers_following(mailing, 2, WALES, SOUTH_EAST),
    ]
    agree(*readers)
    for delivery in Delivery.objects.filter(mailing=mailing):
        engagement.open_record(delivery=delivery, machine=False, at=WENT_OUT)
    assert post_report(post)["groups"]["region"] == [
        {
            "slug": "",
            "name": "Other regions",
            "folded": 2,
            "readers": 12,
            "delivered": 12,
            "bounced": 0,
            "unsubscribed": 0,
            "agreed": 12,
            "opens": {"people": 12, "machines": 0},
            "clicks": {"people": 0, "machines": 0},
        }
    ]


def test_readers_skipped_are_not_among_the_readers_who_agreed(settings):
    """The mailing cancelled before three readers who agreed were sent it: they
    are not its readers, and the page said the groups' figures were of 13."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    mailing = Mailing.objects.create(kind="post", post=post, status="cancelled")
    sent = readers_following(mailing, 10, EAST)
    skipped = readers_following(
        mailing, 3, EAST, status="skipped", sent_at=None, last_event=""
    )
    agree(*sent, *skipped)
    report = post_report(post)
    assert report["recipients"] == 10
    assert report["readers_agreed"] == 10
    assert "10 of this post's readers" in report["rules"]["groups"]
    assert report["groups"]["region"][0]["agreed"] == 10


def test_the_csv_never_hands_a_spreadsheet_a_formula(admin_client):
    # A region's name is the desk's text, and a spreadsheet runs a cell that
    # starts with =, +, - or @.
    Region.objects.create(slug="wales", name='=HYPERLINK("https://evil.example")')
    post = PostFactory(slug="suffolk", announced_at=WENT_OUT)
    readers_following(Mailing.objects.create(kind="post", post=post), 10, WALES)
    response = admin_client.get(f"/admin/newsletter/postreport/{post.pk}/csv/")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert ['\'=HYPERLINK("https://evil.example")', "10", "10", "0", "0"] in rows
    assert not [c for row in rows for c in row if c.startswith(("=", "+", "-", "@"))]


def test_a_link_that_leads_nowhere_is_marked_for_the_author(publish, admin_client):
    nowhere = "https:///www.justiceinspectorates.gov.uk/hmiprobation/suffolk/"
    SubscriberFactory()
    post = PostFactory(slug="suffolk", body=f"Read [the report]({nowhere}).")
    publish(post)

    report = post_report(post)

    [broken] = [link for link in report["links"] if link["url"] == nowhere]
    assert broken["leads_nowhere"]
    assert not any(link["leads_nowhere"] for link in report["links"] if link != broken)
    page = admin_client.get(f"/admin/newsletter/postreport/{post.pk}/change/").text
    assert "Leads nowhere: readers who follow it get" in page
