"""Benchmark: the Pagefind search index (publisher/search.py) at a large article count.

Usage: python bench/search.py [--articles 100000] [--repeat 5] [--site-articles 5000]

Measures, in this one process:
  - the base bundle of --articles article pages (Pagefind over articles/*.html), once:
    what a first build, a template change, or segments past their limit cost
  - one build's search update with one new article (a one-page segment and the
    manifest), median of --repeat: what every incremental build adds
  - a delete's search update (the manifest only), median of --repeat
  - the update that folds SEGMENTS_MAX segments into one, median of --repeat
  - the update that passes the segment limit and starts a background base, and how long
    that base takes, median of --repeat
  - baseline, same run: Pagefind over one page into an empty folder (process start)
  - with a real store of --site-articles: an incremental site build after one new
    article with search on, against the same build with `site.search = false`
    (medians of --repeat)
Pages are synthetic, the size of a real article page (about 300 words). Prints a table
and appends it to bench/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.feeds import CATEGORIES, insert_articles, sentence
from publisher.config import load_settings
from publisher.ingest import FileResult, IngestReport
from publisher.links import SEARCH_MANIFEST as MANIFEST
from publisher.search import SEGMENT_PAGES_MAX, SEGMENTS_MAX, SearchIndex
from publisher.site import SiteBuilder
from publisher.store import Store


def write_page(root: Path, n: int, rng: random.Random) -> str:
    page = f"articles/2010-01-01-article-{n}.html"
    paragraphs = "".join(
        f"<p>{' '.join(sentence(rng, 20) for _ in range(5))}</p>" for _ in range(3)
    )
    (root / page).write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Article {n}</title></head><body><header><nav>Latest</nav></header><main>"
        f"<article data-pagefind-body><h1>Article {n}: {sentence(rng, 6)}</h1>{paragraphs}"
        "</article></main></body></html>",
        encoding="utf-8",
    )
    return page


def median_of(function: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def _runs(times: list[float]) -> str:
    return "runs: " + ", ".join(f"{t * 1000:.0f}" for t in times) + " ms"


def index_figures(folder: Path, n: int, repeat: int) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    rng = random.Random(11)
    site = folder / "site"
    (site / "articles").mkdir(parents=True)
    pages = [write_page(site, i, rng) for i in range(n)]
    index = SearchIndex(site, "en")

    started = time.perf_counter()
    assert index.update(pages, [], every_gone=True, rebuild=True)
    size = sum(f.stat().st_size for f in (site / "search").rglob("*") if f.is_file())
    rows.append(
        (
            f"base bundle, {n} pages",
            f"{time.perf_counter() - started:.1f} s",
            f"once; {size / 1e6:.0f} MB under search/",
        )
    )

    empty = folder / "empty"

    def pagefind_alone() -> None:
        shutil.rmtree(empty, ignore_errors=True)
        (empty / "articles").mkdir(parents=True)
        write_page(empty, 0, rng)
        assert SearchIndex(empty, "en").update([], [], rebuild=True)

    alone, alone_times = median_of(pagefind_alone, repeat)
    rows.append(
        ("baseline: Pagefind over one page, no index", f"{alone * 1000:.0f} ms", _runs(alone_times))
    )

    counter = [n]

    def one_new() -> None:
        page = write_page(site, counter[0], rng)
        counter[0] += 1
        assert index.update([page], [])

    def segments() -> int:
        manifest = json.loads((site / MANIFEST).read_bytes())
        return len(manifest["bundles"]) - 1

    segment_times: list[float] = []
    fold_times: list[float] = []
    for _ in range(repeat):
        while segments() < SEGMENTS_MAX:
            _, times = median_of(one_new, 1)
            segment_times += times
        _, times = median_of(one_new, 1)  # this one folds
        fold_times += times
    rows.append(
        (
            "search update, one new article (a segment)",
            f"{statistics.median(segment_times) * 1000:.0f} ms",
            f"median of {len(segment_times)}; {statistics.median(segment_times) / alone:.2f} x baseline",
        )
    )
    rows.append(
        (
            f"search update that folds {SEGMENTS_MAX} segments",
            f"{statistics.median(fold_times) * 1000:.0f} ms",
            _runs(fold_times),
        )
    )

    worst = folder / "worst"

    def widest_fold() -> None:
        shutil.rmtree(worst, ignore_errors=True)
        (worst / "articles").mkdir(parents=True)
        held = [write_page(worst, i, rng) for i in range(SEGMENT_PAGES_MAX)]
        assert SearchIndex(worst, "en").update(held, [], rebuild=True)

    widest, widest_times = median_of(widest_fold, repeat)
    rows.append(
        (
            f"widest fold: a segment of {SEGMENT_PAGES_MAX} pages",
            f"{widest:.2f} s",
            f"{_runs(widest_times)} (page writing included)",
        )
    )

    # the build that passes the limit: it starts the background base and writes its segment
    eager = SearchIndex(site, "en", pages_max=0)
    start_times: list[float] = []
    background: list[float] = []
    for _ in range(repeat):
        page = write_page(site, counter[0], rng)
        counter[0] += 1
        started = time.perf_counter()
        assert eager.update([page], [])
        start_times.append(time.perf_counter() - started)
        state = json.loads((site / ".build" / "search.json").read_bytes())
        marker = site / ".build" / f"search-base-{state['pending']['name']}.exit"
        while not marker.exists():
            time.sleep(0.05)
        background.append(time.perf_counter() - started)
        assert eager.update([], [])  # taken up
    rows.append(
        (
            "search update that starts a new base in the background",
            f"{statistics.median(start_times) * 1000:.0f} ms",
            f"{_runs(start_times)}; the base itself: median {statistics.median(background):.1f} s",
        )
    )

    victims = iter(pages)

    def delete() -> None:
        assert index.update([], [next(victims)])

    gone, gone_times = median_of(delete, repeat)
    rows.append(("search update, one deleted article", f"{gone * 1000:.1f} ms", _runs(gone_times)))
    return rows


def site_figures(folder: Path, n: int, repeat: int) -> list[tuple[str, str, str]]:
    store_url = f"sqlite:///{folder}/bench.db"
    store = Store(store_url)
    rng = random.Random(7)
    insert_articles(store, 0, n, rng)
    builders = {}
    for search in (False, True):
        config = folder / f"search-{search}.toml"
        config.write_text(
            f'database_url = "{store_url}"\ninbox = "inbox"\noutput_dir = "public-{search}"\n'
            f'base_url = "http://bench.example/"\n\n[site]\nsearch = {str(search).lower()}\n',
            encoding="utf-8",
        )
        builders[search] = SiteBuilder(load_settings(config, environ={}), store)
        builders[search].build()
    next_n = [n]
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        ids = insert_articles(store, next_n[0], 1, rng)
        next_n[0] += 1
        report = IngestReport([FileResult("new.txt", "added", "", ids[0], CATEGORIES[0])])
        for search in (False, True):
            started = time.perf_counter()
            assert not builders[search].build(report).full
            times[search].append(time.perf_counter() - started)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    return [
        (
            f"incremental site build, {n} articles, search off (baseline)",
            f"{off * 1000:.0f} ms",
            _runs(times[False]),
        ),
        (
            f"incremental site build, {n} articles, search on",
            f"{on * 1000:.0f} ms",
            f"{_runs(times[True])}; +{(on - off) * 1000:.0f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--site-articles", type=int, default=5000)
    options = parser.parse_args()
    repeat = max(3, options.repeat)
    folder = Path(tempfile.mkdtemp(prefix="publisher-bench-search-"))
    load = os.getloadavg()[0]
    try:
        rows = index_figures(folder, options.articles, repeat)
        if options.site_articles > 0:
            rows += site_figures(folder, options.site_articles, repeat)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    lines = [
        f"| {'measure'.ljust(width)} | result | notes |",
        f"|{'-' * (width + 2)}|--------|-------|",
    ]
    lines += [f"| {name.ljust(width)} | {value} | {note} |" for name, value, note in rows]
    table = "\n".join(lines)
    print(table)
    heading = (
        f"\n## search — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {options.articles} pages, "
        f"Pagefind 1.5.2, Python {platform.python_version()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs), load {load:.1f} → {os.getloadavg()[0]:.1f}\n\n"
    )
    with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as handle:
        handle.write(heading + table + "\n")


if __name__ == "__main__":
    main()
