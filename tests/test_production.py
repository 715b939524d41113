"""Production as the image ships it, started on this machine and driven through its
proxy: nginx with docker/nginx.conf.template, in front of docker/Dockerfile's gunicorn
command with DEBUG off and a real secret key, on PostgreSQL (a database of its own),
Redis (a server of its own) and a real Celery worker."""

import email.policy
import getpass
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
import psycopg
import pytest
import trustme
import yaml
from django.test import RequestFactory

from newsletter.gunicorn_conf import MEMORY

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
SETTINGS = "newsletter.settings"

# What the forged tracking webhook gets: 404 where the provider's route is not
# served, else anymail's refusal of a request without the webhook secret.
WEBHOOK_REFUSED = {400, 401, 403, 404}
SUBSCRIBE_LIMIT_PER_CLIENT = 3
SLOW_CLIENTS = 20
SLOW_SECONDS = 10


def image_command() -> list[str]:
    """The gunicorn command of docker/Dockerfile's CMD (compose's web runs it too)."""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("CMD "):
            return json.loads(line.removeprefix("CMD "))
    raise AssertionError("docker/Dockerfile has no CMD line")


def production_settings(*code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Our own interpreter loading our own settings.
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", "import django; django.setup()\n" + "\n".join(code)],
        env={"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": SETTINGS} | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


# What docker/.env must hold for compose to start at all.
DOTENV_REQUIRED = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
}


def compose_environment(service: str, dotenv: dict[str, str]) -> dict[str, str]:
    """What docker/compose.yaml gives `service`'s containers with `dotenv` as
    docker/.env: its environment, each ${NAME:-default} and ${NAME:?message} read
    from docker/.env as compose reads it, over docker/.env itself where the
    service takes it as its env_file."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    definition = compose["services"][service]
    given = {
        name: compose_interpolated(str(value), dotenv)
        for name, value in definition.get("environment", {}).items()
    }
    return (dotenv if "env_file" in definition else {}) | given


def compose_interpolated(text: str, dotenv: dict[str, str]) -> str:
    """text with each ${NAME:-default} and ${NAME:?message} read from `dotenv` as
    docker/.env, as compose reads them."""

    def interpolated(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if dotenv.get(name):
            return dotenv[name]
        assert kind != "?", f"compose refuses to start without {name}: {rest}"
        return rest or ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", interpolated, text)


def test_debug_is_off_when_nobody_asks_for_it():
    key = secrets.token_urlsafe(50)
    result = production_settings(
        "from django.conf import settings; print(settings.DEBUG)",
        env={"DJANGO_SECRET_KEY": key},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_image_without_a_secret_key_refuses_to_start():
    result = production_settings(env={})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("proxies", "believed"), [("0", False), ("1", True)], ids=["direct", "proxied"]
)
def test_a_client_says_it_came_over_https_only_through_a_proxy(
    tmp_path, proxies, believed
):
    """X-Forwarded-Proto was believed with no proxy in front to set it: a client
    talking straight to gunicorn over plain http said https, and was answered
    over http, with no redirect to https."""
    result = production_settings(
        "from django.test import Client",
        "response = Client().get('/healthz', headers={'X-Forwarded-Proto': 'https'})",
        "print(response.status_code, response.get('Location'),"
        " 'Strict-Transport-Security' in response)",
        env={
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "NEWSLETTER_TRUSTED_PROXIES": proxies,
            "VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr
    status, location, hsts = result.stdout.split()
    if believed:
        assert (status, location, hsts) == ("200", "None", "True")
    else:
        assert (status, location, hsts) == (
            "301",
            "https://testserver/healthz",
            "False",
        )


def test_neither_the_image_nor_compose_supplies_a_secret_key_and_both_pin_debug_off():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    compose = (DOCKER / "compose.yaml").read_text()
    # Only collectstatic, at build time, runs with a throwaway random key.
    assert not re.search(r"^\s*ENV\b[^#]*DJANGO_SECRET_KEY", dockerfile, re.M)
    # manage.py defaults to debug for a developer's checkout: the image pins it off.
    assert re.search(r"^\s*ENV\b[^#]*DJANGO_DEBUG=0\b", dockerfile, re.M)
    assert not re.search(r"^[^#]*DJANGO_DEBUG=1", dockerfile, re.M)
    # The image's static files are its own: VAR_DIR is a volume, which would keep
    # the first build's files over every later one's.
    assert re.search(r"^\s*STATIC_ROOT=/app/", dockerfile, re.M)
    assert "VAR_DIR=/var/lib/newsletter" in dockerfile
    assert "DJANGO_SECRET_KEY: ${DJANGO_SECRET_KEY:?" in compose
    assert 'DJANGO_DEBUG: "0"' in compose
    assert 'NEWSLETTER_TRUSTED_PROXIES: "1"' in compose
    # Only nginx is published; gunicorn is reached through it.
    assert compose.count("ports:") == 1
    assert 'ports: ["80:80", "443:443"]' in compose


def test_docker_env_names_the_database_and_broker_but_not_debug_or_the_proxies():
    """compose set DATABASE_URL and REDIS_URL over docker/.env: an operator's
    managed PostgreSQL or shared Redis there (more workers on more machines) was
    quietly not used. Compose's own services stay the default; debug and the one
    proxy in front, which the shipped stack fixes, stay as they are."""
    dotenv = {
        "DATABASE_URL": "postgres://news:secret@db.example.org:5432/news",
        "REDIS_URL": "redis://queue.example.org:6379/2",
        "DJANGO_DEBUG": "1",
        "NEWSLETTER_TRUSTED_PROXIES": "3",
    }
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for service in ("migrate", "web", "worker", "beat"):
        given = compose_environment(service, DOTENV_REQUIRED | dotenv)
        assert given["DATABASE_URL"] == dotenv["DATABASE_URL"], service
        assert given["REDIS_URL"] == dotenv["REDIS_URL"], service
        assert given["DJANGO_DEBUG"] == "0", service
        assert given["NEWSLETTER_TRUSTED_PROXIES"] == "1", service
        default = compose_environment(service, DOTENV_REQUIRED)
        assert urlsplit(default["DATABASE_URL"]).hostname in services, service
        assert urlsplit(default["REDIS_URL"]).hostname in services, service


def test_docker_env_cannot_move_the_images_static_files_or_the_shared_volume():
    """compose did not pin them: STATIC_ROOT in docker/.env named a folder with no
    collected files (no manifest: every page a 500, /healthz 200), and MEDIA_ROOT
    or VAR_DIR put uploads outside the volume nginx serves them from."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    image = dict(re.findall(r"\b(STATIC_ROOT|VAR_DIR)=(\S+)", dockerfile))
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    [volume] = compose["x-app"]["volumes"]
    shared = volume.split(":")[1]
    assert image["VAR_DIR"] == shared
    nginx_serves = compose["services"]["proxy"]["environment"]["NEWSLETTER_MEDIA_ROOT"]
    assert f"appdata:{shared}:ro" in compose["services"]["proxy"]["volumes"]
    dotenv = {
        "STATIC_ROOT": "/srv/static",
        "MEDIA_ROOT": "/srv/media",
        "VAR_DIR": "/srv/newsletter",
    }
    for service in ("migrate", "web", "worker", "beat"):
        given = compose_environment(service, DOTENV_REQUIRED | dotenv)
        assert given["STATIC_ROOT"] == image["STATIC_ROOT"], service
        assert given["VAR_DIR"] == shared, service
        assert given["MEDIA_ROOT"] == nginx_serves, service
    assert nginx_serves.startswith(f"{shared}/")


def test_compose_names_no_email_backend_of_its_own():
    """Its default was the dev outbox: a deployment that forgot EMAIL_BACKEND
    mailed no one and kept every email on disk. Now compose asks for one."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    backend = compose["x-app"]["environment"]["EMAIL_BACKEND"]
    assert backend.startswith("${EMAIL_BACKEND:?"), backend


def image_healthcheck() -> str:
    """The Python the image's HEALTHCHECK runs (docker/Dockerfile)."""
    dockerfile = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    [healthcheck] = re.findall(r"(?m)^HEALTHCHECK\b.*", dockerfile)
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"], command
    return command[2]


def test_the_image_says_whether_its_site_answers_and_the_other_roles_say_their_own():
    """The image had no HEALTHCHECK: run without compose (or by another
    orchestrator), nothing told a web container whose site had stopped answering
    from a healthy one. The worker, beat and the migration run the same image,
    where no site listens: each has its own check, or none."""
    assert "http://127.0.0.1:8000/healthz" in image_healthcheck()
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert "healthcheck" not in services["web"]  # the image's own
    assert "inspect ping" in str(services["worker"]["healthcheck"]["test"])
    for role in ("beat", "migrate"):
        assert services[role]["healthcheck"] == {"disable": True}, role


def run_image_healthcheck(
    answer: Callable[[http.server.BaseHTTPRequestHandler], None], env: dict[str, str]
) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK, asking a site on this machine that answers each
    GET with `answer`."""

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer(self)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = image_healthcheck().replace(
            "http://127.0.0.1:8000", f"http://127.0.0.1:{server.server_port}"
        )
        return subprocess.run(  # noqa: S603 (our own interpreter)
            [sys.executable, "-c", code],
            env={"PATH": os.environ["PATH"]} | env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("allowed_hosts", ["news.example.org,localhost", "*"])
def test_the_images_healthcheck_asks_by_a_name_the_site_serves(settings, allowed_hosts):
    """It asked by DJANGO_ALLOWED_HOSTS' first entry: "*" (the site serving any
    name) is no name, Django answered 400, and compose's proxy, waiting for a
    healthy site, never started. SITE_URL names the site (check --deploy makes
    sure it is served)."""
    asked = []

    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        asked.append(request.headers["Host"])
        request.send_response(200)
        request.end_headers()

    result = run_image_healthcheck(
        answer,
        {"DJANGO_ALLOWED_HOSTS": allowed_hosts, "SITE_URL": "https://news.example.org"},
    )
    assert result.returncode == 0, result.stderr
    settings.ALLOWED_HOSTS = allowed_hosts.split(",")
    [host] = asked
    # Django's own reading of the Host header: DisallowedHost (a 400) if not served.
    assert RequestFactory().get("/healthz", HTTP_HOST=host).get_host() == host


def test_the_images_healthcheck_calls_a_redirect_unhealthy():
    """It followed redirects: a site sending /healthz to https (the proxy header
    not believed) or to a login page was called healthy by whatever that page
    answered."""

    def answer(request: http.server.BaseHTTPRequestHandler) -> None:
        if request.path == "/healthz":
            request.send_response(301)
            request.send_header("Location", "/elsewhere")
        else:
            request.send_response(200)
        request.end_headers()

    result = run_image_healthcheck(answer, {"SITE_URL": "https://news.example.org"})
    assert result.returncode != 0
    assert "301" in result.stderr


def test_stopping_the_worker_lets_the_batch_in_hand_finish_before_docker_kills_it():
    """SIGTERM is Celery's warm shutdown; docker's SIGKILL follows after the grace
    period (10 s unless set), and leaves the batch being sent uncertain."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    grace = compose["services"]["worker"].get("stop_grace_period", "10s")
    number, unit = re.fullmatch(r"(\d+)([sm])", grace).groups()
    assert int(number) * {"s": 1, "m": 60}[unit] >= 120


@pytest.mark.parametrize(("level", "logged"), [("WARNING", "WARNING"), ("", "INFO")])
def test_the_worker_and_beat_log_at_the_level_docker_env_gives_the_site(level, logged):
    """LOG_LEVEL set the site's level alone: Celery logs at its command's
    --loglevel, which compose fixed at INFO, so LOG_LEVEL=DEBUG showed nothing more
    of a send, and LOG_LEVEL=WARNING left a line for every task of every batch."""
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for role in ("worker", "beat"):
        command = compose_interpolated(services[role]["command"], {"LOG_LEVEL": level})
        assert f"--loglevel={logged}" in command.split(), role


def test_every_long_running_service_is_started_again_when_it_exits():
    """A Celery worker exits for good on some broker failures (a Redis restart in
    make chaos): left stopped, nothing was sent until someone noticed. The one-off
    migration runs once."""
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    restarts = {
        name: service.get("restart", "no") for name, service in services.items()
    }
    assert restarts.pop("migrate") == "no"
    assert set(restarts.values()) == {"unless-stopped"}, restarts


def test_a_worker_started_before_redis_waits_for_it():
    """Left to broker_connection_retry, Celery 5 warns at every worker start
    (CPendingDeprecationWarning) that Celery 6 will stop retrying then: a worker
    started before Redis is up must wait for it, not exit."""
    from newsletter.celery import app as celery_app

    assert celery_app.conf.broker_connection_retry_on_startup is True


def nginx_seconds(value: str) -> int:
    """An nginx time ("60s", "2m", "90") in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def gunicorn_print_config(**env: str) -> subprocess.CompletedProcess:
    """The image's command with --print-config, which reads its settings and stops."""
    command = image_command()
    return subprocess.run(  # noqa: S603 (the image's own command)
        [str(BIN / command[0]), *command[1:-1], "--print-config", command[-1]],
        # It loads the site too, which starts only with a secret key.
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            **env,
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def gunicorn_settings(**env: str) -> dict[str, str]:
    """gunicorn's settings as the image's command runs it (--print-config)."""
    printed = gunicorn_print_config(**env)
    assert printed.returncode == 0, printed.stderr
    return dict(re.findall(r"^(\w+)\s*=\s*(.*)$", printed.stdout, re.M))


def test_web_concurrency_of_no_worker_refuses_to_start_naming_it():
    """WEB_CONCURRENCY=0 started gunicorn with no worker, and the site never
    answered. (A word or a number below 0 gunicorn refuses itself, reading the
    variable before the image's config file.)"""
    result = gunicorn_print_config(WEB_CONCURRENCY="0")
    assert result.returncode != 0
    assert "WEB_CONCURRENCY must be 1 or more, not '0'" in result.stderr


def test_web_concurrency_sets_the_number_of_workers():
    assert gunicorn_settings(WEB_CONCURRENCY="5")["workers"] == "5"
    assert gunicorn_settings()["workers"] == "3"


def nginx_read_timeouts() -> list[float]:
    """Every proxy_read_timeout of the nginx config, in seconds (60 where none)."""
    template = (DOCKER / "nginx.conf.template").read_text()
    return [
        nginx_seconds(value)
        for value in re.findall(r"^\s*proxy_read_timeout\s+(\S+);", template, re.M)
    ] or [60]


def test_nginx_gives_up_on_a_slow_request_before_gunicorn_kills_its_worker():
    """gunicorn killed a worker busy for 30 s (its default), mid-way through a slow
    desk request that nginx would have waited 60 s for: the author got nginx's 502
    and half an import. gunicorn's timeout, as the image's command sets it, must
    outlast every proxy_read_timeout in the nginx config (60 s where none is set)."""
    gunicorn_timeout = int(gunicorn_settings()["timeout"])
    nginx_timeouts = nginx_read_timeouts()
    assert max(nginx_timeouts) < gunicorn_timeout, (nginx_timeouts, gunicorn_timeout)


@pytest.mark.skipif(not os.path.isdir(MEMORY), reason="no /dev/shm (macOS)")
def test_gunicorn_workers_say_they_are_alive_in_memory_not_on_the_images_disk():
    """Each worker touches a file in worker_tmp_dir every second; gunicorn's
    default, /tmp, is the container's overlay on disk, where a slow touch got a
    healthy worker killed as dead (gunicorn's FAQ advises /dev/shm)."""
    assert gunicorn_settings()["worker_tmp_dir"] == MEMORY


def test_a_deploy_lets_the_requests_nginx_still_waits_for_finish():
    """Stopping the site, gunicorn gave its requests 30 s (its graceful_timeout) and
    compose gave gunicorn 10 s before killing it: a desk request nginx would wait
    60 s for was cut off by any deploy."""
    graceful = int(gunicorn_settings()["graceful_timeout"])
    assert graceful >= max(nginx_read_timeouts())
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    grace = compose["services"]["web"].get("stop_grace_period", "10s")
    assert nginx_seconds(grace) > graceful, (grace, graceful)


def dockerignore_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as docker reads it (moby/patternmatcher): Go's
    filepath.Match, where * and ? stop at a slash, and ** crosses any number of
    folders."""
    regex = ""
    for part in re.split(r"(\*\*/|/\*\*$|\*\*|\*|\?)", pattern):
        regex += {
            "**/": "(.*/)?",
            "/**": "(/.*)?",
            "**": ".*",
            "*": "[^/]*",
            "?": "[^/]",
        }.get(part, re.escape(part))
    return re.compile(regex)


def sent_to_docker(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Whether the build context holds path: the last rule that matches it, or
    one of the folders above it, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    sent = True
    for excluded, pattern in rules:
        if any(pattern.fullmatch(candidate) for candidate in candidates):
            sent = not excluded
    return sent


def test_the_build_context_holds_what_the_image_copies_and_no_readers_data():
    """Without a .dockerignore, `compose build` sent the whole checkout to docker:
    var/ (the dev outbox, readers' emails in it, the dev webhook secret, the
    SQLite database), .venv and .git, a layer away from anyone with the image."""
    rules = []
    ignore = ROOT / ".dockerignore"
    # Without one, docker sends everything.
    for line in (ignore.read_text() if ignore.exists() else "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            excluded = not line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!")).lstrip("/")
            rules.append((excluded, dockerignore_pattern(pattern)))
    copied = []
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied += [word for word in line.split()[1:-1] if not word.startswith("-")]
    shipped = subprocess.run(  # noqa: S603
        ["git", "ls-files", "--", *copied],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(shipped) > len(copied)
    assert [path for path in shipped if not sent_to_docker(path, rules)] == []

    kept_out = [
        "var/db.sqlite3",
        "var/outbox/1733400000.eml",
        "var/webhook-secret",
        "db.sqlite3",
        "newsletter/db.sqlite3-journal",
        ".venv/bin/python",
        ".git/config",
        "node_modules/axe-core/axe.min.js",
        "tests/browser/node_modules/axe-core/axe.min.js",
        "docker/.env",
        "docker/tls/privkey.pem",
        "newsletter/__pycache__/settings.cpython-312.pyc",
    ]
    assert [path for path in kept_out if sent_to_docker(path, rules)] == []


# The stack ------------------------------------------------------------------------


def program(name: str, package: str) -> str:
    """The path of a program the stack needs: CI fails without it, a developer's
    machine skips."""
    found = shutil.which(name, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")
    if found is None:
        message = f"{name} is needed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


# Ports free_port handed out in this run.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, and none handed out before: two asked for one
    after the other, neither yet bound, may be the same (nginx then took its HTTP
    and HTTPS listens for one, and refused to start, failing a CI run)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def scratch_database(url: str, name: str) -> tuple[str, str]:
    """A new empty database beside the suite's: its URL, and the server's own URL."""
    parts = urlsplit(url)
    server = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), server


class Stack:
    """The running stack: where to reach nginx, and what everyone logged."""

    def __init__(self, folder: Path, port: int, tls: ssl.SSLContext, env: dict):
        self.folder, self.port, self.tls, self.env = folder, port, tls, env
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], **env: str) -> None:
        # gunicorn's access log is its standard output; errors go to the other file.
        with (
            (self.folder / f"{name}.log").open("wb") as out,
            (self.folder / f"{name}-errors.log").open("wb") as errors,
        ):
            self.processes[name] = subprocess.Popen(  # noqa: S603 (our own programs)
                command,
                cwd=ROOT,
                env=self.env | env,
                stdout=out,
                stderr=errors,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def output(self, name: str) -> str:
        """The end of what name wrote, for a failure's message."""
        errors = (self.folder / f"{name}-errors.log").read_text(errors="replace")
        return f"{name}:\n{self.log(name)[-2000:]}{errors[-3000:]}"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def connection(self, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.port,
            context=self.tls,
            source_address=(source, 0),
            timeout=10,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        source: str = "127.0.0.1",
        headers: dict | None = None,
        body: str | None = None,
    ) -> tuple[int, http.client.HTTPMessage, str]:
        connection = self.connection(source)
        try:
            connection.request(
                method,
                path,
                body=body,
                headers={"Host": f"localhost:{self.port}"} | (headers or {}),
            )
            response = connection.getresponse()
            return response.status, response.headers, response.read().decode()
        finally:
            connection.close()

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + 40
        for _ in range(400):
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"stopped: {self.output(name)}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        logs = "\n".join(self.output(name) for name in self.processes)
        raise AssertionError(f"/healthz never answered 200 through nginx:\n{logs}")


def render_nginx(
    folder: Path, variables: dict[str, str], dotenv: dict[str, str] | None = None
) -> Path:
    """docker/nginx.conf.template rendered as compose's nginx renders it (envsubst
    of the names its NGINX_ENVSUBST_FILTER matches, with compose's values, `dotenv`
    as docker/.env, under this machine's `variables`) and included as the image's
    nginx.conf includes it."""
    proxy = compose_environment("proxy", dotenv or {})
    rendered = re.compile(proxy["NGINX_ENVSUBST_FILTER"])
    variables = {k: v for k, v in proxy.items() if rendered.match(k)} | variables
    names = " ".join(f"${{{name}}}" for name in variables)
    template = (DOCKER / "nginx.conf.template").read_text()
    site = subprocess.run(  # noqa: S603
        [program("envsubst", "gettext-base"), names],
        input=template,
        env={"PATH": os.environ["PATH"], **variables},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (folder / "site.conf").write_text(site)
    main = folder / "nginx.conf"
    # The nginx image's own nginx.conf, with this test's paths; its workers run as
    # this test's user, who owns the uploads in the test's private folder (compose's
    # nginx reads a volume whose files the site writes readable to all).
    main.write_text(
        f"daemon off;\n"
        f"user {getpass.getuser()};\n"
        f"worker_processes 1;\n"
        f"pid {folder}/nginx.pid;\n"
        f"error_log {folder}/nginx-error.log notice;\n"
        f"events {{ worker_connections 1024; }}\n"
        f"http {{\n"
        f"    include /etc/nginx/mime.types;\n"
        f"    default_type application/octet-stream;\n"
        f'    log_format main \'$remote_addr - $remote_user [$time_local] "$request" '
        f'$status $body_bytes_sent "$http_referer" "$http_user_agent"\';\n'
        f"    access_log {folder}/nginx-default-access.log main;\n"
        f"    sendfile on;\n"
        f"    keepalive_timeout 65;\n"
        f"    client_body_temp_path {folder}/client_body;\n"
        f"    proxy_temp_path {folder}/proxy;\n"
        f"    include {folder}/site.conf;\n"
        f"}}\n"
    )
    return main


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    nginx = program("nginx", "nginx-light")
    redis_server = program("redis-server", "redis-server")
    suite_database = os.environ.get("DATABASE_URL", "")
    if not suite_database.startswith("postgres"):
        pytest.skip("production runs on PostgreSQL: set DATABASE_URL to one")
    folder = tmp_path_factory.mktemp("production")

    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    (folder / "tls").mkdir()
    (folder / "tls" / "fullchain.pem").write_bytes(
        b"".join(pem.bytes() for pem in certificate.cert_chain_pems)
    )
    certificate.private_key_pem.write_to_path(folder / "tls" / "privkey.pem")
    tls = ssl.create_default_context()
    authority.configure_trust(tls)

    https_port = free_port()
    database_name = f"{dj_database_url.parse(suite_database)['NAME']}_production"
    database, server = scratch_database(suite_database, database_name)
    redis_port = free_port()
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "localhost",
        "SITE_URL": f"https://localhost:{https_port}",
        "DATABASE_URL": database,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "NEWSLETTER_TRUSTED_PROXIES": "1",
        "ANYMAIL_WEBHOOK_SECRET": "tracking:" + secrets.token_urlsafe(24),
        "NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT": str(SUBSCRIBE_LIMIT_PER_CLIENT),
        "VAR_DIR": str(folder / "var"),
        "OUTBOX_DIR": str(folder / "outbox"),
    }
    running = Stack(folder, https_port, tls, env)
    try:
        # A scratch Redis: loopback only, nothing saved.
        scratch = f"--port {redis_port} --bind 127.0.0.1 --appendonly no".split()
        running.start("redis", [redis_server, *scratch, "--save", ""])
        # What the image's build and compose's migrate service do, side by side.
        steps = [
            subprocess.Popen(  # noqa: S603 (our own manage.py)
                [sys.executable, "manage.py", *step, "--noinput"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for step in (["collectstatic"], ["migrate"])
        ]
        for step in steps:
            output = step.communicate(timeout=120)[0]
            assert step.returncode == 0, output
        gunicorn_port = free_port()
        running.start(
            "gunicorn",
            image_command(),
            GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{gunicorn_port}",
        )
        # compose's worker, with one process on this shared machine.
        running.start(
            "worker",
            [str(BIN / "celery"), "-A", "newsletter", "worker", "--concurrency=1"],
        )
        nginx_conf = render_nginx(
            folder,
            {
                "NGINX_HTTP_PORT": f"127.0.0.1:{free_port()}",
                "NGINX_HTTPS_PORT": f"127.0.0.1:{https_port}",
                "NEWSLETTER_UPSTREAM": f"127.0.0.1:{gunicorn_port}",
                "NEWSLETTER_MEDIA_ROOT": str(folder / "var" / "media"),
                "NGINX_TLS_DIR": str(folder / "tls"),
                "NGINX_ACCESS_LOG": str(folder / "nginx-access.log"),
            },
        )
        running.start("nginx", [nginx, "-c", str(nginx_conf), "-e", "stderr"])
        running.wait_until_healthy()
        yield running
    finally:
        running.stop()
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(
                f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'
            )


def subscribe(stack: Stack, address: str, *, source: str, forwarded_for: str = ""):
    """The subscribe form, fetched and posted as a browser at source does."""
    status, headers, page = stack.request("GET", "/subscribe/", source=source)
    assert status == 200
    cookie = re.search(r"csrftoken=([^;]+)", headers["Set-Cookie"])[1]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    extra = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return stack.request(
        "POST",
        "/subscribe/",
        source=source,
        body=f"csrfmiddlewaretoken={token}&email={address}",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookie}",
            "Origin": f"https://localhost:{stack.port}",
        }
        | extra,
    )[0]


def proxy_alone(folder: Path, dotenv: dict[str, str] | None = None) -> Stack:
    """nginx with docker/nginx.conf.template and the site down: nothing listens at
    its upstream. Started, and accepting connections."""
    nginx = program("nginx", "nginx-light")
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    (folder / "tls").mkdir()
    (folder / "tls" / "fullchain.pem").write_bytes(
        b"".join(pem.bytes() for pem in certificate.cert_chain_pems)
    )
    certificate.private_key_pem.write_to_path(folder / "tls" / "privkey.pem")
    tls = ssl.create_default_context()
    authority.configure_trust(tls)
    port = free_port()
    nginx_conf = render_nginx(
        folder,
        {
            "NGINX_HTTP_PORT": f"127.0.0.1:{free_port()}",
            "NGINX_HTTPS_PORT": f"127.0.0.1:{port}",
            "NEWSLETTER_UPSTREAM": f"127.0.0.1:{free_port()}",
            "NEWSLETTER_MEDIA_ROOT": str(folder / "media"),
            "NGINX_TLS_DIR": str(folder / "tls"),
            "NGINX_ACCESS_LOG": str(folder / "nginx-access.log"),
        },
        dotenv,
    )
    proxy = Stack(folder, port, tls, {"PATH": os.environ["PATH"]})
    proxy.start("nginx", [nginx, "-c", str(nginx_conf), "-e", "stderr"])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if time.monotonic() > deadline:
                proxy.stop()
                raise AssertionError(proxy.output("nginx")) from None
            time.sleep(0.1)


@pytest.mark.production
def test_no_token_of_a_request_that_fails_in_nginx_reaches_its_error_log(tmp_path):
    """nginx cannot redact its error log, and it named each request it failed by
    its request line, the upstream's address and the Referer: a reader's link
    followed while the site was down, or a body too large. With the site down
    (nothing listens at the upstream), neither reaches the error log; the
    redacted access log still records both."""
    proxy = proxy_alone(tmp_path)
    tokens = [secrets.token_urlsafe(24) for _ in range(3)]
    try:
        answer = proxy.request(
            "GET",
            f"/unsubscribe/{tokens[0]}/",
            headers={"Referer": f"https://localhost/preferences/{tokens[1]}/"},
        )
        assert answer[0] == 502
        too_large = proxy.request("POST", f"/r/{tokens[2]}/", body="x" * 2**21)
        assert too_large[0] == 413
        # nginx logs a request once its connection is closed, a moment later.
        logged = [
            '"GET /unsubscribe/[redacted] HTTP/1.1" 502',
            '"POST /r/[redacted] HTTP/1.1" 413',
        ]
        deadline = time.monotonic() + 10
        while not all(line in proxy.log("nginx-access") for line in logged):
            assert time.monotonic() < deadline, proxy.log("nginx-access")
            time.sleep(0.1)
    finally:
        proxy.stop()
    # What nginx writes to stderr (the image's error log), and to the file the
    # image's nginx.conf names.
    for name in ("nginx-errors", "nginx-error"):
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert [token for token in tokens if token in log] == [], f"{name}:\n{log}"


SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
)


def security_header_counts(headers: http.client.HTTPMessage) -> dict[str, int]:
    """How many times each security header is sent (1 is right)."""
    return {name: len(headers.get_all(name) or []) for name in SECURITY_HEADERS}


@pytest.mark.production
def test_nginxs_own_error_pages_carry_the_security_headers(tmp_path):
    """With the site down, or a body too large, nginx answers with its own page:
    no HSTS, CSP, X-Frame-Options or nosniff, where every page of the site has
    them (a framed or sniffed error page, and HSTS missing from it)."""
    proxy = proxy_alone(tmp_path)
    try:
        down = proxy.request("GET", "/subscribe/")
        too_large = proxy.request("POST", "/subscribe/", body="x" * 2**21)
        missing_upload = proxy.request("GET", "/media/posts/missing.png")
    finally:
        proxy.stop()
    once = dict.fromkeys(SECURITY_HEADERS, 1)
    for (status, headers, _), expected in [
        (down, 502),
        (too_large, 413),
        (missing_upload, 404),
    ]:
        assert status == expected
        assert security_header_counts(headers) == once, expected
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "max-age=" in headers["Strict-Transport-Security"]


def answered(proxy: Stack, host: str) -> int | None:
    """The status nginx answers a request for host with, or None where it closes
    the connection unanswered."""
    try:
        return proxy.request("GET", "/", headers={"Host": host})[0]
    except http.client.RemoteDisconnected:
        return None


@pytest.mark.production
@pytest.mark.parametrize(
    ("allowed_hosts", "served", "refused"),
    [
        ("", ["localhost", "LOCALHOST:443"], ["203.0.113.9", "localhost.evil"]),
        (
            "news.example.org, .example.net",
            ["news.example.org", "example.net", "www.example.net"],
            ["localhost", "example.org", "evilexample.net", "example.net.evil"],
        ),
        ("*", ["anything.example"], []),
    ],
    ids=["default", "names", "any"],
)
def test_nginx_passes_the_site_only_the_names_it_serves(
    tmp_path, allowed_hosts, served, refused
):
    """A request for a name the site does not serve (a scanner at the address,
    a forged Host) reached gunicorn, which logged each as an error with its
    traceback: nginx closes it unanswered, as DJANGO_ALLOWED_HOSTS would refuse."""
    proxy = proxy_alone(
        tmp_path, {"DJANGO_ALLOWED_HOSTS": allowed_hosts} if allowed_hosts else {}
    )
    try:
        # The site is down: a name passed on is nginx's 502.
        assert {host: answered(proxy, host) for host in served} == dict.fromkeys(
            served, 502
        )
        assert {host: answered(proxy, host) for host in refused} == dict.fromkeys(
            refused
        )
    finally:
        proxy.stop()


def sites_hsts(tmp_path: Path, dotenv: dict[str, str]) -> str | None:
    """The Strict-Transport-Security the site sends over https, with compose's
    DJANGO_HSTS_SECONDS (`dotenv` as docker/.env)."""
    given = compose_environment("web", DOTENV_REQUIRED | dotenv)
    result = production_settings(
        "from django.test import Client",
        "response = Client().get('/healthz', headers={'X-Forwarded-Proto': 'https'})",
        "print(repr(response.get('Strict-Transport-Security')))",
        env={
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "NEWSLETTER_TRUSTED_PROXIES": "1",
            "VAR_DIR": str(tmp_path / "var"),
        }
        | {k: v for k, v in given.items() if k == "DJANGO_HSTS_SECONDS"},
    )
    assert result.returncode == 0, result.stderr
    return eval(result.stdout)  # noqa: S307 (our own repr of a str or None)


@pytest.mark.production
@pytest.mark.parametrize(
    "dotenv",
    [{}, {"DJANGO_HSTS_SECONDS": "600"}, {"DJANGO_HSTS_SECONDS": "0"}],
    ids=["unset", "ten-minutes", "off"],
)
def test_nginxs_own_pages_send_the_hsts_the_site_sends(tmp_path, dotenv):
    """nginx's own pages (the site down, the uploads) said a year whatever
    DJANGO_HSTS_SECONDS told the site: an operator trying HTTPS for ten minutes
    first, or turning HSTS off, had browsers keep to it for a year from any
    upload they saw."""
    site = sites_hsts(tmp_path, dotenv)
    proxy = proxy_alone(tmp_path, dotenv)
    try:
        down = proxy.request("GET", "/subscribe/")
        upload = proxy.request("GET", "/media/posts/missing.png")
    finally:
        proxy.stop()
    assert (down[0], upload[0]) == (502, 404)
    for _, headers, _ in (down, upload):
        assert headers.get_all("Strict-Transport-Security") == (site and [site])


@pytest.mark.production
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/subscribe/"),
        ("GET", "/no-such-page/"),
        ("GET", "/admin/"),
        ("POST", "/subscribe/"),  # the site's 403: no CSRF token
    ],
)
def test_the_sites_own_answers_carry_each_security_header_once(stack, method, path):
    """nginx adds its headers only to what it makes itself, never a second time
    to the site's."""
    status, headers, _ = stack.request(method, path)
    assert status < 500, status
    assert security_header_counts(headers) == dict.fromkeys(SECURITY_HEADERS, 1)
    # The site's own policy, not nginx's.
    assert "default-src 'self'" in headers["Content-Security-Policy"]


@pytest.mark.production
def test_healthz_answers_through_the_proxy_with_debug_off(stack):
    status, headers, _ = stack.request("GET", "/healthz")
    assert status == 200
    assert "max-age=" in headers["Strict-Transport-Security"]
    # The dev outbox is a DEBUG page.
    assert stack.request("GET", "/outbox/")[0] == 404


@pytest.mark.production
def test_the_authors_uploads_are_served_through_the_proxy(stack):
    """Django serves MEDIA_ROOT only in debug: nginx serves it, from the folder the
    site writes to (compose mounts the same volume into both)."""
    from PIL import Image

    upload = stack.folder / "var" / "media" / "posts" / "featured.png"
    upload.parent.mkdir(parents=True)
    Image.new("RGB", (4, 3), "teal").save(upload)
    connection = stack.connection("127.0.0.1")
    try:
        connection.request(
            "GET",
            "/media/posts/featured.png",
            headers={"Host": f"localhost:{stack.port}"},
        )
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == upload.read_bytes()
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert security_header_counts(response.headers) == dict.fromkeys(
            SECURITY_HEADERS, 1
        )
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "max-age=" in response.headers["Strict-Transport-Security"]
    finally:
        connection.close()
    # Files only: no listing, nothing above the folder, nothing that is not there.
    assert stack.request("GET", "/media/posts/")[0] in (403, 404)
    assert stack.request("GET", "/media/../db.sqlite3")[0] in (400, 403, 404)
    assert stack.request("GET", "/media/posts/missing.png")[0] == 404


@pytest.mark.production
@pytest.mark.parametrize("name", ["drawing.svg", "page.html"])
def test_a_page_among_the_uploads_runs_no_script_as_the_site(stack, name):
    script = "<script>fetch('/admin/')</script>"
    page = {
        "drawing.svg": f'<svg xmlns="http://www.w3.org/2000/svg">{script}</svg>',
        "page.html": f"<!doctype html><title>Hi</title>{script}",
    }[name]
    upload = stack.folder / "var" / "media" / "sponsors" / name
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_text(page)
    status, headers, body = stack.request("GET", f"/media/sponsors/{name}")
    assert (status, body) == (200, page)
    policy = [part.strip() for part in headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy
    assert "default-src 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.production
def test_the_desk_takes_a_cameras_original_and_readers_forms_stay_small(stack):
    """A 40-megapixel photo (the site's limit, posts/images.py) runs to 30 MB and
    more: nginx's limit let 10 MB through, and answered the author's upload with
    its own bare 413. Readers' forms need a fraction of a megabyte."""
    upload = "x" * (30 * 2**20)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = stack.request(
        "POST", "/admin/posts/post/add/", headers=form, body=upload
    )
    assert status != 413  # the site's answer (a login), not nginx's refusal
    status, _, _ = stack.request("POST", "/subscribe/", headers=form, body=upload)
    assert status == 413


@pytest.mark.production
def test_a_forged_tracking_webhook_is_refused(stack):
    forged = json.dumps({"RecordType": "Bounce", "Email": "reader@example.org"})
    status, _, _ = stack.request(
        "POST",
        "/anymail/postmark/tracking/",
        body=forged,
        headers={"Content-Type": "application/json"},
    )
    assert status in WEBHOOK_REFUSED


@pytest.mark.production
def test_the_subscribe_limit_counts_each_client_behind_the_proxy(stack):
    # One client, however it fills in X-Forwarded-For, uses up its own turns...
    for number in range(SUBSCRIBE_LIMIT_PER_CLIENT):
        status = subscribe(
            stack,
            f"first-{number}@example.org",
            source="127.0.0.2",
            forwarded_for=f"198.51.100.{number}",
        )
        assert status == 200
    over = subscribe(
        stack, "first-x@example.org", source="127.0.0.2", forwarded_for="192.0.2.9"
    )
    assert over == 429
    # ...and the next client still gets through.
    assert subscribe(stack, "second@example.org", source="127.0.0.3") == 200


def dribble(stack: Stack, stop: threading.Event, connected: list) -> None:
    """A slow client: one header line a second, never the blank line that ends them."""
    raw = socket.create_connection(("127.0.0.1", stack.port), timeout=5)
    with stack.tls.wrap_socket(raw, server_hostname="localhost") as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        connected.append(slow)
        for number in range(SLOW_SECONDS * 2):
            if stop.wait(1):
                return
            try:
                slow.sendall(f"X-Slow-{number}: 1\r\n".encode())
            except OSError:  # nginx gave up on it: as good as finished
                return


@pytest.mark.production
def test_slow_clients_do_not_stop_the_site_answering(stack):
    stop, connected = threading.Event(), []
    slow_clients = [
        threading.Thread(target=dribble, args=(stack, stop, connected), daemon=True)
        for _ in range(SLOW_CLIENTS)
    ]
    for client in slow_clients:
        client.start()
    answers = []
    try:
        # A health check every half second while they talk.
        deadline = time.monotonic() + SLOW_SECONDS * 3
        for _ in range(SLOW_SECONDS * 2):
            answers.append(stack.request("GET", "/healthz")[0])
            if stop.wait(0.5) or time.monotonic() > deadline:
                break
    finally:
        stop.set()
        for client in slow_clients:
            client.join(timeout=10)
    assert len(connected) == SLOW_CLIENTS  # they were all there, talking slowly
    assert answers == [200] * SLOW_SECONDS * 2


def confirmation_link(stack: Stack, address: str) -> str:
    """The path of the confirmation link the worker emailed to address."""
    deadline = time.monotonic() + 30
    for _ in range(300):
        for path in (stack.folder / "outbox").glob("*.eml"):
            message = email.message_from_bytes(
                path.read_bytes(), policy=email.policy.default
            )
            if address in message["To"]:
                text = message.get_body(preferencelist=("plain",)).get_content()
                return re.search(r"https://[^/\s]+(/subscribe/confirm/\S+/)", text)[1]
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(
        f"no confirmation email to {address}: {stack.output('worker')}"
    )


@pytest.mark.production
def test_no_token_reaches_either_access_log(stack):
    assert subscribe(stack, "logged@example.org", source="127.0.0.4") == 200
    confirm = confirmation_link(stack, "logged@example.org")
    others = [
        f"/preferences/{secrets.token_urlsafe(24)}/",
        f"/unsubscribe/{secrets.token_urlsafe(24)}/",
        f"/comments/confirm/{secrets.token_urlsafe(24)}/",
        f"/comments/data/{secrets.token_urlsafe(24)}/",
        f"/%70references/{secrets.token_urlsafe(24)}/",  # /preferences/, escaped
    ]
    assert stack.request("GET", confirm)[0] == 200
    for path in others:
        # As a link on the confirmation page would be followed: its Referer names it.
        stack.request("GET", path, headers={"Referer": f"https://localhost{confirm}"})
    # A page reached at an escaped address (which Django routes, decoded) names
    # that address, escapes and all, in the Referer of what it links to.
    escaped = f"/%70references/{secrets.token_urlsafe(24)}/"
    stack.request("GET", "/", headers={"Referer": f"https://localhost{escaped}"})
    # Django's routes are case-sensitive: a token path in other capitals is a 404,
    # which acts for no reader, so nginx need not redact it.
    assert stack.request("GET", f"/Unsubscribe/{secrets.token_urlsafe(24)}/")[0] == 404

    tokens = [
        path.rstrip("/").rsplit("/", 1)[1] for path in (confirm, *others, escaped)
    ]
    for name in ("nginx-access", "gunicorn"):
        log = stack.log(name)
        assert "/subscribe/confirm/[redacted]" in log, name
        assert "/preferences/[redacted]" in log, name
        assert "/unsubscribe/[redacted]" in log, name
        assert "/comments/confirm/[redacted]" in log, name
        assert "/comments/data/[redacted]" in log, name
    # Nor in the logs the image's nginx.conf names, should a request land there.
    for name in ("nginx-access", "gunicorn", "nginx-default-access", "nginx-error"):
        log = stack.log(name)
        assert not [token for token in tokens if token in log], f"{name}:\n{log}"


@pytest.mark.production
def test_no_address_the_desk_searches_for_reaches_either_access_log(stack):
    """The desk finds a reader by typing their address into a list's search: the
    query string (?q=…) and the Referer of every page after it named the reader
    in both access logs."""
    search = "/admin/newsletter/subscriber/?q=searched.reader%40example.org"
    stack.request("GET", search)
    stack.request(
        "GET", "/admin/", headers={"Referer": f"https://localhost:{stack.port}{search}"}
    )
    time.sleep(0.5)  # nginx logs a request once its connection is closed

    for name in ("nginx-access", "gunicorn"):
        log = stack.log(name)
        assert "/admin/newsletter/subscriber/" in log, name
        assert "searched.reader" not in log, f"{name}:\n{log}"


def deployment_checklist(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.production
def test_the_production_environment_passes_the_deployment_checklist(stack):
    """With a provider to send through. This stack keeps its emails in the dev
    outbox, for the tests to read: the checklist stops a deployment that does."""
    provider = {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": secrets.token_urlsafe(24),
        "NEWSLETTER_FROM_EMAIL": "On Probation <newsletter@news.example.org>",
    }
    result = deployment_checklist(stack.env | provider)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
    kept = deployment_checklist(stack.env)
    assert kept.returncode != 0
    assert "newsletter.E005" in kept.stderr
