"""Digest times the reader chooses: the hour (and, weekly, the day) in their own
time zone, the site's setting for readers who have not chosen; once per period
per reader across the clock changes and when the reader moves their hour.

The clock is an argument: the beat is rung at explicit moments, every quarter
hour, as beat would (no fake clock)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from celery.schedules import maybe_schedule
from django.conf import settings
from django.core import mail

from newsletter import delivery, digests, subscriptions
from newsletter.celery import app as celery_app
from newsletter.models import (
    DEFAULT_TIME_ZONE,
    DIGEST_TIME_ZONES,
    DigestSettings,
    Mailing,
    Subscriber,
    SubscriberTopic,
)
from newsletter.tokens import Purpose, make_token

from .factories import (
    AreaFactory,
    PublishedPostFactory,
    SubscriberFactory,
    confirm_link,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def beat(django_capture_on_commit_callbacks):
    """Ring the beat every quarter hour (or `every`) from `start` up to `end`;
    each digest sent, as (address, the time it went in its reader's own zone)."""

    def ring(
        start: datetime, end: datetime, every=timedelta(minutes=15)
    ) -> list[tuple[str, str]]:
        sent = []
        now = start
        while now < end:
            mail.outbox.clear()
            slot = digests.slot_of(now)
            with django_capture_on_commit_callbacks(execute=True):
                for frequency in digests.rounds_due(slot=slot):
                    delivery.mailing_create_for_digest(frequency=frequency, slot=slot)
            for message in mail.outbox:
                zone = Subscriber.objects.get(email=message.to[0]).time_zone
                local = now.astimezone(ZoneInfo(zone))
                sent.append((message.to[0], f"{local:%a %d %b %H:%M %Z}"))
            now += every
        return sent

    return ring


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def reader(email: str, frequency: str = "daily", **when) -> Subscriber:
    subscriber = SubscriberFactory(email=email, confirmed_at=utc(2027, 1, 1), **when)
    SubscriberTopic.objects.create(
        subscriber=subscriber, kind="everything", frequency=frequency
    )
    return subscriber


def post_at(moment: datetime, title: str = "An inspection"):
    """A post announced at `moment`, which is what a digest goes by. Its
    publication is set in the real past, since Post.objects.published() reads
    the real clock."""
    return PublishedPostFactory(
        title=title, published_at=utc(2026, 1, 1), announced_at=moment
    )


def test_a_reader_at_one_gets_theirs_at_two_the_night_the_clocks_go_forward(beat):
    """Sunday 28 March 2027: at 01:00 GMT London's clocks go to 02:00 BST, so
    01:xx never happens that night."""
    reader("night@example.org", digest_hour=1)
    post_at(utc(2027, 3, 27, 12))
    post_at(utc(2027, 3, 28, 12))
    sent = beat(utc(2027, 3, 28, 0), utc(2027, 3, 29, 23))
    assert sent == [
        ("night@example.org", "Sun 28 Mar 02:00 BST"),
        ("night@example.org", "Mon 29 Mar 01:00 BST"),
    ]


def test_a_reader_at_one_gets_one_digest_the_night_one_oclock_comes_twice(beat):
    """Sunday 31 October 2027: at 02:00 BST London's clocks go back to 01:00 GMT,
    so 01:xx happens twice. A post published in between waits for the next day."""
    reader("night@example.org", digest_hour=1)
    post_at(utc(2027, 10, 30, 12), "Before")
    between = post_at(utc(2027, 10, 31, 0, 30), "Between the two one o'clocks")
    sent = beat(utc(2027, 10, 30, 23), utc(2027, 11, 1, 12))
    assert sent == [
        ("night@example.org", "Sun 31 Oct 01:00 BST"),
        ("night@example.org", "Mon 01 Nov 01:00 GMT"),
    ]
    last = Subscriber.objects.get().deliveries.latest("pk")
    assert list(last.posts.all()) == [between]


def test_the_two_rounds_at_one_the_night_the_clocks_go_back_have_two_names(
    beat, admin_client
):
    """Sunday 31 October 2027, London's 01:00 comes twice: once for its reader
    at one (00:00 UTC, BST), once for a reader in Reykjavik at one (01:00 UTC,
    GMT in London). The Mailings list named both rounds "…, 01:00"."""
    reader("london@example.org", digest_hour=1)
    reader("reykjavik@example.org", time_zone="Atlantic/Reykjavik", digest_hour=1)
    # Each reader's first ring sends at once what is due: Saturday's rounds.
    beat(utc(2027, 10, 30, 2), utc(2027, 10, 30, 3))
    post_at(utc(2027, 10, 30, 12))
    sent = beat(utc(2027, 10, 30, 23), utc(2027, 10, 31, 2))
    assert sent == [
        ("london@example.org", "Sun 31 Oct 01:00 BST"),
        ("reykjavik@example.org", "Sun 31 Oct 01:00 GMT"),
    ]
    listing = admin_client.get("/admin/newsletter/mailing/").content.decode()
    assert "Daily digest of 2027-10-31, 01:00 BST" in listing
    assert "Daily digest of 2027-10-31, 01:00 GMT" in listing


def test_readers_in_london_and_new_york_each_get_theirs_at_seven_their_time(beat):
    """America's clocks go forward a fortnight before Europe's: on Sunday 14 March
    2027 New York's seven o'clock comes an hour earlier for a London reader."""
    reader("london@example.org")  # the site's hour, 07:00
    reader("new-york@example.org", time_zone="America/New_York", digest_hour=7)
    for day in (12, 13, 14):
        post_at(utc(2027, 3, day, 16))
    # From midnight in New York: a reader is due once their hour has come.
    sent = beat(utc(2027, 3, 13, 5), utc(2027, 3, 15, 5))
    assert sent == [
        ("london@example.org", "Sat 13 Mar 07:00 GMT"),
        ("new-york@example.org", "Sat 13 Mar 07:00 EST"),  # 12:00 UTC
        ("london@example.org", "Sun 14 Mar 07:00 GMT"),
        ("new-york@example.org", "Sun 14 Mar 07:00 EDT"),  # 11:00 UTC
    ]


def test_readers_due_at_the_same_moment_share_one_round(beat):
    reader("london@example.org")
    reader("paris@example.org", time_zone="Europe/Paris", digest_hour=8)
    post_at(utc(2027, 3, 12, 16))
    sent = beat(utc(2027, 3, 13, 0), utc(2027, 3, 14, 0))
    assert sent == [
        ("london@example.org", "Sat 13 Mar 07:00 GMT"),
        ("paris@example.org", "Sat 13 Mar 08:00 CET"),
    ]
    round_ = Mailing.objects.get(kind="digest")
    assert round_.slot == utc(2027, 3, 13, 7)
    assert str(round_) == "Daily digest of 2027-03-13, 07:00"


def test_a_reader_half_an_hour_off_london_gets_theirs_within_the_quarter(beat):
    reader("delhi@example.org", time_zone="Asia/Kolkata", digest_hour=7)
    post_at(utc(2027, 3, 12, 16))
    sent = beat(utc(2027, 3, 13, 0), utc(2027, 3, 14, 0))
    assert sent == [("delhi@example.org", "Sat 13 Mar 07:00 IST")]  # 01:30 UTC


def test_a_weekly_reader_gets_theirs_on_their_day_at_their_hour(beat):
    reader("friday@example.org", "weekly", digest_weekday=4, digest_hour=7)
    reader("monday@example.org", "weekly")  # the site's day and hour
    post_at(utc(2027, 3, 10, 12))
    post_at(utc(2027, 3, 16, 12))
    sent = beat(utc(2027, 3, 11, 0), utc(2027, 3, 20, 0), every=timedelta(hours=1))
    assert sent == [
        ("friday@example.org", "Fri 12 Mar 07:00 GMT"),
        ("monday@example.org", "Mon 15 Mar 07:00 GMT"),
        ("friday@example.org", "Fri 19 Mar 07:00 GMT"),
    ]


def test_readers_who_never_chose_follow_the_sites_setting(beat):
    settings = DigestSettings.load()
    settings.hour = 18
    settings.save()
    reader("default@example.org")
    reader("own@example.org", digest_hour=6)
    post_at(utc(2027, 3, 12, 16))
    sent = beat(utc(2027, 3, 13, 0), utc(2027, 3, 14, 0))
    assert sent == [
        ("own@example.org", "Sat 13 Mar 06:00 GMT"),
        ("default@example.org", "Sat 13 Mar 18:00 GMT"),
    ]


def test_the_desk_shows_the_digest_times_in_force_before_anyone_sets_them(
    admin_client,
):
    """With no settings row the digests go at the defaults, yet the desk's
    Digest settings page listed nothing at all."""
    assert not DigestSettings.objects.exists()
    page = admin_client.get("/admin/newsletter/digestsettings/").content.decode()
    assert "In force: Daily at 07:00, weekly on Monday" in page
    assert not DigestSettings.objects.exists()


def test_a_reader_with_nothing_at_their_hour_gets_no_digest_later_that_day(beat):
    reader("daily@example.org")
    post_at(utc(2027, 3, 13, 9))  # after the 07:00 round, which had nothing
    sent = beat(utc(2027, 3, 13, 0), utc(2027, 3, 15, 0))
    assert sent == [("daily@example.org", "Sun 14 Mar 07:00 GMT")]


def test_a_reader_who_moves_their_hour_after_todays_digest_gets_no_second(beat):
    subscriber = reader("daily@example.org")
    post_at(utc(2027, 3, 12, 16))
    assert beat(utc(2027, 3, 13, 0), utc(2027, 3, 13, 12)) == [
        ("daily@example.org", "Sat 13 Mar 07:00 GMT")
    ]
    digests.digest_time_set(
        subscriber=subscriber, hour=20, weekday=None, time_zone="Europe/London"
    )
    post_at(utc(2027, 3, 13, 12, 30))
    assert beat(utc(2027, 3, 13, 12), utc(2027, 3, 15, 0)) == [
        ("daily@example.org", "Sun 14 Mar 20:00 GMT")
    ]


def test_a_reader_who_moves_their_hour_to_one_gone_by_gets_todays_at_once(beat):
    subscriber = reader("daily@example.org", digest_hour=20)
    post_at(utc(2027, 3, 12, 16))
    assert beat(utc(2027, 3, 13, 0), utc(2027, 3, 13, 10)) == []
    digests.digest_time_set(
        subscriber=subscriber, hour=7, weekday=None, time_zone="Europe/London"
    )
    post_at(utc(2027, 3, 13, 22))
    assert beat(utc(2027, 3, 13, 10), utc(2027, 3, 15, 0)) == [
        ("daily@example.org", "Sat 13 Mar 10:00 GMT"),
        ("daily@example.org", "Sun 14 Mar 07:00 GMT"),
    ]


def test_a_weekly_reader_who_moves_their_day_gets_no_second_that_week(beat):
    subscriber = reader("weekly@example.org", "weekly")  # Mondays at 07:00
    post_at(utc(2027, 3, 14, 12))
    post_at(utc(2027, 3, 16, 12))
    assert beat(utc(2027, 3, 15, 0), utc(2027, 3, 16, 0)) == [
        ("weekly@example.org", "Mon 15 Mar 07:00 GMT")
    ]
    digests.digest_time_set(
        subscriber=subscriber, hour=None, weekday=4, time_zone="Europe/London"
    )
    assert beat(utc(2027, 3, 16, 0), utc(2027, 3, 27, 0), timedelta(hours=1)) == [
        ("weekly@example.org", "Fri 26 Mar 07:00 GMT")
    ]


def test_a_weekly_reader_who_turns_to_daily_gets_the_weeks_posts_so_far(beat):
    """The posts waiting for Monday's weekly digest come in the first daily one,
    however late in the week the reader changes."""
    subscriber = reader("weekly@example.org", "weekly")  # Mondays at 07:00
    post_at(utc(2027, 3, 14, 12), "Sunday's")
    assert beat(utc(2027, 3, 15, 6), utc(2027, 3, 15, 8)) == [
        ("weekly@example.org", "Mon 15 Mar 07:00 GMT")
    ]
    post_at(utc(2027, 3, 16, 12), "Tuesday's")
    post_at(utc(2027, 3, 17, 12), "Wednesday's")
    subscriptions.topics_set(subscriber=subscriber, frequency="daily")  # on Sunday
    assert beat(utc(2027, 3, 21, 6), utc(2027, 3, 21, 8)) == [
        ("weekly@example.org", "Sun 21 Mar 07:00 GMT")
    ]
    daily = subscriber.deliveries.get(mailing__frequency="daily")
    assert sorted(daily.posts.values_list("title", flat=True)) == [
        "Tuesday's",
        "Wednesday's",
    ]


@pytest.mark.parametrize("started", [utc(2027, 3, 13, 6, 58), utc(2027, 3, 13, 6, 47)])
def test_beat_rings_the_rounds_as_each_quarter_hour_comes_whenever_it_started(started):
    """A reader's hour is a slot's (digests.slot_of): rung 15 minutes after
    whenever beat started, a 07:00 reader's digest went at 07:13, every day."""
    entry = settings.CELERY_BEAT_SCHEDULE["start-due-digests"]
    ring = maybe_schedule(entry["schedule"], app=celery_app)

    def due_at(now: datetime, last_rang: datetime) -> bool:
        ring.nowfun = lambda: now
        return ring.is_due(last_rang).is_due

    assert due_at(utc(2027, 3, 13, 7, 0, 30), last_rang=started)
    # And once a quarter: not again before the next one.
    assert not due_at(utc(2027, 3, 13, 7, 14, 30), last_rang=utc(2027, 3, 13, 7, 0))
    assert due_at(utc(2027, 3, 13, 7, 15, 30), last_rang=utc(2027, 3, 13, 7, 0))


def test_every_ring_of_beats_is_dropped_once_it_has_waited_past_its_interval():
    """With the workers down and beat ringing on, a day's rings (~7,000) all ran
    ahead of the sends when the workers came back. A ring waits its interval at
    most, or 5 minutes for the frequent ones (not to be dropped behind a send's
    batches): the next ring then does its work."""
    rang = utc(2027, 3, 13, 7, 0)
    for name, entry in celery_app.conf.beat_schedule.items():
        ring = maybe_schedule(entry["schedule"], app=celery_app)
        ring.nowfun = lambda: rang
        interval = ring.is_due(rang).next
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, name
        assert 0 < expires <= max(interval, settings.RING_WAITS_AT_LEAST_SECONDS), name


def test_a_readers_digest_whose_ring_was_dropped_goes_at_the_next_ring(beat):
    """The 07:00 ring dropped, its wait for a worker past its expiry: the 07:15
    ring sends the 07:00 reader's digest, which start_due_digests finds from
    the time it runs."""
    reader("seven@example.org")
    post_at(utc(2027, 3, 13, 6))
    sent = beat(utc(2027, 3, 13, 7, 15), utc(2027, 3, 13, 8))
    assert sent == [("seven@example.org", "Sat 13 Mar 07:15 GMT")]


def test_a_zone_the_database_no_longer_knows_reads_as_london(beat):
    reader("lost@example.org")
    Subscriber.objects.update(time_zone="Mars/Olympus_Mons")
    post_at(utc(2027, 3, 12, 16))
    rounds = []
    for hour in range(24):
        slot = utc(2027, 3, 13, hour)
        rounds += [(hour, f) for f in digests.rounds_due(slot=slot)]
    assert rounds == [(h, "daily") for h in range(7, 24)]


def test_every_offered_time_zone_is_one_zoneinfo_knows():
    offered = [name for name, _label in DIGEST_TIME_ZONES]
    assert DEFAULT_TIME_ZONE in offered
    assert set(offered) <= available_timezones()


def topics_url(subscriber: Subscriber) -> str:
    return f"/preferences/{make_token(subscriber, Purpose.PREFERENCES)}/topics/"


def test_the_preference_centre_shows_the_readers_digest_time(client):
    subscriber = reader("daily@example.org", digest_hour=6, time_zone="Asia/Tokyo")
    token = make_token(subscriber, Purpose.PREFERENCES)
    page = client.get(f"/preferences/{token}/").content.decode()
    assert '<option value="6" selected>06:00</option>' in page
    assert '<option value="Asia/Tokyo" selected>Tokyo</option>' in page
    assert '<option value="" selected>The usual day (Monday)</option>' in page


def test_the_preference_centre_reads_the_sites_digest_time_without_writing_it(client):
    subscriber = reader("daily@example.org")
    token = make_token(subscriber, Purpose.PREFERENCES)
    page = client.get(f"/preferences/{token}/").content.decode()
    assert "The usual time (07:00)" in page
    assert not DigestSettings.objects.exists()
    # The author adds the site's setting in the admin (whatever its id).
    DigestSettings.objects.create(pk=2, hour=18)
    page = client.get(f"/preferences/{token}/").content.decode()
    assert "The usual time (18:00)" in page


def test_a_reader_chooses_a_weekly_digest_on_friday_at_seven_in_new_york(client):
    subscriber = reader("weekly@example.org")
    response = client.post(
        topics_url(subscriber),
        {
            "frequency": "weekly",
            "digest_hour": "7",
            "digest_weekday": "4",
            "time_zone": "America/New_York",
        },
    )
    assert response.status_code == 200
    assert (
        "Your digest arrives every Friday at 07:00, New York, Toronto (Eastern) time."
        in response.content.decode()
    )
    subscriber.refresh_from_db()
    assert (subscriber.digest_hour, subscriber.digest_weekday) == (7, 4)
    assert subscriber.time_zone == "America/New_York"
    assert subscriber.topics.get().frequency == "weekly"


def reader_the_desk_gave_two_frequencies() -> Subscriber:
    """Every post in a daily digest, and Suffolk as published: the desk can give
    one reader topics at different frequencies; the page's form sets one."""
    subscriber = reader("mixed@example.org", digest_hour=6)
    AreaFactory(slug="suffolk", name="Suffolk")
    SubscriberTopic.objects.create(
        subscriber=subscriber, kind="area", value="suffolk", frequency="instant"
    )
    return subscriber


def topic_rows(subscriber: Subscriber) -> set[tuple[str, str, str]]:
    return set(subscriber.topics.values_list("kind", "value", "frequency"))


def test_a_reader_at_two_frequencies_who_moves_only_their_hour_keeps_both(client):
    subscriber = reader_the_desk_gave_two_frequencies()
    before = topic_rows(subscriber)
    # The form as the page filled it in, only the hour changed.
    response = client.post(
        topics_url(subscriber),
        {"topics": ["area:suffolk"], "frequency": "instant", "digest_hour": "8"},
    )
    assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.digest_hour == 8
    assert topic_rows(subscriber) == before
    page = response.content.decode()
    assert "How often: as it is published." not in page
    assert "You follow Suffolk as published, and every post in a daily digest." in page
    assert "Your digest arrives every day at 08:00, London (UK) time." in page


def test_the_page_says_which_topics_come_at_which_frequency(client):
    subscriber = reader_the_desk_gave_two_frequencies()
    token = make_token(subscriber, Purpose.PREFERENCES)
    page = client.get(f"/preferences/{token}/").content.decode()
    assert "You follow Suffolk as published, and every post in a daily digest." in page
    assert "sets one “How often” for them all" in page


def test_a_reader_at_two_frequencies_who_changes_how_often_gets_one(client):
    subscriber = reader_the_desk_gave_two_frequencies()
    response = client.post(
        topics_url(subscriber), {"topics": ["area:suffolk"], "frequency": "weekly"}
    )
    assert response.status_code == 200
    assert topic_rows(subscriber) == {("area", "suffolk", "weekly")}


@pytest.mark.parametrize(
    ("frequency", "said"),
    [
        ("weekly", "Your digest arrives every Monday at 07:00, London (UK) time."),
        ("instant", "New posts will arrive as they are published."),
    ],
)
@pytest.mark.parametrize("back", ["resuming", "subscribing again"])
def test_a_reader_who_resumes_is_told_when_posts_come_again(
    client, django_capture_on_commit_callbacks, frequency, said, back
):
    """Back by the preference centre's Resume or through the subscribe form
    (their emails deleted), they are told the same (the form's link said "You
    are subscribed", as to a new reader, and left the digest's time to the
    welcome, which a reader resumed is not sent)."""
    subscriber = reader("paused@example.org", frequency, paused_at=utc(2027, 1, 2))

    if back == "resuming":
        token = make_token(subscriber, Purpose.PREFERENCES)
        response = client.post(f"/preferences/{token}/", {"action": "resume"})
    else:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(
                "/subscribe/", {"email": "paused@example.org", "frequency": frequency}
            )
        [confirmation] = mail.outbox
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(confirm_link(confirmation))

    page = response.content.decode()
    assert "Your newsletter is back on" in page
    assert said in page


def test_a_form_without_digest_times_goes_back_to_the_sites(client):
    subscriber = reader("daily@example.org", digest_hour=6, time_zone="Asia/Tokyo")
    response = client.post(topics_url(subscriber), {"frequency": "daily"})
    assert "every day at 07:00, London (UK) time" in response.content.decode()
    subscriber.refresh_from_db()
    assert (subscriber.digest_hour, subscriber.time_zone) == (None, "Europe/London")


@pytest.mark.parametrize(
    "bad",
    [
        {"time_zone": "Mars/Olympus_Mons"},
        {"time_zone": "../../etc/passwd"},
        {"time_zone": "Africa/Cairo"},  # a real zone, but not one offered
        {"digest_hour": "24"},
        {"digest_hour": "-1"},
        {"digest_hour": "seven"},
        {"digest_weekday": "7"},
        {"digest_weekday": "\x00"},
    ],
)
def test_a_digest_time_not_offered_is_refused_and_changes_nothing(client, bad):
    subscriber = reader("daily@example.org", digest_hour=6)
    data = {"frequency": "weekly", "digest_hour": "9", **bad}
    response = client.post(topics_url(subscriber), data)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    subscriber.refresh_from_db()
    assert (subscriber.digest_hour, subscriber.time_zone) == (6, "Europe/London")
    assert subscriber.topics.get().frequency == "daily"
    assert not DigestSettings.objects.exists()  # the form read the site's, only
