"""The web archive of sent digests, as a subscriber meets it: a real send through the SMTP
sink, the "View in browser" link of the received mail fetched from a real `publisher serve`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import httpx
import pytest

from tests.conftest import SEEDS
from tests.integration.in_process import publisher_cli
from tests.integration.test_web_end_to_end import Process, _up, free_port, wait_for
from tests.smtp_sink import Received, SmtpSink, send_config

ANN = "ann.reader@example.com"
BOB = "bob.reader@example.com"
CAT = "cat.reader@example.com"
CATEGORIES = ("Civilization progress", "Government bulletin", "Harbin Today")


class Links(HTMLParser):
    """Every <a> of a page: (href, class, text)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []
        self._open: list[str] | None = None
        self._attrs: dict[str, str] = {}
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._attrs = [], {k: v or "" for k, v in attrs}

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            text = " ".join("".join(self._open).split())
            self.found.append((self._attrs.get("href", ""), self._attrs.get("class", ""), text))
            self._open = None


def _html(received: Received) -> Links:
    part = received.message.get_body(("html",))
    assert part is not None
    return Links(part.get_content())


def _view_link(page: Links) -> str:
    links = [href for href, _, text in page.found if "view in browser" in text.lower()]
    assert len(links) == 1, links
    return links[0]


def _headlines(page: Links) -> list[str]:
    return [text for _, kind, text in page.found if "title" in kind.split()]


@pytest.fixture
def served_site(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> Iterator[tuple[Path, str]]:
    """Seeds ingested and built, two subscribers, a real `publisher serve` on base_url;
    on SQLite and on PostgreSQL (where `send` claims its rows like a worker)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    config = send_config(tmp_path, database_url, smtp_sink)
    text = config.read_text(encoding="utf-8").replace("http://127.0.0.1:8080/", base)
    config.write_text(text, encoding="utf-8")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    for args in (
        ("ingest",),
        ("build",),
        ("subscribers", "add", ANN, "--name", "Ann Reader"),
        ("subscribers", "add", BOB, "--name", "Bob", "--category", "Harbin Today"),
    ):
        done = publisher_cli("--config", str(config), *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    server = Process(config, "serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        wait_for(lambda: _up(base) or server.popen.poll() is not None, 30)
        assert server.popen.poll() is None, server.output()
        yield config, base
        assert server.stop() == 0, server.output()
    finally:
        if server.popen.poll() is None:
            server.popen.kill()


def test_view_in_browser_link_serves_the_digest_without_anything_personal(
    served_site: tuple[Path, str], smtp_sink: SmtpSink
) -> None:
    config, base = served_site
    # every category named: the same articles as Ann's "everything", so the same copy
    every = [arg for name in CATEGORIES for arg in ("--category", name)]
    done = publisher_cli("--config", str(config), "subscribers", "add", CAT, *every)
    assert done.returncode == 0, done.stderr
    done = publisher_cli("--config", str(config), "send", cwd=config.parent)
    assert done.returncode == 0, done.stderr
    assert sorted(smtp_sink.per_recipient()) == [ANN, BOB, CAT]

    links = {}
    others = (ANN, BOB, CAT)
    for address in (ANN, BOB):
        (received,) = smtp_sink.to(address)
        page = _html(received)
        link = _view_link(page)
        assert link.startswith(base + "digests/") and link.endswith(".html"), link
        links[address] = link
        unsubscribe = received.message["List-Unsubscribe"]
        token = re.search(r"/unsubscribe/([^>]+)>", unsubscribe).group(1)  # type: ignore[union-attr]

        answer = httpx.get(link, timeout=10)
        assert answer.status_code == 200
        body = answer.text
        headlines = _headlines(page)
        assert headlines
        assert _headlines(Links(body)) == headlines
        for secret in (*others, token, "Ann Reader", "/unsubscribe/", "Unsubscribe"):
            assert secret.lower() not in body.lower(), secret

    # one copy per distinct content (everything vs one category), ids nobody can count up
    assert links[ANN] != links[BOB]
    (cat,) = smtp_sink.to(CAT)
    assert _view_link(_html(cat)) == links[ANN]
    copies = sorted(p.name for p in (config.parent / "public" / "digests").glob("*.html"))
    assert len(copies) == 3 and "index.html" in copies
    hidden = links[ANN].rsplit("/", 1)[1].removesuffix(".html")
    assert (config.parent / "public" / "digests" / ".records" / f"{hidden}.json").is_file()
    assert httpx.get(f"{base}digests/.records/{hidden}.json", timeout=10).status_code == 404
    for link in links.values():
        name = link.rsplit("/", 1)[1].removesuffix(".html")
        assert re.fullmatch(r"[a-z2-7]{26}", name), name

    index = httpx.get(base + "digests/", timeout=10)
    assert index.status_code == 200
    listed = {href for href, _, _ in Links(index.text).found}
    for link in links.values():
        assert link in listed or link.removeprefix(base + "digests/") in listed

    feed = httpx.get(base + "digests/atom.xml", timeout=10)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(feed.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert {entry.link for entry in parsed.entries} == set(links.values())


def test_a_dry_run_writes_no_web_copy(served_site: tuple[Path, str], tmp_path: Path) -> None:
    config, _ = served_site
    out = tmp_path / "preview"
    done = publisher_cli(
        "--config", str(config), "send", "--dry-run", "--out", str(out), cwd=config.parent
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.eml")) == [f"{ANN}.eml", f"{BOB}.eml"]
    assert not (tmp_path / "public" / "digests").exists()


def test_a_run_whose_every_message_was_refused_leaves_no_web_copy(
    served_site: tuple[Path, str], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    config, base = served_site
    smtp_sink.reject.update({ANN, BOB})
    done = publisher_cli("--config", str(config), "send", cwd=config.parent)
    assert done.returncode == 1, done.stderr  # both recipients failed
    assert smtp_sink.attempts[ANN] and smtp_sink.attempts[BOB]
    assert not (tmp_path / "public" / "digests").exists()
    assert httpx.get(base + "digests/", timeout=10).status_code == 404
