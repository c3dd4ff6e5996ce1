"""Uploads that take their time, against the real watcher (`publisher watch`, a subprocess):
a file is published only once its writer has finished, whichever way the watcher learns it."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import pytest
from inotify_simple import INotify
from sqlalchemy import func, select

from publisher.app import App
from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.store import Articles, Store
from publisher.store.schema import ingest_log
from publisher.watch import closewrite
from publisher.watch.closewrite import InotifyUnavailable
from tests.conftest import write_config

HEAD = (
    "Home>News>Society\n\nWorkers rescued from the flooded tunnel\n\nUpdated : 2026-12-01\n\n"
    "By Harbin Daily\n\n"
    "Three workers trapped in a flooded tunnel under the Songhua were reached by divers at"
)
TAIL = (
    " dawn, and all of them walked out unhurt before noon.\n\n"
    "The city said the tunnel stays closed while engineers inspect the pumps.\n"
)
TITLE = "Workers rescued from the flooded tunnel"
ENDING = "engineers inspect the pumps"


def other_article(title: str) -> bytes:
    return (
        f"Home>News>Society\n\n{title}\n\nUpdated : 2026-12-01\n\nBy Harbin Daily\n\n"
        f"A paragraph about {title} with words enough to be the body of an article.\n\n"
        f"A second paragraph on {title} that says something else again.\n"
    ).encode()


class Watcher:
    """A `publisher watch` process on its own inbox, output and SQLite database."""

    def __init__(self, folder: Path, watch: str | None) -> None:
        config = self.configure(folder, watch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "publisher", "--config", str(config), "watch"],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout or ()), daemon=True
        ).start()
        wait_for(lambda: self.logged("inbox watch on") or self.process.poll() is not None, 30)
        assert self.process.poll() is None, "".join(self.lines)

    def configure(self, folder: Path, watch: str | None) -> Path:
        extra = {"watch": watch} if watch else {}
        config = write_config(folder, f"sqlite:///{folder}/db.sqlite", **extra)
        self.inbox = folder / "inbox"
        self.inbox.mkdir()
        self.atom = folder / "public" / "atom.xml"
        self.store = Store(load_settings(config, environ={}).database_url)
        return config

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def sources(self) -> list[str]:
        with self.store.read() as connection:
            return [article.source_file for article in Articles(connection).latest()]

    def times_logged(self, name: str) -> int:
        with self.store.read() as connection:
            count = connection.execute(
                select(func.count()).select_from(ingest_log).where(ingest_log.c.file == name)
            ).scalar_one()
        return int(count)

    def feed_texts(self) -> list[str]:
        """Title and content of each entry of the site's Atom feed, as feedparser reads it."""
        if not self.atom.exists():
            return []
        parsed = feedparser.parse(self.atom.read_bytes())
        return [
            entry.title + " " + " ".join(part.value for part in entry.get("content", []))
            for entry in parsed.entries
        ]

    def barrier(self, name: str) -> None:
        """Every event before it is handled once a file written now is stored."""
        (self.inbox / name).write_bytes(other_article(f"Barrier {name}"))
        wait_for(lambda: name in self.sources(), 30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=10) == 0, "".join(self.lines)
        finally:
            self.process.kill()
            self.store.close()


class InProcessWatcher(Watcher):
    """App.watch in a thread of this process, so that a test can take inotify away."""

    def __init__(self, folder: Path, watch: str | None) -> None:
        self.app = App(load_settings(self.configure(folder, watch), environ={}))
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.lines = []
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.app.watch(self.stopping),)
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        self.loop.close()
        self.app.close()
        self.store.close()


@pytest.fixture
def start_watcher(tmp_path: Path) -> Iterator[Callable[[str | None], Watcher]]:
    started: list[Watcher] = []

    def start(watch: str | None = None) -> Watcher:
        started.append(Watcher(tmp_path, watch))
        return started[-1]

    yield start
    for watcher in started:
        watcher.stop()


def wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds} s")


def write_with_a_stall(path: Path, watcher: Watcher) -> list[list[str]]:
    """Write half the article, hold the file open 1.5 s, write the rest; every poll of the
    Atom feed made meanwhile, and after until the whole article shows."""
    polls: list[list[str]] = []
    with path.open("w", encoding="utf-8") as upload:
        upload.write(HEAD)
        upload.flush()
        os.fsync(upload.fileno())
        stalled_until = time.monotonic() + 1.5
        while time.monotonic() < stalled_until:
            polls.append(watcher.feed_texts())
            time.sleep(0.05)
        upload.write(TAIL)
    wait_for(lambda: polls.append(watcher.feed_texts()) or any(ENDING in t for t in polls[-1]), 30)
    return polls


def assert_published_once_and_whole(watcher: Watcher, polls: list[list[str]]) -> None:
    half_shown = [
        texts for texts in polls for text in texts if TITLE in text and ENDING not in text
    ]
    assert half_shown == [], "the half-written upload was published"
    watcher.barrier("after.txt")
    with watcher.store.read() as connection:
        rescued = [a for a in Articles(connection).latest() if a.title == TITLE]
    assert len(rescued) == 1
    body = "\n".join(block.text for block in rescued[0].blocks)
    assert "reached by divers at dawn, and all of them walked out unhurt" in body
    assert ENDING in body
    assert watcher.times_logged("rescue.txt") == 1


def test_an_upload_that_stalls_with_the_file_open_is_published_once_and_whole(
    start_watcher: Callable[[str | None], Watcher],
) -> None:
    # a settle time far beyond the test's waits: only the writer's close can let it through
    watcher = start_watcher("{ settle_seconds = 600 }")
    polls = write_with_a_stall(watcher.inbox / "rescue.txt", watcher)
    assert_published_once_and_whole(watcher, polls)


def test_a_part_file_renamed_to_txt_is_taken_at_once_and_once(
    start_watcher: Callable[[str | None], Watcher],
) -> None:
    watcher = start_watcher("{ settle_seconds = 600 }")
    part = watcher.inbox / "rescue.txt.part"
    part.write_text(HEAD + TAIL, encoding="utf-8")
    watcher.barrier("before.txt")  # the .part file was seen, and not taken
    assert "rescue.txt.part" not in watcher.sources()
    part.rename(watcher.inbox / "rescue.txt")
    wait_for(lambda: "rescue.txt" in watcher.sources(), 30)  # far less than the settle time
    watcher.barrier("after.txt")
    assert watcher.times_logged("rescue.txt") == 1
    assert watcher.times_logged("rescue.txt.part") == 0


def test_a_hard_link_into_the_inbox_is_taken_at_once(
    start_watcher: Callable[[str | None], Watcher], tmp_path: Path
) -> None:
    watcher = start_watcher("{ settle_seconds = 600 }")
    written = tmp_path / "written-elsewhere.txt"
    written.write_text(HEAD + TAIL, encoding="utf-8")
    os.link(written, watcher.inbox / "rescue.txt")  # a new name, no writer: no close event
    wait_for(lambda: "rescue.txt" in watcher.sources(), 30)


def test_without_inotify_an_upload_that_stalls_waits_for_its_size_to_settle(
    start_watcher: Callable[[str | None], Watcher],
) -> None:
    watcher = start_watcher('{ backend = "poll", settle_seconds = 4 }')
    polls = write_with_a_stall(watcher.inbox / "rescue.txt", watcher)
    assert_published_once_and_whole(watcher, polls)


def test_the_default_settle_time_outlasts_a_stalled_upload(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, "sqlite:///db.sqlite"), environ={})
    assert settings.watch.settle_seconds >= 2
    assert settings.watch.backend == "auto"


@pytest.mark.parametrize(
    "watch", ["{ settle_seconds = 0 }", '{ backend = "fast" }', "{ settle = 2 }"]
)
def test_a_bad_watch_setting_is_refused_at_load(tmp_path: Path, watch: str) -> None:
    config = write_config(tmp_path, "sqlite:///db.sqlite", watch=watch)
    with pytest.raises(ConfigError, match="watch"):
        load_settings(config, environ={})


def test_where_inotify_cannot_start_the_watcher_falls_back_to_the_settle_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_inotify() -> None:
        raise InotifyUnavailable("inotify cannot start: Too many open files")

    monkeypatch.setattr(closewrite, "open_inotify", no_inotify)
    caplog.set_level(logging.INFO, logger="publisher")
    watcher = InProcessWatcher(tmp_path, "{ settle_seconds = 4 }")
    try:
        wait_for(lambda: "inbox watch on" in caplog.text, 30)
        assert "inotify cannot start: Too many open files; a file is taken once its size" in (
            caplog.text
        )
        polls = write_with_a_stall(watcher.inbox / "rescue.txt", watcher)
        assert_published_once_and_whole(watcher, polls)
    finally:
        watcher.stop()


def test_when_inotify_runs_out_of_watches_the_watcher_goes_on_with_the_settle_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    add_watch = INotify.add_watch

    def limited(self: INotify, path: Path, mask: int) -> int:
        if Path(path).name == "late":
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(add_watch(self, path, mask))

    monkeypatch.setattr(INotify, "add_watch", limited)
    caplog.set_level(logging.INFO, logger="publisher")
    watcher = InProcessWatcher(tmp_path, "{ settle_seconds = 1 }")
    try:
        wait_for(
            lambda: "inbox watch on: a file is taken when its writer closes" in caplog.text, 30
        )
        (watcher.inbox / "late").mkdir()
        (watcher.inbox / "late" / "story.txt").write_bytes(other_article("In a folder made late"))
        wait_for(lambda: "story.txt" in watcher.sources(), 30)
        assert "the system's limit of watches is reached" in caplog.text
    finally:
        watcher.stop()
