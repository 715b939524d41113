"""gunicorn's settings, for the image and for the test that starts the image's command.

docker/Dockerfile runs `gunicorn --config python:newsletter.gunicorn_conf
newsletter.wsgi` behind nginx (docker/nginx.conf.template), and
tests/test_production.py reads that command from the Dockerfile and runs it behind
the same nginx. GUNICORN_CMD_ARGS (e.g. "--bind 127.0.0.1:8001") overrides any of
these settings, as gunicorn reads it after this file.
"""

import os
import re
from urllib.parse import unquote

from gunicorn.glogging import Logger

# Sync workers are enough because nginx buffers each request and each response
# whole: a worker is busy only while Django works, never while a slow client talks.
bind = ["0.0.0.0:8000"]
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
accesslog = "-"

# The paths whose next part is a reader's token: anyone reading a log line with one
# could confirm, manage or delete that reader's subscription. nginx's log redacts
# the same paths (its `map $uri $loggable_uri`).
TOKEN_PATH = re.compile(
    r"/(preferences/email/confirm|subscribe/confirm|comments/confirm|preferences"
    r"|unsubscribe|r)"
    r"/[^?#\s\"]*"
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


class RedactingLogger(Logger):
    """gunicorn's logger, with token paths redacted from every access-log atom
    (the request line, the path, the Referer and any header or environ atom a
    custom access_log_format may name)."""

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


logger_class = RedactingLogger
