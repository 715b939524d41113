"""What fanout.py and chaos.py share: a throwaway benchmark database on PostgreSQL,
Redis, real Celery workers as subprocesses, and the fake ESP in its own process;
and, in one section at the end, all that the benchmarks know of the digest engine."""

import contextlib
import itertools
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def services_arguments(parser, *, redis: bool = True) -> None:
    """--database-url (a PostgreSQL database named *bench*: it is emptied) and
    --redis-url, from BENCH_DATABASE_URL and BENCH_REDIS_URL by default."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/newsletter_bench"
        ),
    )
    if redis:
        parser.add_argument(
            "--redis-url",
            default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        )


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
        # Production settings refuse an anymail backend without one.
        "ANYMAIL_WEBHOOK_SECRET": f"bench:{secrets.token_urlsafe(16)}",
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
    from posts.models import Category, Post

    models = (Delivery, Batch, Mailing, Subscriber, Post, Category)
    tables = [m._meta.db_table for m in models]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def seed_subscribers(count: int, *, prefix: str = "reader") -> None:
    """`count` subscribers who joined and confirmed yesterday, before any post the
    benchmark publishes (through the ORM, so new fields get defaults)."""
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
    # created_at is set on saving (auto_now_add); a digest holds posts from when
    # a reader joined (digests.posts_held).
    Subscriber.objects.filter(
        email__startswith=prefix, created_at__gt=yesterday
    ).update(created_at=yesterday)
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


def cpu_seconds(pid: int | str = "self") -> float:
    """A process's CPU time so far, user and system (0 when it is gone): on a
    shared machine, what a piece of work cost, where wall time is also waiting."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float]:
    """The CPU time so far of each of this machine's PostgreSQL server processes
    (backends and helpers), by pid."""
    times = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.read_bytes().startswith(b"postgres:"):
                pid = int(cmdline.parent.name)
                times[pid] = cpu_seconds(pid)
    return times


def machine_ticks() -> tuple[int, int, int]:
    """The machine's CPU time so far, all cores, in clock ticks: (all, idle,
    stolen). Idle includes waiting for the disk; stolen is the time the
    hypervisor gave a neighbour while this machine had work: on a shared VM, the
    load a run cannot see in its own processes' CPU times."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    idle, iowait, steal = fields[3], fields[4], fields[7]
    return sum(fields), idle + iowait, steal


def machine_shares(before: tuple[int, int, int], after: tuple[int, int, int]) -> str:
    """What the machine's cores did between two machine_ticks(), as shares."""
    total, idle, stolen = (a - b for a, b in zip(after, before, strict=True))
    total = max(total, 1)
    return f"{100 * idle / total:.0f} % idle, {100 * stolen / total:.0f} % stolen"


def wait_for(condition, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s")
        time.sleep(every)


# -- Digests -------------------------------------------------------------------
# What is particular to digests in fanout.py and chaos.py is in the functions below:
# their posts and readers, and starting today's round. Once started, a round is a
# mailing like a post's, and the benchmarks drive and check it as one.

# Topics (categories) with one new post each; a reader follows 2 to 5 of them,
# daily, so every reader's digest holds their own choice of posts.
DIGEST_TOPICS = 12
FOLLOWED_AT_MOST = 5
SEED_STEP = 10_000  # readers per bulk insert of their topics (~4 rows each)


def digest_posts_create() -> None:
    """One post in each topic, told to readers (announced) just before this
    quarter hour's slot: a round holds the posts announced up to its slot."""
    from datetime import timedelta

    from django.utils import timezone

    from newsletter import digests
    from posts.models import Category

    announced_at = digests.slot_of(timezone.now()) - timedelta(minutes=1)
    for number in range(DIGEST_TOPICS):
        topic = Category.objects.create(name=f"Topic {number}", slug=f"topic-{number}")
        post = new_post(f"Digest post {number}", announced_at=announced_at)
        post.categories.add(topic)


def digest_readers_follow(*, prefix: str = "reader", seed: int = 1) -> None:
    """Readers whose address starts with `prefix` follow 2 to 5 topics, daily
    (and so hear of nothing as it is published), due from midnight: so that
    today's round is everyone's whatever the hour the benchmark runs (at the
    default 07:00, a run before seven had no audience). Set before the audience
    is read (digest_round_audience): on a fresh database, `make chaos` read none."""
    from newsletter.models import DigestSettings, Subscriber, SubscriberTopic

    DigestSettings.objects.update_or_create(pk=1, defaults={"hour": 0})

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


def digest_round_create() -> int:
    """Today's daily round, a mailing like a post's, with its planning rung as beat
    rings it; returns its id. From then on the engine treats it as any mailing:
    pause, resume, uncertain batches, the reaper, status DONE at the end."""
    from django.db import transaction
    from django.utils import timezone

    from newsletter import delivery, digests
    from newsletter.models import Mailing, SubscriberTopic

    slot = digests.slot_of(timezone.now())
    if Mailing.objects.filter(
        kind=Mailing.Kind.DIGEST, period=digests.period_of(slot)
    ).exists():
        raise RuntimeError("today's round exists already (did beat start it?)")
    with transaction.atomic():
        mailing = delivery.mailing_create_for_digest(
            frequency=SubscriberTopic.Frequency.DAILY, slot=slot
        )
    return mailing.pk


def digest_round_audience() -> set[str]:
    """The addresses today's round must reach: every reader following a topic,
    having confirmed before its post was announced, has a post waiting."""
    from django.utils import timezone

    from newsletter import digests
    from newsletter.models import SubscriberTopic

    slot = digests.slot_of(timezone.now())
    readers = digests.audience(SubscriberTopic.Frequency.DAILY, slot=slot)
    return set(readers.values_list("email", flat=True))
