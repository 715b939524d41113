"""`make search-bench`: how fast /search/ answers over an archive of 10,000 posts.

    BENCH_DATABASE_URL=postgres://…/newsletter_bench make search-bench

Empties the PostgreSQL database BENCH_DATABASE_URL names (it must be named *bench*)
and fills it with --posts published posts of realistic length: each body is a
different draw of paragraphs from the demo posts and benchmarks/post_body.md, so
common words are in nearly every post and rarer ones in a few. Then runs a fixed
set of queries through the real view (Django's test client, DEBUG off): a word in
every post, single words, two words, a quoted phrase, a rare word found deep in a
few posts, and a later page, each --rounds times after one warm-up, and prints per
query the median time and the CPU time a search took here and in its PostgreSQL
backend (what to compare on a shared machine), then one summary line over all:

search: posts=… p50_ms=… p99_ms=… queries=…

where queries is the most SQL queries any search page made. The page cache is off
(PAGE_CACHE_SECONDS=0): every request searches, as the first reader to search for
some words does; `make load` measures the cached path.
"""

import argparse
import random
import statistics
import sys
import time
from datetime import timedelta

from benchmarks import _harness as h

# (label, query string): what readers type, from the commonest to the rarest word.
QUERIES = [
    ("every post", {"q": "probation"}),
    ("every post, page 3", {"q": "probation", "page": "3"}),
    ("common word", {"q": "caseloads"}),
    ("two words", {"q": "domestic abuse"}),
    ("two words apart", {"q": "sodexo safeguarding"}),
    ("phrase", {"q": '"youth offending"'}),
    ("a name, in its forms", {"q": "nps"}),
    ("a name and a year", {"q": "national probation service 2019"}),
    ("rare word", {"q": "quillworthy"}),
    ("no match", {"q": "xylophone"}),
]
RARE_WORD_POSTS = 3


def paragraphs() -> list[str]:
    from posts.demo_content import POSTS

    texts = [post["body"] for post in POSTS]
    texts.append((h.ROOT / "benchmarks" / "post_body.md").read_text())
    return [
        chunk.strip() for text in texts for chunk in text.split("\n\n") if chunk.strip()
    ]


def seed(count: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from posts.demo_content import AREAS
    from posts.markdown import plain_text, render_markdown
    from posts.models import Post
    from posts.search import index_posts

    pool = paragraphs()
    places = [area["name"] for area in AREAS]
    generator = random.Random(22)
    rare = set(generator.sample(range(count), RARE_WORD_POSTS))
    now = timezone.now()
    posts = []
    for n in range(count):
        body = "\n\n".join(generator.sample(pool, 9))
        if n in rare:
            body += "\n\nA closing word on the quillworthy approach."
        place = generator.choice(places)
        body_html = render_markdown(body)
        posts.append(
            Post(
                title=f"Probation in {place}: inspection {n}",
                slug=f"bench-{n}",
                excerpt=f"What inspectors found in {place}.",
                body=body,
                body_html=body_html,
                search_text=plain_text(body_html),
                status=Post.Status.PUBLISHED,
                published_at=now - timedelta(hours=n),
            )
        )
    Post.objects.bulk_create(posts, batch_size=1000)
    index_posts(Post.objects.all())
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Post._meta.db_table}")


def cpu_seconds(connection) -> tuple[float, float]:
    """CPU time so far of this process and of its PostgreSQL backend (0 when the
    server is on another machine): on a shared machine wall time is mostly waiting
    for a core, CPU time is what a search costs."""
    backend = 0.0
    if connection.settings_dict["HOST"] in ("", "localhost", "127.0.0.1"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = h.cpu_seconds(cursor.fetchone()[0])
    return time.process_time(), backend


def measure(
    rounds: int,
) -> tuple[dict[str, list[float]], dict[str, tuple[float, float]], int]:
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import (
        CaptureQueriesContext,
        override_settings,
        setup_test_environment,
    )

    setup_test_environment()
    # Static files from the source tree: no collectstatic manifest to build.
    static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    override_settings(STORAGES={**settings.STORAGES, "staticfiles": static}).enable()
    client = Client()
    timings: dict[str, list[float]] = {}
    cpu: dict[str, tuple[float, float]] = {}  # ms a search: Django, PostgreSQL
    most_queries = 0
    for label, params in QUERIES:
        for _ in range(2):  # the second would come from the page cache, if it were on
            with CaptureQueriesContext(connection) as queries:
                response = client.get("/search/", params)
            if response.status_code != 200:
                sys.exit(f"{label}: /search/ answered {response.status_code}")
            if not queries:
                sys.exit(f"{label}: answered from the page cache, not searched")
        most_queries = max(most_queries, len(queries))
        timings[label] = []
        cpu_before = cpu_seconds(connection)
        for _ in range(rounds):
            started = time.perf_counter()
            client.get("/search/", params)
            timings[label].append((time.perf_counter() - started) * 1000)
        cpu[label] = tuple(
            (after - before) * 1000 / rounds
            for before, after in zip(cpu_before, cpu_seconds(connection), strict=True)
        )
    return timings, cpu, most_queries


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search")
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=30)
    h.services_arguments(parser)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the archive of an earlier run if it holds --posts posts",
    )
    args = parser.parse_args()
    # Plain HTTP through the test client, and every search made afresh; production
    # settings otherwise.
    h.configure(
        args.database_url,
        args.redis_url,
        DJANGO_SECURE_SSL_REDIRECT="0",
        PAGE_CACHE_SECONDS="0",
    )
    from posts.models import Post

    if not (args.reuse and Post.objects.count() == args.posts):
        h.reset_database()
        started = time.perf_counter()
        seed(args.posts)
        print(f"seeded {args.posts} posts in {time.perf_counter() - started:.0f} s")
    timings, cpu, most_queries = measure(args.rounds)
    print("uncached: the page cache is off, every request searches")
    for label, values in timings.items():
        django_ms, postgres_ms = cpu[label]
        print(
            f"{label:20} p50={statistics.median(values):7.2f} ms  "
            f"p99={percentile(values, 0.99):7.2f} ms  "
            f"cpu={django_ms + postgres_ms:6.2f} ms "
            f"(django {django_ms:.2f}, postgres {postgres_ms:.2f})"
        )
    mean_cpu = sum(map(sum, cpu.values())) / len(cpu)
    print(f"cpu a search, mean over the queries: {mean_cpu:.1f} ms")
    every = [value for values in timings.values() for value in values]
    print(
        f"search: posts={args.posts} p50_ms={statistics.median(every):.1f} "
        f"p99_ms={percentile(every, 0.99):.1f} queries={most_queries}"
    )


if __name__ == "__main__":
    main()
