"""The benchmarks run to their last line, each at a small size, on the real services
(PostgreSQL and Redis): a change that breaks one (a ledger column the COPY reference
did not write) failed only at the next `make bench`. Their figures are not judged
here: on a shared machine they are noise (docs/performance.md)."""

import os
import subprocess
import sys

import pytest

from benchmarks._harness import ROOT

pytestmark = pytest.mark.integration

# Two post batches of 500 and a digest round of three calls: the smallest run that
# goes through every step (fanout reads a mailing's first two batches).
READERS = 1200


@pytest.fixture
def services() -> list[str]:
    """The benchmarks' arguments: a database of their own beside the suite's (they
    empty it), named *bench* as they require, and a Redis database of their own
    (they purge its queues)."""
    database = os.environ.get("DATABASE_URL", "")
    redis = os.environ.get("REDIS_URL", "")
    if not (database.startswith("postgres") and redis.startswith("redis")):
        pytest.skip("the benchmarks run on PostgreSQL and Redis: set DATABASE_URL")
    server, _, _ = database.rpartition("/")
    redis_server, _, suites = redis.rpartition("/")
    own = 14 if suites != "14" else 13
    return [
        "--database-url",
        f"{server}/newsletter_bench_smoke",
        "--redis-url",
        f"{redis_server}/{own}",
    ]


def last_line(*arguments: str) -> str:
    run = subprocess.run(  # noqa: S603 (this interpreter, the project's own modules)
        [sys.executable, "-m", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


def test_make_bench_runs_to_its_last_line(services):
    line = last_line(
        "benchmarks.fanout", "--n", str(READERS), "--naive-n", "20", *services
    )
    assert line.startswith("bench: batch="), line
    assert line.endswith(f" n={READERS}"), line


@pytest.mark.parametrize("kind", [[], ["--post"]], ids=["digests", "a post"])
def test_a_workers_batch_benchmark_runs_to_its_last_line(services, kind):
    line = last_line("benchmarks.batch_send", "--rounds", "1", *kind, *services)
    assert line.startswith("batch_send: "), line
