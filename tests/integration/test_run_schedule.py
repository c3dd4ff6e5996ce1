"""The scheduled path inside `publisher run`: the weekly job fires at 08:00 local time and
the digest goes through the real mailer into the embedded SMTP sink, in one process."""

from __future__ import annotations

import asyncio
import email
import logging
from datetime import datetime
from email.policy import default
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from publisher.app import App
from publisher.config import load_settings
from publisher.runner import RunOptions, run
from publisher.schedule import stored_jobs
from tests.conftest import SEEDS, write_config
from tests.integration.test_run import free_port

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

    # a Monday, 5 s before the job: `run` has that long to start before it may fire
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
