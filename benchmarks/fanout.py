"""`make bench`: how fast a post fans out to N subscribers, and a daily digest round
reaches them, against references measured in the same run on the same machine,
data and fake ESP.

For each N (10,000 and 100,000; --full adds 1,000,000) on PostgreSQL and Redis:
* plan_s: planning the send (the ledger rows), in its own process;
* copy_s: a raw PostgreSQL COPY of as many ledger rows into the same table;
* batch / per_message: recipients per second the fake ESP accepted from real Celery
  workers (subprocesses, --workers of them) in batch mode (Postmark /email/batch, or
  with --postmark-bulk its bulk API) and in one-message-per-recipient mode;
* digest: digests per second the fake ESP accepted in a daily round to the same N
  readers, each following 2 to 5 of 12 topics with a new post each, so each gets
  their own digest, in the product's default batch mode (Postmark /email/batch, up
  to 500 distinct digests a call); the round is a mailing, planned and sent as a
  post's send is (digest_plan_s: its planning, in its own process);
* batch_limit / per_message_limit / digest_limit: a bare client (as many processes
  as workers) posting pre-built copies of the very requests the product made
  (headers and body, from a sample of each kind sent in this process beforehand),
  as fast as it can, each over one kept-alive http.client connection. This shared
  machine's speed drifts within a run, so each limit is the median of four runs:
  one before the product's first send and one after each of its three;
* the CPU 1,000 recipients of each run cost the workers, the fake ESP and
  PostgreSQL (from /proc): on this shared machine a more stable figure than rates;
  and, for each run and each limit run, the share of the machine's cores left idle
  and stolen by the hypervisor for a neighbour (a loaded run shows it there);
* naive: a loop that renders and send_mail()s one message per subscriber, the way
  django-newsletter does (measured on the first --naive-n subscribers);
* peak RSS of the planners and of each worker, and DB queries per batch and per
  digest.

Its last line sums up the largest N:
bench: batch=… batch_limit=… per_message=… per_message_limit=… digest=…
digest_limit=… naive=… plan_s=… copy_s=… rss_growth_mb=… n=…
"""

import argparse
import http.client
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from benchmarks import _harness as h
from benchmarks.fake_esp import FakeESPClient

LIMIT_SECONDS = 3.0
# The product's requests the bare client replays, per kind: one batch call (~20 MB
# at 500 messages), a hundred single messages (~40 KB each), and every request of
# a sample digest round (~10 KB a digest): at 500 digests a call, enough readers
# for full calls only.
BATCH_SAMPLE_REQUESTS = 1
SINGLE_SAMPLE_REQUESTS = 100
DIGEST_SAMPLE_READERS = 1_000


class Replay(NamedTuple):
    """Requests the product made, to post again: (path, headers, body, recipients)."""

    url: str
    requests: list[tuple[str, dict, bytes, int]]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout")
    parser.add_argument("--n", type=int, action="append", dest="ns")
    parser.add_argument("--full", action="store_true", help="also N=1,000,000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--naive-n", type=int, default=1000)
    parser.add_argument(
        "--postmark-bulk",
        action="store_true",
        help="batch mode through Postmark's bulk API (content once per call)",
    )
    h.services_arguments(parser)
    parser.add_argument(
        "--plan", type=int, metavar="MAILING_ID", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.plan:  # the planner's own process, so its RSS is its own
        return plan_here(args.plan)
    ns = args.ns or [10_000, 100_000]
    if args.full:
        ns.append(1_000_000)

    esp, url = h.start_fake_esp("--no-deliveries")
    try:
        env = h.configure(
            args.database_url, args.redis_url, ANYMAIL_POSTMARK_API_URL=url
        )
        client = FakeESPClient(url)
        results = {n: measure(n, env, client, esp.pid, args) for n in sorted(ns)}
    finally:
        h.stop(esp)
    smallest, largest = results[min(results)], results[max(results)]
    growth = max(
        largest[rss] - smallest[rss]
        for rss in ("planner_rss_mb", "digest_planner_rss_mb", "worker_rss_mb")
    )
    r = largest
    print(
        "targets at n={n}: batch/batch_limit={a:.0%} (>=60%),"
        " per_message/per_message_limit={c:.0%} (>=65%),"
        " digest/digest_limit={g:.0%} (>=50%), plan/copy={d:.1f}x (<=2x),"
        " rss growth {e:.1f} MB (<20), batch/naive={b:.0f}x (>=20x),"
        " queries/batch {f} (<=6), queries/digest {q:.3f}".format(
            n=r["n"],
            a=r["batch"] / r["batch_limit"],
            b=r["batch"] / r["naive"],
            c=r["per_message"] / r["per_message_limit"],
            g=r["digest"] / r["digest_limit"],
            d=r["plan_s"] / r["copy_s"],
            e=growth,
            f=r["queries_per_batch"],
            q=r["queries_per_digest"],
        )
    )
    print(
        f"bench: batch={r['batch']:.0f} batch_limit={r['batch_limit']:.0f}"
        f" per_message={r['per_message']:.0f}"
        f" per_message_limit={r['per_message_limit']:.0f}"
        f" digest={r['digest']:.0f} digest_limit={r['digest_limit']:.0f}"
        f" naive={r['naive']:.0f} plan_s={r['plan_s']:.2f} copy_s={r['copy_s']:.2f}"
        f" rss_growth_mb={growth:.1f} n={r['n']}"
    )


def measure(n: int, env: dict, client: FakeESPClient, esp_pid: int, args) -> dict:
    from newsletter.celery import app

    print(f"n={n}: seeding…", flush=True)
    h.reset_database()
    h.seed_subscribers(n)
    h.digest_posts_create()
    app.control.purge()
    result = {"n": n, "copy_s": copy_reference(n)}

    bulk = {"ANYMAIL_POSTMARK_USE_BULK_API": "1"} if args.postmark_bulk else {}
    replays = {}
    replays["batch"], queries_per_batch = sample_send(
        client, BATCH_SAMPLE_REQUESTS, bulk=args.postmark_bulk
    )
    replays["per_message"], _ = sample_send(client, SINGLE_SAMPLE_REQUESTS, single=True)
    replays["digest"], queries_per_digest = sample_digests(client)
    client.reset(keep_messages=0)  # what the bare client replays is sampled

    limits: dict[str, list[float]] = {kind: [] for kind in replays}
    # The machine's cores during each limit run (idle, stolen): a limit that swings
    # with a neighbour's load shows it here.
    shares: dict[str, list[str]] = {kind: [] for kind in replays}

    def measure_limits() -> None:
        for kind, replay in replays.items():
            before = h.machine_ticks()
            limits[kind].append(bare_client_rate(client, replay, args.workers))
            shares[kind].append(h.machine_shares(before, h.machine_ticks()))

    # The product's three runs, each between two of the bare client's.
    measure_limits()
    runs = {"client": client, "workers": args.workers, "esp_pid": esp_pid}
    batch = post_send_run("Batch mode", {**env, **bulk}, n, **runs)
    measure_limits()
    single = post_send_run(
        "One message each", {**env, "NEWSLETTER_DELIVERY_MODE": "single"}, n, **runs
    )
    measure_limits()
    digest = digest_round_run(env, **runs)
    measure_limits()
    for kind, rates in limits.items():
        result[f"{kind}_limit"] = statistics.median(rates)
        print(
            f"n={n}: {kind}_limit {result[f'{kind}_limit']:.0f}/s, the median of"
            f" {' '.join(f'{rate:.0f}' for rate in rates)}"
            f" (machine: {'; '.join(shares[kind])})",
            flush=True,
        )
    result.update(
        batch=batch["rate"],
        per_message=single["rate"],
        digest=digest["rate"],
        plan_s=batch["plan_s"],
        digest_plan_s=digest["plan_s"],
        planner_rss_mb=batch["planner_rss_mb"],
        digest_planner_rss_mb=digest["planner_rss_mb"],
        worker_rss_mb=max(run["worker_rss_mb"] for run in (batch, single, digest)),
        queries_per_batch=queries_per_batch,
        queries_per_digest=queries_per_digest,
    )
    result["naive"] = naive_rate(min(n, args.naive_n), client)
    print(
        "n={n}: plan_s={plan_s:.2f} copy_s={copy_s:.2f} batch={batch:.0f}/s"
        " batch_limit={batch_limit:.0f}/s per_message={per_message:.0f}/s"
        " per_message_limit={per_message_limit:.0f}/s digest={digest:.0f}/s"
        " digest_limit={digest_limit:.0f}/s digest_plan_s={digest_plan_s:.2f}"
        " naive={naive:.0f}/s planner_rss_mb={planner_rss_mb:.0f}"
        " digest_planner_rss_mb={digest_planner_rss_mb:.0f}"
        " worker_rss_mb={worker_rss_mb:.0f} queries_per_batch={queries_per_batch}"
        " queries_per_digest={queries_per_digest:.3f}".format(**result),
        flush=True,
    )
    return result


def post_send_run(
    title: str, env: dict, n: int, *, client: FakeESPClient, workers: int, esp_pid: int
) -> dict:
    """One send of a new post to all n subscribers by `workers` workers."""
    send_id = new_send(title)
    planned = plan_elsewhere(["--plan", str(send_id)], env)
    rate, worker_rss, cpu = send_with_workers(
        env, client, send_id, n, workers=workers, esp_pid=esp_pid
    )
    print(f"n={n}: {title.lower()}: {rate:.0f}/s; {cpu}", flush=True)
    return {
        "rate": rate,
        "plan_s": planned["plan_s"],
        "planner_rss_mb": planned["rss_mb"],
        "worker_rss_mb": worker_rss,
    }


def digest_round_run(
    env: dict, *, client: FakeESPClient, workers: int, esp_pid: int
) -> dict:
    """Today's daily round to every reader by `workers` workers, in the product's
    default mode (Postmark's /email/batch, up to 500 digests a call): digests/s.
    Planned and sent as a post's send is."""
    from newsletter.models import Delivery

    h.digest_readers_follow()
    round_id = h.digest_round_create()
    planned = plan_elsewhere(["--plan", str(round_id)], env)
    digests = Delivery.objects.filter(mailing_id=round_id).count()
    rate, worker_rss, cpu = send_with_workers(
        env, client, round_id, digests, workers=workers, esp_pid=esp_pid
    )
    print(f"n={digests}: digest round: {rate:.0f}/s; {cpu}", flush=True)
    return {
        "rate": rate,
        "plan_s": planned["plan_s"],
        "planner_rss_mb": planned["rss_mb"],
        "worker_rss_mb": worker_rss,
    }


def new_send(title: str) -> int:
    from newsletter.models import Mailing

    return Mailing.objects.create(kind="post", post=h.new_post(title)).pk


def copy_reference(n: int) -> float:
    """COPY n ledger rows into the ledger table (same indexes and constraints as
    planning meets), committed; then remove them."""
    from django.db import connection, transaction

    from newsletter.models import Batch, Delivery, Mailing, Subscriber

    send = Mailing.objects.create(kind="post", post=h.new_post("COPY reference"))
    batch = Batch.objects.create(mailing=send, number=1)
    ids = list(Subscriber.objects.order_by("pk").values_list("pk", flat=True))
    table = Delivery._meta.db_table
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        columns = (
            "mailing_id, batch_id, subscriber_id, status, esp_message_id, error,"
            " last_event, sender_refused"
        )
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for pk in ids:
                copy.write_row((send.pk, batch.pk, pk, "queued", "", "", "", False))
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE mailing_id = %s", [send.pk])  # noqa: S608
        cursor.execute(f"VACUUM ANALYZE {table}")
    return elapsed


def plan_elsewhere(arguments: list[str], env: dict) -> dict[str, float]:
    """Plan in a process of its own; the figures it prints ("name value" pairs)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fanout", *arguments],
        cwd=h.ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    output = process.stdout.read().split()  # until the planner exits
    if process.wait():
        sys.exit(f"planning ({' '.join(arguments)}) failed")
    return {
        name: float(value)
        for name, value in zip(output[::2], output[1::2], strict=True)
    }


def _connected() -> None:
    """Connect to the database and the broker first: the clock measures planning
    in a process already connected, as a worker is, not the first contact (~70 ms
    here)."""
    import django

    django.setup()
    from django.db import connection

    from newsletter.celery import app

    connection.ensure_connection()
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(app.amqp.queues[app.conf.task_default_queue])


def plan_here(send_id: int) -> None:
    _connected()
    from newsletter import delivery

    started = time.perf_counter()
    while delivery.mailing_plan_page(mailing_id=send_id):
        pass
    elapsed = time.perf_counter() - started
    print(f"plan_s {elapsed:.4f} rss_mb {h.peak_rss_mb():.1f}", flush=True)


def send_with_workers(
    env: dict,
    client: FakeESPClient,
    send_id: int,
    n: int,
    *,
    workers: int,
    esp_pid: int,
) -> tuple[float, float, str]:
    """Recipients/s the fake ESP accepted, the workers' peak RSS (MB), and the CPU
    that 1,000 recipients cost the workers, the fake ESP and PostgreSQL.

    The clock starts on warm workers: the send is paused while they boot (they
    drain the doorbells planning rang and claim nothing), then resumed, which
    rings every batch again. CPU time, unlike the rate, does not count the waits
    for a core that others' load on a shared machine adds, and all three
    processes slow down together when the machine does: their proportions are the
    figure to compare between runs. (A PostgreSQL backend that exits meanwhile is
    not counted; the workers' stay connected.)
    """
    import redis

    from newsletter import delivery

    delivery.mailing_pause(mailing_id=send_id)
    processes = [h.start_worker(env, f"bench{i}") for i in range(workers)]
    broker = redis.Redis.from_url(env["REDIS_URL"])
    try:
        h.wait_for(lambda: broker.llen("celery") == 0, timeout=120)
        time.sleep(1)  # the last doorbell taken is answered
        client.reset()
        pids = [p.pid for p in processes]
        before = [sum(map(h.cpu_seconds, pids)), h.cpu_seconds(esp_pid)]
        postgres_before = h.postgres_cpu_seconds()
        machine_before = h.machine_ticks()
        started = time.monotonic()
        delivery.mailing_resume(mailing_id=send_id)
        elapsed = until_accepted(client, n, started)
        after = [sum(map(h.cpu_seconds, pids)), h.cpu_seconds(esp_pid)]
        machine = h.machine_shares(machine_before, h.machine_ticks())
        postgres = sum(
            seconds - postgres_before.get(pid, 0.0)
            for pid, seconds in h.postgres_cpu_seconds().items()
        )
    finally:
        rss = max(h.stop(p) for p in processes)
    workers_s, esp_s = (a - b for a, b in zip(after, before, strict=True))
    cpu = (
        f"CPU per 1,000: workers {workers_s * 1e6 / n:.0f} ms, fake ESP"
        f" {esp_s * 1e6 / n:.0f} ms, PostgreSQL {postgres * 1e6 / n:.0f} ms;"
        f" machine: {machine}"
    )
    return n / elapsed, rss, cpu


def until_accepted(client: FakeESPClient, count: int, started: float) -> float:
    """Seconds from `started` (time.monotonic()) until the fake ESP had accepted
    `count` recipients.

    Polled gently (each poll is a request the fake ESP answers while the workers
    want it); the end is the fake ESP's own note of the last accepted request, on
    the monotonic clock every process here shares.
    """
    stats = {}

    def all_accepted() -> bool:
        stats.update(client.stats())
        return stats["count"] >= count

    h.wait_for(all_accepted, timeout=120 + count / 20, every=0.25)
    return stats["last_accepted_at"] - started


def sample_send(
    client: FakeESPClient, requests: int, *, single: bool = False, bulk: bool = False
) -> tuple[Replay, int]:
    """Send two batches of a fresh send in this process, in the mode the workers
    will send in; returns the last `requests` requests it made, for the bare client
    to replay, and the second batch's query count (a worker's first batch of a
    send also reads the post to render it)."""
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext, override_settings

    from newsletter import delivery
    from newsletter.celery import app
    from newsletter.models import Mailing

    send_id = new_send("Sample")
    delivery.mailing_plan_page(mailing_id=send_id)
    app.control.purge()
    first, second = Mailing.objects.get(pk=send_id).batches.order_by("number")[:2]
    client.reset(keep_messages=requests)
    with override_settings(
        NEWSLETTER_DELIVERY_MODE="single" if single else "auto",
        ANYMAIL={**settings.ANYMAIL, "POSTMARK_USE_BULK_API": bulk},
    ):
        delivery.batch_send(batch_id=first.pk)
        with CaptureQueriesContext(connection) as queries:
            delivery.batch_send(batch_id=second.pk)
    delivery.mailing_cancel(mailing_id=send_id)
    return sample_requests(client, requests), len(queries)


def sample_digests(client: FakeESPClient) -> tuple[Replay, float]:
    """A round to DIGEST_SAMPLE_READERS readers of its own (the others follow no
    topic yet), sent in this process; returns its requests, for the bare client to
    replay, and the queries per digest of sending it (planning aside). The round
    and its readers are then removed, so that today's round can be started for
    everyone."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from newsletter import delivery
    from newsletter.celery import app
    from newsletter.models import Batch, Mailing, Subscriber

    h.seed_subscribers(DIGEST_SAMPLE_READERS, prefix="sample")
    h.digest_readers_follow(prefix="sample")
    round_id = h.digest_round_create()
    while delivery.mailing_plan_page(mailing_id=round_id):
        pass
    app.control.purge()  # the doorbells planning rang: sent here instead
    batches = Batch.objects.filter(mailing_id=round_id).order_by("number")
    client.reset(keep_messages=DIGEST_SAMPLE_READERS)
    with CaptureQueriesContext(connection) as queries:
        for batch_id in batches.values_list("pk", flat=True):
            delivery.batch_send(batch_id=batch_id)
    replay = sample_requests(client, DIGEST_SAMPLE_READERS)
    Mailing.objects.filter(pk=round_id).delete()
    Subscriber.objects.filter(email__startswith="sample").delete()
    return replay, len(queries) / DIGEST_SAMPLE_READERS


def sample_requests(client: FakeESPClient, limit: int) -> Replay:
    """The last `limit` requests the fake ESP accepted, headers and body byte for
    byte, each with the number of recipients it carried."""
    requests = []
    for stored in client.messages(limit=limit):
        payload = stored["payload"]
        if isinstance(payload, dict) and "Messages" in payload:  # the bulk API
            recipients = len(payload["Messages"])
        else:
            recipients = len(payload) if isinstance(payload, list) else 1
        path = urlsplit(client.url + stored["endpoint"]).path
        body = stored["request_body"].encode("latin-1")
        requests.append((path, stored["request_headers"], body, recipients))
    return Replay(client.url, requests)


def _post_repeatedly(replay: Replay, start: int) -> int:
    """Post the requests one after the other, from the `start`th and round again,
    over one kept-alive connection, with the standard library's http.client:
    nothing per request but the HTTP itself. Returns the recipients they carried."""
    target = urlsplit(replay.url)
    connection = http.client.HTTPConnection(target.hostname, target.port)
    sent = 0
    requests = replay.requests[start:] + replay.requests[:start]
    deadline = time.perf_counter() + LIMIT_SECONDS
    for path, headers, body, recipients in itertools.cycle(requests):
        if time.perf_counter() >= deadline:
            break
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the fake ESP answered {answer.status}")
        sent += recipients
    connection.close()
    return sent


def bare_client_rate(client: FakeESPClient, replay: Replay, processes: int) -> float:
    """Recipients/s the fake ESP accepted from `processes` bare clients replaying
    the product's requests, each starting at a different one."""
    from django.db import connections

    if not replay.requests:
        raise RuntimeError("no request of the product's to replay")
    connections.close_all()  # children must not share (and close) our connection
    count = len(replay.requests)
    starts = [i * count // processes for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        totals = pool.starmap(_post_repeatedly, [(replay, s) for s in starts])
    client.reset()
    return sum(totals) / LIMIT_SECONDS


def naive_rate(count: int, client: FakeESPClient) -> float:
    """One full render and one send_mail() per subscriber, like django-newsletter."""
    from django.conf import settings
    from django.core.mail import send_mail

    from newsletter.emails import render_email, unsubscribe_url
    from newsletter.models import Subscriber
    from posts.models import Post

    post = Post.objects.order_by("-pk").first()
    client.reset()
    started = time.perf_counter()
    for subscriber in Subscriber.objects.order_by("pk")[:count].iterator():
        email = render_email(
            "post",
            {
                "post": post,
                "post_url": settings.SITE_URL + post.get_absolute_url(),
                "unsubscribe_url": unsubscribe_url(subscriber),
            },
        )
        send_mail(
            email.subject,
            email.text,
            settings.NEWSLETTER_FROM_EMAIL,
            [subscriber.email],
            html_message=email.html,
        )
    elapsed = time.perf_counter() - started
    assert client.stats()["count"] == count
    return count / elapsed


if __name__ == "__main__":
    main()
