"""Read-only counts for `publisher status`: subscribers, the last digest run, deliveries,
and what came back (consent events)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, distinct, func, select

from publisher.store.schema import consent_events, deliveries, digest_runs, subscribers

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

    def sent(self, *, since: datetime | None = None, run_id: int | None = None) -> int:
        """Deliveries accepted by SMTP: of one run, or finished at or after `since`."""
        query = select(func.count()).select_from(deliveries).where(deliveries.c.status == "sent")
        if run_id is not None:
            query = query.where(deliveries.c.run_id == run_id)
        if since is not None:
            query = query.where(deliveries.c.finished_at >= since)
        return int(self.connection.execute(query).scalar_one())

    def addresses_by_event(self, kinds: Iterable[str], since: datetime) -> dict[str, int]:
        """Distinct addresses with an event of each kind at or after `since` (a repeated
        complaint of one address counts once)."""
        wanted = list(kinds)
        rows = self.connection.execute(
            select(consent_events.c.kind, func.count(distinct(consent_events.c.email_hash)))
            .where(consent_events.c.kind.in_(wanted), consent_events.c.at >= since)
            .group_by(consent_events.c.kind)
        )
        found = {str(kind): int(n) for kind, n in rows}
        return {kind: found.get(kind, 0) for kind in wanted}
