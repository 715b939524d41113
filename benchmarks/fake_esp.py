"""A fake Postmark + Mailgun send API, for running django-anymail against locally.

Standard library only. It speaks just enough of each ESP's HTTP API for
anymail's ``postmark`` and ``mailgun`` backends to send through it, records who
was accepted, and can inject faults (latency, 5xx, 429 + Retry-After, and
"accepted, then the connection dropped").

In-process use (tests)::

    with FakeESP() as esp:
        settings.ANYMAIL = esp.postmark_settings()  # or esp.mailgun_settings()
        ...send...
        assert esp.recipients() == {"a@example.com": 1}
        esp.set_faults(fail_5xx_next=1)

As a separate process (benchmarks: a server in the benchmark's own process would
compete with it for the GIL)::

    python -m benchmarks.fake_esp --port 8025      # prints its URL, Ctrl-C stops

and drive it over HTTP, e.g. with :class:`FakeESPClient`.

Pointing anymail at it::

    ANYMAIL = {
        "POSTMARK_API_URL": esp.url,              # "http://127.0.0.1:PORT/"
        "POSTMARK_SERVER_TOKEN": "any-token",
        # or:
        "MAILGUN_API_URL": esp.url + "v3",
        "MAILGUN_API_KEY": "any-key",
        "MAILGUN_SENDER_DOMAIN": "example.com",  # else the From domain is used
    }

ESP endpoints (any token/key is accepted; a missing one gets 401):

* ``POST /email``, ``/email/withTemplate/``: one Postmark message, answered
  ``{"To", "SubmittedAt", "MessageID", "ErrorCode": 0, "Message": "OK"}``.
* ``POST /email/batch`` (JSON array) and ``/email/batchWithTemplates``
  (``{"Messages": [...]}``): an array of such results, one per message, each with
  its own MessageID. Anymail uses ``email/batch`` for a batch send (merge_headers /
  merge_metadata) without a template, and ``email/batchWithTemplates`` when
  ``template_id`` is set. (Anymail refuses ``merge_data`` without ``template_id``
  for Postmark; newsletter's backend fills it in itself and posts each recipient's
  message to ``/email``.) More than 500 messages: HTTP 422, ErrorCode 410, like
  Postmark.
* A message to an address marked inactive (:meth:`FakeESP.mark_inactive`, like an
  address on Postmark's suppression list after a hard bounce or a spam complaint)
  is not delivered to it: when all its recipients are inactive, ErrorCode 406
  (HTTP 422 from ``/email``, within the 200 answer of a batch); otherwise
  "Message OK, but will not deliver to these inactive addresses: …".
* ``POST /email/bulk`` (anymail's ``POSTMARK_USE_BULK_API``): answered
  ``{"Id", "Status": "Accepted", "SubmittedAt", "TotalMessages",
  "PercentageCompleted": 0}``.
* ``GET /messages/outbound?count=N&offset=M&metadata_KEY=V&recipient=A``
  ``&messagestream=S``: Postmark's outbound message search over what was accepted (needs
  record_deliveries) on stream S (default "outbound", as Postmark's):
  ``{"TotalCount", "Messages": [{"MessageID", "Recipients", "Metadata", ...}]}``.
* ``POST /v3/<domain>/messages`` (Mailgun; form-urlencoded or multipart, with
  ``recipient-variables`` for batch sends): ``{"id": "<...@domain>",
  "message": "Queued. Thank you."}``. ``%recipient.KEY%`` in the subject and
  ``h:`` headers is expanded per recipient when recorded.
* ``GET /v3/<domain>/events?begin=T&end=T&event=accepted&limit=N``: Mailgun's
  Events API over what was accepted (needs record_deliveries; any domain), oldest
  first: ``{"items": [{"event": "accepted", "timestamp", "recipient",
  "message": {"headers": {"message-id"}}, "user-variables"}], "paging":
  {"next": URL}}``, a page of at most 300; the page after the last is empty.
* A Mailgun message to an address on its Unsubscribes list
  (:meth:`FakeESP.mailgun_unsubscribe`) is accepted and not delivered to it, and
  ``DELETE /v3/<domain>/unsubscribes/<address>`` takes the address off (404 when
  it is not on it).

Control endpoints (no auth, never faulted):

* ``GET /_fake/recipients`` -> ``{"count": n, "by_address": {address: copies}}``
* ``GET /_fake/messages?limit=N`` -> ``{"messages": [...]}`` last stored payloads
* ``GET /_fake/deliveries?address=A&limit=N`` -> per-recipient records
* ``GET /_fake/stats`` -> request/fault counters
* ``GET|POST /_fake/faults`` -> read / update fault settings (JSON object)
* ``POST /_fake/reset`` -> clear recordings, stats and faults (send
  ``{"faults": false}`` to keep the faults, ``{"keep_messages": N}`` to keep the
  last N payloads from now on)

Recipients are To + Cc + Bcc addresses (addr-spec, case as sent), each counted
once per accepted message. Requests answered with an error or a fault (other
than drop_after_accept) are not counted.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import ctypes
import ctypes.util
import itertools
import json
import random
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = [
    "FAULT_DEFAULTS",
    "Delivery",
    "FakeESP",
    "FakeESPClient",
    "main",
    "postmark_messages",
]

#: Fault settings and their defaults (all off).
FAULT_DEFAULTS: dict[str, Any] = {
    "latency_ms": 0.0,  # added delay on every ESP request (not control endpoints)
    "fail_5xx_next": 0,  # answer the next N ESP requests with fail_5xx_status
    "fail_5xx_status": 500,  # 500, 502, 503, ...
    "rate_limit_next": 0,  # answer the next N ESP requests with 429
    "retry_after_s": 1,  # Retry-After seconds on 429s; None omits the header
    "drop_after_accept_next": 0,  # accept + record the next N, then hang up
    "faults_after": 0,  # answer the next N ESP requests normally, then the faults
    "p_5xx": 0.0,  # random faults, drawn from a RNG seeded with `seed`
    "p_429": 0.0,
    "p_drop": 0.0,
    "seed": 0,
}

_JSON = "application/json"
_MAILGUN_PATH = re.compile(r"^/(?:v3/)?([^/]+)/messages/?$")
_MAILGUN_EVENTS_PATH = re.compile(r"^/(?:v3/)?([^/]+)/events/?$")
_MAILGUN_UNSUBSCRIBE_PATH = re.compile(r"^/(?:v3/)?([^/]+)/unsubscribes/([^/]+)$")
_RECIPIENT_VAR = re.compile(r"%recipient\.([^%]+)%")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_BODY = 64 * 1024 * 1024
_POSTMARK_401 = {
    "ErrorCode": 10,
    "Message": "No Account or Server API tokens were supplied in the HTTP headers."
    " Please add a header for either X-Postmark-Server-Token or"
    " X-Postmark-Account-Token.",
}


class Delivery(NamedTuple):
    """One accepted recipient of one message."""

    address: str
    subject: str | None
    message_id: str
    #: Postmark: the message's "Headers" list as sent ([{"Name", "Value"}], or
    #: None); Mailgun: {name: value} from the ``h:`` fields, recipient-expanded.
    headers: Any
    #: Postmark: the message's "Metadata" object, or None; Mailgun: {name: value}
    #: from the ``v:`` fields, recipient-expanded.
    metadata: Any = None
    #: Postmark: the message stream it went on ("outbound" when none was named).
    stream: str = "outbound"
    #: Mailgun: when it was accepted (time.time()), as its events are dated.
    accepted_at: float = 0.0


class _Dropped(Exception):
    """Raised to hang up after recording (drop_after_accept)."""


def postmark_messages(stored: list[dict]) -> list[dict]:
    """The Postmark messages in stored payloads, batch calls flattened."""
    messages = []
    for entry in stored:
        payload = entry["payload"]
        if isinstance(payload, dict) and "Messages" in payload:
            payload = payload["Messages"]
        messages.extend(payload if isinstance(payload, list) else [payload])
    return messages


# A Mustachio tag, as Postmark's template engine finds one (its Tokenizer.cs).
_MUSTACHIO_TAG = re.compile(r"\{\{[^{}]+?\}\}|\{\{\{[^{}]+?\}\}\}")


def postmark_bulk_copy(payload: dict, address: str) -> dict[str, str]:
    """A reader's Subject, TextBody and HtmlBody from a bulk API request, filled in
    as Postmark fills them: each tag by its value in the reader's TemplateModel,
    or by nothing (sections and comments too; Postmark refuses a request whose tag
    names no valid path, which this does not check)."""
    [model] = [
        m.get("TemplateModel", {}) for m in payload["Messages"] if m["To"] == address
    ]
    return {
        field: _MUSTACHIO_TAG.sub(
            lambda tag: str(model.get(tag[0].strip("{} "), "")), payload[field]
        )
        for field in ("Subject", "TextBody", "HtmlBody")
        if field in payload
    }


def _addresses(field: Any) -> list[str]:
    """addr-specs in a Postmark-style "a@x, Name <b@y>" string (or list of them)."""
    if not field:
        return []
    if isinstance(field, str):
        if "<" not in field and '"' not in field and "," not in field:
            field = field.strip()
            return [field] if field else []
        field = [field]
    return [addr for _name, addr in getaddresses(list(field)) if addr]


def _expand(value: Any, variables: dict) -> Any:
    if isinstance(value, str) and "%recipient." in value:
        return _RECIPIENT_VAR.sub(lambda m: str(variables.get(m.group(1), "")), value)
    return value


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict, list]:
    """Parse multipart/form-data: ({name: [str, ...]}, [file metadata, ...])."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise ValueError("multipart body without boundary")
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    fields: dict[str, list[str]] = {}
    files: list[dict] = []
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, _sep, value = part.partition(b"\r\n\r\n")
        disposition = part_type = ""
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _sep, rest = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = rest
            elif name.strip().lower() == "content-type":
                part_type = rest.strip()
        params = dict(re.findall(r';\s*([\w*-]+)="?([^";]*)"?', disposition))
        field = unquote(params.get("name", ""))
        if "filename" in params:
            files.append(
                {
                    "field": field,
                    "filename": params["filename"],
                    "content_type": part_type,
                    "size": len(value),
                }
            )
        else:
            fields.setdefault(field, []).append(value.decode("utf-8", "replace"))
    return fields, files


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A client that died (chaos kills workers) is no error of the provider's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def server_bind(self):
        # Skip HTTPServer.server_bind's getfqdn() (a reverse DNS lookup).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True
    server_version = "FakeESP/1"
    server: _Server  # has .fake

    def log_message(self, format, *args):  # no per-request logging
        pass

    def setup(self):
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    # -- plumbing ---------------------------------------------------------------

    def _respond(self, status, body, content_type=_JSON, headers=()):
        if not isinstance(body, bytes | str):
            body = json.dumps(body, separators=(",", ":"))
        if isinstance(body, str):
            body = body.encode("utf-8")
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        lines.extend(f"{name}: {value}" for name, value in headers)
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):  # chunked: not supported
                self.close_connection = True
                self._respond(411, {"message": "Content-Length required"})
                return None
            return b""  # no Content-Length and no Transfer-Encoding: no body
        try:
            length = int(length)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            self._respond(413, {"message": "Bad or too large Content-Length"})
            return None
        return self.rfile.read(length) if length else b""

    # -- dispatch ---------------------------------------------------------------

    def do_GET(self):
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            self._control(url.path, parse_qs(url.query), body)
        elif url.path.rstrip("/") == "/messages/outbound":
            self._outbound_search(parse_qs(url.query))
        elif _MAILGUN_EVENTS_PATH.match(url.path):
            self._mailgun_events(url.path, parse_qs(url.query))
        else:
            self._respond(404, {"message": "Not found"})

    def _outbound_search(self, query):
        """Postmark's outbound message search (never faulted): filters
        ``recipient`` and ``metadata_<key>``, paged by ``count``/``offset``, in
        the ``messagestream`` named or, as Postmark searches, "outbound"."""
        token = self.headers.get("X-Postmark-Server-Token")
        if not (token and token.strip()):
            self._respond(401, _POSTMARK_401)
            return
        try:
            count = int(query["count"][0])
            offset = int(query.get("offset", ["0"])[0])
        except (KeyError, ValueError):
            self._respond(422, {"ErrorCode": 1201, "Message": "Count and offset"})
            return
        wanted = {
            key.removeprefix("metadata_"): values[0]
            for key, values in query.items()
            if key.startswith("metadata_")
        }
        recipient = query.get("recipient", [None])[0]
        stream = query.get("messagestream", ["outbound"])[0]
        messages: dict[str, dict] = {}
        for d in self.server.fake.deliveries():
            metadata = d.metadata or {}
            if d.stream != stream:
                continue
            if recipient is not None and d.address != recipient:
                continue
            if any(metadata.get(k) != v for k, v in wanted.items()):
                continue
            found = messages.setdefault(
                d.message_id,
                {"MessageID": d.message_id, "Recipients": [], "Metadata": metadata,
                 "Subject": d.subject, "Status": "Sent"},
            )  # fmt: skip
            found["Recipients"].append(d.address)
        found = list(messages.values())
        page = found[offset : offset + min(count, 500)]
        self._respond(200, {"TotalCount": len(found), "Messages": page})

    def _mailgun_events(self, path, query):
        """Mailgun's Events API (never faulted): the ``accepted`` events between
        ``begin`` and ``end`` (epoch seconds), oldest first, a page of ``limit``
        (at most 300) at a time, the next page's URL in ``paging.next``."""
        if not _basic_auth_ok(self.headers.get("Authorization")):
            self._respond(401, {"message": "Invalid private key"})
            return
        try:
            begin = float(query["begin"][0])
            end = float(query["end"][0])
            limit = min(int(query.get("limit", ["100"])[0]), 300)
            skip = int(query.get("skip", ["0"])[0])
        except (KeyError, ValueError):
            self._respond(400, {"message": "begin, end, limit"})
            return
        if query.get("event", ["accepted"])[0] != "accepted":
            self._respond(400, {"message": "only accepted events are faked"})
            return
        found = [
            {
                "event": "accepted",
                "id": f"{d.message_id}/{d.address}",
                "timestamp": d.accepted_at,
                "recipient": d.address,
                "message": {"headers": {"message-id": d.message_id.strip("<>")}},
                "user-variables": d.metadata or {},
            }
            for d in self.server.fake.deliveries()
            if d.accepted_at and begin <= d.accepted_at <= end
        ]
        following = {k: v[0] for k, v in query.items()} | {"skip": skip + limit}
        self._respond(
            200,
            {
                "items": found[skip : skip + limit],
                "paging": {
                    "next": self.server.fake.url.rstrip("/")
                    + path
                    + "?"
                    + urlencode(following)
                },
            },
        )

    def do_DELETE(self):
        """Mailgun's removal of an address from its Unsubscribes list."""
        if self._read_body() is None:
            return
        match = _MAILGUN_UNSUBSCRIBE_PATH.match(urlsplit(self.path).path)
        if match is None:
            self._respond(404, {"message": "Not found"})
            return
        if not _basic_auth_ok(self.headers.get("Authorization")):
            self._respond(401, {"message": "Invalid private key"})
            return
        address = unquote(match.group(2)).lower()
        fake = self.server.fake
        with fake._lock:
            listed = address in fake._mailgun_unsubscribed
            fake._mailgun_unsubscribed -= {address}
        if not listed:
            self._respond(404, {"message": "Address not found in unsubscribers table"})
            return
        self._respond(
            200, {"message": "Unsubscribe event has been removed", "address": address}
        )

    def do_POST(self):
        body = self._read_body()
        if body is None:
            return
        fake = self.server.fake
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/_fake/"):
            self._control(path, parse_qs(url.query), body)
            return
        endpoint = path.strip("/").lower()
        try:
            if endpoint in fake.POSTMARK_ENDPOINTS:
                self._esp_request("postmark", endpoint, body)
            elif match := _MAILGUN_PATH.match(path):
                self._esp_request("mailgun", unquote(match.group(1)), body)
            else:
                self._respond(404, {"message": f"Unknown endpoint {path}"})
        except _Dropped:
            self.close_connection = True  # hang up without any response

    def _esp_request(self, esp, target, body):
        with self.server.fake._in_flight():
            self._answer_esp_request(esp, target, body)

    def _answer_esp_request(self, esp, target, body):
        fake = self.server.fake
        fake._bump("requests")
        latency = fake._faults["latency_ms"]
        if latency:
            time.sleep(latency / 1000.0)
        if esp == "postmark":
            token = self.headers.get("X-Postmark-Server-Token")
            if not (token and token.strip()):
                fake._bump("auth_failures")
                self._respond(401, _POSTMARK_401)
                return
        else:
            if not _basic_auth_ok(self.headers.get("Authorization")):
                fake._bump("auth_failures")
                self._respond(401, "Forbidden", content_type="text/plain")
                return
            if fake.mailgun_domains is not None and target not in fake.mailgun_domains:
                fake._bump("errors")
                self._respond(404, {"message": f"Domain not found: {target}"})
                return

        fault = fake._take_fault()
        if fault == "5xx":
            status = fake._faults["fail_5xx_status"]
            fake._bump("faults_5xx")
            if esp == "postmark":
                error = {"ErrorCode": 100, "Message": "Fake ESP: injected server error"}
            else:
                error = {"message": "Fake ESP: injected server error"}
            self._respond(status, error)
            return
        if fault == "429":
            fake._bump("faults_429")
            retry_after = fake._faults["retry_after_s"]
            headers = [] if retry_after is None else [("Retry-After", retry_after)]
            if esp == "postmark":
                error = {"ErrorCode": 429, "Message": "Rate limit exceeded."}
            else:
                error = {"message": "Too many requests"}
            self._respond(429, error, headers=headers)
            return

        try:
            if esp == "postmark":
                status, result, deliveries, stored = fake._postmark(target, body)
            else:
                content_type = self.headers.get("Content-Type", "")
                status, result, deliveries, stored = fake._mailgun(
                    target, body, content_type
                )
        except Exception as exc:  # a bug here, or a body we can't make sense of
            fake._bump("errors")
            self._respond(500, {"message": f"Fake ESP error: {exc!r}"})
            return

        if stored is not None:
            # Exactly as it came, so that a bare client can post the very same
            # request again (benchmarks/fanout.py).
            stored["request_headers"] = dict(self.headers.items())
            stored["request_body"] = body
        dropped = fault == "drop"
        if deliveries or stored is not None:
            fake._record(deliveries, stored, dropped)
        if status >= 300:
            fake._bump("errors")
        if dropped:
            fake._bump("drops")
            raise _Dropped
        self._respond(status, result)

    def _control(self, path, query, body):
        fake = self.server.fake
        name = path[len("/_fake/") :].strip("/")
        method = self.command

        def limit():
            return int(query["limit"][0]) if "limit" in query else None

        try:
            data = json.loads(body) if body.strip() else {}
            if method == "GET" and name == "recipients":
                with fake._lock:
                    result = {
                        "count": fake._count,
                        "by_address": dict(fake._by_address),
                    }
            elif method == "GET" and name == "messages":
                # JSON carries the request's bytes as latin-1 code points.
                result = {
                    "messages": [
                        {**m, "request_body": m["request_body"].decode("latin-1")}
                        for m in fake.get_messages(limit())
                    ]
                }
            elif method == "GET" and name == "deliveries":
                address = query.get("address", [None])[0]
                found = fake.deliveries(address=address, limit=limit())
                result = {"deliveries": [d._asdict() for d in found]}
            elif method == "GET" and name == "stats":
                result = fake.stats()
            elif name == "faults" and method == "GET":
                result = fake.faults()
            elif name == "faults" and method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                result = fake.set_faults(**data)
            elif name == "reset" and method == "POST":
                keep = data.get("keep_messages")
                fake.reset(
                    faults=bool(data.get("faults", True)),
                    keep_messages=None if keep is None else int(keep),
                )
                result = {"ok": True}
            else:
                self._respond(404, {"message": f"Unknown control endpoint {path}"})
                return
        except (ValueError, TypeError, AttributeError) as exc:
            self._respond(400, {"message": str(exc)})
            return
        self._respond(200, result)


def _basic_auth_ok(header: str | None) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return False
    _user, sep, key = decoded.partition(":")
    return bool(sep and key)


class FakeESP:
    """A local fake of Postmark's and Mailgun's send APIs.

    :param host: interface to bind (loopback by default).
    :param port: 0 picks a free port.
    :param keep_messages: how many full request payloads to keep (0: none).
    :param record_deliveries: keep a per-recipient :class:`Delivery` list (turn off
        for very large benchmark runs; counts are kept either way).
    :param mailgun_domains: if given, other Mailgun sender domains get 404
        "Domain not found" like Mailgun.
    :param postmark_batch_limit: messages per Postmark batch call (Postmark: 500).
    :param postmark_batch_bytes: bytes per Postmark batch call (Postmark: 50 MB;
        more: HTTP 413).
    :param postmark_max_recipients: To+Cc+Bcc per Postmark message (Postmark: 50).
    :param mailgun_max_recipients: To+Cc+Bcc per Mailgun call (Mailgun: 1000).
        (Limits: 0 or None disables the check.)
    :param tls: a server-side SSL context: serve HTTPS with it.
    :param faults: initial fault settings, see :data:`FAULT_DEFAULTS`.
    """

    POSTMARK_ENDPOINTS = frozenset(
        {
            "email",
            "email/batch",
            "email/withtemplate",
            "email/batchwithtemplates",
            "email/bulk",
        }
    )

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep_messages: int = 100,
        record_deliveries: bool = True,
        mailgun_domains: list[str] | None = None,
        postmark_batch_limit: int | None = 500,
        postmark_batch_bytes: int | None = 50_000_000,
        postmark_max_recipients: int | None = 50,
        mailgun_max_recipients: int | None = 1000,
        tls: ssl.SSLContext | None = None,
        **faults: Any,
    ):
        self.host = host
        self.tls = tls
        self.port = port
        self.keep_messages = keep_messages
        self.record_deliveries = record_deliveries
        self.mailgun_domains = set(mailgun_domains) if mailgun_domains else None
        self.postmark_batch_limit = postmark_batch_limit
        self.postmark_batch_bytes = postmark_batch_bytes
        self.postmark_max_recipients = postmark_max_recipients
        self.mailgun_max_recipients = mailgun_max_recipients
        self._lock = threading.Lock()
        self._in_flight_now = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._id_prefix = uuid.uuid4().hex[:20]
        self._ids = itertools.count(1)
        self._initial_faults = dict(FAULT_DEFAULTS)
        self._initial_faults.update(self._check_faults(faults))
        self._faults: dict[str, Any] = {}
        self._rng = random.Random()
        self._inactive: frozenset[str] = frozenset()
        self._mailgun_unsubscribed: set[str] = set()
        self._clear(faults=True)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeESP:
        """Bind and serve in a daemon thread. Returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"FakeESP:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, and hang up any open (keep-alive) connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.hang_up()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def hang_up(self) -> None:
        """Close every open (keep-alive) connection, as a provider closes idle ones."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeESP:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. "http://127.0.0.1:54321/" (port known after start())."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.port}/"

    def postmark_settings(
        self,
        token: str = "fake-token",  # noqa: S107
    ) -> dict[str, str]:
        """ANYMAIL settings for anymail.backends.postmark.EmailBackend."""
        return {"POSTMARK_API_URL": self.url, "POSTMARK_SERVER_TOKEN": token}

    def mailgun_settings(
        self,
        sender_domain: str | None = None,
        api_key: str = "fake-key",
    ) -> dict[str, str]:
        """ANYMAIL settings for anymail.backends.mailgun.EmailBackend."""
        settings = {"MAILGUN_API_URL": self.url + "v3", "MAILGUN_API_KEY": api_key}
        if sender_domain:
            settings["MAILGUN_SENDER_DOMAIN"] = sender_domain
        return settings

    # -- inspection -----------------------------------------------------------------

    def recipients(self) -> dict[str, int]:
        """{address: copies accepted}."""
        with self._lock:
            return dict(self._by_address)

    @property
    def count(self) -> int:
        """Total accepted recipient-copies."""
        return self._count

    @property
    def messages(self) -> list[dict]:
        """The last ``keep_messages`` accepted request payloads, oldest first."""
        return self.get_messages()

    def get_messages(self, limit: int | None = None) -> list[dict]:
        with self._lock:
            stored = list(self._messages)
        return stored[-limit:] if limit else stored

    def deliveries(
        self, address: str | None = None, limit: int | None = None
    ) -> list[Delivery]:
        """Per-recipient records (if record_deliveries), oldest first."""
        with self._lock:
            found = list(self._deliveries)
        if address is not None:
            found = [d for d in found if d.address == address]
        return found[-limit:] if limit else found

    def stats(self) -> dict[str, int | float]:
        """Counters: connections (TCP connections accepted, to check keep-alive),
        requests (ESP sends), accepted_requests, count, faults_5xx, faults_429,
        drops, auth_failures, errors (4xx/5xx answered without a fault),
        most_in_flight (the most ESP requests answered at once); and
        last_accepted_at, the time.monotonic() of the last accepted request (0.0
        before any), a clock other processes on this machine share."""
        with self._lock:
            return dict(
                self._stats, count=self._count, last_accepted_at=self._last_accepted_at
            )

    def reset(self, *, faults: bool = True, keep_messages: int | None = None) -> None:
        """Forget recordings and stats; also restore the initial faults unless
        faults=False (reseeding the RNG); keep the last `keep_messages` payloads
        from now on, when given."""
        if keep_messages is not None:
            self.keep_messages = keep_messages
        self._clear(faults=faults)

    # -- faults -----------------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._faults)

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Update fault settings (see FAULT_DEFAULTS); returns them all.

        Counted faults (``*_next``) apply to the next N ESP requests that pass
        authentication (after the first ``faults_after`` of them), in the order
        5xx, 429, drop; then the random ones are drawn once per request. Setting
        ``seed`` reseeds the RNG.
        """
        settings = self._check_faults(settings)
        with self._lock:
            self._faults.update(settings)
            if "seed" in settings:
                self._rng.seed(settings["seed"])
            return dict(self._faults)

    @staticmethod
    def _check_faults(settings: dict[str, Any]) -> dict[str, Any]:
        unknown = set(settings) - set(FAULT_DEFAULTS)
        if unknown:
            raise TypeError(f"Unknown fault setting(s): {', '.join(sorted(unknown))}")
        checked = {}
        for name, value in settings.items():
            if name == "retry_after_s" and value is None:
                checked[name] = None
            elif name in ("latency_ms", "p_5xx", "p_429", "p_drop"):
                value = float(value)
                if value < 0 or (name.startswith("p_") and value > 1):
                    raise ValueError(f"{name} out of range: {value}")
                checked[name] = value
            else:
                value = int(value)
                if value < 0 and name != "seed":
                    raise ValueError(f"{name} must be >= 0")
                if name == "fail_5xx_status" and not 500 <= value <= 599:
                    raise ValueError("fail_5xx_status must be 5xx")
                checked[name] = value
        return checked

    def _take_fault(self) -> str | None:
        with self._lock:
            f = self._faults
            if f["faults_after"]:
                f["faults_after"] -= 1
                return None
            if f["fail_5xx_next"]:
                f["fail_5xx_next"] -= 1
                return "5xx"
            if f["rate_limit_next"]:
                f["rate_limit_next"] -= 1
                return "429"
            if f["drop_after_accept_next"]:
                f["drop_after_accept_next"] -= 1
                return "drop"
            p_5xx, p_429, p_drop = f["p_5xx"], f["p_429"], f["p_drop"]
            if p_5xx or p_429 or p_drop:
                r = self._rng.random()
                if r < p_5xx:
                    return "5xx"
                if r < p_5xx + p_429:
                    return "429"
                if r < p_5xx + p_429 + p_drop:
                    return "drop"
        return None

    def mark_inactive(self, *addresses: str) -> None:
        """Refuse to deliver to these addresses from now on, as Postmark does to
        an address that hard-bounced or complained (kept across reset())."""
        with self._lock:
            self._inactive |= {a.lower() for a in addresses}

    def mailgun_unsubscribe(self, *addresses: str) -> None:
        """Put these addresses on Mailgun's Unsubscribes list: it accepts messages
        to them and delivers none (kept across reset())."""
        with self._lock:
            self._mailgun_unsubscribed |= {a.lower() for a in addresses}

    def mailgun_unsubscribes(self) -> set[str]:
        """The addresses on Mailgun's Unsubscribes list."""
        with self._lock:
            return set(self._mailgun_unsubscribed)

    # -- state ------------------------------------------------------------------

    def _clear(self, *, faults: bool) -> None:
        with self._lock:
            self._count = 0
            self._last_accepted_at = 0.0
            self._by_address: dict[str, int] = {}
            self._deliveries: list[Delivery] = []
            self._messages: collections.deque = collections.deque(
                maxlen=max(0, self.keep_messages)
            )
            self._stats = dict.fromkeys(
                (
                    "connections",
                    "requests",
                    "accepted_requests",
                    "faults_5xx",
                    "faults_429",
                    "drops",
                    "auth_failures",
                    "errors",
                ),
                0,
            )
            self._stats["most_in_flight"] = self._in_flight_now
            if faults:
                self._faults = dict(self._initial_faults)
                self._rng.seed(self._faults["seed"])

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self._stats["connections"] += 1
            else:
                self._connections.discard(conn)

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Count an ESP request as in flight while it is answered."""
        with self._lock:
            self._in_flight_now += 1
            most = max(self._stats["most_in_flight"], self._in_flight_now)
            self._stats["most_in_flight"] = most
        try:
            yield
        finally:
            with self._lock:
                self._in_flight_now -= 1

    def _bump(self, stat: str) -> None:
        with self._lock:
            self._stats[stat] += 1

    def _record(self, deliveries: list[Delivery], stored, dropped: bool) -> None:
        with self._lock:
            if deliveries:
                self._stats["accepted_requests"] += 1
                by_address = self._by_address
                for delivery in deliveries:
                    address = delivery.address
                    by_address[address] = by_address.get(address, 0) + 1
                self._count += len(deliveries)
                self._last_accepted_at = time.monotonic()
                if self.record_deliveries:
                    self._deliveries.extend(deliveries)
            if stored is not None and self._messages.maxlen:
                if dropped:
                    stored["dropped"] = True
                self._messages.append(stored)

    def _next_id(self) -> str:
        p = self._id_prefix
        return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-{next(self._ids):012x}"

    # -- Postmark -----------------------------------------------------------------

    def _postmark(self, endpoint: str, body: bytes):
        """-> (http status, response json, deliveries, stored payload or None)"""
        limit = self.postmark_batch_bytes
        if endpoint.startswith("email/batch") and limit and len(body) > limit:
            too_large = {
                "Message": f"Request too large: {len(body)} bytes (max {limit})."
            }
            return 413, too_large, [], None
        try:
            data = json.loads(body)
        except ValueError:
            return (
                422,
                {"ErrorCode": 402, "Message": "Received invalid JSON input."},
                [],
                None,
            )
        submitted_at = datetime.now(UTC).isoformat()
        incompatible = {"ErrorCode": 403, "Message": "Incompatible JSON input."}
        deliveries: list[Delivery] = []

        if endpoint == "email/bulk":
            if not isinstance(data, dict) or not isinstance(data.get("Messages"), list):
                return 422, incompatible, [], None
            bulk_id = str(uuid.uuid4())
            subject = data.get("Subject")
            subject = sys.intern(subject) if isinstance(subject, str) else subject
            for index, message in enumerate(data["Messages"]):
                if not isinstance(message, dict):
                    return 422, incompatible, [], None
                metadata = message.get("Metadata") or {}
                message_id = metadata.get("anymail_id") or f"{bulk_id}/{index}"
                headers = message.get("Headers", data.get("Headers"))
                stream = data.get("MessageStream") or "outbound"
                for field in ("To", "Cc", "Bcc"):
                    for address in _addresses(message.get(field)):
                        deliveries.append(
                            Delivery(
                                address, subject, message_id, headers, None, stream
                            )
                        )
            result = {
                "Id": bulk_id,
                "Status": "Accepted",
                "SubmittedAt": submitted_at,
                "TotalMessages": len(data["Messages"]),
                "PercentageCompleted": 0.0,
            }
            return 200, result, deliveries, self._stored("postmark", endpoint, data)

        if endpoint in ("email", "email/withtemplate"):
            if not isinstance(data, dict):
                return 422, incompatible, [], None
            result = self._postmark_message(data, submitted_at, deliveries)
            status = 200 if result["ErrorCode"] == 0 else 422
            stored = self._stored("postmark", endpoint, data) if deliveries else None
            return status, result, deliveries, stored

        # email/batch, email/batchwithtemplates
        messages = data.get("Messages") if isinstance(data, dict) else data
        if endpoint == "email/batch" and not isinstance(data, list):
            messages = None
        if not isinstance(messages, list):
            return 422, incompatible, [], None
        limit = self.postmark_batch_limit
        if limit and len(messages) > limit:
            too_many = {
                "ErrorCode": 410,
                "Message": f"Too many batch messages: {len(messages)} (max {limit}).",
            }
            return 422, too_many, [], None
        results = [
            self._postmark_message(message, submitted_at, deliveries)
            if isinstance(message, dict)
            else incompatible
            for message in messages
        ]
        stored = self._stored("postmark", endpoint, data) if deliveries else None
        return 200, results, deliveries, stored

    def _postmark_message(self, message: dict, submitted_at: str, deliveries: list):
        """Validate one Postmark message; append its deliveries; -> result dict."""
        to = message.get("To")
        addresses = (
            _addresses(to)
            + _addresses(message.get("Cc"))
            + _addresses(message.get("Bcc"))
        )
        if not message.get("From"):
            return {"ErrorCode": 300, "Message": "Invalid 'From' address: ''."}
        if not addresses:
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}
        limit = self.postmark_max_recipients
        if limit and len(addresses) > limit:
            return {
                "ErrorCode": 300,
                "Message": f"Too many recipients: {len(addresses)} (max {limit}).",
            }
        subject = message.get("Subject")
        if subject is None and ("TemplateAlias" in message or "TemplateId" in message):
            subject = (
                f"[template {message.get('TemplateAlias', message.get('TemplateId'))}]"
            )
        if isinstance(subject, str):
            subject = sys.intern(subject)
        inactive = self._inactive and [
            a for a in addresses if a.lower() in self._inactive
        ]
        if inactive:
            found = (
                f"{', '.join(a.lower() for a in inactive)}. Inactive recipients are"
                " ones that have generated a hard bounce, a spam complaint, or a"
                " manual suppression."
            )
            addresses = [a for a in addresses if a.lower() not in self._inactive]
            if not addresses:
                return {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been"
                    f" marked as inactive. Found inactive addresses: {found}",
                }
        message_id = self._next_id()
        headers = message.get("Headers")
        metadata = message.get("Metadata")
        stream = message.get("MessageStream") or "outbound"
        deliveries.extend(
            Delivery(a, subject, message_id, headers, metadata, stream)
            for a in addresses
        )
        result = {"SubmittedAt": submitted_at, "MessageID": message_id}
        if to:
            result["To"] = to
        result["ErrorCode"] = 0
        result["Message"] = (
            f"Message OK, but will not deliver to these inactive addresses: {found}"
            if inactive
            else "OK"
        )
        return result

    # -- Mailgun ------------------------------------------------------------------

    def _mailgun(self, domain: str, body: bytes, content_type: str):
        """-> (http status, response json, deliveries, stored payload or None)"""
        files: list[dict] = []
        if content_type.lower().startswith("multipart/form-data"):
            fields, files = _parse_multipart(body, content_type)
        else:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)

        def first(name):
            values = fields.get(name)
            return values[0] if values else None

        if not fields.get("from"):
            return 400, {"message": "from parameter is missing"}, [], None
        to = _addresses(fields.get("to"))
        if not to:
            return 400, {"message": "to parameter is missing"}, [], None
        others = _addresses(fields.get("cc")) + _addresses(fields.get("bcc"))
        limit = self.mailgun_max_recipients
        total = len(to) + len(others)
        if limit and total > limit:
            error = {"message": f"Too many recipients: {total} (max {limit})"}
            return 400, error, [], None
        recipient_variables = None
        if "recipient-variables" in fields:
            try:
                recipient_variables = json.loads(first("recipient-variables"))
            except ValueError:
                return 400, {"message": "recipient-variables: invalid JSON"}, [], None
            if not isinstance(recipient_variables, dict):
                return 400, {"message": "recipient-variables: not an object"}, [], None

        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        message_id = f"<{stamp}.{next(self._ids)}.{self._id_prefix[:12]}@{domain}>"
        subject = first("subject")
        headers = {
            name[2:]: values[0] if len(values) == 1 else values
            for name, values in fields.items()
            if name.startswith("h:")
        }
        subject_is_template = isinstance(subject, str) and "%recipient." in subject
        headers_are_templates = any(
            isinstance(v, str) and "%recipient." in v for v in headers.values()
        )
        if isinstance(subject, str) and not subject_is_template:
            subject = sys.intern(subject)

        user_variables = {
            name[2:]: values[0] for name, values in fields.items() if name[:2] == "v:"
        }
        accepted_at = time.time()
        with self._lock:
            unsubscribed = set(self._mailgun_unsubscribed)
        # Mailgun takes the call, and drops the message to an unsubscribed address.
        to = [a for a in to if a.lower() not in unsubscribed]
        others = [a for a in others if a.lower() not in unsubscribed]
        deliveries = []
        for address in to:
            this_subject, these_headers = subject, headers
            these_variables = user_variables
            if recipient_variables is not None:
                variables = recipient_variables.get(address) or {}
                these_variables = {
                    k: _expand(v, variables) for k, v in user_variables.items()
                }
                if subject_is_template or headers_are_templates:
                    this_subject = _expand(subject, variables)
                    these_headers = {
                        k: _expand(v, variables) for k, v in headers.items()
                    }
            deliveries.append(
                Delivery(address, this_subject, message_id, these_headers,
                         these_variables, accepted_at=accepted_at)
            )  # fmt: skip
        deliveries.extend(
            Delivery(a, subject, message_id, headers, user_variables,
                     accepted_at=accepted_at)
            for a in others
        )  # fmt: skip

        stored = None
        if self._messages.maxlen:
            payload = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
            stored = self._stored("mailgun", f"{domain}/messages", payload)
            stored["files"] = files
        return (
            200,
            {"id": message_id, "message": "Queued. Thank you."},
            deliveries,
            stored,
        )

    def _stored(self, esp: str, endpoint: str, payload: Any) -> dict | None:
        if not self._messages.maxlen:
            return None
        return {
            "esp": esp,
            "endpoint": endpoint,
            "received_at": time.time(),
            "payload": payload,
        }


class FakeESPClient:
    """Drive a FakeESP running in another process, over its /_fake/ endpoints."""

    def __init__(self, url: str, timeout: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Not an http(s) URL: {url!r}")
        self.url = url if url.endswith("/") else url + "/"
        self.timeout = timeout

    def _call(self, method: str, name: str, data: Any = None, **query: Any):
        query = {k: v for k, v in query.items() if v is not None}
        url = self.url + "_fake/" + name + ("?" + urlencode(query) if query else "")
        body = json.dumps(data).encode() if data is not None else b""
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            url, data=body, method=method, headers={"Content-Type": _JSON}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return json.load(response)

    def recipients(self) -> dict[str, int]:
        return self._call("GET", "recipients")["by_address"]

    @property
    def count(self) -> int:
        return self._call("GET", "recipients")["count"]

    def messages(self, limit: int | None = None) -> list[dict]:
        return self._call("GET", "messages", limit=limit)["messages"]

    def deliveries(self, address: str | None = None, limit: int | None = None):
        found = self._call("GET", "deliveries", address=address, limit=limit)
        return found["deliveries"]

    def stats(self) -> dict[str, int]:
        return self._call("GET", "stats")

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "faults", settings)

    def reset(self, *, faults: bool = True, keep_messages: int | None = None) -> None:
        self._call("POST", "reset", {"faults": faults, "keep_messages": keep_messages})

    def wait_until_up(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


# glibc's mallopt() parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _keep_freed_memory() -> None:
    """Have glibc keep memory this process frees, for its next request.

    By default each handler thread gets its own malloc arena and glibc hands large
    freed blocks back to the kernel, so whether a 16 MB batch is read into memory
    the process already holds or into fresh pages (~8,000 page faults, +60% CPU)
    depended on the client's connection pattern, not on the request: the product
    paid more per identical request than the bare client measuring its limit. One
    arena that is never trimmed makes every request cost what its content costs.
    """
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):  # not glibc: nothing to tune
        return
    libc.mallopt(_M_ARENA_MAX, 1)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's largest
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fake_esp",
        description="Fake Postmark/Mailgun send API. Prints its URL, then serves"
        " until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--keep-messages", type=int, default=100, metavar="N")
    parser.add_argument(
        "--no-deliveries",
        action="store_true",
        help="don't keep per-recipient records (counts only)",
    )
    parser.add_argument("--mailgun-domain", action="append", dest="mailgun_domains")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--p-5xx", type=float, default=0.0)
    parser.add_argument("--p-429", type=float, default=0.0)
    parser.add_argument("--p-drop", type=float, default=0.0)
    parser.add_argument("--retry-after", type=int, default=1, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    _keep_freed_memory()  # before the first handler thread starts
    esp = FakeESP(
        args.host,
        args.port,
        keep_messages=args.keep_messages,
        record_deliveries=not args.no_deliveries,
        mailgun_domains=args.mailgun_domains,
        latency_ms=args.latency_ms,
        p_5xx=args.p_5xx,
        p_429=args.p_429,
        p_drop=args.p_drop,
        retry_after_s=args.retry_after,
        seed=args.seed,
    ).start()

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    # Also SIGINT: a shell starting us in the background would have ignored it.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(esp.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        esp.stop()


if __name__ == "__main__":
    main()
