"""End to end as an operator runs it: `publisher watch` and `publisher serve` as subprocesses.

A new article file dropped into the inbox must show up in the served atom.xml, and the
seeds must not gain a second entry.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli
from tests.integration.test_watch import watches

NEW_ARTICLE = """Home>Harbin Today

Harbin opens a new ice festival park

Updated : 2024-12-20

By Li Na ( chinadaily.com.cn )

The park opens on Friday with sculptures carved from river ice.

Visitors can skate on the Songhua River until February.
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], seconds: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {seconds} s")


class Process:
    """A `publisher` subprocess whose output is collected for failure messages."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "publisher", "--config", str(config), *args],
            cwd=config.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=10)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str, Process]]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for seed in sorted(SEEDS.iterdir()):
        (inbox / seed.name).write_bytes(seed.read_bytes())
    for command in ("ingest", "build"):
        done = publisher_cli("--config", str(config), command, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = Process(config, "serve", "--host", "127.0.0.1", "--port", str(port))
    watcher = Process(config, "watch")
    try:
        wait_for(lambda: _up(url) or server.popen.poll() is not None, 30)
        assert server.popen.poll() is None, server.output()
        pid = watcher.popen.pid
        wait_for(lambda: watches(pid, inbox) or watcher.popen.poll() is not None, 30)
        assert watcher.popen.poll() is None, watcher.output()
        yield inbox, url, watcher
        assert watcher.stop() == 0, watcher.output()
        assert server.stop() == 0, server.output()
    finally:
        for process in (watcher, server):
            if process.popen.poll() is None:
                process.popen.kill()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "atom.xml", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_dropped_article_is_served_in_atom_xml(
    site: tuple[Path, str, Process], tmp_path: Path
) -> None:
    inbox, url, watcher = site
    before = feedparser.parse(httpx.get(url + "atom.xml").content)
    assert len(before.entries) == 5
    staging = tmp_path / "staging.txt"
    staging.write_text(NEW_ARTICLE, encoding="utf-8")
    staging.replace(inbox / "005_new.txt")  # arrives whole, the way editors' tools save

    def served() -> bool:
        return b"Harbin opens a new ice festival park" in httpx.get(url + "atom.xml").content

    try:
        elapsed = wait_for(served, 30)
    except AssertionError:
        raise AssertionError(f"not served within 30 s; watcher said:\n{watcher.output()}") from None
    parsed = feedparser.parse(httpx.get(url + "atom.xml").content)
    assert parsed.bozo == 0
    titles = [e.title for e in parsed.entries]
    assert len(titles) == 6 and len(set(titles)) == 6, titles  # no second entry for a seed
    assert titles[0] == "Harbin opens a new ice festival park"
    article = httpx.get(url + "articles/2024-12-20-harbin-opens-a-new-ice-festival-park.html")
    assert article.status_code == 200 and "Songhua River" in article.text
    print(f"served after {elapsed:.2f} s")
