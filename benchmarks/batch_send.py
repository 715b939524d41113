"""A worker's CPU per reader: a batch of 500 sent by batch_send through our
Postmark backend to the fake ESP (its own process), on the PostgreSQL database
BENCH_DATABASE_URL names (one named *bench*: it is emptied) and BENCH_REDIS_URL.
The batch is a daily digest round's, 500 distinct digests of 2 to 5 of 12 posts;
or with --post a post's (the ~30 KB post `make bench` sends), each reader's links
their own.

    .venv/bin/python -m benchmarks.batch_send [--post] [--profile] [--rounds 5]

The batch is sent, put back to QUEUED and sent again, `rounds` times after one
warm-up (the Link rows, the worker's rendered parts); prints CPU (and of it user)
and wall ms per reader, the fake ESP's and PostgreSQL's CPU beside it, and with
--profile cProfile's top functions by own and cumulative CPU time. As in a
round, each batch after a worker's first, with what the process made before it
out of the garbage collector's reach, as in a worker.
"""

import argparse
import cProfile
import gc
import os
import pstats
import random
import time

from benchmarks import _harness as h

READERS = 500  # one Postmark /email/batch call


def main() -> None:
    parser = argparse.ArgumentParser()
    h.services_arguments(parser)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--post", action="store_true", help="a post's batch")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    esp, url = h.start_fake_esp("--no-deliveries")
    try:
        h.configure(args.database_url, args.redis_url, ANYMAIL_POSTMARK_API_URL=url)
        run(args, esp.pid)
    finally:
        h.stop(esp)


def run(args, esp_pid: int) -> None:
    from django.utils import timezone

    from newsletter import digests
    from newsletter.delivery.sender import batch_send
    from newsletter.models import Batch, Delivery, Mailing, Subscriber
    from posts.models import Post

    h.reset_database()
    h.digest_posts_create()
    h.seed_subscribers(READERS)
    rng = random.Random(1)
    names = ["", "Sam O'Neill", "Ann"]
    readers = list(Subscriber.objects.order_by("pk"))
    for reader in readers:
        reader.name = rng.choice(names)
    Subscriber.objects.bulk_update(readers, ["name"])
    if args.post:
        mailing = Mailing.objects.create(
            kind=Mailing.Kind.POST,
            post=h.new_post("A post to every reader"),
            status=Mailing.Status.SENDING,
        )
    else:
        now = timezone.now()
        mailing = Mailing.objects.create(
            kind=Mailing.Kind.DIGEST,
            frequency="daily",
            slot=digests.slot_of(now),
            period=now.date(),
            status=Mailing.Status.SENDING,
        )
    batch = Batch.objects.create(mailing=mailing, number=1, size=READERS)
    posts = list(Post.objects.exclude(pk=mailing.post_id))
    for reader in readers:
        row = Delivery.objects.create(mailing=mailing, batch=batch, subscriber=reader)
        if not args.post:
            row.posts.set(rng.sample(posts, rng.randint(2, 5)))

    # As a worker does at start (newsletter/celery.py): without it, collections
    # walking this process's ~110,000 objects from start-up cost a quarter more.
    gc.freeze()
    profile = cProfile.Profile(time.process_time) if args.profile else None
    wall = cpu = user = esp_cpu = postgres_cpu = 0.0
    for attempt in range(args.rounds + 1):  # the first warms up: Link rows, imports
        Delivery.objects.filter(batch=batch).update(
            status=Delivery.Status.QUEUED, sent_at=None, esp_message_id=""
        )
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.QUEUED)
        Mailing.objects.filter(pk=mailing.pk).update(status=Mailing.Status.SENDING)
        started, cpu_started = time.perf_counter(), time.process_time()
        user_started = os.times().user
        esp_started, postgres_started = h.cpu_seconds(esp_pid), h.postgres_cpu_seconds()
        if profile and attempt:
            profile.enable()
        batch_send(batch_id=batch.pk)
        if profile:
            profile.disable()
        if attempt:
            wall += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
            user += os.times().user - user_started
            esp_cpu += h.cpu_seconds(esp_pid) - esp_started
            postgres_cpu += sum(
                seconds - postgres_started.get(pid, 0.0)
                for pid, seconds in h.postgres_cpu_seconds().items()
            )
        sent = Delivery.objects.filter(batch=batch, status=Delivery.Status.SENT)
        assert sent.count() == READERS, sent.count()
    count = args.rounds * READERS
    wall, cpu, user = wall / count, cpu / count, user / count
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(
        f"batch_send: {cpu * 1000:.3f} ms CPU ({user * 1000:.3f} user),"
        f" {wall * 1000:.3f} ms wall per reader; CPU of the fake ESP"
        f" {esp_cpu * 1000 / count:.3f} ms, of PostgreSQL"
        f" {postgres_cpu * 1000 / count:.3f} ms"
    )
    if profile:
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
