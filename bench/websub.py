"""Benchmark: inbox -> WebSub delivery latency of a running `publisher run`.

Usage: python bench/websub.py [--repeat 10]

A real subscriber on 127.0.0.1 (tests/integration/websub_peer.py) subscribes to the
built-in hub; then, --repeat times, one new article file lands in the inbox and the
clock runs until the subscriber has the new Atom. Baseline from the same run: file
landing -> the new article served in atom.xml (what a polling reader could see at
best). Prints a table and appends it to bench/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app import App
from publisher.config import load_settings
from publisher.runner import RunOptions, run
from tests.conftest import SEEDS, write_config
from tests.integration.test_run import free_port
from tests.integration.websub_peer import Peer, websub_peer

ARTICLE = """Home>Harbin Today

Harbin bench story number {n} on the river

Updated : 2024-06-25

By Li Wei ( harbin.gov.cn )

Paragraph one of bench story {n}, long enough to be an ordinary lede for a reader.

Paragraph two of bench story {n}.
"""


async def _measure(folder: Path, peer: Peer, repeat: int) -> tuple[list[float], list[float]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    config = write_config(folder, f"sqlite:///{folder / 'publisher.db'}", seeds_dir=f'"{SEEDS}"')
    with config.open("a", encoding="utf-8") as out:
        out.write("\n[websub]\nbuiltin = true\nallow_private_callbacks = true\n")
    settings = load_settings(config, environ={"PUBLISHER_BASE_URL": base})
    app = App(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(app, stop, RunOptions(port=port, send=False), ready=ready))
    pushed: list[float] = []
    served: list[float] = []
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                base + "websub",
                data={
                    "hub.mode": "subscribe",
                    "hub.topic": base + "atom.xml",
                    "hub.callback": peer.url + "/callback",
                    "hub.secret": "bench",
                },
            )
            assert answer.status_code == 202, answer.text
            await asyncio.to_thread(
                peer.wait, lambda: bool(peer.seen("GET", "/callback")), 10, "the intent check"
            )
            await asyncio.sleep(0.5)  # the subscription is stored right after the echo
            for n in range(repeat):
                marker = f"bench story number {n} ".encode()
                landed = time.monotonic()
                (settings.inbox / f"bench-{n}.txt").write_text(ARTICLE.format(n=n), "utf-8")
                seen_in_feed: float | None = None
                while True:
                    if seen_in_feed is None:
                        feed = await client.get(base + "atom.xml")
                        if marker in feed.content:
                            seen_in_feed = time.monotonic() - landed
                    if any(marker in r.body for r in peer.seen("POST", "/callback")):
                        pushed.append(time.monotonic() - landed)
                        break
                    if time.monotonic() - landed > 30:
                        raise SystemExit(f"story {n}: no delivery within 30 s")
                    await asyncio.sleep(0.01)
                while seen_in_feed is None:
                    feed = await client.get(base + "atom.xml")
                    if marker in feed.content:
                        seen_in_feed = time.monotonic() - landed
                served.append(seen_in_feed)
                await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        app.close()
    return pushed, served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, websub_peer() as peer:
        pushed, served = asyncio.run(_measure(Path(folder), peer, args.repeat))
    ms = [round(s * 1000) for s in pushed]
    base_ms = [round(s * 1000) for s in served]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        [
            f"## websub — {stamp}, {args.repeat} new articles, Python "
            f"{platform.python_version()} on {platform.machine()}",
            "",
            "| measure | result | notes |",
            "|---|---|---|",
            f"| inbox -> WebSub delivery (built-in hub), median | "
            f"{statistics.median(ms)} ms | runs: {', '.join(map(str, ms))} ms; target < 2 s |",
            f"| inbox -> atom.xml served (baseline), median | {statistics.median(base_ms)} ms "
            f"| runs: {', '.join(map(str, base_ms))} ms |",
            "",
        ]
    )
    print(table)
    with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as handle:
        handle.write("\n" + table)


if __name__ == "__main__":
    main()
