"""Scale-out send throughput: 1 vs 2 vs 4 `publisher worker` processes on PostgreSQL.

    python bench/workers.py                  # 10,000 subscribers, workers 1 2 4, 3 runs each
    python bench/workers.py --sizes 10000 100000 --workers 1 2 4 --runs 3
    python bench/workers.py --no-write       # print only, do not append to bench/results.md

Every trial: a fresh PostgreSQL database cloned from a prepared template (seed articles +
N confirmed subscribers), `publisher send --fan-out-only` (timed: the scheduler's part),
then W `publisher worker --exit-when-idle` processes started together against the raw
loopback sink of bench/send.py (reused, run as its own process). Throughput is rows sent
/ the send window taken from the ledger (first 'sending' mark to last 'sent' mark), so
interpreter start-up is not counted; peak RSS and CPU come from each worker's own rusage.
The raw aiosmtplib baseline (bench/send.py's, same message, pool 16, one process) runs in
the same session; every ratio compares figures of this one session.

The sink is shown not to be the bottleneck by its own CPU use during each trial (a
fraction of one core) and by the baseline, which pushes it harder than any trial.
Needs PostgreSQL at $PUBLISHER_BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "PUBLISHER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CONCURRENCY = 16  # SMTP connections per worker: bench/send.py's POOL, so the baseline matches
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
TICKS = os.sysconf("SC_CLK_TCK")


# -- PostgreSQL databases ----------------------------------------------------------------


def _admin() -> Any:
    from sqlalchemy import create_engine

    return create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")


def _url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def _sql(statement: str) -> None:
    from sqlalchemy import text

    engine = _admin()
    with engine.connect() as connection:
        connection.execute(text(statement))
    engine.dispose()


def _config(folder: Path, url: str, port: int) -> Path:
    path = folder / "publisher.toml"
    path.write_text(
        f'database_url = "{url}"\n'
        f'inbox = "{folder / "inbox"}"\noutput_dir = "{folder / "public"}"\n'
        'secret_key = "bench-secret-key-of-at-least-32-bytes"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool_size = {CONCURRENCY}\n'
        "messages_per_connection = 100000\n"
        "[workers]\nlease_seconds = 60\nclaim_batch = 500\npoll_seconds = 0.2\n"
        "deliver_locally = false\n"
    )
    return path


def _publisher(config: Path, *args: str, **kwargs: Any) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--config", str(config), *args],
        cwd=ROOT,
        env={**os.environ, "PUBLISHER_CONFIG": ""},
        capture_output=True,
        check=True,
        **kwargs,
    )


def _ledger_window(url: str) -> dict[str, float]:
    """Rows sent, and the send window from the ledger's own timestamps."""
    from sqlalchemy import create_engine, func, select

    from publisher.store.schema import deliveries

    engine = create_engine(url)
    with engine.connect() as connection:
        first, last = connection.execute(
            select(func.min(deliveries.c.sending_at), func.max(deliveries.c.finished_at))
        ).one()
        sent = connection.execute(
            select(func.count()).where(deliveries.c.status == "sent")
        ).scalar_one()
        others = connection.execute(
            select(func.count()).where(deliveries.c.status != "sent")
        ).scalar_one()
    engine.dispose()
    return {"sent": sent, "not_sent": others, "seconds": (last - first).total_seconds()}


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU so far, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


# -- one trial ---------------------------------------------------------------------------


def trial(template: str, workers: int, port: int, sink_pid: int) -> dict[str, float]:
    name = f"bench_workers_{uuid.uuid4().hex[:10]}"
    _sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        config = _config(folder, _url(name), port)
        started = time.perf_counter()
        _publisher(config, "send", "--fan-out-only", "--now", NOW.isoformat())
        fan_out = time.perf_counter() - started
        sink_cpu = _cpu_seconds(sink_pid)
        machine = _machine_ticks()
        started = time.perf_counter()
        processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "publisher",
                    "--config",
                    str(config),
                    "worker",
                    "--exit-when-idle",
                    "--concurrency",
                    str(CONCURRENCY),
                ],
                cwd=ROOT,
                env={**os.environ, "PUBLISHER_CONFIG": ""},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        usages = []
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            assert process.returncode == 0, f"worker exited {process.returncode}"
            usages.append(usage)
        wall = time.perf_counter() - started
        busy, total = (
            after - before for after, before in zip(_machine_ticks(), machine, strict=True)
        )
        sink_cpu = _cpu_seconds(sink_pid) - sink_cpu
        window = _ledger_window(_url(name))
        assert window["not_sent"] == 0, window
        return {
            "workers": workers,
            "sent": window["sent"],
            "rate": window["sent"] / window["seconds"],
            "wall_rate": window["sent"] / wall,
            "fan_out_seconds": fan_out,
            "rss_mb": max(u.ru_maxrss for u in usages) / 1024,
            "cpu_ms_per_message": 1000
            * sum(u.ru_utime + u.ru_stime for u in usages)
            / window["sent"],
            "sink_core_share": sink_cpu / wall,
            # everything on the machine (workers, PostgreSQL, sink, anyone else), in cores
            "machine_cores_busy": (os.cpu_count() or 1) * busy / max(1, total),
            "worker_cores": sum(u.ru_utime + u.ru_stime for u in usages) / wall,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _prepare(name: str, count: int, port: int) -> Path:
    """Database `name` with the seed articles and `count` subscribers (bench/send.py's)."""
    _sql(f'CREATE DATABASE "{name}"')
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-template-"))
    _config(folder, _url(name), port)
    subprocess.run(
        [sys.executable, str(BENCH / "send.py"), "--child", "prepare", str(folder), str(count)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return folder


def prepare_template(count: int, port: int) -> tuple[str, Path]:
    """A database with the seed articles and `count` subscribers, plus one sample message.

    The sample (the biggest digest, for the baseline) comes from a dry run over a tiny
    copy: every subscriber kind is among the first eight, so it is the same message.
    """
    name = f"bench_template_{uuid.uuid4().hex[:10]}"
    folder = _prepare(name, count, port)
    tiny = f"bench_sample_{uuid.uuid4().hex[:10]}"
    tiny_folder = _prepare(tiny, 8, port)
    try:
        preview = tiny_folder / "preview"
        _publisher(
            tiny_folder / "publisher.toml",
            "send",
            "--dry-run",
            "--out",
            str(preview),
            "--now",
            NOW.isoformat(),
        )
        biggest = max(preview.glob("*.eml"), key=lambda p: p.stat().st_size)
        sample = folder / "sample"
        (sample / "preview").mkdir(parents=True)
        shutil.copy(biggest, sample / "preview" / biggest.name)
    finally:
        _sql(f'DROP DATABASE IF EXISTS "{tiny}" WITH (FORCE)')
        shutil.rmtree(tiny_folder, ignore_errors=True)
    return name, sample


def baseline(sample: Path, port: int, count: int) -> dict[str, float]:
    """bench/send.py's raw aiosmtplib client: same message, pool 16, no rendering or ledger."""
    import json

    output = subprocess.run(
        [
            sys.executable,
            str(BENCH / "send.py"),
            "--child",
            "baseline",
            str(sample),
            str(port),
            str(count),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


# -- the driver --------------------------------------------------------------------------


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from sqlalchemy import create_engine, text

    engine = create_engine(ADMIN_URL)
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs ({model or 'unknown model'}), "
        f"Python {platform.python_version()}, PostgreSQL {version} on 127.0.0.1"
    )


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (5 min {five:.1f})"


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    """bench/send.py's raw asyncio sink, in its own process."""
    port_file = Path(tempfile.mkdtemp()) / "port"
    sink = subprocess.Popen([sys.executable, str(BENCH / "send.py"), "--sink", str(port_file)])
    deadline = time.monotonic() + 10
    while not port_file.exists() or not port_file.read_text():
        assert time.monotonic() < deadline, "sink did not start"
        time.sleep(0.05)
    return sink, int(port_file.read_text())


def bench(count: int, counts: list[int], runs: int, port: int, sink_pid: int) -> str:
    load_before = _load()
    template, sample = prepare_template(count, port)
    results: dict[int, list[dict[str, float]]] = {w: [] for w in counts}
    raw: list[dict[str, float]] = []
    try:
        for run in range(runs):
            # interleaved, so a change in machine load hits every configuration alike
            for workers in counts:
                results[workers].append(trial(template, workers, port, sink_pid))
                r = results[workers][-1]
                print(
                    f"  run {run + 1}, {workers} worker(s): {r['rate']:,.0f} msg/s "
                    f"(sink {r['sink_core_share']:.0%} of a core, load {_load()})",
                    flush=True,
                )
            raw.append(baseline(sample, port, count))
            print(
                f"  run {run + 1}, raw baseline: {raw[-1]['sent'] / raw[-1]['seconds']:,.0f} msg/s"
            )
    finally:
        _sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        shutil.rmtree(sample.parent, ignore_errors=True)  # the template's folder
    load_after = _load()

    def median(workers: int, key: str) -> float:
        return statistics.median(r[key] for r in results[workers])

    base_rates = [r["sent"] / r["seconds"] for r in raw]
    one = counts[0]
    rows: list[tuple[str, str, str]] = []
    for workers in counts:
        rates = [r["rate"] for r in results[workers]]
        rows.append(
            (
                f"{workers} worker(s), msg/s",
                f"{statistics.median(rates):,.0f}",
                "runs: "
                + ", ".join(f"{x:,.0f}" for x in rates)
                + f"; incl. start-up {median(workers, 'wall_rate'):,.0f}",
            )
        )
    rows.append(
        (
            "raw aiosmtplib baseline, msg/s",
            f"{statistics.median(base_rates):,.0f}",
            "runs: " + ", ".join(f"{x:,.0f}" for x in base_rates) + "; one process, pool 16",
        )
    )
    for workers in counts[1:]:
        ratios = [
            a["rate"] / b["rate"] for a, b in zip(results[workers], results[one], strict=True)
        ]
        target = "target >= 1.7x; " if workers == 2 else ""
        rows.append(
            (
                f"{workers} workers / {one} worker",
                f"{statistics.median(ratios):.2f}x",
                target + "per run: " + ", ".join(f"{x:.2f}x" for x in ratios),
            )
        )
    ratios = [a["rate"] / b for a, b in zip(results[one], base_rates, strict=True)]
    rows.append(
        (
            f"{one} worker / raw baseline",
            f"{statistics.median(ratios):.0%}",
            "target >= 70 %; per run: " + ", ".join(f"{x:.0%}" for x in ratios),
        )
    )
    for workers in counts:
        rows.append(
            (
                f"peak RSS per worker, {workers} worker(s)",
                f"{max(r['rss_mb'] for r in results[workers]):.0f} MB",
                f"CPU {median(workers, 'cpu_ms_per_message'):.2f} ms/message (all workers)",
            )
        )
    for workers in counts:
        rows.append(
            (
                f"cores busy, {workers} worker(s)",
                f"{median(workers, 'machine_cores_busy'):.2f} of {os.cpu_count()}",
                f"the workers {median(workers, 'worker_cores'):.2f}; the rest PostgreSQL, "
                "the sink and anything else running",
            )
        )
    rows.append(
        (
            "fan-out (send --fan-out-only), rows/s",
            f"{count / statistics.median(r['fan_out_seconds'] for rs in results.values() for r in rs):,.0f}",
            "CLI incl. start-up; the scheduler's part",
        )
    )
    shares = [r["sink_core_share"] for rs in results.values() for r in rs]
    rows.append(
        (
            "sink CPU during trials",
            f"{max(shares):.0%} of one core (max)",
            "median " + f"{statistics.median(shares):.0%}; the baseline pushes it to "
            f"{statistics.median(base_rates):,.0f} msg/s",
        )
    )
    width = max(len(r[0]) for r in rows)
    head = (
        f"\n## workers — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {count:,} subscribers, "
        f"workers {'/'.join(map(str, counts))} x {CONCURRENCY} connections, median of {runs}\n\n"
        f"Machine: {_machine()}; load average before {load_before}, after {load_after}. "
        "Raw asyncio sink (bench/send.py) in its own process.\n\n"
        f"| {'measure':<{width}} | result | notes |\n|{'-' * (width + 2)}|--------|-------|\n"
    )
    return head + "".join(f"| {a:<{width}} | {b} | {c} |\n" for a, b, c in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not append to results.md")
    args = parser.parse_args()
    sink, port = start_sink()
    try:
        sections = []
        for count in args.sizes:
            print(
                f"workers bench: {count:,} subscribers, workers {args.workers}, {args.runs} runs",
                flush=True,
            )
            section = bench(count, args.workers, args.runs, port, sink.pid)
            print(section, flush=True)
            sections.append(section)
        if not args.no_write:
            with (BENCH / "results.md").open("a", encoding="utf-8") as out:
                out.write("".join(sections))
    finally:
        sink.terminate()
        sink.wait(5)


if __name__ == "__main__":
    main()
