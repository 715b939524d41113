"""`make chaos`: a post to 20,000 subscribers, then a daily digest round to them,
through crashes and outages.

Real Celery workers (subprocesses) and beat (the reaper) on PostgreSQL and on a Redis
of its own (a redis-server on --redis-port, so other users of the machine's Redis
are not disturbed), sending through the fake ESP in its own process. As the post's
send progresses, and again as the digest round's does, it SIGKILLs a worker several
times (starting a replacement), restarts Redis once (losing every queued task), and
makes the fake ESP answer bursts of 5xx and 429 and accept-then-drop a few requests.

The round is a mailing like the post's: work lost with a worker or with Redis is
recovered by beat's reaper alone, for both. After each, it lists the uncertain
batches, settles them by asking the provider what it accepted (Postmark's message
search, which the fake ESP answers), and counts from the fake ESP how many readers
got 0, 1 and 2+ copies. Every reader follows 2 to 5 topics for the digest round,
so each gets their own digest. Its last line is `chaos: missing=<n>
duplicated=<n> uncertain_batches=<n> digest_missing=<n> digest_duplicated=<n>`
(uncertain_batches: of both mailings; duplicated: 2+ copies outside what was
reported uncertain, or a copy to someone outside the audience); it exits non-zero
when any missing or duplicated is not 0.

Batch mode with solo workers by default; --single sends one message per recipient,
--threads N gives each worker N threads (a batch each, so a kill loses N at once).
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

from benchmarks import _harness as h
from benchmarks.fake_esp import FakeESPClient

# (fraction of recipients accepted, what happens then)
EVENTS = [
    (0.03, "5xx burst"),
    (0.08, "kill a worker"),
    (0.15, "429 burst"),
    (0.25, "restart Redis"),
    (0.35, "kill a worker"),
    (0.45, "drop after accept"),
    (0.55, "kill a worker"),
    (0.65, "5xx burst"),
    (0.75, "kill a worker"),
    (0.85, "drop after accept"),
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--single", action="store_true", help="one message per recipient"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="workers with a pool of THREADS"
    )
    parser.add_argument(
        "--no-resolve", action="store_true", help="leave uncertain batches as they are"
    )
    h.services_arguments(parser, redis=False)  # a Redis of its own, to restart
    args = parser.parse_args()
    random.seed(args.seed)

    workdir = tempfile.mkdtemp(prefix="chaos-")
    redis = start_redis(args.redis_port, workdir)
    esp, url = h.start_fake_esp()
    processes: dict[str, subprocess.Popen] = {}
    try:
        env = h.configure(
            args.database_url,
            f"redis://127.0.0.1:{args.redis_port}/0",
            ANYMAIL_POSTMARK_API_URL=url,
            NEWSLETTER_BATCH_SIZE="100",
            NEWSLETTER_CLAIM_TIMEOUT_SECONDS="15",
            NEWSLETTER_DOORBELL_TIMEOUT_SECONDS="10",
            NEWSLETTER_REAP_EVERY_SECONDS="3",
            NEWSLETTER_BREAKER_FAILURES="8",
            NEWSLETTER_BREAKER_COOLDOWN_SECONDS="5",
            VAR_DIR=workdir,
            NEWSLETTER_DELIVERY_MODE="single" if args.single else "auto",
        )
        client = FakeESPClient(url)
        h.reset_database()
        h.seed_subscribers(args.n)
        for i in range(args.workers):
            processes[f"w{i}"] = h.start_worker(env, f"chaos-w{i}", args.threads)
        processes["beat"] = start_beat(env, workdir)
        print("A post to every reader:", flush=True)
        send_id = publish()
        audience = everyone()
        redis, uncertain = send_through_events(
            args, env, client, processes, redis, workdir, send_id, audience
        )
        missing, duplicated = count_copies(client, audience, uncertain)

        print("A daily digest round to every reader:", flush=True)
        client.reset()
        h.digest_posts_create()
        h.digest_readers_follow(seed=args.seed)
        # Read before the round is created: its planning, rung at once, marks the
        # readers it has planned, and they would drop out of the audience.
        readers = h.digest_round_audience()
        round_id = h.digest_round_create()
        redis, digest_uncertain = send_through_events(
            args, env, client, processes, redis, workdir, round_id, readers
        )
        digest_missing, digest_duplicated = count_copies(
            client, readers, digest_uncertain
        )
    finally:
        for process in processes.values():
            h.stop(process, signal.SIGKILL)
        h.stop(esp)
        stop_redis(args.redis_port, redis)
    print(f"chaos: missing={missing} duplicated={duplicated}"
          f" uncertain_batches={len(uncertain) + len(digest_uncertain)}"
          f" digest_missing={digest_missing}"
          f" digest_duplicated={digest_duplicated}")  # fmt: skip
    failed = missing or duplicated or digest_missing or digest_duplicated
    sys.exit(1 if failed else 0)


def start_redis(port: int, workdir: str) -> subprocess.Popen:
    import redis

    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, "--logfile", f"{workdir}/redis.log"],
    )  # fmt: skip
    client = redis.Redis(port=port)

    def answers() -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    h.wait_for(answers, timeout=10)
    return process


def stop_redis(port: int, process: subprocess.Popen) -> None:
    subprocess.run(
        ["redis-cli", "-p", str(port), "shutdown", "nosave"],
        capture_output=True,
        check=False,
    )
    process.wait(timeout=10)


def start_beat(env: dict, workdir: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-q", "-A", "newsletter", "beat",
         "--loglevel=WARNING", "-s", f"{workdir}/beat-schedule"],
        cwd=h.ROOT,
        env={**os.environ, **env},
    )  # fmt: skip


def publish() -> int:
    from django.db import transaction

    from newsletter import delivery
    from newsletter.models import Mailing

    post = h.new_post("Chaos: a send through crashes and outages")
    with transaction.atomic():
        delivery.mailing_create_for_post(post=post)
    return Mailing.objects.get(post=post).pk


def send_through_events(
    args, env, client, processes, redis, workdir, mailing_id: int, audience: set[str]
) -> tuple[subprocess.Popen, list[int]]:
    """A mailing (a post's or a digest round) sent through EVENTS, its lost work
    recovered by beat's reaper alone; then its uncertain batches, settled with the
    provider unless --no-resolve. Returns the (restarted) Redis and the uncertain
    batches' ids."""
    redis = run_events(
        args, env, client, processes, redis, workdir, mailing_id, len(audience)
    )
    uncertain = report_uncertain(mailing_id)
    if uncertain and not args.no_resolve:
        resolve(mailing_id, uncertain)
    return redis, uncertain


def everyone() -> set[str]:
    """A post's audience here: every reader (none follows a topic yet)."""
    from newsletter.models import Subscriber

    return set(Subscriber.objects.confirmed().values_list("email", flat=True))


def mailing_done(mailing_id: int) -> bool:
    from newsletter.models import Mailing

    return Mailing.objects.filter(pk=mailing_id, status=Mailing.Status.DONE).exists()


def run_events(args, env, client, processes, redis, workdir, mailing_id, total):
    """Fire EVENTS as the fake ESP accepts `total` recipients, until the mailing is
    done and every event has fired; returns the (restarted) Redis."""
    events = list(EVENTS)
    deadline = time.monotonic() + args.timeout
    while True:
        done = mailing_done(mailing_id)
        if done and not events:
            return redis
        accepted = client.stats()["count"]
        if time.monotonic() > deadline:
            sys.exit(f"chaos: timed out, {accepted} of {total} accepted")
        progress = accepted / total
        while events and (progress >= events[0][0] or done):
            _at, event = events.pop(0)
            print(f"{progress:6.1%}  {event}", flush=True)
            if event == "5xx burst":
                client.set_faults(fail_5xx_next=12, fail_5xx_status=503)
            elif event == "429 burst":
                client.set_faults(rate_limit_next=12, retry_after_s=1)
            elif event == "drop after accept":
                client.set_faults(drop_after_accept_next=2)
            elif event == "kill a worker":
                name = random.choice([k for k in processes if k != "beat"])
                h.stop(processes.pop(name), signal.SIGKILL)
                replace_worker(args, env, processes)
            elif event == "restart Redis":
                stop_redis(args.redis_port, redis)
                redis = start_redis(args.redis_port, workdir)
        supervise(args, env, processes, workdir)
        time.sleep(0.2)


def supervise(args, env, processes, workdir) -> None:
    """Start again any worker or beat that exited on its own, as docker compose's
    restart policy does in production: a Redis restart can end a worker with
    kombu's "Unrecoverable error", and a run without a supervisor would stall."""
    for name, process in list(processes.items()):
        if process.poll() is None:
            continue
        print(f"        {name} exited ({process.returncode}): restarted", flush=True)
        del processes[name]
        if name == "beat":
            processes["beat"] = start_beat(env, workdir)
        else:
            replace_worker(args, env, processes)


def replace_worker(args, env, processes) -> None:
    # Numbered past every live replacement, from this run or an earlier.
    number = 1 + max((int(k[1:]) for k in processes if k.startswith("r")), default=0)
    processes[f"r{number}"] = h.start_worker(env, f"chaos-r{number}", args.threads)


def report_uncertain(mailing_id: int) -> list[int]:
    from newsletter.models import Batch

    uncertain = list(
        Batch.objects.filter(mailing_id=mailing_id, status=Batch.Status.UNCERTAIN)
        .order_by("number")
        .values_list("pk", "number", "size", "last_error")
    )
    print(f"uncertain batches: {len(uncertain)}")
    for _pk, number, size, error in uncertain:
        print(f"  batch {number} ({size} recipients): {error[:100]}")
    return [pk for pk, *_ in uncertain]


def resolve(mailing_id: int, uncertain: list[int]) -> None:
    from django.utils import timezone

    from newsletter import delivery
    from newsletter.delivery.provider import TooSoonToAsk

    for batch_id in uncertain:
        try:
            delivery.batch_settle_with_provider(batch_id=batch_id)
        except TooSoonToAsk as too_soon:
            # As the author waits: the provider's search may not list yet what
            # it took (provider.SEARCH_LAG).
            wait = (too_soon.askable_from - timezone.now()).total_seconds()
            time.sleep(max(wait, 0))
            delivery.batch_settle_with_provider(batch_id=batch_id)
    h.wait_for(lambda: mailing_done(mailing_id), timeout=120, every=0.5)
    print(f"resolved {len(uncertain)} uncertain batches with the provider")


def count_copies(
    client: FakeESPClient, audience: set[str], uncertain: list[int]
) -> tuple[int, int]:
    """(readers of the audience the fake ESP took nothing for, readers it took two
    or more for outside the uncertain batches plus addresses outside the
    audience)."""
    from newsletter.models import Delivery

    copies = client.recipients()
    histogram = Counter(min(copies.get(email, 0), 2) for email in audience)
    print(
        f"copies per reader: 0: {histogram[0]}  1: {histogram[1]}  2+: {histogram[2]}"
    )
    outsiders = [email for email in copies if email not in audience]
    if outsiders:
        print(f"sent to {len(outsiders)} addresses outside the audience")
    in_uncertain = set(
        Delivery.objects.filter(batch_id__in=uncertain).values_list(
            "subscriber__email", flat=True
        )
    )
    duplicated = sum(
        1 for email, n in copies.items() if n > 1 and email not in in_uncertain
    )
    return histogram[0], duplicated + len(outsiders)


if __name__ == "__main__":
    main()
