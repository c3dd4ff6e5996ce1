"""Large ingests prepare files in worker processes: same result as in one process.

A batch is made small here so that a few dozen files span several batches, the case
in which `prepared_batches` starts worker processes (real ones, spawned).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.prepare import worker_processes
from tests.conftest import SEEDS, write_config

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(
    worker_processes() < 1, reason="one usable core: ingest never starts worker processes"
)


def write_inbox(folder: Path) -> None:
    """The seeds, 30 generated articles, 5 corrected copies of them, and 2 bad files."""
    folder.mkdir(parents=True)
    for seed in SEEDS.iterdir():
        shutil.copy(seed, folder / seed.name)
    rng = random.Random(5)
    texts = []
    for n in range(30):
        paragraphs = [
            " ".join(f"w{rng.randrange(5000)}" for _ in range(40)).capitalize() + "."
            for _ in range(4)
        ]
        text = (
            f"Home>News>City\n\nStory {n} of the day\n\n"
            f"Updated : 2026-06-{1 + n:02}\n\nBy ( e.example.com )\n\n" + "\n\n".join(paragraphs)
        )
        texts.append(text)
        (folder / f"gen-{n:02}.txt").write_text(text, encoding="utf-8")
    for n in range(5):
        corrected = texts[n].replace("Updated : 2026-06-", "Updated : 2026-07-", 1)
        corrected = corrected.replace(".", " and a corrected word.", 1)
        (folder / f"later-{n:02}.txt").write_text(corrected, encoding="utf-8")
    (folder / "random.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "empty.txt").write_bytes(b"")


def make_app(root: Path, batch_size: int, environ: dict[str, str] | None = None) -> App:
    write_inbox(root / "inbox")
    config = write_config(root, f"sqlite:///{root / 'publisher.db'}")
    app = App(load_settings(config, environ=environ or {}))
    app.ingestor.batch_size = batch_size
    return app


def stored(app: App) -> list[dict[str, object]]:
    return sorted((a.as_dict() for a in app.articles()), key=lambda a: str(a["id"]))


def test_worker_processes_give_the_result_of_one_process(tmp_path: Path) -> None:
    in_one = make_app(tmp_path / "one", batch_size=1000)
    in_workers = make_app(tmp_path / "workers", batch_size=4)
    children: list[int] = []

    def progress(done: int, total: int) -> None:
        children.extend(p.pid for p in multiprocessing.active_children() if p.pid)

    try:
        expected = in_one.ingest(now=lambda: NOW)
        report = in_workers.ingest(now=lambda: NOW, progress=progress)
        assert children, "no worker process ran"
        outcomes = [(r.file, r.outcome, r.detail) for r in report.results]
        assert outcomes == [(r.file, r.outcome, r.detail) for r in expected.results]
        assert report.summary() == {
            "added": 35,
            "updated": 5,
            "duplicate": 0,
            "unchanged": 0,
            "quarantined": 2,
        }
        assert stored(in_workers) == stored(in_one)
        assert (in_workers.settings.quarantine / "random.bin.error.txt").exists()
    finally:
        in_one.close()
        in_workers.close()


def test_a_killed_worker_process_loses_no_file(tmp_path: Path) -> None:
    app = make_app(tmp_path, batch_size=4)
    killed: list[int] = []

    def progress(done: int, total: int) -> None:
        for child in multiprocessing.active_children():
            if child.pid and not killed:
                os.kill(child.pid, signal.SIGKILL)
                killed.append(child.pid)

    try:
        report = app.ingest(now=lambda: NOW, progress=progress)
        assert killed
        assert len(report.results) == 42
        assert report.summary()["added"] + report.summary()["updated"] == 40
        assert len(app.articles()) == 35
    finally:
        app.close()


def test_ingest_processes_0_prepares_everything_in_this_process(tmp_path: Path) -> None:
    app = make_app(tmp_path, batch_size=4, environ={"PUBLISHER_INGEST_PROCESSES": "0"})
    children: list[int] = []

    def progress(done: int, total: int) -> None:
        children.extend(p.pid for p in multiprocessing.active_children() if p.pid)

    try:
        report = app.ingest(now=lambda: NOW, progress=progress)
        assert report.summary()["added"] == 35
        assert children == []
    finally:
        app.close()
