"""The faster Postmark backend sends exactly what anymail's own would, and reads
Postmark's answers exactly as anymail does."""

import json
import ssl

import pytest
import requests
import trustme
from anymail.backends.postmark import EmailBackend as AnymailPostmark
from anymail.exceptions import (
    AnymailInvalidAddress,
    AnymailRequestsAPIError,
    AnymailSerializationError,
)
from anymail.message import AnymailMessage

from benchmarks.fake_esp import FakeESP, postmark_bulk_copy
from newsletter.delivery import provider_refused
from newsletter.delivery.postmark import EmailBackend, NotConnected
from newsletter.emails import Encoded, PostEmail
from newsletter.models import Subscriber

from .factories import PublishedPostFactory

TOKEN = {"server_token": "test-token"}


def batch_message(to: list[str]) -> AnymailMessage:
    message = AnymailMessage(
        subject="Inspection of probation services: Bristol",
        body='Text with "quotes", a tab\there and a pound sign: £5',
        from_email='"On Probation" <news@example.org>',
        reply_to=["Editor <editor@example.org>"],
        to=to,
    )
    message.attach_alternative('<p class="x">Caf\u00e9 <b>&amp;</b></p>', "text/html")
    message.metadata = {"batch": "7"}
    message.merge_metadata = {
        address: {"delivery": str(i)} for i, address in enumerate(to)
    }
    message.merge_headers = {
        address: {"List-Unsubscribe": f"<https://example.org/u/{i}/>"}
        for i, address in enumerate(to)
    }
    return message


def payloads(message):
    ours, theirs = EmailBackend(**TOKEN), AnymailPostmark(**TOKEN)
    return (
        ours.build_message_payload(message, ours.send_defaults),
        theirs.build_message_payload(message, theirs.send_defaults),
    )


@pytest.mark.parametrize(
    "to",
    [
        ["reader1@example.org", "reader.two+news@mail.example.co.uk"],
        ["Zoë Smith <zoe@example.org>", "reader@bücher.example", "ünï@example.org"],
        ["one@example.org"],
        ["UP@Example.ORG", "o'brien@example.org", "x_y%z@sub-domain.example.org"],
    ],
)
def test_the_request_is_anymails_to_the_byte(to):
    ours, theirs = payloads(batch_message(to))
    assert ours.get_api_endpoint() == theirs.get_api_endpoint()
    assert ours.serialize_data() == theirs.serialize_data().encode()


def test_a_single_message_is_anymails_too():
    message = AnymailMessage(from_email="news@example.org", to=["a@example.org"])
    message.extra_headers = {"List-Unsubscribe": "<https://example.org/u/1/>"}
    ours, theirs = payloads(message)
    assert ours.get_api_endpoint() == theirs.get_api_endpoint() == "email"
    assert ours.serialize_data() == theirs.serialize_data().encode()


def test_what_json_cannot_carry_is_anymails_serialization_error():
    message = batch_message(["a@example.org"])
    message.metadata = {"batch": object()}
    with pytest.raises(AnymailSerializationError):
        payloads(message)[0].serialize_data()


@pytest.mark.parametrize(
    "address",
    [
        "not an address",
        "two@a.org, three@b.org@",
        "a..b@example.org",
        ".a@example.org",
        "b.@example.org",
    ],
)
def test_a_bad_address_is_refused_as_anymail_refuses_it(address):
    with pytest.raises(AnymailInvalidAddress) as ours:
        payloads(batch_message([address]))[0]
    with pytest.raises(AnymailInvalidAddress) as theirs:
        AnymailPostmark(**TOKEN).build_message_payload(batch_message([address]), {})
    assert str(ours.value) == str(theirs.value)


def answer(body) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = json.dumps(body).encode()
    return response


def ok(to: str, message_id: str) -> dict:
    return {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "To": to}


TO = ["reader1@example.org", "Reader2@Example.org", "reader3@example.org"]


@pytest.mark.parametrize(
    "body",
    [
        [ok(TO[0], "id-1"), ok(TO[1], "id-2"), ok(TO[2], "id-3")],
        # one not answered for: "unknown"
        [ok(TO[0], "id-1"), ok(TO[2], "id-3")],
        # Postmark lower-cases addresses in some answers
        [ok(TO[0], "id-1"), ok(TO[1].lower(), "id-2"), ok(TO[2], "id-3")],
        # accepted, but one address is inactive
        [
            ok(TO[0], "id-1"),
            {
                "ErrorCode": 0,
                "Message": "Message OK, but will not deliver to these inactive"
                " addresses: reader2@example.org. Inactive recipients are ones"
                " that have generated a hard bounce or a spam complaint.",
                "MessageID": "id-2",
                "To": TO[1],
            },
            ok(TO[2], "id-3"),
        ],
        # accepted with a delay, and an invalid one
        [
            {**ok(TO[0], "id-1"), "Message": "Message accepted, but delivery may be"
             " delayed."},
            {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{TO[1]}'."},
            {"ErrorCode": 406, "Message": "You tried to send to a recipient that has"
             " been marked as inactive.\nFound inactive addresses: reader3@example.org"
             ".\nInactive recipients are ones that have generated a hard bounce or a"
             " spam complaint. "},
        ],
        # the same address answered twice
        [ok(TO[0], "id-1"), ok(TO[0], "id-9"), ok(TO[2], "id-3")],
    ],
)  # fmt: skip
def test_the_answer_is_read_as_anymail_reads_it(body):
    message = batch_message(TO)
    (ours, ours_payload), (theirs, theirs_payload) = (
        (backend, backend.build_message_payload(message, backend.send_defaults))
        for backend in (EmailBackend(**TOKEN), AnymailPostmark(**TOKEN))
    )
    read = ours.parse_recipient_status(answer(body), ours_payload, message)
    expected = theirs.parse_recipient_status(answer(body), theirs_payload, message)
    assert {k.lower(): (v.status, v.message_id) for k, v in read.items()} == {
        k.lower(): (v.status, v.message_id) for k, v in expected.items()
    }


def test_an_answer_that_is_not_postmarks_is_an_api_error():
    message = batch_message(TO)
    backend = EmailBackend(**TOKEN)
    payload = backend.build_message_payload(message, backend.send_defaults)
    with pytest.raises(AnymailRequestsAPIError):
        backend.parse_recipient_status(answer([{"What": "?"}]), payload, message)


PROXY_AND_CA_VARIABLES = [
    *("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"),
    *("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"),
]


@pytest.mark.parametrize(
    "environment",
    [
        {"HTTPS_PROXY": "http://proxy.example:3128"},
        {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "postmarkapp.com"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"},
        {},
    ],
)
def test_proxies_and_ca_bundle_from_the_environment_apply_as_requests_applies_them(
    monkeypatch, environment
):
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    backend = EmailBackend(**TOKEN)
    url = backend.api_url + "email/batch"
    ours = backend.create_session()
    settings = ours.merge_environment_settings(url, {}, None, None, None)
    expected = requests.Session().merge_environment_settings(url, {}, None, None, None)
    assert settings["proxies"] == expected["proxies"]
    assert settings["verify"] == expected["verify"]


@pytest.mark.django_db
def test_a_post_addressed_to_a_reader_goes_as_anymail_would_send_it():
    post = PublishedPostFactory(
        title="Sodexo & Nacro: “requires improvement”",
        body="## Findings\n\nCaseloads of 60\u201370; "
        'a "tab\there"; café, naïve, 𝛑.\n\n[The report](/reports/1/) \\ back\\slash',
    )
    reader = Subscriber.objects.create(email="reader@example.org")
    message = PostEmail(post).for_subscriber(reader)
    assert "/unsubscribe/" in message.body
    ours, theirs = payloads(message)
    assert ours.serialize_data() == theirs.serialize_data().encode()


def single_message(to: str) -> AnymailMessage:
    message = AnymailMessage(
        subject="Inspection", body="Text", from_email="news@example.org", to=[to]
    )
    message.extra_headers = {"List-Unsubscribe": "<https://example.org/u/1/>"}
    return message


def reader_message(to: str, i: int) -> AnymailMessage:
    """One reader's own message of a batch of distinct ones, as a digest is."""
    message = AnymailMessage(
        subject=f"Your digest: {i} posts, café",
        body=f'Dear reader {i}: "quotes", a tab\there, £5',
        from_email='"On Probation" <news@example.org>',
        reply_to=["Editor <editor@example.org>"],
        to=[to],
        headers={"Message-ID": f"<{i}@example.org>", "List-Id": "<posts.example>"},
    )
    message.attach_alternative(f"<p>Caf\u00e9 {i} <b>&amp;</b> 𝛑</p>", "text/html")
    message.metadata = {"batch": "7", "delivery": str(i)}
    return message


def test_a_message_through_the_bulk_api_reaches_its_reader_as_written(fake_esp):
    """Postmark's bulk API fills a message's subject and bodies in as templates:
    text with braces (a digest's post titles, a commenter's words) is sent so
    that Postmark fills it in to the text itself, whatever the engine reads
    there, and the message's own fields are still filled in."""
    written = "{{ a b }}, {{name}}, {{{raw}}}, {{#each x}}{{/each}}, {{!c}} and {{"
    message = AnymailMessage(
        subject=f"Digest: {written}",
        body=f"Text: {written} {{{{greeting}}}}",
        from_email="news@example.org",
        to=["reader@example.org"],
    )
    message.attach_alternative(f"<p>{written}</p>", "text/html")
    message.merge_global_data = {"greeting": "Hello"}
    EmailBackend(use_bulk_api=True).send_messages([message])
    (request,) = fake_esp.get_messages(limit=1)
    assert request["endpoint"].endswith("email/bulk")
    copy = postmark_bulk_copy(json.loads(request["request_body"]), "reader@example.org")
    assert copy == {
        "Subject": f"Digest: {written}",
        "TextBody": f"Text: {written} Hello",
        "HtmlBody": f"<p>{written}</p>",
    }


@pytest.mark.parametrize("bulk_api", [False, True])
def test_distinct_messages_go_in_one_call_each_as_anymail_builds_it(fake_esp, bulk_api):
    """/email/batch carries, for each message, what anymail would post to /email
    (also where posts go through Postmark's bulk API): those alike but for their
    reader's fields, and those that are not (a display name, a Cc, no headers),
    and each message's status is its own."""
    messages = [
        reader_message("reader0@example.org", 0),
        reader_message("reader.one+x@mail.example.co.uk", 1),
        reader_message("Zoë <zoe@example.org>", 2),
        reader_message("reader3@example.org", 3),
        reader_message("reader4@example.org", 4),
    ]
    messages[3].cc = ["desk@example.org"]
    messages[4].extra_headers = {}
    expected = []
    for message in messages:
        anymails = AnymailPostmark(**TOKEN)
        payload = anymails.build_message_payload(message, anymails.send_defaults)
        expected.append(json.loads(payload.serialize_data()))
    backend = EmailBackend(per_reader=False, use_bulk_api=bulk_api)
    assert backend.send_messages(messages) == 5
    (request,) = fake_esp.get_messages(limit=1)
    assert request["endpoint"].endswith("email/batch")
    assert json.loads(request["request_body"]) == expected
    ids = [
        next(iter(m.anymail_status.recipients.values())).message_id for m in messages
    ]
    assert [list(m.anymail_status.recipients) for m in messages] == [
        ["reader0@example.org"],
        ["reader.one+x@mail.example.co.uk"],
        ["zoe@example.org"],
        ["reader3@example.org"],
        ["reader4@example.org"],
    ]
    assert len(set(ids)) == 5 and None not in ids


@pytest.mark.parametrize(
    "make_message",
    [
        lambda: batch_message(["reader1@example.org", "Zoë <zoe@example.org>"]),
        lambda: single_message("reader@example.org"),
    ],
)
def test_the_provider_gets_anymails_very_request_and_its_answer_reads_alike(
    fake_esp, make_message
):
    sent = []
    for backend in (AnymailPostmark(), EmailBackend()):
        message = make_message()
        assert backend.send_messages([message]) == 1
        (request,) = fake_esp.get_messages(limit=1)
        headers = request["request_headers"]
        statuses = {
            address: status.status
            for address, status in message.anymail_status.recipients.items()
        }
        sent.append(
            (headers.pop("Accept-Encoding"), headers, request["request_body"], statuses)
        )
    # Ours asks for the answer uncompressed (it reads it without requests).
    assert [encoding for encoding, *_ in sent] == ["gzip, deflate", "identity"]
    assert sent[0][1:] == sent[1][1:]
    assert fake_esp.stats()["accepted_requests"] == 2


def test_a_proxy_from_the_environment_carries_the_request(
    fake_esp, monkeypatch, settings
):
    for name in [*PROXY_AND_CA_VARIABLES, "HTTP_PROXY", "http_proxy"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake_esp.url)  # the fake ESP plays the proxy
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "POSTMARK_API_URL": "http://postmark.invalid/",
    }
    assert EmailBackend().send_messages([single_message("reader@example.org")]) == 1
    assert fake_esp.recipients() == {"reader@example.org": 1}


def test_one_connection_carries_every_message_while_the_backend_is_open(fake_esp):
    with EmailBackend() as backend:
        for i in range(3):
            backend.send_messages([single_message(f"reader{i}@example.org")])
    assert fake_esp.count == 3
    assert fake_esp.stats()["connections"] == 1


def test_a_connection_the_provider_closed_while_idle_is_replaced_not_lost(fake_esp):
    with EmailBackend() as backend:
        backend.send_messages([single_message("reader1@example.org")])
        fake_esp.hang_up()
        # Written to the closed connection, this one would be lost unanswered.
        backend.send_messages([single_message("reader2@example.org")])
    assert fake_esp.recipients() == {"reader1@example.org": 1, "reader2@example.org": 1}
    assert fake_esp.stats()["connections"] == 2


def test_tls_to_the_provider_is_verified_and_an_unknown_authority_sends_nothing(
    settings, monkeypatch, tmp_path
):
    for name in PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    with FakeESP(tls=server) as esp:
        settings.ANYMAIL = esp.postmark_settings()
        assert settings.ANYMAIL["POSTMARK_API_URL"].startswith("https://")
        with pytest.raises(AnymailRequestsAPIError) as raised:
            EmailBackend().send_messages([single_message("reader1@example.org")])
        assert isinstance(raised.value.__cause__, NotConnected)
        assert provider_refused(raised.value)  # safe to retry: nothing went out
        bundle = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        assert EmailBackend().send_messages([single_message("reader2@example.org")])
        assert esp.recipients() == {"reader2@example.org": 1}


def merge_batch(to: list[str]) -> AnymailMessage:
    """A batch whose bodies carry each reader's own links as merge fields."""
    message = batch_message(to)
    message.body = "Leave: {{unsubscribe_url}}\nChoose: {{preferences_url}} £5"
    message.alternatives = []
    message.attach_alternative(
        '<a href="{{unsubscribe_url}}">Leave</a> <b>Caf\u00e9</b> {{other}}',
        "text/html",
    )
    message.merge_data = {
        address: {
            "unsubscribe_url": f"https://example.org/u/{i}:x/",
            "preferences_url": f'https://example.org/p/"{i}"/',
        }
        for i, address in enumerate(to)
    }
    return message


def as_anymail_sends_it_alone(batch: AnymailMessage, address: str) -> dict:
    """The request anymail's own backend makes for one reader's message."""
    message = AnymailMessage(
        subject=batch.subject,
        from_email=batch.from_email,
        reply_to=batch.reply_to,
        to=[address],
    )
    bodies = [batch.body, batch.alternatives[0][0]]
    for name, value in batch.merge_data[address].items():
        bodies = [body.replace("{{" + name + "}}", value) for body in bodies]
    message.body = bodies[0]
    message.attach_alternative(bodies[1], "text/html")
    message.extra_headers = {
        **batch.extra_headers,
        **batch.merge_headers.get(address, {}),
    }
    message.metadata = {**batch.metadata, **batch.merge_metadata.get(address, {})}
    backend = AnymailPostmark(**TOKEN)
    payload = backend.build_message_payload(message, backend.send_defaults)
    assert payload.get_api_endpoint() == "email"
    return json.loads(payload.serialize_data())


def test_merge_data_for_bodies_of_their_own_goes_as_each_readers_own_message(
    fake_esp,
):
    readers = ["reader1@example.org", "zoë@example.org", "UP@Example.ORG"]
    message = merge_batch(readers)
    assert EmailBackend().send_messages([message]) == 1
    requests_made = fake_esp.get_messages()
    assert [r["endpoint"] for r in requests_made] == ["email"] * 3
    for request, reader in zip(requests_made, readers, strict=True):
        assert json.loads(request["request_body"]) == as_anymail_sends_it_alone(
            message, reader
        )
    statuses = message.anymail_status.recipients
    assert [statuses[reader].status for reader in readers] == ["sent"] * 3
    assert len({statuses[reader].message_id for reader in readers}) == 3


@pytest.mark.parametrize("per_reader", [True, False])
def test_merge_data_is_filled_as_anymail_would_send_it_whatever_the_headers(
    fake_esp, per_reader
):
    """Headers of the message's own, merged with a reader's, and a reader with
    none or no metadata of their own: each reader's message is still the one
    anymail would send them alone."""
    readers = ["reader1@example.org", "zoë@example.org", "UP@Example.ORG"]
    message = merge_batch(readers)
    message.extra_headers = {"X-Campaign": "7", "List-Unsubscribe": "<mailto:x@y.z>"}
    del message.merge_headers[readers[1]]
    del message.merge_metadata[readers[2]]
    EmailBackend(per_reader=per_reader).send_messages([message])
    sent = [json.loads(r["request_body"]) for r in fake_esp.get_messages()]
    if not per_reader:
        [sent] = sent
    assert sent == [as_anymail_sends_it_alone(message, reader) for reader in readers]


def test_merge_data_filled_for_a_call_goes_in_one_batch_with_another_message(
    fake_esp,
):
    """Where each reader's message is not a request of its own, a call's
    messages go in one /email/batch: each reader of a message whose merge data
    this backend fills as their own message, and a message to one reader as
    itself; each reader's status is theirs."""
    readers = ["reader1@example.org", "zoë@example.org", "UP@Example.ORG"]
    merged = merge_batch(readers)
    # A value that carries its encoding goes in as carried.
    merged.merge_data[readers[1]]["other"] = Encoded.of(
        "<i>£</i>", '"<i>\\u00a3<\\/i>"'
    )
    alone = reader_message("alone@example.org", 7)
    assert EmailBackend(per_reader=False).send_messages([merged, alone]) == 2
    (request,) = fake_esp.get_messages()
    assert request["endpoint"].endswith("email/batch")
    expected = [as_anymail_sends_it_alone(merged, reader) for reader in readers]
    expected[1]["HtmlBody"] = expected[1]["HtmlBody"].replace("{{other}}", "<i>£</i>")
    anymails = AnymailPostmark(**TOKEN)
    payload = anymails.build_message_payload(alone, anymails.send_defaults)
    expected.append(json.loads(payload.serialize_data()))
    assert json.loads(request["request_body"]) == expected
    assert b"<i>\\u00a3<\\/i>" in request["request_body"]
    statuses = merged.anymail_status.recipients
    assert [statuses[reader].status for reader in readers] == ["sent"] * 3
    assert list(alone.anymail_status.recipients) == ["alone@example.org"]
    ids = [s.message_id for s in statuses.values()]
    ids.append(alone.anymail_status.recipients["alone@example.org"].message_id)
    assert len(set(ids)) == 4 and None not in ids


@pytest.mark.parametrize("fault", ["drop_after_accept_next", "fail_5xx_next"])
def test_one_message_each_stops_at_the_first_error_and_says_who_it_concerns(
    fake_esp, fault
):
    message = merge_batch(TO)
    fake_esp.set_faults(faults_after=1, **{fault: 1})
    with pytest.raises(AnymailRequestsAPIError):
        EmailBackend().send_messages([message])
    # Whether the one in flight was taken is for the sender to judge from the
    # error; the third was never sent.
    statuses = message.anymail_status.recipients
    assert {address: s.status for address, s in statuses.items()} == {
        TO[0]: "sent",
        TO[1]: "unknown",
    }
    assert fake_esp.stats()["requests"] == 2


def encoded_message(i: int, encode) -> AnymailMessage:
    """reader_message(…, i) with bodies that carry their encoding, by `encode`."""
    message = reader_message(f"reader{i}@example.org", i)
    message.body = Encoded.of(message.body, encode(message.body))
    [(html, mimetype)] = message.alternatives
    message.alternatives = [(Encoded.of(html, encode(html)), mimetype)]
    return message


def test_bodies_that_carry_their_encoding_go_in_as_carried_to_the_byte(fake_esp):
    """A digest's bodies carry their JSON encoding, joined from pieces encoded
    once (emails.Encoded): the request is the one their text alone would make."""
    EmailBackend(per_reader=False).send_messages(
        [reader_message(f"reader{i}@example.org", i) for i in range(3)]
    )
    EmailBackend(per_reader=False).send_messages(
        [encoded_message(i, json.dumps) for i in range(3)]
    )
    plain, carried = fake_esp.get_messages(limit=2)
    assert carried["request_body"] == plain["request_body"]
    assert b"Caf\\u00e9 0" in plain["request_body"]  # as anymail encodes it

    # What a body carries goes in, not an encoding of its text made again.
    slashed = [
        encoded_message(i, lambda text: json.dumps(text).replace("/", "\\/"))
        for i in range(3)
    ]
    EmailBackend(per_reader=False).send_messages(slashed)
    (request,) = fake_esp.get_messages(limit=1)
    assert b"<\\/p>" in request["request_body"]
    assert json.loads(request["request_body"]) == json.loads(plain["request_body"])
