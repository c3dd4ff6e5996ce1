"""Send throughput: `publisher send` vs a raw aiosmtplib baseline, against a raw loopback sink.

    python bench/send.py                 # 10,000 subscribers, 3 runs each
    python bench/send.py 10000 100000    # both sizes
    python bench/send.py --dkim          # also signed: RSA-2048 and Ed25519, vs the same raw

The sink is a minimal asyncio SMTP responder in its own process (aiosmtpd would be the
bottleneck near 700 msg/s). Each trial runs in a fresh child process so peak RSS is its
own. Baseline: the same message bytes, the same pool size, one persistent connection per
task, no rendering, no ledger. Prints figures and appends them to bench/results.md.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOL = 16
RUNS = 3
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)


# -- the raw sink ----------------------------------------------------------------------


async def _sink_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 sink ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-sink\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                writer.write(b"250 OK\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 OK\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def run_sink(port_file: str) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_sink_session, "127.0.0.1", 0, limit=2**20)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- children --------------------------------------------------------------------------


def _config(folder: Path, port: int, dkim: str = "") -> Path:
    path = folder / "publisher.toml"
    path.write_text(
        f'database_url = "sqlite:///{folder / "db.sqlite"}"\n'
        f'inbox = "{folder / "inbox"}"\noutput_dir = "{folder / "public"}"\n'
        'secret_key = "bench-secret-key-of-at-least-32-bytes"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\npool_size = {POOL}\n'
        "messages_per_connection = 100000\n" + (_dkim_section(folder, dkim) if dkim else "")
    )
    return path


def _dkim_section(folder: Path, kind: str) -> str:
    """A fresh key of `kind` (rsa: 2048 bits, or ed25519) and the [dkim] table using it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / "dkim.pem").write_bytes(pem)
    setting = "private_key_file" if kind == "rsa" else "ed25519_key_file"
    return f'[dkim]\nselector = "bench"\n{setting} = "{folder / "dkim.pem"}"\n'


def child_sign_cost(folder: str, kind: str, count: int) -> dict[str, float]:
    """CPU time of `Signer.sign` alone on the sample digest, per message."""
    from publisher.config import load_settings
    from publisher.signing import signer_for

    signer = signer_for(load_settings(Path(folder) / "publisher.toml", environ={}))
    assert signer is not None, kind
    sample = next(Path(folder, "preview").glob("*.eml")).read_bytes()
    started = time.process_time()
    for _ in range(count):
        signer.sign(sample)
    signing = (time.process_time() - started) / count
    # what sharing the body hash (bh=) across recipients could save at most: all of it
    body = sample.partition(b"\r\n\r\n")[2]
    started = time.process_time()
    for _ in range(count):
        hashlib.sha256(body).digest()
    hashing = (time.process_time() - started) / count
    return {"ms": 1000 * signing, "body_ms": 1000 * hashing, "body_bytes": len(body)}


def child_prepare(folder: str, subscribers: int) -> dict[str, float]:
    """A database with the seed articles and N confirmed subscribers (direct inserts)."""
    from sqlalchemy import insert

    from publisher.app import App
    from publisher.config import load_settings
    from publisher.store.schema import subscribers as table

    app = App(load_settings(Path(folder) / "publisher.toml", environ={}))
    app.ingest([ROOT / "seeds"], now=lambda: INGESTED)
    started = time.perf_counter()
    categories = ["[]", '["Harbin Today"]', '["Civilization progress"]', '["Government bulletin"]']
    with app.store.begin() as connection:
        for start in range(0, subscribers, 10_000):
            connection.execute(
                insert(table),
                [
                    {
                        "email": f"reader{n:06}@example.com",
                        "name": f"Reader {n}",
                        "status": "confirmed",
                        "categories": categories[n % 4],
                        "frequency": "weekly" if n % 5 else "daily",
                        "timezone": "UTC",
                        "created": INGESTED,
                        "hard_failures": 0,
                    }
                    for n in range(start, min(subscribers, start + 10_000))
                ],
            )
    app.close()
    return {"seconds": time.perf_counter() - started}


def child_publisher(folder: str, paced: bool = True) -> dict[str, float]:
    """`publisher send` as configured (pacing on: the default groups, every bench address
    in the unlimited rest), or with no pacer at all (`paced=False`)."""
    from publisher.app import App
    from publisher.config import load_settings

    app = App(load_settings(Path(folder) / "publisher.toml", environ={}))
    if not paced:
        app.sender.pacer = None
    started = time.perf_counter()
    report = app.send_digests(now=NOW)
    seconds = time.perf_counter() - started
    app.close()
    return {
        "sent": report.sent,
        "failed": report.failed,
        "seconds": seconds,
        "digests": report.digests_rendered,
        "render_ms_per_digest": 1000 * report.render_seconds / max(1, report.digests_rendered),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_baseline(folder: str, port: int, count: int) -> dict[str, float]:
    """Raw aiosmtplib: one prebuilt digest (largest kind) to N addresses, same pool."""
    import aiosmtplib

    sample = next(Path(folder, "preview").glob("*.eml")).read_bytes()

    async def main() -> float:
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=POOL * 4)

        async def produce() -> None:
            for n in range(count):
                await queue.put(n)
            for _ in range(POOL):
                await queue.put(None)

        async def work() -> None:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
            await smtp.connect()
            while (n := await queue.get()) is not None:
                await smtp.sendmail("news@localhost", [f"reader{n:06}@example.com"], sample)
            await smtp.quit()

        started = time.perf_counter()
        await asyncio.gather(produce(), *(work() for _ in range(POOL)))
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    return {
        "sent": count,
        "seconds": seconds,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child(*args: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


# -- the driver --------------------------------------------------------------------------


def bench_dkim(count: int, port: int) -> list[tuple[str, str, str]]:
    """Unsigned, RSA-signed and Ed25519-signed sends of the same database, each against
    the raw client in the same run."""
    rates: dict[str, list[float]] = {"none": [], "rsa": [], "ed25519": [], "raw": []}
    sample_dir = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    sign_ms: dict[str, dict[str, float]] = {}
    try:
        for run in range(RUNS):
            for kind in ("none", "rsa", "ed25519"):
                folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
                try:
                    _config(folder, port, "" if kind == "none" else kind)
                    _child("prepare", str(folder), str(count))
                    if not (sample_dir / "preview").exists():
                        _preview(folder, sample_dir)
                    if run == 0 and kind != "none":
                        shutil.copytree(sample_dir / "preview", folder / "preview")
                        sign_ms[kind] = _child("sign", str(folder), kind, "2000")
                    result = _child("publisher", str(folder))
                    assert result["sent"] == count and result["failed"] == 0, result
                    rates[kind].append(result["sent"] / result["seconds"])
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
            raw = _child("baseline", str(sample_dir), str(port), str(count))
            rates["raw"].append(raw["sent"] / raw["seconds"])
            print(
                f"  run {run + 1}: "
                + ", ".join(f"{k} {v[-1]:,.0f} msg/s" for k, v in rates.items()),
                flush=True,
            )
    finally:
        shutil.rmtree(sample_dir, ignore_errors=True)

    def runs(values: list[float]) -> str:
        return "runs: " + ", ".join(f"{v:,.0f}" for v in values)

    def ratio(kind: str, base: str) -> tuple[str, str]:
        per_run = [a / b for a, b in zip(rates[kind], rates[base], strict=True)]
        return f"{statistics.median(per_run):.0%}", ", ".join(f"{r:.0%}" for r in per_run)

    rows = [
        (
            "publisher send unsigned, msg/s",
            f"{statistics.median(rates['none']):,.0f}",
            runs(rates["none"]),
        )
    ]
    for kind, label in (("rsa", "RSA-2048"), ("ed25519", "Ed25519")):
        rows.append(
            (
                f"publisher send DKIM {label}, msg/s",
                f"{statistics.median(rates[kind]):,.0f}",
                runs(rates[kind]),
            )
        )
        median, each = ratio(kind, "raw")
        rows.append((f"DKIM {label} / raw baseline", median, f"target >= 60 %; per run: {each}"))
        median, each = ratio(kind, "none")
        rows.append((f"DKIM {label} / unsigned send", median, f"per run: {each}"))
        rows.append(
            (
                f"DKIM {label} signing alone, per message",
                f"{sign_ms[kind]['ms']:.2f} ms",
                "CPU time, largest digest, 2,000 signatures",
            )
        )
    rows.append(
        (
            "of which the body hash (bh=), per message",
            f"{sign_ms['rsa']['body_ms']:.3f} ms",
            f"SHA-256 of the largest digest's {sign_ms['rsa']['body_bytes']:,.0f}-byte body",
        )
    )
    rows.append(
        (
            "raw aiosmtplib baseline, msg/s",
            f"{statistics.median(rates['raw']):,.0f}",
            runs(rates["raw"]),
        )
    )
    return rows


def _preview(folder: Path, sample_dir: Path) -> float:
    """The largest digest of a dry run, as the raw client's message; returns the seconds
    the dry run took."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "publisher",
            "--config",
            str(folder / "publisher.toml"),
            "send",
            "--dry-run",
            "--out",
            str(folder / "preview"),
            "--now",
            NOW.isoformat(),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    biggest = max((folder / "preview").glob("*.eml"), key=lambda p: p.stat().st_size)
    (sample_dir / "preview").mkdir()
    shutil.copy(biggest, sample_dir / "preview" / biggest.name)
    shutil.rmtree(folder / "preview")
    return seconds


def bench(count: int, port: int) -> list[tuple[str, str, str]]:
    ours: list[dict[str, float]] = []
    unpaced: list[dict[str, float]] = []
    raw: list[dict[str, float]] = []
    preview_ms = 0.0
    for run in range(RUNS):
        folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
        try:
            _config(folder, port)
            _child("prepare", str(folder), str(count))
            if run == 0:  # a sample message for the baseline: a dry run of the same database
                sample_dir = Path(tempfile.mkdtemp(prefix="bench-sample-"))
                preview_ms = 1000 * _preview(folder, sample_dir) / count
            ours.append(_child("publisher", str(folder)))
            # the same rows again, sent once more by a run with no pacer: a fresh database
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            _config(folder, port)
            _child("prepare", str(folder), str(count))
            unpaced.append(_child("unpaced", str(folder)))
            raw.append(_child("baseline", str(sample_dir), str(port), str(count)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"  run {run + 1}: publisher {ours[-1]['sent'] / ours[-1]['seconds']:.0f} msg/s, "
            f"no pacer {unpaced[-1]['sent'] / unpaced[-1]['seconds']:.0f} msg/s, "
            f"raw {raw[-1]['sent'] / raw[-1]['seconds']:.0f} msg/s",
            flush=True,
        )
    shutil.rmtree(sample_dir, ignore_errors=True)
    assert all(r["sent"] == count and r["failed"] == 0 for r in ours), ours
    rate = [r["sent"] / r["seconds"] for r in ours]
    base = [r["sent"] / r["seconds"] for r in raw]
    ratios = [a / b for a, b in zip(rate, base, strict=True)]
    off = [r["sent"] / r["seconds"] for r in unpaced]
    paced_ratios = [a / b for a, b in zip(rate, off, strict=True)]
    return [
        (
            "publisher send, msg/s",
            f"{statistics.median(rate):,.0f}",
            "runs: " + ", ".join(f"{r:,.0f}" for r in rate),
        ),
        (
            "raw aiosmtplib baseline, msg/s",
            f"{statistics.median(base):,.0f}",
            "runs: " + ", ".join(f"{r:,.0f}" for r in base),
        ),
        (
            "publisher / baseline",
            f"{statistics.median(ratios):.0%}",
            "target >= 70 %; per run: " + ", ".join(f"{r:.0%}" for r in ratios),
        ),
        (
            "publisher send with no pacer, msg/s",
            f"{statistics.median(off):,.0f}",
            "runs: " + ", ".join(f"{r:,.0f}" for r in off),
        ),
        (
            "pacing on (default groups, all unlimited) / no pacer",
            f"{statistics.median(paced_ratios):.0%}",
            "per run: " + ", ".join(f"{r:.0%}" for r in paced_ratios),
        ),
        (
            "render + inline per distinct digest",
            f"{statistics.median(r['render_ms_per_digest'] for r in ours):.2f} ms",
            f"{int(ours[0]['digests'])} distinct digests for {count:,} subscribers",
        ),
        (
            "peak RSS, publisher send",
            f"{max(r['rss_mb'] for r in ours):.0f} MB",
            "target < 300 MB at 100k",
        ),
        ("peak RSS, raw baseline", f"{max(r['rss_mb'] for r in raw):.0f} MB", ""),
        (
            "dry run (build + write .eml), per message",
            f"{preview_ms:.2f} ms",
            "one run, CLI incl. start-up",
        ),
    ]


def main(sizes: list[int], write: bool = True, dkim: bool = False) -> None:
    port_file = Path(tempfile.mkdtemp()) / "port"
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file)])
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            assert time.monotonic() < deadline, "sink did not start"
            time.sleep(0.05)
        port = int(port_file.read_text())
        sections = []
        for count in sizes:
            print(f"send bench: {count:,} subscribers, pool {POOL}, {RUNS} runs", flush=True)
            rows = bench_dkim(count, port) if dkim else bench(count, port)
            width = max(len(r[0]) for r in rows)
            head = (
                f"\n## send{' with DKIM' if dkim else ''} — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {count:,} subscribers, "
                f"pool {POOL}, median of {RUNS}, Python {platform.python_version()} on "
                f"{platform.machine()} ({os.cpu_count()} CPUs), raw asyncio sink in its own process\n\n"
                f"| {'measure':<{width}} | result | notes |\n|{'-' * (width + 2)}|--------|-------|\n"
            )
            body = "".join(f"| {a:<{width}} | {b} | {c} |\n" for a, b, c in rows)
            print(head + body, flush=True)
            sections.append(head + body)
        if write:
            with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as out:
                out.write("".join(sections))
    finally:
        sink.terminate()
        sink.wait(5)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        run_sink(sys.argv[2])
    elif sys.argv[1:2] == ["--child"]:
        kind, *rest = sys.argv[2:]
        if kind == "prepare":
            result = child_prepare(rest[0], int(rest[1]))
        elif kind == "publisher":
            result = child_publisher(rest[0])
        elif kind == "unpaced":
            result = child_publisher(rest[0], paced=False)
        elif kind == "sign":
            result = child_sign_cost(rest[0], rest[1], int(rest[2]))
        else:
            result = child_baseline(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(result))
    else:
        args = [a for a in sys.argv[1:] if a not in ("--no-write", "--dkim")]
        main(
            [int(a) for a in args] or [10_000],
            write="--no-write" not in sys.argv,
            dkim="--dkim" in sys.argv,
        )
