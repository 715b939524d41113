"""Topic matching: a published post reaches the readers following any of its
topics (or everything) instantly, once each; the others do not get it."""

import re
import threading
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.core import mail
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from newsletter import digests, subscriptions
from newsletter.forms import TopicsForm
from newsletter.models import Delivery, Subscriber, SubscriberTopic
from newsletter.tokens import Purpose, make_token
from posts.models import Post, StandardRating

from .factories import (
    AreaFactory,
    CategoryFactory,
    InspectionFactory,
    OrganisationFactory,
    PostFactory,
    RegionFactory,
    StaffFactory,
    SubscriberFactory,
    create_inspectorate,
)
from .locks import until_another_connection_waits_for_a_lock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def follower(email: str, *topics: tuple[str, str], frequency: str = "instant"):
    subscriber = SubscriberFactory(email=email)
    for kind, value in topics:
        SubscriberTopic.objects.create(
            subscriber=subscriber, kind=kind, value=value, frequency=frequency
        )
    return subscriber


def recipients() -> list[str]:
    return sorted(message.to[0] for message in mail.outbox)


@pytest.fixture
def suffolk_post():
    """A draft post on an inspection of Norfolk and Suffolk CRC (owned by Sodexo
    Justice Services) in Suffolk, East of England, rated Requires improvement
    overall and Inadequate on one standard."""
    east = RegionFactory(name="East of England", slug="east-of-england")
    RegionFactory(name="Wales", slug="wales")
    suffolk = AreaFactory(name="Suffolk", slug="suffolk", region=east)
    sodexo = OrganisationFactory(
        name="Sodexo Justice Services", slug="sodexo-justice-services", kind="owner"
    )
    crc = OrganisationFactory(
        name="Norfolk and Suffolk CRC", slug="norfolk-and-suffolk-crc"
    )
    crc.owners.add(sodexo)
    post = PostFactory(title="Suffolk: caseloads too high")
    post.categories.add(CategoryFactory(slug="local-inspections"))
    inspection = InspectionFactory(
        post=post, area=suffolk, organisations=[crc], overall="requires_improvement"
    )
    StandardRating.objects.create(
        inspection=inspection, standard="Assessment", rating="inadequate"
    )
    return post


@pytest.fixture
def live_suffolk_post(suffolk_post):
    """The same post, live (and told of already): its topics are on the site."""
    Post.objects.filter(pk=suffolk_post.pk).update(
        status=Post.Status.PUBLISHED,
        published_at=timezone.now(),
        announced_at=timezone.now(),
    )
    return suffolk_post


def test_a_post_exposes_every_topic_it_is_about(suffolk_post):
    assert suffolk_post.topic_keys() == {
        ("category", "local-inspections"),
        ("area", "suffolk"),
        ("region", "east-of-england"),
        ("organisation", "norfolk-and-suffolk-crc"),
        ("organisation", "sodexo-justice-services"),
        ("rating", "requires_improvement"),
        ("rating", "inadequate"),
    }


def test_a_suffolk_post_reaches_east_of_england_and_everything_not_wales(
    publish, suffolk_post
):
    follower("east@example.org", ("region", "east-of-england"))
    follower("everything@example.org", ("everything", ""))
    follower("default@example.org")  # never chose: everything, instantly
    follower("wales@example.org", ("region", "wales"))
    publish(suffolk_post)
    assert recipients() == [
        "default@example.org",
        "east@example.org",
        "everything@example.org",
    ]


def test_following_an_owner_matches_posts_on_what_it_owned(publish, suffolk_post):
    follower("sodexo@example.org", ("organisation", "sodexo-justice-services"))
    follower("other@example.org", ("organisation", "someone-else"))
    publish(suffolk_post)
    assert recipients() == ["sodexo@example.org"]


def test_following_a_rating_matches_the_overall_or_any_standard(publish, suffolk_post):
    follower("inadequate@example.org", ("rating", "inadequate"))
    follower("overall@example.org", ("rating", "requires_improvement"))
    follower("outstanding@example.org", ("rating", "outstanding"))
    publish(suffolk_post)
    assert recipients() == ["inadequate@example.org", "overall@example.org"]


def test_a_reader_matching_several_topics_gets_one_copy(publish, suffolk_post):
    reader = follower(
        "many@example.org",
        ("everything", ""),
        ("region", "east-of-england"),
        ("area", "suffolk"),
        ("organisation", "sodexo-justice-services"),
        ("rating", "inadequate"),
        ("category", "local-inspections"),
    )
    publish(suffolk_post)
    assert recipients() == ["many@example.org"]
    assert Delivery.objects.filter(subscriber=reader).count() == 1


@pytest.mark.parametrize(
    ("kind", "slug", "form"),
    [
        ("category", "local-inspections", {"name": "Local inspections"}),
        ("region", "east-of-england", {"name": "East of England"}),
    ],
)
def test_an_editor_editing_what_readers_follow_keeps_them_following_it(
    publish, suffolk_post, kind, slug, form
):
    follower("follows@example.org", (kind, slug))
    editor = Client()
    editor.force_login(StaffFactory(role="Editor"))
    followed = apps.get_model("posts", kind).objects.get(slug=slug)
    response = editor.post(
        f"/admin/posts/{kind}/{followed.pk}/change/", {**form, "slug": "renamed"}
    )
    assert response.status_code == 302
    publish(suffolk_post)
    assert recipients() == ["follows@example.org"]


def test_a_reader_on_a_digest_gets_nothing_as_the_post_is_published(
    publish, suffolk_post
):
    follower("daily@example.org", ("everything", ""), frequency="daily")
    follower("weekly@example.org", ("region", "east-of-england"), frequency="weekly")
    publish(suffolk_post)
    assert mail.outbox == []


def subscribe(client, on_commit, **data):
    """Subscribe and confirm with the link that arrives: what was chosen is kept in
    the request's consent until then."""
    with on_commit(execute=True):
        response = client.post("/subscribe/", {"email": "new@example.org", **data})
    if mail.outbox:
        link = re.search(
            r"https?://[^/\s]+(/subscribe/confirm/\S+/)", mail.outbox[0].body
        )
        with on_commit(execute=True):
            client.post(link[1])
    return response


def followed(subscriber) -> set[tuple[str, str, str]]:
    return set(subscriber.topics.values_list("kind", "value", "frequency"))


def test_the_subscribe_form_offers_topics_with_nothing_ticked(
    client, live_suffolk_post
):
    page = client.get("/subscribe/").content.decode()
    assert 'value="region:east-of-england"' in page
    assert 'value="organisation:sodexo-justice-services"' in page
    assert 'value="rating:inadequate"' in page
    # Nothing is ticked for the reader but the default frequency, as published.
    assert page.count("checked") == 1
    assert re.search(r'<input[^>]*value="instant"[^>]*checked', page)


def test_confirming_with_no_topics_follows_everything_as_published(
    client, django_capture_on_commit_callbacks
):
    response = subscribe(client, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    reader = Subscriber.objects.get(email="new@example.org")
    assert followed(reader) == {("everything", "", "instant")}


def test_topics_and_frequency_chosen_at_subscription_are_kept_once_confirmed(
    client, django_capture_on_commit_callbacks, live_suffolk_post
):
    response = subscribe(
        client,
        django_capture_on_commit_callbacks,
        topics=["region:east-of-england", "rating:inadequate"],
        frequency="weekly",
    )
    assert response.status_code == 200
    assert "Check your inbox" in response.text
    reader = Subscriber.objects.get(email="new@example.org")
    assert followed(reader) == {
        ("region", "east-of-england", "weekly"),
        ("rating", "inadequate", "weekly"),
    }


def test_the_topics_offered_leave_out_what_only_posts_not_yet_live_are_about(
    client, suffolk_post
):
    # The draft's area, region, organisations and category would tell a reader
    # which inspection's report is next; one no post is about yet may be followed.
    CategoryFactory(name="Youth justice", slug="youth-justice")
    page = client.get("/subscribe/").content.decode()
    for key in [
        "region:east-of-england",
        "area:suffolk",
        "organisation:norfolk-and-suffolk-crc",
        "organisation:sodexo-justice-services",
        "category:local-inspections",
    ]:
        assert f'value="{key}"' not in page, key
    assert 'value="region:wales"' in page
    assert 'value="category:youth-justice"' in page


def test_a_followed_organisation_a_draft_is_then_about_stays_followed_in_place(
    client,
):
    reader = follower("reader@example.org", ("organisation", "kent-crc"))
    kent = OrganisationFactory(name="Kent CRC", slug="kent-crc")
    InspectionFactory(post=PostFactory(), organisations=[kent])
    page = client.get(topics_url(reader).removesuffix("topics/")).content.decode()
    assert re.search(r'<input[^>]*value="organisation:kent-crc"[^>]*checked', page)
    assert "No longer on the site" not in page


def test_a_followed_area_whose_region_gets_its_first_draft_stays_followed_under_it(
    client,
):
    """A reader follows Thurrock, in a region no post is about yet; the author
    drafts the region's first post, on Essex. The region is no longer offered (its
    draft is news), and Thurrock, with no region to come under, was listed as "No
    longer on the site: Area: thurrock", though it is on the site as it was."""
    east = RegionFactory(name="East of England", slug="east-of-england")
    AreaFactory(name="Thurrock", slug="thurrock", region=east)
    essex = AreaFactory(name="Essex", slug="essex", region=east)
    reader = follower("reader@example.org", ("area", "thurrock"))
    InspectionFactory(post=PostFactory(), area=essex)

    page = client.get(topics_url(reader).removesuffix("topics/")).text

    assert "No longer on the site" not in page
    east_section = re.search(
        r'<fieldset data-region="region:east-of-england">'
        r"<legend>East of England</legend>(.*?)</fieldset>",
        page,
        re.S,
    )
    assert re.search(r'value="area:thurrock"[^>]*checked>Thurrock<', east_section[1])
    # Still nothing offered that only the draft is about.
    assert 'value="region:east-of-england"' not in page
    assert 'value="area:essex"' not in page


def test_an_unknown_topic_at_subscription_is_refused_and_nothing_stored(client):
    response = client.post(
        "/subscribe/", {"email": "new@example.org", "topics": ["region:atlantis"]}
    )
    assert response.status_code == 400
    assert "A topic you ticked is no longer offered" in response.text
    assert not Subscriber.objects.exists()


def test_a_topic_gone_from_the_site_while_the_form_was_open_is_said_in_words(
    client, live_suffolk_post
):
    """The reader ticked Suffolk; before they sent the form its only post went
    back to draft. They were told "Select a valid choice. area:suffolk is not
    one of the available choices.", the site's key for it, and not what to do."""
    page = client.get("/subscribe/").text
    assert 'value="area:suffolk"' in page
    Post.objects.filter(pk=live_suffolk_post.pk).update(status=Post.Status.DRAFT)

    response = client.post(
        "/subscribe/",
        {"email": "new@example.org", "topics": ["area:suffolk", "region:wales"]},
    )

    assert response.status_code == 400
    assert "area:suffolk" not in response.text
    assert (
        "A topic you ticked is no longer offered, so it is not in the list now. "
        "Check your choice and send the form again."
    ) in response.text
    # What they ticked that is still offered stays ticked.
    assert re.search(r'value="region:wales"[^>]*checked', response.text)
    assert not Subscriber.objects.exists()


def topics_url(subscriber) -> str:
    return f"/preferences/{make_token(subscriber, Purpose.PREFERENCES)}/topics/"


def test_a_reader_changing_only_when_digests_arrive_is_told_their_choices_are_saved(
    client,
):
    """One button saves the topics, how often and when digests arrive: it said
    "Save my topics", and a reader who had changed only their digest's day read
    "Your choices are saved" over the answer."""
    reader = follower("reader@example.org", ("everything", ""), frequency="weekly")
    page = client.get(topics_url(reader).removesuffix("topics/")).text
    assert '<button type="submit">Save my choices</button>' in page

    response = client.post(
        topics_url(reader), {"frequency": "weekly", "digest_weekday": "4"}
    )

    assert "<h1>Your choices are saved</h1>" in response.text
    assert "topics are saved" not in response.text
    reader.refresh_from_db()
    assert reader.digest_weekday == 4
    assert followed(reader) == {("everything", "", "weekly")}


def test_the_preference_centre_changes_topics_and_frequency(client, suffolk_post):
    reader = follower("reader@example.org")
    page = client.get(topics_url(reader).removesuffix("topics/")).content.decode()
    assert 'value="region:wales"' in page
    response = client.post(
        topics_url(reader), {"topics": ["region:wales"], "frequency": "daily"}
    )
    assert response.status_code == 200
    assert "Your choices are saved" in response.text
    assert followed(reader) == {("region", "wales", "daily")}
    # Everything again, as published.
    client.post(topics_url(reader), {"frequency": "instant"})
    assert followed(reader) == {("everything", "", "instant")}


class _TopicsFormSent(HTMLParser):
    """What a browser sends from the page's topics form, as the page was made."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self._in_form = False
        self._select = ""
        self._first_option: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self._in_form = a.get("action", "").endswith("/topics/")
        elif not self._in_form:
            return
        elif tag == "input" and (a.get("type") == "hidden" or "checked" in a):
            self.sent.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select, self._first_option = a["name"], None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = (self._select, a.get("value", ""))
            if "selected" in a:
                self.sent.append((self._select, a.get("value", "")))
                self._select = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select" and self._select:  # nothing selected: the first
            self.sent.append(self._first_option)
            self._select = ""


def topics_form_sent(page: str, **changed: str | list[str]) -> dict[str, list[str]]:
    """The topics form of a preference page as a browser sends it, with the
    reader's `changed` fields."""
    parser = _TopicsFormSent()
    parser.feed(page)
    sent: dict[str, list[str]] = {}
    for name, value in parser.sent:
        sent.setdefault(name, []).append(value)
    for name, value in changed.items():
        sent[name] = value if isinstance(value, list) else [value]
    return sent


def test_a_tab_opened_before_the_reader_changed_topics_elsewhere_keeps_that_change(
    client, suffolk_post
):
    """Two tabs of the preference centre: in the newer the reader chose Wales,
    weekly; in the older, which still shows Suffolk daily, they then changed
    only the hour their digest arrives. That older page sent back the topics
    it showed, and they replaced the reader's newer choice."""
    reader = follower("reader@example.org", ("area", "suffolk"), frequency="daily")
    centre = topics_url(reader).removesuffix("topics/")
    older_tab = client.get(centre).text
    newer_tab = client.get(centre).text
    client.post(
        topics_url(reader),
        topics_form_sent(newer_tab, topics=["region:wales"], frequency="weekly"),
    )

    response = client.post(
        topics_url(reader), topics_form_sent(older_tab, digest_hour="9")
    )

    assert response.status_code == 200
    assert followed(reader) == {("region", "wales", "weekly")}
    reader.refresh_from_db()
    assert reader.digest_hour == 9
    # The answer says what the reader gets now, not what the older page showed.
    assert "How often: weekly digest." in response.text
    assert "every Monday at 09:00" in response.text


def test_a_tab_opened_before_the_reader_chose_a_digest_time_elsewhere_keeps_it(
    client, suffolk_post
):
    reader = follower("reader@example.org", ("area", "suffolk"), frequency="daily")
    centre = topics_url(reader).removesuffix("topics/")
    older_tab = client.get(centre).text
    newer_tab = client.get(centre).text
    client.post(topics_url(reader), topics_form_sent(newer_tab, digest_hour="6"))

    client.post(
        topics_url(reader), topics_form_sent(older_tab, topics=["region:wales"])
    )

    assert followed(reader) == {("region", "wales", "daily")}
    reader.refresh_from_db()
    assert reader.digest_hour == 6


def test_a_paused_reader_saving_topics_is_told_nothing_comes_until_they_resume(
    client,
):
    reader = follower("reader@example.org", ("everything", ""), frequency="daily")
    subscriptions.subscriber_pause(subscriber=reader)
    response = client.post(topics_url(reader), {"frequency": "weekly"})
    assert response.status_code == 200
    assert followed(reader) == {("everything", "", "weekly")}
    assert (
        "Your newsletter is paused: nothing comes until you resume it." in response.text
    )


def test_topics_sent_from_a_page_opened_before_unsubscribing_change_nothing(client):
    """The page shows no topics once the reader has left; a tab opened before
    was told "Your digest arrives every day at 07:00", and nothing did."""
    reader = follower("reader@example.org", ("everything", ""), frequency="weekly")
    subscriptions.subscriber_unsubscribe(subscriber=reader)
    response = client.post(topics_url(reader), {"frequency": "daily"})
    assert response.status_code == 400
    assert "Your digest arrives" not in response.text
    assert "You are not subscribed" in response.text
    assert followed(reader) == {("everything", "", "weekly")}


@pytest.mark.parametrize(
    "data",
    [
        {"topics": ["region:east-of-england", "region:atlantis"]},
        {"topics": ["nonsense"]},
        {"topics": ["region:wales"], "frequency": "hourly"},
    ],
    ids=["unknown-slug", "not-a-topic", "unknown-frequency"],
)
def test_bad_topic_choices_get_a_clear_400_and_change_nothing(
    client, suffolk_post, data
):
    reader = follower("reader@example.org", ("area", "suffolk"))
    response = client.post(topics_url(reader), data)
    assert response.status_code == 400
    assert (
        "not one of the available choices"
        if "frequency" in data
        else "A topic you ticked is no longer offered"
    ) in response.text
    assert followed(reader) == {("area", "suffolk", "instant")}


def test_a_topic_the_site_no_longer_has_is_shown_ticked_until_the_reader_unticks_it(
    client, suffolk_post
):
    """The author deletes a category a reader follows, and nothing else: no post
    can match it, so the reader gets nothing. Their preference page showed
    nothing ticked, "you get every post", and refused the topic if sent."""
    CategoryFactory(name="Prisons", slug="prisons").delete()
    reader = follower("reader@example.org", ("category", "prisons"))
    page_url = topics_url(reader).removesuffix("topics/")

    page = client.get(page_url).text
    assert "No longer on the site" in page
    assert 'value="category:prisons" checked' in page
    kept = client.post(
        topics_url(reader), {"topics": ["category:prisons"], "frequency": "weekly"}
    )
    assert kept.status_code == 200
    assert followed(reader) == {("category", "prisons", "weekly")}

    client.post(topics_url(reader), {"frequency": "weekly"})
    assert followed(reader) == {("everything", "", "weekly")}
    assert "category:prisons" not in client.get(page_url).text


def save_topics_at_the_desk(client: Client, reader: Subscriber, *rows: dict):
    """An Administrator gives the reader new topic rows (each its fields but its
    frequency: as published) on their page."""
    data = {
        "name": "",
        "time_zone": reader.time_zone,
        "topics-TOTAL_FORMS": len(rows),
        "topics-INITIAL_FORMS": "0",
        "consents-TOTAL_FORMS": "0",
        "consents-INITIAL_FORMS": "0",
    }
    for number, row in enumerate(rows):
        for name, value in {**row, "frequency": "instant"}.items():
            data[f"topics-{number}-{name}"] = value
    client.force_login(StaffFactory(role="Administrator"))
    return client.post(f"/admin/newsletter/subscriber/{reader.pk}/change/", data)


def test_a_topic_typed_by_name_at_the_desk_leaves_the_reader_sent_its_posts(client):
    """A reader asks by email to follow Youth justice; the author typed its name
    where its slug was wanted, and the reader followed a category that does not
    exist: they got no post at all, not even one in Youth justice, and nobody
    was told."""
    youth_justice = CategoryFactory(name="Youth justice", slug="youth-justice")
    reader = follower("reader@example.org")

    save_topics_at_the_desk(
        client, reader, {"kind": "category", "value": "Youth justice"}
    )

    post = PostFactory(status=Post.Status.PUBLISHED, published_at=timezone.now())
    post.categories.set([youth_justice])
    receiving = Subscriber.objects.following(post.topic_keys(), frequency="instant")
    assert reader in receiving


@pytest.mark.parametrize(
    "topic",
    ["category:Youth justice", "everything:youth-justice"],
    ids=["a-name", "everything-of-something"],
)
def test_a_topic_the_desk_does_not_offer_is_refused_on_its_row(client, topic):
    CategoryFactory(name="Youth justice", slug="youth-justice")
    reader = follower("reader@example.org")

    response = save_topics_at_the_desk(client, reader, {"topic": topic})

    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["errors"])
    assert not reader.topics.exists()


def test_the_desk_offers_a_readers_topics_as_the_preference_centre_does(client):
    youth_justice = CategoryFactory(name="Youth justice", slug="youth-justice")
    reader = follower("reader@example.org")
    client.force_login(StaffFactory(role="Administrator"))

    page = client.get(f"/admin/newsletter/subscriber/{reader.pk}/change/").text
    assert '<option value="category:youth-justice">Youth justice</option>' in page
    response = save_topics_at_the_desk(
        client, reader, {"topic": "category:youth-justice"}
    )

    assert response.status_code == 302
    post = PostFactory(status=Post.Status.PUBLISHED, published_at=timezone.now())
    post.categories.set([youth_justice])
    receiving = Subscriber.objects.following(post.topic_keys(), frequency="instant")
    assert list(receiving) == [reader]


def test_each_field_of_a_readers_topic_rows_at_the_desk_is_named_as_its_column(
    client,
):
    # The rows' fields sit under column headings, which a screen reader going
    # from field to field does not read: each field must carry its name.
    CategoryFactory(name="Youth justice", slug="youth-justice")
    reader = follower("reader@example.org", ("category", "youth-justice"))
    client.force_login(StaffFactory(role="Administrator"))

    page = client.get(f"/admin/newsletter/subscriber/{reader.pk}/change/").text

    def name_of(field: str) -> str | None:
        tag = re.search(rf'<[^>]* name="topics-0-{field}"[^>]*>', page)[0]
        label = re.search(r'aria-label="([^"]*)"', tag)
        return label and label[1]

    assert [name_of(field) for field in ("topic", "frequency", "DELETE")] == [
        "Topic",
        "Frequency",
        "Delete",
    ]


def test_the_same_topic_twice_at_the_desk_is_refused_on_the_page(client):
    CategoryFactory(name="Youth justice", slug="youth-justice")
    reader = follower("reader@example.org")

    response = save_topics_at_the_desk(
        client, reader, *[{"topic": "category:youth-justice"}] * 2
    )

    assert response.status_code == 200
    assert "Chosen above: a reader follows it once." in response.text
    assert not reader.topics.exists()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_saving_topics_twice_at_once_saves_them_once_without_an_error(
    suffolk_post, monkeypatch
):
    """The reader double-clicks "Save my choices": the second request arrives while
    the first is still saving. Both are answered, and the choice is saved once
    (the second failed on the first's new rows: a 500)."""
    reader = follower("reader@example.org", ("area", "suffolk"))
    first_saving, go_on = threading.Event(), threading.Event()
    digest_time_set = digests.digest_time_set

    def first_held_before_commit(**kwargs) -> None:
        digest_time_set(**kwargs)
        if not first_saving.is_set():
            first_saving.set()
            go_on.wait(timeout=10)

    monkeypatch.setattr(digests, "digest_time_set", first_held_before_commit)
    statuses = []

    def save() -> None:
        # A 500 is answered, not raised: the test clients of both threads would
        # raise it (Django's signal for it reaches every client).
        reader_client = Client(raise_request_exception=False)
        try:
            response = reader_client.post(
                topics_url(reader), {"topics": ["region:wales"], "frequency": "weekly"}
            )
            statuses.append(response.status_code)
        finally:
            connections.close_all()

    first = threading.Thread(target=save)
    first.start()
    assert first_saving.wait(timeout=10)
    second = threading.Thread(target=save)
    second.start()
    until_another_connection_waits_for_a_lock()  # the second, for the first's
    go_on.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert statuses == [200, 200]
    assert followed(reader) == {("region", "wales", "weekly")}


def test_changing_topics_needs_the_pages_csrf_token(suffolk_post):
    reader = follower("reader@example.org", ("area", "suffolk"))
    response = Client(enforce_csrf_checks=True).post(
        topics_url(reader), {"topics": ["region:wales"]}
    )
    assert response.status_code == 403
    assert followed(reader) == {("area", "suffolk", "instant")}


def test_the_preference_centre_shows_what_the_reader_follows(client, suffolk_post):
    reader = follower("reader@example.org", ("region", "wales"), frequency="weekly")
    page = client.get(topics_url(reader).removesuffix("topics/")).content.decode()
    assert re.search(r'<input[^>]*value="region:wales"[^>]*checked', page)
    assert re.search(r'<input[^>]*value="weekly"[^>]*checked', page)
    assert page.count("checked") == 2


# The picker, with every body the inspectorate inspects.


def preferences_page(client, reader) -> str:
    return client.get(topics_url(reader).removesuffix("topics/")).content.decode()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


@pytest.fixture
def inspectorate():
    return create_inspectorate()


def test_with_every_body_inspected_the_pages_stay_small(client, inspectorate):
    reader = follower("reader@example.org", ("area", "suffolk"))
    subscribe_page = client.get("/subscribe/")
    preferences = client.get(topics_url(reader).removesuffix("topics/"))
    assert subscribe_page.content.count(b'name=topics value="') == 12 + 150 + 212 + 4
    assert len(subscribe_page.content) < 60_000
    assert len(preferences.content) < 60_000


def test_the_topic_choices_take_the_same_few_queries_at_any_size(
    django_assert_num_queries, inspectorate
):
    with django_assert_num_queries(5):
        TopicsForm().topic_picker()


def test_the_groups_are_collapsed_with_their_counts(client, inspectorate):
    page = client.get("/subscribe/").content.decode()
    summaries = [text_of(s) for s in re.findall(r"<summary>.*?</summary>", page)]
    assert summaries == [
        "Regions (12)",
        "Areas (150)",
        "Organisations and their owners (212)",
        "Inspections rated (4)",
    ]
    assert "<details>" in page
    assert "<details open>" not in page
    assert '<div class="topic-chosen" hidden>' in page  # until the script shows it


def test_a_regions_areas_come_under_it_and_an_owner_says_what_it_owned(
    client, inspectorate
):
    page = client.get("/subscribe/").content.decode()
    east = re.search(
        r'<fieldset data-region="region:east-of-england">(.*?)</fieldset>', page, re.S
    )
    assert "<legend>East of England</legend>" in east[1]
    assert 'value="area:suffolk"' in east[1]
    assert 'value="area:cardiff"' not in east[1]
    assert re.search(
        r'value="organisation:nacro">Nacro <small>and the 13 it owned<', page
    )
    assert re.search(
        r'value="organisation:suffolk-crc" data-owners="sodexo-justice-services">', page
    )


def test_what_the_reader_follows_is_listed_and_its_group_open(client, inspectorate):
    reader = follower("reader@example.org", ("area", "suffolk"), ("rating", "good"))
    page = preferences_page(client, reader)
    chosen = re.search(r'<ul aria-labelledby="topics-chosen-title">(.*?)</ul>', page)
    assert chosen[1] == "<li>Suffolk</li><li>Good</li>"
    assert re.search(r"<details open>\s*<summary>Areas <[^>]*>\(150, 1 chosen\)", page)
    assert re.search(r"<details>\s*<summary>Regions", page)
    assert '<p class="topic-chosen-none meta" hidden>' in page


def test_a_refused_form_keeps_what_the_reader_chose(client, inspectorate):
    response = client.post(
        "/subscribe/", {"email": "not an address", "topics": ["area:suffolk"]}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(r'value="area:suffolk"[^>]* checked>', page)
    assert "<li>Suffolk</li>" in page


@pytest.mark.parametrize("path", ["/subscribe/", "preferences"])
def test_the_picker_pages_load_their_script_and_style_from_the_site_only(
    client, inspectorate, path
):
    if path == "preferences":
        path = topics_url(follower("reader@example.org")).removesuffix("topics/")
    page = client.get(path).content.decode()
    assert re.search(r'<script src="/static/topic-picker\.js" defer></script>', page)
    assert '<link rel="stylesheet" href="/static/topic-picker.css">' in page
    # The site's CSP refuses inline script and style.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert " style=" not in page and "<style" not in page
