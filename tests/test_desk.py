"""The desk, the admin's front page: readers now, growth, latest mailings and what
needs the author, each part for those allowed to see it, in a bounded number of
queries; and the subscribe form recording the page a reader came from."""

import io
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from newsletter.desk import DELETED_SINCE, GROWTH_WEEKS, desk_for
from newsletter.models import (
    Batch,
    Consent,
    Delivery,
    Mailing,
    Subscriber,
    SubscriberTopic,
    Suppression,
)
from newsletter.subscriptions import (
    CONSENT_SOURCE_FORM,
    CONSENT_SOURCE_PREFERENCES,
    address_suppress,
    email_change_confirm,
    pending_purge_expired,
    subscriber_delete,
)
from posts.comments.models import Comment
from posts.models import PostUpdate

from .factories import (
    CommentFactory,
    PublishedPostFactory,
    RegionFactory,
    StaffFactory,
    SubscriberFactory,
    UserFactory,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

Status = Subscriber.Status
Frequency = SubscriberTopic.Frequency


def desk_of(rf, user):
    request = rf.get("/admin/")
    request.user = user
    return desk_for(request)


def follow(subscriber, kind, value="", frequency=Frequency.INSTANT):
    SubscriberTopic.objects.create(
        subscriber=subscriber, kind=kind, value=value, frequency=frequency
    )


def consent(subscriber, *, source=CONSENT_SOURCE_FORM, page=""):
    Consent.objects.create(
        subscriber=subscriber,
        wording="…",
        wording_version="1",
        source=source,
        page=page,
        confirmed_at=subscriber.confirmed_at,
    )


def suppress(email, reason, at):
    """A reader in the audience left by their address at `at` (address_suppress
    marks it so), whose row is gone since (erased, or a list trimmed)."""
    suppression = Suppression.objects.create(
        address_hash=Suppression.hash_address(email), reason=reason
    )
    Suppression.objects.filter(pk=suppression.pk).update(
        created_at=at, reader_left_at=at
    )


_slots = iter(range(1000))


def mailing_with(subscribers, *, events=(), status=Mailing.Status.DONE, **fields):
    """A digest mailing sent to the subscribers, the provider's latest word on the
    first ones given by `events` (e.g. ["bounced", "complained"])."""
    slot = timezone.now() - timedelta(hours=next(_slots))
    digest = {"kind": Mailing.Kind.DIGEST, "frequency": "daily", "slot": slot}
    mailing = Mailing.objects.create(
        **(digest if "post" not in fields else {"kind": Mailing.Kind.POST}),
        period=slot.date(),
        status=status,
        **fields,
    )
    batch = Batch.objects.create(
        mailing=mailing, number=1, status=Batch.Status.DONE, size=len(subscribers)
    )
    batch.sent = len(subscribers)
    batch.save()
    events = list(events) + [""] * (len(subscribers) - len(events))
    Delivery.objects.bulk_create(
        Delivery(
            mailing=mailing,
            batch=batch,
            subscriber=subscriber,
            status=Delivery.Status.SENT,
            last_event=event,
        )
        for subscriber, event in zip(subscribers, events, strict=True)
    )
    return mailing


def readers(n, **fields):
    return SubscriberFactory.create_batch(n, **fields)


def test_readers_now_by_status_topic_and_frequency(rf):
    region = RegionFactory(name="Wales", slug="wales")
    a, b, _everything = readers(3)  # confirmed, receiving
    follow(a, SubscriberTopic.Kind.REGION, region.slug, Frequency.DAILY)
    follow(a, SubscriberTopic.Kind.EVERYTHING, "", Frequency.WEEKLY)
    follow(b, SubscriberTopic.Kind.REGION, region.slug, Frequency.DAILY)
    # c follows nothing: everything, as published.
    paused = SubscriberFactory(paused_at=timezone.now())
    follow(paused, SubscriberTopic.Kind.REGION, region.slug, Frequency.WEEKLY)
    SubscriberFactory(status=Status.PENDING, confirmed_at=None)
    SubscriberFactory(status=Status.UNSUBSCRIBED)
    SubscriberFactory.create_batch(2, status=Status.BOUNCED)
    SubscriberFactory(status=Status.COMPLAINED)
    SubscriberFactory(status=Status.SUPPRESSED)

    desk = desk_of(rf, UserFactory())

    assert dict(desk.readers) == {
        "Confirmed, receiving": 3,
        "Pending confirmation": 1,
        "Paused": 1,
        "Unsubscribed": 1,
        "Suppressed: bounced": 2,
        "Suppressed: complained": 1,
        "Suppressed by the author": 1,
    }
    # Readers, not topics: a follows two things; the paused reader is left out.
    assert dict(desk.topics) == {
        "Region: Wales": 2,
        "Everything": 1,
        "Everything (never chose)": 1,
    }
    assert dict(desk.frequencies) == {
        "As it is published": 1,
        "Daily digest": 2,
        "Weekly digest": 1,
    }


def test_the_desks_receiving_and_paused_readers_are_the_audience_and_the_paused(rf):
    """The desk counts them by what confirmed() and paused() mean (the audience
    the newsletter is sent to), not a copy of it that could drift."""
    readers(3)
    SubscriberFactory(paused_at=timezone.now())
    SubscriberFactory(status=Status.PENDING, confirmed_at=None)
    SubscriberFactory(status=Status.UNSUBSCRIBED)
    SubscriberFactory(status=Status.SUPPRESSED, paused_at=timezone.now())

    figures = dict(desk_of(rf, UserFactory()).readers)

    assert figures["Confirmed, receiving"] == 3
    assert figures["Confirmed, receiving"] == Subscriber.objects.confirmed().count()
    assert figures["Paused"] == 1
    assert figures["Paused"] == Subscriber.objects.paused().count()


def test_the_readers_list_filtered_by_frequency_finds_as_many_as_the_desk_counts(
    rf, client
):
    """The author reads "As it is published: 2" on the desk and filters the
    readers' list for them: a reader who never chose follows everything as
    published, and is found there too."""
    a, b, _never_chose = readers(3)
    follow(a, SubscriberTopic.Kind.EVERYTHING, "", Frequency.WEEKLY)
    follow(b, SubscriberTopic.Kind.REGION, "wales", Frequency.INSTANT)
    user = UserFactory()
    desk = desk_of(rf, user)
    client.force_login(user)
    receiving = {"status__exact": Status.ACTIVE, "paused": "no"}

    for value, label in Frequency.choices:
        listed = client.get(
            "/admin/newsletter/subscriber/",
            {**receiving, "frequency": value},
        )
        assert listed.context["cl"].result_count == dict(desk.frequencies)[label]
    everything = client.get(
        "/admin/newsletter/subscriber/",
        {**receiving, "follows": "everything"},
    )
    desk_topics = dict(desk.topics)
    assert everything.context["cl"].result_count == (
        desk_topics["Everything"] + desk_topics["Everything (never chose)"]
    )


def test_growth_weeks_add_up_and_sources_name_the_page(rf):
    now = timezone.now()
    weeks_ago = [now - timedelta(weeks=n) for n in range(GROWTH_WEEKS + 2)]
    joined = [
        SubscriberFactory(confirmed_at=weeks_ago[0]),
        SubscriberFactory(confirmed_at=weeks_ago[0]),
        SubscriberFactory(confirmed_at=weeks_ago[3]),
        SubscriberFactory(confirmed_at=weeks_ago[5], status=Status.UNSUBSCRIBED),
        SubscriberFactory(confirmed_at=weeks_ago[5]),
    ]
    SubscriberFactory(confirmed_at=weeks_ago[GROWTH_WEEKS + 1])  # too long ago
    SubscriberFactory(status=Status.PENDING, confirmed_at=None)
    consent(joined[0], page="/posts/suffolk/")
    consent(joined[1], page="/posts/suffolk/")
    consent(joined[2], page="")
    consent(joined[3], source="Probation conference sign-up sheet")
    # joined[4] has no consent: added in the admin.
    suppress(joined[3].email, Suppression.Reason.UNSUBSCRIBED, weeks_ago[1])
    suppress("erased@example.org", Suppression.Reason.DELETED, weeks_ago[1])
    suppress("gone@example.org", Suppression.Reason.HARD_BOUNCE, weeks_ago[1])
    suppress("spam@example.org", Suppression.Reason.COMPLAINT, weeks_ago[3])
    suppress("old@example.org", Suppression.Reason.COMPLAINT, weeks_ago[-1])

    desk = desk_of(rf, UserFactory())

    rows = desk.growth.rows
    assert len(rows) == GROWTH_WEEKS
    confirmed, left, lost, net = (sum(v[i] for _, v in rows) for i in range(4))
    assert (confirmed, left, lost) == (5, 2, 2)
    assert all(values[3] == values[0] - values[1] - values[2] for _, values in rows)
    assert net == 1
    assert rows[-1][1][0] == 2  # this week's two
    assert rows[-2][1][1:3] == [2, 1]  # last week: two left, one lost
    assert dict(desk.sources) == {
        "Subscribe form, from /posts/suffolk/": 2,
        "Subscribe form": 1,
        "Import: Probation conference sign-up sheet": 1,
        "Added in the admin": 1,
    }
    assert sum(dict(desk.sources).values()) == confirmed


def test_growth_counts_readers_who_left_not_their_addresses_nor_unconfirmed_requests(
    rf,
):
    """One erasure of a reader who had moved address suppresses both addresses:
    one reader left. A request nobody confirmed, whose confirmation bounced, was
    never a reader: nobody was lost."""
    moved = SubscriberFactory(email="old@example.org")
    assert email_change_confirm(subscriber=moved, new_email="new@example.org")
    subscriber_delete(subscriber=moved)
    never_confirmed = SubscriberFactory(
        email="typo@example.org", status=Status.PENDING, confirmed_at=None
    )
    address_suppress(email=never_confirmed.email, reason=Suppression.Reason.HARD_BOUNCE)
    bounced = SubscriberFactory(email="gone@example.org")
    address_suppress(email=bounced.email, reason=Suppression.Reason.HARD_BOUNCE)
    assert Suppression.objects.count() == 4  # an address each

    desk = desk_of(rf, UserFactory())

    this_week = desk.growth.rows[-1][1]
    assert this_week[1:3] == [1, 1]  # one left, one lost


def test_a_reader_who_joined_and_erased_their_data_within_the_weeks_joined_and_left(
    rf,
):
    """Erasure deletes the reader's row, which the chart counted joining by: the
    reader counted as leaving, never as joining, and the net fell by one reader
    the list never gained. The week they joined is kept, and no more."""
    three_weeks_ago = timezone.now() - timedelta(weeks=3)
    reader = SubscriberFactory(confirmed_at=three_weeks_ago)
    consent(reader, page="/posts/suffolk/")
    subscriber_delete(subscriber=reader)

    desk = desk_of(rf, UserFactory())

    rows = desk.growth.rows
    assert [sum(v[i] for _, v in rows) for i in range(4)] == [1, 1, 0, 0]
    assert rows[-4][1][0] == 1  # joined three weeks ago
    assert rows[-1][1][1] == 1  # left this week
    assert dict(desk.sources) == {DELETED_SINCE: 1}
    joined_day = timezone.localdate(three_weeks_ago)
    assert list(Suppression.objects.values_list("reader_joined_week", flat=True)) == [
        joined_day - timedelta(days=joined_day.weekday())  # its Monday, no more
    ]


def test_a_reader_who_left_asked_again_and_never_confirmed_joined_and_left(rf):
    reader = SubscriberFactory(confirmed_at=timezone.now() - timedelta(weeks=2))
    address_suppress(email=reader.email, reason=Suppression.Reason.UNSUBSCRIBED)
    long_ago = timezone.now() - timedelta(days=365)  # their request expired
    Subscriber.objects.filter(pk=reader.pk).update(
        status=Status.PENDING, confirmation_sent_at=long_ago
    )
    assert pending_purge_expired() == 1

    rows = desk_of(rf, UserFactory()).growth.rows

    assert [sum(v[i] for _, v in rows) for i in range(4)] == [1, 1, 0, 0]


def test_a_reader_back_through_the_preference_centre_is_counted_as_such(rf):
    consent(SubscriberFactory(), source=CONSENT_SOURCE_PREFERENCES)

    desk = desk_of(rf, UserFactory())

    assert dict(desk.sources) == {"Preference centre (came back)": 1}


def test_bounces_over_2_and_complaints_over_0_1_percent_are_flagged(rf):
    audience = readers(60)
    bad = mailing_with(audience[:40], events=["bounced"] * 2 + ["complained"])
    fine = mailing_with(audience, events=["bounced"])  # 1.7 % bounces, no complaint
    deferred = mailing_with(audience[:10], events=["deferred"] * 5)  # not bounces

    desk = desk_of(rf, UserFactory())

    texts = [item.text for item in desk.attention]
    assert texts == [
        f"{bad}: bounces 5.0% (over 2%) and spam complaints 2.50% (over 0.1%)"
        " of 40 accepted"
    ]
    assert desk.attention[0].url == f"/admin/newsletter/mailing/{bad.pk}/change/"
    shown = {row["mailing"].pk: row for row in desk.mailings}
    assert set(shown) == {bad.pk, fine.pk, deferred.pk}
    assert shown[fine.pk]["bounce_percent"] == pytest.approx(100 / 60)
    assert not shown[fine.pk]["flagged"]
    assert shown[bad.pk]["flagged"]


def test_a_mailing_older_than_30_days_needs_nobody_though_still_among_the_latest(rf):
    """The desk flags the mailings of the last 30 days: an older one, still among
    the latest five of a publication that sends little, shows its rates there and
    asks nothing more of the author."""
    old = mailing_with(readers(10), events=["bounced"])
    Mailing.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=31)
    )

    desk = desk_of(rf, UserFactory())

    assert desk.attention == []
    (shown,) = desk.mailings
    assert shown["mailing"].pk == old.pk
    assert shown["bounce_percent"] == pytest.approx(10)


def test_a_flagged_announcement_leads_to_its_post_report(rf):
    post = PublishedPostFactory()
    mailing_with(readers(10), events=["complained"], post=post)

    (flagged,) = desk_of(rf, UserFactory()).attention

    assert flagged.text.startswith(f"Announcement of “{post.title}”: spam complaints")
    assert flagged.url == f"/admin/newsletter/postreport/{post.pk}/change/"


def test_a_flagged_correction_leads_to_its_own_mailing_not_the_posts_report(rf):
    """The post's report counts the post's own emails (as published, in digests),
    not its corrections': the complaints flagged were nowhere on it."""
    post = PublishedPostFactory()
    update = PostUpdate.objects.create(post=post, kind="correction", note="Fixed.")
    mailing = mailing_with(readers(10), events=["complained"], post=post)
    Mailing.objects.filter(pk=mailing.pk).update(
        kind=Mailing.Kind.CORRECTION, post_update=update
    )

    desk = desk_of(rf, UserFactory())

    (flagged,) = desk.attention
    assert flagged.text.startswith(f"Correction to “{post.title}”: spam complaints")
    own_page = f"/admin/newsletter/mailing/{mailing.pk}/change/"
    assert flagged.url == own_page
    assert [row["url"] for row in desk.mailings] == [own_page]


def test_uncertain_batches_paused_sends_and_pending_comments_need_the_author(
    client, django_user_model
):
    audience = readers(3)
    uncertain = mailing_with(audience, status=Mailing.Status.SENDING)
    Batch.objects.create(mailing=uncertain, number=2, status=Batch.Status.UNCERTAIN)
    paused = mailing_with(
        audience,
        status=Mailing.Status.SENDING,
        paused_at=timezone.now(),
        pause_reason="the provider failed 5 times",
    )
    mailing_with(audience, status=Mailing.Status.DONE, paused_at=timezone.now())
    CommentFactory(status=Comment.Status.PENDING)
    CommentFactory(status=Comment.Status.APPROVED)
    client.force_login(UserFactory())

    page = client.get("/admin/").content.decode()

    assert f"{uncertain}: 1 uncertain batch to settle" in page
    assert (
        f"/admin/newsletter/batch/?mailing__id__exact={uncertain.pk}"
        "&amp;status__exact=uncertain"
    ) in page
    assert f"{paused} is paused (the provider failed 5 times)" in page
    assert page.count(" is paused") == 1  # a finished mailing needs nothing
    assert "1 comment awaiting moderation" in page
    assert 'href="/admin/comments/comment/"' in page
    assert "Nothing needs you now." not in page
    # Latest mailings: a bar for each of the two still going, not the one done.
    assert page.count("<progress") == 2


def test_what_needs_the_author_is_counted_in_words(client):
    """It said "1 comment(s) awaiting moderation", "2 uncertain batch(es)"."""
    uncertain = mailing_with(readers(3), status=Mailing.Status.SENDING)
    for number in (2, 3):
        Batch.objects.create(
            mailing=uncertain, number=number, status=Batch.Status.UNCERTAIN
        )
    CommentFactory.create_batch(2, status=Comment.Status.PENDING)
    client.force_login(UserFactory())

    page = client.get("/admin/").content.decode()

    assert f"{uncertain}: 2 uncertain batches to settle" in page
    assert "2 comments awaiting moderation" in page


def test_a_mailing_that_went_out_says_on_the_desk_how_many_it_reached(client):
    """A cancelled mailing was shown "Cancelled" beside a full bar, "100%", though
    it had reached three readers of five, and one done with readers uncertain
    just "Done": the desk read as if everyone had it."""
    cancelled = mailing_with(readers(3), status=Mailing.Status.CANCELLED)
    Batch.objects.create(
        mailing=cancelled, number=2, status=Batch.Status.CANCELLED, size=2
    )
    uncertain = mailing_with(readers(2))
    Batch.objects.create(
        mailing=uncertain, number=2, status=Batch.Status.UNCERTAIN, size=1, uncertain=1
    )
    everyone = mailing_with(readers(2))
    client.force_login(UserFactory())

    page = client.get("/admin/").content.decode()

    rows = dict(
        re.findall(
            r'<th scope="row"><a [^>]*>([^<]*)</a></th>\s*<td[^>]*>(.*?)</td>', page
        )
    )
    assert rows[str(cancelled)] == "Cancelled<br>3 of 5 sent, 2 skipped (never sent)"
    assert rows[str(uncertain)] == "Done<br>2 of 3 sent, 1 uncertain"
    assert rows[str(everyone)] == "Done<br>2 of 2 sent"
    assert "<progress" not in page


def test_a_mailing_cancelled_before_any_reader_was_planned_says_so_on_the_desk(
    client,
):
    """It said "nothing to send", as if the post had had no readers."""
    cancelled = Mailing.objects.create(
        kind=Mailing.Kind.POST,
        post=PublishedPostFactory(),
        status=Mailing.Status.CANCELLED,
    )
    client.force_login(UserFactory())

    page = client.get("/admin/").content.decode()

    row = re.search(
        rf'<th scope="row"><a [^>]*>{re.escape(str(cancelled))}</a></th>\s*'
        r"<td[^>]*>(.*?)</td>",
        page,
    )
    assert row[1] == "Cancelled<br>none sent: cancelled before its readers were planned"


def build_list(n: int) -> None:
    """n readers with topics and consent, two mailings to all of them, and a
    reader leaving: every part of the desk has rows to count."""
    audience = readers(n)
    for i, subscriber in enumerate(audience):
        follow(subscriber, SubscriberTopic.Kind.REGION, f"region-{i}", Frequency.DAILY)
        consent(subscriber, page=f"/posts/post-{i}/")
        suppress(
            "left-" + subscriber.email, Suppression.Reason.UNSUBSCRIBED, timezone.now()
        )
    mailing_with(audience, events=["bounced"] * (n // 5))
    mailing_with(audience, events=["complained"], paused_at=timezone.now())
    CommentFactory(status=Comment.Status.PENDING)


def desk_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/")
    assert response.status_code == 200
    return len(queries)


def test_the_desk_takes_as_many_queries_for_50_readers_as_for_5(client):
    client.force_login(UserFactory())
    build_list(5)
    for_5 = desk_queries(client)
    build_list(50)

    assert desk_queries(client) == for_5
    assert for_5 < 40


def test_the_growth_chart_is_accessible_svg_beside_its_table(client):
    build_list(3)
    client.force_login(UserFactory())

    page = client.get("/admin/").content.decode()

    assert 'role="img" aria-label="Readers per week, last 12 weeks"' in page
    assert "<title>Readers per week, last 12 weeks</title>" in page
    assert len(re.findall(r'<rect class="chart-bar', page)) == GROWTH_WEEKS * 4
    assert "<caption>Readers per week, last 12 weeks: the figures</caption>" in page
    assert "style=" not in page.split('id="content"')[1].split('id="app-')[0]


@pytest.mark.parametrize(
    ("role", "sees_readers", "sees_mailings", "sees_uncertain"),
    [
        ("Contributor", False, False, False),
        ("Editor", False, True, False),
    ],
)
def test_each_role_sees_only_the_parts_it_may(
    client, role, sees_readers, sees_mailings, sees_uncertain
):
    build_list(3)
    uncertain = mailing_with(readers(1), status=Mailing.Status.SENDING)
    Batch.objects.create(mailing=uncertain, number=2, status=Batch.Status.UNCERTAIN)
    client.force_login(StaffFactory(role=role))

    response = client.get("/admin/")

    assert response.status_code == 200
    page = response.content.decode()
    assert ("Readers now" in page) is sees_readers
    assert ("Growth" in page) is sees_readers
    assert ("Latest mailings" in page) is sees_mailings
    assert ("uncertain batch" in page) is sees_uncertain
    # Editors moderate comments; contributors do not.
    assert ("awaiting moderation" in page) is (role == "Editor")


def test_a_contributor_given_view_subscriber_sees_the_readers(client):
    build_list(3)
    contributor = StaffFactory(role="Contributor")
    contributor.user_permissions.add(Permission.objects.get(codename="view_subscriber"))
    client.force_login(contributor)

    page = client.get("/admin/").content.decode()

    assert "Readers now" in page
    assert "Latest mailings" not in page


def test_staff_with_no_permission_at_all_gets_the_desk_without_figures(client):
    build_list(3)
    client.force_login(StaffFactory())

    response = client.get("/admin/")

    assert response.status_code == 200
    assert "Nothing needs you now." in response.content.decode()
    assert "Readers now" not in response.content.decode()


def test_the_subscribe_form_records_the_page_the_reader_came_from(
    client, django_capture_on_commit_callbacks
):
    form = client.get("/subscribe/", HTTP_REFERER="http://testserver/posts/suffolk/")
    assert 'name="page" value="/posts/suffolk/"' in form.content.decode()
    foreign = client.get("/subscribe/", HTTP_REFERER="https://elsewhere.example/x/")
    assert 'name="page" value=""' in foreign.content.decode() or (
        'name="page" value' not in foreign.content.decode()
    )

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": "a@example.org", "page": "/posts/x/"})
        client.post(
            "/subscribe/", {"email": "b@example.org", "page": "https://evil.example/"}
        )
        client.post("/subscribe/", {"email": "c@example.org", "page": "//evil/"})
        # A reader who left subscribes again from their preferences page.
        client.post(
            "/subscribe/",
            {"email": "d@example.org", "page": "/preferences/WzEsImFiYyJd:1x:sig/"},
        )

    pages = dict(Consent.objects.values_list("subscriber__email", "page"))
    assert pages == {
        "a@example.org": "/posts/x/",
        "b@example.org": "",
        "c@example.org": "",
        "d@example.org": "/preferences/[redacted]",
    }


def test_a_reader_who_came_from_a_long_address_subscribes_without_its_page(
    client, django_capture_on_commit_callbacks
):
    """A slug may be 200 characters, a 404 page's path any length: the form
    reached from there was refused ("Ensure this value has at most 200
    characters", about a field the reader can neither see nor change)."""
    long_path = "/posts/" + "a-very-long-slug-" * 12 + "/"
    form = client.get("/subscribe/", HTTP_REFERER=f"http://testserver{long_path}")
    assert 'name="page" value' not in form.text

    # As a form served before would send it.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/subscribe/", {"email": "a@example.org", "page": long_path}
        )

    assert response.status_code == 200
    assert [message.to for message in mail.outbox] == [["a@example.org"]]
    assert Consent.objects.get().page == ""


def test_seed_demo_gives_the_desk_twelve_weeks_of_plausible_history(rf):
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())  # again: nothing doubles

    desk = desk_of(rf, UserFactory())

    readers_now = dict(desk.readers)
    assert readers_now["Confirmed, receiving"] > 100
    assert readers_now["Pending confirmation"] and readers_now["Paused"]
    assert readers_now["Suppressed: bounced"] and readers_now["Suppressed: complained"]
    weeks_with_joins = [values for _, values in desk.growth.rows if values[0]]
    assert len(weeks_with_joins) >= 10
    assert sum(values[1] for _, values in desk.growth.rows) > 0  # some left
    assert sum(values[2] for _, values in desk.growth.rows) > 0  # some were lost
    sources = dict(desk.sources)
    assert any(label.startswith("Subscribe form, from /posts/") for label in sources)
    assert "Import: Probation conference sign-up sheet" in sources
    assert "Added in the admin" in sources
    assert (
        Subscriber.objects.filter(email__endswith="@readers.demo.example").count()
        == 160
    )
