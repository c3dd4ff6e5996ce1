"""What `publisher status` reports of digest runs across senders: open runs and live workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from publisher.store import Store
from publisher.store.claims import Claims

__all__ = ["run_progress"]


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
