"""Read-only counts for `publisher status`: subscribers, the last digest run, deliveries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from publisher.store.schema import deliveries, digest_runs, subscribers

__all__ = ["DigestStatus"]


class DigestStatus:
    """Aggregates over the digest tables; plain values out (datetimes aware UTC)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def subscribers_by_status(self) -> dict[str, int]:
        rows = self.connection.execute(
            select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
        )
        return {str(status): int(n) for status, n in rows}

    def last_run(self) -> dict[str, Any] | None:
        """The newest digest run with its delivery counts by status, or None."""
        row = self.connection.execute(
            select(digest_runs).order_by(digest_runs.c.id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        counts = self.connection.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.run_id == row.id)
            .group_by(deliveries.c.status)
        )
        return {
            "id": int(row.id),
            "frequency": row.frequency,
            "status": row.status,
            "as_of": row.as_of,
            "started": row.created,
            "finished": row.finished,
            "skipped_empty": int(row.skipped_empty),
            "deliveries": {str(status): int(n) for status, n in counts},
        }

    def deliveries_by_status(self, statuses: tuple[str, ...]) -> dict[str, int]:
        """Counts over every run, for the given statuses (zero when none)."""
        rows = self.connection.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.status.in_(statuses))
            .group_by(deliveries.c.status)
        )
        found = {str(status): int(n) for status, n in rows}
        return {status: found.get(status, 0) for status in statuses}
