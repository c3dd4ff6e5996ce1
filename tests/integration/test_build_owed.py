"""A build owed by an ingest that died after its commit is done by the next command."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.store.builds import SiteBuilds
from tests.conftest import SEEDS, write_config
from tests.integration.test_inbox_hostile import article


def _seed(inbox: Path, prefix: str) -> None:
    for seed in SEEDS.glob(f"{prefix}*"):
        shutil.copy(seed, inbox / seed.name)


def _assert_consistent(public: Path, articles: int) -> None:
    index = (public / "index.html").read_text("utf-8")
    linked = set(re.findall(r'href="[^"]*articles/([^"/]+\.html)"', index))
    assert len(linked) == articles
    missing = [page for page in linked if not (public / "articles" / page).exists()]
    assert missing == []
    assert (public / "atom.xml").read_text("utf-8").count("<entry>") == articles


def _owed(app: App) -> bool:
    with app.store.read() as connection:
        return SiteBuilds(connection).pending()


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    (tmp_path / "inbox").mkdir()
    return write_config(tmp_path, database_url)


def _ingest(config: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config), "ingest"])
    assert result.exit_code == 0, result.output


def test_a_rerun_after_a_crash_before_the_first_build_builds_the_site(
    config: Path, tmp_path: Path
) -> None:
    _seed(tmp_path / "inbox", "")
    crashed = App(load_settings(config, environ={}))
    try:
        # the ingest commits, then the process dies before it builds (as kill -9 would)
        assert crashed.ingestor.ingest().summary()["added"] == 5
        assert _owed(crashed)
    finally:
        crashed.close()
    _ingest(config)  # every file is unchanged: only the owed build is left to do
    _assert_consistent(tmp_path / "public", 5)
    app = App(load_settings(config, environ={}))
    try:
        assert not _owed(app)
    finally:
        app.close()


def test_the_next_ingest_after_a_crash_builds_in_full_not_only_its_own_change(
    config: Path, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    _seed(inbox, "")
    _ingest(config)
    _assert_consistent(tmp_path / "public", 5)
    (inbox / "crashed.txt").write_bytes(article("Ingested by a process killed before it built"))
    crashed = App(load_settings(config, environ={}))
    try:
        assert crashed.ingestor.ingest().summary()["added"] == 1  # committed, never built
    finally:
        crashed.close()
    (inbox / "next.txt").write_bytes(article("The next ingest's own article"))
    _ingest(config)  # an incremental build of next.txt alone: crashed.txt without a page
    _assert_consistent(tmp_path / "public", 7)


def test_publisher_build_settles_what_is_owed(config: Path, tmp_path: Path) -> None:
    _seed(tmp_path / "inbox", "")
    app = App(load_settings(config, environ={}))
    try:
        app.ingestor.ingest()
        assert _owed(app)
        result = CliRunner().invoke(cli, ["--config", str(config), "build"])
        assert result.exit_code == 0, result.output
        assert not _owed(app)
        _assert_consistent(tmp_path / "public", 5)
    finally:
        app.close()


def test_watch_finishes_an_owed_build_as_it_starts(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, sqlite_url)
    _seed(tmp_path / "inbox", "")
    crashed = App(load_settings(config, environ={}))
    try:
        crashed.ingestor.ingest()
    finally:
        crashed.close()
    app = App(load_settings(config, environ={}))
    index = tmp_path / "public" / "index.html"

    async def watch_until_built() -> None:
        stop = asyncio.Event()
        watching = asyncio.create_task(app.watch(stop))
        started = time.monotonic()
        while not index.exists() and time.monotonic() - started < 30:
            await asyncio.sleep(0.05)
        stop.set()
        await watching

    try:
        asyncio.run(watch_until_built())
        _assert_consistent(tmp_path / "public", 5)
        assert not _owed(app)
    finally:
        app.close()
