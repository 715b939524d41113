"""anymail's Postmark backend, made fit for sending a post to hundreds of readers
per call.

For a batch of 500, anymail's generic path costs more than all the rest of the
work together: it parses every address it is given, and every address Postmark
answers with, through Python's email header parser (~30 µs each), and it
JSON-encodes each of the 500 copies of the ~30 KB body. This backend skips the
parser for bare addresses (and remembers the few others: From, Reply-To), encodes
each body once, and posts through the standard library's http.client rather than
requests. Requests' per-call bookkeeping (settings merges, cookies, hooks) and
urllib3's beneath it cost more than everything else a one-message-per-reader send
does per message (measured: workers spend 30% less CPU per message, the fake ESP
15% less). Requests, errors and per-recipient statuses are anymail's own; anything
out of the ordinary (a proxy, anymail's request debugging) goes through anymail's
code unchanged.

Postmark fills each reader's fields into bodies only from a stored template. For a
batch whose bodies carry merge fields ({{NAME}}) and no template, this backend fills
them in itself and sends each reader their own message (/email): anymail builds the
batch's payload once, and each reader costs a splice and an HTTP exchange.

Several distinct messages (a digest batch: each reader's own posts) go in one call
to /email/batch through send_messages. anymail builds the first one's message as for
/email; the others differ from it only in their reader's own fields (To, Subject,
the bodies, headers, metadata), which are set into a copy of it: anymail's generic
per-message machinery cost more than assembling the digest itself. The list is
JSON-encoded once.
"""

import http.client
import json
import os
import re
import secrets
import select
import ssl
from collections.abc import Callable
from functools import cached_property, lru_cache, partial
from urllib.parse import urlsplit

import certifi
import requests
from anymail.backends.postmark import EmailBackend as AnymailPostmarkBackend
from anymail.backends.postmark import PostmarkPayload
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from anymail.message import AnymailRecipientStatus, AnymailStatus
from anymail.utils import EmailAddress, parse_address_list
from django.core.mail import EmailMessage
from requests.structures import CaseInsensitiveDict

from ..emails import Encoded

# An address with nothing to quote, decode or IDNA-encode: parsing it could only
# split it at its "@".
_BARE_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)

_ADDRESS_FIELDS = ("from_email", "to", "reply_to")

# Stand-ins for the bodies while anymail encodes the rest of a request: random, so
# no content contains them.
_MARKERS = {
    field: f"{field}-{secrets.token_hex(16)}" for field in ("HtmlBody", "TextBody")
}
_ENCODED_MARKERS = {field: json.dumps(m).encode() for field, m in _MARKERS.items()}
_ENCODED_MARKER = re.compile(b"|".join(map(re.escape, _ENCODED_MARKERS.values())))


@lru_cache(maxsize=64)
def _parsed(addresses: tuple[str, ...], field: str) -> tuple[EmailAddress, ...]:
    return tuple(parse_address_list(list(addresses), field=field))


def _addresses(value, field: str) -> list[EmailAddress]:
    """anymail's parse_address_list, in microseconds for bare addresses."""
    values = (value,) if isinstance(value, str) else tuple(map(str, value))
    if all(map(_BARE_ADDRESS.fullmatch, values)):
        return [
            EmailAddress(username=local, domain=domain)
            for local, _, domain in (v.rpartition("@") for v in values)
        ]
    return list(_parsed(values, field))


def _merged(defaults, headers) -> CaseInsensitiveDict:
    """Header defaults overridden by a request's own, as requests merges them."""
    merged = CaseInsensitiveDict(defaults)
    merged.update(headers)
    return merged


class Payload(PostmarkPayload):
    base_message_attrs = tuple(
        (attr, combiner, partial(_addresses, field=attr))
        if attr in _ADDRESS_FIELDS
        else (attr, combiner, convert)
        for attr, combiner, convert in PostmarkPayload.base_message_attrs
    )

    # The reader whose own message is being sent, where this backend sends each
    # reader their own (see fills_merge_fields); None for the whole payload.
    reader: EmailAddress | None = None
    # Each reader's status as their own message was answered, by address.
    statuses: dict[str, AnymailRecipientStatus] | None = None

    def fills_merge_fields(self) -> bool:
        """True when this backend, not Postmark, fills in the merge data: a batch
        with merge data for bodies of its own, where Postmark would refuse it."""
        return bool(self.merge_data) and not (
            self.backend.use_bulk_api
            or "TemplateAlias" in self.data
            or "TemplateId" in self.data
        )

    def get_api_endpoint(self):
        return "email" if self.fills_merge_fields() else super().get_api_endpoint()

    def serialize_data(self) -> bytes:
        """anymail's request body, byte for byte, with each body encoded once
        however many copies the batch holds: they go in as markers and come out
        as the encoded body, in one pass that writes the (~15 MB) result once. For
        one reader's own message, anymail's part of the batch for them, with
        their merge data filled into the encoded bodies.

        (orjson would encode faster, but only to raw UTF-8, which takes a JSON
        parser ~60% longer to read than anymail's ASCII escapes.)"""
        encoded = dict(self._encoded_bodies)
        if self.reader is None:
            data = self.data
        else:
            data = self.data_for_recipient(self.reader)
            data.pop("TemplateModel", None)  # Postmark takes it only with a template
            personal = self.merge_data.get(self.reader.addr_spec, {})
            for field, body in encoded.items():
                for name, value in personal.items():
                    merge_field = "{{" + name + "}}"
                    body = body.replace(merge_field, json.dumps(str(value))[1:-1])
                encoded[field] = body
        bodies = {field: data[field] for field in encoded}
        data.update({field: _MARKERS[field] for field in encoded})
        try:
            if self.reader is None:
                skeleton = super().serialize_data().encode()
            else:
                skeleton = self.serialize_json(data).encode()
        finally:
            data.update(bodies)
        by_marker = {_ENCODED_MARKERS[f]: body.encode() for f, body in encoded.items()}
        return _ENCODED_MARKER.sub(lambda found: by_marker[found[0]], skeleton)

    @cached_property
    def _encoded_bodies(self) -> dict[str, str]:
        """The message's bodies by field, JSON-encoded once per payload."""
        return {
            field: body.json if isinstance(body, Encoded) else self.serialize_json(body)
            for field, body in self.data.items()
            if field in _MARKERS
        }


class Messages:
    """Distinct messages, each to its one reader, posted together to /email/batch:
    Postmark's /email message of each (anymail's `data` for it, or a copy of the
    first's with the reader's own fields, see `reader_fields`), encoded once."""

    def __init__(self, first: Payload, messages: list[dict]) -> None:
        self.first = first
        self.messages = messages

    def get_request_params(self, api_url: str) -> dict:
        params = self.first.get_request_params(api_url)
        params["url"] = api_url + "email/batch"
        params["data"] = self.serialize_data()
        return params

    def serialize_data(self) -> bytes:
        """The messages as anymail would encode them, byte for byte; a body that
        carries its encoding (emails.Encoded: a digest's) is put in as it is,
        where a marker stood while the rest was encoded."""
        skeletons, encoded = [], []
        for data in self.messages:
            bodies = {
                field: _MARKERS[field]
                for field, body in data.items()
                if field in _MARKERS and isinstance(body, Encoded)
            }
            encoded.extend(data[field].json.encode() for field in bodies)
            skeletons.append({**data, **bodies} if bodies else data)
        skeleton = self.first.serialize_json(skeletons).encode()
        if not encoded:
            return skeleton
        bodies_in_order = iter(encoded)
        return _ENCODED_MARKER.sub(lambda _: next(bodies_in_order), skeleton)


# The attributes in which one reader's message of a batch differs from another's;
# anymail builds the rest of each from attributes that are the same for all.
_READERS_OWN = frozenset(
    ("to", "subject", "body", "alternatives", "extra_headers", "metadata")
)
# Attributes of a message that anymail does not read.
_NOT_READ = frozenset(("connection", "anymail_status"))
# Headers anymail takes for fields rather than passing on.
_FIELD_HEADERS = frozenset(("from", "reply-to", "to"))


def _plain(message) -> bool:
    """A message whose fields anymail would set only from its attributes: to one
    bare address, a text body and one HTML alternative, headers none of which
    anymail takes for a field."""
    return (
        len(message.to) == 1
        and _BARE_ADDRESS.fullmatch(message.to[0]) is not None
        and message.content_subtype == "plain"
        and [mimetype for _, mimetype in message.alternatives] == ["text/html"]
        and _FIELD_HEADERS.isdisjoint(map(str.lower, message.extra_headers))
    )


def reader_fields(first: Payload) -> Callable[[EmailMessage], dict | None]:
    """For the batch whose first message's payload is `first`: a function giving
    another message's Postmark /email message as anymail would build it, a copy
    of the first's with the reader's own fields set. It gives None unless both
    messages are plain and alike in everything else, and nothing from the
    backend's defaults is merged into those fields. The first's side of these
    checks is made once, not per message."""
    other = first.message
    theirs = vars(other)
    shared = theirs.keys() - _READERS_OWN - _NOT_READ
    defaults = first.defaults
    usable = (
        _plain(other)
        and "extra_headers" not in defaults
        and "metadata" not in defaults
        and not first.backend.generate_message_id
    )
    # The first's message but for its headers, which go last (as anymail puts
    # them) when the reader's message has any.
    common = {name: value for name, value in first.data.items() if name != "Headers"}

    def fields(message: EmailMessage) -> dict | None:
        own = vars(message)
        if not (
            usable
            and type(message) is type(other)
            and own.keys() == theirs.keys()
            and all(own[name] == theirs[name] for name in shared)
            and _plain(message)
        ):
            return None
        data = dict(common)
        data["To"] = message.to[0]
        data["Subject"] = str(message.subject)
        data["TextBody"] = _text(message.body)
        data["HtmlBody"] = _text(message.alternatives[0][0])
        if message.extra_headers:
            data["Headers"] = [
                {"Name": name, "Value": value}
                for name, value in message.extra_headers.items()
            ]
        if "metadata" in own:
            data["Metadata"] = dict(message.metadata)
        return data

    return fields


def _text(value) -> str:
    """The value as a str; a str (an Encoded body among them) as it is."""
    return value if isinstance(value, str) else str(value)


# Postmark's per-message error codes that mean the address, not the message, was
# refused, as anymail reads them for /email.
_REFUSED_ADDRESS = {406: "rejected", 300: "invalid"}


class NotConnected(ConnectionError):
    """No connection to Postmark could be made: nothing was sent."""


class EmailBackend(AnymailPostmarkBackend):
    # The kept-alive connection to Postmark while open; None where requests is needed.
    http_connection: http.client.HTTPConnection | None = None

    def open(self):
        opened = super().open()
        if opened and self.session is not None:
            connect, self.read_timeout = (
                self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
            )
            self.http_connection = self._direct_connection(self.session, connect)
            self.http_netloc = urlsplit(self.api_url).netloc
            # Answers as they are: a compressed one would need decoding here.
            self.http_headers = {
                name: value
                for name, value in self.session.headers.items()
                if name.lower() != "accept-encoding"
            }
        return opened

    def close(self):
        try:
            super().close()
        finally:
            if self.http_connection is not None:
                self.http_connection.close()
                self.http_connection = None

    def _direct_connection(
        self, session: requests.Session, timeout: float
    ) -> http.client.HTTPConnection | None:
        """A connection with the session's TLS verification, opened on first use
        within `timeout` seconds; or None when requests has more to do (a proxy,
        or anymail's request debugging)."""
        if session.proxies or self.debug_api_requests:
            return None
        url = urlsplit(self.api_url)
        if url.scheme != "https":
            return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        bundle = certifi.where() if session.verify is True else session.verify
        where = "capath" if os.path.isdir(bundle) else "cafile"
        return http.client.HTTPSConnection(
            url.hostname,
            url.port,
            timeout=timeout,
            context=ssl.create_default_context(**{where: bundle}),
        )

    def _connected(self) -> http.client.HTTPConnection:
        """The open connection, or a new one when there is none or Postmark has
        closed the idle one since its last answer (a request sent on it would be
        lost, and its loss could not be told from an answer lost after Postmark
        accepted it). Raises NotConnected when no connection can be made."""
        connection = self.http_connection
        if connection.sock is not None:
            poll = select.poll()
            poll.register(connection.sock, select.POLLIN)
            if poll.poll(0):  # end of stream, or bytes nobody asked for
                connection.close()
        if connection.sock is None:
            try:
                connection.connect()  # with the TLS handshake, if any
            except OSError as err:
                connection.close()
                raise NotConnected(f"cannot connect to {connection.host}") from err
            connection.sock.settimeout(self.read_timeout)
        return connection

    def post_to_esp(self, payload, message):
        """anymail's post; or, where this backend fills in the merge data, one
        post per reader, stopping at the first error. The readers answered before
        it, and the one it concerns ("unknown"), are then in the message's
        anymail_status: the others were not sent."""
        if not payload.fills_merge_fields():
            return self._post(payload, message)
        payload.statuses = {}
        unknown = AnymailRecipientStatus(message_id=None, status="unknown")
        for reader in payload.to_emails:
            payload.reader = reader
            try:
                response = self._post(payload, message)
                answer = self.parse_recipient_status(response, payload, message)
            except Exception:
                payload.statuses[reader.addr_spec] = unknown
                message.anymail_status.set_recipient_status(payload.statuses)
                raise
            finally:
                payload.reader = None
            payload.statuses[reader.addr_spec] = answer[reader.addr_spec]
        return response

    def send_messages(self, email_messages):
        """Two or more messages in one call to /email/batch (at most 500, which
        the sender's batch size keeps to). Each message's anymail_status holds
        Postmark's answer for it: "sent", or the reason it was refused. An error
        posting raises, with no message answered; an answer that does not match
        the messages raises AnymailError: Postmark may have taken them."""
        if len(email_messages) < 2:
            return super().send_messages(email_messages)
        created = self.open()
        try:
            for message in email_messages:
                message.anymail_status = AnymailStatus()
            first = self.build_message_payload(email_messages[0], self.send_defaults)
            messages = [first.data]
            readers = [[to.addr_spec for to in first.to_emails]]
            like_first = reader_fields(first)
            for message in email_messages[1:]:
                data = like_first(message)
                if data is None:
                    payload = self.build_message_payload(message, self.send_defaults)
                    data = payload.data
                    readers.append([to.addr_spec for to in payload.to_emails])
                else:
                    readers.append(message.to)
                messages.append(data)
            response = self._post(Messages(first, messages), email_messages[0])
            try:
                answers = response.json()
                assert isinstance(answers, list) and len(answers) == len(messages)
            except (ValueError, AssertionError) as err:
                raise AnymailError(
                    f"Postmark's answer to {len(messages)} messages: "
                    f"{response.text[:200]!r}"
                ) from err
            for message, addresses, answer in zip(
                email_messages, readers, answers, strict=True
            ):
                message.anymail_status.esp_response = response
                message.anymail_status.set_recipient_status(
                    self._answer_status(addresses, answer)
                )
        finally:
            if created:
                self.close()
        return len(email_messages)

    @staticmethod
    def _answer_status(
        addresses: list[str], answer
    ) -> dict[str, AnymailRecipientStatus]:
        code = answer.get("ErrorCode") if isinstance(answer, dict) else None
        if code == 0 and answer.get("MessageID"):
            status = AnymailRecipientStatus(answer["MessageID"], "sent")
        else:  # refused: the address, or the message itself
            status = AnymailRecipientStatus(None, _REFUSED_ADDRESS.get(code, "failed"))
        return dict.fromkeys(addresses, status)

    def _post(self, payload, message):
        """One post through http.client: anymail's request, and an answer that
        is a requests.Response as anymail expects. An error on the way is raised
        as anymail's AnymailRequestsAPIError, from the error itself (or from
        NotConnected when nothing was sent)."""
        params = payload.get_request_params(self.api_url)
        extras = [name for name in ("params", "files", "auth") if params.get(name)]
        url = urlsplit(params["url"])
        if (
            self.http_connection is None
            or extras
            or (url.netloc, url.query) != (self.http_netloc, "")
        ):
            return super().post_to_esp(payload, message)
        try:
            connection = self._connected()
            connection.request(
                params["method"],
                url.path,
                body=params["data"],
                headers=_merged(self.http_headers, params["headers"]),
            )
            answer = connection.getresponse()
            content = answer.read()
        except (OSError, http.client.HTTPException) as err:
            self.http_connection.close()
            raise AnymailRequestsAPIError(
                f"Error posting to {params['url']}:",
                email_message=message,
                payload=payload,
            ) from err
        response = requests.Response()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = CaseInsensitiveDict(answer.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.url = params["url"]
        response._content = content
        self.raise_for_status(response, payload, message)
        return response

    def create_session(self):
        """anymail's session, with the proxy and CA bundle settings read from the
        environment once per connection instead of on every request (requests
        scans the whole environment each time: a quarter of a single message's
        cost)."""
        session = super().create_session()
        session.proxies = requests.utils.get_environ_proxies(self.api_url)
        session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or True
        )
        session.trust_env = False
        return session

    def build_message_payload(self, message, defaults):
        return Payload(message, defaults, self)

    def parse_recipient_status(self, response, payload, message):
        """Every message accepted as it was addressed: each To "sent" with its
        MessageID, without parsing the addresses again. Otherwise anymail's own
        reading of Postmark's answer. Where each reader had their own message,
        their answers as they came (post_to_esp)."""
        if payload.statuses is not None and payload.reader is None:
            return payload.statuses
        answers = self.deserialize_json_response(response, payload, message)
        answers = answers if isinstance(answers, list) else [answers]
        readers = payload.to_emails if payload.reader is None else [payload.reader]
        status = {to.addr_spec: None for to in readers}
        for answer in answers:
            if not (
                isinstance(answer, dict)
                and answer.get("ErrorCode", 0) == 0
                and answer.get("Message") == "OK"
                and answer.get("MessageID")
                and status.get(answer.get("To"), "") is None
            ):
                return super().parse_recipient_status(response, payload, message)
            status[answer["To"]] = AnymailRecipientStatus(
                message_id=answer["MessageID"], status="sent"
            )
        if payload.cc_and_bcc_emails or None in status.values():
            return super().parse_recipient_status(response, payload, message)
        return status
