"""`make bench`: how fast a post fans out to N subscribers, against references
measured in the same run on the same machine, data and fake ESP.

For each N (10,000 and 100,000; --full adds 1,000,000) on PostgreSQL and Redis:
* plan_s: planning the send (the ledger rows), in its own process;
* copy_s: a raw PostgreSQL COPY of as many ledger rows into the same table;
* batch / per_message: recipients per second the fake ESP accepted from real Celery
  workers (subprocesses, --workers of them) in batch mode (Postmark /email/batch, or
  with --postmark-bulk its bulk API) and in one-message-per-recipient mode;
* batch_limit / per_message_limit: a bare client (as many processes as workers)
  posting pre-built copies of the very requests the product made (headers and
  body), as fast as it can: over one kept-alive http.client connection each;
  measured right before and right after the product's send (from a sample
  batch the bench sends itself), and averaged;
* naive: a loop that renders and send_mail()s one message per subscriber, the way
  django-newsletter does (measured on the first --naive-n subscribers);
* peak RSS of the planner and of each worker, and DB queries per batch.

Its last line sums up the largest N:
bench: batch=… batch_limit=… per_message=… per_message_limit=… naive=… plan_s=…
copy_s=… rss_growth_mb=… n=…
"""

import argparse
import http.client
import multiprocessing
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

from benchmarks import _harness as h
from benchmarks.fake_esp import FakeESPClient

LIMIT_SECONDS = 3.0


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
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/newsletter_bench"
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    parser.add_argument("--plan", type=int, metavar="SEND_ID", help=argparse.SUPPRESS)
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
        results = {n: measure(n, env, client, args) for n in sorted(ns)}
    finally:
        h.stop(esp)
    smallest, largest = results[min(results)], results[max(results)]
    growth = max(
        largest["planner_rss_mb"] - smallest["planner_rss_mb"],
        largest["worker_rss_mb"] - smallest["worker_rss_mb"],
    )
    r = largest
    print(
        "targets at n={n}: batch/batch_limit={a:.0%} (>=50%), batch/naive={b:.0f}x"
        " (>=20x), per_message/limit={c:.0%} (>=60%), plan/copy={d:.1f}x (<=3x),"
        " rss growth {e:.1f} MB (<20), queries/batch {f} (<=5)".format(
            n=r["n"],
            a=r["batch"] / r["batch_limit"],
            b=r["batch"] / r["naive"],
            c=r["per_message"] / r["per_message_limit"],
            d=r["plan_s"] / r["copy_s"],
            e=growth,
            f=r["queries_per_batch"],
        )
    )
    print(
        f"bench: batch={r['batch']:.0f} batch_limit={r['batch_limit']:.0f}"
        f" per_message={r['per_message']:.0f}"
        f" per_message_limit={r['per_message_limit']:.0f} naive={r['naive']:.0f}"
        f" plan_s={r['plan_s']:.2f} copy_s={r['copy_s']:.2f}"
        f" rss_growth_mb={growth:.1f} n={r['n']}"
    )


def measure(n: int, env: dict, client: FakeESPClient, args) -> dict:
    from newsletter.celery import app

    print(f"n={n}: seeding…", flush=True)
    h.reset_database()
    h.seed_subscribers(n)
    app.control.purge()
    result = {"n": n, "copy_s": copy_reference(n)}

    bulk = {"ANYMAIL_POSTMARK_USE_BULK_API": "1"} if args.postmark_bulk else {}
    batch = mode_run(
        "Batch mode",
        {**env, **bulk},
        "email/bulk" if args.postmark_bulk else "email/batch",
        client,
        n,
        args.workers,
        bulk=args.postmark_bulk,
    )
    single = mode_run(
        "One message each",
        {**env, "NEWSLETTER_DELIVERY_MODE": "single"},
        "email",
        client,
        n,
        args.workers,
        single=True,
    )
    result.update(
        batch=batch["rate"],
        batch_limit=batch["limit"],
        per_message=single["rate"],
        per_message_limit=single["limit"],
        plan_s=batch["plan_s"],
        planner_rss_mb=batch["planner_rss_mb"],
        worker_rss_mb=max(batch["worker_rss_mb"], single["worker_rss_mb"]),
        queries_per_batch=batch["queries_per_batch"],
    )
    result["naive"] = naive_rate(min(n, args.naive_n), client)
    print(
        "n={n}: plan_s={plan_s:.2f} copy_s={copy_s:.2f} batch={batch:.0f}/s"
        " batch_limit={batch_limit:.0f}/s per_message={per_message:.0f}/s"
        " per_message_limit={per_message_limit:.0f}/s naive={naive:.0f}/s"
        " planner_rss_mb={planner_rss_mb:.0f} worker_rss_mb={worker_rss_mb:.0f}"
        " queries_per_batch={queries_per_batch}".format(**result),
        flush=True,
    )
    return result


def mode_run(
    title: str,
    env: dict,
    endpoint: str,
    client: FakeESPClient,
    n: int,
    workers: int,
    **mode: bool,
) -> dict:
    """One send to all n subscribers by `workers` workers, and the bare client's
    limit for the same requests measured right before and right after it: the
    mean of the two, as this shared machine's speed drifts over a run."""
    queries = sample_send(**mode)
    before = bare_client_rate(client, endpoint, workers)
    send_id = new_send(title)
    plan_s, planner_rss = plan_elsewhere(send_id, env)
    rate, worker_rss = send_with_workers(env, client, send_id, n, workers)
    after = bare_client_rate(client, endpoint, workers)
    print(
        f"n={n}: {title.lower()}: {rate:.0f}/s; bare client before {before:.0f}/s,"
        f" after {after:.0f}/s",
        flush=True,
    )
    return {
        "rate": rate,
        "limit": (before + after) / 2,
        "plan_s": plan_s,
        "planner_rss_mb": planner_rss,
        "worker_rss_mb": worker_rss,
        "queries_per_batch": queries,
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
            " last_event"
        )
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for pk in ids:
                copy.write_row((send.pk, batch.pk, pk, "queued", "", "", ""))
    elapsed = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE mailing_id = %s", [send.pk])  # noqa: S608
        cursor.execute(f"VACUUM ANALYZE {table}")
    return elapsed


def plan_elsewhere(send_id: int, env: dict) -> tuple[float, float]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fanout", "--plan", str(send_id)],
        cwd=h.ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    output = process.stdout.read()  # until the planner exits
    process.wait()
    _, plan_s, _, rss = output.split()
    return float(plan_s), float(rss)


def plan_here(send_id: int) -> None:
    import django

    django.setup()
    from django.db import connection

    from newsletter import delivery
    from newsletter.celery import app

    # The clock measures planning in a process already connected to the database
    # and the broker, as a worker is, not the first contact (~70 ms here).
    connection.ensure_connection()
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(app.amqp.queues[app.conf.task_default_queue])
    started = time.perf_counter()
    while delivery.mailing_plan_page(mailing_id=send_id):
        pass
    elapsed = time.perf_counter() - started
    print(f"plan_s {elapsed:.4f} rss_mb {h.peak_rss_mb():.1f}", flush=True)


def send_with_workers(
    env: dict, client: FakeESPClient, send_id: int, n: int, workers: int
) -> tuple[float, float]:
    """Recipients/s the fake ESP accepted, and the workers' peak RSS (MB).

    The clock starts on warm workers: the send is paused while they boot (they
    drain the doorbells planning rang and claim nothing), then resumed, which
    rings every batch again.
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
        started = time.monotonic()
        delivery.mailing_resume(mailing_id=send_id)
        stats = {}

        def all_accepted() -> bool:
            stats.update(client.stats())
            return stats["count"] >= n

        # Polled gently (each poll is a request the fake ESP answers while the
        # workers want it); the end is the fake ESP's own note of the last
        # accepted request, on the monotonic clock every process here shares.
        h.wait_for(all_accepted, timeout=60 + n / 100, every=0.25)
        elapsed = stats["last_accepted_at"] - started
    finally:
        rss = max(h.stop(p) for p in processes)
    return n / elapsed, rss


def sample_send(*, single: bool = False, bulk: bool = False) -> int:
    """Send two batches of a fresh send in this process, in the mode the workers
    are about to send in, so that the bare client can replay the product's request
    before they start; returns the second batch's query count (a worker's first
    batch of a send also reads the post to render it)."""
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
    with override_settings(
        NEWSLETTER_DELIVERY_MODE="single" if single else "auto",
        ANYMAIL={**settings.ANYMAIL, "POSTMARK_USE_BULK_API": bulk},
    ):
        delivery.batch_send(batch_id=first.pk)
        with CaptureQueriesContext(connection) as queries:
            delivery.batch_send(batch_id=second.pk)
    delivery.mailing_cancel(mailing_id=send_id)
    return len(queries)


def _post_repeatedly(url: str, headers: dict, body: bytes, recipients: int) -> int:
    """Post one request again and again over one kept-alive connection, with the
    standard library's http.client: nothing per request but the HTTP itself."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port)
    sent = 0
    deadline = time.perf_counter() + LIMIT_SECONDS
    while time.perf_counter() < deadline:
        connection.request("POST", target.path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"the fake ESP answered {answer.status}")
        sent += recipients
    connection.close()
    return sent


def bare_client_rate(client: FakeESPClient, endpoint: str, processes: int) -> float:
    """Post copies of the last request the product made, headers and body byte for
    byte, from `processes` clients."""
    from django.db import connections

    (last,) = client.messages(limit=1)
    payload = last["payload"]
    if isinstance(payload, dict) and "Messages" in payload:  # the bulk API
        recipients = len(payload["Messages"])
    else:
        recipients = len(payload) if isinstance(payload, list) else 1
    body = last["request_body"].encode("latin-1")
    request = (client.url + endpoint, last["request_headers"], body, recipients)
    connections.close_all()  # children must not share (and close) our connection
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        totals = pool.starmap(_post_repeatedly, [request] * processes)
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
