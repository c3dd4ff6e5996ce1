"""`publisher watch` as a subprocess: real files, real watcher, real SQLite.

No test sleeps to give the watcher time: each waits for what the watcher does (its inotify
watch on the inbox in place, a log line, an ingest_log row), 30 s at most. That something
did NOT happen is read after a later file the watcher took has shown up in the store.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publisher.config import load_settings
from publisher.store import Articles, Store
from tests.conftest import SEEDS, write_config

WAIT = 30.0  # seconds; generous: a loaded 2-core machine is slow, not broken


class Watcher:
    """The `publisher watch` process: its pid and every line it printed so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []

    def said(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.lines)

    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[tuple[Path, Store, Watcher]]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    (tmp_path / "inbox").mkdir()
    settings = load_settings(config, environ={})
    store = Store(settings.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), "watch"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = Watcher(process)
    reader = threading.Thread(target=lambda: seen.lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    inbox = tmp_path / "inbox"
    _wait_for(lambda: watches(process.pid, inbox) or process.poll() is not None, WAIT)
    assert process.poll() is None, seen.output()
    yield inbox, store, seen
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        store.close()


@pytest.fixture
def watcher(watching: tuple[Path, Store, Watcher]) -> tuple[Path, Store]:
    inbox, store, _ = watching
    return inbox, store


def _wait_for(condition: Callable[[], bool], seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(0.05)


def watches(pid: int, folder: Path) -> bool:
    """Whether process `pid` has an inotify watch on `folder` (Linux: /proc/PID/fdinfo).

    The watcher logs "watching" before its first look at the inbox; a file moved in between
    that look and the watch being in place would never be seen. The watch itself is the
    signal that from now on every change is.
    """
    if not Path("/proc/self/fdinfo").is_dir():
        pytest.skip("needs Linux /proc to see when the inbox watch is in place")
    try:
        inode = f"ino:{folder.stat().st_ino:x} "
    except FileNotFoundError:
        return False
    for info in Path(f"/proc/{pid}/fdinfo").glob("*"):
        try:
            text = info.read_text(encoding="ascii", errors="replace")
        except OSError:  # a descriptor closed meanwhile
            continue
        if any(line.startswith("inotify") and inode in line for line in text.splitlines()):
            return True
    return False


def _count(store: Store) -> int:
    with store.read() as connection:
        return Articles(connection).count()


def test_a_file_moved_into_the_watched_inbox_is_ingested_without_another_event(
    watcher: tuple[Path, Store], tmp_path: Path
) -> None:
    inbox, store = watcher
    staging = tmp_path / "staging.txt"
    shutil.copy(next(SEEDS.glob("000_*")), staging)
    staging.replace(inbox / "000.txt")  # one rename event, nothing after it
    _wait_for(lambda: _count(store) == 1)


def test_temporary_files_wait_until_renamed(watcher: tuple[Path, Store], tmp_path: Path) -> None:
    inbox, store = watcher
    shutil.copy(next(SEEDS.glob("001_*")), inbox / "x.txt.tmp")
    # a file that lands after the temporary one settles after it, and sorts after it in a
    # batch: once the store has it, the temporary file, had it been taken, would be too
    later = tmp_path / "zz-later.txt"
    shutil.copy(next(SEEDS.glob("004_*")), later)
    later.replace(inbox / later.name)
    _wait_for(lambda: _logged_files(store) != [])
    assert _logged_files(store) == ["zz-later.txt"]
    assert _count(store) == 1
    (inbox / "x.txt.tmp").replace(inbox / "x.txt")
    _wait_for(lambda: _count(store) == 2)
    assert sorted(_logged_files(store)) == ["x.txt", "zz-later.txt"]


def test_inbox_deleted_and_recreated_keeps_working(
    watching: tuple[Path, Store, Watcher],
) -> None:
    inbox, store, watcher = watching
    shutil.rmtree(inbox)
    _wait_for(lambda: watcher.said(r"inbox .* disappeared|restarting the inbox watch"))
    inbox.mkdir()
    _wait_for(lambda: watches(watcher.process.pid, inbox))
    shutil.copy(next(SEEDS.glob("002_*")), inbox / "002.txt")
    _wait_for(lambda: _count(store) == 1)


def test_a_burst_of_files_is_all_accounted_for(watcher: tuple[Path, Store], tmp_path: Path) -> None:
    inbox, store = watcher
    template = next(SEEDS.glob("003_*")).read_text(encoding="utf-8")
    staging = tmp_path / "burst"
    staging.mkdir()
    for n in range(200):
        text = template.replace(
            "Harbin sets up development goals for 2022", f"Burst article number {n}"
        )
        text = text.replace(
            "The first session", f"Story {n} of {n * 7919 % 1000003}: the first session"
        )
        (staging / f"burst-{n:04}.txt").write_text(
            text.replace("Build 30", f"Build {n} and 30"), encoding="utf-8"
        )
    for path in staging.iterdir():
        path.replace(inbox / path.name)
    _wait_for(lambda: len(_logged_files(store)) >= 200, 60)
    # a file moved in after the burst settles after all of it and sorts after it in a
    # batch: once the store has it, a second take of any burst file would be logged too
    shutil.copy(next(SEEDS.glob("000_*")), staging / "zz-after-the-burst.txt")
    (staging / "zz-after-the-burst.txt").replace(inbox / "zz-after-the-burst.txt")
    _wait_for(lambda: "zz-after-the-burst.txt" in _logged_files(store))
    burst = [name for name in _logged_files(store) if name.startswith("burst-")]
    assert len(burst) == 200  # each file exactly once: added, updated or duplicate
    assert len(set(burst)) == 200
    assert _count(store) >= 1


def _logged_files(store: Store) -> list[str]:
    """The file of each ingest_log row, in the order they were written."""
    from sqlalchemy import select

    from publisher.store.schema import ingest_log

    with store.read() as connection:
        rows = connection.execute(select(ingest_log.c.file).order_by(ingest_log.c.seq))
        return [Path(file).name for (file,) in rows]
