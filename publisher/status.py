"""`publisher status`: what is stored, built, scheduled and being sent; reads, starts nothing.

`gather_status` is the whole report; `run_progress` its part about digest runs across
senders (open runs and live workers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from publisher.config import Settings, redact_url
from publisher.errors import MissingDatabase
from publisher.model import ConsentKind, SubscriberStatus
from publisher.schedule import JOBS_TABLE, JobInfo, job_specs, stored_jobs
from publisher.sending.warmup import WarmupGate
from publisher.store import Articles, Store
from publisher.store.claims import Claims
from publisher.store.locks import DatabaseLock
from publisher.store.status import DigestStatus

__all__ = ["SCHEDULER_LOCK", "complaint_flag", "gather_status", "mail_health", "run_progress"]

# the database lock `publisher run` holds while it schedules digests (one per database)
SCHEDULER_LOCK = "scheduler"


def gather_status(
    settings: Settings, open_store: Callable[[], Store], now: datetime | None = None
) -> dict[str, Any]:
    """What `publisher status` shows; reads the database and the output folder, starts nothing.

    `open_store` raises MissingDatabase where no database exists yet: then the same shape
    comes back, all empty, and nothing is created. `now`: the moment whose local day the
    warm-up figures are for (default: the real clock).
    """
    atom = settings.output_dir / "atom.xml"
    built = datetime.fromtimestamp(atom.stat().st_mtime, UTC) if atom.is_file() else None
    feeds = {"output_dir": str(settings.output_dir), "last_built": _local(built, settings)}
    try:
        store = open_store()
    except MissingDatabase:
        return _before_the_first_ingest(settings, feeds)
    with store.read() as connection:
        repo = Articles(connection)
        total, last_ingest = repo.count(), repo.last_ingest()
        deleted = repo.count_deleted()
    shown: dict[str, Any] = {"total": total, "last_ingest": _local(last_ingest, settings)}
    if deleted:  # of the total: kept, shown nowhere (`articles delete`)
        shown["deleted"] = deleted
    status: dict[str, Any] = {
        "database": redact_url(store.url),
        "database_exists": True,
        "articles": shown,
        "feeds": feeds,
        "scheduler": _scheduler_state(store),
        "jobs": _jobs(settings, _stored_jobs(store)),
    }
    status.update(_digest_status(settings, store))
    status["mail"] = mail_health(store, datetime.now(UTC), settings.zone)
    status.update(run_progress(store))
    state = WarmupGate(settings).state(store, now or datetime.now(UTC))
    status["warmup"] = None if state is None else state.as_dict()
    return status


# Gmail's bulk-sender lines for the spam (complaint) rate: keep it under 0.1 %, never
# reach 0.3 % (Yahoo and Microsoft use the same)
COMPLAINT_RATE_WARN = 0.001
COMPLAINT_RATE_LIMIT = 0.003
MAIL_WINDOW = timedelta(days=30)
_COUNTED = {
    "hard_bounces": ConsentKind.BOUNCED,
    "soft_bounces": ConsentKind.SOFT_BOUNCED,
    "complaints": ConsentKind.COMPLAINED,
    "unsubscribes": ConsentKind.UNSUBSCRIBED,
}


def mail_health(store: Store, now: datetime, zone: tzinfo = UTC) -> dict[str, Any]:
    """Sent, bounces, complaints and unsubscribes for the last run (from its start on)
    and the last 30 days, with the complaint rate against Gmail's 0.1 % / 0.3 % lines.
    Addresses are counted once per kind; the rate is complaints per message sent."""
    with store.read() as connection:
        reader = DigestStatus(connection)
        last = reader.last_run()
        windows: dict[str, Any] = {}
        if last is not None:
            windows["last_run"] = {
                "run": last["id"],
                "since": last["started"].astimezone(zone).isoformat(),
                **_figures(reader, last["started"], reader.sent(run_id=last["id"])),
            }
        else:
            windows["last_run"] = None
        since = now - MAIL_WINDOW
        windows["last_30_days"] = {
            "since": since.astimezone(zone).isoformat(),
            **_figures(reader, since, reader.sent(since=since)),
        }
    return windows


def _figures(reader: DigestStatus, since: datetime, sent: int) -> dict[str, Any]:
    counts = reader.addresses_by_event([k.value for k in _COUNTED.values()], since)
    figures: dict[str, Any] = {"sent": sent}
    figures.update({name: counts[kind.value] for name, kind in _COUNTED.items()})
    rate = figures["complaints"] / sent if sent else None
    figures["complaint_rate"] = rate
    figures["complaint_flag"] = complaint_flag(rate)
    return figures


def complaint_flag(rate: float | None) -> str:
    """ok, or which of Gmail's lines the complaint rate is over."""
    if rate is None:
        return "nothing sent"
    if rate >= COMPLAINT_RATE_LIMIT:
        return "over 0.3 % (Gmail rejects bulk mail at this rate)"
    if rate >= COMPLAINT_RATE_WARN:
        return "over 0.1 % (Gmail's recommended ceiling)"
    return "ok"


def _scheduler_state(store: Store) -> dict[str, Any]:
    lock = DatabaseLock(store, SCHEDULER_LOCK)
    if not lock.taken():
        return {"running": False}
    return {"running": True, "holder": lock.holder()}


def _before_the_first_ingest(settings: Settings, feeds: dict[str, Any]) -> dict[str, Any]:
    """Status where no database exists yet: the same shape, all empty; nothing is created."""
    return {
        "database": redact_url(settings.database_url),
        "database_exists": False,
        "articles": {"total": 0, "last_ingest": None},
        "feeds": feeds,
        "scheduler": {"running": False},
        "jobs": _jobs(settings, {}),
        "subscribers": {s.value: 0 for s in SubscriberStatus},
        "last_digest_run": None,
        "deliveries": {"pending": 0, "failed": 0},
        "mail": {"last_run": None, "last_30_days": None},
        "open_runs": [],
        "workers": [],
        "warmup": None,
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


def _digest_status(settings: Settings, store: Store) -> dict[str, Any]:
    """Subscribers by status, the last digest run with its counts, deliveries not yet sent."""
    with store.read() as connection:
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


def _local(moment: datetime | None, settings: Settings) -> str | None:
    return moment.astimezone(settings.zone).isoformat() if moment is not None else None


def run_progress(store: Store, *, live_within: timedelta | None = None) -> dict[str, Any]:
    """Open runs with their progress across workers, and the live workers (`status`)."""
    since = datetime.now(UTC) - (live_within or timedelta(minutes=2))
    with store.read() as connection:
        claims = Claims(connection)
        runs = [claims.progress(run) for run in claims.open_runs()]
        live = claims.workers(seen_since=since)
    return {
        "open_runs": [
            {
                "id": p.run_id,
                "frequency": p.frequency,
                "status": p.status,
                "total": p.total,
                "done": p.done,
                "by_status": p.counts,
                "claimed": p.claimed,
                "sent_by": p.sent_by,
            }
            for p in runs
        ],
        "workers": [
            {
                "name": w.name,
                "state": w.state,
                "run": w.run_id,
                "sent": w.sent,
                "failed": w.failed,
                "seen": w.seen.isoformat(),
            }
            for w in live
        ],
    }
