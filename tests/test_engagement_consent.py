"""Per-reader engagement (who opened, who followed which link): kept only with
NEWSLETTER_PER_READER_ENGAGEMENT on, and only for readers who agreed to it."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from benchmarks.fake_esp import postmark_messages
from newsletter import engagement
from newsletter.models import (
    Consent,
    Engagement,
    Event,
    Link,
    Mailing,
    Subscriber,
    Suppression,
)
from newsletter.subscriptions import (
    CONSENT_WORDING,
    ENGAGEMENT_CONSENT_VERSION,
    ENGAGEMENT_CONSENT_WORDING,
    address_suppress,
    engagement_agree,
    subscriber_delete,
    subscriber_export,
)
from newsletter.tokens import Purpose, make_token

from . import test_digests as digests_test
from . import test_engagement as engagement_test
from . import test_webhooks as webhooks_test
from .factories import PostFactory, SubscriberFactory, UserFactory, confirm_link
from .locks import as_erasure_commits
from .test_digests import clock  # noqa: F401 (the digests' time of day, a fixture)
from .test_engagement import BROWSER, REPORT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def click(client, path, **kwargs):
    """A click, and beat's minute passing: the flush judges and counts it."""
    response = engagement_test.click(client, path, **kwargs)
    engagement.click_counts_flush()
    return response


@pytest.fixture
def per_reader(settings):
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True


@pytest.fixture
def readers():
    """One reader who agreed to per-reader engagement, and one who did not."""
    return {
        "agreed": SubscriberFactory(
            email="agreed@example.org", engagement_agreed_at=timezone.now()
        ),
        "not": SubscriberFactory(email="not@example.org"),
    }


@pytest.fixture
def emails(readers, publish, monkeypatch):
    """Each reader's copy of a post's email, an hour after it went out."""
    publish(PostFactory(slug="suffolk", body=f"Read [the report]({REPORT})."))
    later = Mailing.objects.get().created_at + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    return {message.to[0].split("@")[0]: message for message in mail.outbox}


def report_link(message, url: str = REPORT) -> str:
    """The path (and query) of the email's link to the official report (or
    another address); `message` may be the HTML body alone."""
    html = message if isinstance(message, str) else message.alternatives[0].content
    for path in re.findall(r'href="http://127\.0\.0\.1:8000(/r/[^"]+)"', html):
        target = engagement.link_for_token(path.split("/")[2])
        if target.url == url:
            return path
    raise AssertionError(f"no link to {url}")


def open_event(client, reader: Subscriber) -> None:
    webhooks_test.delivery_to(reader, f"message-of-{reader.pk}")
    payload = {
        **webhooks_test.postmark_open(),
        "Recipient": reader.email,
        "MessageID": f"message-of-{reader.pk}",
        "UserAgent": BROWSER,
    }
    assert webhooks_test.post_postmark(client, payload).status_code == 200


@pytest.fixture
def provider(settings):
    settings.EMAIL_BACKEND = webhooks_test.POSTMARK_BACKEND
    settings.ANYMAIL = {"WEBHOOK_SECRET": webhooks_test.SECRET}


def test_off_the_form_offers_no_box_and_nothing_per_reader_is_kept(
    client, emails, readers, settings
):
    assert "?reader=" not in emails["agreed"].alternatives[0].content
    assert ENGAGEMENT_CONSENT_WORDING not in client.get("/subscribe/").content.decode()
    assert click(client, report_link(emails["agreed"])).status_code == 302
    settings.EMAIL_BACKEND = webhooks_test.POSTMARK_BACKEND
    settings.ANYMAIL = {"WEBHOOK_SECRET": webhooks_test.SECRET}
    open_event(client, readers["agreed"])
    assert not Engagement.objects.exists()
    # The open is counted on its mailing, and its log row names nobody.
    event = Event.objects.get(event_type="opened")
    assert (event.recipient, event.message_id, event.raw) == ("", "", {})


def test_off_even_a_genuine_reader_part_keeps_nothing(
    client, emails, readers, settings
):
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = True
    part = engagement.reader_part_add(
        'href="http://127.0.0.1:8000/r/x/"', subscriber_id=readers["agreed"].pk
    )
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    reader = re.search(r"\?reader=([^\"]+)", part)[1]
    click(client, report_link(emails["agreed"]) + f"?reader={reader}")
    assert not Engagement.objects.exists()


@pytest.mark.usefixtures("per_reader")
def test_on_only_the_reader_who_agreed_has_their_clicks_kept(client, emails, readers):
    assert "?reader=" in report_link(emails["agreed"])
    assert "?reader=" not in emails["not"].alternatives[0].content
    for number, name in enumerate(("agreed", "not")):
        response = click(client, report_link(emails[name]), address=f"192.0.2.{number}")
        assert response.status_code == 302
        assert response["Location"] == REPORT
    kept = Engagement.objects.get()
    assert kept.subscriber == readers["agreed"]
    assert (kept.kind, kept.link.url, kept.machine) == ("click", REPORT, False)


@pytest.mark.usefixtures("per_reader")
def test_a_postmark_batch_keeps_the_click_of_the_reader_who_agreed_only(
    client, fake_esp, readers, publish
):
    publish(PostFactory(slug="suffolk", body=f"Read [the report]({REPORT})."))
    assert fake_esp.stats()["accepted_requests"] == 1  # one /email/batch
    html = {
        message["To"].split("@")[0]: message["HtmlBody"]
        for message in postmark_messages(fake_esp.messages)
    }
    assert "?reader=" in report_link(html["agreed"])
    assert "?reader=" not in html["not"]
    for number, name in enumerate(("agreed", "not")):
        response = click(client, report_link(html[name]), address=f"192.0.2.{number}")
        assert response.status_code == 302
    kept = Engagement.objects.get()
    assert (kept.subscriber, kept.kind, kept.link.url) == (
        readers["agreed"],
        "click",
        REPORT,
    )


@pytest.mark.usefixtures("per_reader")
def test_a_forged_reader_part_keeps_nothing(client, emails):
    path = report_link(emails["not"]) + "?reader=1:forged"
    assert click(client, path).status_code == 302
    assert not Engagement.objects.exists()


@pytest.mark.usefixtures("per_reader")
def test_a_signed_reader_part_naming_an_id_no_row_can_have_is_counted_as_anyones(
    client, emails
):
    """Only the site signs reader parts, yet one whose id is beyond a bigint (it
    still fits READER_PART) takes the reader to the link, counted with everyone
    else's, never a 500."""
    part = engagement._reader_part(2**63)
    assert engagement.READER_PART.fullmatch(part.removeprefix("?reader="))
    response = click(client, report_link(emails["not"]) + part)
    assert response.status_code == 302
    assert response["Location"] == REPORT
    assert not Engagement.objects.exists()
    assert Link.objects.get(url=REPORT).people == 1


@pytest.mark.usefixtures("per_reader", "provider")
def test_on_only_the_reader_who_agreed_has_their_opens_kept(client, readers):
    open_event(client, readers["agreed"])
    open_event(client, readers["not"])
    kept = Engagement.objects.get()
    assert (kept.subscriber, kept.kind) == (readers["agreed"], "open")
    named = Event.objects.filter(event_type="opened").exclude(recipient="")
    assert [event.recipient for event in named] == ["agreed@example.org"]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("per_reader", "provider")
def test_an_open_reported_as_the_reader_erases_their_data_keeps_nothing_of_them(
    readers,
):
    """The provider reports the open of a reader who agreed while their erasure
    commits: the open was kept for a reader no longer there, and the webhook
    answered 500 (the provider retries). It answers 200, and keeps nothing."""
    reader = readers["agreed"]
    webhooks_test.delivery_to(reader, f"message-of-{reader.pk}")
    payload = {
        **webhooks_test.postmark_open(),
        "Recipient": reader.email,
        "MessageID": f"message-of-{reader.pk}",
        "UserAgent": BROWSER,
    }
    reported = as_erasure_commits(
        reader,
        lambda: (
            webhooks_test.post_postmark(
                Client(raise_request_exception=False), payload
            ).status_code
        ),
    )
    assert reported == 200
    assert not Engagement.objects.exists()
    assert list(Event.objects.values_list("recipient", "message_id", "raw")) == [
        ("", "", {})
    ]


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("per_reader")
def test_a_click_counted_as_its_reader_erases_their_data_is_counted_for_nobody(
    emails, readers
):
    """A reader who agreed follows a link as their erasure commits: their click,
    kept as theirs for a reader no longer there, failed the commit of the clicks
    counted with it, and every one of them was lost (the minute's, with Redis).
    The click is counted, and kept as nobody's."""
    reader = readers["agreed"]
    path = report_link(emails["agreed"])
    clicked = as_erasure_commits(
        reader, lambda: click(Client(raise_request_exception=False), path).status_code
    )
    assert clicked == 302
    assert not Engagement.objects.exists()
    assert Link.objects.get(url=REPORT).people == 1


@pytest.mark.usefixtures("per_reader")
def test_engagement_is_asked_unticked_on_the_readers_own_link_and_recorded_there(
    client, django_capture_on_commit_callbacks
):
    # Not on the subscribe form: anyone may type any address there.
    assert ENGAGEMENT_CONSENT_WORDING not in client.get("/subscribe/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": "new@example.org", "name": "Nia"})
    page = client.get(confirm_link(mail.outbox[0])).content.decode()
    box = re.search(r'<input type="checkbox" name="engagement"[^>]*>', page)[0]
    assert "checked" not in box
    assert ENGAGEMENT_CONSENT_WORDING in page
    assert 'value="Nia"' in page  # the request's name, theirs to change

    client.post(confirm_link(mail.outbox[0]), {"name": "Nia", "engagement": "on"})

    assert Subscriber.objects.get().engagement_agreed_at is not None
    consent = Consent.objects.get()
    assert consent.engagement
    assert consent.wording == f"{CONSENT_WORDING}\n{ENGAGEMENT_CONSENT_WORDING}"
    assert consent.wording_version.endswith(f"+{ENGAGEMENT_CONSENT_VERSION}")


@pytest.mark.usefixtures("per_reader")
def test_a_strangers_request_cannot_agree_or_name_the_reader_who_confirms_it(
    client, django_capture_on_commit_callbacks
):
    """A stranger asks first, with a name and the engagement box of an old form;
    the reader's own request sends nothing more that day, so the link they
    follow is the stranger's: what it confirms is what the reader chooses."""
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/subscribe/",
            {
                "email": "vic@example.org",
                "name": "Mallory was here",
                "engagement": "on",
            },
        )
        client.post("/subscribe/", {"email": "vic@example.org", "name": "Vic"})
    (confirmation,) = mail.outbox
    page = client.get(confirm_link(confirmation)).content.decode()
    assert 'value="Mallory was here"' in page  # shown, not hidden

    client.post(confirm_link(confirmation), {"name": "Vic"})

    reader = Subscriber.objects.get()
    assert reader.engagement_agreed_at is None
    assert reader.name == "Vic"
    assert not Consent.objects.filter(engagement=True).exists()


@pytest.mark.usefixtures("per_reader")
def test_an_unticked_box_agrees_to_nothing(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": "new@example.org"})
    client.post(confirm_link(mail.outbox[0]), {"name": ""})
    assert Subscriber.objects.get().engagement_agreed_at is None
    assert not Consent.objects.get().engagement


def centre(reader: Subscriber) -> str:
    return f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"


def one_time_link(message) -> str:
    return re.search(r"/preferences/once/\S+/", message.body)[0]


@pytest.mark.usefixtures("per_reader")
def test_agreeing_in_the_preference_centre_only_emails_the_reader_a_link(
    client, readers, on_commit
):
    """The preferences link travels in every newsletter: whoever ticks the box
    there may be someone the reader forwarded one to."""
    reader = readers["not"]
    assert ENGAGEMENT_CONSENT_WORDING in client.get(centre(reader)).content.decode()

    response = on_commit(
        client.post, centre(reader), {"action": "engagement", "engagement": "1"}
    )

    assert response.status_code == 200
    assert "We sent a link to your address" in response.content.decode()
    [message] = mail.outbox
    assert message.to == [reader.email]
    assert one_time_link(message)
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None
    assert not Consent.objects.filter(subscriber=reader).exists()


@pytest.mark.usefixtures("per_reader")
@pytest.mark.parametrize(
    "reason",
    [
        Suppression.Reason.HARD_BOUNCE,
        Suppression.Reason.COMPLAINT,
        Suppression.Reason.MANUAL,
    ],
)
def test_a_reader_we_no_longer_email_is_offered_no_box_that_needs_an_email(
    client, readers, reason
):
    """The box promised a link by email, and ticking it answered 409 "We cannot
    email this address". A reader who agreed may still untick it: that needs no
    email, and deletes what was kept."""
    for reader in readers.values():
        address_suppress(email=reader.email, reason=reason)

    not_agreed = client.get(centre(readers["not"])).text
    agreed = client.get(centre(readers["agreed"])).text

    assert ENGAGEMENT_CONSENT_WORDING not in not_agreed
    assert 'name="engagement"' not in not_agreed
    assert ENGAGEMENT_CONSENT_WORDING in agreed
    client.post(centre(readers["agreed"]), {"action": "engagement"})
    readers["agreed"].refresh_from_db()
    assert readers["agreed"].engagement_agreed_at is None
    assert mail.outbox == []


@pytest.mark.usefixtures("per_reader")
def test_a_tick_from_a_page_opened_before_the_address_bounced_is_refused_as_elsewhere(
    client, readers
):
    """The page showed the box; the address bounced meanwhile. Ticked, it
    answered 400 "Nothing to do", where every other form that needs an email
    says that none can be sent."""
    reader = readers["not"]
    address_suppress(email=reader.email, reason=Suppression.Reason.HARD_BOUNCE)

    response = client.post(centre(reader), {"action": "engagement", "engagement": "1"})

    assert response.status_code == 409
    assert "We cannot email this address" in response.text
    assert mail.outbox == []
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None


@pytest.mark.usefixtures("per_reader")
def test_the_link_sent_to_the_readers_address_records_their_agreement(
    client, readers, on_commit
):
    reader = readers["not"]
    on_commit(
        client.post,
        centre(reader),
        {"action": "engagement", "engagement": "1"},
        REMOTE_ADDR="192.0.2.10",
    )
    link = one_time_link(mail.outbox[0])
    # A mail scanner following the link agrees to nothing.
    assert client.get(link).status_code == 200
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None

    response = client.post(link, REMOTE_ADDR="198.51.100.7")

    assert response.status_code == 200
    assert "The editor can see which links you follow" in response.content.decode()
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is not None
    consent = Consent.objects.get(subscriber=reader)
    assert (
        consent.wording,
        consent.wording_version,
        consent.source,
        consent.engagement,
        consent.ip_address,  # whoever used the link, not whoever asked for it
    ) == (
        ENGAGEMENT_CONSENT_WORDING,
        ENGAGEMENT_CONSENT_VERSION,
        "preference centre",
        True,
        "198.51.100.7",
    )


def test_agreeing_again_keeps_the_consent_the_reader_gave(readers):
    # Two one-time links used side by side: each checked before the other wrote.
    reader = readers["not"]
    for address in ("198.51.100.7", "203.0.113.9"):
        engagement_agree(subscriber=reader, ip_address=address)
    agreed_at = reader.engagement_agreed_at
    consent = Consent.objects.get(subscriber=reader, engagement=True)
    assert (consent.ip_address, consent.confirmed_at) == ("198.51.100.7", agreed_at)


@pytest.mark.usefixtures("per_reader")
def test_a_reader_who_agreed_through_their_link_withdraws_in_one_click(
    client, readers, on_commit
):
    reader = readers["not"]
    on_commit(client.post, centre(reader), {"action": "engagement", "engagement": "1"})
    client.post(one_time_link(mail.outbox[0]))
    mail.outbox.clear()

    response = on_commit(client.post, centre(reader), {"action": "engagement"})

    assert response.status_code == 200
    assert "The editor sees nothing" in response.content.decode()
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None
    assert mail.outbox == []


@pytest.mark.usefixtures("per_reader")
def test_withdrawing_deletes_what_was_kept_and_stops_keeping(client, emails, readers):
    reader = readers["agreed"]
    link = report_link(emails["agreed"])
    click(client, link)
    assert Engagement.objects.filter(subscriber=reader).count() == 1
    centre = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"
    assert client.post(centre, {"action": "engagement"}).status_code == 200
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None
    assert not Engagement.objects.exists()
    click(client, link, address="192.0.2.99")  # the link in the old email
    assert not Engagement.objects.exists()


@pytest.mark.usefixtures("per_reader")
def test_a_reader_who_agreed_can_still_withdraw_once_the_editor_turned_it_off(
    client, emails, readers, settings
):
    """Turned off, the centre offered no box and answered the reader's untick
    "nothing to do": what they agreed to, and their opens and clicks kept by
    it, stayed until they erased everything."""
    reader = readers["agreed"]
    click(client, report_link(emails["agreed"]))
    assert Engagement.objects.filter(subscriber=reader).count() == 1
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    mail.outbox.clear()
    centre = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"

    assert ENGAGEMENT_CONSENT_WORDING in client.get(centre).content.decode()
    response = client.post(centre, {"action": "engagement"})

    assert response.status_code == 200
    assert "The editor sees nothing" in response.content.decode()
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is None
    assert not Engagement.objects.exists()
    # Withdrawn, the box is gone: there is nothing to agree to while it is off.
    assert ENGAGEMENT_CONSENT_WORDING not in client.get(centre).content.decode()
    assert (
        client.post(centre, {"action": "engagement", "engagement": "1"}).status_code
        == 400
    )
    assert mail.outbox == []  # no link to agree by


def test_a_reader_who_agreed_saving_their_tick_once_it_is_off_is_told_so(
    client, readers, settings
):
    """They were told the editor can see which links they follow: while it is
    off, nothing more is kept."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    reader = readers["agreed"]
    centre = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"

    response = client.post(centre, {"action": "engagement", "engagement": "1"})

    page = response.content.decode()
    assert response.status_code == 200
    assert "The editor can see" not in page
    assert "The editor has turned this off" in page
    reader.refresh_from_db()
    assert reader.engagement_agreed_at is not None  # kept until they untick it


@pytest.mark.usefixtures("per_reader", "provider")
def test_withdrawing_forgets_whom_the_opens_kept_because_they_agreed(client, readers):
    """The provider's open events named the reader (address, message id, their
    browser and place in its payload) only because they agreed: withdrawn, they
    are kept as the open of someone, as if they had never agreed."""
    reader = readers["agreed"]
    open_event(client, reader)
    assert Event.objects.get(event_type="opened").recipient == reader.email

    assert client.post(centre(reader), {"action": "engagement"}).status_code == 200

    # Still there, to recognise it if Postmark sends it again.
    event = Event.objects.get(event_type="opened")
    assert (event.recipient, event.message_id, event.raw) == ("", "", {})


@pytest.mark.usefixtures("per_reader")
def test_confirming_again_without_the_box_deletes_what_was_kept(
    client, emails, readers, django_capture_on_commit_callbacks
):
    """A reader who agreed leaves, comes back and leaves the box unticked on their
    new confirmation's page: that withdraws, as unticking it in the centre does."""
    reader = readers["agreed"]
    click(client, report_link(emails["agreed"]))
    assert Engagement.objects.filter(subscriber=reader).count() == 1
    centre = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"
    client.post(centre, {"action": "unsubscribe"})
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": reader.email})

    client.post(confirm_link(mail.outbox[0]), {"name": ""})

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.engagement_agreed_at is None
    assert not Engagement.objects.exists()


def test_confirming_again_once_it_is_off_keeps_what_the_reader_agreed_to(
    client, readers, settings, django_capture_on_commit_callbacks
):
    """Turned off, the confirmation's page asks nothing, yet confirming withdrew
    the reader's agreement, which stays until they untick it in the centre."""
    settings.NEWSLETTER_PER_READER_ENGAGEMENT = False
    reader = readers["agreed"]
    centre = f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/"
    client.post(centre, {"action": "pause"})
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/subscribe/", {"email": reader.email})
    page = client.get(confirm_link(mail.outbox[0])).content.decode()
    assert ENGAGEMENT_CONSENT_WORDING not in page

    client.post(confirm_link(mail.outbox[0]), {"name": ""})

    reader.refresh_from_db()
    assert (reader.status, reader.paused_at) == (Subscriber.Status.ACTIVE, None)
    assert reader.engagement_agreed_at is not None
    assert ENGAGEMENT_CONSENT_WORDING in client.get(centre).content.decode()


@pytest.mark.usefixtures("per_reader")
@pytest.mark.parametrize("agreed", [False, True])
def test_the_desk_can_neither_agree_for_a_reader_nor_withdraw_for_them(
    client, readers, agreed
):
    """Only the reader agrees, by their own link; withdrawing deletes what was
    kept, which a field cleared at the desk would not."""
    reader = readers["agreed" if agreed else "not"]
    before = reader.engagement_agreed_at
    client.force_login(UserFactory(is_superuser=True))
    page = f"/admin/newsletter/subscriber/{reader.pk}/change/"
    form = client.get(page).context["adminform"].form
    data = {
        **{name: form[name].value() or "" for name in form.fields},
        "engagement_agreed_at_0": "" if agreed else "2026-12-01",
        "engagement_agreed_at_1": "" if agreed else "10:00:00",
        "topics-TOTAL_FORMS": "0",
        "topics-INITIAL_FORMS": "0",
        "consents-TOTAL_FORMS": "0",
        "consents-INITIAL_FORMS": "0",
    }

    assert client.post(page, data).status_code == 302

    reader.refresh_from_db()
    assert reader.engagement_agreed_at == before


@pytest.mark.usefixtures("per_reader")
def test_the_export_lists_the_readers_engagement_and_erasure_removes_it(
    client, emails, readers
):
    reader = readers["agreed"]
    click(client, report_link(emails["agreed"]))
    [row] = subscriber_export(subscriber=reader)["engagement"]
    assert (row["kind"], row["link"], row["machine"]) == ("click", REPORT, False)
    assert row["mailing"] == str(Mailing.objects.get())
    subscriber_delete(subscriber=reader)
    assert not Engagement.objects.exists()


@pytest.mark.usefixtures("per_reader")
def test_a_digest_keeps_the_click_of_the_reader_who_agreed_and_nobody_elses(
    client,
    clock,  # noqa: F811 (the fixture imported above)
    publish,
    django_capture_on_commit_callbacks,
):
    agreed = digests_test.reader("agreed@example.org", ("everything", "", "daily"))
    Subscriber.objects.filter(pk=agreed.pk).update(engagement_agreed_at=timezone.now())
    digests_test.reader("not@example.org", ("everything", "", "daily"))
    clock(23, 6, 30)
    publish(PostFactory(slug="suffolk", body=f"Read [the report]({REPORT})."))
    clock(23, 7, 5)
    digests = {
        message.to[0].split("@")[0]: message
        for message in digests_test.run_beat(django_capture_on_commit_callbacks)
    }
    clock(23, 9)
    post_url = "http://127.0.0.1:8000/posts/suffolk/"
    assert "?reader=" in report_link(digests["agreed"], post_url)
    assert "?reader=" not in digests["not"].alternatives[0].content
    for name in ("agreed", "not"):
        path = report_link(digests[name], post_url)
        response = click(client, path, address=f"192.0.2.{len(name)}")
        assert response.status_code == 302
        assert response["Location"] == post_url
    kept = Engagement.objects.get()
    assert kept.subscriber == agreed
    assert (kept.kind, kept.link.url, kept.mailing.kind, kept.machine) == (
        "click",
        post_url,
        "digest",
        False,
    )


@pytest.mark.usefixtures("per_reader")
def test_a_readers_click_moved_to_machines_by_a_later_flush_is_kept_as_a_machines(
    client, emails, readers, monkeypatch
):
    """Their click is counted a person's; a second later the same message follows
    the hidden link (a scanner), judged by the next flush: both are machines'."""
    path = report_link(emails["agreed"])
    click(client, path)
    assert Engagement.objects.get().machine is False
    hidden = next(
        found
        for found in re.findall(
            r'href="http://127\.0\.0\.1:8000(/r/[^"]+)"',
            emails["agreed"].alternatives[0].content,
        )
        if engagement.link_for_token(found.split("/")[2]).hidden
    )
    a_second_later = timezone.now() + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: a_second_later)
    click(client, hidden)
    assert [kept.machine for kept in Engagement.objects.order_by("at")] == [True, True]
    report = Link.objects.get(url=REPORT)
    assert (report.people, report.machines) == (0, 1)
