"""DKIM signing for SMTP: the signature verifies and covers the one-click headers."""

import base64
import re
import shutil
import subprocess

import dkim
import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import get_connection

from newsletter.emails import PostEmail

from .factories import PublishedPostFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def dkim_key(tmp_path) -> tuple[str, bytes]:
    """A fresh RSA key file, and the DNS TXT record publishing its public half."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a DKIM test key", pytrace=False)
    key_file = tmp_path / "dkim.pem"
    subprocess.run([openssl, "genrsa", "-out", key_file, "2048"], check=True)  # noqa: S603
    public = subprocess.run(  # noqa: S603
        [openssl, "rsa", "-in", key_file, "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return str(key_file), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def dkim_smtp(settings, smtp_sink, dkim_key):
    settings.EMAIL_BACKEND = "newsletter.dkim.DKIMEmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_sink.server_address
    settings.NEWSLETTER_DKIM_DOMAIN = "onprobation.example.org"
    settings.NEWSLETTER_DKIM_SELECTOR = "news2026"
    settings.NEWSLETTER_DKIM_KEY_FILE = dkim_key[0]
    txt = dkim_key[1]

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name == b"news2026._domainkey.onprobation.example.org." else None

    return smtp_sink, dns


def test_post_sent_over_smtp_is_signed_over_the_one_click_headers(dkim_smtp):
    sink, dns = dkim_smtp
    PostEmail(PublishedPostFactory()).for_subscriber(SubscriberFactory()).send()
    [raw] = sink.messages
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dns)
    signature = raw.split(b"\r\n\r\n", 1)[0].split(b"DKIM-Signature:", 1)[1]
    signed = re.search(rb"h=([^;]+);", re.sub(rb"\s+", b"", signature)).group(1)
    names = signed.lower().split(b":")
    for name in (b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"subject"):
        assert name in names
    # A relay that rewrote the unsubscribe link would break the signature.
    head, body = raw.split(b"\r\n\r\n", 1)
    forged_head = re.sub(rb"/unsubscribe/[^/]+/", b"/unsubscribe/forged/", head)
    assert forged_head != head
    assert not dkim.verify(forged_head + b"\r\n\r\n" + body, dnsfunc=dns)


def test_dkim_backend_refuses_to_start_without_its_key(settings):
    settings.NEWSLETTER_DKIM_KEY_FILE = ""
    with pytest.raises(ImproperlyConfigured, match="NEWSLETTER_DKIM_KEY_FILE"):
        get_connection("newsletter.dkim.DKIMEmailBackend")


def test_a_domain_in_its_own_letters_signs_in_its_ascii_form(dkim_smtp, settings):
    """The DNS holds the key under the domain's xn-- form: a domain written in its
    own letters failed every email in the worker (UnicodeEncodeError)."""
    sink, _ = dkim_smtp
    settings.NEWSLETTER_DKIM_DOMAIN = "Bücher.example"
    settings.NEWSLETTER_FROM_EMAIL = "Bücher <news@bücher.example>"
    txt = dkim_smtp[1](b"news2026._domainkey.onprobation.example.org.")

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name == b"news2026._domainkey.xn--bcher-kva.example." else None

    PostEmail(PublishedPostFactory()).for_subscriber(SubscriberFactory()).send()
    [raw] = sink.messages
    assert dkim.verify(raw, dnsfunc=dns)


def test_a_selector_no_dns_name_can_carry_refuses_to_start(settings, dkim_key):
    settings.NEWSLETTER_DKIM_DOMAIN = "onprobation.example.org"
    settings.NEWSLETTER_DKIM_SELECTOR = "news 2026"
    settings.NEWSLETTER_DKIM_KEY_FILE = dkim_key[0]
    with pytest.raises(ImproperlyConfigured, match="NEWSLETTER_DKIM_SELECTOR"):
        get_connection("newsletter.dkim.DKIMEmailBackend")


@pytest.mark.parametrize(
    ("from_email", "aligned"),
    [
        ("On Probation <news@onprobation.example.org>", True),
        ("On Probation <news@letters.onprobation.example.org>", True),
        ("On Probation <news@ONPROBATION.example.org>", True),
        ("On Probation <news@probation-news.example>", False),
    ],
)
def test_a_signature_for_another_domain_than_the_froms_is_a_deploy_warning(
    dkim_smtp, settings, from_email, aligned
):
    """Receivers apply DMARC to the From's domain: a signature for another domain
    verifies and passes nothing, and a domain publishing p=reject has every
    email refused, while the checks said nothing."""
    settings.NEWSLETTER_FROM_EMAIL = from_email
    found = checks.run_checks(include_deployment_checks=True)
    warned = [message for message in found if message.id == "newsletter.W003"]
    assert (not warned) is aligned
    if not aligned:
        assert "probation-news.example" in warned[0].msg
        assert "onprobation.example.org" in warned[0].msg
