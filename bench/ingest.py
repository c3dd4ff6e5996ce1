"""Ingest + dedup throughput into SQLite, dedup cost vs store size, peak RSS.

Run by hand:  python bench/ingest.py [--sizes 20000 100000] [--runs 3]
Prints a table and appends it to bench/results.md. Each figure is the median of
--runs runs, each in a fresh subprocess (so peak RSS is that run's own). The
baseline, measured in the same run, is read + parse alone (no dedup, no store).
PUBLISHER_INGEST_PROCESSES=0 measures ingest without worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import generate

from publisher.config import load_settings
from publisher.ingest import Ingestor
from publisher.parse import parse_article
from publisher.store import Store

HERE = Path(__file__).resolve().parent


def worker(folder: Path, mode: str) -> None:
    """One measured run in this process; prints a JSON line."""
    # names, not Paths: 100,000 Path objects would be ~50 MB of this process's peak RSS
    names = sorted(name for name in os.listdir(folder) if name.endswith(".txt"))
    started = time.perf_counter()
    if mode == "parse":
        zone = ZoneInfo("Asia/Shanghai")
        for name in names:
            parse_article((folder / name).read_bytes(), source_file=name, zone=zone)
        slices: list[float] = []
        summary: dict[str, int] = {}
    else:
        work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        config = work / "publisher.toml"
        config.write_text(
            f'database_url = "sqlite:///{work}/db.sqlite"\ninbox = "{folder}"\n'
            f"ingest_processes = {os.environ.get('PUBLISHER_INGEST_PROCESSES', '-1')}\n"
        )
        settings = load_settings(config, environ={})
        ingestor = Ingestor(settings, Store(settings.database_url))
        slices, last = [], [started, 0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            slices.append((now - last[0]) / max(1, done - last[1]) * 1e3)  # ms per article
            last[:] = [now, done]

        # bench data never needs quarantine: ingest in place, read-only
        report = ingestor.ingest([folder], progress=progress)
        summary = report.summary()
        shutil.rmtree(work)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rate": len(names) / elapsed,
                "slices_ms": slices,
                "summary": summary,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                # the processes that read, parse and sign files for it (publisher/prepare.py)
                "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def measure(folder: Path, mode: str) -> dict[str, object]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", str(folder), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("FOLDER", "MODE"))
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1])
        return
    rows = []
    for size in args.sizes:
        folder = HERE / "out" / f"articles-{size}"
        if not folder.exists() or len(list(folder.glob("*.txt"))) != size:
            shutil.rmtree(folder, ignore_errors=True)
            for _ in generate(size, folder):
                pass
        parse_runs = [measure(folder, "parse") for _ in range(args.runs)]
        ingest_runs = [measure(folder, "ingest") for _ in range(args.runs)]
        rate = statistics.median(float(r["rate"]) for r in ingest_runs)  # type: ignore[arg-type]
        baseline = statistics.median(float(r["rate"]) for r in parse_runs)  # type: ignore[arg-type]
        slices = ingest_runs[0]["slices_ms"]
        assert isinstance(slices, list)
        first, last = statistics.median(slices[:3]), statistics.median(slices[-3:])
        rows.append(
            {
                "articles": size,
                "ingest+dedup /s": f"{rate:,.0f}",
                "parse only /s (baseline)": f"{baseline:,.0f}",
                "ratio": f"{rate / baseline:.2f}",
                "ms/article first→last batch": f"{first:.2f} → {last:.2f}",
                "peak RSS MB": f"{statistics.median(float(r['rss_mb']) for r in ingest_runs):.0f}",  # type: ignore[arg-type]
                "worker process peak RSS MB": f"{statistics.median(float(r['workers_rss_mb']) for r in ingest_runs):.0f}",  # type: ignore[arg-type]
                "outcomes": json.dumps(ingest_runs[0]["summary"]),
            }
        )
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    header = list(rows[0])
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    text = "\n".join(
        [
            f"## ingest ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine}; median of {args.runs})",
            "",
            *table,
            "",
        ]
    )
    print(text)
    with (HERE / "results.md").open("a", encoding="utf-8") as results:
        results.write(text + "\n")


if __name__ == "__main__":
    main()
