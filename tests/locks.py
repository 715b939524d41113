"""Two connections at once (PostgreSQL): wait, with a deadline, for the other one
to be held by a lock, instead of giving it a fixed moment to get there."""

import threading
import time
from collections.abc import Callable
from functools import partial

from django.db import connection, connections, transaction

from newsletter.subscriptions import subscriber_delete

from .factories import unpublish_at_the_desk


def another_connection_waits_for_a_lock() -> bool:
    """Whether a connection to this database other than ours waits for a lock."""
    with connection.cursor() as cursor:
        # Read fresh: within a transaction (asked from inside the held side)
        # PostgreSQL answers from the view as first read in it, for good.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def until_another_connection_waits_for_a_lock(timeout: float = 10.0) -> None:
    """Return once another connection waits for a lock. A fixed join(timeout=0.5)
    let go of the first side whether the second had reached the lock or not: on a
    busy machine the two then ran one after the other, and the race the test is
    about was never run."""
    deadline = time.monotonic() + timeout
    while not another_connection_waits_for_a_lock():
        if time.monotonic() > deadline:
            raise AssertionError(f"no connection waited for a lock in {timeout:.0f}s")
        time.sleep(0.05)


def until_done_or_waiting_for_a_lock(thread: threading.Thread, timeout: float = 10.0):
    """Return once `thread` has finished or another connection waits for a lock:
    for a race whose second side either runs through (the bug) or waits for the
    first side's lock (the fix)."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and not another_connection_waits_for_a_lock():
        if time.monotonic() > deadline:
            raise AssertionError(f"neither finished nor waited in {timeout:.0f}s")
        time.sleep(0.05)


def until_set_or_waiting_for_a_lock(
    event: threading.Event, timeout: float = 10.0
) -> None:
    """Return once `event` is set or another connection waits for a lock: for a
    side held open until the other either runs through (the bug, which sets the
    event) or waits for this side's lock (the fix)."""
    deadline = time.monotonic() + timeout
    while not (event.wait(0.05) or another_connection_waits_for_a_lock()):
        if time.monotonic() > deadline:
            raise AssertionError(f"neither went on nor waited in {timeout:.0f}s")


def in_a_thread(work: Callable[[], object], answers: list) -> threading.Thread:
    """`work` started in a thread, on a database connection of its own (closed
    when it ends); what it returns is appended to `answers`."""

    def run() -> None:
        try:
            answers.append(work())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def as_it_commits(
    held: Callable[[], object], work: Callable[[], object], *, must_wait: bool = False
) -> tuple[object, object]:
    """What `held` and `work` return, each run on a connection of its own: `held`
    in a transaction, kept from committing while `work` runs, until `work` ends
    (the race run through) or waits for one of its locks (the fix); `held` then
    commits. `must_wait`: `work` waiting for a lock is the test's point, and its
    running through is a failure of its own."""
    reached, go_on = threading.Event(), threading.Event()

    def hold() -> object:
        with transaction.atomic():
            answer = held()
            reached.set()
            go_on.wait(timeout=10)  # before committing
        return answer

    holds, answers = [], []
    holding = in_a_thread(hold, holds)
    assert reached.wait(timeout=10)
    working = in_a_thread(work, answers)
    if must_wait:
        until_another_connection_waits_for_a_lock()
    else:
        until_done_or_waiting_for_a_lock(working)
    go_on.set()
    holding.join(timeout=10)
    working.join(timeout=10)
    assert len(holds) == 1, "the held side raised, or did not end"
    assert len(answers) == 1, "the work raised, or did not end"
    return holds[0], answers[0]


def as_erasure_commits(subscriber, work: Callable[[], object]) -> object:
    """What `work` returns, run as the reader's erasure is about to commit: it
    meets the erasure committing (the race) or after (the fix)."""
    erasure = partial(subscriber_delete, subscriber=subscriber)
    return as_it_commits(erasure, work, must_wait=True)[1]


def as_taken_down(post, editor, work: Callable[[], object]) -> object:
    """What `work` returns, run while an editor's unpublish of `post` (their
    logged-in client, `editor`) holds the post's lock, not yet committed."""
    return as_it_commits(lambda: unpublish_at_the_desk(post, editor=editor), work)[1]
