"""Benchmark: feed builds from a large store, against a direct lxml Atom baseline.

Usage: python bench/feeds.py [--articles 100000] [--repeat 3]
                             [--incremental-sizes 10000,100000] [--incremental-only]

Measures (median of --repeat runs, all in this one process):
  - store generation (synthetic rows inserted straight into the store's tables)
  - full build, cold: empty output folder (every feed, archive page, article page)
  - full build, warm: nothing changed (fingerprints skip archives and pages)
  - all subscription feeds (site + every category, Atom/RSS/JSON), loaded from the store
  - incremental build after one new article (what `publisher watch` does per change)
  - Atom serialization of every entry (all archive pages): feedgen vs direct lxml
  - at each of --incremental-sizes: the incremental build after one new article, with
    category and archive pages, against the previous code path measured in the same run
    (see previous_code_path), runs interleaved; the
    store and its full build are made once and kept under --cache (/tmp), each run
    works on a copy (the database copied, the output hard-linked: builds replace files,
    never write into them)
Search is off (`site.search = false`); bench/search.py measures it.
Prints a table and appends it to bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher import feeds
from publisher.config import Settings, load_settings
from publisher.feeds import Channel, Entry, content_html
from publisher.ingest import FileResult, IngestReport
from publisher.model import Article
from publisher.site import BuildResult, SiteBuilder
from publisher.store import Store
from publisher.store.articles import LIVE
from publisher.store.pages import SiteQueries
from publisher.store.schema import articles, blocks

WORDS = [
    "harbin",
    "city",
    "province",
    "heilongjiang",
    "river",
    "ice",
    "festival",
    "winter",
    "people",
    "development",
    "government",
    "service",
    "project",
    "urban",
    "management",
    "platform",
    "report",
    "culture",
    "economy",
    "tourism",
    "construction",
    "district",
    "residents",
    "improve",
    "livelihood",
    "national",
    "civilized",
]
CATEGORIES = [
    "Harbin Today",
    "Civilization progress",
    "Government bulletin",
    "Culture",
    "Economy",
    "Tourism",
    "Sports",
    "Education",
    "Health",
    "Transport",
]
ATOM_NS = "http://www.w3.org/2005/Atom"


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def article_rows(
    start: int, count: int, rng: random.Random
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    base = datetime(2010, 1, 1, tzinfo=UTC)
    rows, body = [], []
    for n in range(start, start + count):
        published = base + timedelta(hours=n)
        slug = f"{published.date().isoformat()}-article-{n}"
        article_id = f"tag:bench.example,{published.date().isoformat()}:{slug}"
        category = CATEGORIES[n % len(CATEGORIES)]
        rows.append(
            {
                "seq": n + 1,  # given, so blocks can refer to it (bench stores are SQLite)
                "id": article_id,
                "slug": slug,
                "title": f"Article {n}: {sentence(rng, 6)}",
                "title_key": f"article {n}",
                "category": category,
                "category_path": json.dumps(["Home", category]),
                "published": published,
                "updated": published,
                "author": "Wang Wei" if n % 3 else None,
                "source": "chinadaily.com.cn",
                "content_hash": f"{n:064x}",
                "source_file": f"{n}.txt",
                "ingested": published,
                "teaser_key": None,
                "signature": b"",
            }
        )
        for position in range(3):
            text = " ".join(sentence(rng, 20) for _ in range(3))
            if position == 2:
                text = "\n".join(sentence(rng, 8) for _ in range(3))  # a multi-line block
            body.append(
                {
                    "article_seq": n + 1,
                    "position": position,
                    "key": f"{n:x}-{position}",
                    "text": text,
                }
            )
    return rows, body


def insert_articles(store: Store, start: int, count: int, rng: random.Random) -> list[str]:
    ids: list[str] = []
    step = 5000
    for offset in range(start, start + count, step):
        rows, body = article_rows(offset, min(step, start + count - offset), rng)
        with store.begin() as connection:
            connection.execute(insert(articles), rows)
            connection.execute(insert(blocks), body)
        ids += [str(r["id"]) for r in rows]
    return ids


def lxml_atom(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """The same Atom document written with lxml directly (the baseline)."""
    zone = channel.zone
    feed = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    if channel.language:
        feed.set("{http://www.w3.org/XML/1998/namespace}lang", channel.language)

    def add(
        parent: etree._Element, tag: str, text: str | None = None, **attrs: str
    ) -> etree._Element:
        element = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}", **attrs)
        if text is not None:
            element.text = text
        return element

    add(feed, "id", channel.atom_url)
    add(feed, "title", channel.title)
    newest = max((e.article.updated for e in entries), default=channel.empty_updated)
    add(feed, "updated", newest.astimezone(zone).isoformat())
    add(add(feed, "author"), "name", channel.author or channel.title)
    add(feed, "link", href=channel.atom_url, rel="self", type="application/atom+xml")
    add(feed, "link", href=channel.home, rel="alternate", type="text/html")
    add(feed, "generator", "publisher")
    add(feed, "subtitle", channel.subtitle)
    for entry in entries:
        a: Article = entry.article
        element = add(feed, "entry")
        add(element, "id", a.id)
        add(element, "title", a.title)
        add(element, "updated", a.updated.astimezone(zone).isoformat())
        add(add(element, "author"), "name", a.author or a.source or channel.title)
        add(element, "content", content_html(a.blocks), type="html")
        add(element, "link", href=entry.url)
        add(element, "summary", a.summary)
        add(element, "category", term=a.category, label=a.category)
        if a.author and a.source:
            add(add(element, "contributor"), "name", a.source)
        add(element, "published", a.published.astimezone(zone).isoformat())
    return bytes(etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def median_time(function: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def bench_settings(folder: Path) -> Settings:
    config = folder / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder}/bench.db"\ninbox = "inbox"\noutput_dir = "public"\n'
        # search has its own bench (bench/search.py): these figures stay the feeds' own
        'base_url = "http://bench.example/"\n\n[site]\nsearch = false\n',
        encoding="utf-8",
    )
    return load_settings(config, environ={})


def cached_site(cache: Path, n: int) -> Path:
    """A store of n synthetic articles and its full build, made once under `cache`."""
    folder = cache / f"feeds-{n}"
    if (folder / "ready").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    settings = bench_settings(folder)
    store = Store(settings.database_url)
    started = time.perf_counter()
    insert_articles(store, 0, n, random.Random(7))
    SiteBuilder(settings, store).build()
    store.close()
    (folder / "ready").write_text(f"{time.perf_counter() - started:.1f} s\n", encoding="utf-8")
    return folder


def working_copy(cached: Path, folder: Path) -> Settings:
    for name in ("bench.db", "bench.db-wal"):
        if (cached / name).exists():
            shutil.copy2(cached / name, folder / name)
    subprocess.run(["cp", "-al", str(cached / "public"), str(folder / "public")], check=True)
    return bench_settings(folder)


@contextmanager
def previous_code_path() -> Iterator[None]:
    """The incremental build as it was: listing pages load whole articles (blocks,
    removals, deletion) to show a summary, the index's live counts test LIVE on every
    row, and each feed format renders every body again. (The category/seq index stays:
    an index cannot come and go between interleaved runs.)"""
    saved = (
        SiteQueries.listed,
        SiteQueries.listed_in_ingest_order,
        SiteQueries.live_categories,
        SiteBuilder._entries,
    )

    def listed(self: SiteQueries, ids: Iterable[str]) -> list[Any]:
        return list(self.by_ids(ids))

    def in_order(
        self: SiteQueries, offset: int, limit: int, total: int, *, category: str | None = None
    ) -> list[Any]:
        return list(self.in_ingest_order(offset, limit, total, category=category))

    def live_categories(self: SiteQueries, counts: object) -> list[tuple[str, int]]:
        rows = self.connection.execute(
            select(articles.c.category, func.count())
            .where(LIVE)
            .group_by(articles.c.category)
            .order_by(articles.c.category)
        )
        return [(str(name), int(n)) for name, n in rows]

    def entries(self: SiteBuilder, found: Sequence[Article]) -> list[Entry]:
        return [Entry(a, self.settings.url(f"articles/{a.slug}.html")) for a in found]

    SiteQueries.listed = listed  # type: ignore[method-assign]
    SiteQueries.listed_in_ingest_order = in_order  # type: ignore[method-assign]
    SiteQueries.live_categories = live_categories  # type: ignore[method-assign,assignment]
    SiteBuilder._entries = entries  # type: ignore[method-assign]
    try:
        yield
    finally:
        (
            SiteQueries.listed,  # type: ignore[method-assign]
            SiteQueries.listed_in_ingest_order,  # type: ignore[method-assign]
            SiteQueries.live_categories,  # type: ignore[method-assign]
            SiteBuilder._entries,  # type: ignore[method-assign]
        ) = saved


def incremental_rows(cache: Path, n: int, repeat: int) -> list[tuple[str, str, str]]:
    cached = cached_site(cache, n)
    folder = Path(tempfile.mkdtemp(prefix="publisher-bench-", dir=cache))
    try:
        settings = working_copy(cached, folder)
        store = Store(settings.database_url)
        builder = SiteBuilder(settings, store)
        rng = random.Random(11)
        with store.read() as connection:
            next_n = [SiteQueries(connection).max_seq()]  # synthetic seq is number + 1

        def one_new_article() -> BuildResult:
            ids = insert_articles(store, next_n[0], 1, rng)
            next_n[0] += 1
            report = IngestReport([FileResult("new.txt", "added", "", ids[0], CATEGORIES[0])])
            return builder.build(report)

        # not measured: a state file of another version makes the first build a full one,
        # and at a round n the first article of each category starts its new last page
        for _ in CATEGORIES:
            one_new_article()
        times: dict[str, list[float]] = {"new": [], "old": []}
        written: list[int] = []
        for _ in range(repeat):
            for path in ("new", "old"):
                with previous_code_path() if path == "old" else _nothing():
                    result = one_new_article()
                assert not result.full
                times[path].append(result.seconds)
                if path == "new":
                    written.append(len(result.written))
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    new, old = statistics.median(times["new"]), statistics.median(times["old"])
    pages = f"{min(written)}-{max(written)} files written per build"
    return [
        (
            f"incremental build, one new article, {n} articles (category + archive pages)",
            f"{new * 1000:.0f} ms",
            f"{_runs(times['new'])}; {pages}",
        ),
        (
            f"  baseline: same build, previous code path, {n} articles",
            f"{old * 1000:.0f} ms",
            _runs(times["old"]),
        ),
        (f"  incremental / baseline, {n} articles", f"{new / old:.2f}x", "target < 150 ms at 100k"),
    ]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--incremental-sizes", default="10000,100000")
    parser.add_argument("--incremental-only", action="store_true")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "publisher-bench-cache"
    )
    options = parser.parse_args()
    n, repeat = options.articles, max(3, options.repeat)
    sizes = [int(size) for size in options.incremental_sizes.split(",") if size]
    rows: list[tuple[str, str, str]] = []
    if options.incremental_only:
        for size in sizes:
            rows += incremental_rows(options.cache, size, max(5, repeat))
        report(rows, max(sizes))
        return
    folder = Path(tempfile.mkdtemp(prefix="publisher-bench-"))
    try:
        settings = bench_settings(folder)
        store = Store(settings.database_url)
        rng = random.Random(7)

        started = time.perf_counter()
        insert_articles(store, 0, n, rng)
        rows.append(
            (
                "store generation (direct inserts)",
                f"{time.perf_counter() - started:.2f} s",
                f"{n} articles, {3 * n} blocks",
            )
        )

        builder = SiteBuilder(settings, store)
        started = time.perf_counter()
        cold = builder.build()
        rows.append(
            (
                "full build, cold (empty output)",
                f"{time.perf_counter() - started:.2f} s",
                f"{len(cold.written)} files written, once",
            )
        )

        warm, warm_times = median_time(builder.build, repeat)
        rows.append(
            ("full build, warm (nothing changed)", f"{warm * 1000:.0f} ms", _runs(warm_times))
        )

        def subscription_feeds() -> None:
            from publisher.output import OutputDir

            out = OutputDir(settings.output_dir)
            with store.read() as connection:
                queries = SiteQueries(connection)
                latest = queries.latest(builder.limit)
                current = builder._current(queries, latest, n)
                builder._site_feeds(out, current, builder._archived(n))
                for name in CATEGORIES:
                    builder._category_feeds(
                        out,
                        name,
                        feeds.category_slug(name),
                        queries.latest(builder.limit, category=name),
                    )

        feeds_time, feed_times = median_time(subscription_feeds, repeat)
        rows.append(
            (
                f"all subscription feeds (1 + {len(CATEGORIES)} categories x 3 formats)",
                f"{feeds_time * 1000:.0f} ms",
                _runs(feed_times),
            )
        )

        next_n = [n]

        def incremental() -> None:
            ids = insert_articles(store, next_n[0], 1, rng)
            next_n[0] += 1
            report = IngestReport([FileResult("new.txt", "added", "", ids[0], CATEGORIES[0])])
            result = builder.build(report)
            assert not result.full

        inc, inc_times = median_time(incremental, repeat)
        rows.append(
            ("incremental build, one new article", f"{inc * 1000:.0f} ms", _runs(inc_times))
        )

        # serialization only: every entry, as archive pages, from articles already loaded
        with store.read() as connection:
            loaded = SiteQueries(connection).in_ingest_order(0, n)
        entries = [Entry(a, settings.url(f"articles/{a.slug}.html")) for a in loaded]
        size = settings.feeds.archive_page_size
        pages = [entries[i : i + size] for i in range(0, len(entries), size)]
        channel = builder._channel("Bench", "Archive", "archive/1/")

        def with_feedgen() -> None:
            for page in pages:
                feeds.atom(channel, page)

        def with_lxml() -> None:
            for page in pages:
                lxml_atom(channel, page)

        fg_time, fg_times = median_time(with_feedgen, repeat)
        lx_time, lx_times = median_time(with_lxml, repeat)
        rows.append(
            (
                f"Atom for all {n} entries ({len(pages)} pages): feedgen",
                f"{fg_time:.2f} s",
                _runs(fg_times),
            )
        )
        rows.append(
            (
                f"Atom for all {n} entries ({len(pages)} pages): lxml baseline",
                f"{lx_time:.2f} s",
                _runs(lx_times),
            )
        )
        rows.append(("feedgen / lxml", f"{fg_time / lx_time:.2f}x", "target <= 3x"))
        per_entry_rss, _ = median_time(lambda: [feeds.rss(channel, p) for p in pages[:200]], repeat)
        rows.append(
            (
                "RSS (feedgen), per entry",
                f"{per_entry_rss / (200 * size) * 1e6:.0f} us",
                "first 200 pages",
            )
        )
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for size in sizes:
        rows += incremental_rows(options.cache, size, max(5, repeat))
    report(rows, n)


def _runs(times: list[float]) -> str:
    return "runs: " + ", ".join(f"{t * 1000:.0f}" for t in times) + " ms"


def report(rows: list[tuple[str, str, str]], n: int) -> None:
    width = max(len(r[0]) for r in rows)
    lines = [
        f"| {'measure'.ljust(width)} | result | notes |",
        f"|{'-' * (width + 2)}|--------|-------|",
    ]
    lines += [f"| {name.ljust(width)} | {value} | {note} |" for name, value, note in rows]
    table = "\n".join(lines)
    print(table)
    heading = (
        f"\n## feeds — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {n} articles, "
        f"Python {platform.python_version()} on {platform.machine()}\n\n"
    )
    with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as handle:
        handle.write(heading + table + "\n")


if __name__ == "__main__":
    main()
