"""Benchmark: bounces acted on per second, through `publisher inbound` and through the
`[inbound]` listener of `publisher run` (the bounce storm after a big send).

Usage: python bench/inbound.py [--bounces 2000] [--connections 4] [--cli 20]

A fresh SQLite project with --bounces subscribers, one Postfix hard-bounce DSN (the
tests/data/inbound fixture, with a real VERP token) for each. Measured in one run:
- `publisher inbound FILE`, one process per bounce (as an MTA pipe transport runs it), for
  --cli bounces;
- the use case alone (`InboundMail.receive` in this process: no process start, no SMTP),
  the baseline of both, and its two halves: the pure classifier and the consent API's
  `suppress` (one transaction each);
- the batch path: `InboundMail.receive_many` and `SubscriberAdmin.record_feedback` with
  --batch messages per call (one transaction each call);
- the listener of a real `publisher run`: --connections SMTP sessions, each sending its
  share one message after another, timed until the last 250 (each 250 is a commit);
- the same client against a bare aiosmtpd server that accepts and discards: the SMTP
  ceiling of this machine.
Prints the figures and appends them to bench/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app import App
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.tokens import Tokens

RESULTS = ROOT / "bench" / "results.md"
FIXTURE = ROOT / "tests" / "data" / "inbound" / "postfix-hard.eml"
SECRET = "bench-secret-key-for-signing-links-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def project(folder: Path, listener_port: int) -> Path:
    config = folder / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder / "data" / "publisher.db"}"\n'
        'inbox = "inbox"\noutput_dir = "public"\n'
        f'secret_key = "{SECRET}"\nseeds_dir = "{ROOT / "seeds"}"\n'
        '[smtp]\nhost = "127.0.0.1"\nport = 1\n'
        'from_address = "Harbin News <news@news.example.org>"\n'
        'bounce_address = "bounces@news.example.org"\n'
        f"[inbound]\nport = {listener_port}\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


def subscribers(config: Path, count: int) -> dict[str, int]:
    csv = config.parent / "people.csv"
    rows = "".join(f"user{n}@example.net,User {n},,weekly\n" for n in range(count))
    csv.write_text("email,name,categories,frequency\n" + rows, encoding="utf-8")
    app = App(load_settings(config, environ={}))
    try:
        app.import_subscribers(csv)
        return {s.email: s.id for s in app.subscribers()}
    finally:
        app.close()


def bounces(people: dict[str, int]) -> list[tuple[str, bytes]]:
    tokens = Tokens(SECRET)
    template = FIXTURE.read_text(encoding="utf-8").replace("\n", "\r\n")
    return [
        (
            email,
            template.replace("@@VERP@@", tokens.bounce(sid, n + 1))
            .replace("ann@example.net", email)
            .encode("utf-8"),
        )
        for n, (email, sid) in enumerate(sorted(people.items()))
    ]


def bounced(config: Path) -> int:
    app = App(load_settings(config, environ={}))
    try:
        return sum(s.status is SubscriberStatus.BOUNCED for s in app.subscribers())
    finally:
        app.close()


def through_cli(config: Path, items: list[tuple[str, bytes]]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PUBLISHER_CONFIG"] = str(config)
    started = time.perf_counter()
    for _, data in items:
        subprocess.run(
            [sys.executable, "-m", "publisher", "inbound"],
            input=data,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return len(items) / (time.perf_counter() - started)


def in_process(config: Path, items: list[tuple[str, bytes]]) -> float:
    app = App(load_settings(config, environ={}))
    try:
        inbound = app.inbound
        started = time.perf_counter()
        for _, data in items:
            if not inbound.receive(data).handled:
                raise SystemExit("a bounce was not matched")
        return len(items) / (time.perf_counter() - started)
    finally:
        app.close()


def in_batches(config: Path, items: list[tuple[str, bytes]], size: int) -> float:
    app = App(load_settings(config, environ={}))
    try:
        inbound = app.inbound
        started = time.perf_counter()
        for start in range(0, len(items), size):
            outcomes = inbound.receive_many([data for _, data in items[start : start + size]])
            if not all(outcome.handled for outcome in outcomes):
                raise SystemExit("a bounce was not matched")
        return len(items) / (time.perf_counter() - started)
    finally:
        app.close()


def feedback_batches(config: Path, items: list[tuple[str, bytes]], size: int) -> float:
    """The consent API's batch path alone: hard bounces, --batch per transaction."""
    from publisher.model import ConsentKind, ConsentSource
    from publisher.subscribers import Feedback

    app = App(load_settings(config, environ={}))
    try:
        admin = app.subscriber_admin
        reports = [
            Feedback(email, ConsentKind.BOUNCED, ConsentSource.INBOUND, "b") for email, _ in items
        ]
        started = time.perf_counter()
        for start in range(0, len(reports), size):
            admin.record_feedback(reports[start : start + size])
        return len(items) / (time.perf_counter() - started)
    finally:
        app.close()


def parts(config: Path, items: list[tuple[str, bytes]]) -> tuple[float, float]:
    """Rates of the two halves of the use case: bounces.classify alone (pure), and the
    consent API's suppress alone (one transaction each), on addresses not yet bounced."""
    from publisher.bounces import classify
    from publisher.model import ConsentKind, ConsentSource

    app = App(load_settings(config, environ={}))
    try:
        inbound = app.inbound
        started = time.perf_counter()
        for _, data in items:
            classify(data, tokens=inbound.tokens, mailboxes=inbound.mailboxes)
        classify_rate = len(items) / (time.perf_counter() - started)
        admin = app.subscriber_admin
        started = time.perf_counter()
        for email, _ in items:
            admin.suppress(email, ConsentKind.BOUNCED, source=ConsentSource.INBOUND, detail="b")
        return classify_rate, len(items) / (time.perf_counter() - started)
    finally:
        app.close()


def smtp_storm(port: int, items: list[tuple[str, bytes]], connections: int) -> float:
    lanes = [items[n::connections] for n in range(connections)]
    failures: list[BaseException] = []

    def lane(share: list[tuple[str, bytes]]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                for _, data in share:
                    client.sendmail("", ["bounces@news.example.org"], data)
        except BaseException as exc:  # reported after the run
            failures.append(exc)

    threads = [threading.Thread(target=lane, args=(share,)) for share in lanes]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"SMTP client failed: {failures[0]!r}")
    return len(items) / seconds


class _Discard:
    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def baseline_sink() -> tuple[int, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    server = asyncio.run_coroutine_threadsafe(
        loop.create_server(lambda: SMTPServer(_Discard()), "127.0.0.1", 0), loop
    ).result(timeout=5)
    return int(server.sockets[0].getsockname()[1]), loop


def run_listener(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PUBLISHER_CONFIG"] = str(config)
    log = (config.parent / "run.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "run", "--no-send", "--port", str(free_port())],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return process


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("publisher run exited")
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the listener did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounces", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--cli", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100, help="messages per batch call")
    parser.add_argument("--no-append", action="store_true", help="leave results.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        config = project(Path(folder), port)
        people = subscribers(config, 5 * args.bounces + args.cli)
        items = bounces(people)
        storm = items[: args.bounces]
        alone = items[args.bounces : 2 * args.bounces]
        halves = items[2 * args.bounces : 3 * args.bounces]
        batched = items[3 * args.bounces : 4 * args.bounces]
        api_batched = items[4 * args.bounces : 5 * args.bounces]
        cli_items = items[5 * args.bounces :]

        cli_rate = through_cli(config, cli_items)
        alone_rate = in_process(config, alone)
        classify_rate, suppress_rate = parts(config, halves)
        batch_rate = in_batches(config, batched, args.batch)
        api_batch_rate = feedback_batches(config, api_batched, args.batch)

        process = run_listener(config)
        try:
            wait_listening(port, process)
            listener_rate = smtp_storm(port, storm, args.connections)
        finally:
            process.kill()
            process.wait()
        acted = bounced(config)
        expected = args.bounces * 5 + args.cli
        if acted != expected:
            raise SystemExit(f"{acted} bounced, {expected} expected")

        sink_port, _ = baseline_sink()
        sink_rate = smtp_storm(sink_port, storm, args.connections)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"## inbound — {when}, {args.bounces} bounces, {args.connections} SMTP connections, "
        f"SQLite, Python {platform.python_version()} on {platform.machine()} "
        f"({os.cpu_count()} CPUs), load {os.getloadavg()[0]:.1f}"
    )
    rows = [
        ("listener of `publisher run`, bounces/s", f"{listener_rate:.0f}", "target >= 500/s"),
        ("bare aiosmtpd sink (SMTP ceiling), msg/s", f"{sink_rate:.0f}", "baseline"),
        ("use case alone (InboundMail.receive), /s", f"{alone_rate:.0f}", "baseline"),
        ("  of which bounces.classify alone, /s", f"{classify_rate:.0f}", "pure core"),
        (
            "  of which consent API suppress alone, /s",
            f"{suppress_rate:.0f}",
            "SubscriberAdmin.suppress, one transaction each",
        ),
        (
            f"use case in batches (InboundMail.receive_many, {args.batch} a call), /s",
            f"{batch_rate:.0f}",
            "one transaction a call",
        ),
        (
            f"  consent API batch (record_feedback, {args.batch} a call), /s",
            f"{api_batch_rate:.0f}",
            "one transaction a call",
        ),
        ("`publisher inbound`, one process each, /s", f"{cli_rate:.1f}", f"{args.cli} runs"),
    ]
    table = "\n".join(
        [
            head,
            "",
            "| measure | result | notes |",
            "|---|---|---|",
            *(f"| {m} | {r} | {n} |" for m, r, n in rows),
        ]
    )
    print(table)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
