"""The scheduled path inside `publisher run`: the weekly job fires at 08:00 local time and
the digest goes through the real mailer into the embedded SMTP sink, in one process."""

from __future__ import annotations

import asyncio
import email
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine

from publisher.app import App
from publisher.config import load_settings
from publisher.runner import RunOptions, run
from publisher.schedule import stored_jobs
from tests.conftest import SEEDS, write_config
from tests.dns_server import LocalDns
from tests.integration.test_run import free_port
from tests.smtp_sink import SmtpSink

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_weekly_job_sends_through_the_sink_at_eight_local_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'data' / 'publisher.db'}",
        seeds_dir=f'"{SEEDS}"',
        mailbox_dir='"mailbox"',
        smtp=f'{{ host = "127.0.0.1", port = {free_port()} }}',
        schedule='{ weekly_day = "mon", weekly_time = "08:00", daily_time = "" }',
    )
    settings = load_settings(config, environ={})
    app = App(settings)
    subscribers = ["ada@example.org", "bo@example.org"]
    for address in subscribers:
        app.add_subscriber(address)
    mailbox = settings.mailbox_dir

    async def scenario() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run(app, stop, RunOptions(port=free_port(), smtp_debug=True), ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 20)
        assert list(mailbox.glob("*.eml")) == []  # 07:59:5x: nothing yet
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        # the run logged that it is finished (every message it sent was saved before the
        # sink said 250) and the job moved on to next week: nothing more can land
        while not (_finished(caplog) and _moved_on(app)):
            assert loop.time() < deadline, caplog.text
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 30)

    _run_on_monday_morning(scenario, caplog, app)

    messages = [
        email.message_from_bytes(p.read_bytes(), policy=default) for p in mailbox.glob("*.eml")
    ]
    assert sorted(str(m["Delivered-To"]) for m in messages) == subscribers
    assert all("Harbin" in str(m["Subject"]) for m in messages)
    started = [r for r in caplog.records if r.getMessage().startswith("digest run started")]
    finished = [r for r in caplog.records if r.getMessage().startswith("digest run finished")]
    assert [r.getMessage() for r in started] == [
        "digest run started: weekly (due 2024-06-03T08:00:00+08:00)"
    ]
    assert len(finished) == 1 and "sent 2" in finished[0].getMessage()


def _finished(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.getMessage().startswith("digest run finished") for r in caplog.records)


def _moved_on(app: App) -> bool:
    [weekly] = stored_jobs(app.store.engine)
    return weekly.next_run == datetime(2024, 6, 10, 8, tzinfo=SHANGHAI)


@pytest.mark.parametrize("skip", [False, True], ids=["doctor-fails", "skip-configured"])
def test_a_scheduled_send_refuses_while_doctor_fails_and_run_keeps_going(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    smtp_sink: SmtpSink,
    local_dns: LocalDns,
    skip: bool,
) -> None:
    """A real relay and a real From domain with an empty zone: doctor fails (no SPF, DKIM,
    DMARC), so the 08:00 job sends nothing, says why in one line, and `run` stays up;
    doctor.skip_scheduled = true sends as `send --skip-doctor` would."""
    domain = "news.harbin-daily.net"
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'data' / 'publisher.db'}",
        seeds_dir=f'"{SEEDS}"',
        smtp=(
            f'{{ host = "127.0.0.1", port = {smtp_sink.port}, '
            f'from_address = "Harbin Daily <editor@{domain}>", backoff_seconds = 0.01 }}'
        ),
        digest=f'{{ list_id = "digest.{domain}" }}',
        doctor=(
            f'{{ nameservers = "127.0.0.1", port = {local_dns.port}, timeout_seconds = 5, '
            f"skip_scheduled = {'true' if skip else 'false'} }}"
        ),
        schedule='{ weekly_day = "mon", weekly_time = "08:00", daily_time = "" }',
    )
    app = App(load_settings(config, environ={}))
    subscribers = ["ada@example.org", "bo@example.org"]
    for address in subscribers:
        app.add_subscriber(address)
    refused = "scheduled weekly digest not sent: `publisher doctor` has"
    done: Callable[[], bool] = (
        (lambda: _finished(caplog)) if skip else (lambda: _logged(caplog, refused))
    )

    async def scenario() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(app, stop, RunOptions(port=free_port()), ready=ready))
        await asyncio.wait_for(ready.wait(), 20)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not (done() and _moved_on(app)):
            assert loop.time() < deadline, caplog.text
            assert not task.done(), caplog.text
            await asyncio.sleep(0.1)
        assert not task.done()  # `run` is still up: web, watcher and the next job
        stop.set()
        await asyncio.wait_for(task, 30)

    _run_on_monday_morning(scenario, caplog, app)
    if skip:
        assert sorted(smtp_sink.per_recipient()) == subscribers
        assert not _logged(caplog, refused)
        return
    [line] = [r for r in caplog.records if r.getMessage().startswith(refused)]
    assert line.levelname == "ERROR"
    assert "failing check(s)" in line.getMessage() and "doctor.skip_scheduled" in line.getMessage()
    assert not _logged(caplog, "digest run started")
    assert smtp_sink.messages == [] and smtp_sink.connections == 0


def _logged(caplog: pytest.LogCaptureFixture, start: str) -> bool:
    return any(r.getMessage().startswith(start) for r in caplog.records)


def _run_on_monday_morning(
    scenario: Callable[[], Coroutine[Any, Any, None]],
    caplog: pytest.LogCaptureFixture,
    app: App,
) -> None:
    """Run `scenario` on a Monday, 5 s before the job (`run` has that long to start before it
    may fire), with the publisher's log records in `caplog`; close `app` after."""
    monday_morning = datetime(2024, 6, 3, 7, 59, 55, tzinfo=SHANGHAI)
    # attach to our logger itself, and only there: the CLI's log setup (an earlier test's)
    # stops propagation to the root, and a record must not be counted twice when it does not
    logger = logging.getLogger("publisher")
    propagate = logger.propagate
    logger.addHandler(caplog.handler)
    logger.propagate = False
    try:
        with (
            caplog.at_level("INFO", logger="publisher"),
            time_machine.travel(monday_morning, tick=True),
        ):
            asyncio.run(scenario())
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate
        app.close()
