"""Two connections at once (PostgreSQL): wait, with a deadline, for the other one
to be held by a lock, instead of giving it a fixed moment to get there."""

import threading
import time
from collections.abc import Callable

from django.db import connection, connections


def another_connection_waits_for_a_lock() -> bool:
    """Whether a connection to this database other than ours waits for a lock."""
    with connection.cursor() as cursor:
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
