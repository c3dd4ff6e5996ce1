"""Golden files: the five seeds' feeds and one digest, byte for byte, at a fixed clock.

A template, feedgen or email upgrade that changes a byte fails here, where a property
test would not notice. When a change is meant, regenerate them and review the diff:

    PUBLISHER_REGENERATE_GOLDEN=1 python -m pytest tests/integration/test_golden.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import ROOT, SEEDS, write_config

EXPECTED = ROOT / "tests" / "data" / "expected"
NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
OUTPUTS = {
    "atom.xml": "public/atom.xml",
    "rss.xml": "public/rss.xml",
    "feed.json": "public/feed.json",
    "digest.eml": "preview/reader@example.org.eml",
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The seeds ingested and built, and one reader's digest previewed, all at NOW."""
    folder = tmp_path_factory.mktemp("golden")
    (folder / "inbox").mkdir()
    config = write_config(folder, f"sqlite:///{folder / 'data' / 'publisher.db'}")
    with time_machine.travel(NOW, tick=False):
        app = App(load_settings(config, environ={}))
        try:
            app.ingest([SEEDS], now=lambda: NOW)
            app.build_feeds()
            app.add_subscriber("reader@example.org", name="Reader")
            app.send_digests(now=NOW, dry_run=True, out_dir=folder / "preview")
        finally:
            app.close()
    yield folder


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_matches_its_golden_file_byte_for_byte(made: Path, name: str) -> None:
    produced = (made / OUTPUTS[name]).read_bytes()
    golden = EXPECTED / name
    if os.environ.get("PUBLISHER_REGENERATE_GOLDEN"):
        golden.write_bytes(produced)
    assert produced == golden.read_bytes(), f"{name} changed; see this module's docstring"
