"""The desk (the admin's front page) and a post's report over a large list.

    BENCH_DATABASE_URL=postgres://…/nl_bench python -m benchmarks.desk_pages

Empties the PostgreSQL database BENCH_DATABASE_URL names (it must be named *bench*)
and fills it, in SQL (INSERT … SELECT over generate_series), with --readers readers
in every status, half of them following a region, their consents from the subscribe
form on 40 pages, the departures of the last 12 weeks, and --mailings mailings (10),
one a day, of --readers each (1,000,000 ledger rows by default): a post's
announcement yesterday, today's digest, which carried it too, and older digests,
with bounces and complaints.
Then fetches the desk, that post's report and the lists that grow with the list
(LISTS) as a logged-in administrator (Django's test client, DEBUG off), and prints
per page the queries and the median time of --rounds requests, then one line:
desk_pages: readers=… deliveries=… desk_queries=… desk_ms=… report_queries=… report_ms=…
--explain prints PostgreSQL's plans of each page's slowest queries.
"""

import argparse
import statistics
import sys
import time
from datetime import timedelta

from benchmarks import _harness as h

BATCH_SIZE = 500
FORM_PAGES = 40
# The desk's lists of what grows with the list and the ledger.
LISTS = [
    "/admin/newsletter/subscriber/",
    "/admin/newsletter/subscriber/?status__exact=active",
    "/admin/newsletter/suppression/",
    "/admin/newsletter/mailing/",
    "/admin/newsletter/batch/",
    "/admin/newsletter/delivery/",
    "/admin/newsletter/delivery/?status__exact=failed",
    "/admin/newsletter/event/",
]


def insert_select(model, values: dict, source: str, params=()) -> None:
    """INSERT INTO model's table SELECT values FROM source. A value is an SQL
    expression, or (expression, its parameters); the columns not given take the
    model field's default, so a field added later needs no change here."""
    from django.db import connection

    columns, expressions, parameters = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in values:
            continue
        columns.append(f'"{field.column}"')
        value = values.get(field.column)
        if value is None:
            expressions.append("%s")
            default = field.get_default()
            parameters.append(field.get_db_prep_save(default, connection))
        elif isinstance(value, tuple):
            expressions.append(value[0])
            parameters.extend(value[1])
        else:
            expressions.append(value)
    # Table and column names from the models, and this module's own expressions;
    # every value goes in as a parameter.
    sql = (
        f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) '  # noqa: S608
        f"SELECT {', '.join(expressions)} FROM {source}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*parameters, *params])


def seed(readers: int, mailings: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from newsletter.models import (
        Batch,
        Consent,
        Delivery,
        Link,
        Mailing,
        Subscriber,
        SubscriberTopic,
        Suppression,
    )
    from posts.comments.models import Comment
    from posts.models import Post

    now = timezone.now()
    # Every 31st reader is pending, 50th unsubscribed, 97th bounced, 211th
    # complained; every 41st receiving reader paused. Joined over 16 weeks.
    status = (
        "CASE WHEN g %% 31 = 0 THEN 'pending' WHEN g %% 50 = 0 THEN 'unsubscribed' "
        "WHEN g %% 97 = 0 THEN 'bounced' WHEN g %% 211 = 0 THEN 'complained' "
        "ELSE 'active' END"
    )
    joined = "%s::timestamptz - (g %% 112) * interval '1 day' - g * interval '1 s'"
    insert_select(
        Subscriber,
        {
            "email": "'reader' || g || '@example.org'",
            "status": status,
            "created_at": (joined, [now]),
            "confirmed_at": (
                f"CASE WHEN g %% 31 = 0 THEN NULL ELSE {joined} END",
                [now],
            ),
            "unsubscribed_at": (
                "CASE WHEN g %% 50 = 0 OR g %% 97 = 0 OR g %% 211 = 0 "
                "THEN %s::timestamptz - (g %% 80) * interval '1 day' END",
                [now],
            ),
            "paused_at": ("CASE WHEN g %% 41 = 0 THEN %s::timestamptz END", [now]),
        },
        "generate_series(1, %s) AS g",
        [readers],
    )
    subscribers = f'"{Subscriber._meta.db_table}"'
    insert_select(
        SubscriberTopic,
        {
            "subscriber_id": "id",
            "kind": "'region'",
            "value": "'region-' || (id %% 12)",
            "frequency": "(ARRAY['instant', 'daily', 'weekly'])[id %% 3 + 1]",
        },
        f"{subscribers} WHERE id %% 2 = 0",
    )
    insert_select(
        Consent,
        {
            "subscriber_id": "id",
            "created_at": "created_at",
            "confirmed_at": "confirmed_at",
            "wording": "'I agree.'",
            "wording_version": "'1'",
            "source": "'subscribe form'",
            "page": f"'/posts/post-' || (id %% {FORM_PAGES}) || '/'",
        },
        subscribers,
    )
    insert_select(
        Suppression,
        {
            "address_hash": "md5(email) || md5(email || 'x')",
            "reason": "CASE status WHEN 'unsubscribed' THEN 'unsubscribed' "
            "WHEN 'bounced' THEN 'hard_bounce' ELSE 'complaint' END",
            "created_at": "unsubscribed_at",
            "updated_at": "unsubscribed_at",
        },
        f"{subscribers} WHERE unsubscribed_at IS NOT NULL",
    )

    # A mailing a day, the newest first: today's digest, which carried the post
    # too, yesterday's announcement of the post, and older digests.
    yesterday = now - timedelta(days=1)
    post = Post.objects.create(
        title="Suffolk: an inspection",
        slug="bench-report",
        status=Post.Status.PUBLISHED,
        published_at=yesterday,
        announced_at=yesterday,
    )
    for n in range(mailings):
        day = now - timedelta(days=n)
        if n == 1:
            mailing = Mailing.objects.create(
                kind=Mailing.Kind.POST, post=post, status=Mailing.Status.DONE
            )
        else:
            mailing = Mailing.objects.create(
                kind=Mailing.Kind.DIGEST,
                frequency="daily",
                period=day.date(),
                slot=day,
                status=Mailing.Status.DONE,
            )
            if n == 0:
                carrying = mailing
        Mailing.objects.filter(pk=mailing.pk).update(created_at=day)
        batches = (readers + BATCH_SIZE - 1) // BATCH_SIZE
        insert_select(
            Batch,
            {
                "mailing_id": ("%s", [mailing.pk]),
                "number": "b",
                "status": "'done'",
                "size": str(BATCH_SIZE),
                "sent": str(BATCH_SIZE),
            },
            "generate_series(1, %s) AS b",
            [batches],
        )
        first_batch = mailing.batches.order_by("number").values_list("pk")[0][0]
        insert_select(
            Delivery,
            {
                "mailing_id": ("%s", [mailing.pk]),
                "batch_id": (f"%s + (id - 1) / {BATCH_SIZE}", [first_batch]),
                "subscriber_id": "id",
                "status": "'sent'",
                "sent_at": ("%s", [day]),
                "esp_message_id": "'m-' || id",
                # 2.5 % bounces and 0.14 % complaints on every mailing: flagged.
                "last_event": "CASE WHEN id %% 40 = 0 THEN 'bounced' "
                "WHEN id %% 700 = 0 THEN 'complained' ELSE 'delivered' END",
            },
            subscribers,
        )
        Link.objects.create(mailing=mailing, url="https://example.org/report")
    insert_select(
        Delivery.posts.through,
        {"delivery_id": "id", "post_id": ("%s", [post.pk])},
        f'"{Delivery._meta.db_table}" WHERE mailing_id = %s',
        [carrying.pk],
    )
    carrying.digest_posts.add(post)
    for n in range(5):
        Comment.objects.create(
            post=post,
            name=f"Reader {n}",
            email=f"commenter{n}@example.org",
            body="Caseloads here are higher.",
            status=Comment.Status.PENDING,
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def measure(client, url: str, rounds: int) -> tuple[int, float, list[dict]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    # Read now: the captured queries are a window on the connection's log, which
    # every later request empties.
    captured = list(queries.captured_queries)
    if response.status_code != 200:
        sys.exit(f"{url} answered {response.status_code}")
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
    return len(captured), statistics.median(timings), captured


def explain(captured: list[dict], slowest: int = 3) -> None:
    from django.db import connection

    reads = [q for q in captured if q["sql"].lstrip().upper().startswith("SELECT")]
    for query in sorted(reads, key=lambda q: -float(q["time"]))[:slowest]:
        print(f"\n-- {query['time']} s\n{query['sql'][:400]}")
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            print("\n".join(row[0] for row in cursor.fetchall()))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.desk_pages")
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--mailings", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the list of an earlier run if it holds --readers readers",
    )
    h.services_arguments(parser)
    args = parser.parse_args()
    h.configure(args.database_url, args.redis_url, DJANGO_SECURE_SSL_REDIRECT="0")

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    from newsletter.models import Delivery, Mailing, Subscriber, Suppression
    from posts.models import Post

    if not (
        args.reuse
        and Subscriber.objects.count() == args.readers
        and Mailing.objects.count() == args.mailings
    ):
        h.reset_database()  # posts, and with them their comments
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {Suppression._meta.db_table}")
        started = time.perf_counter()
        seed(args.readers, args.mailings)
        print(f"seeded {args.readers} readers in {time.perf_counter() - started:.0f} s")
    deliveries = Delivery.objects.count()

    setup_test_environment()
    # Static files from the source tree: no collectstatic manifest to build.
    static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    override_settings(STORAGES={**settings.STORAGES, "staticfiles": static}).enable()
    admin, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(admin)
    post = Post.objects.get(slug="bench-report")
    report_url = f"/admin/newsletter/postreport/{post.pk}/change/"
    desk_queries, desk_ms, captured = measure(client, "/admin/", args.rounds)
    report_queries, report_ms, report_captured = measure(
        client, report_url, args.rounds
    )
    print(f"{'/admin/':50} {desk_queries:4} q {desk_ms:9.1f} ms")
    print(f"{report_url:50} {report_queries:4} q {report_ms:9.1f} ms")
    for path in LISTS:
        queries, ms, _ = measure(client, path, args.rounds)
        print(f"{path:50} {queries:4} q {ms:9.1f} ms")
    if args.explain:
        print("\n# the desk")
        explain(captured)
        print("\n# the report")
        explain(report_captured)
    print(
        f"desk_pages: readers={args.readers} deliveries={deliveries} "
        f"desk_queries={desk_queries} desk_ms={desk_ms:.0f} "
        f"report_queries={report_queries} report_ms={report_ms:.0f}"
    )


if __name__ == "__main__":
    main()
