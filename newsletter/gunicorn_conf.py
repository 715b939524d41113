"""gunicorn's settings, for the image and for the test that starts the image's command.

docker/Dockerfile runs `gunicorn --config python:newsletter.gunicorn_conf
newsletter.wsgi` behind nginx (docker/nginx.conf.template), and
tests/test_production.py reads that command from the Dockerfile and runs it behind
the same nginx. GUNICORN_CMD_ARGS (e.g. "--bind 127.0.0.1:8001") overrides any of
these settings, as gunicorn reads it after this file.
"""

import logging
import os
import re

from gunicorn.glogging import Logger

from newsletter.logs import RedactReaders, redact
from newsletter.settings import envint

# Sync workers are enough because nginx buffers each request and each response
# whole: a worker is busy only while Django works, never while a slow client talks.
bind = ["0.0.0.0:8000"]
# 0 started no worker, a site that never answered: refused as the settings refuse
# theirs. (gunicorn reads the variable too, before this file: it refuses a word or
# a number below 0 itself.)
workers = envint("WEB_CONCURRENCY", "3", at_least=1)
accesslog = "-"
# Longer than nginx's proxy_read_timeout (60 s, docker/nginx.conf.template): a slow
# desk request (an import, a camera's original) runs until nginx gives up with its
# 504, never killed mid-way by gunicorn's 30 s default (nginx's 502).
timeout = 90
# Stopping (a deploy), requests nginx still waits for finish before workers go;
# compose waits longer for gunicorn (docker/compose.yaml's stop_grace_period).
graceful_timeout = 60
# Each worker tells the arbiter it is alive by touching a file in this folder, at
# every request and idle second: in a container /tmp is the image's overlay on
# disk, where that touch can block long enough for the arbiter to kill a healthy
# worker (gunicorn's FAQ). Memory, where there is any (macOS has no /dev/shm).
# (gunicorn makes its file there with mkstemp: a name of its own, read by no one.)
MEMORY = "/dev/shm"  # noqa: S108
worker_tmp_dir = MEMORY if os.path.isdir(MEMORY) else None


class RedactingLogger(Logger):
    """gunicorn's logger, with token paths redacted from every access-log atom
    (the request line, the path, the Referer and any header or environ atom a
    custom access_log_format may name), and from its error log, where a request
    that fails is logged by its path ("Error handling request /unsubscribe/…")
    or its request line ("Invalid HTTP request line: 'GET /…'"), each without
    its query string."""

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.error_log.addFilter(RedactReaders())
        self.error_log.addFilter(WithoutQueries())

    def atoms(self, resp, req, environ, request_time) -> dict:
        # No query string is logged, as nginx logs none: the desk's searches are
        # readers' addresses (?q=ann@…), a click's ?reader=… a reader's signed id.
        loggable = environ | {
            "RAW_URI": without_query(environ["RAW_URI"]),
            "QUERY_STRING": "",
        }
        if "HTTP_REFERER" in environ:
            loggable["HTTP_REFERER"] = without_query(environ["HTTP_REFERER"])
        atoms = super().atoms(resp, req, loggable, request_time)
        atoms["{referer}i"] = loggable.get("HTTP_REFERER", "-")
        return {
            name: redact(value) if isinstance(value, str) else value
            for name, value in atoms.items()
        }


def without_query(url: str) -> str:
    return url.split("?", 1)[0]


# A query string in an error-log line: up to the space, quote or end that closes
# the URI or request line it is part of.
_QUERY = re.compile(r"\?[^\s'\"]+")


class WithoutQueries(logging.Filter):
    """The error log's record without the query strings the access log drops: a
    request failing outside Django is logged with its URI, a desk search's
    ?q=ann@… or a click's ?reader=… included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cut = _QUERY.sub("", message)
        if cut != message:
            record.msg, record.args = cut, ()
        return True


logger_class = RedactingLogger
