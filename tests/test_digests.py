"""Daily and weekly digests: a mailing of the one delivery engine, started by the
beat task at the hour (and day) set in the admin, holding only matched posts the
reader has not been sent, once per period, never empty, and sent in batches with
every guarantee a post's announcement has."""

import json
import math
import re
import threading
from collections import defaultdict
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage
from django.db import connection, connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.text import wrap

from benchmarks.fake_esp import postmark_messages
from newsletter import delivery, digests, engagement, esp
from newsletter.delivery import planner, sender
from newsletter.delivery.ledger import batch_recipients
from newsletter.delivery.postmark import EmailBackend
from newsletter.delivery.ratelimit import _redis
from newsletter.desk import desk_for
from newsletter.digest_tasks import start_due_digests
from newsletter.emails import (
    Encoded,
    preferences_url,
    render_email,
    unsubscribe_url,
)
from newsletter.engagement import LinkTracker, reader_part_add
from newsletter.models import (
    Batch,
    Delivery,
    DigestSettings,
    Mailing,
    Subscriber,
    SubscriberTopic,
)
from newsletter.reports import post_report
from newsletter.subscriptions import (
    subscriber_pause,
    subscriber_unsubscribe,
    topics_set,
)
from newsletter.tasks import send_batch
from newsletter.tokens import Purpose, make_token, read_token
from posts.models import Post, Sponsorship
from posts.services import post_publish, post_save_from_desk

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    PostFactory,
    StaffFactory,
    SubscriberFactory,
    UserFactory,
    admin_post_form_of,
    confirm_link,
    desk_action,
    taken_down_once_its_readers_are_read,
    uncertain_long_enough_to_ask,
    unpublish_at_the_desk,
)
from .locks import until_set_or_waiting_for_a_lock
from .test_comment_digest import WorkerKilled
from .test_engagement import click, counts, redirects

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def clock(monkeypatch):
    """The one fake besides the email provider: the time of day. Monday 23
    November 2026 is a Monday; digests go out at 07:00, weekly on Mondays."""

    def set_to(day: int, hour: int, minute: int = 0) -> None:
        moment = datetime(2026, 11, day, hour, minute, tzinfo=LONDON)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    set_to(23, 6)
    DigestSettings.objects.create(hour=7, weekday=DigestSettings.Weekday.MONDAY)
    return set_to


@pytest.fixture
def publish(django_capture_on_commit_callbacks):
    def publish(title: str, area=None, **fields):
        post = PostFactory(title=title, **fields)
        if area is not None:
            InspectionFactory(post=post, area=area)
        with django_capture_on_commit_callbacks(execute=True):
            post_publish(post=post)
        return post

    return publish


def reader(email: str, *topics: tuple[str, str, str]):
    # The factory's default confirmed_at reads the real clock, not the fixture's.
    subscriber = SubscriberFactory(email=email, confirmed_at=timezone.now())
    for kind, value, frequency in topics:
        SubscriberTopic.objects.create(
            subscriber=subscriber, kind=kind, value=value, frequency=frequency
        )
    return subscriber


def run_beat(django_capture_on_commit_callbacks) -> list:
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        start_due_digests.delay()
    return list(mail.outbox)


@pytest.fixture
def beat(django_capture_on_commit_callbacks):
    return lambda: run_beat(django_capture_on_commit_callbacks)


def daily_round() -> Mailing:
    return Mailing.objects.get(kind=Mailing.Kind.DIGEST, frequency="daily")


def test_a_daily_digest_holds_the_days_posts_once_at_the_set_hour(clock, publish, beat):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    publish("Wales: a good report")
    assert mail.outbox == []  # a digest reader gets nothing as posts are published
    clock(23, 6, 45)
    assert beat() == []  # not yet the hour
    clock(23, 7, 5)
    [digest] = beat()
    assert digest.to == ["daily@example.org"]
    assert digest.subject.startswith("Your daily digest: 2 new posts")
    assert "Suffolk: caseloads too high" in digest.body
    assert "Wales: a good report" in digest.alternatives[0].content
    clock(23, 8, 5)
    assert beat() == []  # at most once per day
    assert daily_round().status == Mailing.Status.DONE


def test_an_imported_readers_first_digest_holds_nothing_from_before_the_import(
    clock, publish, beat
):
    """The import keeps when they consented elsewhere (a week before, say): the
    posts of that week, before they joined this list, are not theirs."""
    clock(23, 6, 10)
    publish("Before the import")
    clock(23, 6, 20)
    imported = reader("imported@example.org", ("everything", "", "daily"))
    Subscriber.objects.filter(pk=imported.pk).update(
        confirmed_at=datetime(2026, 11, 16, 9, tzinfo=LONDON)
    )
    clock(23, 6, 30)
    publish("After the import")
    clock(23, 7, 5)
    [digest] = beat()
    assert "After the import" in digest.body
    assert "Before the import" not in digest.body


def test_creating_a_round_twice_makes_one_mailing(clock):
    slot = digests.slot_of(timezone.now())
    first = delivery.mailing_create_for_digest(frequency="daily", slot=slot)
    again = delivery.mailing_create_for_digest(frequency="daily", slot=slot)
    assert first == again
    assert Mailing.objects.count() == 1


def test_the_next_digest_holds_only_what_is_new_and_none_goes_when_nothing_is(
    clock, publish, beat
):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("First post")
    clock(23, 7, 5)
    assert len(beat()) == 1
    clock(24, 7, 5)
    assert beat() == []  # nothing new: no empty digest
    assert not Delivery.objects.filter(mailing__period="2026-11-24").exists()
    clock(24, 12)
    publish("Second post")
    clock(25, 7, 5)
    [digest] = beat()
    assert "Second post" in digest.body
    assert "First post" not in digest.body


def test_a_weekly_digest_goes_on_the_set_day_with_the_weeks_matching_posts(
    clock, publish, beat
):
    suffolk = AreaFactory(slug="suffolk")
    reader("weekly@example.org", ("area", "suffolk", "weekly"))
    clock(24, 9)
    publish("On Suffolk", area=suffolk)
    publish("On somewhere else", area=AreaFactory(slug="kent"))
    clock(25, 7, 5)
    assert beat() == []  # a Wednesday
    clock(30, 7, 5)  # the next Monday
    [digest] = beat()
    assert digest.subject.startswith("Your weekly digest: 1 new post ")
    assert "On Suffolk" in digest.body
    assert "On somewhere else" not in digest.body
    clock(30, 9)
    assert beat() == []


def test_a_post_whose_digest_the_provider_refused_comes_in_the_next_one(
    clock, publish, beat
):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Refused once")
    clock(23, 7, 5)
    assert len(beat()) == 1
    Delivery.objects.update(status=Delivery.Status.FAILED)
    clock(24, 7, 5)
    [again] = beat()
    assert "Refused once" in again.body
    clock(25, 7, 5)
    assert beat() == []  # received now: not a third time


def test_a_post_sent_instantly_never_reappears_in_a_digest(clock, publish, beat):
    suffolk = AreaFactory(slug="suffolk")
    reader(
        "both@example.org",
        ("area", "suffolk", "instant"),
        ("everything", "", "daily"),
    )
    clock(23, 6, 30)
    publish("On Suffolk", area=suffolk)
    assert [m.to for m in mail.outbox] == [["both@example.org"]]
    publish("On Kent", area=AreaFactory(slug="kent"))
    clock(23, 7, 5)
    [digest] = beat()
    assert "On Kent" in digest.body
    assert "On Suffolk" not in digest.body


def test_a_post_a_digest_carried_is_not_announced_to_that_reader_again(
    clock, beat, django_capture_on_commit_callbacks
):
    # The announcement's planning waits behind a backlog while the 07:00 digest
    # carries the post; the reader then turns to instant, before it is planned.
    reader("switched@example.org", ("everything", "", "daily"))
    reader("instant@example.org", ("everything", "", "instant"))
    clock(23, 6, 30)
    post_publish(post=PostFactory(title="On Suffolk"))  # its doorbell not answered
    clock(23, 7, 5)
    [digest] = beat()
    assert digest.to == ["switched@example.org"] and "On Suffolk" in digest.body
    SubscriberTopic.objects.filter(subscriber__email="switched@example.org").update(
        frequency="instant"
    )
    mail.outbox.clear()
    announcement = Mailing.objects.get(kind=Mailing.Kind.POST)
    with django_capture_on_commit_callbacks(execute=True):
        while delivery.mailing_plan_page(mailing_id=announcement.pk):
            pass
    assert [m.to for m in mail.outbox] == [["instant@example.org"]]


def choose_at_the_preference_page(subscriber: Subscriber, **choices) -> str:
    """What the reader does: ticks their choices in the preference centre, saves;
    the page that answers."""
    token = make_token(subscriber, Purpose.PREFERENCES)
    response = Client().post(f"/preferences/{token}/topics/", choices)
    assert response.status_code == 200, response.text
    return response.text


def posts_received(messages: list, address: str) -> dict[str, int]:
    """How many times each post reached `address`, by title: a post's own email
    (its title the subject), or a digest listing it; not the related posts an
    email suggests. Only what arrived is in it: compare it whole, so a post that
    came twice, or should not have come, fails."""
    titles = []
    for message in messages:
        if message.to != [address]:
            continue
        # A digest by its subject's form (email/digest-subject.txt), not by the
        # word: a post titled "Waiting for Tuesday's digest" is its own subject.
        if re.match(
            r"(Your daily|Your weekly|Since your last) digest: ", message.subject
        ):
            titles += re.findall(r"^(.+) \(\d+ \w+ \d{4}\)$", message.body, re.M)
        else:
            titles.append(message.subject)
    return {title: titles.count(title) for title in titles}


@pytest.mark.parametrize("where", ["preference page", "desk"])
def test_a_daily_reader_turning_to_instant_gets_what_their_digest_held_once(
    clock, publish, beat, where
):
    """The post waiting for Tuesday's digest was announced while they were a
    digest reader, so not to them: it comes in one last digest at their hour,
    whether they turned on their preference page or the desk turned them."""
    turning = reader("turning@example.org", ("everything", "", "daily"))
    got = []
    clock(23, 6, 30)
    publish("Sent in Monday's digest")
    clock(23, 7, 5)
    got += beat()
    clock(23, 12)
    publish("Waiting for Tuesday's digest")
    clock(23, 13)
    if where == "desk":
        change_topics_at_the_desk(turning, ("everything", "", "instant"))
    else:
        choose_at_the_preference_page(turning, frequency="instant")
    # The reader's page at the desk says so.
    desk = Client()
    desk.force_login(StaffFactory(role="Administrator"))
    page = desk.get(f"/admin/newsletter/subscriber/{turning.pk}/change/").text
    assert re.search(
        r"Owed a last digest, of posts announced until:</label>\s*"
        r'<div class="readonly">23 Nov 2026, 1 p\.m\.</div>',
        page,
    ), page
    clock(23, 14)
    mail.outbox.clear()
    publish("Published after the switch")
    got += mail.outbox
    for day in (24, 25, 26):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {
        "Sent in Monday's digest": 1,
        "Waiting for Tuesday's digest": 1,
        "Published after the switch": 1,
    }
    assert Delivery.objects.filter(subscriber=turning).count() == 3


def test_a_weekly_reader_turning_to_instant_gets_what_waited_at_their_next_hour(
    clock, publish, beat
):
    """Not on their weekday, days later: they asked for posts as published."""
    turning = reader("turning@example.org", ("everything", "", "weekly"))
    clock(24, 9)
    publish("Waiting for Monday's digest")
    clock(25, 6)
    page = choose_at_the_preference_page(turning, frequency="instant")
    assert "comes in one last digest, at your usual hour" in page
    got = []
    for day in (25, 26, 30):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {
        "Waiting for Monday's digest": 1
    }
    # Come in the daily round, and yet no daily digest of theirs: their last one.
    [last] = got
    assert last.subject == "Since your last digest: 1 new post on probation inspections"
    html = last.alternatives[0].content
    assert "<title>Since your last digest</title>" in html
    assert ">New post since your last digest</h1>" in html
    assert "New post since your last digest, on the topics you follow:" in last.body


def test_in_one_postmark_call_the_last_digest_and_a_daily_one_each_say_what_they_are(
    clock, publish, beat, fake_esp
):
    reader("daily@example.org", ("everything", "", "daily"))
    turning = reader("turning@example.org", ("everything", "", "weekly"))
    clock(24, 9)
    publish("Waiting for Monday's digest")
    clock(25, 6)
    choose_at_the_preference_page(turning, frequency="instant")
    clock(25, 7, 5)
    beat()
    [call] = fake_esp.messages
    subjects = {m["To"]: m["Subject"] for m in call["payload"]}
    assert subjects == {
        "daily@example.org": "Your daily digest: 1 new post on probation inspections",
        "turning@example.org": (
            "Since your last digest: 1 new post on probation inspections"
        ),
    }


def test_a_reader_turning_to_instant_after_the_rounds_slot_is_owed_the_rest_next(
    clock, publish, beat
):
    """The 07:00 round holds what was announced by 07:00; what came after, before
    they turned, waits for the next one."""
    turning = reader("turning@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Before seven")
    clock(23, 7, 1)
    publish("Just after seven")
    clock(23, 7, 2)
    choose_at_the_preference_page(turning, frequency="instant")
    clock(23, 7, 5)
    [today] = beat()
    clock(24, 7, 5)
    [tomorrow] = beat()
    assert "Before seven" in today.body and "Just after seven" not in today.body
    assert "Just after seven" in tomorrow.body and "Before seven" not in tomorrow.body
    clock(25, 7, 5)
    assert beat() == []


def test_a_weekly_reader_turning_to_daily_gets_what_waited_in_the_first_daily(
    clock, publish, beat
):
    turning = reader("turning@example.org", ("everything", "", "weekly"))
    clock(24, 9)
    publish("Waiting for Monday's digest")
    clock(25, 6)
    choose_at_the_preference_page(turning, frequency="daily")
    clock(25, 7, 5)
    [digest] = beat()
    assert digest.subject.startswith("Your daily digest: 1 new post ")
    assert "Waiting for Monday" in digest.body
    clock(30, 7, 5)
    assert beat() == []  # neither a daily nor the weekly one again


def test_a_reader_who_unfollows_and_refollows_before_the_round_gets_it_once(
    clock, publish, beat
):
    turning = reader("turning@example.org", ("area", "suffolk", "daily"))
    clock(23, 6, 30)
    publish("On Suffolk", area=AreaFactory(slug="suffolk"))
    publish("On Kent", area=AreaFactory(slug="kent"))
    clock(23, 6, 40)
    choose_at_the_preference_page(turning, topics=["area:kent"], frequency="daily")
    clock(23, 6, 50)
    choose_at_the_preference_page(turning, topics=["area:suffolk"], frequency="daily")
    clock(23, 7, 5)
    [digest] = beat()
    assert "On Suffolk" in digest.body and "On Kent" not in digest.body
    clock(24, 7, 5)
    assert beat() == []


def test_turning_to_instant_and_back_before_the_round_brings_one_digest(
    clock, publish, beat
):
    turning = reader("turning@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Waiting for the digest")
    choose_at_the_preference_page(turning, frequency="instant")
    choose_at_the_preference_page(turning, frequency="daily")
    got = []
    for day in (23, 24):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {"Waiting for the digest": 1}


@pytest.mark.parametrize("first", ["announcement", "digest"])
def test_a_post_whose_announcement_waited_past_the_switch_comes_once(
    clock, beat, django_capture_on_commit_callbacks, first
):
    """Published while they were a digest reader, its announcement planned after
    they turned to instant (a backlog): the announcement or their last digest
    carries it, whichever is planned first, never both."""
    turning = reader("turning@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    post_publish(post=PostFactory(title="On Suffolk"))  # its doorbell not answered
    clock(23, 6, 40)
    choose_at_the_preference_page(turning, frequency="instant")
    announcement = Mailing.objects.get(kind=Mailing.Kind.POST)
    got = []

    def plan_the_announcement():
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            while delivery.mailing_plan_page(mailing_id=announcement.pk):
                pass
        got.extend(mail.outbox)

    clock(23, 7, 5)
    if first == "announcement":
        plan_the_announcement()
        got += beat()
    else:
        got += beat()
        plan_the_announcement()
    clock(24, 7, 5)
    got += beat()
    assert posts_received(got, "turning@example.org") == {"On Suffolk": 1}


def test_a_reader_turning_to_a_digest_before_their_announcement_goes_gets_it_there(
    clock, beat, django_capture_on_commit_callbacks
):
    """Planned as an instant reader, the announcement held (a paused send, a
    backlog) until after they chose a daily digest: their digest carries the post,
    not the email they turned away from."""
    turning = reader("turning@example.org", ("everything", "", "instant"))
    clock(23, 6, 30)
    post_publish(post=PostFactory(title="On Suffolk"))  # its doorbell not answered
    announcement = Mailing.objects.get(kind=Mailing.Kind.POST)
    with django_capture_on_commit_callbacks(execute=False):  # its batch not sent
        while delivery.mailing_plan_page(mailing_id=announcement.pk):
            pass
    clock(23, 6, 40)
    choose_at_the_preference_page(turning, frequency="daily")
    mail.outbox.clear()
    delivery.batch_send(batch_id=announcement.batches.get().pk)
    got = list(mail.outbox)
    assert announcement.deliveries.get().status == Delivery.Status.SKIPPED
    clock(23, 7, 5)
    got += beat()
    assert posts_received(got, "turning@example.org") == {"On Suffolk": 1}


def test_a_reader_who_was_never_on_a_digest_is_promised_no_last_one(clock):
    always = reader("always@example.org", ("everything", "", "instant"))
    page = choose_at_the_preference_page(always, frequency="instant")
    assert "Your choices are saved" in page
    assert "last digest" not in page
    clock(23, 7, 5)
    assert not digests.audience("daily", slot=digests.slot_of(timezone.now())).exists()


def turned_to_instant_with_a_post_waiting(clock, publish) -> Subscriber:
    """A daily reader who turned to instant at 06:45 on Monday, owed the post
    that waited for their 07:00 digest."""
    turning = reader("turning@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Waiting for the digest")
    clock(23, 6, 45)
    choose_at_the_preference_page(turning, frequency="instant")
    return turning


@pytest.mark.parametrize("lost", ["cancelled by the author", "deferred for days"])
def test_a_last_digest_that_never_reached_the_reader_comes_in_the_next_round(
    clock, publish, beat, settings, request, lost
):
    """Planning their last digest does not pay what the reader is owed: one the
    author paused and cancelled, or one their mail server deferred until it
    failed, leaves its posts to the next round, which brings them once."""
    turned_to_instant_with_a_post_waiting(clock, publish)
    clock(23, 7, 5)
    mailing = planned_round()
    if lost == "cancelled by the author":
        assert delivery.mailing_pause(mailing_id=mailing.pk)
        assert delivery.mailing_cancel(mailing_id=mailing.pk)
    else:
        smtp = request.getfixturevalue("smtp")
        smtp.refused["turning@example.org"] = b"451 4.7.1 Greylisted, try later"
        started = mailing.created_at - delivery.MAX_DEFERRAL - timedelta(minutes=1)
        Mailing.objects.filter(pk=mailing.pk).update(created_at=started)
        send_all(mailing)
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    [lost_digest] = mailing.deliveries.all()
    assert lost_digest.status in {Delivery.Status.SKIPPED, Delivery.Status.FAILED}
    got = []
    for day in (24, 25):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {"Waiting for the digest": 1}
    assert got[0].subject.startswith("Since your last digest: ")


@pytest.mark.parametrize("then", ["resumed", "cancelled"])
def test_a_last_digest_paused_past_the_next_round_comes_once_whatever_its_fate(
    clock, publish, beat, django_capture_on_commit_callbacks, then
):
    """The next round leaves out the post their paused digest holds, as it is on
    its way; and if the author then cancels that digest, the round after brings
    it."""
    turned_to_instant_with_a_post_waiting(clock, publish)
    clock(23, 7, 5)
    mailing = planned_round()
    assert delivery.mailing_pause(mailing_id=mailing.pk)
    clock(24, 7, 5)
    got = beat()
    assert got == []
    with django_capture_on_commit_callbacks(execute=True):
        if then == "resumed":
            assert delivery.mailing_resume(mailing_id=mailing.pk)
        else:
            assert delivery.mailing_cancel(mailing_id=mailing.pk)
    got += mail.outbox
    for day in (25, 26):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {"Waiting for the digest": 1}


def test_once_the_last_digest_reached_the_reader_they_are_promised_no_other(
    clock, publish, beat
):
    turning = turned_to_instant_with_a_post_waiting(clock, publish)
    clock(23, 7, 5)
    [last] = beat()
    assert last.subject.startswith("Since your last digest: ")
    clock(23, 9)
    page = choose_at_the_preference_page(turning, frequency="instant")
    assert "Your choices are saved" in page
    assert "last digest" not in page


def test_a_last_digest_the_author_records_as_sent_is_owed_no_more(
    clock, publish, beat, fake_esp, admin_client
):
    """Its answer lost, the digest is uncertain; the author, having checked,
    records it as sent: the reader was paid, by the one way outcomes are
    written."""
    turning = turned_to_instant_with_a_post_waiting(clock, publish)
    clock(23, 7, 5)
    mailing = planned_round()
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(mailing)
    uncertain = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    assert desk_action(admin_client, "mark_sent", uncertain).status_code == 302
    page = choose_at_the_preference_page(turning, frequency="instant")
    assert "last digest" not in page
    clock(24, 7, 5)
    beat()
    assert fake_esp.recipients() == {"turning@example.org": 1}


def test_a_reader_owed_nothing_is_promised_no_last_digest_after_the_round(
    clock, publish, beat
):
    """Their digest had brought everything when they turned: the round finds
    nothing owed, and says so by promising nothing more."""
    turning = reader("turning@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("In Monday's digest")
    clock(23, 7, 5)
    assert len(beat()) == 1
    clock(23, 9)
    choose_at_the_preference_page(turning, frequency="instant")
    clock(24, 7, 5)
    assert beat() == []
    page = choose_at_the_preference_page(turning, frequency="instant")
    assert "last digest" not in page


def test_a_reader_turning_back_to_daily_before_their_last_digest_goes_gets_it_once(
    clock, publish, beat
):
    turning = turned_to_instant_with_a_post_waiting(clock, publish)
    clock(23, 7, 5)
    mailing = planned_round()
    clock(23, 7, 10)
    choose_at_the_preference_page(turning, frequency="daily")
    send_all(mailing)
    [digest] = got = list(mail.outbox)
    assert digest.subject.startswith("Your daily digest: ")
    for day in (24, 25):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "turning@example.org") == {"Waiting for the digest": 1}


def change_topics_at_the_desk(subscriber: Subscriber, *rows: tuple[str, str, str]):
    """What the desk does: an Administrator opens the reader's page and makes
    their topic rows `rows` (kind, value, frequency) in its inline, changing the
    frequency of a row they keep, ticking Delete on one they drop, filling in an
    empty row for one they add, and saves."""
    desk = Client()
    desk.force_login(StaffFactory(role="Administrator"))
    page = f"/admin/newsletter/subscriber/{subscriber.pk}/change/"
    context = desk.get(page).context
    form = context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields}
    wanted = {(kind, value): frequency for kind, value, frequency in rows}
    for inline in context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update(
            {management.add_prefix(n): management[n].value() for n in management.fields}
        )
        for row in formset.initial_forms:
            data.update(
                {row.add_prefix(name): row[name].value() or "" for name in row.fields}
            )
        if formset.prefix != "topics":
            continue
        for row in formset.initial_forms:
            key = tuple(row["topic"].value().split(":", 1))
            if key in wanted:
                data[row.add_prefix("frequency")] = wanted.pop(key)
            else:
                data[row.add_prefix("DELETE")] = "on"
        for (kind, value), frequency in wanted.items():
            prefix = f"topics-{data['topics-TOTAL_FORMS']}"
            data.update(
                {
                    f"{prefix}-subscriber": subscriber.pk,
                    f"{prefix}-topic": f"{kind}:{value}",
                    f"{prefix}-frequency": frequency,
                }
            )
            data["topics-TOTAL_FORMS"] += 1
    response = desk.post(page, data)
    assert response.status_code == 302, response.context["errors"]
    assert {(t.kind, t.value, t.frequency) for t in subscriber.topics.all()} == set(
        rows
    )


def test_a_reader_of_mixed_rows_the_desk_changes_gets_what_waited_once(
    clock, publish, beat
):
    """Suffolk daily, Kent as published, Essex daily; the desk turns Suffolk to
    instant, drops Essex and adds Norfolk daily. Suffolk's waiting post comes at
    their hour, beside Norfolk's, in their daily digest; Essex's, unfollowed,
    never; Kent's, sent as published, not again."""
    areas = {slug: AreaFactory(slug=slug) for slug in ("suffolk", "kent", "essex")}
    areas["norfolk"] = AreaFactory(slug="norfolk")
    mixed = reader(
        "mixed@example.org",
        ("area", "suffolk", "daily"),
        ("area", "kent", "instant"),
        ("area", "essex", "daily"),
    )
    got = []
    clock(23, 12)
    mail.outbox.clear()
    for slug in ("suffolk", "kent", "essex"):
        publish(f"On {slug.title()}", area=areas[slug])
    got += mail.outbox
    clock(23, 13)
    change_topics_at_the_desk(
        mixed,
        ("area", "suffolk", "instant"),
        ("area", "kent", "instant"),
        ("area", "norfolk", "daily"),
    )
    clock(23, 14)
    mail.outbox.clear()
    publish("Suffolk again", area=areas["suffolk"])
    publish("On Norfolk", area=areas["norfolk"])
    got += mail.outbox
    clock(24, 7, 5)
    [digest] = beat()
    got.append(digest)
    assert digest.subject.startswith("Your daily digest: 2 new posts")
    for day in (25, 26):
        clock(day, 7, 5)
        got += beat()
    # Essex's post, unfollowed, in none.
    assert posts_received(got, "mixed@example.org") == {
        "On Kent": 1,
        "On Suffolk": 1,
        "Suffolk again": 1,
        "On Norfolk": 1,
    }


def test_a_daily_reader_the_desk_adds_an_instant_row_to_gets_what_it_took_once(
    clock, publish, beat
):
    """A post as published takes a post out of their digests: Suffolk's, waiting
    for Tuesday's, would have reached them in neither."""
    adding = reader("adding@example.org", ("everything", "", "daily"))
    suffolk = AreaFactory(slug="suffolk")
    got = []
    clock(23, 12)
    publish("On Suffolk", area=suffolk)
    publish("On Kent", area=AreaFactory(slug="kent"))
    clock(23, 13)
    change_topics_at_the_desk(
        adding, ("everything", "", "daily"), ("area", "suffolk", "instant")
    )
    clock(23, 14)
    mail.outbox.clear()
    publish("Suffolk again", area=suffolk)
    got += mail.outbox
    for day in (24, 25):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "adding@example.org") == {
        "Suffolk again": 1,
        "On Suffolk": 1,
        "On Kent": 1,
    }


def test_a_daily_reader_whose_rows_the_desk_deletes_gets_what_waited_once(
    clock, publish, beat
):
    """With no rows a reader follows everything as published."""
    bare = reader("bare@example.org", ("area", "suffolk", "daily"))
    clock(23, 12)
    publish("On Suffolk", area=AreaFactory(slug="suffolk"))
    clock(23, 13)
    change_topics_at_the_desk(bare)
    clock(23, 14)
    mail.outbox.clear()
    publish("On Kent", area=AreaFactory(slug="kent"))
    got = list(mail.outbox)
    for day in (24, 25):
        clock(day, 7, 5)
        got += beat()
    assert posts_received(got, "bare@example.org") == {"On Kent": 1, "On Suffolk": 1}


def test_a_digest_reader_the_desk_moves_between_digests_is_owed_no_last_one(
    clock, publish, beat
):
    """Weekly to daily, daily to weekly: each round's lookback holds what waited,
    and a weekly post does not come early in a daily digest."""
    moving = reader(
        "moving@example.org", ("area", "suffolk", "weekly"), ("area", "kent", "daily")
    )
    clock(24, 9)
    publish("On Suffolk", area=AreaFactory(slug="suffolk"))
    publish("On Kent", area=AreaFactory(slug="kent"))
    clock(24, 10)
    change_topics_at_the_desk(
        moving, ("area", "suffolk", "daily"), ("area", "kent", "weekly")
    )
    clock(25, 7, 5)
    [daily] = beat()
    assert "On Suffolk" in daily.body and "On Kent" not in daily.body
    clock(30, 7, 5)
    [weekly] = beat()
    assert "On Kent" in weekly.body and "On Suffolk" not in weekly.body


def test_a_post_matching_a_daily_and_a_weekly_topic_comes_in_one_digest(
    clock, publish, beat
):
    suffolk = AreaFactory(slug="suffolk")
    reader(
        "both@example.org",
        ("area", "suffolk", "daily"),
        ("everything", "", "weekly"),
    )
    clock(23, 6, 30)  # a Monday: both rounds go at 07:00
    publish("On Suffolk", area=suffolk)
    clock(23, 7, 5)
    [digest] = beat()
    assert "On Suffolk" in digest.body
    assert Delivery.objects.carrying(Post.objects.get()).count() == 1


def test_the_ledger_says_who_received_a_post_as_published_or_in_a_digest(
    clock, publish, beat
):
    """What a correction to a post's readers will ask of the ledger."""
    instant = reader("instant@example.org")
    daily = reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    post = publish("Suffolk: caseloads too high")
    other = publish("Wales: a good report")
    clock(23, 7, 5)
    beat()
    received = Delivery.objects.carrying(post).received()
    assert sorted(received.values_list("subscriber_id", flat=True)) == sorted(
        [instant.pk, daily.pk]
    )
    assert set(daily.deliveries.get().posts.all()) == {post, other}


def test_a_round_records_each_post_its_digests_held_once(
    clock, publish, beat, monkeypatch, admin_client
):
    """The rounds a post's report, links and corrections read (carrying): a post
    held for readers on two pages is recorded once, one that no digest held is
    not, and the post's announcement is found beside them."""
    monkeypatch.setattr(digests, "READERS_PER_PAGE", 2)
    suffolk = AreaFactory(slug="suffolk")
    for i in range(3):
        reader(f"reader{i}@example.org", ("area", "suffolk", "daily"))
    reader("instant@example.org", ("area", "kent", "instant"))
    clock(23, 6, 30)
    on_suffolk = publish("On Suffolk", area=suffolk)
    on_kent = publish("On Kent", area=AreaFactory(slug="kent"))
    clock(23, 7, 5)
    assert len(beat()) == 3
    assert list(daily_round().digest_posts.all()) == [on_suffolk]
    page = admin_client.get(f"/admin/newsletter/mailing/{daily_round().pk}/change/")
    assert re.search(
        r"Posts in its digests:</label>\s*<div[^>]*>On Suffolk<", page.text
    )
    carried = Delivery.objects.carrying(on_suffolk)
    assert sorted(carried.values_list("subscriber__email", flat=True)) == [
        f"reader{i}@example.org" for i in range(3)
    ]
    carried = Delivery.objects.carrying(on_kent)
    assert list(carried.values_list("subscriber__email", flat=True)) == [
        "instant@example.org"
    ]


def test_a_digest_carries_the_readers_own_unsubscribe_and_preference_links(
    clock, publish, beat
):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    clock(23, 7, 5)
    [digest] = beat()
    unsubscribe_url = digest.extra_headers["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert digest.extra_headers["List-Unsubscribe-Post"] == (
        "List-Unsubscribe=One-Click"
    )
    assert unsubscribe_url in digest.body
    assert "http://127.0.0.1:8000/preferences/" in digest.body
    assert "http://127.0.0.1:8000/r/" in digest.alternatives[0].content
    assert unsubscribe_url in digest.alternatives[0].content
    assert Delivery.objects.get().status == Delivery.Status.SENT


@pytest.mark.parametrize("provider", ["one message each", "postmark batch"])
def test_each_post_in_a_digest_is_dated_the_readers_own_day_as_the_digest_is(
    clock, publish, beat, provider, request
):
    """One round at 02:05 London time on Tuesday 24 November: a Los Angeles
    reader's 18:00 digest of Monday the 23rd and a Tokyo reader's 11:00 one of
    Tuesday the 24th hold the same two posts, published at 23:30 and 00:30 in
    London. Each post is dated where its reader is, as the digest is: not a post
    of 'tomorrow' in Los Angeles's digest of the 23rd, nor of yesterday in
    Tokyo's."""
    for address, zone, hour in (
        ("la@example.org", "America/Los_Angeles", 18),
        ("tokyo@example.org", "Asia/Tokyo", 11),
    ):
        subscriber = reader(address, ("everything", "", "daily"))
        Subscriber.objects.filter(pk=subscriber.pk).update(
            time_zone=zone, digest_hour=hour
        )
    clock(23, 23, 30)
    publish("Kent: a late report")
    clock(24, 0, 30)
    publish("Suffolk: caseloads too high")
    clock(24, 2, 5)
    if provider == "postmark batch":
        fake_esp = request.getfixturevalue("fake_esp")
        beat()
        [call] = fake_esp.messages
        sent = {m["To"]: (m["TextBody"], m["HtmlBody"]) for m in call["payload"]}
    else:
        sent = {m.to[0]: (m.body, m.alternatives[0].content) for m in beat()}
    for address, day in (("la@example.org", 23), ("tokyo@example.org", 24)):
        text, html = sent[address]
        dated = f"{day} November 2026"
        assert f"On Probation</a> · {dated}" in html  # the digest's day
        assert re.findall(r"\((\d+ November 2026)\)", text) == [dated, dated]
        assert re.findall(r'class="meta"[^>]*>([^<]+)<', html) == [dated, dated]


@pytest.fixture
def sent(provider, request):
    """Each reader's text and HTML parts as sent, by address: from the outbox
    (one message each) or from the fake Postmark (its batch API)."""
    esp = request.getfixturevalue("fake_esp") if provider == "postmark batch" else None

    def parts() -> dict[str, tuple[str, str]]:
        if esp is None:
            return {m.to[0]: (m.body, m.alternatives[0].content) for m in mail.outbox}
        messages = postmark_messages(esp.messages)
        return {m["To"]: (m["TextBody"], m["HtmlBody"]) for m in messages}

    return parts


@pytest.mark.parametrize("provider", ["one message each", "postmark batch"])
def test_a_post_without_an_excerpt_is_summed_up_in_a_digest_as_in_its_own_email(
    clock, publish, beat, sent
):
    """A post the author gave no excerpt went in its own email with its first
    words, and in a digest as its title alone. A digest reader gets the summary
    the post's email gives, and each part of the digest the post's title, date,
    summary and link."""
    reader("instant@example.org", ("everything", "", "instant"))
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    words = [f"word{n}" for n in range(80)]
    post = publish(
        "Derby: caseloads",
        excerpt="",
        body="Derby & Derbyshire: " + " ".join(words),
        email_format=Post.EmailFormat.EXCERPT,
    )
    own_text, own_html = sent()["instant@example.org"]
    clock(23, 7, 5)
    beat()
    text, html = sent()["daily@example.org"]
    summary = "Derby & Derbyshire: " + " ".join(words[:57]) + "…"
    summary_html = summary.replace("&", "&amp;")
    paragraph = re.compile(r'<p class="summary"[^>]*>([^<]*)</p>')
    assert summary in " ".join(own_text.split())
    assert paragraph.findall(own_html) == [summary_html]
    url = settings.SITE_URL + post.get_absolute_url()
    block = text.split("on the topics you follow:\n\n")[1].split("\n--\n")[0]
    assert block.splitlines()[0] == "Derby: caseloads (23 November 2026)"
    assert " ".join(block.splitlines()[1:-1]) == summary
    assert block.splitlines()[-1] == url
    [(link, title)] = re.findall(
        r'<h2[^>]*><a [^>]*href="[^"]*/r/([^"/]+)/"[^>]*>([^<]*)</a></h2>', html
    )
    assert (engagement.link_for_token(link).url, title) == (url, "Derby: caseloads")
    assert re.findall(r'class="meta"[^>]*>([^<]+)<', html) == ["23 November 2026"]
    assert paragraph.findall(html) == [summary_html]


@pytest.mark.parametrize("provider", ["one message each", "postmark batch"])
def test_a_sponsored_post_in_a_digest_names_the_sponsor_its_own_email_named(
    clock, beat, sent, django_capture_on_commit_callbacks
):
    """Sponsored content must say so wherever it is sent (UK advertising rules),
    but a sponsored post went in its own email with its sponsor's line and in a
    digest with none. Its block in a digest names the sponsor its announcement
    named, of the day it was announced (Sunday evening's deal, not Monday's, when
    the digest goes), with the sponsor's link, in both parts; the unsponsored
    post beside it names none."""
    youth = CategoryFactory(name="Youth justice")
    for name, first, last in (("Sunday Ltd", 22, 22), ("Monday Ltd", 23, 30)):
        Sponsorship.objects.create(
            category=youth,
            name=name,
            url=f"https://{name.split()[0].lower()}.example/",
            starts_on=date(2026, 11, first),
            ends_on=date(2026, 11, last),
        )
    clock(22, 23)
    reader("instant@example.org", ("category", youth.slug, "instant"))
    reader("daily@example.org", ("everything", "", "daily"))
    clock(22, 23, 50)
    sponsored = PostFactory(title="Youth justice: a sponsored look")
    sponsored.categories.add(youth)
    for post in (sponsored, PostFactory(title="Kent: caseloads too high")):
        with django_capture_on_commit_callbacks(execute=True):
            post_publish(post=post)
    own_text, own_html = sent()["instant@example.org"]
    clock(23, 7, 5)
    beat()
    text, html = sent()["daily@example.org"]

    words = "Youth justice posts sponsored by Sunday Ltd. "
    words += "Sponsors have no say in what we write."
    # Wrapped as a plain-text reader shows it whole.
    line = f"{wrap(words, 72)}\nhttps://sunday.example/\n"
    assert line in own_text
    sponsored_block, unsponsored_block = text.split("Kent: caseloads too high")
    assert sponsored_block.split("Youth justice: a sponsored look")[1].endswith(
        settings.SITE_URL + sponsored.get_absolute_url() + "\n" + line + "\n"
    )
    assert "sponsored by" not in unsponsored_block

    def sponsor_lines(html: str) -> list[tuple[str, str]]:
        """Each sponsor line's words and where its link leads."""
        lines = []
        for line in re.findall(r'<p class="sponsor"[^>]*>(.*?)</p>', html, re.S):
            [token] = re.findall(r'href="[^"]*/r/([^"/]+)/"', line)
            words = " ".join(re.sub(r"<[^>]+>", "", line).split())
            lines.append((words, engagement.link_for_token(token).url))
        return lines

    assert sponsor_lines(html) == sponsor_lines(own_html)
    assert sponsor_lines(html) == [
        (
            "Youth justice posts sponsored by Sunday Ltd. "
            "Sponsors have no say in what we write.",
            "https://sunday.example/",
        )
    ]
    sponsored_at = html.index("Youth justice: a sponsored look")
    assert sponsored_at < html.index('class="sponsor"') < html.index("Kent: caseloads")
    assert "Monday Ltd" not in text + html


@pytest.mark.parametrize(
    ("frequency", "day", "title"),
    [("daily", 24, "Your daily digest"), ("weekly", 30, "Your weekly digest")],
)
def test_a_digest_at_the_usual_hour_calls_no_post_of_the_day_before_todays(
    clock, publish, beat, frequency, day, title
):
    """At 07:00 the day's digest holds what was published since the last one,
    mostly the day (or week) before: headed "Today's new posts" (or "This
    week's", on a Monday) above posts dated the 23rd, it said what was not so."""
    reader("reader@example.org", ("everything", "", frequency))
    clock(23, 12)
    publish("Suffolk: caseloads too high")
    clock(day, 7, 5)
    [digest] = beat()
    html = digest.alternatives[0].content
    assert re.findall(r"\((\d+ November 2026)\)", digest.body) == ["23 November 2026"]
    assert re.findall(r"<h1[^>]*>([^<]*)</h1>", html) == [title]
    assert "\n\nNew post on the topics you follow:\n" in digest.body
    assert "Today's" not in digest.body + html
    assert "This week's" not in digest.body + html


@pytest.mark.parametrize("titles", [["Suffolk"], ["Suffolk", "Wales"]])
def test_a_digest_greets_its_reader_with_what_was_published_however_many_posts(
    clock, publish, beat, titles
):
    """Here is what was published, of one post or several: a digest of two
    said "here are what was published" to every reader it went to."""
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    for title in titles:
        publish(title)
    clock(23, 7, 5)
    [digest] = beat()
    html = digest.alternatives[0].content
    assert "Hello, here is what was published on the topics you follow." in html
    assert "here are" not in html


@pytest.mark.parametrize("sent_as", ["one message a reader", "merge data"])
def test_a_name_written_right_to_left_keeps_the_greeting_after_it_in_order(
    clock, publish, beat, request, sent_as
):
    """Not isolated, a Hebrew or Arabic name pulled the comma and the words after
    it into its own direction. The digest isolates it as the moderators' comment
    digest does (FSI … PDI, templatetags/bidi.py), in both parts, whether each
    reader's digest is a message of its own (DigestEmail.for_reader, over SMTP)
    or the batch's frame with each reader's name as merge data (for_many, over
    Postmark)."""
    subscriber = reader("dana@example.org", ("everything", "", "daily"))
    subscriber.name = "דנה כהן"
    subscriber.save()
    clock(23, 6, 30)
    publish("Suffolk")
    clock(23, 7, 5)
    if sent_as == "merge data":
        fake_esp = request.getfixturevalue("fake_esp")
        beat()
        [sent] = fake_esp.messages[0]["payload"]
        text, html = sent["TextBody"], sent["HtmlBody"]
    else:
        [digest] = beat()
        text, html = digest.body, digest.alternatives[0].content
    assert text.startswith("Hello \u2068דנה כהן\u2069,\n")
    assert (
        "Hello \u2068דנה כהן\u2069, here is what was published on the topics you"
        in html
    )


def test_a_digest_reads_to_a_screen_reader_each_link_named_for_where_it_goes(
    clock, publish, beat
):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    publish("Wales: a good report")
    clock(23, 7, 5)
    [digest] = beat()
    html = digest.alternatives[0].content
    assert '<html lang="en-GB"' in html
    assert "<title>Your daily digest</title>" in html
    tables = re.findall(r"<table[^>]*>", html)
    assert [t for t in tables if 'role="presentation"' not in t] == []
    # A screen reader lists a message's links by their words: "Read the post"
    # twice, to two posts, says neither.
    links = re.findall(r'<a [^>]*href="([^"]+)"[^>]*>(.*?)</a>', html, re.DOTALL)
    places = defaultdict(set)
    for url, words in links:
        places[words].add(url)
    assert {words for words, urls in places.items() if len(urls) > 1} == set()


def test_each_assembled_digest_is_the_plain_render_of_the_readers_own(
    clock, publish, settings, fake_esp
):
    """A batch's digests are assembled from parts rendered once (DigestEmail),
    one message a reader or one a number of posts with each reader's parts as
    merge data (filled in by our Postmark backend); each must be the email a
    plain render for its reader makes, links tracked (with their signed part for
    a reader who agreed to per-reader engagement), but for the tokens in the
    reader's own links."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    suffolk = AreaFactory(slug="suffolk")
    agreed = reader("all@example.org", ("everything", "", "daily"))
    Subscriber.objects.filter(pk=agreed.pk).update(engagement_agreed_at=timezone.now())
    ann = reader("named@example.org", ("area", "suffolk", "daily"))
    ann.name = 'Ann & "O\'Neill" <b>\u00a0Jr'
    ann.save()
    # 07:05 in London is 23:05 the day before in Los Angeles: the same round, and
    # a digest dated the reader's own day, its posts too.
    la = reader("la@example.org", ("everything", "", "daily"))
    la.time_zone = "America/Los_Angeles"
    la.name = "محمد"  # isolated in the greeting (templatetags/bidi.py)
    la.save()
    # A weekly reader who turns to instant at 06:40: their last digest.
    last = reader("last@example.org", ("everything", "", "weekly"))
    clock(23, 6, 10)
    publish("Kent: <first> & foremost", area=AreaFactory(slug="kent"))
    clock(23, 6, 20)
    publish("On Suffolk", area=suffolk)
    clock(23, 6, 30)
    publish("Wales: a good report", excerpt="")  # summed up by its first words
    clock(23, 6, 40)
    topics_set(subscriber=last, frequency="instant")
    clock(23, 7, 5)
    mailing = delivery.mailing_create_for_digest(
        frequency="daily", slot=digests.slot_of(timezone.now())
    )
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    batch = mailing.batches.get()
    recipients, _skipped = batch_recipients(batch.pk, digest_of=mailing.frequency)
    assembled = digests.DigestEmail(mailing, recipients)
    tracker = LinkTracker(mailing.pk)
    token = re.compile(r"/(unsubscribe|preferences)/[^/]+/")

    def tokenless(email) -> tuple[str, str, str]:
        return tuple(token.sub(r"/\1/…/", part) for part in email)

    html_to, plain_of = {}, {}
    for recipient in recipients:
        subscriber = Subscriber.objects.get(pk=recipient.pk)
        posts = Delivery.objects.get(pk=recipient.delivery_id).posts.order_by(
            "announced_at", "pk"
        )
        plain = render_email(
            "digest",
            {
                "subscriber": subscriber,
                "mailing": mailing,
                "day": digests.day_of(mailing.slot, subscriber.time_zone),
                "time_zone": digests.zone_of(subscriber.time_zone),
                "last_digest": subscriber == last,
                "posts": [
                    {
                        "post": post,
                        "url": settings.SITE_URL + post.get_absolute_url(),
                        "summary": post.summary,
                    }
                    for post in posts
                ],
                "unsubscribe_url": unsubscribe_url(subscriber),
                "preferences_url": preferences_url(subscriber),
            },
        )
        message = assembled.for_reader(recipient)
        [(html, _type)] = message.alternatives
        html_to[recipient.email] = html
        # A body's encoding, joined from its pieces', is the body's.
        assert isinstance(message.body, Encoded)
        for body in (message.body, html):
            if isinstance(body, Encoded):
                assert json.loads(body.json) == body
                assert body.json == json.dumps(body)
        plain_html = reader_part_add(
            tracker.tracked(plain.html), subscriber_id=subscriber.pk
        )
        plain_of[recipient.email] = tokenless((plain.subject, plain.text, plain_html))
        assert (
            tokenless((message.subject, message.body, html))
            == plain_of[recipient.email]
        )
    letters = assembled.for_many(recipients, merge_field="{{NAME}}")
    assert sorted(len(readers) for _, readers in letters) == [1, 1, 1, 1]
    EmailBackend(per_reader=False).send_messages([m for m, _ in letters])
    (request,) = fake_esp.get_messages()
    sent = json.loads(request["request_body"])
    assert len(sent) == len(recipients)
    for entry in sent:
        email = (entry["Subject"], entry["TextBody"], entry["HtmlBody"])
        assert tokenless(email) == plain_of[entry["To"]]
    named, everything = html_to["named@example.org"], html_to["all@example.org"]
    assert "On Probation</a> · 23 November 2026" in named
    assert "On Probation</a> · 22 November 2026" in html_to["la@example.org"]
    assert "?reader=" in everything  # agreed
    assert "?reader=" not in named
    # Pieces encoded once; the agreed reader's HTML, with their own part, whole.
    assert isinstance(named, Encoded) and not isinstance(everything, Encoded)
    assert 'Hello \u2068Ann &amp; "O\'Neill" &lt;b&gt;&nbsp;Jr\u2069,' in named
    assert "Kent: &lt;first&gt; &amp; foremost" not in named  # not Ann's
    assert "Hello, here is what was published" in everything
    assert "Kent: &lt;first&gt; &amp; foremost" in everything
    assert ">New posts since your last digest</h1>" in html_to["last@example.org"]


def test_a_post_edited_during_the_round_goes_as_edited_in_its_later_batches(
    clock, publish, settings
):
    """A worker keeps a batch's rendered parts for the round's next batch of the
    same posts, but not past an edit."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    mailing = a_round_of_two(clock, publish)
    first, second = mailing.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)
    post = Post.objects.get()
    post.title = "Suffolk: caseloads far too high"
    post.save()
    delivery.batch_send(batch_id=second.pk)
    before, after = mail.outbox
    assert "caseloads too high" in before.body
    assert "caseloads far too high" in after.body
    assert "caseloads far too high" in after.alternatives[0].content


def test_an_unsubscribed_reader_gets_no_digest(clock, publish, beat):
    leaving = reader("leaving@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    subscriber_unsubscribe(subscriber=leaving)
    clock(23, 7, 5)
    assert beat() == []


@pytest.mark.parametrize("back", ["resuming", "subscribing again"])
def test_a_paused_reader_coming_back_gets_what_waited_in_their_next_digest(
    clock, publish, beat, client, django_capture_on_commit_callbacks, back
):
    """Paused, then back by the preference centre's Resume or through the
    subscribe form (their emails deleted): either way the posts that came while
    they were away are in their next digest. Through the form they were dated
    from its confirmation, as a new reader is, and lost them."""
    subscriber = reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    subscriber_pause(subscriber=subscriber)
    clock(23, 7, 5)
    assert beat() == []  # paused
    clock(24, 6)
    publish("Wales: a good report")
    if back == "resuming":
        token = make_token(subscriber, Purpose.PREFERENCES)
        client.post(f"/preferences/{token}/", {"action": "resume"})
    else:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(
                "/subscribe/", {"email": "daily@example.org", "frequency": "daily"}
            )
        [confirmation] = mail.outbox
        with django_capture_on_commit_callbacks(execute=True):
            client.post(confirm_link(confirmation))
    subscriber.refresh_from_db()
    assert subscriber.paused_at is None
    clock(24, 7, 5)
    digests = [m for m in beat() if m.subject.startswith("Your daily digest")]
    assert posts_received(digests, "daily@example.org") == {
        "Suffolk: caseloads too high": 1,
        "Wales: a good report": 1,
    }


def test_a_reader_who_leaves_after_planning_is_skipped(clock, publish):
    mailing = a_round_of_two(clock, publish)
    Subscriber.objects.filter(email="one@example.org").update(status="unsubscribed")
    send_all(mailing)
    assert [m.to[0] for m in mail.outbox] == ["two@example.org"]
    skipped = mailing.deliveries.get(subscriber__email="one@example.org")
    assert skipped.status == Delivery.Status.SKIPPED


def a_round_of_two_posts(clock, publish, readers: list[str]) -> tuple[Mailing, Post]:
    """The daily round planned for these readers, each holding two posts, and
    the post the author will take down."""
    for email in readers:
        reader(email, ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    taken_down = publish("Wales: a wrong figure")
    clock(23, 7, 5)
    return planned_round(), taken_down


def test_a_post_unpublished_after_planning_is_left_out_of_the_digests(
    clock, publish, beat
):
    # The author takes a post down (a wrong fact, a legal worry) after the round
    # was planned: no digest may still carry it, to a page that is gone.
    readers = ["one@example.org", "two@example.org"]
    mailing, taken_down = a_round_of_two_posts(clock, publish, readers)
    unpublish_at_the_desk(taken_down)
    send_all(mailing)

    assert sorted(m.to[0] for m in mail.outbox) == readers
    for digest in mail.outbox:
        assert digest.subject.startswith("Your daily digest: 1 new post")
        assert "Suffolk: caseloads too high" in digest.body
        assert "Wales: a wrong figure" not in digest.body
        assert "Wales: a wrong figure" not in digest.alternatives[0].content
    # The ledger says what the digests held: published again, the post comes in
    # the readers' next digest.
    assert not Delivery.objects.filter(posts=taken_down).exists()
    assert taken_down not in mailing.digest_posts.all()
    clock(23, 9)
    post_publish(post=Post.objects.get(pk=taken_down.pk))
    clock(24, 7, 5)
    next_digests = beat()
    assert sorted(m.to[0] for m in next_digests) == readers
    assert all("Wales: a wrong figure" in m.body for m in next_digests)


def test_a_post_whose_email_is_unticked_after_planning_is_left_out_of_the_digests(
    clock, publish, beat
):
    """The desk says, as the author unticks "email to subscribers" on a post
    already sent: "Digests not yet sent go without it"; the round planned
    before still carried it to every reader."""
    readers = ["one@example.org", "two@example.org"]
    mailing, unticked = a_round_of_two_posts(clock, publish, readers)
    editor = Client()
    editor.force_login(StaffFactory(role="Editor"))
    response = editor.post(
        f"/admin/posts/post/{unticked.pk}/change/",
        admin_post_form_of(unticked, email_subscribers=""),
        follow=True,
    )
    assert "Digests not yet sent go without it." in response.text
    send_all(mailing)

    assert sorted(m.to[0] for m in mail.outbox) == readers
    for digest in mail.outbox:
        assert digest.subject.startswith("Your daily digest: 1 new post")
        assert "Wales: a wrong figure" not in digest.body
        assert "Wales: a wrong figure" not in digest.alternatives[0].content
    assert not Delivery.objects.filter(posts=unticked).exists()
    clock(24, 7, 5)
    assert beat() == []  # nor in the next one


def test_an_uncertain_digest_resent_after_its_post_was_unpublished_goes_without_it(
    clock, publish, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    mailing, taken_down = a_round_of_two_posts(clock, publish, ["one@example.org"])
    # Its worker claimed the batch and died before the request went out.
    Batch.objects.filter(mailing=mailing).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    delivery.mailings_reap()
    unpublish_at_the_desk(taken_down)
    batch = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    uncertain_long_enough_to_ask(batch)
    with django_capture_on_commit_callbacks(execute=True):
        assert desk_action(admin_client, "settle", batch).status_code == 302

    [digest] = postmark_messages(fake_esp.messages)
    assert "Suffolk: caseloads too high" in digest["TextBody"]
    assert "Wales: a wrong figure" not in digest["TextBody"]


def test_a_post_taken_down_keeps_the_clicks_of_digests_that_may_have_reached_readers(
    clock, publish, fake_esp, client, admin_client
):
    """The provider took the digest and its answer was lost: uncertain, it may
    have arrived, and its reader followed the post's link. Taken down, the post
    left the round's record, and that click left the post's report."""
    mailing, taken_down = a_round_of_two_posts(clock, publish, ["one@example.org"])
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(mailing)
    batch = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    [digest] = postmark_messages(fake_esp.messages)
    post_url = "http://127.0.0.1:8000" + taken_down.get_absolute_url()
    clock(23, 8)
    html = SimpleNamespace(content=digest["HtmlBody"])
    click(client, redirects(SimpleNamespace(alternatives=[html]))[post_url])
    counts()

    unpublish_at_the_desk(taken_down)
    read_by_people = {"people": 1, "machines": 0}
    assert taken_down in mailing.digest_posts.all()
    assert post_report(taken_down)["clicks_in_digests"] == read_by_people
    # The author confirms the provider took it: it did reach the reader.
    assert desk_action(admin_client, "mark_sent", batch).status_code == 302
    assert post_report(taken_down)["clicks_in_digests"] == read_by_people


@pytest.mark.parametrize("taken_down", ["before it goes", "as it goes"])
def test_a_digest_whose_only_post_is_taken_down_is_skipped(
    clock, publish, monkeypatch, taken_down
):
    mailing = a_round_of_two(clock, publish)
    post = Post.objects.get(title="Suffolk: caseloads too high")
    if taken_down == "before it goes":
        unpublish_at_the_desk(post)
    else:
        taken_down_once_its_readers_are_read(monkeypatch, post)
    send_all(mailing)

    assert mail.outbox == []
    assert set(mailing.deliveries.values_list("status", "error")) == {
        (Delivery.Status.SKIPPED, "its posts were unpublished before sending")
    }
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


@pytest.mark.parametrize("provider", ["outbox", "postmark"])
def test_a_post_taken_down_as_its_digests_go_out_is_left_out_of_them(
    clock, publish, monkeypatch, request, provider
):
    """The batch went with the post its readers were read with: a reader got a
    post that was off the site, and the ledger said their digest had not held it."""
    readers = ["one@example.org", "two@example.org"]
    mailing, taken_down = a_round_of_two_posts(clock, publish, readers)
    taken_down_once_its_readers_are_read(monkeypatch, taken_down)
    if provider == "postmark":
        fake_esp = request.getfixturevalue("fake_esp")
    send_all(mailing)

    if provider == "postmark":
        digests_sent = [
            (m["To"], m["Subject"], m["TextBody"] + m["HtmlBody"])
            for m in postmark_messages(fake_esp.messages)
        ]
    else:
        digests_sent = [
            (m.to[0], m.subject, m.body + m.alternatives[0].content)
            for m in mail.outbox
        ]
    assert sorted(to for to, _, _ in digests_sent) == readers
    for _, subject, bodies in digests_sent:
        assert subject.startswith("Your daily digest: 1 new post")
        assert "Suffolk: caseloads too high" in bodies
        assert "Wales: a wrong figure" not in bodies
    assert not Delivery.objects.filter(posts=taken_down).exists()
    assert set(mailing.deliveries.values_list("status", flat=True)) == {
        Delivery.Status.SENT
    }


def as_each_digest_goes(monkeypatch, *steps) -> None:
    """The author acts as a batch's digests go out one message each: after the
    nth is handed over, the nth step (an action, and whether the worker's clock
    then moves on a second, to its next read of the posts on the site)."""
    send, moment = EmailMessage.send, timezone.now()
    to_come = list(steps)

    def send_then_the_author_acts(message, *args, **kwargs):
        nonlocal moment
        sent = send(message, *args, **kwargs)
        if to_come:
            act, a_second_on = to_come.pop(0)
            act()
            if a_second_on:
                moment += timedelta(seconds=sender.HOLD_READ_SECONDS)
                monkeypatch.setattr(timezone, "now", lambda: moment)
        return sent

    monkeypatch.setattr(EmailMessage, "send", send_then_the_author_acts)


def digests_sent_one_each(request, provider: str) -> list[tuple[str, str]]:
    """Each digest's reader and text, as handed over."""
    if provider == "postmark, one message each":
        fake_esp = request.getfixturevalue("fake_esp")
        return [(m["To"], m["TextBody"]) for m in postmark_messages(fake_esp.messages)]
    return [(m.to[0], m.body) for m in mail.outbox]


def the_next_round(beat, request, provider: str) -> list[tuple[str, str]]:
    """The digests the next round hands over: reader and text."""
    mail.outbox.clear()
    before = len(digests_sent_one_each(request, provider))
    beat()
    return digests_sent_one_each(request, provider)[before:]


def put_back(post: Post) -> None:
    post_publish(post=Post.objects.get(pk=post.pk))


def recorded(mailing: Mailing, email: str) -> set[str]:
    """What the ledger says the reader's digest of the round carried."""
    row = mailing.deliveries.get(subscriber__email=email)
    return set(row.posts.values_list("title", flat=True))


@pytest.fixture(params=["one message each", "postmark, one message each"])
def one_each(request, settings):
    """A batch's digests go one message each: to SMTP's way, or Postmark's."""
    if request.param == "postmark, one message each":
        request.getfixturevalue("fake_esp")
        settings.NEWSLETTER_DELIVERY_MODE = "single"
    return request.param


def test_a_post_taken_down_as_a_batch_goes_one_digest_each_is_left_out_of_those_after(
    clock, publish, monkeypatch, request, one_each
):
    """The worker reads which of the batch's posts are still on the site once a
    second, not once a reader: the author takes a post down as the first reader's
    digest goes, and the digests handed over from the worker's next read (a second
    on) go without it, while the first had it, as its row says."""
    readers = ["one@example.org", "three@example.org", "two@example.org"]
    mailing, taken_down = a_round_of_two_posts(clock, publish, readers)
    as_each_digest_goes(monkeypatch, (lambda: unpublish_at_the_desk(taken_down), True))
    send_all(mailing)

    digests_sent = digests_sent_one_each(request, one_each)
    assert [to for to, _ in digests_sent] == readers
    holding = ["Wales: a wrong figure" in text for _, text in digests_sent]
    assert holding == [True, False, False]
    assert all("Suffolk: caseloads too high" in text for _, text in digests_sent)
    both = {"Suffolk: caseloads too high", "Wales: a wrong figure"}
    assert [recorded(mailing, email) for email in readers] == [
        both,
        {"Suffolk: caseloads too high"},
        {"Suffolk: caseloads too high"},
    ]


def test_a_post_taken_down_within_the_workers_second_stays_on_the_digests_it_went_in(
    clock, publish, monkeypatch, request, beat, one_each
):
    """The author takes a post down as the first reader's digest goes, and the
    worker, which reads the posts on the site once a second, hands the other two
    theirs within that second, with the post. The take-down had taken it out of
    their rows: put back on the site, it came to all three again in the next
    round."""
    readers = ["one@example.org", "three@example.org", "two@example.org"]
    mailing, taken_down = a_round_of_two_posts(clock, publish, readers)
    as_each_digest_goes(monkeypatch, (lambda: unpublish_at_the_desk(taken_down), False))
    send_all(mailing)

    digests_sent = digests_sent_one_each(request, one_each)
    assert all("Wales: a wrong figure" in text for _, text in digests_sent)
    both = {"Suffolk: caseloads too high", "Wales: a wrong figure"}
    assert [recorded(mailing, email) for email in readers] == [both] * 3
    clock(23, 9)
    put_back(taken_down)
    clock(24, 7, 5)
    assert the_next_round(beat, request, one_each) == []


def test_a_post_taken_down_and_put_back_as_a_batch_goes_reaches_each_reader_once(
    clock, publish, monkeypatch, request, beat, one_each
):
    """The author takes a post down as the first reader's digest goes and puts it
    back as the second's goes: read a second on each time, the second reader's
    digest goes without it, the third's with it again. The take-down had taken it
    out of all three rows, and the next round gave it a second time to the first
    and the third."""
    readers = ["one@example.org", "three@example.org", "two@example.org"]
    mailing, taken_down = a_round_of_two_posts(clock, publish, readers)
    as_each_digest_goes(
        monkeypatch,
        (lambda: unpublish_at_the_desk(taken_down), True),
        (lambda: put_back(taken_down), True),
    )
    send_all(mailing)

    digests_sent = digests_sent_one_each(request, one_each)
    holding = ["Wales: a wrong figure" in text for _, text in digests_sent]
    assert holding == [True, False, True]
    both = {"Suffolk: caseloads too high", "Wales: a wrong figure"}
    assert [recorded(mailing, email) for email in readers] == [
        both,
        {"Suffolk: caseloads too high"},
        both,
    ]
    assert taken_down in mailing.digest_posts.all()  # its clicks are the post's
    clock(24, 7, 5)
    [(to, text)] = the_next_round(beat, request, one_each)
    assert to == "three@example.org"
    assert "Wales: a wrong figure" in text


def killed_once_the_provider_took_the_call(monkeypatch) -> None:
    """The worker's process is killed (out of memory, a deploy) just after the
    provider accepted its first call: nothing after that call runs in it."""
    send = EmailMessage.send

    def sent_then_killed(message, *args, **kwargs):
        send(message, *args, **kwargs)
        monkeypatch.setattr(EmailMessage, "send", send)
        raise WorkerKilled

    monkeypatch.setattr(EmailMessage, "send", sent_then_killed)


def test_a_digest_sent_without_a_post_taken_down_says_so_though_its_worker_died(
    clock,
    monkeypatch,
    fake_esp,
    admin_client,
    beat,
    django_capture_on_commit_callbacks,
):
    """The author takes a post off the site as the reader's digest goes, which
    goes without it, and the worker is killed once the provider took it: the row
    still said the digest carried the post, and put back on the site, the post
    never came to the reader."""
    taken_down = two_posts_for_a_daily_reader(clock)
    mailing = planned_round()
    taken_down_once_its_readers_are_read(monkeypatch, taken_down)
    killed_once_the_provider_took_the_call(monkeypatch)
    with pytest.raises(WorkerKilled):
        send_all(mailing)
    # Reaped as a dead worker's, then settled by asking the provider: it took it.
    clock(23, 7, 30)
    assert delivery.mailings_reap()["stale_claims"] == 1
    batch = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    uncertain_long_enough_to_ask(batch)
    with django_capture_on_commit_callbacks(execute=True):
        assert desk_action(admin_client, "settle", batch).status_code == 302

    assert mailing.deliveries.get().status == Delivery.Status.SENT
    assert recorded(mailing, "daily@example.org") == {"Suffolk: caseloads too high"}
    clock(23, 9)
    put_back(taken_down)
    clock(24, 7, 5)
    beat()
    clock(25, 7, 5)
    beat()
    digests_sent = [m["TextBody"] for m in postmark_messages(fake_esp.messages)]
    assert [("Wales: a wrong figure" in text) for text in digests_sent] == [
        False,
        True,
    ]


@pytest.mark.parametrize("stop", ["pause", "cancel"])
def test_a_round_stopped_once_its_batch_is_claimed_sends_none_of_its_digests(
    clock, publish, monkeypatch, stop
):
    """The author pauses or cancels the round just after a worker claimed a batch
    and read its readers: the claim had read the round going out, and the worker
    took it for its first read of the second, so the batch went."""
    mailing = a_round_of_two(clock, publish)
    control = {"pause": delivery.mailing_pause, "cancel": delivery.mailing_cancel}
    read = sender.batch_recipients

    def readers_then_stopped(*args, **kwargs):
        readers = read(*args, **kwargs)
        assert control[stop](mailing_id=mailing.pk)
        return readers

    monkeypatch.setattr(sender, "batch_recipients", readers_then_stopped)
    send_all(mailing)

    assert mail.outbox == []
    left = {
        "pause": (Delivery.Status.QUEUED, ""),
        "cancel": (Delivery.Status.SKIPPED, "mailing cancelled"),
    }
    assert set(mailing.deliveries.values_list("status", "error")) == {left[stop]}


def test_ringing_a_batch_task_again_sends_nothing_twice(clock, publish, beat):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    clock(23, 7, 5)
    assert len(beat()) == 1
    mail.outbox.clear()
    send_batch.delay(daily_round().batches.get().pk)
    assert mail.outbox == []
    assert Delivery.objects.get().posts.count() == 1


def a_round_of_two(clock, publish) -> Mailing:
    """Two daily readers and the round that holds a post for each, planned, its
    batch tasks not run."""
    reader("one@example.org", ("everything", "", "daily"))
    reader("two@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    clock(23, 7, 5)
    return planned_round()


def planned_round() -> Mailing:
    """The daily round due now, planned, its batch tasks not run."""
    mailing = delivery.mailing_create_for_digest(
        frequency="daily", slot=digests.slot_of(timezone.now())
    )
    while delivery.mailing_plan_page(mailing_id=mailing.pk):
        pass
    mail.outbox.clear()
    return mailing


def send_all(mailing: Mailing) -> None:
    for batch_id in mailing.batches.order_by("number").values_list("pk", flat=True):
        delivery.batch_send(batch_id=batch_id)


@pytest.mark.parametrize("batch_size", [5, 40])
@pytest.mark.parametrize(
    "mode",
    [
        "postmark",
        "postmark, one message each",
        "one message each",
        "postmark, readers counted as themselves",
    ],
)
def test_a_digest_batch_runs_seven_statements_whatever_its_size(
    clock, publish, settings, fake_esp, django_assert_max_num_queries, batch_size, mode
):
    """Claim, load the batch, read its recipients (with their names, consent and
    posts), those posts' order, whether the round still goes and which of them
    are still on the site before the first call (again once a second: the clock
    stands still here), record the outcomes, close the batch: the readers' names
    and posts are not read again per batch or per reader, nor the posts on the
    site per reader where each has a message of their own."""
    if mode == "postmark, one message each":
        settings.NEWSLETTER_DELIVERY_MODE = "single"
    if mode == "one message each":
        # A backend that takes a message per reader (SMTP's way), not Postmark's.
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    agreed = mode == "postmark, readers counted as themselves"
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = agreed
    settings.NEWSLETTER_BATCH_SIZE = batch_size
    Subscriber.objects.bulk_create(
        Subscriber(
            email=f"reader{i}@example.org",
            name=f"Reader {i}",
            status=Subscriber.Status.ACTIVE,
            confirmed_at=timezone.now(),
            engagement_agreed_at=timezone.now() if agreed else None,
        )
        for i in range(batch_size * 2)
    )
    SubscriberTopic.objects.bulk_create(
        SubscriberTopic(subscriber=s, kind="everything", frequency="daily")
        for s in Subscriber.objects.all()
    )
    mailing = a_round_of_two(clock, publish)
    first, second, *_rest = mailing.batches.order_by("number")
    delivery.batch_send(batch_id=first.pk)  # renders the round's parts
    with django_assert_max_num_queries(7):
        delivery.batch_send(batch_id=second.pk)
    if mode == "one message each":
        greeted = {m.to[0]: m.body for m in mail.outbox}
    else:
        greeted = {m["To"]: m["TextBody"] for m in postmark_messages(fake_esp.messages)}
    assert len(greeted) == batch_size * 2
    for address, text in greeted.items():
        assert f"Hello \u2068Reader {address[6:-12]}\u2069," in text


@pytest.mark.parametrize("sponsored", [1, 3])
def test_a_digest_batch_reads_the_sponsors_of_all_its_posts_in_one_statement(
    clock, publish, sponsored, django_capture_on_commit_callbacks
):
    """The batch that renders a round's parts reads who sponsors its posts once,
    however many of them are sponsored: not once a post, nor once a reader."""
    reader("one@example.org", ("everything", "", "daily"))
    reader("two@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Kent: caseloads too high")
    for number in range(sponsored):
        category = CategoryFactory()
        Sponsorship.objects.create(
            category=category,
            name=f"Sponsor {number}",
            url="https://sponsor.example/",
            starts_on=date(2026, 11, 1),
            ends_on=date(2026, 11, 30),
        )
        post = PostFactory(title=f"Sponsored post {number}")
        post.categories.add(category)
        with django_capture_on_commit_callbacks(execute=True):
            post_publish(post=post)
    clock(23, 7, 5)
    batch = planned_round().batches.get()
    with CaptureQueriesContext(connection) as statements:
        delivery.batch_send(batch_id=batch.pk)
    assert len(mail.outbox) == 2
    assert all(m.body.count("sponsored by") == sponsored for m in mail.outbox)
    # Who they are (their names), not whether any deal changed: that is read
    # along with the posts' order (SponsorshipQuerySet.last_change).
    names = f'"{Sponsorship._meta.db_table}"."name"'
    assert sum(names in s["sql"] for s in statements.captured_queries) == 1


def test_planning_pages_the_readers_into_batches_each_reached_once(
    clock, publish, beat, settings, monkeypatch
):
    settings.NEWSLETTER_BATCH_SIZE = 2
    monkeypatch.setattr(digests, "READERS_PER_PAGE", 3)
    for i in range(5):
        reader(f"reader{i}@example.org", ("everything", "", "daily"))
    reader("instant@example.org")  # not in the round's audience
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    clock(23, 7, 5)
    sent = beat()
    assert sorted(m.to[0] for m in sent) == [f"reader{i}@example.org" for i in range(5)]
    # Pages of 3 readers, each cut into batches of 2: 2+1, 2.
    sizes = daily_round().batches.order_by("number").values_list("size", flat=True)
    assert list(sizes) == [2, 1, 2]
    assert daily_round().status == Mailing.Status.DONE
    assert beat() == []


def test_a_postmark_round_goes_in_calls_of_500_digests(clock, publish, fake_esp):
    readers = 501
    Subscriber.objects.bulk_create(
        Subscriber(
            email=f"reader{i}@example.org",
            status=Subscriber.Status.ACTIVE,
            confirmed_at=timezone.now(),
        )
        for i in range(readers)
    )
    SubscriberTopic.objects.bulk_create(
        SubscriberTopic(subscriber=s, kind="everything", frequency="daily")
        for s in Subscriber.objects.all()
    )
    mailing = a_round_of_two(clock, publish)
    send_all(mailing)
    assert fake_esp.stats()["accepted_requests"] == math.ceil((readers + 2) / 500)
    assert fake_esp.recipients() == {
        email: 1 for email in Subscriber.objects.values_list("email", flat=True)
    }
    sent = mailing.deliveries.filter(status=Delivery.Status.SENT)
    assert sent.count() == readers + 2
    assert len(set(sent.values_list("esp_message_id", flat=True))) == readers + 2
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_each_digest_in_a_postmark_batch_holds_its_readers_own_posts_and_links(
    clock, fake_esp, django_capture_on_commit_callbacks
):
    suffolk, kent = AreaFactory(slug="suffolk"), AreaFactory(slug="kent")
    reader("suffolk@example.org", ("area", "suffolk", "daily"))
    reader("kent@example.org", ("area", "kent", "daily"))
    clock(23, 6, 30)
    for title, area in (("On Suffolk", suffolk), ("On Kent", kent)):
        post = PostFactory(title=title)
        InspectionFactory(post=post, area=area)
        post_publish(post=post)
    clock(23, 7, 5)
    run_beat(django_capture_on_commit_callbacks)
    assert fake_esp.stats()["accepted_requests"] == 1
    by_reader = {m["To"]: m for m in fake_esp.messages[0]["payload"]}
    assert "On Suffolk" in by_reader["suffolk@example.org"]["TextBody"]
    assert "On Kent" not in by_reader["suffolk@example.org"]["TextBody"]
    assert "On Kent" in by_reader["kent@example.org"]["HtmlBody"]
    for address, message in by_reader.items():
        headers = {h["Name"]: h["Value"] for h in message["Headers"]}
        token = headers["List-Unsubscribe"].strip("<>").rstrip("/").split("/")[-1]
        assert read_token(token, Purpose.UNSUBSCRIBE).email == address
        assert token in message["TextBody"]
        assert message["Metadata"]["batch"] == str(daily_round().batches.get().pk)


def test_a_digest_whose_worker_died_is_uncertain_and_never_resent(clock, publish):
    mailing = a_round_of_two(clock, publish)
    # The worker claimed the batch, then died before recording any answer.
    Batch.objects.filter(mailing=mailing).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    assert delivery.mailings_reap()["stale_claims"] == 1
    statuses = set(mailing.deliveries.values_list("status", flat=True))
    assert statuses == {Delivery.Status.UNCERTAIN}
    send_all(mailing)
    assert mail.outbox == []  # never resent blindly
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_beat_losing_the_planning_doorbell_is_recovered_by_the_reaper(
    clock, publish, django_capture_on_commit_callbacks
):
    reader("one@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    clock(23, 7, 5)
    start_due_digests.delay()  # on_commit never runs: the doorbell is lost
    Mailing.objects.filter(kind="digest").update(
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_DOORBELL_TIMEOUT_SECONDS + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailings_reap()["mailings_rung"] == 1
    assert [m.to[0] for m in mail.outbox] == ["one@example.org"]


def test_a_provider_outage_puts_the_batch_back_for_its_retry(clock, publish, fake_esp):
    mailing = a_round_of_two(clock, publish)
    batch = mailing.batches.get()
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(delivery.ProviderUnavailable):
        delivery.batch_send(batch_id=batch.pk)
    assert set(mailing.deliveries.values_list("status", flat=True)) == {"queued"}
    assert fake_esp.count == 0
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED
    delivery.batch_send(batch_id=batch.pk)  # the task's retry
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_a_connection_dropped_after_the_request_leaves_the_batch_uncertain(
    clock, publish, fake_esp
):
    mailing = a_round_of_two(clock, publish)
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(mailing)
    batch = mailing.batches.get()
    assert (batch.status, batch.uncertain) == (Batch.Status.UNCERTAIN, 2)
    send_all(mailing)
    delivery.mailings_reap()
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}


def test_in_one_message_mode_a_lost_answer_leaves_only_its_reader_uncertain(
    clock, publish, fake_esp, settings
):
    """Each digest is a request of its own: the one whose answer was lost is
    uncertain, the one before it sent, and the one after it waits, sent once."""
    settings.NEWSLETTER_DELIVERY_MODE = "single"
    reader("zero@example.org", ("everything", "", "daily"))
    mailing = a_round_of_two(clock, publish)
    fake_esp.set_faults(faults_after=1, drop_after_accept_next=1)
    with pytest.raises(delivery.RetryLater):
        send_all(mailing)
    statuses = dict(mailing.deliveries.values_list("subscriber__email", "status"))
    assert sorted(statuses.values()) == [
        Delivery.Status.QUEUED,
        Delivery.Status.SENT,
        Delivery.Status.UNCERTAIN,
    ]
    assert [r["endpoint"] for r in fake_esp.get_messages()][-1].endswith("email")
    send_all(mailing)
    delivery.mailings_reap()
    assert set(fake_esp.recipients().values()) == {1}
    assert len(fake_esp.recipients()) == 3


def test_a_reader_the_provider_refuses_is_failed_and_the_other_sent(
    clock, publish, fake_esp
):
    mailing = a_round_of_two(clock, publish)
    fake_esp.mark_inactive("one@example.org")  # it hard-bounced at Postmark before
    send_all(mailing)
    assert fake_esp.recipients() == {"two@example.org": 1}
    refused = mailing.deliveries.get(subscriber__email="one@example.org")
    assert (refused.status, refused.error) == ("failed", "provider: rejected")
    batch = mailing.batches.get()
    assert (batch.status, batch.sent, batch.failed) == (Batch.Status.DONE, 1, 1)


def test_over_smtp_a_reader_refused_for_good_fails_and_the_other_gets_theirs(
    clock, publish, smtp
):
    mailing = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"550 5.1.1 No such user"
    send_all(mailing)
    assert smtp.recipients == ["two@example.org"]
    refused = mailing.deliveries.get(subscriber__email="one@example.org")
    assert refused.status == "failed"
    assert refused.error == "provider: rejected (550 5.1.1 No such user)"


def test_over_smtp_a_deferred_reader_waits_for_the_retry_and_the_other_gets_theirs(
    clock, publish, smtp
):
    mailing = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"451 4.7.1 Greylisted, try again later"
    with pytest.raises(delivery.ReaderDeferred):
        send_all(mailing)
    assert smtp.recipients == ["two@example.org"]
    waiting = mailing.deliveries.get(subscriber__email="one@example.org")
    assert waiting.status == "queued"
    del smtp.refused["one@example.org"]
    send_all(mailing)  # the task's retry
    assert smtp.recipients == ["two@example.org", "one@example.org"]
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_over_smtp_a_reader_deferred_for_days_fails_and_the_round_finishes(
    clock, publish, smtp
):
    mailing = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"451 4.7.1 Greylisted, try again later"
    started = mailing.created_at - delivery.MAX_DEFERRAL - timedelta(minutes=1)
    Mailing.objects.filter(pk=mailing.pk).update(created_at=started)
    send_all(mailing)
    failed = mailing.deliveries.get(subscriber__email="one@example.org")
    assert failed.status == "failed"
    assert failed.error.startswith("provider: deferred for over 4 days (451 4.7.1")
    mailing.refresh_from_db()
    assert mailing.status == Mailing.Status.DONE


def test_a_paused_round_claims_no_batch_and_resuming_sends_it(
    clock, publish, fake_esp, django_capture_on_commit_callbacks
):
    mailing = a_round_of_two(clock, publish)
    assert delivery.mailing_pause(mailing_id=mailing.pk)
    send_all(mailing)
    assert fake_esp.count == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailing_resume(mailing_id=mailing.pk)
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}


def a_round_waiting_to_be_planned(
    clock, publish, capture_on_commit_callbacks
) -> tuple[Mailing, list]:
    """The daily round of 07:00 holding a post published at 06:30, created and its
    planning rung: the rings, returned, wait in the queue until the test runs them."""
    clock(23, 6, 30)
    publish("Wales: a wrong figure")
    clock(23, 7, 0)
    with capture_on_commit_callbacks(execute=False) as planning:
        held = delivery.mailing_create_for_digest(
            frequency="daily", slot=digests.slot_of(timezone.now())
        )
    return held, planning


@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_a_round_held_before_it_was_planned_is_not_sent_by_the_next_one(
    clock, publish, beat, control, django_capture_on_commit_callbacks
):
    """The author pauses (or cancels) the morning's round before a worker planned
    it (a busy queue, or a list planned a page at a time): its readers' digests
    wait for the resume (or are not sent that day), not go out in the quarter
    hour's next round."""
    reader("daily@example.org", ("everything", "", "daily"))
    held, planning = a_round_waiting_to_be_planned(
        clock, publish, django_capture_on_commit_callbacks
    )
    if control == "pause":
        assert delivery.mailing_pause(mailing_id=held.pk)
    else:
        assert delivery.mailing_cancel(mailing_id=held.pk)
    clock(23, 7, 15)
    with django_capture_on_commit_callbacks(execute=True):
        for ring in planning:  # the queue reaches it before the next round's
            ring()
    assert mail.outbox == []
    assert beat() == []
    clock(23, 7, 30)
    assert beat() == []
    if control == "pause":
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            assert delivery.mailing_resume(mailing_id=held.pk)
        assert [m.to for m in mail.outbox] == [["daily@example.org"]]
    clock(24, 7, 5)
    # The next day's holds what the cancelled one would have.
    expected = [] if control == "pause" else [["daily@example.org"]]
    assert [m.to for m in beat()] == expected


def test_a_round_cancelled_once_planned_leaves_readers_who_joined_after_it_due(
    clock, publish, django_capture_on_commit_callbacks
):
    """Cancelling a round planned to the end marks nobody more: a reader who
    joined after its planning was never its reader, and a later round may take
    them (only a round cancelled while planning marks those it had still to plan)."""
    planned = reader("planned@example.org", ("everything", "", "daily"))
    held, planning = a_round_waiting_to_be_planned(
        clock, publish, django_capture_on_commit_callbacks
    )
    with django_capture_on_commit_callbacks(execute=False):  # its batches wait
        for ring in planning:
            ring()
    held.refresh_from_db()
    assert held.status == Mailing.Status.SENDING
    clock(23, 7, 5)
    joined = reader("joined@example.org", ("everything", "", "daily"))

    assert delivery.mailing_cancel(mailing_id=held.pk)

    planned.refresh_from_db()
    joined.refresh_from_db()
    assert planned.last_daily_round_at == held.slot
    assert joined.last_daily_round_at is None


def test_failures_in_a_row_trip_the_breaker_for_a_round_too(
    clock, publish, fake_esp, settings, django_capture_on_commit_callbacks
):
    settings.NEWSLETTER_BREAKER_FAILURES = 2
    mailing = a_round_of_two(clock, publish)
    fake_esp.set_faults(fail_5xx_next=2)
    for _ in range(2):
        with pytest.raises(delivery.ProviderUnavailable):
            send_all(mailing)
    mailing.refresh_from_db()
    assert mailing.paused_at is not None and mailing.resume_at > timezone.now()
    send_all(mailing)  # paused: nothing goes out
    assert fake_esp.count == 0
    Mailing.objects.filter(pk=mailing.pk).update(resume_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.mailings_reap()["mailings_resumed"] == 1
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}


def test_digests_draw_on_the_sending_budget_posts_use(
    clock, publish, settings, tmp_path
):
    settings.VAR_DIR = tmp_path  # the file budget, unless Redis is configured
    settings.NEWSLETTER_SEND_RATE = 0.01  # one message per 100 s
    settings.NEWSLETTER_SEND_BURST = 1
    if settings.REDIS_URL:
        _redis().delete("newsletter:ratelimit:locmem")
    mailing = a_round_of_two(clock, publish)
    with pytest.raises(delivery.RetryLater) as later:
        send_all(mailing)
    assert later.value.countdown == pytest.approx(100, abs=2)
    assert len(mail.outbox) == 1
    statuses = sorted(mailing.deliveries.values_list("status", flat=True))
    assert statuses == ["queued", "sent"]


def test_the_admin_lists_rounds_and_posts_together_with_their_progress(
    clock, publish, fake_esp
):
    reader("instant@example.org")
    mailing = a_round_of_two(clock, publish)
    fake_esp.mark_inactive("one@example.org")
    send_all(mailing)
    author = Client()
    author.force_login(UserFactory())
    response = author.get(reverse("admin:newsletter_mailing_changelist"))
    assert response.status_code == 200
    listed = {m.kind: m for m in response.context_data["cl"].result_list}
    assert set(listed) == {"post", "digest"}
    digest = listed["digest"]
    counts = (digest.planned, digest.sent, digest.failed, digest.uncertain)
    assert counts == (2, 1, 1, 0)
    assert '<progress value="2" max="2"' in response.content.decode()
    response = author.get(
        reverse("admin:newsletter_mailing_changelist") + "?kind__exact=digest"
    )
    assert response.context_data["cl"].result_count == 1
    page = author.get(reverse("admin:newsletter_mailing_change", args=[mailing.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Daily digest of 2026-11-23, 07:00" in html
    # Each kind's page shows its own fields, what it is before how it went.
    labels = re.findall(r"<label>([^<]+):</label>", html)
    assert labels[:5] == [
        "Kind",
        "Frequency",
        "Period",
        "Posts in its digests",
        "Status",
    ]
    assert "Post" not in labels and "Opens" in labels
    assert "How it went" in html
    announcement = Mailing.objects.get(kind=Mailing.Kind.POST)
    page = author.get(
        reverse("admin:newsletter_mailing_change", args=[announcement.pk])
    )
    labels = re.findall(r"<label>([^<]+):</label>", page.content.decode())
    assert labels[:3] == ["Kind", "Post", "Status"]
    assert "Frequency" not in labels


def test_rounds_that_found_nothing_to_send_are_left_out_of_the_lists(
    clock, publish, beat, rf
):
    """A round starts whenever readers' hour comes: on a day with nothing new it
    sends nothing, and listed it buried the mailings that went out."""
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("First post")  # announced to nobody: its readers take it daily
    clock(23, 7, 5)
    assert len(beat()) == 1
    clock(24, 7, 5)
    assert beat() == []
    sent = Mailing.objects.get(kind=Mailing.Kind.DIGEST, period="2026-11-23")
    empty = Mailing.objects.get(kind=Mailing.Kind.DIGEST, period="2026-11-24")
    announced = Mailing.objects.get(kind=Mailing.Kind.POST)
    author = Client()
    author.force_login(UserFactory())

    def listed(query: str = "") -> set[int]:
        url = reverse("admin:newsletter_mailing_changelist") + query
        response = author.get(url)
        assert response.status_code == 200
        return {mailing.pk for mailing in response.context_data["cl"].result_list}

    assert listed() == {sent.pk, announced.pk}
    assert listed("?empty_rounds=shown") == {sent.pk, announced.pk, empty.pk}
    assert listed("?empty_rounds=only") == {empty.pk}
    assert listed("?empty_rounds=nonsense") == {sent.pk, announced.pk}
    page = author.get(reverse("admin:newsletter_mailing_change", args=[empty.pk]))
    assert "nothing to send" in page.content.decode()
    request = rf.get("/admin/")
    request.user = UserFactory()
    shown = {row["mailing"].pk for row in desk_for(request).mailings}
    assert shown == {sent.pk, announced.pk}


@pytest.fixture
def an_uncertain_batch(clock, publish, fake_esp):
    """A round of two whose call the provider took, and whose answer was lost."""
    mailing = a_round_of_two(clock, publish)
    fake_esp.set_faults(drop_after_accept_next=1)
    send_all(mailing)
    assert fake_esp.count == 2
    return mailing.batches.get(status=Batch.Status.UNCERTAIN)


def test_the_author_resends_an_uncertain_round_knowingly(
    an_uncertain_batch, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            desk_action(admin_client, "resend", an_uncertain_batch).status_code == 302
        )
    assert fake_esp.recipients() == {"one@example.org": 2, "two@example.org": 2}
    an_uncertain_batch.refresh_from_db()
    assert an_uncertain_batch.status == Batch.Status.DONE
    assert an_uncertain_batch.mailing.status == Mailing.Status.DONE


def test_the_author_records_an_uncertain_round_as_sent(
    an_uncertain_batch, fake_esp, admin_client
):
    assert desk_action(admin_client, "mark_sent", an_uncertain_batch).status_code == 302
    an_uncertain_batch.refresh_from_db()
    assert (an_uncertain_batch.status, an_uncertain_batch.sent) == ("done", 2)
    assert fake_esp.count == 2
    assert not delivery.batch_resend(batch_id=an_uncertain_batch.pk)  # settled


@pytest.mark.parametrize("backend", [esp.ANYMAIL_POSTMARK, esp.POSTMARK_BACKEND])
def test_asking_the_provider_records_what_it_took_without_a_second_copy(
    backend,
    an_uncertain_batch,
    fake_esp,
    admin_client,
    settings,
    django_capture_on_commit_callbacks,
):
    # Either Postmark backend may be configured: each is asked the same way.
    settings.EMAIL_BACKEND = backend
    uncertain_long_enough_to_ask(an_uncertain_batch)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            desk_action(admin_client, "settle", an_uncertain_batch).status_code == 302
        )
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}
    for row in an_uncertain_batch.deliveries.select_related("subscriber"):
        (accepted,) = fake_esp.deliveries(address=row.subscriber.email)
        assert (row.status, row.esp_message_id) == ("sent", accepted.message_id)


def test_asking_the_provider_resends_what_it_never_took(
    clock, publish, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    mailing = a_round_of_two(clock, publish)
    # Its worker claimed the batch and died before the request went out.
    Batch.objects.filter(mailing=mailing).update(
        status=Batch.Status.SENDING,
        touched_at=timezone.now()
        - timedelta(seconds=settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS + 1),
    )
    delivery.mailings_reap()
    batch = mailing.batches.get(status=Batch.Status.UNCERTAIN)
    uncertain_long_enough_to_ask(batch)
    with django_capture_on_commit_callbacks(execute=True):
        assert desk_action(admin_client, "settle", batch).status_code == 302
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}
    assert set(mailing.deliveries.values_list("status", flat=True)) == {"sent"}


def two_posts_for_a_daily_reader(clock) -> Post:
    """A daily reader's round due, with two posts published the evening before:
    Suffolk's, kept, and Wales's, returned, which the author takes off the site."""
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    kept = PostFactory(title="Suffolk: caseloads too high")
    taken_down = PostFactory(title="Wales: a wrong figure")
    for post in (kept, taken_down):
        post_publish(post=post)
    clock(23, 7, 5)
    return taken_down


def taken_off_the_site(post: Post) -> None:
    """The author takes the post off the site at the desk, in a thread of its own
    (whose connection is closed as it ends)."""
    try:
        post = Post.objects.get(pk=post.pk)
        with transaction.atomic():
            post.status = Post.Status.DRAFT
            post_save_from_desk(
                post=post, previous_status=Post.Status.PUBLISHED, by=None
            )
    finally:
        connections.close_all()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_post_unpublished_while_its_round_is_planned_is_in_no_digest(
    clock, monkeypatch
):
    """The author takes a post down while a page of the round is being planned:
    the step had read the post as published, and wrote the page's digests with it
    after the unpublishing had taken the post out of the queued ones."""
    taken_down = two_posts_for_a_daily_reader(clock)
    planning_read, unpublished = threading.Event(), threading.Event()
    posts_held = digests.posts_held

    def held_while_the_author_unpublishes(**kwargs):
        held = posts_held(**kwargs)
        planning_read.set()
        # The author unpublishes at once, or waits for the posts this step holds
        # (the fix): go on only when one of the two has happened.
        until_set_or_waiting_for_a_lock(unpublished)
        return held

    monkeypatch.setattr(digests, "posts_held", held_while_the_author_unpublishes)

    def unpublish() -> None:
        assert planning_read.wait(timeout=10)
        taken_off_the_site(taken_down)
        unpublished.set()

    # The round's batches wait their turn (a round of many goes over minutes).
    waiting = []
    monkeypatch.setattr(planner, "_ring", waiting.extend)
    author = threading.Thread(target=unpublish)
    author.start()
    # Committed at once (no test transaction), the round is planned here.
    delivery.mailing_create_for_digest(
        frequency="daily", slot=digests.slot_of(timezone.now())
    )
    author.join(timeout=10)
    assert Post.objects.get(pk=taken_down.pk).status == Post.Status.DRAFT
    for batch_id in waiting:
        delivery.batch_send(batch_id=batch_id)

    [digest] = mail.outbox
    assert "Suffolk: caseloads too high" in digest.body
    assert "Wales: a wrong figure" not in digest.body
    assert not Delivery.objects.filter(posts=taken_down).exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_batch_claimed_while_the_author_takes_a_post_down_goes_as_its_rows_say(
    clock, monkeypatch
):
    """The author's take-down had taken the post out of the batch's rows, not yet
    committed, when a worker claimed the batch: it read its digests as they were,
    and the post as still on the site, and sent it to a reader whose row then said
    their digest had not carried it."""
    taken_down = two_posts_for_a_daily_reader(clock)
    waiting = []  # the round's batch, for this test to send
    monkeypatch.setattr(planner, "_ring", waiting.extend)
    delivery.mailing_create_for_digest(
        frequency="daily", slot=digests.slot_of(timezone.now())
    )
    [batch_id] = waiting
    withdrawn, sent = threading.Event(), threading.Event()
    withdraw = digests.post_withdraw_from_digests

    def withdrawn_then_committed_later(**kwargs):
        left = withdraw(**kwargs)
        withdrawn.set()
        # The worker sends meanwhile, or waits for what the take-down holds (the
        # fix): commit only when one of the two has happened.
        until_set_or_waiting_for_a_lock(sent)
        return left

    monkeypatch.setattr(
        digests, "post_withdraw_from_digests", withdrawn_then_committed_later
    )

    author = threading.Thread(target=taken_off_the_site, args=[taken_down])
    author.start()
    assert withdrawn.wait(timeout=10)
    delivery.batch_send(batch_id=batch_id)
    sent.set()
    author.join(timeout=10)

    [digest] = mail.outbox
    assert "Suffolk: caseloads too high" in digest.body
    assert "Wales: a wrong figure" not in digest.body
    assert not Delivery.objects.filter(posts=taken_down).exists()
    assert Delivery.objects.get().status == Delivery.Status.SENT


def test_a_scanners_click_seconds_after_its_digest_went_is_a_machine(
    clock, publish, beat, client, settings
):
    """Clicks were timed from the round's creation: a batch handed over minutes
    later had its scanners' clicks counted as people's."""
    settings.NEWSLETTER_BATCH_SIZE = 1
    reader("early@example.org", ("everything", "", "daily"))
    reader("late@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    post = publish("Suffolk: caseloads too high")
    clock(23, 7, 5)
    early, late = sorted(beat(), key=lambda message: message.to)
    # The round began minutes before these batches went.
    Mailing.objects.filter(pk=daily_round().pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    post_url = "http://127.0.0.1:8000" + post.get_absolute_url()
    assert daily_round().batches.count() == 2

    click(client, redirects(late)[post_url], address="198.51.100.7")  # a scanner
    clock(23, 7, 6)
    click(client, redirects(early)[post_url], address="192.0.2.10")  # a person
    assert counts()[post_url] == (1, 1)
