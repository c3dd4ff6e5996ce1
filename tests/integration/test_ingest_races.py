"""Races the watcher soak (tests/soak) turned up between the watcher and `publisher ingest`.

1. A settled file was quarantined by a concurrent `publisher ingest` before the watcher
   ingested it; App.ingest raised "no such file", the watcher task failed and `publisher
   run` stopped.
2. Both processes read the same bad file: the second one, finding it already moved, wrote a
   second copy (name.1.txt) with a second .error.txt into the quarantine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from publisher.app import App
from publisher.errors import PublisherError
from publisher.ingest import IngestReport
from tests.integration.test_watch import watches

ARTICLE = "Home>News\n\nTitle {n}\n\nUpdated : 2021-03-04\n\nBody of article {n}, its own words.\n"


def test_ingest_of_a_vanished_path_raises_unless_missing_ok(app: App, tmp_path: Path) -> None:
    gone = tmp_path / "gone.txt"
    with pytest.raises(PublisherError, match="no such file"):
        app.ingest([gone])
    report = app.ingest([gone], missing_ok=True)
    assert report.results == []


class VanishingApp(App):
    """Each file named gone-*.txt is quarantined elsewhere just before the watcher ingests it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[list[str]] = []  # the names of each batch ingest returned from

    def ingest(
        self, paths: Sequence[Path] | None = None, *args: Any, **kwargs: Any
    ) -> IngestReport:
        for path in paths or ():
            if path.name.startswith("gone-"):
                path.unlink()
        report = super().ingest(paths, *args, **kwargs)
        self.handled.append([path.name for path in paths or ()])
        return report


async def _until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.05)


def test_the_watcher_keeps_going_when_a_settled_file_vanishes(settings: Any) -> None:
    app = VanishingApp(settings)
    inbox = settings.inbox
    inbox.mkdir(parents=True, exist_ok=True)

    async def scenario() -> int:
        stop = asyncio.Event()
        watcher = asyncio.create_task(app.watch(stop))
        await _until(lambda: watches(os.getpid(), inbox) or watcher.done())
        (inbox / "gone-1.txt").write_text(ARTICLE.format(n=1), encoding="utf-8")
        # its own batch: nothing but the vanishing file; the watcher fails here if it cannot
        # take that
        await _until(lambda: ["gone-1.txt"] in app.handled or watcher.done())
        (inbox / "gone-2.txt").write_text(ARTICLE.format(n=2), encoding="utf-8")
        (inbox / "kept.txt").write_text(ARTICLE.format(n=3), encoding="utf-8")
        await _until(lambda: [a.title for a in app.articles()] == ["Title 3"] or watcher.done())
        alive = not watcher.done()
        stop.set()
        await asyncio.wait_for(watcher, 30)  # raises here if the watcher failed
        assert alive
        return len(app.articles())

    try:
        assert asyncio.run(scenario()) == 1
    finally:
        app.close()


def test_a_bad_file_quarantined_by_two_processes_is_kept_once(settings: Any) -> None:
    first, second = App(settings), App(settings)
    try:
        inbox = settings.inbox
        inbox.mkdir(parents=True, exist_ok=True)
        bad = inbox / "bad.txt"
        bad.write_bytes(b"Home>News\n\nNo date here\n\ntext\n")
        now = datetime.now(UTC)
        # Both read it (as both processes did in the soak); the first moves it, then the second.
        assert first.ingestor.inbox.quarantine(bad, "no date", now) is not None
        assert second.ingestor.inbox.quarantine(bad, "no date", now) is None
        assert sorted(p.name for p in settings.quarantine.iterdir()) == [
            "bad.txt",
            "bad.txt.error.txt",
        ]
        # A later file with the same name is a new drop and is kept beside the first.
        bad.write_bytes(b"")
        second.ingest([bad])
        assert sorted(p.name for p in settings.quarantine.iterdir()) == [
            "bad.1.txt",
            "bad.1.txt.error.txt",
            "bad.txt",
            "bad.txt.error.txt",
        ]
    finally:
        first.close()
        second.close()
