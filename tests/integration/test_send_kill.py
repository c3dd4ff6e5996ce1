"""SIGKILL a real `publisher send` mid-run, re-run: everyone gets one message, none two —
except a message in flight at the kill, whose repeat carries the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import ROOT, SEEDS
from tests.resumed_send import by_recipient, resume_send
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
PEOPLE = 200
POOL = 4


def _prepare(tmp_path: Path, sqlite_url: str, sink: SmtpSink) -> Path:
    config = send_config(tmp_path, sqlite_url, sink, pool_size=POOL)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    people = tmp_path / "people.csv"
    rows = [
        f"reader{n:03}@example.com,Reader {n},,{'daily' if n % 3 else 'weekly'}"
        for n in range(PEOPLE)
    ]
    people.write_text("email,name,categories,frequency\n" + "\n".join(rows) + "\n")
    assert app.import_subscribers(people).added == PEOPLE
    app.close()
    return config


def _send(config: Path, timeout: float = 60) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "publisher",
            "--config",
            str(config),
            "send",
            "--now",
            NOW.isoformat(),
        ],
        cwd=ROOT,
        env={**os.environ, "PUBLISHER_CONFIG": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize(
    ("hook", "after"),
    [("mail", 0), ("data", 37), ("mail", 101), ("data", 180)],
    ids=["before-first-message", "in-data-early", "at-mail-middle", "in-data-late"],
)
def test_kill_9_mid_run_then_rerun_sends_everyone_exactly_once(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink, hook: str, after: int
) -> None:
    config = _prepare(tmp_path, sqlite_url, smtp_sink)
    process = _send(config)
    killed: list[int] = []

    def kill() -> None:
        if not killed and len(smtp_sink.messages) >= after:
            killed.append(len(smtp_sink.messages))
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)  # the kill lands while this SMTP command is in flight

    if hook == "mail":
        smtp_sink.on_mail = kill
    else:
        smtp_sink.on_data = lambda _received: kill()
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, process.stderr.read() if process.stderr else ""
    assert killed and killed[0] < PEOPLE
    smtp_sink.on_mail = smtp_sink.on_data = None

    resume_send(config, NOW)
    copies_of = by_recipient(smtp_sink)
    assert set(copies_of) == {f"reader{n:03}@example.com" for n in range(PEOPLE)}
    repeated = {r: m for r, m in copies_of.items() if len(m) > 1}
    for recipient, copies in repeated.items():
        assert len(copies) == 2, recipient
        assert len({c.message["Message-ID"] for c in copies}) == 1, recipient
    # only messages in flight at the kill may repeat: at most one per connection
    assert len(repeated) <= POOL, sorted(repeated)

    if after != 180:
        return
    # and a third run has nothing left to do
    third = _send(config)
    third.communicate(timeout=60)
    assert len(smtp_sink.messages) == PEOPLE + len(repeated)
