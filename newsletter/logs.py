"""Readers' tokens and addresses kept out of every log: gunicorn's access log
(newsletter/gunicorn_conf.py), Django's own (settings.LOGGING), e.g. the
"Not Found: /preferences/<token>/…" line django.request writes for a 404, and the
Celery worker's (newsletter/celery.py)."""

import logging
import re
from urllib.parse import unquote

# The paths whose next part is a reader's token: anyone reading a log line with one
# could confirm, manage or delete that reader's subscription. nginx's log redacts
# the same paths (its `map $uri $loggable_uri`), query string and all: a click's
# ?reader=… is a consenting reader's signed id.
TOKEN_PATH = re.compile(
    r"/(preferences/email/confirm|subscribe/confirm|comments/confirm|comments/data"
    r"|preferences"
    r"|unsubscribe|r)"
    r"/[^#\s\"]*"
)


# An address in an error's text: a provider's answer quoted in its exception ("Found
# inactive addresses: ann@example.org"), an SMTP server's refusal, PostgreSQL's
# DETAIL of a unique violation ("Key (email)=(ann@example.org) already exists").
# Not from a quote that opens it ('ann@…'), nor with braces (a dict's repr).
ADDRESS = re.compile(r"[\w.!#$%&*+/=?^~-][\w.!#$%&'*+/=?^~-]*@[\w-]+(?:\.[\w-]+)+")


def redact(text: str) -> str:
    """text with each address hidden and each token path cut down to its prefix."""
    text = ADDRESS.sub("[address]", text)
    if TOKEN_PATH.search(text):
        return TOKEN_PATH.sub(r"/\1/[redacted]", text)
    # Django routes the %-decoded path, so a token path spelt in escapes still
    # reaches a token view; it is not worth logging in any form.
    if TOKEN_PATH.search(unquote(text)):
        return "[redacted]"
    return text


# What every record has; anything else was a logging call's `extra`, which a
# handler of the whole record (JSON lines, Sentry's) writes out: Celery's task
# records carry the task's arguments as `extra["data"]`, a reader's address among
# them for the subscribe form's task and the commenters' data form's first one.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _redacted(value: object) -> object:
    """value with each string in it redacted, through dicts, lists and tuples; any
    other object whose repr a handler would write with a token or an address in
    it (django.request's `extra["request"]`: "<WSGIRequest: GET '/unsubscribe/…'>")
    as that repr, redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redacted(item) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = repr(value)
    redacted = redact(text)
    return value if redacted == text else redacted


class RedactReaders(logging.Filter):
    """A handler's filter: the record's message, its arguments, its extra
    attributes and the traceback of the exception it logs, redacted, the
    exception itself dropped. The record itself is changed, so the handlers after
    this one, and Sentry's (which runs after every handler), are handed it
    redacted too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        else:
            # Celery's arguments are a dict its message uses only part of.
            record.args = _redacted(record.args)
        for name in vars(record).keys() - RECORD_ATTRIBUTES:
            setattr(record, name, _redacted(getattr(record, name)))
        # Formatters print the traceback they find here rather than format it again.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # The exception itself is not redacted: a handler that formats it again
        # (python-json-logger's) or sends it whole (Sentry's) would name the
        # reader. Without it, they take the redacted traceback above.
        record.exc_info = None
        return True
