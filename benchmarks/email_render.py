"""How long the post email takes: rendered once per send, then addressed per reader.

    .venv/bin/python -m benchmarks.email_render

Prints, for the longest demo post, the time to render it (templates, css-inline,
text part) and the time to address it to one reader and serialise the raw message,
which is what a batch pays per recipient. No database: the post and the readers are
unsaved objects.
"""

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")
django.setup()

from django.utils import timezone  # noqa: E402

from newsletter.emails import PostEmail, html_size  # noqa: E402
from newsletter.models import Subscriber  # noqa: E402
from posts.demo_content import POSTS  # noqa: E402
from posts.markdown import render_markdown  # noqa: E402
from posts.models import Post  # noqa: E402

RENDERS = 50
READERS = 2000


def main() -> None:
    demo = max(POSTS, key=lambda post: len(post["body"]))
    post = Post(
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


if __name__ == "__main__":
    main()
