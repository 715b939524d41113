"""Queries and time per public page as the archive grows.

    .venv/bin/python -m benchmarks.publication_pages [--posts 200 2000]

Runs in a throwaway test database on whatever DATABASE_URL names (SQLite by default),
fills it with posts that all share a category, a tag, an area and an organisation
(the worst case for related-post suggestions), and prints, per page, the number of
queries and the median time of a few requests. The query count should not move with
the number of posts; the time may, a little.
"""

import argparse
import os
import statistics
import time
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")
django.setup()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import (  # noqa: E402
    CaptureQueriesContext,
    setup_test_environment,
)
from django.utils import timezone  # noqa: E402

from posts.models import (  # noqa: E402
    Area,
    Category,
    Inspection,
    Organisation,
    Post,
    Region,
    StandardRating,
    Tag,
)
from posts.search import index_post  # noqa: E402

PAGES = [
    "/",
    "/posts/post-0/",
    "/category/on-probation/",
    "/region/east/",
    "/organisation/owner/",
    "/inspections/?rating=good",
    "/search/?q=caseloads+suffolk",
    "/feed/",
]
REPEATS = 5


def add_posts(count: int) -> None:
    """Add posts that all share one category, tag, area, organisation and owner."""
    region, _ = Region.objects.get_or_create(name="East", slug="east")
    area, _ = Area.objects.get_or_create(name="Suffolk", slug="suffolk", region=region)
    owner, _ = Organisation.objects.get_or_create(
        name="Owner", slug="owner", kind="owner"
    )
    crc, _ = Organisation.objects.get_or_create(name="Suffolk CRC", slug="crc")
    crc.owners.add(owner)
    category, _ = Category.objects.get_or_create(
        name="On Probation", slug="on-probation"
    )
    tag, _ = Tag.objects.get_or_create(name="Caseloads", slug="caseloads")
    now = timezone.now()
    start = Post.objects.count()
    Post.objects.bulk_create(
        Post(
            title=f"Suffolk inspection number {n}",
            slug=f"post-{n}",
            excerpt="Caseloads were too high and supervision too thin.",
            body="## Findings\n\n" + "Inspectors reviewed caseloads in Suffolk. " * 80,
            body_html="<p>Findings</p>",
            status=Post.Status.PUBLISHED,
            published_at=now - timedelta(hours=n),
            announced_at=now,
        )
        for n in range(start, start + count)
    )
    posts = list(Post.objects.order_by("id")[start:])
    Post.categories.through.objects.bulk_create(
        Post.categories.through(post=post, category=category) for post in posts
    )
    Post.tags.through.objects.bulk_create(
        Post.tags.through(post=post, tag=tag) for post in posts
    )
    Inspection.objects.bulk_create(
        Inspection(post=post, title=f"Inspection {post.pk}", area=area, overall="good")
        for post in posts
    )
    inspections = list(Inspection.objects.filter(post__in=posts))
    Inspection.organisations.through.objects.bulk_create(
        Inspection.organisations.through(inspection=inspection, organisation=crc)
        for inspection in inspections
    )
    StandardRating.objects.bulk_create(
        StandardRating(inspection=i, standard="2.1 Assessment", rating="good")
        for i in inspections
    )
    for post in posts:
        index_post(post)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as a live database would have


def measure(client: Client, url: str) -> tuple[int, float]:
    timings = []
    connection.queries_log.clear()  # seeding filled it; a full log counts nothing
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        assert response.status_code == 200, url
    return len(queries), statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, nargs="+", default=[200, 2000])
    sizes = parser.parse_args().posts
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    try:
        client = Client()
        results = {}
        total = 0
        for size in sizes:
            add_posts(size - total)
            total = size
            results[size] = {url: measure(client, url) for url in PAGES}
        print(f"database: {connection.vendor}; median of {REPEATS} requests")
        header = "".join(f"{f'{n} posts':>22}" for n in sizes)
        print(f"{'page':34}{header}")
        for url in PAGES:
            cells = "".join(
                f"{results[n][url][0]:>8} q {results[n][url][1]:>8.1f} ms"
                for n in sizes
            )
            print(f"{url:34}{cells}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
