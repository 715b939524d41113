"""The delivery engine's settings that must fit together: a system check error
names the ones that do not (newsletter/checks.py)."""

from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

POSTMARK = "anymail.backends.postmark.EmailBackend"
SMTP = "django.core.mail.backends.smtp.EmailBackend"


def check() -> str:
    """The checks' errors, or '' when they pass."""
    try:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    except SystemCheckError as refused:
        return str(refused)
    return ""


def test_a_claim_timeout_a_live_batch_can_outlast_fails_the_checks(settings):
    # A batch's step: a budget wait (30 s) and a call to Postmark (30 s to
    # connect, 30 s to answer); the claim is renewed once a quarter has passed.
    settings.EMAIL_BACKEND = POSTMARK
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t"}
    settings.NEWSLETTER_SEND_RATE = 50
    settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS = 100
    errors = check()
    assert "newsletter.E003" in errors
    assert "NEWSLETTER_CLAIM_TIMEOUT_SECONDS (100) is too short" in errors
    assert "above 120" in errors

    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t", "REQUESTS_TIMEOUT": 10.0}
    assert check() == ""
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t"}
    settings.NEWSLETTER_SEND_RATE = 0  # no budget: no wait for one
    assert check() == ""
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "t"}
    settings.NEWSLETTER_CLAIM_TIMEOUT_SECONDS = 600  # the default
    assert check() == ""


@pytest.mark.parametrize("timeout, error", [(None, "E004"), (300, "E003")])
def test_an_smtp_server_without_a_timeout_short_enough_fails_the_checks(
    settings, timeout, error
):
    settings.EMAIL_BACKEND = SMTP
    settings.EMAIL_TIMEOUT = timeout
    assert f"newsletter.{error}" in check()

    settings.EMAIL_TIMEOUT = 30  # the default
    assert check() == ""


def test_a_beat_task_set_to_run_every_0_seconds_fails_the_checks(settings):
    # COMMENTS_DIGEST_EVERY_SECONDS=0: the moderators' email, over and over.
    digest = settings.CELERY_BEAT_SCHEDULE["email-comment-digest"]
    settings.CELERY_BEAT_SCHEDULE = {
        **settings.CELERY_BEAT_SCHEDULE,
        "email-comment-digest": {**digest, "schedule": 0},
    }
    errors = check()
    assert "newsletter.E009" in errors
    assert "email-comment-digest is set to run every 0 seconds" in errors

    settings.CELERY_BEAT_SCHEDULE = {
        **settings.CELERY_BEAT_SCHEDULE,
        "email-comment-digest": digest,
    }
    assert check() == ""


@pytest.mark.parametrize(
    "backend",
    [
        "anymail.backends.postmark.Emailbackend",
        "anymail.backends.postmrak.EmailBackend",
    ],
)
def test_an_email_backend_that_does_not_exist_fails_the_checks_naming_it(
    settings, backend
):
    """A typo in EMAIL_BACKEND stopped `manage.py check` (and the deployment's
    check --deploy) with an ImportError's traceback from inside a check."""
    settings.EMAIL_BACKEND = backend
    errors = check()
    assert "newsletter.E013" in errors
    assert f"EMAIL_BACKEND ({backend}) names no email backend" in errors
    # The deployment's checks too, each of which reads the backend.
    found = checks.run_checks(include_deployment_checks=True)
    assert [m.id for m in found].count("newsletter.E013") == 1
