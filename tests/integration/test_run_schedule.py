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
        deadline = loop.time() + 15
        while len(list(mailbox.glob("*.eml"))) < len(subscribers) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # a duplicate would land here
        stop.set()
        await asyncio.wait_for(task, 5)

    monday_morning = datetime(2024, 6, 3, 7, 59, 57, tzinfo=SHANGHAI)  # a Monday
    # attach to our logger itself: the CLI's log setup stops propagation to the root
    logging.getLogger("publisher").addHandler(caplog.handler)
    try:
        with (
            caplog.at_level("INFO", logger="publisher"),
            time_machine.travel(monday_morning, tick=True),
        ):
            asyncio.run(scenario())
    finally:
        logging.getLogger("publisher").removeHandler(caplog.handler)
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
