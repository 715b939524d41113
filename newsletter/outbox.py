"""The development email backend: every message, one file per recipient, on disk.

A newcomer without an email provider reads what the site sent at /outbox/ (DEBUG
only) and can click their own confirmation link.
"""

import os
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone


def outbox_dir() -> Path:
    return Path(settings.OUTBOX_DIR)


class OutboxBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        folder = outbox_dir()
        folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            raw = message.message().as_bytes(linesep="\r\n")
            for _recipient in message.recipients():
                name = f"{timezone.now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
                # Written aside and renamed, so a reader never sees half a message.
                partial = folder / f".{name}.partial"
                partial.write_bytes(raw)
                os.replace(partial, folder / name)
            sent += 1
        return sent


def message_names() -> list[str]:
    """The outbox's messages, newest first."""
    folder = outbox_dir()
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.glob("*.eml")), reverse=True)


def read_message(name: str) -> EmailMessage | None:
    if name not in message_names():  # only names we listed: no path tricks
        return None
    with open(outbox_dir() / name, "rb") as raw:
        return BytesParser(policy=policy.default).parse(raw)
