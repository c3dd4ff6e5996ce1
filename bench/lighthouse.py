"""Benchmark: Lighthouse scores and page metrics of the served site, and the npm ci cost.

Usage: python bench/lighthouse.py [--repeat 3] [--npm] [--no-record]

The seeds are built and served by `publisher serve` (tests/lighthouse.py, the same site as
tests/integration/test_lighthouse.py); lighthouse 12 (tests/.node) runs --repeat times on the
index, an article, a category page and the archive, all four categories, mobile emulation
with Lighthouse's simulated throttling. Per page: the median score of each category and the
median FCP, LCP, Total Blocking Time, CLS and the wall time of one run. Baseline from the
same run: a page of one heading and one paragraph on the same server, with the site's
stylesheet (what the metrics cost at the least on this machine).

--npm also times `npm ci` of tests/.node into a scratch folder, --repeat times each, with an
empty npm cache (a fresh CI machine) and with the user's cache: the lock of this branch
(axe-core and lighthouse) against a lock of axe-core alone (the baseline).

The table is printed and appended to bench/results.md unless --no-record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.lighthouse import PAGES, lighthouse, missing, served_site

CATEGORIES = ("performance", "accessibility", "seo", "best-practices")
METRICS = {
    "FCP ms": "first-contentful-paint",
    "LCP ms": "largest-contentful-paint",
    "TBT ms": "total-blocking-time",
    "CLS": "cumulative-layout-shift",
}
NODE = ROOT / "tests" / ".node"
BASELINE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Baseline</title>
<meta name="description" content="One heading and one paragraph.">
<link rel="stylesheet" href="/static/style.css">
</head>
<body><main><h1>Baseline</h1><p>One heading and one paragraph.</p></main></body>
</html>
"""


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _measure_pages(repeat: int) -> dict[str, dict[str, float]]:
    """Per page (and the baseline): the median of each score and metric over repeat runs."""
    found: dict[str, dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-lighthouse-") as scratch,
        served_site(Path(scratch)) as site,
    ):
        (site.folder / "public" / "baseline.html").write_text(BASELINE_PAGE, "utf-8")
        urls = {**site.urls, "baseline": f"{site.base}baseline.html"}
        for name in (*PAGES, "baseline"):
            runs: list[dict[str, float]] = []
            for _ in range(repeat):
                started = time.monotonic()
                report = lighthouse(urls[name], CATEGORIES)
                runs.append(_figures(report, time.monotonic() - started))
            found[name] = {key: _median([run[key] for run in runs]) for key in runs[0]}
            print(f"{name}: {found[name]}", file=sys.stderr)
    return found


def _figures(report: dict[str, Any], seconds: float) -> dict[str, float]:
    figures = {
        category: float(report["categories"][category]["score"] or 0) * 100
        for category in CATEGORIES
    }
    for label, audit in METRICS.items():
        figures[label] = float(report["audits"][audit]["numericValue"])
    figures["run s"] = seconds
    return figures


def _axe_only_lock(lock: dict[str, Any]) -> dict[str, Any]:
    """This branch's lock cut down to axe-core: what tests/.node held before lighthouse."""
    root = dict(lock["packages"][""])
    root["dependencies"] = {"axe-core": root["dependencies"]["axe-core"]}
    packages = {"": root, "node_modules/axe-core": lock["packages"]["node_modules/axe-core"]}
    return {**lock, "packages": packages}


def _npm_ci_seconds(package: dict[str, Any], lock: dict[str, Any], cold: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-npm-") as scratch:
        folder = Path(scratch) / "node"
        folder.mkdir()
        (folder / "package.json").write_text(json.dumps(package), "utf-8")
        (folder / "package-lock.json").write_text(json.dumps(lock), "utf-8")
        command = ["npm", "ci", "--prefix", str(folder), "--no-audit", "--no-fund", "--silent"]
        if cold:
            command += ["--cache", str(Path(scratch) / "cache")]
        started = time.monotonic()
        subprocess.run(command, check=True, env=os.environ.copy())
        return time.monotonic() - started


def _measure_npm(repeat: int) -> dict[str, dict[str, float]]:
    package = json.loads((NODE / "package.json").read_text("utf-8"))
    lock = json.loads((NODE / "package-lock.json").read_text("utf-8"))
    baseline_package = {
        **package,
        "dependencies": {"axe-core": package["dependencies"]["axe-core"]},
    }
    locks = {
        "axe-core alone (baseline)": (baseline_package, _axe_only_lock(lock)),
        "axe-core + lighthouse": (package, lock),
    }
    found: dict[str, dict[str, float]] = {}
    for name, (this_package, this_lock) in locks.items():
        found[name] = {}
        for cold in (True, False):
            times = [_npm_ci_seconds(this_package, this_lock, cold) for _ in range(repeat)]
            found[name]["empty cache s" if cold else "warm cache s"] = _median(times)
        print(f"npm ci, {name}: {found[name]}", file=sys.stderr)
    return found


def _cell(column: str, value: float) -> str:
    if column == "CLS":
        return f"{value:.3f}"
    if column.endswith("×"):
        return f"{value:.2f}"
    if column.endswith(" s"):
        return f"{value:.1f}"
    return f"{value:.0f}"  # scores out of 100, milliseconds


def _table(rows: dict[str, dict[str, float]], first: str) -> list[str]:
    columns = list(next(iter(rows.values())))
    lines = [
        "| " + " | ".join([first, *columns]) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for name, figures in rows.items():
        cells = [_cell(column, figures[column]) for column in columns]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def _against_baseline(pages: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each page's figures and its LCP as a multiple of the baseline page's."""
    floor = pages["baseline"]["LCP ms"]
    return {name: {**row, "LCP ×": row["LCP ms"] / floor} for name, row in pages.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--npm", action="store_true", help="also time npm ci of tests/.node")
    parser.add_argument("--no-record", action="store_true", help="do not append to results.md")
    options = parser.parse_args()
    reason = missing()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    if options.npm and shutil.which("npm") is None:
        print("error: npm not found on PATH", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    pages = _measure_pages(options.repeat)
    version = json.loads((NODE / "node_modules" / "lighthouse" / "package.json").read_text())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    chromium = subprocess.run(
        ["/usr/bin/chromium", "--version"], capture_output=True, text=True
    ).stdout.strip()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## lighthouse — {stamp}, Lighthouse {version['version']} (mobile, simulated "
        f"throttling), {chromium} headless, Node {node}, Python {platform.python_version()} "
        f"on {platform.machine()} ({os.cpu_count()} CPUs), load {load:.1f} → "
        f"{os.getloadavg()[0]:.1f}; median of {options.repeat}",
        "",
        "Five seed articles served by `publisher serve` on 127.0.0.1. Scores out of 100; "
        "baseline: a page of one heading and one paragraph with the site's stylesheet, "
        "same server, same run.",
        "",
        *_table(_against_baseline(pages), "page"),
    ]
    if options.npm:
        lines += [
            "",
            f"`npm ci --prefix tests/.node`, median of {options.repeat}; empty cache: "
            "`--cache` in a new folder, everything from registry.npmjs.org (a fresh CI machine).",
            "",
            *_table(_measure_npm(options.repeat), "lock"),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not options.no_record:
        with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
