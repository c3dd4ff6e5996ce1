"""A digest send killed mid-run and resumed later: `publisher send` in a child process
whose clock reads a chosen instant (tests.clock_shift), SIGKILLed while the sink takes a
DATA, then run again so the next schedule resumes the open run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from tests.conftest import ROOT
from tests.smtp_sink import Received, SmtpSink

__all__ = ["by_recipient", "date_of", "kill_mid_send", "resume_send", "send_at"]


def date_of(received: Received) -> datetime:
    return parsedate_to_datetime(str(received.message["Date"]))


def send_at(config: Path, instant: datetime) -> subprocess.Popen[bytes]:
    """`publisher send --now instant` in a process whose clock reads `instant`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.clock_shift",
            instant.isoformat(),
            "--config",
            str(config),
            "send",
            "--now",
            instant.isoformat(),
        ],
        cwd=ROOT,
        env={**os.environ, "PUBLISHER_CONFIG": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_mid_send(config: Path, sink: SmtpSink, instant: datetime, after: int) -> str:
    """Send at `instant` and SIGKILL the sender while the sink takes the DATA that makes
    `after` messages; the recipient of that message (in flight at the kill)."""
    first = send_at(config, instant)
    killed: list[str] = []

    def kill(received: Received) -> None:
        if not killed and len(sink.messages) >= after:
            killed.append(received.rcpt_tos[0])
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)  # the kill lands while this DATA is in flight

    sink.on_data = kill
    try:
        first.wait(timeout=60)
    finally:
        sink.on_data = None
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    [in_flight] = killed
    return in_flight


def resume_send(config: Path, instant: datetime) -> None:
    """Send again at `instant`: it must resume the unfinished run and exit 0."""
    rerun = send_at(config, instant)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    assert b"resumed unfinished run" in out


def by_recipient(sink: SmtpSink) -> dict[str, list[Received]]:
    """Every message the sink took, grouped by its (first) recipient, in arrival order."""
    copies: dict[str, list[Received]] = defaultdict(list)
    for received in sink.messages:
        copies[received.rcpt_tos[0]].append(received)
    return copies
