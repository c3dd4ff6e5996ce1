"""The shared pacing rows on SQLite and PostgreSQL: processes never take the same slot,
a pause is seen by all, and a schema 15 database upgrades to hold them."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from publisher.app import App
from publisher.config import PacingSettings, load_settings
from publisher.errors import StoreError
from publisher.sending.pacing import DatabasePacer
from publisher.store import Store
from publisher.store.schema import SCHEMA_VERSION, schema_version
from tests.conftest import write_config

REPOSITORY = Path(__file__).resolve().parents[2]
SCHEMA_15_RELEASE = "cbac879"  # the last commit that wrote schema 15

GMAIL = "gmail.com|googlemail.com"


def test_threads_reserving_at_once_never_share_a_slot(store_app: App) -> None:
    pacer = DatabasePacer(PacingSettings(limits=f"{GMAIL} = 100/s"), store_app.store)
    found: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(5):
            slots = asyncio.run(pacer.reserve(GMAIL, 10))
            with lock:
                found.extend(slots)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 * 5 * 10
    ordered = sorted(found)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) == pytest.approx(0.01, abs=1e-6)  # spaced, never the same slot twice


def test_a_pause_recorded_by_one_process_holds_for_another(store_app: App) -> None:
    settings = PacingSettings(limits=f"{GMAIL} = 10/s", backoff_seconds=30.0)
    one = DatabasePacer(settings, store_app.store)
    other = DatabasePacer(settings, Store(store_app.settings.database_url))
    asyncio.run(one.slow_down(GMAIL))
    [slot] = asyncio.run(other.reserve(GMAIL, 1))
    assert slot >= one.clock() + 29
    # an unlimited group is paced only while it pauses
    assert not one.paced("default")
    asyncio.run(one.slow_down("default"))
    assert one.paced("default")
    other.store.close()


def test_a_schema_15_database_upgrades_to_pacing_rows(tmp_path: Path, database_url: str) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", SCHEMA_15_RELEASE, "publisher", "templates"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(f"cannot read release {SCHEMA_15_RELEASE}: {archive.stderr.decode()}")
    code = tmp_path / "release"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(code, filter="data")
    config = write_config(tmp_path, database_url)
    old = (
        "import sys\nfrom publisher.app import App\nfrom publisher.config import load_settings\n"
        "app = App(load_settings(sys.argv[1], environ={}))\n"
        "app.add_subscriber('ann@gmail.com', name='Ann')\napp.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", old, str(config)],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=code,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with pytest.raises(StoreError, match="older schema"):  # it is schema 15 indeed
        Store(database_url, read_only=True)

    app = App(load_settings(config, environ={}))
    try:
        with app.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert max(versions) == SCHEMA_VERSION and 15 in versions
        assert "pacing_slots" in inspect(app.store.engine).get_table_names()
        assert [s.email for s in app.subscribers()] == ["ann@gmail.com"]
    finally:
        app.close()
