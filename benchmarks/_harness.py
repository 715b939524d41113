"""What fanout.py and chaos.py share: a throwaway benchmark database on PostgreSQL,
Redis, real Celery workers as subprocesses, and the fake ESP in its own process;
and, in one section at the end, all that the benchmarks know of the digest engine."""

import contextlib
import itertools
import json
import os
import random
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

    from newsletter.models import Batch, Delivery, DigestRun, Send, Subscriber
    from posts.models import Category, Post

    models = (Delivery, Batch, Send, DigestRun, Subscriber, Post, Category)
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def seed_subscribers(count: int, *, prefix: str = "reader") -> None:
    """`count` subscribers who confirmed yesterday, before any post the benchmark
    publishes (through the ORM, so new fields get defaults)."""
    from datetime import timedelta

    from django.utils import timezone

    from newsletter.models import Subscriber

    yesterday = timezone.now() - timedelta(days=1)
    step = 10_000
    for start in range(0, count, step):
        Subscriber.objects.bulk_create(
            Subscriber(
                email=f"{prefix}{i}@example.org",
                status=Subscriber.Status.ACTIVE,
                confirmed_at=yesterday,
            )
            for i in range(start, min(count, start + step))
        )
    # A live table has been read and vacuumed since its rows were written; a
    # freshly loaded one would make the first reader (planning) set hint bits.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Subscriber._meta.db_table}")


def new_post(title: str, **fields):
    from django.utils import timezone

    from posts.models import Post

    return Post.objects.create(
        title=title,
        slug=f"bench-{secrets.token_hex(4)}",
        excerpt="Inspectors found caseloads too high and risk assessments too thin.",
        body=(ROOT / "benchmarks" / "post_body.md").read_text(),
        status=Post.Status.PUBLISHED,
        published_at=timezone.now(),
        **fields,
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


def wait_for_workers(env: dict[str, str], count: int, timeout: float = 120) -> None:
    """Until `count` workers answer a ping: booted and taking tasks.

    Asked from a process of its own: the reply's broker connection left in this
    one would hang the processes the bare client forks (kombu closes it in them).
    """

    def answered() -> bool:
        ping = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "newsletter", "inspect", "ping",
             "--timeout", "1", "--json"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        return ping.returncode == 0 and len(json.loads(ping.stdout)) >= count

    wait_for(answered, timeout, every=0.5)


# -- Digests -------------------------------------------------------------------
# All that fanout.py and chaos.py know of the digest engine is in the functions
# below (and reset_database's table list): moving digests to another engine means
# rewriting these, and nothing in the benchmarks themselves.

# Topics (categories) with one new post each; a reader follows 2 to 5 of them,
# daily, so every reader's digest holds their own choice of posts.
DIGEST_TOPICS = 12
FOLLOWED_AT_MOST = 5
SEED_STEP = 10_000  # readers per bulk insert of their topics (~4 rows each)


def digest_posts_create() -> None:
    """One post in each topic, told to readers (announced) now: today's digest."""
    from django.utils import timezone

    from posts.models import Category

    for number in range(DIGEST_TOPICS):
        topic = Category.objects.create(name=f"Topic {number}", slug=f"topic-{number}")
        post = new_post(f"Digest post {number}", announced_at=timezone.now())
        post.categories.add(topic)


def digest_readers_follow(*, prefix: str = "reader", seed: int = 1) -> None:
    """Readers whose address starts with `prefix` follow 2 to 5 topics, daily
    (and so hear of nothing as it is published)."""
    from newsletter.models import Subscriber, SubscriberTopic

    rng = random.Random(seed)
    readers = (
        Subscriber.objects.filter(email__startswith=prefix)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ids = iter(readers.iterator(chunk_size=SEED_STEP))
    while chunk := list(itertools.islice(ids, SEED_STEP)):
        SubscriberTopic.objects.bulk_create(
            SubscriberTopic(
                subscriber_id=pk,
                kind=SubscriberTopic.Kind.CATEGORY,
                value=f"topic-{topic}",
                frequency=SubscriberTopic.Frequency.DAILY,
            )
            for pk in chunk
            for topic in rng.sample(
                range(DIGEST_TOPICS), rng.randint(2, FOLLOWED_AT_MOST)
            )
        )


def digest_round_plan() -> int:
    """Today's daily round and its ledger, not yet rung for; returns its id."""
    from django.utils import timezone

    from newsletter import digests
    from newsletter.models import SubscriberTopic

    run = digests.digest_run_create(
        frequency=SubscriberTopic.Frequency.DAILY, now=timezone.now()
    )
    if run is None:
        raise RuntimeError("today's daily round exists already (did beat start it?)")
    return run.pk


def digest_round_ring(round_id: int) -> None:
    """Ring for the round's sending, as beat does when it starts the round."""
    from newsletter import digest_tasks

    digest_tasks.ring_digest_run(round_id)


def digest_round_send_here(round_id: int) -> None:
    """Send the whole round from this process (to sample the product's requests)."""
    from newsletter import digests

    digests.send_digest_run(run_id=round_id)


def digest_round_discard(round_id: int) -> None:
    """Forget a round and its ledger, so today's round can be started again."""
    from newsletter.models import DigestRun

    DigestRun.objects.filter(pk=round_id).delete()


def digest_round_finished(round_id: int) -> bool:
    from newsletter.models import DigestRun

    return DigestRun.objects.filter(pk=round_id, finished_at__isnull=False).exists()


def digest_round_ledger(round_id: int) -> list[tuple[int, str, str]]:
    """(digest id, reader's address, status) for every digest of the round."""
    from newsletter.models import DigestDelivery

    return list(
        DigestDelivery.objects.filter(run_id=round_id)
        .order_by("pk")
        .values_list("pk", "subscriber__email", "status")
    )


def digest_round_nudge(round_id: int) -> None:
    """What beat does for a round, without waiting for it: digests whose worker
    died holding them become uncertain, and a round still unfinished is rung again.

    Beat does it every 15 minutes, and rings again only after two hours (a worker
    killed mid-slice leaves its task unacknowledged for Redis's visibility
    timeout, and a Redis restart loses the queued slices), longer than a chaos
    run; the claims keep a second ring from sending anyone's digest twice.
    """
    from django.utils import timezone

    from newsletter import digests

    digests.settle_lost_claims(now=timezone.now())
    if not digest_round_finished(round_id):
        digest_round_ring(round_id)


def digests_resolve_with_provider(digest_ids: list[int]) -> None:
    """Settle uncertain digests as the author would: ask the provider."""
    from newsletter import digests

    digests.digests_resolve_with_provider(row_ids=digest_ids)
