"""Database faults: a deleted file and a lock held by another process are clear errors."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.errors import StoreError
from tests.conftest import SEEDS, write_config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=config.parent,
    )


def test_a_database_deleted_while_running_is_an_error_not_a_fresh_database(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    app.ingest()
    (tmp_path / "db.sqlite").unlink()
    shutil.copy(next(SEEDS.glob("000_*")), tmp_path / "inbox" / "again.txt")
    with pytest.raises(StoreError, match="was deleted or replaced"):
        app.ingest()
    assert not (tmp_path / "db.sqlite").exists()
    app.close()


def test_a_database_locked_by_another_process_is_one_error_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", database_busy_timeout="0.5")
    (tmp_path / "inbox").mkdir()
    assert _cli(config, "ingest").returncode == 0  # creates the database
    shutil.copytree(SEEDS, tmp_path / "inbox", dirs_exist_ok=True)
    holder = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = _cli(config, "ingest")
        status = _cli(config, "articles", "list", "--json")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith("error: database error")
    assert "locked" in result.stderr and "Traceback" not in result.stderr
    # WAL: readers are not blocked by a writer, and opening the store takes no write lock
    assert status.returncode == 0, status.stderr
    assert _cli(config, "ingest").returncode == 0  # nothing was lost: it goes through now
