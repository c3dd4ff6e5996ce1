"""Adapter: digest jobs on APScheduler 3 (AsyncIOScheduler), persisted in the app's database.

Jobs live in the `apscheduler_jobs` table of the same database as the store, so a run that
was due while the process was down is still known when it starts again; with `coalesce=True`
and `misfire_grace_time` it fires exactly once, however many runs were missed.

A persistent job must name its callable by reference, so the app object cannot be a job
argument. The job's callable is the module-level, pure `digest_due(frequency)`; it runs on
the "digest" executor of *this* scheduler instance, which hands the value it returns to the
handler the app gave the scheduler. No module-level state, nothing unpicklable in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from publisher.config import Settings
from publisher.errors import ConfigError

__all__ = [
    "JOBS_TABLE",
    "DigestDue",
    "DigestScheduler",
    "JobInfo",
    "JobSpec",
    "LocalTimeCronTrigger",
    "digest_due",
    "job_specs",
    "next_digest",
    "stored_jobs",
]

log = logging.getLogger("publisher.schedule")

JOBS_TABLE = "apscheduler_jobs"
JOB_PREFIX = "digest-"
_EXECUTOR = "digest"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class DigestDue:
    """A digest run that is due: which frequency, and when it was scheduled (aware)."""

    frequency: str
    scheduled: datetime


def digest_due(frequency: str, *, scheduled: datetime | None = None) -> DigestDue:
    """The persisted job's callable (stored by reference): describe the run that is due.

    The digest executor passes `scheduled`; the default only satisfies APScheduler's
    check of the job's arguments when the job is added.
    """
    return DigestDue(frequency=frequency, scheduled=scheduled or datetime.now(UTC))


Handler = Callable[[DigestDue], Awaitable[object]]


class LocalTimeCronTrigger(CronTrigger):  # type: ignore[misc]
    """A CronTrigger that fires at most once per local wall-clock time.

    APScheduler 3 fires a job twice when its time falls in the hour repeated at the end of
    daylight saving time (02:30 CEST and again 02:30 CET); a digest must go out once.
    A time skipped in spring (02:30 on the night clocks jump to 03:00) fires at 03:30.
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        zone: tzinfo = self.timezone
        # a naive comparison ignores `fold`: both 02:30s of the repeated hour compare equal
        if (
            fire is not None
            and previous_fire_time is not None
            and _wall(fire, zone) == _wall(previous_fire_time, zone)
        ):
            later = (fire.astimezone(UTC) + timedelta(seconds=1)).astimezone(zone)
            fire = super().get_next_fire_time(fire, later)
        return fire


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One digest job wanted by the configuration."""

    id: str
    frequency: str
    day_of_week: str | None  # None: every day
    hour: int
    minute: int

    def trigger(self, zone: tzinfo) -> LocalTimeCronTrigger:
        return LocalTimeCronTrigger(
            day_of_week=self.day_of_week or "*", hour=self.hour, minute=self.minute, timezone=zone
        )

    @property
    def describe(self) -> str:
        when = f"{self.hour:02d}:{self.minute:02d}"
        return f"{self.day_of_week} {when}" if self.day_of_week else f"daily {when}"


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What the job store says about one job (for `publisher status`)."""

    id: str
    frequency: str
    schedule: str
    next_run: datetime | None  # aware UTC; None when paused or not stored


def job_specs(settings: Settings) -> list[JobSpec]:
    """The digest jobs the settings ask for; an empty time switches a job off."""
    config = settings.schedule
    specs = []
    if config.weekly_time:
        day = config.weekly_day.strip().lower()[:3]
        if day not in _DAYS:
            raise ConfigError(
                f"schedule.weekly_day must be one of {', '.join(_DAYS)}, got {config.weekly_day!r}"
            )
        hour, minute = _clock(config.weekly_time, "schedule.weekly_time")
        specs.append(JobSpec(f"{JOB_PREFIX}weekly", "weekly", day, hour, minute))
    if config.daily_time:
        hour, minute = _clock(config.daily_time, "schedule.daily_time")
        specs.append(JobSpec(f"{JOB_PREFIX}daily", "daily", None, hour, minute))
    return specs


def next_digest(settings: Settings, frequency: str, now: datetime) -> datetime | None:
    """When the schedule next sends the `frequency` digest (site zone); None if that
    job is switched off."""
    for spec in job_specs(settings):
        if spec.frequency == frequency:
            fire: datetime | None = spec.trigger(settings.zone).get_next_fire_time(
                None, now.astimezone(settings.zone)
            )
            return fire
    return None


def _clock(value: str, name: str) -> tuple[int, int]:
    try:
        hour_text, minute_text = value.strip().split(":")
        hour, minute = int(hour_text), int(minute_text)
    except ValueError:
        hour = minute = -1
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ConfigError(f"{name} must be HH:MM (24-hour clock), got {value!r}")
    return hour, minute


class _DigestExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs digest jobs on the event loop by awaiting this scheduler's handler.

    Mirrors APScheduler's own `run_job` (misfire check, one event per run time) so the
    scheduler's bookkeeping (max_instances, listeners) stays correct.
    """

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler
        self.tasks: set[asyncio.Task[None]] = set()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job, run_times))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job: Job, run_times: list[datetime]) -> None:
        events = []
        store = job._jobstore_alias
        try:
            for run_time in run_times:
                late = datetime.now(UTC) - run_time
                grace = job.misfire_grace_time
                if grace is not None and late > timedelta(seconds=grace):
                    events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, store, run_time))
                    continue
                try:
                    await self._handler(job.func(*job.args, scheduled=run_time, **job.kwargs))
                except Exception as exc:
                    events.append(
                        JobExecutionEvent(
                            EVENT_JOB_ERROR,
                            job.id,
                            store,
                            run_time,
                            exception=exc,
                            traceback="".join(traceback.format_tb(exc.__traceback__)),
                        )
                    )
                else:
                    events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, store, run_time))
        except asyncio.CancelledError:
            self._run_job_error(job.id, *sys.exc_info()[1:])
            raise
        self._run_job_success(job.id, events)


class DigestScheduler:
    """The digest jobs of one process. Start it only while holding the scheduler lock."""

    def __init__(self, settings: Settings, handler: Handler, *, engine: Any) -> None:
        """`engine`: the store's SQLAlchemy engine, so jobs live in the same database."""
        self.settings = settings
        self._executor = _DigestExecutor(handler)
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)},
            executors={_EXECUTOR: self._executor},
            timezone=settings.zone,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": settings.schedule.misfire_grace_seconds,
            },
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_EXECUTED
        )

    async def start(self) -> list[JobInfo]:
        """Start, then put the configured jobs in place; a past-due run stays due (catch-up)."""
        self._scheduler.start(paused=True)
        now = datetime.now(UTC)
        wanted = {spec.id: spec for spec in job_specs(self.settings)}
        for job in self._scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id not in wanted:
                log.info("removed digest job %s (no longer configured)", job.id)
                job.remove()
        for spec in wanted.values():
            self._put(spec, self._scheduler.get_job(spec.id), now)
        self._scheduler.resume()
        return self.jobs()

    def _put(self, spec: JobSpec, existing: Job | None, now: datetime) -> None:
        extra: dict[str, Any] = {}
        # Replacing a job recomputes its next run from now, which would forget a run missed
        # while we were down; carry a past-due time over so it fires (once) now.
        due = existing.next_run_time if existing is not None else None
        if due is not None and due <= now:
            extra["next_run_time"] = due
        self._scheduler.add_job(
            digest_due,
            trigger=spec.trigger(self.settings.zone),
            id=spec.id,
            name=f"{spec.frequency} digest",
            kwargs={"frequency": spec.frequency},
            executor=_EXECUTOR,
            replace_existing=True,
            **extra,
        )

    def jobs(self) -> list[JobInfo]:
        return [_info(job) for job in self._scheduler.get_jobs() if job.id.startswith(JOB_PREFIX)]

    async def stop(self, timeout: float = 4.0) -> None:
        """Stop firing; give a digest in flight up to `timeout` seconds, then cancel it."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        tasks = set(self._executor.tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _on_event(self, event: JobExecutionEvent) -> None:
        when = event.scheduled_run_time.astimezone(self.settings.zone).isoformat()
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "digest job %s missed its run at %s (more than %ss late); next run as scheduled",
                event.job_id,
                when,
                self.settings.schedule.misfire_grace_seconds,
            )
        elif event.code == EVENT_JOB_ERROR:
            log.error("digest job %s (due %s) failed: %s", event.job_id, when, event.exception)


def _info(job: Job) -> JobInfo:
    frequency = str(job.kwargs.get("frequency", job.id.removeprefix(JOB_PREFIX)))
    return JobInfo(
        id=job.id,
        frequency=frequency,
        schedule=str(job.trigger),
        next_run=job.next_run_time.astimezone(UTC) if job.next_run_time else None,
    )


def stored_jobs(engine: Any) -> list[JobInfo]:
    """The digest jobs in the job store, read without starting a scheduler."""
    store = SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE)
    # A job store needs a scheduler reference only to hand it to the jobs it loads.
    store.start(_Unstarted(), "default")
    return [_info(job) for job in store.get_all_jobs() if job.id.startswith(JOB_PREFIX)]


class _Unstarted(BaseScheduler):  # type: ignore[misc]
    """A scheduler that is never started: just enough for reading a job store."""

    def shutdown(self, wait: bool = True) -> None:  # pragma: no cover - never started
        pass

    def wakeup(self) -> None:  # pragma: no cover - never started
        pass
