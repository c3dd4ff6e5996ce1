"""One scheduler per database: the lock behind `publisher run`, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from publisher.store import Store
from publisher.store.locks import DatabaseLock


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store(database_url)
    yield opened
    opened.close()


def test_a_second_holder_is_refused_until_the_first_releases(store: Store) -> None:
    first = DatabaseLock(store, "scheduler")
    second = DatabaseLock(store, "scheduler")
    assert first.try_acquire()
    assert not second.try_acquire()
    assert not second.held
    first.release()
    assert second.try_acquire()
    second.release()


def test_locks_with_other_names_do_not_conflict(store: Store) -> None:
    with DatabaseLock(store, "scheduler") as scheduler, DatabaseLock(store, "other") as other:
        assert scheduler.try_acquire()
        assert other.try_acquire()


def test_another_process_is_refused_and_told_who_holds_it(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    with DatabaseLock(store, "scheduler") as lock:
        assert lock.try_acquire()
        probe = (
            "import sys; from publisher.store import Store; "
            "from publisher.store.locks import DatabaseLock; "
            f"lock = DatabaseLock(Store({sqlite_url!r}), 'scheduler'); "
            "print(lock.try_acquire(), lock.holder())"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
        )
        assert result.stdout.split() == ["False", "pid", str(os.getpid())]
    store.close()


def test_the_lock_goes_away_with_its_process(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    holder = (
        "from publisher.store import Store; from publisher.store.locks import DatabaseLock; "
        f"assert DatabaseLock(Store({sqlite_url!r}), 'scheduler').try_acquire()"
    )
    subprocess.run([sys.executable, "-c", holder], timeout=30, check=True)  # exits holding it
    lock = DatabaseLock(store, "scheduler")
    assert lock.try_acquire()
    lock.release()
    store.close()
