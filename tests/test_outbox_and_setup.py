import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from email import policy
from email.parser import BytesParser
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command

from newsletter.emails import PostEmail
from newsletter.models import Subscriber
from posts.demo_content import POSTS
from posts.models import Post

from .factories import PublishedPostFactory, StaffFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def outbox_backend(settings):
    settings.EMAIL_BACKEND = "newsletter.outbox.OutboxBackend"
    return settings.OUTBOX_DIR


def test_outbox_backend_writes_one_eml_file_per_recipient(outbox_backend):
    mail.EmailMessage("Hello", "Body", "from@example.org", ["a@example.org"]).send()
    mail.EmailMessage(
        "Two", "Body", "from@example.org", ["b@example.org", "c@example.org"]
    ).send()
    files = sorted(outbox_backend.glob("*.eml"))
    assert len(files) == 3
    parsed = [BytesParser(policy=policy.default).parse(f.open("rb")) for f in files]
    assert [m["Subject"] for m in parsed].count("Two") == 2


def test_outbox_pages_list_and_render_messages_in_debug(
    client, settings, outbox_backend
):
    settings.DEBUG = True
    reader = SubscriberFactory()
    PostEmail(PublishedPostFactory(title="Derby: Inadequate")).for_subscriber(
        reader
    ).send()
    listing = client.get("/outbox/")
    assert listing.status_code == 200
    assert "Derby: Inadequate" in listing.content.decode()
    assert "read from 1 file in the outbox folder" in listing.content.decode()
    name = next(outbox_backend.glob("*.eml")).name
    page = client.get(f"/outbox/{name}/")
    assert page.status_code == 200
    assert "List-Unsubscribe-Post" in page.content.decode()
    assert client.get("/outbox/../../etc/passwd/").status_code == 404
    assert client.get("/outbox/nope.eml/").status_code == 404
    mail.EmailMessage("Hello", "Body", "from@example.org", ["a@example.org"]).send()
    assert "read from 2 files in" in client.get("/outbox/").content.decode()


def test_the_outbox_shows_an_email_in_standards_mode_its_links_opening_the_window(
    client, settings, outbox_backend
):
    """The preview put <base target="_top"> before the email's <!DOCTYPE>, and a
    browser reads a document that does not start with its doctype in quirks mode:
    the email looked as no reader's mail program shows it."""
    settings.DEBUG = True
    PostEmail(PublishedPostFactory()).for_subscriber(SubscriberFactory()).send()
    name = next(outbox_backend.glob("*.eml")).name
    page = client.get(f"/outbox/{name}/").content.decode()
    shown = html.unescape(re.search(r'srcdoc="([^"]*)"', page)[1])
    assert shown.lstrip().lower().startswith("<!doctype html>")
    head = re.search(r"<head\b[^>]*>(.*?)</head>", shown, re.S | re.I)[1]
    assert '<base target="_top">' in head


def test_outbox_is_not_served_in_production(client, settings, outbox_backend):
    settings.DEBUG = False
    assert client.get("/outbox/").status_code == 404


def test_seed_demo_loads_the_demo_posts_and_is_idempotent():
    first, again = StringIO(), StringIO()
    call_command("seed_demo", stdout=first)
    call_command("seed_demo", stdout=again)
    assert f"Demo content: {len(POSTS)} posts created" in first.getvalue()
    assert "Demo content: 0 posts created" in again.getvalue()
    assert Post.objects.published().count() == len(POSTS) + 1  # and a recent one
    suffolk = Post.objects.get(slug=POSTS[0]["slug"])
    assert "Suffolk" in suffolk.title
    assert suffolk.body_html.startswith("<")


def site_content() -> tuple[int, int, int]:
    return (
        Post.objects.count(),
        get_user_model().objects.count(),
        Subscriber.objects.count(),
    )


@pytest.mark.parametrize(
    "live_site, refusal",
    [
        (
            lambda: PublishedPostFactory(slug="own"),
            "holds 1 post and 0 desk members",
        ),
        (
            lambda: StaffFactory(username="jo", role="Editor"),
            "holds 0 posts and 1 desk member",
        ),
        (lambda: SubscriberFactory(email="sam@news.example.org"), "Nothing changed"),
    ],
    ids=["a-post", "a-desk-member", "a-reader"],
)
def test_seed_demo_on_a_site_with_content_of_its_own_refuses_and_changes_nothing(
    live_site, refusal
):
    """Run on a live site, it published the demo posts, made a Contributor and an
    Editor whose passwords it printed, and confirmed 180 readers at example.org,
    whom the site's next post was emailed to."""
    live_site()
    before = site_content()

    with pytest.raises(CommandError, match="Nothing changed") as refused:
        call_command("seed_demo", stdout=StringIO())

    assert refusal in str(refused.value)
    assert site_content() == before
    assert not Post.objects.filter(slug=POSTS[0]["slug"]).exists()


def test_seed_demo_loads_after_ensure_admin_and_again_over_the_authors_own_post(
    monkeypatch,
):
    """`make run`'s order: the admin first, then the demo, each time it starts."""
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-demo-password")
    call_command("ensure_admin")
    call_command("seed_demo", stdout=StringIO())
    PublishedPostFactory(slug="own")
    SubscriberFactory(email="me@news.example.org")
    before = site_content()

    call_command("seed_demo", stdout=StringIO())

    assert site_content() == before


def test_ensure_admin_creates_the_admin_once(monkeypatch, capsys):
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-demo-password")
    call_command("ensure_admin")
    call_command("ensure_admin")
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser
    assert admin.check_password("a-long-demo-password")


def test_ensure_admin_says_it_set_the_password_from_admin_password(monkeypatch, capsys):
    """Run again with a new ADMIN_PASSWORD, it changes the password: it said the
    password was as before, and to set ADMIN_PASSWORD to change it."""
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-demo-password")
    call_command("ensure_admin")
    monkeypatch.setenv("ADMIN_PASSWORD", "another-long-demo-password")
    capsys.readouterr()

    call_command("ensure_admin")

    assert capsys.readouterr().out == "Admin login: admin / from ADMIN_PASSWORD\n"
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("another-long-demo-password")


@pytest.mark.parametrize("password", ["admin", "12345678", "short"])
def test_ensure_admin_refuses_a_weak_admin_password_and_creates_nobody(
    monkeypatch, password
):
    monkeypatch.setenv("ADMIN_PASSWORD", password)
    with pytest.raises(CommandError, match="ADMIN_PASSWORD is refused"):
        call_command("ensure_admin")
    assert not get_user_model().objects.filter(username="admin").exists()


def test_ensure_admin_keeps_the_admins_password_when_the_new_one_is_weak(
    monkeypatch,
):
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-demo-password")
    call_command("ensure_admin")
    monkeypatch.setenv("ADMIN_PASSWORD", "password")
    with pytest.raises(CommandError):
        call_command("ensure_admin")
    admin = get_user_model().objects.get(username="admin")
    assert admin.check_password("a-long-demo-password")


def test_ensure_admin_with_an_empty_admin_password_prints_the_one_it_made(
    monkeypatch, capsys
):
    monkeypatch.setenv("ADMIN_PASSWORD", "")
    call_command("ensure_admin")
    shown = capsys.readouterr().out.strip().rsplit(" / ", 1)[1]
    assert get_user_model().objects.get(username="admin").check_password(shown)


@pytest.mark.parametrize(
    "taken_away",
    [{"is_active": False}, {"is_superuser": False, "is_staff": False}],
    ids=["deactivated", "no-longer-a-superuser"],
)
def test_ensure_admin_makes_the_admin_it_prints_able_to_log_in_again(
    client, monkeypatch, capsys, taken_away
):
    """An admin deactivated (or made an ordinary user) in the desk: ensure_admin
    printed its login as before, and the login failed."""
    monkeypatch.setenv("ADMIN_PASSWORD", "a-long-demo-password")
    call_command("ensure_admin")
    get_user_model().objects.filter(username="admin").update(**taken_away)
    capsys.readouterr()

    call_command("ensure_admin")

    assert capsys.readouterr().out == (
        "The admin was inactive or not a superuser: it is an active superuser "
        "again.\nAdmin login: admin / from ADMIN_PASSWORD\n"
    )
    client.post(
        "/admin/login/", {"username": "admin", "password": "a-long-demo-password"}
    )
    assert client.get("/admin/auth/user/add/").status_code == 200  # a superuser's


@pytest.mark.parametrize(
    "command",
    [["ensure_admin"], ["seed_demo"], ["post_report", "suffolk"]],
    ids=["ensure_admin", "seed_demo", "post_report"],
)
def test_a_command_before_migrate_says_to_migrate_first(tmp_path, command):
    """Run before `migrate` (a new deployment's order mistaken), it names the step
    missing, not a traceback about a missing table, and creates nothing: seed_demo
    and post_report ended in "no such table"."""
    database = tmp_path / "new.sqlite3"
    result = subprocess.run(  # noqa: S603 (our own command)
        [sys.executable, "manage.py", *command],
        env=os.environ | {"DATABASE_URL": f"sqlite:///{database}"},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not migrated" in result.stderr
    assert "manage.py migrate" in result.stderr


def test_healthz_answers_when_database_and_broker_do(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


def test_healthz_with_the_broker_down_is_a_503_that_names_no_software(
    client, monkeypatch
):
    """A monitor needs to know what failed, not the world which driver raised
    what: the answer said "error: OperationalError" to anyone who asked."""
    from newsletter.celery import app as celery_app

    # Nothing listens on port 1.
    monkeypatch.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    monkeypatch.setitem(celery_app.conf, "broker_transport", None)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"database": "ok", "broker": "unavailable"}


def run_settings(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, json; django.setup(); from django.conf import settings; "
            "print(json.dumps(settings.ANYMAIL))",
        ],
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "newsletter.settings",
            "DJANGO_DEBUG": "1",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_refuses_to_start_without_a_real_secret_key():
    result = run_settings({"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_every_anymail_variable_reaches_the_anymail_setting():
    result = run_settings(
        {
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "token-123",
            "ANYMAIL_WEBHOOK_SECRET": "user:pass",
        }
    )
    assert result.returncode == 0, result.stderr
    assert '"POSTMARK_SERVER_TOKEN": "token-123"' in result.stdout
    assert '"WEBHOOK_SECRET": "user:pass"' in result.stdout


@pytest.mark.parametrize(
    ("value", "setting"),
    [("false", False), ("0", False), ("No", False), ("true", True), ("1", True)],
)
def test_a_yes_or_no_anymail_variable_is_a_boolean_not_a_string(value, setting):
    result = run_settings(
        {"ANYMAIL_POSTMARK_USE_BULK_API": value, "ANYMAIL_REQUESTS_TIMEOUT": "12.5"}
    )
    assert result.returncode == 0, result.stderr
    anymail = json.loads(result.stdout)
    assert anymail["POSTMARK_USE_BULK_API"] is setting
    assert anymail["REQUESTS_TIMEOUT"] == 12.5


@pytest.mark.parametrize(
    "variable",
    [
        {"ANYMAIL_POSTMARK_USE_BULK_API": "sometimes"},
        {"ANYMAIL_REQUESTS_TIMEOUT": "thirty"},
    ],
)
def test_an_anymail_variable_of_the_wrong_kind_refuses_to_start(variable):
    result = run_settings(variable)
    assert result.returncode != 0
    assert next(iter(variable)) in result.stderr


@pytest.mark.parametrize(
    ("mailbox", "starts"),
    [
        ("abmelden@bücher.example", True),  # the domain goes in its xn-- form
        ("désinscription@onprobation.example", False),
        ("unsubscribe <unsubscribe@onprobation.example>", False),
    ],
)
def test_an_unsubscribe_mailbox_a_header_cannot_carry_as_it_is_refuses_to_start(
    mailbox, starts
):
    """List-Unsubscribe must be ASCII for mail programs to read it: a local part
    that is not (unlike a domain, it has no ASCII form) had the header RFC
    2047-encoded, and neither target could be read."""
    result = run_settings({"NEWSLETTER_UNSUBSCRIBE_MAILTO": mailbox})
    assert (result.returncode == 0) is starts, result.stderr
    if not starts:
        assert "NEWSLETTER_UNSUBSCRIBE_MAILTO" in result.stderr


@pytest.mark.parametrize(
    ("variable", "address", "starts"),
    [
        ("NEWSLETTER_FROM_EMAIL", '"Probation, News" <news@onprobation.example>', True),
        ("NEWSLETTER_FROM_EMAIL", "Zoë <news@bücher.example>", True),  # xn-- form
        ("NEWSLETTER_REPLY_TO", "", True),  # a docker/.env line left empty: the From
        # Its <> forgotten: "On Probation newsletter"@… went out.
        ("NEWSLETTER_FROM_EMAIL", "On Probation newsletter@onprobation.example", False),
        (
            "NEWSLETTER_FROM_EMAIL",
            "On Probation <newsletter@onprobation.example",
            False,
        ),
        ("NEWSLETTER_FROM_EMAIL", "newsletter", False),
        # Every email failed in the worker ("Invalid address; only Probation …").
        ("NEWSLETTER_FROM_EMAIL", "Probation, News <news@onprobation.example>", False),
        (
            "NEWSLETTER_REPLY_TO",
            "news@onprobation.example, ed@onprobation.example",
            False,
        ),
        ("NEWSLETTER_REPLY_TO", "désinscription@onprobation.example", False),
    ],
)
def test_a_sender_address_no_receiver_would_take_refuses_to_start(
    variable, address, starts
):
    """Django reads the From and Reply-To only as a worker sends: one it could
    not parse failed every email (a reader's confirmation lost), and one it
    could went out as a header no mail provider accepts."""
    result = run_settings({variable: address})
    assert (result.returncode == 0) is starts, result.stderr
    if not starts:
        assert f"{variable} must be one address" in result.stderr


def test_log_level_is_taken_in_lower_case_too():
    """LOG_LEVEL=debug (as most tools take it) stopped the site from starting, with
    a traceback ending in "Unable to configure root logger"."""
    result = run_settings({"LOG_LEVEL": "debug"})
    assert result.returncode == 0, result.stderr


def test_an_unknown_log_level_refuses_to_start_and_names_the_variable():
    result = run_settings({"LOG_LEVEL": "loud"})
    assert result.returncode != 0
    assert "LOG_LEVEL must be one of" in result.stderr


def test_manage_py_runs_in_debug_for_a_developer():
    """A developer's `manage.py makemigrations --check` needs no DJANGO_DEBUG (the
    image pins it off: tests/test_production.py)."""
    root = Path(__file__).resolve().parent.parent
    env = {"PATH": os.environ["PATH"], "VAR_DIR": os.environ.get("VAR_DIR", "")}
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from django.conf import settings; print(settings.DEBUG)",
        ],
        cwd=root,
        env={k: v for k, v in env.items() if v},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


ROOT = Path(__file__).resolve().parent.parent
# What the worker, beat and the site each print once started.
ALL_THREE_STARTED = (" ready.", "beat: Starting", "Starting development server at")


def processes_in_session(session: int) -> list[int]:
    """Every process of make run's session, in whichever process group it is."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(ProcessLookupError):
                if os.getsid(int(entry.name)) == session:
                    pids.append(int(entry.name))
    return pids


@contextlib.contextmanager
def make_run(tmp_path: Path, port: int):
    """`make run` as installed (by make test: not installed again), on a VAR_DIR of
    its own (a database, broker, outbox and webhook secret), in a session of its own
    as in a terminal; its output in tmp_path/output."""
    with (tmp_path / "output").open("w") as output:
        run = subprocess.Popen(  # noqa: S603 (our own command)
            ["make", "-o", ".venv/.installed", "run", f"PORT={port}"],  # noqa: S607
            cwd=ROOT,
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "VAR_DIR": str(tmp_path / "var"),
                "PYTHONUNBUFFERED": "1",  # runserver's lines as it prints them
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield run
    finally:
        for pid in processes_in_session(run.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait()


def wait_until_all_three_run(run: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + 120
    while not all(started in output.read_text() for started in ALL_THREE_STARTED):
        assert run.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.5)


@pytest.mark.django_db(False)
def test_make_run_stops_the_worker_and_beat_with_a_site_that_cannot_start(tmp_path):
    """`make run` is the site, a worker and beat, ended together: with its port
    taken, runserver's error ends it, and no worker or beat is left running (they
    ran on without a site), each stopped once (its trap signalled the shell
    itself, and ran again thousands of times)."""
    with (
        socket.create_server(("127.0.0.1", 0)) as taken,
        make_run(tmp_path, taken.getsockname()[1]) as run,
    ):
        run.wait(timeout=120)
        left = processes_in_session(run.pid)
    output = (tmp_path / "output").read_text()
    assert "That port is already in use" in output
    assert "make run: one of the three stopped, so the others stop too." in output
    assert run.returncode != 0
    assert not left, "a worker or beat outlived make run"
    assert output.count("Warm shutdown") <= 1


@pytest.mark.django_db(False)
@pytest.mark.parametrize(
    "stop",
    [
        # As a terminal's Ctrl-C does: SIGINT to make's whole process group.
        signal.SIGINT,
        # As an editor's stop button or `kill -- -PGID` does.
        signal.SIGTERM,
    ],
    ids=["ctrl-c", "term-to-the-group"],
)
def test_make_run_stops_all_three_when_stopped(tmp_path, stop):
    """Stopped by a TERM to its whole process group, the worker hung for good after
    "Warm shutdown" (its pool's processes, killed by the TERM too, left the pool's
    lock taken); a Ctrl-C said one of the three had stopped by itself, and make
    said "Error 1"."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with make_run(tmp_path, port) as run:
        wait_until_all_three_run(run, tmp_path / "output")

        os.killpg(run.pid, stop)

        run.wait(timeout=60)
        left = processes_in_session(run.pid)
    output = (tmp_path / "output").read_text()
    assert not left, "a process outlived make run"
    assert output.endswith(
        "make run: stopped the web server, the worker and beat.\n"
    ), output[-2000:]
    assert "one of the three stopped" not in output
    assert "make: ***" not in output


@pytest.mark.django_db(False)
def test_make_run_makes_and_uses_its_webhook_secret_under_var_dir(tmp_path):
    """A first `make run` said "cat: var/webhook-secret: No such file or
    directory", and wrote the secret under var/ whatever VAR_DIR said."""
    with (
        socket.create_server(("127.0.0.1", 0)) as taken,
        make_run(tmp_path, taken.getsockname()[1]) as run,
    ):
        run.wait(timeout=120)
    output = (tmp_path / "output").read_text()
    secret = (tmp_path / "var" / "webhook-secret").read_text().strip()
    assert secret.startswith("dev:")
    assert f"Tracking webhook: http://{secret}@127.0.0.1:" in output
    assert "No such file" not in output
