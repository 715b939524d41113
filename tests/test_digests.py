"""Daily and weekly digests: built by the beat task at the hour (and day) set in
the admin, holding only matched posts the reader has not been sent, once per
period, and never empty."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from newsletter import delivery, digests
from newsletter.delivery.ratelimit import _redis
from newsletter.digest_tasks import send_digest_run, start_due_digests
from newsletter.models import DigestDelivery, DigestRun, DigestSettings, SubscriberTopic
from newsletter.subscriptions import unsubscribe
from posts.services import post_publish

from .factories import AreaFactory, InspectionFactory, PostFactory, SubscriberFactory

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
    def publish(title: str, area=None):
        post = PostFactory(title=title)
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
    assert DigestRun.objects.filter(frequency="daily").count() == 1


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
    assert not DigestDelivery.objects.filter(run__period="2026-11-24").exists()
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
    assert "http://127.0.0.1:8000/posts/" in digest.alternatives[0].content
    assert DigestDelivery.objects.get().status == "sent"


def test_an_unsubscribed_reader_gets_no_digest(clock, publish, beat):
    leaving = reader("leaving@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    unsubscribe(subscriber=leaving)
    clock(23, 7, 5)
    assert beat() == []


def test_ringing_a_rounds_send_task_again_sends_nothing_twice(clock, publish, beat):
    reader("daily@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("A post")
    clock(23, 7, 5)
    assert len(beat()) == 1
    run = DigestRun.objects.get(frequency="daily")
    mail.outbox.clear()
    assert send_digest_run.delay(run.pk).get() == 0
    assert mail.outbox == []
    assert DigestDelivery.objects.get().posts.count() == 1


def a_round_of_two(clock, publish):
    """Two daily readers and the round that holds a post for each (its task not run)."""
    reader("one@example.org", ("everything", "", "daily"))
    reader("two@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    clock(23, 7, 5)
    return digests.digest_run_create(frequency="daily", now=timezone.now())


def test_a_round_is_cut_into_slices_that_each_reach_their_readers_once(
    clock, publish, beat, monkeypatch
):
    monkeypatch.setattr(digests, "SLICE", 2)
    rung = []
    monkeypatch.setattr(
        send_digest_run,
        "delay",
        lambda *args: rung.append(args) or send_digest_run(*args),
    )
    for i in range(5):
        reader(f"reader{i}@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish("Suffolk: caseloads too high")
    clock(23, 7, 5)
    sent = beat()
    assert sorted(m.to[0] for m in sent) == [f"reader{i}@example.org" for i in range(5)]
    assert len(rung) == 3  # and none for the weekly round, empty and finished
    assert not DigestRun.objects.filter(finished_at__isnull=True).exists()
    assert beat() == []


def test_a_digest_whose_worker_died_is_uncertain_and_never_resent(clock, publish, beat):
    run = a_round_of_two(clock, publish)
    lost = run.deliveries.get(subscriber__email="one@example.org")
    # The worker claimed it, then died before it could record how it went.
    DigestDelivery.objects.filter(pk=lost.pk).update(
        status="sending", claimed_at=timezone.now()
    )
    mail.outbox.clear()
    assert digests.send_digest_run(run_id=run.pk) == 1
    assert [m.to[0] for m in mail.outbox] == ["two@example.org"]
    run.refresh_from_db()
    assert run.finished_at is None  # the claim may still be a live worker's
    clock(23, 7, 30)  # past NEWSLETTER_CLAIM_TIMEOUT (10 minutes)
    assert beat() == []
    lost.refresh_from_db()
    assert lost.status == "uncertain"
    run.refresh_from_db()
    assert run.finished_at is not None


def test_a_provider_outage_puts_the_digest_back_for_the_rounds_retry(
    clock, publish, fake_esp
):
    run = a_round_of_two(clock, publish)
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    with pytest.raises(delivery.ProviderUnavailable):
        digests.send_digest_run(run_id=run.pk)
    assert set(run.deliveries.values_list("status", flat=True)) == {"queued"}
    assert fake_esp.count == 0
    run.refresh_from_db()
    assert run.finished_at is None
    assert digests.send_digest_run(run_id=run.pk) == 2  # the retry
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}
    run.refresh_from_db()
    assert run.finished_at is not None


def test_a_reader_the_provider_refuses_is_failed_not_left_uncertain(
    clock, publish, fake_esp
):
    run = a_round_of_two(clock, publish)
    fake_esp.mark_inactive("one@example.org")  # it hard-bounced at Postmark before
    assert digests.send_digest_run(run_id=run.pk) == 1
    assert fake_esp.recipients() == {"two@example.org": 1}
    refused = run.deliveries.get(subscriber__email="one@example.org")
    assert (refused.status, refused.error) == ("failed", "provider: rejected")
    run.refresh_from_db()
    assert run.finished_at is not None


def test_over_smtp_a_reader_refused_for_good_fails_and_the_other_gets_theirs(
    clock, publish, smtp
):
    run = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"550 5.1.1 No such user"
    assert digests.send_digest_run(run_id=run.pk) == 1
    assert smtp.recipients == ["two@example.org"]
    refused = run.deliveries.get(subscriber__email="one@example.org")
    assert refused.status == "failed"
    assert refused.error == "provider: rejected (550 5.1.1 No such user)"


def test_over_smtp_a_deferred_reader_waits_for_the_retry_and_the_other_gets_theirs(
    clock, publish, smtp
):
    run = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"451 4.7.1 Greylisted, try again later"
    with pytest.raises(delivery.ReaderDeferred):
        digests.send_digest_run(run_id=run.pk)
    assert smtp.recipients == ["two@example.org"]
    waiting = run.deliveries.get(subscriber__email="one@example.org")
    assert waiting.status == "queued"
    del smtp.refused["one@example.org"]
    assert digests.send_digest_run(run_id=run.pk) == 1  # the task's retry
    assert smtp.recipients == ["two@example.org", "one@example.org"]
    run.refresh_from_db()
    assert run.finished_at is not None


def test_over_smtp_a_reader_deferred_for_days_fails_and_the_round_finishes(
    clock, publish, smtp
):
    run = a_round_of_two(clock, publish)
    smtp.refused["one@example.org"] = b"451 4.7.1 Greylisted, try again later"
    started = run.created_at - delivery.MAX_DEFERRAL - timedelta(minutes=1)
    DigestRun.objects.filter(pk=run.pk).update(created_at=started)
    assert digests.send_digest_run(run_id=run.pk) == 1
    failed = run.deliveries.get(subscriber__email="one@example.org")
    assert failed.status == "failed"
    assert failed.error.startswith("provider: deferred for over 4 days (451 4.7.1")
    run.refresh_from_db()
    assert run.finished_at is not None


def test_the_admin_lists_each_round_with_how_its_digests_went(
    clock, publish, fake_esp, admin_client
):
    run = a_round_of_two(clock, publish)
    fake_esp.mark_inactive("one@example.org")
    digests.send_digest_run(run_id=run.pk)
    response = admin_client.get(reverse("admin:newsletter_digestrun_changelist"))
    assert response.status_code == 200
    (listed,) = response.context_data["cl"].result_list
    counts = (listed.readers, listed.sent, listed.failed, listed.uncertain)
    assert counts == (2, 1, 1, 0)
    assert listed.waiting == 0


@pytest.fixture
def an_uncertain_digest(clock, publish, fake_esp):
    """A round of two in which the answer for one@ was lost after the provider
    took the request."""
    run = a_round_of_two(clock, publish)
    fake_esp.set_faults(drop_after_accept_next=1)
    digests.send_digest_run(run_id=run.pk)
    assert fake_esp.count == 2
    return run.deliveries.get(status="uncertain")


def act_on(admin_client, row, action: str):
    return admin_client.post(
        reverse("admin:newsletter_digestdelivery_changelist"),
        {"action": action, "_selected_action": [row.pk]},
    )


def test_the_author_resends_an_uncertain_digest_knowingly(
    an_uncertain_digest, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert act_on(admin_client, an_uncertain_digest, "resend").status_code == 302
    assert fake_esp.recipients()[an_uncertain_digest.subscriber.email] == 2
    an_uncertain_digest.refresh_from_db()
    assert an_uncertain_digest.status == "sent"
    an_uncertain_digest.run.refresh_from_db()
    assert an_uncertain_digest.run.finished_at is not None


def test_the_author_records_an_uncertain_digest_as_sent(
    an_uncertain_digest, fake_esp, admin_client
):
    assert act_on(admin_client, an_uncertain_digest, "mark_sent").status_code == 302
    an_uncertain_digest.refresh_from_db()
    assert an_uncertain_digest.status == "sent"
    assert fake_esp.count == 2
    assert digests.digests_resend(row_ids=[an_uncertain_digest.pk]) == 0  # settled


def test_asking_the_provider_records_what_it_took_without_a_second_copy(
    an_uncertain_digest, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert act_on(admin_client, an_uncertain_digest, "resolve").status_code == 302
    email = an_uncertain_digest.subscriber.email
    assert fake_esp.recipients()[email] == 1
    an_uncertain_digest.refresh_from_db()
    assert an_uncertain_digest.status == "sent"
    (accepted,) = fake_esp.deliveries(address=email)
    assert an_uncertain_digest.esp_message_id == accepted.message_id


def test_asking_the_provider_resends_what_it_never_took(
    clock, publish, fake_esp, admin_client, django_capture_on_commit_callbacks
):
    run = a_round_of_two(clock, publish)
    lost = run.deliveries.get(subscriber__email="one@example.org")
    # Its worker claimed it and died before the request went out.
    DigestDelivery.objects.filter(pk=lost.pk).update(
        status="uncertain", claimed_at=timezone.now()
    )
    digests.send_digest_run(run_id=run.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert act_on(admin_client, lost, "resolve").status_code == 302
    assert fake_esp.recipients() == {"one@example.org": 1, "two@example.org": 1}
    lost.refresh_from_db()
    assert lost.status == "sent"


def test_digests_draw_on_the_sending_budget_posts_use(
    clock, publish, settings, tmp_path
):
    settings.VAR_DIR = tmp_path  # the file budget, unless Redis is configured
    settings.NEWSLETTER_SEND_RATE = 0.01  # one message per 100 s
    settings.NEWSLETTER_SEND_BURST = 1
    if settings.REDIS_URL:
        _redis().delete("newsletter:ratelimit:locmem")
    run = a_round_of_two(clock, publish)
    mail.outbox.clear()
    with pytest.raises(delivery.RetryLater) as later:
        digests.send_digest_run(run_id=run.pk)
    assert later.value.countdown == pytest.approx(100, abs=2)
    assert len(mail.outbox) == 1
    statuses = sorted(run.deliveries.values_list("status", flat=True))
    assert statuses == ["queued", "sent"]


def test_beat_rings_again_for_a_round_left_unfinished(clock, publish, beat):
    run = a_round_of_two(clock, publish)  # its task lost with the broker
    clock(23, 8, 5)
    assert beat() == []  # not yet: it may still be on its way
    clock(23, 9, 10)
    sent = beat()
    assert sorted(m.to[0] for m in sent) == ["one@example.org", "two@example.org"]
    run.refresh_from_db()
    assert run.finished_at is not None
    assert beat() == []
