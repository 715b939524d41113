"""anymail's Postmark backend, made fit for sending a post to hundreds of readers
per call.

For a batch of 500, anymail's generic path costs more than all the rest of the
work together: it parses every address it is given, and every address Postmark
answers with, through Python's email header parser, and it
JSON-encodes each of the 500 copies of the ~30 KB body. This backend skips the
parser for bare addresses (and remembers the few others: From, Reply-To), encodes
each body once, and posts through the standard library's http.client rather than
requests. Requests' per-call bookkeeping (settings merges, cookies, hooks) and
urllib3's beneath it cost more than everything else a one-message-per-reader send
does per message (docs/performance.md). Requests, errors and per-recipient
statuses are anymail's own; anything out of the ordinary (a proxy, anymail's
request debugging) goes through anymail's code unchanged.

Postmark fills each reader's fields into bodies only from a stored template.
For a message whose bodies carry merge fields ({{NAME}}) and no template, this
backend fills them in itself: anymail builds the payload once, its bodies are
encoded once and cut at their merge fields, and each reader's message is those
pieces with their values between. Each reader's message is then a request of its
own (/email, `per_reader`, one-message mode), or every reader of a call goes in
one request to /email/batch, several messages' readers together (a post's batch:
one message with each reader's links as merge data; a digest batch: one message
for each number of posts and day its readers hold).
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
from json.encoder import encode_basestring_ascii
from urllib.parse import urlsplit

import certifi
import requests
from anymail.backends.postmark import EmailBackend as AnymailPostmarkBackend
from anymail.backends.postmark import PostmarkPayload
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from anymail.message import AnymailRecipientStatus, AnymailStatus
from anymail.utils import EmailAddress, force_non_lazy_dict, parse_address_list
from requests.structures import CaseInsensitiveDict

from ..emails import Encoded, filled, json_inner

# An address with nothing to quote, decode or IDNA-encode: parsing it could only
# split it at its "@".
_BARE_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)

_ADDRESS_FIELDS = ("from_email", "to", "reply_to")

_BODIES = ("HtmlBody", "TextBody")
# Stand-ins for fields while anymail encodes the rest of a request: the bodies (put
# in encoded once, however many copies), and what is a reader's own in a message
# encoded once for all its readers (Payload._reader_cut). Random, so no content
# contains them.
_MARKERS = {
    field: f"{field}-{secrets.token_hex(16)}"
    for field in ("To", "Metadata", "Headers", *_BODIES)
}
_MARKED = {json.dumps(marker): field for field, marker in _MARKERS.items()}
_MARKER = re.compile("(" + "|".join(map(re.escape, _MARKED)) + ")")
# A reader's own fields in a cut of their message, by keys no merge field has.
_OWN = {field: ("own", field) for field in ("To", "Metadata", "Headers")}
# Postmark's bulk API reads a message's Subject and bodies as Mustachio templates,
# where any "{{" opens a field (up to the next "}}"), filled with the reader's value
# or with nothing, or refused for a name it cannot read. Every "{{" of the text (a
# post's title and body, a commenter's words), bar the message's own merge fields,
# goes as this field, whose value is "{{": Mustachio puts a value in as it is
# (HTML-escaping leaves braces alone), never reading it as a template.
_OPEN_BRACES = "open_braces"


@lru_cache(maxsize=64)
def _parsed(addresses: tuple[str, ...], field: str) -> tuple[EmailAddress, ...]:
    return tuple(parse_address_list(list(addresses), field=field))


class _Bare(EmailAddress):
    """A bare address, which is its own addr_spec and formatted address: the
    email package's header registry, which would compute them, costs
    microseconds per reader each time they are read."""

    def __init__(self, address: str) -> None:
        local, _, domain = address.rpartition("@")
        super().__init__(username=local, domain=domain)
        self.__dict__["address"] = self._addr_spec = address  # a cached_property

    @property
    def addr_spec(self) -> str:
        return self._addr_spec

    def format(self, **_) -> str:
        """Formatted however asked: no display name to encode, and the domain
        is ASCII already."""
        return self._addr_spec


def _addresses(value, field: str) -> list[EmailAddress]:
    """anymail's parse_address_list, in microseconds for bare addresses."""
    values = (value,) if isinstance(value, str) else tuple(map(str, value))
    if all(map(_BARE_ADDRESS.fullmatch, values)):
        return [_Bare(v) for v in values]
    return list(_parsed(values, field))


def _non_lazy_dict(value):
    """anymail's force_non_lazy_dict, without raising and catching an exception
    for each text value: a batch's merge data holds thousands."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {key: _non_lazy_dict(item) for key, item in value.items()}
    return force_non_lazy_dict(value)


def _json_headers(headers: dict[str, str]) -> str:
    """Postmark's Headers for `headers`, as anymail's json.dumps encodes them, in
    a third of dumps' time: each reader's five, the largest part of their message
    encoded per reader."""
    encoded = [
        f'{{"Name": {encode_basestring_ascii(name)}, '
        f'"Value": {encode_basestring_ascii(value)}}}'
        for name, value in headers.items()
    ]
    return "[" + ", ".join(encoded) + "]"


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
    anymail_message_attrs = tuple(
        (attr, combiner, _non_lazy_dict if convert is force_non_lazy_dict else convert)
        for attr, combiner, convert in PostmarkPayload.anymail_message_attrs
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

    def is_one_message(self) -> bool:
        """One message, to go as it is (no merge data or template): what
        anymail would post to /email, bar Postmark's bulk API."""
        return not (
            self.is_batch() or "TemplateAlias" in self.data or "TemplateId" in self.data
        )

    def one_message(self) -> bytes:
        """The payload as Postmark's /email message (see is_one_message)."""
        return self._spliced(self.data, self._encoded_bodies).encode()

    def serialize_data(self) -> bytes:
        """anymail's request body, byte for byte, with each body encoded once
        however many copies the batch holds: they go in as markers and come out
        as the encoded body, in one pass that writes the result once. For
        one reader's own message (see fills_merge_fields), reader_message.

        (orjson would encode faster, but only to raw UTF-8, which takes a JSON
        parser longer to read than anymail's ASCII escapes.)"""
        if self.reader is not None:
            return b"".join(self.reader_message(self.reader))
        if self.get_api_endpoint() == "email/bulk":
            self._braces_kept()
        return self._spliced(self.data, self._encoded_bodies, whole=True).encode()

    def _braces_kept(self) -> None:
        """The Subject and bodies as templates that Mustachio fills in to the text
        as written, the message's merge fields filled in (see _OPEN_BRACES)."""
        fields = [*self._merge_fields, *self.data.get("TemplateModel", {})]
        literal = re.compile(
            r"\{\{(?!(?:"
            + "|".join(map(re.escape, [_OPEN_BRACES, *fields]))
            + r")\}\})"
        )
        kept = False
        for field in ("Subject", *_BODIES):
            text, found = literal.subn(
                "{{" + _OPEN_BRACES + "}}", self.data.get(field, "")
            )
            if found:  # else as it was (a body that carries its encoding, Encoded)
                self.data[field], kept = text, True
        if kept:
            self.data["TemplateModel"] = {
                **self.data.get("TemplateModel", {}),
                _OPEN_BRACES: "{{",
            }

    def reader_message(self, reader: EmailAddress) -> list[bytes]:
        """Postmark's /email message for one reader of a payload whose merge
        data this backend fills: anymail's part of the batch for them, with
        their merge data filled into the encoded bodies (a field they have no
        value for stays as it is). As pieces, to be joined with the call's
        other readers' once: a post's ~40 KB message for each of 500 readers
        is otherwise copied three times more, each body, the message, its
        bytes (and the system time of allocating them was more than the rest
        of the work of a reader)."""
        address = reader.addr_spec
        values = self._merge_fields | {
            name: json_inner(value if isinstance(value, str) else str(value))
            for name, value in self.merge_data.get(address, {}).items()
        }
        if self._reader_cut is None:
            data = self.data_for_recipient(reader)
            data.pop("TemplateModel", None)  # Postmark takes it only with a template
            bodies = {
                field: filled(cut, values) for field, cut in self._merge_cuts.items()
            }
            return [self._spliced(data, bodies).encode()]
        values[_OWN["To"]] = encode_basestring_ascii(reader.address)
        values[_OWN["Metadata"]] = json.dumps(
            {**self.data.get("Metadata", {}), **self.merge_metadata[address]}
        )
        values[_OWN["Headers"]] = _json_headers(self.merge_headers[address])
        pieces = self._reader_cut.copy()
        pieces[1::2] = [values[name].encode() for name in pieces[1::2]]
        return pieces

    def _spliced(self, data: dict, encoded: dict[str, str], *, whole=False) -> str:
        """`data` encoded as anymail encodes it, its bodies put in as `encoded`
        where markers stood while the rest was encoded."""
        bodies = {field: data[field] for field in encoded}
        data.update({field: _MARKERS[field] for field in encoded})
        try:
            skeleton = super().serialize_data() if whole else self.serialize_json(data)
        finally:
            data.update(bodies)
        return _MARKER.sub(lambda found: encoded[_MARKED[found[0]]], skeleton)

    @cached_property
    def _reader_cut(self) -> list | None:
        """Any reader's message, encoded once (to bytes) and cut where it is
        theirs: the odd pieces name their fields (_OWN: To, Metadata, Headers)
        and the merge fields of the bodies, spliced in cut at them. Where every
        reader has headers and metadata of their own and the message none to
        merge theirs into; None otherwise."""
        if "Headers" in self.data or not all(
            to.addr_spec in (self.merge_metadata or {})
            and to.addr_spec in self.merge_headers
            for to in self.to_emails
        ):
            return None
        own = ("To", "Metadata", "Headers", *self._encoded_bodies)
        data = {**self.data, **{field: _MARKERS[field] for field in own}}
        data.pop("TemplateModel", None)
        first, *rest = _MARKER.split(self.serialize_json(data))
        pieces = [first]
        for marker, text in zip(rest[::2], rest[1::2], strict=True):
            field = _MARKED[marker]
            if field in _OWN:
                pieces += [_OWN[field], text]
            else:  # a body: its text and merge fields in line with the rest
                cut = self._merge_cuts[field]
                pieces[-1] += cut[0]
                pieces += cut[1:]
                pieces[-1] += text
        pieces[::2] = [piece.encode() for piece in pieces[::2]]
        return pieces

    @cached_property
    def _merge_fields(self) -> dict[str, str]:
        """Each merge field of the payload's merge data, by name, as it is."""
        merge_data = self.merge_data or {}
        names = {name for personal in merge_data.values() for name in personal}
        return {name: "{{" + name + "}}" for name in sorted(names)}

    @cached_property
    def _merge_cuts(self) -> dict[str, list[str]]:
        """The encoded bodies cut at their merge fields (the odd pieces, by name),
        once per payload: a reader's bodies are then one join each."""
        if not self._merge_fields:
            return {field: [body] for field, body in self._encoded_bodies.items()}
        merge_field = re.compile(
            r"\{\{(" + "|".join(map(re.escape, self._merge_fields)) + r")\}\}"
        )
        return {
            field: merge_field.split(body)
            for field, body in self._encoded_bodies.items()
        }

    @cached_property
    def _encoded_bodies(self) -> dict[str, str]:
        """The message's bodies by field, JSON-encoded once per payload."""
        return {
            field: body.json if isinstance(body, Encoded) else self.serialize_json(body)
            for field, body in self.data.items()
            if field in _BODIES
        }


class Messages:
    """Readers' messages, encoded each (Payload.reader_message's pieces, or a
    message of its own to one reader), posted together to /email/batch."""

    def __init__(self, first: Payload, messages: list[list[bytes]]) -> None:
        self.first = first
        self.messages = messages

    def get_request_params(self, api_url: str) -> dict:
        params = self.first.get_request_params(api_url)
        params["url"] = api_url + "email/batch"
        pieces = []
        for message in self.messages:
            pieces.append(b",")
            pieces += message
        pieces[0] = b"["
        pieces.append(b"]")
        params["data"] = b"".join(pieces)
        return params


# Postmark's per-message error codes that mean the address, not the message, was
# refused, as anymail reads them for /email: an inactive address (406), and an
# invalid request (300) that names a recipient's field (any other 300, an invalid
# From or metadata, is the message's).
_INACTIVE = 406
_INVALID_REQUEST = 300
_INVALID_ADDRESS = re.compile(r"(Invalid|Error\s+parsing)\s+'(To|Cc|Bcc)'", re.I)
# A reader whose answer cannot be read, or whose message was refused (not sent).
_UNKNOWN = AnymailRecipientStatus(None, "unknown")


class NotConnected(ConnectionError):
    """No connection to Postmark could be made: nothing was sent."""


class EmailBackend(AnymailPostmarkBackend):
    # The kept-alive connection to Postmark while open; None where requests is needed.
    http_connection: http.client.HTTPConnection | None = None
    # Called before each reader's own request (one-message mode), where a call's
    # readers may take minutes: the sender renews its claim on the batch there,
    # and stops once the author has paused or cancelled. What it raises stops the
    # call before that reader's request: they were not handed over.
    before_each_reader: Callable[[], None] | None = None

    def __init__(self, *, per_reader: bool = True, **kwargs) -> None:
        """`per_reader`: where this backend fills in merge data, each reader's
        message is a request of its own (/email); otherwise a call's readers go
        together to /email/batch (see send_messages)."""
        super().__init__(**kwargs)
        self.per_reader = per_reader

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
        """anymail's post; or, where this backend fills in the merge data and
        each reader's message is a request of its own, one post per reader,
        stopping at the first error. The readers answered before it, and the one
        it concerns ("unknown"), are then in the message's anymail_status: the
        others were not sent."""
        if not payload.fills_merge_fields():
            return self._post(payload, message)
        payload.statuses = {}
        unknown = AnymailRecipientStatus(message_id=None, status="unknown")
        for reader in payload.to_emails:
            if self.before_each_reader is not None:
                try:
                    self.before_each_reader()
                except Exception:
                    message.anymail_status.set_recipient_status(payload.statuses)
                    raise
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
        """Unless each reader's message is a request of its own (`per_reader`):
        the messages in one call to /email/batch (at most 500 readers, which the
        sender's batch size keeps to), each as its own /email message or, where
        this backend fills in its merge data, as each reader's own. Each message's
        anymail_status holds Postmark's answer for each of its readers: "sent",
        or the reason their address was refused. An error posting raises, with no
        reader answered; an answer that does not match the readers raises
        AnymailError: Postmark may have taken them; messages Postmark refused
        (not their addresses) raise anymail's API error, the others answered.
        Anything else is anymail's own sending."""
        if self.per_reader or not email_messages:
            return super().send_messages(email_messages)
        created = self.open()
        try:
            payloads = [
                self.build_message_payload(message, self.send_defaults)
                for message in email_messages
            ]
            if not all(p.fills_merge_fields() or p.is_one_message() for p in payloads):
                return super().send_messages(email_messages)
            # Each entry of the batch, and the message and addresses it answers for.
            entries, readers = [], []
            for message, payload in zip(email_messages, payloads, strict=True):
                message.anymail_status = AnymailStatus()
                if payload.fills_merge_fields():
                    for reader in payload.to_emails:
                        entries.append(payload.reader_message(reader))
                        readers.append((message, [reader.addr_spec]))
                else:
                    entries.append([payload.one_message()])
                    readers.append(
                        (message, [to.addr_spec for to in payload.to_emails])
                    )
            response = self._post(Messages(payloads[0], entries), email_messages[0])
            try:
                answers = response.json()
                assert isinstance(answers, list) and len(answers) == len(entries)
            except (ValueError, AssertionError) as err:
                raise AnymailError(
                    f"Postmark's answer to {len(entries)} messages: "
                    f"{response.text[:200]!r}"
                ) from err
            statuses = {id(message): {} for message in email_messages}
            refused, unreadable = False, False
            for (message, addresses), answer in zip(readers, answers, strict=True):
                status = self._answer_status(answer)
                refused |= status is None
                unreadable |= status is not None and status.status == "unknown"
                statuses[id(message)].update(
                    dict.fromkeys(addresses, status or _UNKNOWN)
                )
            for message in email_messages:
                message.anymail_status.esp_response = response
                message.anymail_status.set_recipient_status(statuses[id(message)])
            if refused and not unreadable:
                # Postmark refused messages for the sender's fault (credits
                # spent, a From it does not know…), as anymail raises for /email:
                # their readers are not failed for it, but wait for the retry,
                # those answered keeping their answers. (With an answer that
                # could not be read beside them, it is all left uncertain: a
                # retry might send that one twice.)
                raise AnymailRequestsAPIError(
                    "Postmark refused messages of the batch:",
                    email_message=email_messages[0],
                    response=response,
                    backend=self,
                )
        finally:
            if created:
                self.close()
        return len(email_messages)

    @staticmethod
    def _answer_status(answer) -> AnymailRecipientStatus | None:
        """The status of the readers of a message of /email/batch, by Postmark's
        answer for it: None when it refused the message itself, not its address;
        "unknown" when the answer cannot be read."""
        code = answer.get("ErrorCode") if isinstance(answer, dict) else None
        if code == 0 and answer.get("MessageID"):
            return AnymailRecipientStatus(answer["MessageID"], "sent")
        if code == _INACTIVE:
            return AnymailRecipientStatus(None, "rejected")
        if code == _INVALID_REQUEST and _INVALID_ADDRESS.match(
            str(answer.get("Message", ""))
        ):
            return AnymailRecipientStatus(None, "invalid")
        if isinstance(code, int) and code != 0:
            return None
        return _UNKNOWN

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
