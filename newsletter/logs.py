"""Readers' tokens kept out of every log: gunicorn's access log
(newsletter/gunicorn_conf.py) and Django's own (settings.LOGGING), e.g. the
"Not Found: /preferences/<token>/…" line django.request writes for a 404."""

import logging
import re
from urllib.parse import unquote

# The paths whose next part is a reader's token: anyone reading a log line with one
# could confirm, manage or delete that reader's subscription. nginx's log redacts
# the same paths (its `map $uri $loggable_uri`), query string and all: a click's
# ?reader=… is a consenting reader's signed id.
TOKEN_PATH = re.compile(
    r"/(preferences/email/confirm|subscribe/confirm|comments/confirm|preferences"
    r"|unsubscribe|r)"
    r"/[^#\s\"]*"
)


def redact(text: str) -> str:
    """text with each token path cut down to its prefix."""
    if TOKEN_PATH.search(text):
        return TOKEN_PATH.sub(r"/\1/[redacted]", text)
    # Django routes the %-decoded path, so a token path spelt in escapes still
    # reaches a token view; it is not worth logging in any form.
    if TOKEN_PATH.search(unquote(text)):
        return "[redacted]"
    return text


class RedactTokens(logging.Filter):
    """A handler's filter: the record's message with token paths redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
