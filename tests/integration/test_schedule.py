"""Digest jobs on a real APScheduler with its job store in a real SQLite file, under time travel.

time-machine moves the wall clock (what APScheduler reads); asyncio's timers keep real
monotonic time, so "travel to a second before 08:00" fires within a second of real time.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine

from publisher.config import ScheduleSettings, Settings, load_settings
from publisher.schedule import DigestDue, DigestScheduler, job_specs, stored_jobs
from publisher.store import Store
from tests.conftest import write_config

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
# 2024-06-03 is a Monday.
MONDAY = datetime(2024, 6, 3, tzinfo=SHANGHAI)


@pytest.fixture
def base_settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'data' / 'publisher.db'}"
    return load_settings(write_config(tmp_path, url), environ={})


@pytest.fixture
def store(base_settings: Settings) -> Iterator[Store]:
    opened = Store(base_settings.database_url)
    yield opened
    opened.close()


def _settings(base: Settings, *, zone: str = "Asia/Shanghai", **schedule: object) -> Settings:
    return replace(base, timezone=zone, schedule=ScheduleSettings(**schedule))  # type: ignore[arg-type]


class Recorder:
    """The app side of the scheduler: records each due digest and the wall time it ran."""

    def __init__(self) -> None:
        self.fired: list[tuple[DigestDue, datetime]] = []

    async def __call__(self, due: DigestDue) -> None:
        self.fired.append((due, datetime.now(UTC)))


class _Passes(logging.Handler):
    """Counts the scheduler's passes over its job store: APScheduler ends each with one
    debug line saying when it wakes up next (or that it has no jobs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(("Next wakeup is due", "No jobs; waiting")):
            self.count += 1


def _nothing_due(scheduler: DigestScheduler) -> bool:
    """Every job's next run is later than now: whatever was due has been handed on."""
    now = datetime.now(UTC)
    return all(job.next_run is None or job.next_run > now for job in scheduler.jobs())


async def _session(
    settings: Settings, store: Store, *, expect: int, limit: float = 30.0
) -> tuple[Recorder, DigestScheduler]:
    """Start a scheduler; stop it once it has looked at its jobs, `expect` runs fired and
    nothing is due any more (a second firing of the same run would still be due).
    stop() waits for the runs it handed on, so `fired` is complete afterwards."""
    recorder = Recorder()
    scheduler = DigestScheduler(settings, recorder, engine=store.engine)
    passes = _Passes()
    logger = logging.getLogger("apscheduler.scheduler")
    level = logger.level
    logger.addHandler(passes)
    logger.setLevel(logging.DEBUG)
    try:
        await scheduler.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not (passes.count and len(recorder.fired) >= expect and _nothing_due(scheduler)):
            assert loop.time() < deadline, f"fired {len(recorder.fired)} of {expect} in {limit} s"
            await asyncio.sleep(0.05)
        await scheduler.stop()
    finally:
        logger.removeHandler(passes)
        logger.setLevel(level)
    return recorder, scheduler


def _run(settings: Settings, store: Store, at: datetime, expect: int) -> Recorder:
    with time_machine.travel(at, tick=True):
        recorder, _ = asyncio.run(_session(settings, store, expect=expect))
    return recorder


def test_weekly_job_fires_at_the_configured_local_time(
    base_settings: Settings, store: Store
) -> None:
    settings = _settings(base_settings, weekly_day="mon", weekly_time="08:00", daily_time="")
    just_before = MONDAY.replace(hour=7, minute=59, second=59, microsecond=300_000)

    recorder = _run(settings, store, just_before, expect=1)

    assert len(recorder.fired) == 1
    due, ran_at = recorder.fired[0]
    eight = MONDAY.replace(hour=8)
    assert due.frequency == "weekly"
    assert due.scheduled == eight
    # not before 08:00 Shanghai; the session gives up 30 s after it started
    assert eight <= ran_at < eight + timedelta(seconds=30), "fired at 08:00 Shanghai"


def test_weekly_job_does_not_fire_before_its_time(base_settings: Settings, store: Store) -> None:
    settings = _settings(base_settings, weekly_time="08:00", daily_time="")
    recorder = _run(settings, store, MONDAY.replace(hour=7, minute=59, second=50), 0)
    assert recorder.fired == []
    [job] = stored_jobs(store.engine)
    assert job.next_run == MONDAY.replace(hour=8).astimezone(UTC)


def test_run_missed_during_downtime_fires_exactly_once_on_start(
    base_settings: Settings, store: Store
) -> None:
    settings = _settings(base_settings, weekly_time="08:00", daily_time="07:00")
    _run(settings, store, MONDAY.replace(hour=6), expect=0)  # jobs stored, then "down"

    # back at 09:30, 1.5 h after the weekly run and 2.5 h after the daily one
    recorder = _run(settings, store, MONDAY.replace(hour=9, minute=30), expect=2)

    fired = sorted((due.frequency, due.scheduled) for due, _ in recorder.fired)
    assert fired == [("daily", MONDAY.replace(hour=7)), ("weekly", MONDAY.replace(hour=8))]
    jobs = {job.frequency: job.next_run for job in stored_jobs(store.engine)}
    assert jobs["weekly"] == (MONDAY + timedelta(days=7)).replace(hour=8).astimezone(UTC)
    assert jobs["daily"] == (MONDAY + timedelta(days=1)).replace(hour=7).astimezone(UTC)


def test_down_for_three_weeks_still_fires_once(base_settings: Settings, store: Store) -> None:
    settings = _settings(base_settings, weekly_time="08:00", daily_time="07:00")
    _run(settings, store, MONDAY.replace(hour=6), expect=0)

    back = MONDAY + timedelta(weeks=3, hours=8, minutes=30)  # three weeks later, 08:30
    recorder = _run(settings, store, back, expect=2)

    fired = sorted((due.frequency, due.scheduled) for due, _ in recorder.fired)
    # 21 daily and 3 weekly runs were missed: each job fires once, for its latest run
    assert fired == [
        ("daily", (MONDAY + timedelta(weeks=3)).replace(hour=7)),
        ("weekly", (MONDAY + timedelta(weeks=3)).replace(hour=8)),
    ]


def test_a_run_missed_by_more_than_the_grace_time_is_skipped_not_sent_late(
    base_settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        base_settings, weekly_time="08:00", daily_time="", misfire_grace_seconds=3600
    )
    _run(settings, store, MONDAY.replace(hour=6), expect=0)
    # attach to our logger itself: the CLI's log setup stops propagation to the root
    logger = logging.getLogger("publisher.schedule")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level("WARNING", logger="publisher.schedule"):
            recorder = _run(settings, store, MONDAY.replace(hour=10), expect=0)
    finally:
        logger.removeHandler(caplog.handler)
    assert recorder.fired == []
    assert "digest-weekly missed its run" in caplog.text
    [job] = stored_jobs(store.engine)
    assert job.next_run == (MONDAY + timedelta(days=7)).replace(hour=8).astimezone(UTC)


def test_changed_config_replaces_jobs_instead_of_adding_them(
    base_settings: Settings, store: Store, tmp_path: Path
) -> None:
    first = _settings(base_settings, weekly_day="mon", weekly_time="08:00", daily_time="07:00")
    _run(first, store, MONDAY.replace(hour=6), expect=0)
    second = _settings(base_settings, weekly_day="tue", weekly_time="09:15", daily_time="07:00")
    _run(second, store, MONDAY.replace(hour=6, minute=30), expect=0)

    jobs = {job.id: job for job in stored_jobs(store.engine)}
    assert sorted(jobs) == ["digest-daily", "digest-weekly"]
    tuesday = (MONDAY + timedelta(days=1)).replace(hour=9, minute=15)
    assert jobs["digest-weekly"].next_run == tuesday.astimezone(UTC)
    database = tmp_path / "data" / "publisher.db"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM apscheduler_jobs").fetchone() == (2,)

    # an empty time switches the daily digest off: its job is removed
    third = _settings(base_settings, weekly_day="tue", weekly_time="09:15", daily_time="")
    _run(third, store, MONDAY.replace(hour=7, minute=30), expect=0)
    assert [job.id for job in stored_jobs(store.engine)] == ["digest-weekly"]


def test_status_reads_the_job_store_without_a_scheduler(store: Store) -> None:
    assert stored_jobs(store.engine) == []  # nothing scheduled yet: empty, not an error


# -- daylight saving time (Europe/Berlin) -------------------------------------------


def test_weekly_digest_keeps_its_local_time_across_the_spring_change(
    base_settings: Settings,
) -> None:
    settings = _settings(base_settings, zone="Europe/Berlin", weekly_time="08:00")
    [weekly, _daily] = job_specs(settings)
    trigger = weekly.trigger(BERLIN)
    first = trigger.get_next_fire_time(None, datetime(2024, 3, 20, tzinfo=BERLIN))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    assert first is not None and second is not None
    assert (first.hour, second.hour) == (8, 8)
    assert first.astimezone(UTC).hour == 7  # CET
    assert second.astimezone(UTC).hour == 6  # CEST, after 2024-03-31


def test_a_time_in_the_repeated_autumn_hour_fires_once(
    base_settings: Settings, store: Store
) -> None:
    settings = _settings(base_settings, zone="Europe/Berlin", weekly_time="", daily_time="02:30")
    # 2024-10-27: 03:00 CEST -> 02:00 CET, so 02:30 happens twice (00:30 and 01:30 UTC)
    first_0230 = datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    recorder = _run(settings, store, first_0230 - timedelta(seconds=0.7), expect=1)
    assert [due.scheduled.astimezone(UTC) for due, _ in recorder.fired] == [first_0230]

    # back during the second 02:30: nothing more that day
    recorder = _run(settings, store, datetime(2024, 10, 27, 1, 30, 30, tzinfo=UTC), 0)
    assert recorder.fired == []
    [job] = stored_jobs(store.engine)
    assert job.next_run == datetime(2024, 10, 28, 1, 30, tzinfo=UTC)  # 02:30 CET next day


def test_a_time_skipped_in_spring_fires_once_an_hour_later(
    base_settings: Settings, store: Store
) -> None:
    settings = _settings(base_settings, zone="Europe/Berlin", weekly_time="", daily_time="02:30")
    # stored the day before, then down across the night 02:00 CET -> 03:00 CEST
    _run(settings, store, datetime(2024, 3, 30, 12, tzinfo=BERLIN), expect=0)
    recorder = _run(settings, store, datetime(2024, 3, 31, 5, tzinfo=BERLIN), expect=1)

    [(due, _)] = recorder.fired
    # 02:30 does not exist that night; it fires at 01:30 UTC = 03:30 CEST
    assert due.scheduled.astimezone(UTC) == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    [job] = stored_jobs(store.engine)
    assert job.next_run == datetime(2024, 4, 1, 2, 30, tzinfo=BERLIN).astimezone(UTC)


def test_bad_schedule_settings_are_a_config_error(base_settings: Settings) -> None:
    from publisher.errors import ConfigError

    with pytest.raises(ConfigError, match="weekly_time"):
        job_specs(_settings(base_settings, weekly_time="8 am"))
    with pytest.raises(ConfigError, match="weekly_day"):
        job_specs(_settings(base_settings, weekly_day="someday"))
