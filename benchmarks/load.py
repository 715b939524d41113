"""Load figures for the public site: gunicorn on PostgreSQL and Redis, driven by wrk.

    DATABASE_URL=postgres://... REDIS_URL=redis://... make load

Migrates and seeds the named database (demo posts only), collects static files into
a scratch folder, starts gunicorn with production settings (DEBUG off, whitenoise,
the Redis cache) on a free local port, then gives each of these LOAD_SECONDS (2)
with wrk: the home page, a post page, search, a subscribe POST (a fresh address
each time; the rate limit per client is lifted for the run, the per-address one
still applies), an email's link through the counting redirect (/r/<token>/, a
burst of clicks on one link from one client, as a link scanner makes after a
send: each counted as a machine's) and a static file served by the same server,
the ceiling. Prints
requests/s and p50/p99 latency for each, then one summary line. Subscribe tasks
queued during the run are purged from the broker at the end; no worker runs.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SECONDS = int(os.environ.get("LOAD_SECONDS", "2"))
CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", "8"))
WORKERS = int(os.environ.get("LOAD_WORKERS", "2"))  # this machine has 2 cores


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


# A link to count clicks on, in a cancelled announcement of the first post: a
# cancelled mailing is never planned nor sent, it only holds the link.
CLICK_LINK = """
from newsletter.engagement import click_token
from newsletter.models import Link, Mailing
from posts.models import Post
post = Post.objects.published().first()
mailing = Mailing.objects.filter(post=post).first() or Mailing.objects.create(
    kind="post", post=post, status="cancelled"
)
link, _ = Link.objects.get_or_create(mailing=mailing, url="https://example.org/")
print(click_token(link.pk))
"""


def click_path(env: dict) -> str:
    made = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CLICK_LINK],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return f"/r/{made.stdout.split()[-1]}/"


def fetch(opener, url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with opener.open(url, data=data, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        try:
            if fetch(urllib.request.build_opener(), base + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz within 30 s")


def wrk(url: str, script: Path | None = None) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", url]
    if script:
        command[1:1] = ["-s", str(script)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return wrk_figures(output)


# wrk prints latencies in us, ms, s, m or h, padding a one-letter unit with a space.
_LATENCY_UNIT_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
}


def wrk_figures(output: str) -> dict[str, float]:
    """Requests/s, p50 and p99 latency (ms) and failed requests from wrk --latency."""

    def percentile(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        if found is None:
            sys.exit(f"no {label}th percentile in wrk's output:\n{output}")
        return float(found[1]) * _LATENCY_UNIT_MS[found[2]]

    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
        "p50": percentile("50"),
        "p99": percentile("99"),
        "errors": int(failed[1]) if failed else 0,
    }


def subscribe_script(folder: Path, cookie: str, token: str) -> Path:
    script = folder / "subscribe.lua"
    script.write_text(
        f"""
counter = 0
request = function()
  counter = counter + 1
  local body = "csrfmiddlewaretoken={token}&name=&email=load-"
    .. math.random(1000000000) .. "-" .. counter .. "%40example.org"
  return wrk.format("POST", "/subscribe/", {{
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = "csrftoken={cookie}",
  }}, body)
end
"""
    )
    return script


def main() -> int:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not (
        os.environ.get("REDIS_URL", "").startswith("redis")
    ):
        print("Set DATABASE_URL (PostgreSQL) and REDIS_URL (Redis) to run the load.")
        return 2
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install wrk")
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "SITE_URL": base,
        "VAR_DIR": str(scratch),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT": str(10**9),
        "LOG_LEVEL": "WARNING",
    }
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "seed_demo")
    manage(env, "collectstatic", "--noinput", "-v0")
    click = click_path(env)
    server = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "newsletter.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={WORKERS}",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_until_up(base, server)
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        _, home = fetch(opener, base + "/")
        post_path = re.search(r'href="(/posts/[^"]+/)"', home)[1]
        static_path = re.search(r'href="(/static/[^"]+\.css)"', home)[1]
        _, form = fetch(opener, base + "/subscribe/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
        cookie = next(c.value for c in jar if c.name == "csrftoken")
        search_status, _ = fetch(opener, base + "/search/?q=probation")

        results = {
            "home": wrk(base + "/"),
            "post": wrk(base + post_path),
            "search": wrk(base + "/search/?q=probation")
            if search_status == 200
            else None,
            "subscribe": wrk(
                base + "/subscribe/", subscribe_script(scratch, cookie, token)
            ),
            "click": wrk(base + click),
            "static": wrk(base + static_path),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        subprocess.run(
            [str(VENV_BIN / "celery"), "-A", "newsletter", "purge", "-f"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
        )
        shutil.rmtree(scratch, ignore_errors=True)

    for name, figures in results.items():
        if figures is None:
            print(f"{name:10} not measured: /search/ does not answer 200 here")
            continue
        print(
            f"{name:10} {figures['rps']:8.0f} req/s  p50={figures['p50']:.2f}ms "
            f"p99={figures['p99']:.2f}ms  non-2xx/3xx={figures['errors']}"
        )

    def rate(name: str) -> str:
        return "n/a" if results[name] is None else f"{results[name]['rps']:.0f}"

    def ratio(name: str) -> str:
        if results[name] is None:
            return "n/a"
        return f"{results[name]['rps'] / results['static']['rps']:.2f}"

    print(
        f"load: home={rate('home')} post={rate('post')} search={rate('search')} "
        f"subscribe={rate('subscribe')} click={rate('click')} static={rate('static')} "
        f"post_ratio={ratio('post')} search_ratio={ratio('search')} "
        f"click_ratio={ratio('click')} "
        f"post_p99_ms={results['post']['p99']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
