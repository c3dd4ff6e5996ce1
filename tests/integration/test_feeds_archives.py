"""RFC 5005 archives on real files: full pages only, written once, every entry reachable."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from publisher.app import App
from tests.integration.test_feeds_build import make_app

HISTORY = "{http://purl.org/syndication/history/1.0}archive"
PAGE = 10


def article_text(number: int, year: int) -> str:
    """An article no other one shares a paragraph or a title word run with."""
    words = random.Random(number).choices(
        ["harbor", "council", "river", "budget", "school", "winter", "bridge", "market",
         "museum", "railway", "forest", "clinic", "theatre", "library", "festival"],
        k=60,
    )  # fmt: skip
    paragraphs = [" ".join(words[i : i + 20]) + f" (item {number}-{i})." for i in (0, 20, 40)]
    day = 1 + number % 28
    return (
        f"Home>Archive test\n\nStory number {number} about {words[0]} and {words[1]}\n\n"
        f"Updated : {year}-03-{day:02d}\n\nBy Desk ( Wire )\n\n" + "\n\n".join(paragraphs) + "\n"
    )


def add_articles(app: App, numbers: range, year: int) -> None:
    paths = []
    for number in numbers:
        path = app.settings.inbox / f"story-{number:03d}.txt"
        path.write_text(article_text(number, year), encoding="utf-8")
        paths.append(path)
    report = app.ingest(paths)  # builds incrementally through after_ingest
    assert report.summary()["added"] == len(paths), report.results


def reachable(public: Path) -> set[str]:
    """Entry ids a reader collects from atom.xml and then prev-archive, page by page (the
    newest entries may be in both the feed and an archive; no entry is in two archives)."""
    current = feedparser.parse((public / "atom.xml").read_bytes())
    assert current.bozo == 0
    seen: list[str] = []
    prev = {link["rel"]: link["href"] for link in current.feed.links}.get("prev-archive")
    visited: set[str] = set()
    while prev:
        assert prev not in visited
        visited.add(prev)
        page = feedparser.parse((public / prev.split("/", 3)[3]).read_bytes())
        assert page.bozo == 0
        seen += [e.id for e in page.entries]
        rels = {link["rel"]: link["href"] for link in page.feed.links}
        assert rels["current"].endswith("/atom.xml")
        assert "next-archive" not in rels  # it would change the page when the next fills
        prev = rels.get("prev-archive")
    assert len(seen) == len(set(seen))
    return {*seen, *(e.id for e in current.entries)}


def assert_only_full_archives(public: Path, total: int) -> None:
    from xml.etree import ElementTree

    pages = sorted(int(p.stem) for p in (public / "archive").glob("*.xml"))
    assert pages == list(range(1, total // PAGE + 1))
    for number in pages:
        root = ElementTree.parse(public / f"archive/{number}.xml").getroot()
        assert root.find(HISTORY) is not None
        assert len(root.findall("{http://www.w3.org/2005/Atom}entry")) == PAGE


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    for made in make_app(tmp_path, feeds=f"{{ max_entries = 3, archive_page_size = {PAGE} }}"):
        made.ingest()
        yield made


def test_archives_stay_byte_identical_and_every_entry_stays_reachable(app: App) -> None:
    public = app.settings.output_dir
    add_articles(app, range(1, 21), year=2023)  # 25 articles: pages 1 and 2, 5 waiting
    app.build_feeds()
    assert_only_full_archives(public, 25)
    stored = {a.id for a in app.articles()}
    assert reachable(public) == stored
    # the feed documents (.xml and their .json twins); the HTML pages are tested elsewhere
    before = {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in public.glob("archive/*")
        if p.suffix != ".html"
    }

    # older dates than anything shown: only the no-archive-yet rule keeps them in atom.xml
    for start in (21, 31, 41):
        add_articles(app, range(start, start + 10), year=2001)
        assert_only_full_archives(public, 15 + start)
        assert reachable(public) == {a.id for a in app.articles()}
    app.build_feeds()  # a full build too

    assert_only_full_archives(public, 55)
    for name, (data, mtime) in before.items():
        assert (public / "archive" / name).read_bytes() == data, name
        assert (public / "archive" / name).stat().st_mtime_ns == mtime, name
    stored = {a.id for a in app.articles()}
    assert len(stored) == 55 and reachable(public) == stored


def test_a_partial_page_an_older_build_left_is_removed(app: App) -> None:
    public = app.settings.output_dir
    stale = public / "archive" / "1.xml"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b'<feed xmlns="http://www.w3.org/2005/Atom"/>')
    app.build_feeds()
    assert not stale.exists()
    current = feedparser.parse((public / "atom.xml").read_bytes())
    assert "prev-archive" not in {link["rel"] for link in current.feed.links}
    assert len(current.entries) == 5  # max_entries 3, but no archive holds the others yet
