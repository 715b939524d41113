"""How long a subscribe POST takes for each state of the address, to show that the
answer's timing does not tell an attacker whether an address is known.

Runs against a scratch test database on whatever DATABASE_URL and REDIS_URL name
(queueing the subscribe tasks on the real broker, then purging them):

    DATABASE_URL=postgres://... REDIS_URL=redis://.../n \
        .venv/bin/python -m benchmarks.subscribe_timing

Prints the median and 90th percentile per state, and the largest difference of
medians as a share of the smallest median.
"""

import os
import statistics
import sys
import time

import django

ROUNDS = int(os.environ.get("ROUNDS", "150"))
STATES = ["new", "pending", "active", "unsubscribed"]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsletter.settings")
    django.setup()
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import setup_test_environment
    from django.utils.timezone import now

    from newsletter.celery import app as celery_app
    from newsletter.models import Subscriber

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    timings: dict[str, list[float]] = {state: [] for state in STATES}
    try:
        with override_settings(
            NEWSLETTER_SUBSCRIBE_LIMIT_PER_CLIENT=10**9,
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        ):
            client = Client()
            for round_number in range(ROUNDS):
                for state in STATES:  # interleaved, so drift hits every state alike
                    email = f"{state}-{round_number}@example.org"
                    if state != "new":
                        Subscriber.objects.create(
                            email=email, status=state, confirmation_sent_at=now()
                        )
                    started = time.perf_counter()
                    response = client.post("/subscribe/", {"email": email})
                    timings[state].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.status_code
    finally:
        celery_app.control.purge()
        connection.creation.destroy_test_db(old_name, verbosity=0)

    medians = {}
    for state in STATES:
        values = sorted(timings[state])
        medians[state] = statistics.median(values) * 1000
        p90 = values[int(len(values) * 0.9)] * 1000
        print(f"{state:13} median={medians[state]:.2f}ms p90={p90:.2f}ms")
    spread = (max(medians.values()) - min(medians.values())) / min(medians.values())
    engine = connection.vendor
    broker = "redis" if os.environ.get("REDIS_URL") else "filesystem"
    print(
        f"subscribe_timing: db={engine} broker={broker} rounds={ROUNDS} "
        f"median_spread={spread:.0%}"
    )


if __name__ == "__main__":
    sys.exit(main())
