"""DKIM signing for mail sent straight over SMTP (ESPs sign for you through anymail).

Set EMAIL_BACKEND=newsletter.dkim.DKIMEmailBackend with NEWSLETTER_DKIM_DOMAIN,
NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_KEY_FILE (a PEM RSA private key whose
public half is published at <selector>._domainkey.<domain>).
"""

import smtplib
from pathlib import Path

import dkim
import dkim.crypto
import idna
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.smtp import EmailBackend as SMTPEmailBackend
from django.core.mail.message import sanitize_address

# What a receiver shows or acts on. Gmail and Yahoo honour one-click unsubscribe
# only when List-Unsubscribe-Post is signed too, which common signers leave out.
SIGNED_HEADERS = [
    b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
    b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version", b"content-type",
]  # fmt: skip


def dns_name(variable: str, value: str) -> str:
    """A domain or selector as DNS holds it, in its ASCII (xn--) form (RFC 6376
    3.1): the signature names the key's TXT record by it, and a name in its own
    letters failed every email in the worker."""
    try:
        return idna.encode(value, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise ImproperlyConfigured(
            f"{variable} must be a DNS name, as in <selector>._domainkey.<domain>, "
            f"not {value!r}."
        ) from None


def sign(raw: bytes, *, domain: str, selector: str, private_key: bytes) -> bytes:
    """The message with a DKIM-Signature header in front."""
    signature = dkim.sign(
        raw,
        selector=selector.encode("ascii"),
        domain=domain.encode("ascii"),
        privkey=private_key,
        include_headers=SIGNED_HEADERS,
        # Relaxed body canonicalisation survives relays that re-wrap whitespace.
        canonicalize=(b"relaxed", b"relaxed"),
    )
    return signature + raw


class DKIMEmailBackend(SMTPEmailBackend):
    """Django's SMTP backend, signing each message before it goes out."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        domain = settings.NEWSLETTER_DKIM_DOMAIN
        selector = settings.NEWSLETTER_DKIM_SELECTOR
        key_file = settings.NEWSLETTER_DKIM_KEY_FILE
        if not (domain and selector and key_file):
            raise ImproperlyConfigured(
                "DKIMEmailBackend needs NEWSLETTER_DKIM_DOMAIN, "
                "NEWSLETTER_DKIM_SELECTOR and NEWSLETTER_DKIM_KEY_FILE."
            )
        self.domain = dns_name("NEWSLETTER_DKIM_DOMAIN", domain)
        self.selector = dns_name("NEWSLETTER_DKIM_SELECTOR", selector)
        self.private_key = Path(key_file).read_bytes()
        # Here, not at the first message: each would fail alike (a public key or
        # a certificate in the file).
        try:
            dkim.crypto.parse_pem_private_key(self.private_key)
        except dkim.crypto.UnparsableKeyError:
            raise ImproperlyConfigured(
                f"NEWSLETTER_DKIM_KEY_FILE ({key_file}) is not a PEM RSA private key."
            ) from None

    def _send(self, email_message) -> bool:
        # As Django's own _send, with the signature added to the bytes it sends.
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email = sanitize_address(email_message.from_email, encoding)
        recipients = [
            sanitize_address(address, encoding)
            for address in email_message.recipients()
        ]
        raw = sign(
            email_message.message().as_bytes(linesep="\r\n"),
            domain=self.domain,
            selector=self.selector,
            private_key=self.private_key,
        )
        try:
            self.connection.sendmail(from_email, recipients, raw)
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True
