"""Property tests: whatever arrives at the subscribe form, a signed-link URL or the
dev outbox, the answer is never a 500, and what is refused changes nothing."""

from urllib.parse import quote

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.models import Consent, Subscriber
from newsletter.tokens import Purpose, make_token

from .factories import SubscriberFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_eager")]

fuzz = hypothesis_settings(
    max_examples=150,
    deadline=None,
    # The database and client are shared by the examples on purpose: each example
    # must leave them as it found them, or as a valid subscribe would.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Text that looks like what arrives from the internet: any Unicode, control
# characters, header-like lines, and address-like shapes.
hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="ascii"), max_size=80),
    st.builds(
        lambda local, domain, tail: f"{local}@{domain}{tail}",
        st.text(max_size=70),
        st.text(max_size=70),
        st.sampled_from(["", "\r\nBcc: x@example.org", "\n", ",b@example.org", ">"]),
    ),
)


def database_state() -> tuple:
    return (
        sorted(Subscriber.objects.values_list("email", "status", "name")),
        Consent.objects.count(),
    )


@pytest.fixture
def generous_limits(settings):
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 10**9
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = 10**9


@pytest.mark.usefixtures("generous_limits")
@fuzz
@given(email=hostile_text, name=hostile_text, website=st.sampled_from(["", "x"]))
@example(email="a@example.org\r\nBcc: b@example.org", name="", website="")
@example(email="a@example.org", name="Sam\r\nBcc: b@example.org", website="")
@example(email="a@bücher.example.org", name="\u202e", website="")
def test_no_subscribe_input_gives_a_500_and_refused_input_changes_nothing(
    client, email, name, website
):
    before = database_state()
    response = client.post(
        "/subscribe/", {"email": email, "name": name, "website": website}
    )
    assert response.status_code in (200, 400)
    if response.status_code == 400 or website:
        assert database_state() == before
    else:  # accepted: the request is on record
        assert Consent.objects.count() == before[1] + 1


@fuzz
@given(token=st.text(max_size=400), method=st.sampled_from(["get", "post"]))
@example(token="..", method="post")
@example(token="a:b:c", method="post")
@example(token="W10:1abc:def", method="post")
def test_no_token_in_a_link_gives_a_500_or_changes_anything(client, token, method):
    SubscriberFactory(email="reader@example.org", status="pending")
    before = database_state()
    for prefix in ("/subscribe/confirm/", "/unsubscribe/"):
        response = getattr(client, method)(f"{prefix}{quote(token, safe='')}/")
        assert response.status_code in (404, 410)
    assert database_state() == before
    Subscriber.objects.all().delete()


@fuzz
@given(
    purpose=st.sampled_from([Purpose.CONFIRM, Purpose.UNSUBSCRIBE]),
    position=st.integers(min_value=0, max_value=200),
    replacement=st.characters(codec="ascii", exclude_characters="/?#%"),
)
def test_a_valid_token_changed_in_any_one_character_stops_working(
    client, purpose, position, replacement
):
    # Each example starts clean: an unsubscribe in one example would otherwise put
    # the address on the suppression list for the next.
    with transaction.atomic():
        reader = SubscriberFactory(email="reader@example.org", status="pending")
        token = make_token(reader, purpose)
        position %= len(token)
        forged = token[:position] + replacement + token[position + 1 :]
        prefix = (
            "/subscribe/confirm/" if purpose == Purpose.CONFIRM else "/unsubscribe/"
        )
        response = client.post(f"{prefix}{quote(forged, safe='')}/")
        if forged == token:
            assert response.status_code == 200
        else:
            assert response.status_code == 404
            reader.refresh_from_db()
            assert reader.status == Subscriber.Status.PENDING
        transaction.set_rollback(True)


@fuzz
@given(name=st.text(max_size=200))
@example(name="../../etc/passwd")
@example(name="..%2f..%2fetc%2fpasswd")
@example(name=".20261126T000000000000-abcdef12.eml.partial")
def test_no_outbox_url_gives_a_500_or_reaches_outside_the_outbox(
    client, settings, name
):
    settings.DEBUG = True
    response = client.get(f"/outbox/{quote(name, safe='')}/")
    assert response.status_code == 404
