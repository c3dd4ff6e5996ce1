"""Senders that overlap: `publisher run` firing its weekly job while two bare `publisher
send` and one `send --frequency weekly` start in the same second, against a slow SMTP
server. Every subscriber gets exactly one message, on SQLite and on PostgreSQL; with the
sender holding the rows killed mid-run, the only repeat is a message in flight at the
kill, with the same Message-ID."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import ROOT, SEEDS
from tests.integration.test_run import free_port
from tests.smtp_sink import Received, SmtpSink, send_config

PEOPLE = 300
POOL = 4


def _prepare(tmp_path: Path, database_url: str, sink: SmtpSink) -> tuple[Path, datetime]:
    """Seeds ingested, PEOPLE subscribers; a weekly job due a few seconds from a clock
    moved to just before the next minute (the scheduler has minute resolution)."""
    config = send_config(tmp_path, database_url, sink, pool_size=POOL)
    settings = load_settings(config, environ={})
    now = datetime.now(settings.zone)
    fire = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[schedule]\nweekly_day = "{fire.strftime("%a").lower()}"\n'
            f'weekly_time = "{fire.strftime("%H:%M")}"\ndaily_time = ""\n'
            # on PostgreSQL the killed sender's claimed rows come free when its lease ends
            "\n[workers]\nlease_seconds = 6\n"
        )
    app = App(load_settings(config, environ={}))
    (tmp_path / "inbox").mkdir(exist_ok=True)
    app.ingest([SEEDS])
    people = tmp_path / "people.csv"
    rows = [
        f"reader{n:03}@example.com,Reader {n},,{'weekly' if n % 2 else 'daily'}"
        for n in range(PEOPLE)
    ]
    people.write_text("email,name,categories,frequency\n" + "\n".join(rows) + "\n")
    assert app.import_subscribers(people).added == PEOPLE
    app.close()
    return config, fire - timedelta(seconds=3)


def _publisher(config: Path, *args: str, clock: datetime | None = None) -> subprocess.Popen[str]:
    shift = ["-m", "tests.clock_shift", clock.isoformat()] if clock else ["-m", "publisher"]
    return subprocess.Popen(
        [sys.executable, *shift, "--config", str(config), *args],
        cwd=ROOT,
        env={**os.environ, "PUBLISHER_CONFIG": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(stream: object) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def _wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no line with {text!r} in {seen}")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _by_recipient(sink: SmtpSink) -> dict[str, list[Received]]:
    found: dict[str, list[Received]] = defaultdict(list)
    for received in sink.messages:
        found[received.rcpt_tos[0]].append(received)
    return found


@pytest.mark.parametrize("kill_the_scheduler", [False, True], ids=["all-finish", "kill-9-mid-run"])
def test_overlapping_run_and_sends_mail_each_subscriber_once(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink, kill_the_scheduler: bool
) -> None:
    config, clock = _prepare(tmp_path, database_url, smtp_sink)
    killed: list[int] = []
    runner = _publisher(config, "run", "--port", str(free_port()), clock=clock)
    runner_log = _lines(runner.stderr)

    def slow(_received: Received) -> None:
        time.sleep(0.01)  # a slow relay: the senders overlap for seconds
        if kill_the_scheduler and not killed and len(smtp_sink.messages) >= 100:
            killed.append(len(smtp_sink.messages))
            os.kill(runner.pid, signal.SIGKILL)  # while this message is in flight

    smtp_sink.on_data = slow
    senders: list[subprocess.Popen[str]] = []
    try:
        _wait_for_line(runner_log, "digest run started: weekly")
        if kill_the_scheduler:  # the scheduler's job must be the one holding the rows
            smtp_sink.wait_for(1, timeout=30)
        senders = [
            _publisher(config, "send"),
            _publisher(config, "send"),
            _publisher(config, "send", "--frequency", "weekly"),
        ]
        results = [sender.communicate(timeout=120) for sender in senders]
        for sender, (out, err) in zip(senders, results, strict=True):
            assert sender.returncode == 0, out + err
            assert "Traceback" not in err
        if not kill_the_scheduler:
            _wait_for_line(runner_log, "digest run finished: weekly")
    finally:
        for process in [runner, *senders]:
            _stop(process)

    by_recipient = _by_recipient(smtp_sink)
    assert set(by_recipient) == {f"reader{n:03}@example.com" for n in range(PEOPLE)}
    repeated = {r: copies for r, copies in by_recipient.items() if len(copies) > 1}
    if not kill_the_scheduler:
        assert repeated == {}
        return
    assert killed and killed[0] < PEOPLE
    assert runner.returncode == -signal.SIGKILL
    for recipient, copies in repeated.items():
        assert len(copies) == 2, recipient
        assert len({c.message["Message-ID"] for c in copies}) == 1, recipient
    assert len(repeated) <= POOL, sorted(repeated)  # at most one in flight per connection
