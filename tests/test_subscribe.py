import re
import threading
import time
from datetime import timedelta

import pytest
from django.core import mail, signing
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from benchmarks.fake_esp import postmark_messages
from newsletter import imports, subscriptions
from newsletter.models import Consent, Subscriber, Suppression
from newsletter.subscriptions import (
    CONSENT_SOURCE_FORM,
    CONSENT_VERSION,
    CONSENT_WORDING,
    address_suppress,
    subscriber_export,
    subscription_request,
)
from newsletter.tasks import send_confirmation
from newsletter.tokens import Purpose, make_token

from .factories import RegionFactory, SubscriberFactory, confirm_link
from .locks import in_a_thread, until_done_or_waiting_for_a_lock

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]


def subscribe(client, email, django_capture_on_commit_callbacks, **extra):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post("/subscribe/", {"email": email, **extra})


def test_subscribe_form_shows_the_consent_wording(client):
    response = client.get("/subscribe/")
    assert response.status_code == 200
    assert CONSENT_WORDING in response.content.decode()


@pytest.mark.parametrize("referer", ["http://[::1", "http://[x]/", "//a]b/"])
def test_a_referer_that_is_no_address_gets_the_form_with_no_page(client, referer):
    # The Referer is the client's to write: one urlsplit could not read was a 500.
    response = client.get("/subscribe/", HTTP_REFERER=referer)
    assert response.status_code == 200
    assert CONSENT_WORDING in response.content.decode()
    assert 'name="page" value' not in response.content.decode()


def test_new_address_gets_one_confirmation_and_a_consent_record(
    client, django_capture_on_commit_callbacks
):
    response = subscribe(
        client,
        "  Reader@Example.ORG ",
        django_capture_on_commit_callbacks,
        name="Sam Reader",
    )
    assert response.status_code == 200
    subscriber = Subscriber.objects.get()
    assert subscriber.email == "reader@example.org"
    assert subscriber.status == Subscriber.Status.PENDING
    consent = Consent.objects.get()
    assert consent.ip_address == "127.0.0.1"
    assert consent.wording == CONSENT_WORDING
    assert consent.wording_version == CONSENT_VERSION
    assert consent.confirmed_at is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["reader@example.org"]
    assert "/subscribe/confirm/" in mail.outbox[0].body


@pytest.mark.parametrize(
    "status", ["new", "pending", "active", "unsubscribed"], ids=lambda s: s
)
def test_the_answer_is_the_same_whatever_the_address_state(
    client, django_capture_on_commit_callbacks, status
):
    reference = subscribe(
        client, "someone-else@example.org", django_capture_on_commit_callbacks
    )
    if status != "new":
        SubscriberFactory(email="known@example.org", status=status)
    response = subscribe(
        client, "known@example.org", django_capture_on_commit_callbacks
    )
    assert response.status_code == reference.status_code == 200
    assert response.content == reference.content


def test_asking_again_the_same_day_is_told_the_first_emails_link_is_the_one(
    client, django_capture_on_commit_callbacks
):
    """A reader who could not find their confirmation asked again: no second
    email goes within the day, and the page said "we have sent it an email with
    a link to confirm", so they waited for one that never came."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)

    again = subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)

    assert len(mail.outbox) == 1
    assert "we have sent it" not in again.text
    assert "at most one a day" in again.text
    assert "if you asked earlier today, use the link in that email" in again.text


def test_confirmed_reader_gets_no_new_confirmation(
    client, django_capture_on_commit_callbacks
):
    SubscriberFactory(email="known@example.org")
    subscribe(client, "known@example.org", django_capture_on_commit_callbacks)
    assert mail.outbox == []


def a_request_whose_confirmation_waits(email: str) -> Consent:
    with transaction.atomic():  # its email is queued on commit: not sent here
        subscription_request(email=email, name="", ip_address=None)
    return Consent.objects.get(subscriber__email=email)


def test_a_confirmation_the_provider_never_took_does_not_hold_back_the_next_for_a_day(
    client, django_capture_on_commit_callbacks, fake_esp
):
    # The provider refused the email until its task's last retry: the reader got
    # nothing, and the form would otherwise send nothing more that day.
    consent = a_request_whose_confirmation_waits("reader@example.org")
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    last_try = send_confirmation.apply(
        args=[consent.pk], retries=send_confirmation.max_retries, throw=False
    )
    assert last_try.failed()
    assert fake_esp.count == 0

    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert fake_esp.recipients() == {"reader@example.org": 1}
    [message] = postmark_messages(fake_esp.messages)
    assert "/subscribe/confirm/" in message["TextBody"]


def test_a_confirmation_the_provider_never_took_leaves_the_inbox_its_day(
    client, django_capture_on_commit_callbacks, fake_esp
):
    # The reader mistyped a tag, and the provider refused that email for good:
    # the inbox got nothing, and its day's one confirmation is still to come.
    consent = a_request_whose_confirmation_waits("reader+typo@example.org")
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    send_confirmation.apply(
        args=[consent.pk], retries=send_confirmation.max_retries, throw=False
    )
    assert fake_esp.count == 0

    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert fake_esp.recipients() == {"reader@example.org": 1}


def test_a_confirmation_sent_on_a_retry_still_holds_back_the_next_for_a_day(
    client, django_capture_on_commit_callbacks, fake_esp
):
    consent = a_request_whose_confirmation_waits("reader@example.org")
    fake_esp.set_faults(fail_5xx_next=1, fail_5xx_status=503)
    send_confirmation.apply(args=[consent.pk], throw=False)  # refused, then retried
    assert fake_esp.recipients() == {"reader@example.org": 1}

    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert fake_esp.recipients() == {"reader@example.org": 1}


def test_confirmation_is_resent_at_most_once_a_day(
    client, django_capture_on_commit_callbacks
):
    for _ in range(3):
        subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    Subscriber.objects.update(confirmation_sent_at=timezone.now() - timedelta(days=2))
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 2


def test_invalid_email_is_refused_with_a_clear_error_and_nothing_stored(client):
    response = client.post("/subscribe/", {"email": "not-an-address"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    assert not Subscriber.objects.exists()


def test_a_form_sent_without_its_cookie_is_refused_in_the_sites_words(settings):
    """A reader whose browser keeps no cookies (or lost the form's) was shown
    Django's page for developers, "CSRF verification failed. Request aborted.",
    unstyled (the CSP forbids its inline style) and without the site around it."""
    settings.DEBUG = False
    response = Client(enforce_csrf_checks=True).post(
        "/subscribe/", {"email": "reader@example.org"}
    )
    page = response.content.decode()
    assert response.status_code == 403
    assert "<title>Your form could not be sent — On Probation</title>" in page
    assert "allow cookies from this site" in page
    assert 'href="/subscribe/">Subscribe</a>' in page  # the site's own header
    assert "CSRF" not in page
    assert not Subscriber.objects.exists()


# Mail servers take at most 64 characters before the @ (RFC 5321): the provider
# would refuse every email to a longer one.
LONGEST_LOCAL_PART = "r" * 64


def test_an_address_too_long_before_the_at_is_refused_saying_so(
    client, django_capture_on_commit_callbacks
):
    response = subscribe(
        client, LONGEST_LOCAL_PART + "x@example.org", django_capture_on_commit_callbacks
    )
    assert response.status_code == 400
    assert "The part before the @ is longer than email allows (64 characters)." in (
        response.content.decode()
    )
    assert not Subscriber.objects.exists()
    assert not mail.outbox

    subscribe(
        client, LONGEST_LOCAL_PART + "@example.org", django_capture_on_commit_callbacks
    )
    assert Subscriber.objects.get().email == LONGEST_LOCAL_PART + "@example.org"
    assert mail.outbox[0].to == [LONGEST_LOCAL_PART + "@example.org"]


def test_a_refused_form_says_so_first_and_links_each_error_to_its_field(client):
    # A screen reader starts at the title and the focused element; the errors
    # beside the fields, far down, are found only by whoever looks there.
    page = client.post("/subscribe/", {"email": "not-an-address"}).content.decode()
    assert "<title>Error: Subscribe — On Probation</title>" in page
    assert (
        'role="alert" aria-labelledby="error-summary-title" tabindex="-1" autofocus'
        in page
    )
    assert '<a href="#id_email">Email address: Enter a valid email address.</a>' in page
    assert 'aria-describedby="id_email_error"' in page
    assert '<ul class="errorlist" id="id_email_error">' in page


def test_a_refused_frequency_is_said_to_whoever_reaches_its_radio_group(client):
    # The radios are Django's, but their group is ours: Django marks each radio
    # invalid and ties the error to none, so only the group can say it.
    page = client.post(
        "/subscribe/", {"email": "sam@example.org", "frequency": "hourly"}
    ).text
    assert '<ul class="errorlist" id="id_frequency_error">' in page
    assert '<fieldset aria-describedby="id_frequency_error">' in page


def test_each_error_summary_link_lands_where_focus_can_go(client):
    """GOV.UK's error summary links to the first radio or checkbox of a group:
    "How often" linked to #id_frequency, the radios' div, which cannot take focus,
    so a keyboard or screen reader user following it went nowhere."""
    page = client.post(
        "/subscribe/",
        {"email": "sam@example.org", "frequency": "hourly", "topics": ["region:x"]},
    ).text

    frequency = re.search(r'<a href="#([^"]+)">How often: ', page)[1]
    topics = re.search(r'<a href="#([^"]+)">Only posts about ', page)[1]
    assert re.search(rf'<input type="radio"[^>]* id="{frequency}"', page)
    # The topics' checkboxes are collapsed in their groups: their fieldset takes it.
    assert re.search(rf'<fieldset [^>]*id="{topics}"[^>]* tabindex="-1"', page)


def test_a_refused_name_on_the_confirm_page_says_so_first(
    client, django_capture_on_commit_callbacks
):
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    response = client.post(confirm_link(mail.outbox[0]), {"name": "\u200b"})
    assert response.status_code == 400
    assert (
        "<title>Error: Confirm your subscription — On Probation</title>"
        in response.text
    )
    assert '<a href="#id_name">Name (optional): ' in response.text


def test_control_characters_in_the_name_are_refused(client):
    response = client.post(
        "/subscribe/", {"email": "a@example.org", "name": "Sam\r\nBcc: x@evil.test"}
    )
    assert response.status_code == 400
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize("name", ["\u200b\u200b", "\u3164", " \u2060 \u00ad "])
def test_a_name_that_shows_nothing_is_refused(client, name):
    # It would greet the reader "Dear ," in every email.
    response = client.post("/subscribe/", {"email": "a@example.org", "name": name})
    assert response.status_code == 400
    assert "blank or invisible characters" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_a_name_joined_with_zero_width_joiners_is_kept(
    client, django_capture_on_commit_callbacks
):
    name = "\u0645\u06cc\u200c\u0631\u0648\u062f \U0001f469\u200d\U0001f4bb"
    subscribe(client, "a@example.org", django_capture_on_commit_callbacks, name=name)
    assert Consent.objects.get().name == name


def test_a_name_cleared_on_the_confirm_page_is_cleared(
    client, django_capture_on_commit_callbacks
):
    """A returning reader empties the name their request carried: every email
    greeted them by it all the same."""
    reader = SubscriberFactory(name="Sam", status=Subscriber.Status.UNSUBSCRIBED)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/",
            {"action": "resubscribe"},
        )
    link = confirm_link(mail.outbox[0])
    assert 'value="Sam"' in client.get(link).text

    client.post(link, {"name": ""})

    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE
    assert reader.name == ""
    assert reader.consents.get().name == ""


def test_confirm_link_shows_a_button_and_get_changes_nothing(
    client, django_capture_on_commit_callbacks
):
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    response = client.get(confirm_link(mail.outbox[0]))
    assert response.status_code == 200
    assert "Confirm my subscription" in response.content.decode()
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING


def test_a_head_request_is_answered_as_a_get_and_changes_nothing(
    client, django_capture_on_commit_callbacks
):
    """Link checkers and mail scanners ask with HEAD: they were answered 405, as
    if the form and the link did not work."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    for url in ["/subscribe/", confirm_link(mail.outbox[0])]:
        get, head = client.get(url), client.head(url)
        assert (head.status_code, head["Content-Type"]) == (200, get["Content-Type"])
        assert head.content == b""
    assert Subscriber.objects.get().status == Subscriber.Status.PENDING
    assert Consent.objects.get().confirmed_at is None
    assert len(mail.outbox) == 1


def test_the_confirm_page_says_what_the_reader_agrees_to_receive(
    client, django_capture_on_commit_callbacks
):
    """Nothing ticked on the form is every post: the page asked the reader to
    confirm posts "on the 0 topics chosen"."""
    wales = RegionFactory(name="Wales")
    for email, chosen in [
        ("all@example.org", {"frequency": "weekly"}),
        ("some@example.org", {"topics": [f"region:{wales.slug}"]}),
    ]:
        subscribe(client, email, django_capture_on_commit_callbacks, **chosen)
    everything, some = (client.get(confirm_link(m)).text for m in mail.outbox)

    assert "0 topics" not in everything
    assert "every new post at <strong>all@example.org</strong> (weekly digest)" in (
        everything
    )
    assert "on the 1 topic chosen" in some
    assert "(as it is published)" in some


def test_confirming_activates_and_records_when(
    client, django_capture_on_commit_callbacks
):
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    response = client.post(confirm_link(mail.outbox[0]))
    assert response.status_code == 200
    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.confirmed_at is not None
    assert Consent.objects.get().confirmed_at == subscriber.confirmed_at


def test_a_confirmation_link_opened_again_says_the_reader_is_subscribed(
    client, django_capture_on_commit_callbacks
):
    """It showed the button again and "Press the button to start receiving" to a
    reader who already received."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    client.post(link)

    for again in (client.get(link), client.post(link)):
        assert again.status_code == 200
        assert "You are subscribed" in again.text
        assert "Press the button" not in again.text
    assert Consent.objects.get().confirmed_at is not None


def test_the_consent_records_where_it_was_asked_and_where_it_was_confirmed(
    client, django_capture_on_commit_callbacks
):
    # The request may be anyone's; the click on the link sent to the address is
    # the reader's proof of the double opt-in, and its address is kept with it.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/subscribe/",
            {"email": "reader@example.org"},
            REMOTE_ADDR="203.0.113.5",
        )
    response = client.post(confirm_link(mail.outbox[0]), REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 200
    consent = Consent.objects.get()
    assert consent.ip_address == "203.0.113.5"
    assert consent.confirmed_ip_address == "198.51.100.7"
    data = subscriber_export(subscriber=Subscriber.objects.get())
    assert data["consents"][0]["ip_address"] == "203.0.113.5"
    assert data["consents"][0]["confirmed_ip_address"] == "198.51.100.7"


def confirm_token_of_eight_days_ago(subscriber, monkeypatch) -> str:
    eight_days_ago = time.time() - 8 * 86400
    with monkeypatch.context() as past:
        past.setattr(signing.time, "time", lambda: eight_days_ago)
        return make_token(subscriber, Purpose.CONFIRM)


def test_expired_confirmation_link_says_so(client, monkeypatch):
    subscriber = SubscriberFactory(
        status="pending", confirmation_sent_at=timezone.now()
    )
    token = confirm_token_of_eight_days_ago(subscriber, monkeypatch)
    response = client.post(f"/subscribe/confirm/{token}/")
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.PENDING


def opened_days_later(client, link, monkeypatch, days: float, method="get"):
    """The link opened `days` from now, as its signature's clock reads it."""
    later = time.time() + days * 86400
    with monkeypatch.context() as then:
        then.setattr(signing.time, "time", lambda: later)
        return getattr(client, method)(link)


def test_a_subscribed_reader_opening_their_expired_link_is_told_they_are_subscribed(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    """It said "This link has expired… Subscribe again", and subscribing again
    sent nothing: they were subscribed."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    client.post(link)

    for method in ("get", "post"):
        page = opened_days_later(client, link, monkeypatch, 8, method)
        assert page.status_code == 200
        assert "You are subscribed" in page.text
        assert "reader@example.org" in page.text
        assert "expired" not in page.text
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE
    assert len(mail.outbox) == 1


@pytest.mark.parametrize("days", [0, 8], ids=["within-its-week", "expired"])
def test_a_reader_who_left_opening_their_old_link_is_told_how_to_come_back(
    client, monkeypatch, django_capture_on_commit_callbacks, days
):
    """After an unsubscribe the link said "not valid… replaced by a newer email":
    no newer email was ever sent. It says where the reader stands, and changes
    nothing."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    client.post(link)
    subscriptions.subscriber_unsubscribe(subscriber=Subscriber.objects.get())

    for method in ("get", "post"):
        page = opened_days_later(client, link, monkeypatch, days, method)
        assert page.status_code == 200
        assert "You are not subscribed" in page.text
        assert "/preferences/" in page.text
    assert Subscriber.objects.get().status == Subscriber.Status.UNSUBSCRIBED


def test_a_reader_who_paused_then_left_is_not_told_to_resume(
    client, django_capture_on_commit_callbacks
):
    """Their pause is kept under their unsubscribe, and their old link said the
    newsletter was paused, to resume it from their preferences, which offer no
    Resume to a reader who left."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    client.post(link)
    reader = Subscriber.objects.get()
    subscriptions.subscriber_pause(subscriber=reader)
    subscriptions.subscriber_unsubscribe(subscriber=reader)

    page = client.get(link)
    assert "You are not subscribed" in page.text
    assert "resume" not in page.text.lower()


def test_a_returning_reader_at_their_old_link_is_sent_to_their_new_one(
    client, django_capture_on_commit_callbacks
):
    """Back after unsubscribing, they asked again; their old link, found first in
    their inbox, said "this link cannot change that", and their preferences
    offered to send a link that the day's limit kept from going."""
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    old = confirm_link(mail.outbox[0])
    client.post(old)
    subscriptions.subscriber_unsubscribe(subscriber=Subscriber.objects.get())
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    new = confirm_link(mail.outbox[-1])

    page = client.get(old)
    assert "cannot change that" not in page.text
    assert "use the link in the newest email" in page.text
    assert Subscriber.objects.get().status == Subscriber.Status.UNSUBSCRIBED
    assert "Confirm my subscription" in client.get(new).text


@pytest.mark.parametrize("days", [0, 8], ids=["within-its-week", "expired"])
def test_an_old_link_to_an_address_the_reader_left_shows_nothing_of_them(
    client, monkeypatch, django_capture_on_commit_callbacks, days
):
    """Whoever has the address the link went to is not shown the reader's new
    address, nor given their preferences."""
    subscribe(client, "old@example.org", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])
    client.post(link)
    reader = Subscriber.objects.get()
    assert subscriptions.email_change_confirm(
        subscriber=reader, new_email="new@example.org"
    )

    page = opened_days_later(client, link, monkeypatch, days)
    assert page.status_code == (410 if days else 404)
    assert "new@example.org" not in page.text
    assert "/preferences/" not in page.text


def test_a_pending_readers_link_retired_by_a_newer_one_still_says_so(
    client, monkeypatch, django_capture_on_commit_callbacks
):
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    first = confirm_link(mail.outbox[0])
    Subscriber.objects.update(confirmation_sent_at=timezone.now() - timedelta(days=2))
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)

    for days, status in [(0, 404), (8, 410)]:
        page = opened_days_later(client, first, monkeypatch, days)
        assert page.status_code == status
        assert "/preferences/" not in page.text


def test_the_pages_say_how_long_the_link_works_as_the_email_does(
    client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    # NEWSLETTER_CONFIRM_MAX_AGE_DAYS set to 3: the email said 3 days, the pages
    # "a week".
    settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS = 3 * 86400
    done = subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert "The link works for 3 days." in done.content.decode()
    assert "The link works for 3 days." in mail.outbox[0].body

    subscriber = Subscriber.objects.get()
    token = confirm_token_of_eight_days_ago(subscriber, monkeypatch)
    expired = client.get(f"/subscribe/confirm/{token}/")
    assert expired.status_code == 410
    assert "Confirmation links work for 3 days." in expired.content.decode()
    assert "week" not in done.content.decode() + expired.content.decode()


def test_a_link_that_works_for_one_day_says_one_day(
    client, settings, django_capture_on_commit_callbacks
):
    # NEWSLETTER_CONFIRM_MAX_AGE_DAYS set to 1: the page said "1 day", the email
    # "1 days".
    settings.NEWSLETTER_CONFIRM_MAX_AGE_SECONDS = 86400
    done = subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    [email] = mail.outbox
    for said in (done.content.decode(), email.body, email.alternatives[0].content):
        assert "The link works for 1 day." in said
        assert "1 days" not in said


@pytest.mark.parametrize(
    "token",
    ["nonsense", "a:b:c", "%2e%2e", "x" * 500],
)
def test_tampered_or_unknown_confirmation_links_get_a_clear_404(client, token):
    response = client.post(f"/subscribe/confirm/{token}/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


@pytest.mark.parametrize(
    "detail",
    ["{pk}.0", " {pk} ", "{pk}_0", "x", "-{pk}", "9" * 19, "9" * 5000],
    ids=["decimal", "spaces", "underscore", "text", "negative", "over-bigint", "long"],
)
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_signed_confirmation_link_naming_no_request_id_is_a_404_and_changes_nothing(
    client, method, detail
):
    """Only the site signs these links, yet one whose detail is not a request's id
    as we write it (another release's, a leaked key's) is answered as a link
    naming nothing, never with a 500, nor read as another request's id."""
    reader = SubscriberFactory(status="pending", confirmation_sent_at=timezone.now())
    request = Consent.objects.create(
        subscriber=reader, wording=CONSENT_WORDING, source="form"
    )
    token = make_token(reader, Purpose.CONFIRM, detail=detail.format(pk=request.pk))

    response = getattr(client, method)(f"/subscribe/confirm/{token}/")

    assert response.status_code == 404
    assert "not valid" in response.content.decode()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.PENDING
    assert Consent.objects.get().confirmed_at is None


def test_an_unsubscribe_token_does_not_confirm(client):
    subscriber = SubscriberFactory(status="pending")
    token = make_token(subscriber, Purpose.UNSUBSCRIBE)
    assert client.post(f"/subscribe/confirm/{token}/").status_code == 404
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.PENDING


def test_only_the_latest_confirmation_link_works(
    client, django_capture_on_commit_callbacks
):
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    first = confirm_link(mail.outbox[0])
    Subscriber.objects.update(confirmation_sent_at=timezone.now() - timedelta(days=2))
    subscribe(client, "reader@example.org", django_capture_on_commit_callbacks)
    assert client.post(first).status_code == 404
    assert client.post(confirm_link(mail.outbox[1])).status_code == 200


def test_unsubscribed_reader_comes_back_only_by_confirming_again(
    client, django_capture_on_commit_callbacks
):
    SubscriberFactory(email="back@example.org", status="unsubscribed")
    subscribe(client, "back@example.org", django_capture_on_commit_callbacks)
    assert Subscriber.objects.get().status == Subscriber.Status.UNSUBSCRIBED
    client.post(confirm_link(mail.outbox[0]))
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE


def test_a_stranger_resubmitting_a_pending_address_cannot_change_what_its_link_confirms(
    client, django_capture_on_commit_callbacks
):
    region = RegionFactory()
    subscribe(
        client,
        "reader@example.org",
        django_capture_on_commit_callbacks,
        name="Sam",
        topics=[f"region:{region.slug}"],
        frequency="weekly",
    )
    [message] = mail.outbox
    subscribe(
        client,
        "reader@example.org",
        django_capture_on_commit_callbacks,
        name="Mallory",
        frequency="daily",
    )
    assert len(mail.outbox) == 1  # at most one confirmation a day
    client.post(confirm_link(message))

    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.name == "Sam"
    assert set(subscriber.topics.values_list("kind", "value", "frequency")) == {
        ("region", region.slug, "weekly")
    }
    readers, strangers = subscriber.consents.order_by("created_at")
    assert readers.confirmed_at == subscriber.confirmed_at
    assert strangers.confirmed_at is None


def test_a_request_confirmed_after_an_import_made_its_reader_one_gets_what_it_asked(
    client, django_capture_on_commit_callbacks
):
    """The author imports an old list with the reader on it between their request
    and their click: the link is still their word on what they get (they were
    left with every post as published, and the request unconfirmed)."""
    region = RegionFactory()
    subscribe(
        client,
        "pat@example.org",
        django_capture_on_commit_callbacks,
        topics=[f"region:{region.slug}"],
        frequency="weekly",
    )
    imports.import_rows(
        report=imports.read_csv(
            b"email,name,consent_source,consent_date\n"
            b"pat@example.org,,old list,2024-01-01\n"
        )
    )

    page = client.post(confirm_link(mail.outbox[0]), REMOTE_ADDR="198.51.100.7")

    assert "You are subscribed" in page.text
    reader = Subscriber.objects.get()
    assert list(reader.topics.values_list("kind", "value", "frequency")) == [
        ("region", region.slug, "weekly")
    ]
    request = reader.consents.get(source=CONSENT_SOURCE_FORM)
    assert request.confirmed_at is not None
    assert request.confirmed_ip_address == "198.51.100.7"


def test_a_later_request_gets_its_own_link_which_confirms_its_own_consent(
    client, django_capture_on_commit_callbacks
):
    region = RegionFactory()
    subscribe(
        client,
        "reader@example.org",
        django_capture_on_commit_callbacks,
        topics=[f"region:{region.slug}"],
    )
    Subscriber.objects.update(confirmation_sent_at=timezone.now() - timedelta(days=2))
    subscribe(
        client, "reader@example.org", django_capture_on_commit_callbacks, name="Ann"
    )
    first, later = mail.outbox
    assert client.post(confirm_link(first)).status_code == 404
    client.post(confirm_link(later))

    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.name == "Ann"
    assert set(subscriber.topics.values_list("kind", "value")) == {("everything", "")}
    earlier, latest = subscriber.consents.order_by("created_at")
    assert (earlier.confirmed_at, latest.confirmed_at) == (
        None,
        subscriber.confirmed_at,
    )


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections' row locks"
)
@pytest.mark.django_db(transaction=True)
def test_a_complaint_recorded_while_a_returning_reader_confirms_keeps_them_out(
    client, django_capture_on_commit_callbacks, monkeypatch
):
    """A reader who once unsubscribed asks again and confirms just as the
    provider reports their complaint about an earlier email: the complaint
    stands (the confirmation, having checked the address before it came, made
    them active again and deleted the complaint with the old unsubscribe)."""
    SubscriberFactory(email="back@example.org", status="unsubscribed")
    address_suppress(email="back@example.org", reason=Suppression.Reason.UNSUBSCRIBED)
    subscribe(client, "back@example.org", django_capture_on_commit_callbacks)
    confirm_url = confirm_link(mail.outbox.pop())
    checked, go_on = threading.Event(), threading.Event()
    is_blocked = subscriptions.is_blocked

    def check_then_wait(email: str) -> bool:
        blocked = is_blocked(email)
        checked.set()
        go_on.wait(timeout=10)
        return blocked

    monkeypatch.setattr(subscriptions, "is_blocked", check_then_wait)
    answers = []

    reader = in_a_thread(lambda: Client().post(confirm_url).status_code, answers)
    assert checked.wait(timeout=10)
    provider = in_a_thread(
        lambda: address_suppress(
            email="back@example.org", reason=Suppression.Reason.COMPLAINT
        ),
        answers,
    )
    # The complaint is recorded at once, or waits for the confirmation's locks.
    until_done_or_waiting_for_a_lock(provider)
    go_on.set()
    reader.join(timeout=10)
    provider.join(timeout=10)

    assert sorted(answers, key=str) == [200, None]  # neither raised
    assert Subscriber.objects.get().status == Subscriber.Status.COMPLAINED
    assert Suppression.objects.for_email("back@example.org").get().reason == (
        Suppression.Reason.COMPLAINT
    )


def test_a_subscription_asked_for_with_redis_down_is_refused_and_nothing_stored(
    client, redis_down, caplog
):
    response = client.post("/subscribe/", {"email": "sam@example.org"})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "try again in a minute" in response.text
    assert "nothing has been stored or sent" in response.text
    assert not Subscriber.objects.exists()
    assert not mail.outbox
    # Its limits could not be counted either: the request went on regardless.
    assert "Could not count a request against its limit" in caplog.text


def sent_with_topics(client, region, **extra):
    """The form as a reader fills it in: their address, their name, a topic
    among the dozens offered and a weekly digest."""
    return client.post(
        "/subscribe/",
        {
            "email": "sam@example.org",
            "name": "Sam Reader",
            "topics": [f"region:{region.slug}"],
            "frequency": "weekly",
        },
        **extra,
    )


def assert_filled_in_as_sent(response, region) -> None:
    """The subscribe form again, as the reader sent it: they send it again once
    they may, without typing and ticking it all again."""
    assert 'name="email" value="sam@example.org"' in response.text
    assert 'name="name" value="Sam Reader"' in response.text
    assert f'value="region:{region.slug}" checked' in response.text
    assert 'value="weekly" id="id_frequency_2" checked' in response.text
    assert not Subscriber.objects.exists()
    assert not Consent.objects.exists()


def test_a_reader_over_the_limit_gets_the_form_back_as_they_filled_it_in(
    client, settings
):
    """The answer was a page saying "try again in an hour", with no form: the
    address, the name and every topic ticked were gone."""
    region = RegionFactory()
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 0
    response = sent_with_topics(client, region)
    assert response.status_code == 429
    assert response["Retry-After"] == str(
        settings.NEWSLETTER_SUBSCRIBE_LIMIT_WINDOW_SECONDS
    )
    assert "Too many requests" in response.text
    assert_filled_in_as_sent(response, region)


def test_a_reader_subscribing_with_redis_down_gets_the_form_back_as_they_filled_it_in(
    client, redis_down
):
    region = RegionFactory()
    response = sent_with_topics(client, region)
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert "try again in a minute" in response.text
    assert_filled_in_as_sent(response, region)
    assert not mail.outbox


def test_an_international_address_is_shown_to_its_reader_as_they_write_it(
    client, django_capture_on_commit_callbacks
):
    """Stored and emailed in its ASCII form, the address was shown so too, as
    sam@xn--bcher-kva.example: a reader may take it for a mistake and not confirm."""
    subscribe(client, "Sam@Bücher.example", django_capture_on_commit_callbacks)
    link = confirm_link(mail.outbox[0])

    for page in (client.get(link).text, client.post(link).text):
        assert "<strong>sam@bücher.example</strong>" in page
        assert "xn--" not in page
    assert Subscriber.objects.get().email == "sam@xn--bcher-kva.example"


def test_a_reader_who_unsubscribed_at_mailgun_gets_their_confirmation_back(
    client, django_capture_on_commit_callbacks, mailgun
):
    """Mailgun keeps a reader who unsubscribed on its Unsubscribes list and drops
    every email to them: subscribing again, they were told to check their inbox
    and nothing came. Their asking is the opt-in Mailgun's list waits for."""
    SubscriberFactory(email="back@example.org")
    mailgun.mailgun_unsubscribe("back@example.org")
    subscriptions.subscriber_unsubscribe(subscriber=Subscriber.objects.get())
    subscribe(client, "back@example.org", django_capture_on_commit_callbacks)
    assert mailgun.recipients() == {"back@example.org": 1}
    assert mailgun.mailgun_unsubscribes() == set()
    # Still out here until their link confirms it.
    assert Suppression.objects.for_email("back@example.org").exists()


def test_mailgun_keeps_an_address_this_site_never_saw_unsubscribe(
    client, django_capture_on_commit_callbacks, mailgun
):
    """Only the reader's own unsubscribe, recorded here, is lifted at Mailgun:
    not an entry of its list this site knows nothing of (an import, the author's
    hand), which Mailgun's drop reports here, for the reader's next request."""
    mailgun.mailgun_unsubscribe("stranger@example.org")
    subscribe(client, "stranger@example.org", django_capture_on_commit_callbacks)
    assert mailgun.recipients() == {}
    assert mailgun.mailgun_unsubscribes() == {"stranger@example.org"}
