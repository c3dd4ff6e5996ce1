"""Benchmark: how long `publisher --help` takes to start, against a bare interpreter.

Usage: python bench/startup.py [--repeat 5]

Runs the installed `publisher --help` (the console script beside this interpreter, else
`python -m publisher --help`) and `python -c pass` --repeat times each, alternating so a
busy moment hits both, and prints the median wall time of each and their ratio. The
interpreter's own start-up is the floor no import work can go under; the ratio is what
survives a faster or slower machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("publisher")
HELP = (
    [str(SCRIPT), "--help"] if SCRIPT.is_file() else [sys.executable, "-m", "publisher", "--help"]
)
BARE = [sys.executable, "-c", "pass"]


def wall_time(command: list[str]) -> float:
    """Seconds from spawn to exit of one run; a failing command stops the benchmark."""
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    wall_time(HELP)  # warm the file cache and the .pyc files: every run then starts alike
    helps, bares = [], []
    for _ in range(args.repeat):
        helps.append(wall_time(HELP))
        bares.append(wall_time(BARE))
    help_median, bare_median = statistics.median(helps), statistics.median(bares)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    print(
        f"start-up — {when}, median of {args.repeat}, Python {platform.python_version()} "
        f"on {platform.machine()} ({os.cpu_count()} CPUs), load {load:.1f}"
    )
    print(f"publisher --help: {help_median * 1000:.0f} ms (runs: {_ms(helps)})")
    print(f"python -c pass:   {bare_median * 1000:.0f} ms (runs: {_ms(bares)})")
    print(f"ratio:            {help_median / bare_median:.1f}x")


def _ms(runs: list[float]) -> str:
    return ", ".join(f"{run * 1000:.0f}" for run in runs)


if __name__ == "__main__":
    main()
