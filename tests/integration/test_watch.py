"""`publisher watch` as a subprocess: real files, real watcher, real SQLite."""

from __future__ import annotations

import os
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


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
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
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    _wait_for(lambda: any("watching" in line for line in lines) or process.poll() is not None, 20)
    assert process.poll() is None, "".join(lines)
    time.sleep(0.3)  # the first scan of the inbox
    yield tmp_path / "inbox", store
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        store.close()


def _wait_for(condition: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds} s")


def _count(store: Store) -> int:
    with store.read() as connection:
        return Articles(connection).count()


def test_a_file_moved_into_the_inbox_is_ingested_within_a_second(
    watcher: tuple[Path, Store], tmp_path: Path
) -> None:
    inbox, store = watcher
    staging = tmp_path / "staging.txt"
    shutil.copy(next(SEEDS.glob("000_*")), staging)
    staging.replace(inbox / "000.txt")
    elapsed = _wait_for(lambda: _count(store) == 1, 5)
    assert elapsed < 1.5, f"took {elapsed:.2f} s"


def test_temporary_files_wait_until_renamed(watcher: tuple[Path, Store]) -> None:
    inbox, store = watcher
    shutil.copy(next(SEEDS.glob("001_*")), inbox / "x.txt.tmp")
    time.sleep(1.5)
    assert _count(store) == 0
    (inbox / "x.txt.tmp").replace(inbox / "x.txt")
    _wait_for(lambda: _count(store) == 1, 5)


def test_inbox_deleted_and_recreated_keeps_working(watcher: tuple[Path, Store]) -> None:
    inbox, store = watcher
    shutil.rmtree(inbox)
    time.sleep(1.0)
    inbox.mkdir()
    time.sleep(0.5)
    shutil.copy(next(SEEDS.glob("002_*")), inbox / "002.txt")
    _wait_for(lambda: _count(store) == 1, 8)


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
    _wait_for(lambda: _logged(store) >= 200, 60)
    time.sleep(0.5)
    assert _logged(store) == 200  # each file exactly once: added, updated or duplicate
    assert _count(store) >= 1


def _logged(store: Store) -> int:
    from sqlalchemy import func, select

    from publisher.store.schema import ingest_log

    with store.read() as connection:
        return int(connection.execute(select(func.count()).select_from(ingest_log)).scalar_one())
