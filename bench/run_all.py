"""Every benchmark in one go: ingest, feeds, send, workers; one summary, one results section.

    python bench/run_all.py            # the sizes of the issue (long: 100k articles/subscribers)
    python bench/run_all.py --quick    # small sizes, a few minutes: a smoke run
    python bench/run_all.py --only send workers

Each script runs as its own process (so its peak RSS is its own), prints its table and
appends its section to bench/results.md as usual. This driver then prints one summary
table (script, sizes, exit code, minutes, load average before/after) followed by the
sections the scripts wrote, and appends the summary to bench/results.md. The machine and
its load are recorded because the figures move with them (this host has 2 cores shared
with other work: rerun on a quiet machine for numbers to quote).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results.md"

# script -> (full arguments, --quick arguments)
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "ingest": (["--sizes", "20000", "100000", "--runs", "3"], ["--sizes", "5000", "--runs", "3"]),
    "feeds": (["--articles", "100000", "--repeat", "3"], ["--articles", "10000", "--repeat", "3"]),
    "send": (["10000", "100000"], ["10000"]),
    "workers": (
        ["--sizes", "10000", "100000", "--workers", "1", "2", "4", "--runs", "3"],
        ["--sizes", "10000", "--workers", "1", "2", "4", "--runs", "3"],
    ),
}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not hours)")
    parser.add_argument("--only", nargs="+", choices=list(SUITE), help="run only these")
    args = parser.parse_args()
    chosen = args.only or list(SUITE)
    rows: list[tuple[str, str, int, float, str, str]] = []
    sections: list[str] = []
    for name in chosen:
        arguments = SUITE[name][1 if args.quick else 0]
        before_load, before_size = _load(), RESULTS.stat().st_size if RESULTS.exists() else 0
        print(f"== {name}: python bench/{name}.py {' '.join(arguments)}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *arguments]).returncode
        minutes = (time.monotonic() - started) / 60
        rows.append((name, " ".join(arguments), code, minutes, before_load, _load()))
        if RESULTS.exists():
            with RESULTS.open(encoding="utf-8") as handle:
                handle.seek(before_size)
                sections.append(handle.read())
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    summary = (
        f"\n## run_all — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        f"{' (--quick)' if args.quick else ''}\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
        f"Python {platform.python_version()}, {platform.platform()}. "
        "Load average (1 min/5 min) before and after each script below.\n\n"
        "| script | arguments | exit | minutes | load before | load after |\n"
        "|--------|-----------|------|---------|-------------|------------|\n"
        + "".join(
            f"| bench/{n}.py | {a} | {c} | {m:.1f} | {b} | {e} |\n" for n, a, c, m, b, e in rows
        )
    )
    print("\n".join(sections), flush=True)
    print(summary, flush=True)
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(summary)
    return max((code for _, _, code, _, _, _ in rows), default=0)


if __name__ == "__main__":
    sys.exit(main())
