"""The main job, `publisher run`: watcher, digest scheduler and web server in one asyncio process.

Start: take the scheduler lock (one scheduler per database), seed an empty inbox from the
seeds on a first run, ingest the inbox, build the feeds, then run the inbox watcher, the
scheduler, the HTTP server and (with --smtp-debug) an SMTP sink side by side. Stop
(SIGTERM / Ctrl-C): stop taking work, give a digest in flight a few seconds to finish its
SMTP transaction, close the sink last, all within 5 s.

Also here: `gather_status(app)`, what `publisher status` prints.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from publisher.app import App
from publisher.config import Settings
from publisher.errors import MissingDatabase, PublisherError
from publisher.model import SubscriberStatus
from publisher.schedule import (
    JOBS_TABLE,
    DigestDue,
    DigestScheduler,
    JobInfo,
    job_specs,
    stored_jobs,
)
from publisher.smtpsink import SmtpSink
from publisher.store import Articles, Store
from publisher.store.locks import DatabaseLock
from publisher.store.status import DigestStatus

__all__ = ["RunOptions", "ensure_secret_key", "gather_status", "run"]

log = logging.getLogger("publisher.run")

SCHEDULER_LOCK = "scheduler"
# Stop budget (SIGTERM -> exit well inside 5 s): a digest in flight, then the SMTP sink.
DIGEST_GRACE_SECONDS = 3.0
SINK_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The switches of `publisher run`."""

    host: str | None = None
    port: int | None = None
    smtp_debug: bool = False
    send: bool = True  # False (--no-send): no scheduler, no lock; watch and serve only


async def run(
    app: App,
    stop: asyncio.Event,
    options: RunOptions = RunOptions(),
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Run until `stop` is set; `ready` is set once everything listens."""
    settings = app.settings = ensure_secret_key(app.settings)
    lock = DatabaseLock(app.store, SCHEDULER_LOCK)
    if options.send and not lock.try_acquire():
        holder = lock.holder()
        raise PublisherError(
            "another `publisher run` is already scheduling digests for this database"
            + (f" ({holder})" if holder else "")
            + "; refusing to start a second scheduler",
            "stop it first; `publisher serve` and `publisher watch` may run beside it, "
            "or use `publisher run --no-send`",
        )
    sink: SmtpSink | None = None
    scheduler: DigestScheduler | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(app.seed_inbox)
        if options.smtp_debug:
            sink = await SmtpSink(
                settings.mailbox_dir, settings.smtp.host, settings.smtp.port
            ).start()
        await asyncio.to_thread(_initial_ingest_and_build, app)

        if options.send:
            scheduler = DigestScheduler(settings, _digest_handler(app), engine=app.store.engine)
            for job in await scheduler.start():
                log.info(
                    "digest job %s: next run %s", job.frequency, _local(job.next_run, settings)
                )
        else:
            log.info("digests are not scheduled (--no-send)")

        from publisher.web import create_app, serve  # starlette/uvicorn load only when serving

        web = create_app(settings, extra_routes=app.web_routes())
        listening = asyncio.Event()
        host = options.host or settings.server.host
        port = settings.server.port if options.port is None else options.port
        tasks.append(
            asyncio.create_task(
                _guard("web server", serve(web, host, port, stop, ready=listening), stop)
            )
        )
        tasks.append(asyncio.create_task(_guard("inbox watcher", app.watch(stop), stop)))
        waiting = asyncio.create_task(listening.wait())
        await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if listening.is_set():
            log.info("publisher run is up: %s", getattr(web.state, "url", f"http://{host}:{port}/"))
            if ready is not None:
                ready.set()
        await stop.wait()
        log.info("stopping")
    finally:
        stop.set()
        if scheduler is not None:
            await scheduler.stop(timeout=DIGEST_GRACE_SECONDS)
        if tasks:
            await asyncio.wait(tasks, timeout=DIGEST_GRACE_SECONDS)
        if sink is not None:
            await sink.stop(grace=SINK_GRACE_SECONDS)
        lock.release()
    for task in tasks:  # a part that failed on its own (e.g. the port was taken)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    log.info("stopped")


async def _guard(name: str, work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run one part; if it fails, stop the whole process (and let `run` re-raise)."""
    try:
        await work
    except Exception:
        log.error("%s failed; stopping", name)
        stop.set()
        raise


def _initial_ingest_and_build(app: App) -> None:
    """Ingest what the inbox holds, then one full feed build (not one per changed file)."""
    report = app.ingestor.ingest(None)
    counts = ", ".join(f"{k} {v}" for k, v in report.summary().items() if v)
    log.info("ingested inbox %s: %s", app.settings.inbox, counts or "empty")
    app.build_feeds()


def _digest_handler(app: App) -> Callable[[DigestDue], Awaitable[None]]:
    """The scheduler's handler: one digest run of the due frequency, logged with its counts."""

    async def handler(due: DigestDue) -> None:
        zone = app.settings.zone
        log.info(
            "digest run started: %s (due %s)",
            due.frequency,
            due.scheduled.astimezone(zone).isoformat(),
        )
        report = await app.send_digests_async(frequency=due.frequency)
        counts = ", ".join(f"{k} {v}" for k, v in report.summary().items())
        log.info("digest run finished: %s (run %s): %s", due.frequency, report.run_id, counts)
        if report.unreachable:  # -- hardening --: the rows stay open for the next run
            log.error("%s; %d messages left for the next run", report.unreachable, report.deferred)

    return handler


def ensure_secret_key(settings: Settings) -> Settings:
    """No secret key configured but a secret_key_file named: write a random one (0600) there.

    Lets a fresh clone send digests with working unsubscribe links; `publisher send` and
    `serve` read the same file. Production sets PUBLISHER_SECRET_KEY instead.
    """
    path = settings.secret_key_file
    if settings.secret_key or path is None:
        return settings
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        log.info("created a secret key in %s (set PUBLISHER_SECRET_KEY in production)", path)
    return replace(settings, secret_key=path.read_text(encoding="utf-8").strip())


def _local(moment: datetime | None, settings: Settings) -> str | None:
    return moment.astimezone(settings.zone).isoformat() if moment is not None else None


# -- status ----------------------------------------------------------------------


def gather_status(app: App) -> dict[str, Any]:
    """What `publisher status` shows; reads the database and the output folder, starts nothing."""
    settings = app.settings
    atom = settings.output_dir / "atom.xml"
    built = datetime.fromtimestamp(atom.stat().st_mtime, UTC) if atom.is_file() else None
    feeds = {"output_dir": str(settings.output_dir), "last_built": _local(built, settings)}
    try:
        store = app.store
    except MissingDatabase:
        return _before_the_first_ingest(settings, feeds)
    with store.read() as connection:
        repo = Articles(connection)
        total, last_ingest = repo.count(), repo.last_ingest()
    status: dict[str, Any] = {
        "database": _redacted(store.url),
        "database_exists": True,
        "articles": {"total": total, "last_ingest": _local(last_ingest, settings)},
        "feeds": feeds,
        "scheduler": _scheduler_state(store),
        "jobs": _jobs(settings, _stored_jobs(store)),
    }
    status.update(_digest_status(app))
    # -- scale-out workers --: each open run's progress across workers, live workers
    status.update(app.run_progress())
    return status


def _scheduler_state(store: Store) -> dict[str, Any]:
    lock = DatabaseLock(store, SCHEDULER_LOCK)
    if not lock.taken():
        return {"running": False}
    return {"running": True, "holder": lock.holder()}


def _before_the_first_ingest(settings: Settings, feeds: dict[str, Any]) -> dict[str, Any]:
    """Status where no database exists yet: the same shape, all empty; nothing is created."""
    return {
        "database": _redacted(settings.database_url),
        "database_exists": False,
        "articles": {"total": 0, "last_ingest": None},
        "feeds": feeds,
        "scheduler": {"running": False},
        "jobs": _jobs(settings, {}),
        "subscribers": {s.value: 0 for s in SubscriberStatus},
        "last_digest_run": None,
        "deliveries": {"pending": 0, "failed": 0},
        "open_runs": [],
        "workers": [],
    }


def _stored_jobs(store: Store) -> dict[str, JobInfo]:
    # the job store's table appears with the first `publisher run`; status must not make it
    if not store.has_table(JOBS_TABLE):
        return {}
    return {job.id: job for job in stored_jobs(store.engine)}


def _jobs(settings: Settings, stored: dict[str, JobInfo]) -> list[dict[str, Any]]:
    """Next runs from the job store; jobs not stored yet (never run) from the config."""
    now = datetime.now(settings.zone)
    result = []
    for spec in job_specs(settings):
        job = stored.get(spec.id)
        if job is None:
            fire = spec.trigger(settings.zone).get_next_fire_time(None, now)
            job = JobInfo(spec.id, spec.frequency, spec.describe, fire)
            source = "config (not scheduled yet: start `publisher run`)"
        else:
            source = "job store"
        result.append(
            {
                "id": job.id,
                "frequency": job.frequency,
                "schedule": spec.describe,
                "next_run": _local(job.next_run, settings),
                "source": source,
            }
        )
    return result


def _digest_status(app: App) -> dict[str, Any]:
    """Subscribers by status, the last digest run with its counts, deliveries not yet sent."""
    settings = app.settings
    with app.store.read() as connection:
        reader = DigestStatus(connection)
        by_status = reader.subscribers_by_status()
        last = reader.last_run()
        # "sending" counts as pending: committed before its SMTP transaction, not yet confirmed
        open_deliveries = reader.deliveries_by_status(("pending", "sending", "failed"))
    if last is not None:
        for key in ("as_of", "started", "finished"):
            last[key] = _local(last[key], settings)
    return {
        "subscribers": {s.value: by_status.get(s.value, 0) for s in SubscriberStatus},
        "last_digest_run": last,
        "deliveries": {
            "pending": open_deliveries["pending"] + open_deliveries["sending"],
            "failed": open_deliveries["failed"],
        },
    }


def _redacted(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"
    return url
