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


class RedactReaders(logging.Filter):
    """A handler's filter: the record's message, and the traceback of the exception
    it logs, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        # Formatters print the traceback they find here rather than format it again.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
