"""What fanout.py and chaos.py share: a throwaway benchmark database on PostgreSQL,
Redis, real Celery workers as subprocesses, and the fake ESP in its own process."""

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """Set the environment this process and its workers run with, then set up Django."""
    name = database_url.rsplit("/", 1)[-1]
    if not database_url.startswith("postgres") or "bench" not in name:
        sys.exit(f"refusing {database_url!r}: use a PostgreSQL database named *bench*")
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SETTINGS_MODULE": "newsletter.settings",
        "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
        "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench",
        **extra,
    }
    os.environ.update(env)
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
        capture_output=True,
        check=False,
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def reset_database() -> None:
    from django.db import connection

    from newsletter.models import Batch, Delivery, Mailing, Subscriber
    from posts.models import Post

    tables = [m._meta.db_table for m in (Delivery, Batch, Mailing, Subscriber, Post)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def seed_subscribers(count: int) -> None:
    """`count` confirmed subscribers (through the ORM, so new fields get defaults)."""
    from django.utils import timezone

    from newsletter.models import Subscriber

    now = timezone.now()
    step = 10_000
    for start in range(0, count, step):
        Subscriber.objects.bulk_create(
            Subscriber(
                email=f"reader{i}@example.org",
                status=Subscriber.Status.ACTIVE,
                confirmed_at=now,
            )
            for i in range(start, min(count, start + step))
        )
    # A live table has been read and vacuumed since its rows were written; a
    # freshly loaded one would make the first reader (planning) set hint bits.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Subscriber._meta.db_table}")


def new_post(title: str):
    from django.utils import timezone

    from posts.models import Post

    return Post.objects.create(
        title=title,
        slug=f"bench-{secrets.token_hex(4)}",
        excerpt="Inspectors found caseloads too high and risk assessments too thin.",
        body=(ROOT / "benchmarks" / "post_body.md").read_text(),
        status=Post.Status.PUBLISHED,
        published_at=timezone.now(),
    )


def start_fake_esp(*args: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fake_esp", "--keep-messages", "1", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    return process, url


def start_worker(env: dict[str, str], name: str, threads: int = 0) -> subprocess.Popen:
    """A worker with one task at a time (solo), or `threads` of them."""
    pool = ["--pool=solo"]
    if threads:
        pool = ["--pool=threads", f"--concurrency={threads}"]
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-q", "-A", "newsletter", "worker",
         *pool, "--loglevel=WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat", "-n", f"{name}@%h"],
        cwd=ROOT,
        # Quiet Celery's warning about running as root (as CI machines do).
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
    )  # fmt: skip


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> float:
    """Stop a child process; returns its peak RSS in MB (0 if it had exited)."""
    try:
        rss = peak_rss_mb(process.pid)
    except (FileNotFoundError, ValueError):  # gone, or a zombie without memory
        rss = 0.0
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, sig)
    process.wait()
    return rss


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's own peak RSS (VmHWM), in MB.

    Not getrusage's ru_maxrss: a child that Python starts with vfork and exec is
    charged there with its parent's peak, when that is the larger.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    (kb,) = (line.split()[1] for line in status.splitlines() if line[:6] == "VmHWM:")
    return int(kb) / 1024


def wait_for(condition, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s")
        time.sleep(every)
