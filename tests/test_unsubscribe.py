import pytest
from django.test import Client

from newsletter import subscriptions
from newsletter.models import Subscriber, Suppression
from newsletter.tokens import Purpose, make_token

from .factories import SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader():
    return SubscriberFactory(email="reader@example.org")


def test_get_shows_a_button_and_changes_nothing(client, reader):
    response = client.get(f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/")
    assert response.status_code == 200
    assert "<button" in response.content.decode()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_a_reader_who_unsubscribed_is_told_so_not_asked_again(client, reader):
    """Back at the link of an old email, after unsubscribing: the page asked
    "Stop sending the newsletter to …?", as if it still went, with a button."""
    subscriptions.subscriber_unsubscribe(subscriber=reader)
    response = client.get(f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/")
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert "Stop sending" not in response.text
    assert "<button" not in response.text


@pytest.mark.parametrize(
    "reason", [Suppression.Reason.SOFT_BOUNCES, Suppression.Reason.COMPLAINT]
)
def test_a_reader_out_only_for_a_bounce_can_still_unsubscribe_for_good(
    client, reader, reason
):
    """The page told a reader whose address had bounced "You are unsubscribed",
    with no button, though nothing of theirs was recorded: once the desk lifted
    the bounce, the newsletter came again."""
    subscriptions.address_suppress(email=reader.email, reason=reason)
    url = f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/"

    page = client.get(url)
    assert "You are unsubscribed" not in page.text
    assert "Nothing is being sent to <strong>reader@example.org</strong>" in page.text
    assert "Stop sending" not in page.text  # it does not go now
    assert "<button" in page.text
    assert client.post(url).status_code == 200
    assert "You are unsubscribed" in client.get(url).text

    subscriptions.suppression_lift(suppression=Suppression.objects.get())
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_a_head_request_is_answered_as_a_get_and_changes_nothing(client, reader):
    # A mail scanner checking the link: it was answered 405.
    url = f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/"
    response = client.head(url)
    assert response.status_code == 200
    assert response["Content-Type"] == client.get(url)["Content-Type"]
    assert response.content == b""
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def one_click(token: str):
    """What Gmail and Yahoo send (RFC 8058): a bare POST with this body, no cookie
    and no CSRF token."""
    return Client(enforce_csrf_checks=True).post(
        f"/unsubscribe/{token}/",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )


def test_one_click_post_without_cookie_or_csrf_token_unsubscribes(reader):
    response = one_click(make_token(reader, Purpose.UNSUBSCRIBE))
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert reader.unsubscribed_at is not None


def test_repeating_the_unsubscribe_is_harmless(client, reader):
    url = f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/"
    client.post(url)
    reader.refresh_from_db()
    first_time = reader.unsubscribed_at
    again = client.post(url)
    assert again.status_code == 200
    assert "You are unsubscribed" in again.text
    reader.refresh_from_db()
    assert reader.unsubscribed_at == first_time


def test_a_confirmation_token_does_not_unsubscribe(client, reader):
    response = client.post(f"/unsubscribe/{make_token(reader, Purpose.CONFIRM)}/")
    assert response.status_code == 404
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_a_tampered_token_gets_a_clear_404(client, reader):
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    response = client.post(f"/unsubscribe/{token[:-2]}xx/")
    assert response.status_code == 404
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.ACTIVE


def test_an_email_sent_before_the_reader_moved_address_still_unsubscribes_them(
    reader,
):
    """Its link was a 404 once the reader confirmed a new address, and so was the
    one-click POST their mail client made from it."""
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    assert subscriptions.email_change_confirm(
        subscriber=reader, new_email="new@example.org"
    )
    page = Client().get(f"/unsubscribe/{token}/")
    assert page.status_code == 200
    # The address it went to, not the one it moved to (tests/test_security.py).
    assert "reader@example.org" in page.text
    assert "new@example.org" not in page.text
    response = one_click(token)
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED
    assert Suppression.objects.for_email("new@example.org").exists()


def test_an_old_emails_link_leaves_whoever_took_the_old_address_since_subscribed(
    client, reader
):
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    subscriptions.email_change_confirm(subscriber=reader, new_email="new@example.org")
    newcomer = SubscriberFactory(email="reader@example.org")
    assert client.post(f"/unsubscribe/{token}/").status_code == 200
    newcomer.refresh_from_db()
    assert newcomer.status == Subscriber.Status.ACTIVE
    assert not Suppression.objects.for_email("reader@example.org").exists()
    reader.refresh_from_db()
    assert reader.status == Subscriber.Status.UNSUBSCRIBED


def test_a_link_made_for_an_address_the_reader_never_held_does_not_work(client, reader):
    # The address is part of what the token signs: only addresses the
    # subscription really moved away from are accepted besides the current one.
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    Subscriber.objects.filter(pk=reader.pk).update(email="new@example.org")
    assert client.post(f"/unsubscribe/{token}/").status_code == 404


def test_an_old_emails_link_after_the_reader_erased_their_data_says_nothing_goes(
    reader,
):
    """A reader who deleted their data, at an old email's link, was told it was
    not valid, to use a newer email's or to "subscribe again"; their mail
    provider's one-click POST from it was answered 404, as a forged link is."""
    token = make_token(reader, Purpose.UNSUBSCRIBE)
    subscriptions.subscriber_delete(subscriber=reader)

    page = Client().get(f"/unsubscribe/{token}/")
    assert page.status_code == 200
    assert "was deleted" in page.text
    assert "not valid" not in page.text
    assert "<button" not in page.text
    response = one_click(token)
    assert response.status_code == 200
    assert "was deleted" in response.text
    assert not Subscriber.objects.exists()


@pytest.mark.parametrize(
    "stored, shown",
    [
        ("sam@xn--bcher-kva.example", "sam@bücher.example"),
        # No valid IDNA (imported, or stored before addresses were checked): as it is.
        ("sam@xn--a.example", "sam@xn--a.example"),
        ("sam@under_score.example", "sam@under_score.example"),
    ],
)
def test_an_address_is_shown_as_its_reader_writes_it(client, stored, shown):
    """An international address was shown in its stored ASCII form."""
    reader = SubscriberFactory(email=stored)
    url = f"/unsubscribe/{make_token(reader, Purpose.UNSUBSCRIBE)}/"

    asked, done = client.get(url), client.post(url)

    assert (asked.status_code, done.status_code) == (200, 200)
    assert f"Stop sending the newsletter to <strong>{shown}</strong>?" in asked.text
    assert f"We will send no more posts to <strong>{shown}</strong>." in done.text


def test_a_broken_unsubscribe_link_says_how_to_unsubscribe_not_to_subscribe_again(
    client, reader, settings
):
    """The invalid-link page ended "or subscribe again", to someone who came to
    leave."""
    settings.NEWSLETTER_REPLY_TO = "On Probation <editor@probation.example>"
    # A link the reader's mail program opens, addressed.
    write_to_us = (
        'write to us at <a href="mailto:editor@probation.example">'
        "editor@probation.example</a>"
    )
    token = make_token(reader, Purpose.UNSUBSCRIBE)

    response = client.get(f"/unsubscribe/{token[:-3]}/")

    assert response.status_code == 404
    assert "This link is not valid" in response.text
    assert "subscribe again" not in response.text
    assert write_to_us in response.text
