"""Every email type scores well below SpamAssassin's threshold, offline.

`spamassassin -L -t` runs only the local rules (no DNS or network lists) on the raw
message, as a receiving server would see it before its network checks.
"""

import re
import subprocess
from pathlib import Path

import pytest
from django.test.signals import template_rendered

from posts.demo_content import POSTS

from . import email_types
from .factories import (
    PublishedPostFactory,
)
from .required import program

pytestmark = pytest.mark.django_db

# SpamAssassin marks spam at 5.0; a newsletter should be nowhere near it.
MAX_SCORE = 2.0

# Every email type is three templates here (docs/email.md), one its subject.
EMAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"


@pytest.fixture
def production_like(settings):
    settings.SITE_URL = "https://onprobation.example.org"
    settings.NEWSLETTER_FROM_EMAIL = "On Probation <newsletter@onprobation.example.org>"
    settings.NEWSLETTER_REPLY_TO = settings.NEWSLETTER_FROM_EMAIL


def spam_report(program: str, message) -> tuple[float, str]:
    result = subprocess.run(  # noqa: S603 (our own message, to a fixed program)
        [program, "-L", "-t"],
        input=message.message().as_bytes(linesep="\r\n"),
        capture_output=True,
        timeout=120,
        check=True,
    )
    output = result.stdout.decode("utf-8", "replace")
    score = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", output, re.M)
    assert score, output[-2000:]
    return float(score.group(1)), output


def every_email() -> dict[str, object]:
    longest = max(POSTS, key=lambda demo: len(demo["body"]))
    return email_types.every_email(
        PublishedPostFactory(
            title=longest["title"], excerpt=longest["excerpt"], body=longest["body"]
        )
    )


def test_every_email_type_scores_below_two_with_spamassassin(production_like):
    spamassassin = program(
        "spamassassin", "apt-get install spamassassin (.ci/run installs it)"
    )
    for name, message in every_email().items():
        score, report = spam_report(spamassassin, message)
        assert score < MAX_SCORE, f"{name} scored {score}:\n{report[-3000:]}"


def test_every_email_type_is_among_those_scored(production_like):
    """The test above said it scored every email type, and skipped a commenter's
    confirmation and link to their data, a reader's digest and one-time link:
    an email type added later would have been skipped as silently."""
    types = {
        path.name.removesuffix("-subject.txt")
        for path in EMAIL_TEMPLATES.glob("*-subject.txt")
    }
    rendered = set()

    def seen(sender, template, **kwargs) -> None:
        rendered.add(template.name)

    template_rendered.connect(seen)
    try:
        every_email()
    finally:
        template_rendered.disconnect(seen)

    assert {name for name in types if f"email/{name}-subject.txt" in rendered} == types
