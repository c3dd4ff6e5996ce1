"""kill -9 of `publisher ingest` takes its worker processes with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import SEEDS, write_config
from tests.integration.test_inbox_hostile import article

# `publisher ingest` in two-file batches (the pool starts from a second batch on) whose
# store step never returns, so its workers are alive, idle, waiting for more work.
STALLED_INGEST = """
import sys, time
from publisher.ingest import Ingestor
Ingestor.batch_size = 2
Ingestor._stored_batch = lambda self, batch, now: time.sleep(3600)
from publisher.cli import cli
cli(["--config", sys.argv[1], "ingest"])
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits to be reaped


def _wait(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def test_workers_exit_when_the_ingesting_process_is_killed(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(SEEDS, inbox)
    for n in range(3):
        (inbox / f"extra-{n}.txt").write_bytes(article(f"Extra article {n}"))
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", ingest_processes="2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    parent = subprocess.Popen(
        [sys.executable, "-c", STALLED_INGEST, str(config)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []

    def both_started() -> bool:
        workers[:] = _children(parent.pid)
        return len(workers) == 2

    try:
        _wait(both_started, 60)
        parent.kill()
        parent.wait(timeout=30)
        _wait(lambda: not any(_alive(pid) for pid in workers), 30)
    finally:
        parent.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
