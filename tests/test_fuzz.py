"""Property tests: whatever arrives at the subscribe form, a signed-link URL, the
preference centre, the admin CSV import, the ESP webhooks or the dev outbox, the
answer is never a 500, and what is refused changes nothing."""

import json
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.models import Consent, Event, Subscriber, Suppression
from newsletter.subscriptions import address_suppress
from newsletter.tokens import Purpose, make_token

from .factories import SubscriberFactory, UserFactory
from .test_webhooks import (
    MAILGUN_BACKEND,
    MAILGUN_KEY,
    POSTMARK_BACKEND,
    SECRET,
    basic_auth,
    mailgun_signature,
)

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
    for prefix in ("/subscribe/confirm/", "/unsubscribe/", "/comments/data/"):
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
# The token unchanged (every token's JSON starts "[", "W" in base64): it works.
@example(purpose=Purpose.CONFIRM, position=0, replacement="W")
@example(purpose=Purpose.UNSUBSCRIBE, position=0, replacement="W")
def test_a_valid_token_changed_in_any_one_character_stops_working(
    client, purpose, position, replacement
):
    # Each example starts clean: an unsubscribe in one example would otherwise put
    # the address on the suppression list for the next.
    with transaction.atomic():
        reader = SubscriberFactory(email="reader@example.org", status="pending")
        # A confirmation link names the consent it confirms.
        request = Consent.objects.create(
            subscriber=reader, wording="Email me each new post.", source="form"
        )
        detail = str(request.pk) if purpose == Purpose.CONFIRM else ""
        token = make_token(reader, purpose, detail=detail)
        position %= len(token)
        forged = token[:position] + replacement + token[position + 1 :]
        prefix = (
            "/subscribe/confirm/" if purpose == Purpose.CONFIRM else "/unsubscribe/"
        )
        response = client.post(f"{prefix}{quote(forged, safe='')}/")
        if forged == token:
            assert response.status_code == 200
            done = "subscribed" if purpose == Purpose.CONFIRM else "unsubscribed"
            assert f"You are {done}" in response.text
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


def every_row() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        sorted(Subscriber.objects.values_list("email", "status", "name", "paused_at")),
        sorted(Consent.objects.values_list("subscriber__email", "source")),
        sorted(Suppression.objects.values_list("address_hash", "reason")),
        Event.objects.count(),
    )


# Preference centre ---------------------------------------------------------------

READER_STATES = ["active", "paused", "pending", "unsubscribed", "complained"]


def reader_in(state: str) -> Subscriber:
    reader = SubscriberFactory(email="reader@example.org", name="Sam")
    if state == "paused":
        Subscriber.objects.filter(pk=reader.pk).update(paused_at="2026-11-01T00:00Z")
    elif state in ("pending", "unsubscribed"):
        Subscriber.objects.filter(pk=reader.pk).update(status=state)
    elif state == "complained":
        address_suppress(email=reader.email, reason=Suppression.Reason.COMPLAINT)
    reader.refresh_from_db()
    return reader


@pytest.mark.usefixtures("generous_limits")
@fuzz
@given(
    state=st.sampled_from(READER_STATES),
    page=st.sampled_from(["", "email/", "export/", "delete/"]),
    action=st.one_of(
        st.sampled_from(["pause", "resume", "unsubscribe", "resubscribe"]),
        hostile_text,
    ),
    new_email=hostile_text,
)
@example(state="active", page="email/", action="", new_email="new@example.org\r\n")
@example(state="active", page="email/", action="", new_email="reader@example.org")
@example(state="complained", page="", action="resubscribe", new_email="")
def test_no_preference_centre_input_gives_a_500_and_refused_input_changes_nothing(
    client, state, page, action, new_email
):
    # Each example starts from its own reader and is rolled back afterwards.
    with transaction.atomic():
        reader = reader_in(state)
        before = every_row()
        response = client.post(
            f"/preferences/{make_token(reader, Purpose.PREFERENCES)}/{page}",
            {"action": action, "new_email": new_email},
        )
        assert response.status_code in (200, 400, 409)
        if response.status_code != 200 or page in ("email/", "export/"):
            # Asking to change the address only sends a link; export only reads.
            assert every_row() == before
        transaction.set_rollback(True)


# Admin CSV import ----------------------------------------------------------------

csv_cell = st.one_of(
    st.sampled_from(
        [
            "",
            "a@example.org",
            "B@Example.org ",
            "Sam",
            "Conference sign-up sheet",
            "2026-10-01",
            "2999-01-01",
            "2026-02-30",
            '=HYPERLINK("http://evil.example")',
            "+1",
            "@SUM(A1)",
            '"quoted, with comma"',
            '"unterminated',
        ]
    ),
    hostile_text,
    # Larger than the csv module's field limit, and than any column allows.
    st.integers(min_value=100, max_value=200_000).map(lambda n: "x" * n),
)
csv_text = st.builds(
    lambda header, rows, newline: newline.join(
        [header] + [",".join(cells) for cells in rows]
    ),
    header=st.sampled_from(
        [
            "email,name,consent_source,consent_date",
            "Email, Name ,consent source,CONSENT_DATE",
            "email,name,consent_date",
            "",
            "name,email,consent_source,consent_date",
        ]
    ),
    rows=st.lists(st.lists(csv_cell, min_size=0, max_size=6), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
csv_bytes = st.one_of(
    st.builds(
        lambda text, bom: bom + text.encode("utf-8", "surrogatepass"),
        csv_text,
        st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]),
    ),
    csv_text.map(lambda text: text.encode("latin-1", "replace")),
    csv_text.map(lambda text: text.encode("utf-16")),
    st.binary(max_size=500),
)


@pytest.fixture
def author(client):
    client.force_login(UserFactory())
    return client


@fuzz
@given(data=csv_bytes, anyway=st.booleans())
@example(data=b"email,name,consent_source,consent_date\n\x00,a,b,c\n", anyway=False)
@example(
    data=b"email,name,consent_source,consent_date\na@example.org,\x80,Form,2026-10-01",
    anyway=True,
)
def test_no_csv_file_gives_a_500_and_one_bad_line_imports_nothing(author, data, anyway):
    with transaction.atomic():
        SubscriberFactory(email="a@example.org", status="pending")
        address_suppress(email="b@example.org", reason=Suppression.Reason.HARD_BOUNCE)
        before = every_row()
        upload = {"file": SimpleUploadedFile("list.csv", data, "text/csv")}
        if anyway:
            upload["import_despite_rejections"] = "on"
        response = author.post("/admin/newsletter/subscriber/import/", upload)
        assert response.status_code in (200, 400)
        report = response.context["report"]
        if report is None or not report.rows or (report.rejected and not anyway):
            assert every_row() == before
        transaction.set_rollback(True)


# Tracking webhooks ---------------------------------------------------------------

json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | hostile_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=20), children, max_size=4)
    ),
    max_leaves=12,
)
# The fields anymail reads, with values of any JSON type, so the generated events
# get past the first lookups into the parsing of each kind.
postmark_body = (
    st.fixed_dictionaries(
        {
            "RecordType": st.sampled_from(
                ["Delivery", "Bounce", "SpamComplaint", "SubscriptionChange", "Open"]
            )
            | json_value,
            "Type": st.sampled_from(["HardBounce", "SoftBounce", "SpamComplaint"])
            | json_value,
            "Recipient": json_value,
            "Email": json_value,
            "MessageID": json_value,
            "ID": json_value,
            "DeliveredAt": json_value,
            "BouncedAt": json_value,
            "ReceivedAt": json_value,
            "SuppressSending": json_value,
            "Metadata": json_value,
            "Tag": json_value,
        },
    )
    | json_value
)
mailgun_event_data = (
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(
                ["delivered", "failed", "complained", "unsubscribed", "opened"]
            )
            | json_value,
            "severity": st.sampled_from(["permanent", "temporary"]) | json_value,
            "reason": json_value,
            "recipient": json_value,
            "timestamp": json_value,
            "id": json_value,
            "message": json_value,
            "delivery-status": json_value,
            "user-variables": json_value,
            "tags": json_value,
        }
    )
    | json_value
)


@pytest.fixture
def webhook_secret(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": SECRET,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
    }


def mailgun_body(token: str, event_data) -> dict:
    return {"signature": mailgun_signature(token), "event-data": event_data}


@pytest.mark.usefixtures("webhook_secret")
@fuzz
@given(
    esp=st.sampled_from(["postmark", "mailgun"]),
    postmark=postmark_body,
    token=st.text(max_size=60),
    event_data=mailgun_event_data,
    authenticated=st.booleans(),
)
@example(
    esp="postmark",
    postmark={"RecordType": "Bounce", "Type": "HardBounce", "Email": None},
    token="",
    event_data=None,
    authenticated=True,
)
# Found by this test: anymail's Postmark parser raised on a body that is not an
# object, which was a 500.
@example(esp="postmark", postmark=None, token="", event_data=None, authenticated=True)
def test_no_webhook_body_gives_a_500_and_unauthenticated_ones_write_nothing(
    client, esp, postmark, token, event_data, authenticated
):
    with transaction.atomic():
        SubscriberFactory(email="reader@example.org")
        before = every_row()
        body = postmark if esp == "postmark" else mailgun_body(token, event_data)
        backend = POSTMARK_BACKEND if esp == "postmark" else MAILGUN_BACKEND
        with override_settings(EMAIL_BACKEND=backend):
            response = client.post(
                f"/anymail/{esp}/tracking/",
                data=json.dumps(body),
                content_type="application/json",
                **(basic_auth() if authenticated else basic_auth("anymail-hook:wrong")),
            )
        assert response.status_code in (200, 400)
        if not authenticated:
            assert response.status_code == 400
            assert every_row() == before
        transaction.set_rollback(True)


@fuzz
@given(
    year=st.integers(min_value=0, max_value=9999),
    month=st.integers(min_value=0, max_value=99),
)
@example(year=0, month=1)  # Found: Django's year lookup cannot date year 0, a 500
@example(year=9999, month=12)
@example(year=1, month=1)
def test_no_archive_month_gives_a_500(client, year, month):
    response = client.get(f"/archive/{year:04}/{month:02}/")
    # Nothing is published in any month here: a real month is looked up, and found
    # empty, a 404 as a month that does not exist.
    assert response.status_code == 404
