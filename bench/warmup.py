"""What warm-up adds to reading a page of rows to send: letting the page go (oldest
subscription first, the day's count locked and raised) vs reading the same number of open
rows by id, the page every sender reads without warm-up. Measured in the same run on one
database, a run of N pending rows, median of several pages.

    python bench/warmup.py                 # 100,000 rows, SQLite
    python bench/warmup.py 10000 100000    # both sizes
    python bench/warmup.py --postgres postgresql+psycopg://postgres@127.0.0.1/bench_warmup

Prints the figures and appends them to bench/results.md.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, insert

from publisher.store import Store
from publisher.store.runs import DigestRuns
from publisher.store.schema import deliveries, digest_runs, subscribers, warmup_days
from publisher.store.warmup import WarmupDays

ROOT = Path(__file__).resolve().parent.parent
PAGE = 1000  # rows per page, as sending/due.PAGE
PAGES = 7
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _fill(store: Store, rows: int) -> int:
    """`rows` subscribers (shuffled subscription times) and one run with a pending row each."""
    with store.begin() as connection:
        connection.execute(delete(deliveries))
        connection.execute(delete(digest_runs))
        connection.execute(delete(subscribers))
        connection.execute(delete(warmup_days))
    order = list(range(rows))
    random.Random(rows).shuffle(order)
    start = NOW - timedelta(days=1000)
    with store.begin() as connection:
        for first in range(0, rows, 10_000):
            connection.execute(
                insert(subscribers),
                [
                    {
                        "email": f"reader{n:07}@example.com",
                        "status": "confirmed",
                        "categories": "[]",
                        "frequency": "weekly",
                        "timezone": "UTC",
                        "created": start + timedelta(minutes=n),
                        "confirmed": start + timedelta(minutes=n),
                        "hard_failures": 0,
                    }
                    for n in order[first : first + 10_000]
                ],
            )
        run = DigestRuns(connection).create_run("weekly", NOW, NOW)
        connection.exec_driver_sql(
            "INSERT INTO deliveries (run_id, subscriber_id, status, attempts, message_id, "
            f"article_ids, created) SELECT {run.id}, id, 'pending', 0, "
            "'<' || id || '@bench>', '[]', created FROM subscribers"
        )
        connection.exec_driver_sql("ANALYZE")
    return run.id


def _timed(work: object) -> float:
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


def measure(url: str, rows: int) -> dict[str, object]:
    store = Store(url)
    try:
        run_id = _fill(store, rows)
        plain: list[float] = []
        let_go: list[float] = []
        after = 0
        for _ in range(PAGES):

            def read() -> None:
                nonlocal after
                with store.read() as connection:
                    page = DigestRuns(connection).unfinished(run_id, after=after, limit=PAGE)
                assert len(page) == PAGE
                after = page[-1][0].id

            def admit() -> None:
                with store.begin() as connection:
                    page = WarmupDays(connection).admit(
                        run_id, "bench.example", "2026-11-20", 10**9, PAGE
                    )
                assert len(page) == PAGE

            plain.append(_timed(read))
            let_go.append(_timed(admit))
        return {"rows": rows, "plain": plain, "let_go": let_go, "dialect": store.dialect}
    finally:
        store.close()


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f}" for v in values)


def main(sizes: list[int], postgres: str | None) -> None:
    folder = Path(tempfile.mkdtemp())
    sections = []
    for rows in sizes:
        url = postgres or f"sqlite:///{folder / f'bench-{rows}.db'}"
        found = measure(url, rows)
        plain = statistics.median(found["plain"])  # type: ignore[arg-type]
        let_go = statistics.median(found["let_go"])  # type: ignore[arg-type]
        print(json.dumps({"rows": rows, "plain_ms": plain * 1000, "let_go_ms": let_go * 1000}))
        sections.append(
            f"\n## warm-up — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one run of {rows:,} "
            f"pending rows, pages of {PAGE:,}, median of {PAGES}, {found['dialect']}, "
            f"Python {platform.python_version()} on {platform.machine()}\n\n"
            "| measure | result | notes |\n|---|---|---|\n"
            f"| read a page of open rows by id (no warm-up), ms | {plain * 1000:.1f} | "
            f"pages: {_ms(found['plain'])} |\n"  # type: ignore[arg-type]
            f"| let a page go (oldest subscription first), ms | {let_go * 1000:.1f} | "
            f"pages: {_ms(found['let_go'])} |\n"  # type: ignore[arg-type]
            f"| let go / read | {let_go / plain:.1f}x | the sort of the run's held rows "
            "by subscription time grows with the run |\n"
        )
    with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as out:
        out.write("".join(sections))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    pg = None
    if "--postgres" in arguments:
        at = arguments.index("--postgres")
        pg = arguments[at + 1]
        del arguments[at : at + 2]
    main([int(a) for a in arguments] or [100_000], pg)
