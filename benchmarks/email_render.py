"""How long an email takes to render, per reader, in one process.

    .venv/bin/python -m benchmarks.email_render

Prints, for the longest demo post, the time to render it (templates, css-inline,
text part) and the time to address it to one reader and serialise the raw message,
which is what a batch pays per recipient. Then, for a batch of digests (each
reader holding 2 to 5 of 12 posts, as in `make bench`), the wall and CPU time per
digest of composing each reader's own message (the sender's one-message path,
`DigestEmail.for_reader`; batch mode assembles them with `for_many`), the batch's
reads and the Link rows included. On a throwaway SQLite database.
"""

import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")
_scratch = tempfile.TemporaryDirectory()
os.environ["DATABASE_URL"] = f"sqlite:///{Path(_scratch.name) / 'render.sqlite3'}"
django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from newsletter.delivery.ledger import batch_recipients  # noqa: E402
from newsletter.digests import DigestEmail, slot_of  # noqa: E402
from newsletter.emails import PostEmail, html_size  # noqa: E402
from newsletter.models import (  # noqa: E402
    Batch,
    Delivery,
    Mailing,
    Subscriber,
    SubscriberTopic,
)
from posts.demo_content import POSTS  # noqa: E402
from posts.markdown import render_markdown  # noqa: E402
from posts.models import Post  # noqa: E402

RENDERS = 50
READERS = 2000
DIGEST_POSTS = 12
DIGEST_READERS = 500  # one Postmark /email/batch call


def main() -> None:
    call_command("migrate", verbosity=0)
    demo = max(POSTS, key=lambda post: len(post["body"]))
    post = Post.objects.create(
        title=demo["title"],
        slug=demo["slug"],
        excerpt=demo["excerpt"],
        body=demo["body"],
        body_html=render_markdown(demo["body"]),
        published_at=timezone.now(),
    )
    started = time.perf_counter()
    for _ in range(RENDERS):
        email = PostEmail(post)
    render = (time.perf_counter() - started) / RENDERS

    readers = [
        Subscriber(pk=n, email=f"reader{n}@example.org") for n in range(1, READERS + 1)
    ]
    started = time.perf_counter()
    for reader in readers:
        email.for_subscriber(reader).message().as_bytes()
    per_reader = (time.perf_counter() - started) / READERS

    print(f"post: {demo['slug']} ({html_size(email.rendered) / 1000:.1f} KB HTML)")
    print(f"render once:          {render * 1000:8.2f} ms")
    print(f"address + serialise:  {per_reader * 1000:8.3f} ms per reader")
    print(f"ratio render/reader:  {render / per_reader:8.1f}")
    digests()


def digests() -> None:
    """A batch of digests, each composed and serialised as its own message."""
    now = timezone.now()
    posts = [
        Post.objects.create(
            title=demo["title"],
            slug=f"{demo['slug']}-{number}",
            excerpt=demo["excerpt"],
            body=demo["body"],
            status=Post.Status.PUBLISHED,
            published_at=now - timedelta(hours=number + 1),
            announced_at=now - timedelta(hours=number + 1),
        )
        for number, demo in enumerate((POSTS * DIGEST_POSTS)[:DIGEST_POSTS])
    ]
    mailing = Mailing.objects.create(
        kind=Mailing.Kind.DIGEST, frequency="daily", slot=slot_of(now), period=now
    )
    batch = Batch.objects.create(mailing=mailing, number=1, size=DIGEST_READERS)
    rng = random.Random(1)
    for n in range(DIGEST_READERS):
        reader = Subscriber.objects.create(
            email=f"reader{n}@example.org",
            name=rng.choice(["", "Sam O'Neill", "Ann"]),
            status=Subscriber.Status.ACTIVE,
            confirmed_at=now - timedelta(days=1),
        )
        # Following the round's frequency: a daily digest, not a last one.
        SubscriberTopic.objects.create(
            subscriber=reader, kind="everything", frequency="daily"
        )
        row = Delivery.objects.create(mailing=mailing, batch=batch, subscriber=reader)
        row.posts.set(rng.sample(posts, rng.randint(2, 5)))
    recipients, _skipped = batch_recipients(batch.pk, digest_of=mailing.frequency)
    wall, cpu = time.perf_counter(), time.process_time()
    # The first pass makes the Link rows and renders the parts, which the second
    # reuses as a worker's next batch of the round does; both are timed.
    for _ in range(2):
        digest = DigestEmail(mailing, recipients)
        messages = [digest.for_reader(recipient) for recipient in recipients]
    count = 2 * len(recipients)
    wall = (time.perf_counter() - wall) / count
    cpu = (time.process_time() - cpu) / count
    started = time.perf_counter()
    size = sum(len(message.message().as_bytes()) for message in messages)
    serialise = (time.perf_counter() - started) / len(messages)
    print(f"digest ({size / len(messages) / 1000:.1f} KB raw), batch of {count // 2}:")
    print(f"compose:              {wall * 1000:8.3f} ms per digest")
    print(f"  of which CPU:       {cpu * 1000:8.3f} ms per digest")
    print(f"serialise (SMTP):     {serialise * 1000:8.3f} ms per digest")


if __name__ == "__main__":
    main()
