"""Warm-up in the database: each sending domain's days, and the rows let go on each.

A row waiting for a later day stays 'pending' with no `warmup_day`; letting it go stamps
the day on it and adds it to that day's count in `warmup_days`, in one transaction that
holds the day's row FOR UPDATE, so senders in several processes never let more go than
the day allows. A row let go on an earlier day and still pending is let go again (and
counted) today: the allowance is what each day actually sends.
"""

from __future__ import annotations

from datetime import date, tzinfo

from sqlalchemy import ColumnElement, Connection, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from publisher.model import Delivery, DeliveryStatus, RunStatus, Subscriber
from publisher.store.claims import lease
from publisher.store.rows import OPEN, PAIR_COLUMNS, delivery_and_subscriber
from publisher.store.schema import deliveries, digest_runs, subscribers, warmup_days

__all__ = ["WarmupDays", "held"]

_PENDING = DeliveryStatus.PENDING.value
_SENDING = DeliveryStatus.SENDING.value


def held(day: str) -> ColumnElement[bool]:
    """A pending row warm-up has not let go today (never, or on an earlier day)."""
    return or_(deliveries.c.warmup_day.is_(None), deliveries.c.warmup_day < day)


class WarmupDays:
    """Warm-up queries, bound to a connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def first_day(self, domain: str, today: date, zone: tzinfo, *, record: bool) -> date:
        """The domain's day 1: its earliest recorded day. A domain never recorded starts
        today, except on an install upgraded from before warm-up (no domain recorded at
        all), which counts from its oldest sent digest so it does not start over.
        `record`: write that day down (a sender); False reads only (`status`)."""
        found = self.connection.execute(
            select(func.min(warmup_days.c.day)).where(warmup_days.c.domain == domain)
        ).scalar()
        if found is not None:
            return date.fromisoformat(str(found))
        first = today
        if self.connection.execute(select(func.count()).select_from(warmup_days)).scalar() == 0:
            oldest = self.connection.execute(
                select(func.min(deliveries.c.finished_at)).where(
                    deliveries.c.status == DeliveryStatus.SENT.value
                )
            ).scalar()
            if oldest is not None:
                first = min(today, oldest.astimezone(zone).date())
        if record:
            self._ensure(domain, first.isoformat())
        return first

    def admit(
        self,
        run_id: int,
        domain: str,
        day: str,
        allowance: int,
        limit: int,
        *,
        worker: str | None = None,
        lease_seconds: float = 0.0,
    ) -> list[tuple[Delivery, Subscriber]]:
        """Let go up to `limit` held rows of the run, oldest subscription first, within
        what is left of the day's `allowance`; with `worker` they are claimed for it too.
        Returns them with their subscribers, in id order."""
        used = self._lock_day(domain, day)
        room = min(limit, allowance - used)
        if room <= 0:
            return []
        chosen = (
            select(deliveries.c.id)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.run_id == run_id,
                deliveries.c.status == _PENDING,
                held(day),
            )
            .order_by(
                func.coalesce(subscribers.c.confirmed, subscribers.c.created),
                subscribers.c.id,
            )
            .limit(room)
        )
        if self.connection.dialect.name == "postgresql":
            # a row another worker holds under a live lease is not free to take
            chosen = chosen.where(
                or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < func.now())
            )
        values: dict[str, object] = {"warmup_day": day}
        if worker is not None:
            values.update(claimed_by=worker, lease_until=lease(lease_seconds))
        # No FOR UPDATE on the choice: under LockRows PostgreSQL sorts every held row of
        # the run instead of keeping the first `room`. The day's lock already keeps other
        # senders from choosing at the same time, and the UPDATE checks each row again.
        ids = [
            int(i)
            for i in self.connection.execute(
                update(deliveries)
                .where(
                    deliveries.c.id.in_(chosen.scalar_subquery()),
                    deliveries.c.status == _PENDING,
                    held(day),
                )
                .values(values)
                .returning(deliveries.c.id)
            ).scalars()
        ]
        if not ids:
            return []
        self.connection.execute(
            update(warmup_days)
            .where(warmup_days.c.domain == domain, warmup_days.c.day == day)
            .values(admitted=warmup_days.c.admitted + len(ids))
        )
        rows = self.connection.execute(
            select(*PAIR_COLUMNS)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.id.in_(ids))
            .order_by(deliveries.c.id)
        )
        return [delivery_and_subscriber(row) for row in rows]

    def sendable(self, run_id: int, domain: str, day: str, allowance: int) -> int:
        """How many of the run's open rows may go today: those let go today or left
        'sending', and held rows up to what is left of the day's allowance."""
        open_now = self.connection.execute(
            select(
                func.count().filter(
                    or_(deliveries.c.status == _SENDING, deliveries.c.warmup_day == day)
                ),
                func.count().filter(deliveries.c.status == _PENDING, held(day)),
            ).where(deliveries.c.run_id == run_id, deliveries.c.status.in_(OPEN))
        ).one()
        used = self.connection.execute(
            select(warmup_days.c.admitted).where(
                warmup_days.c.domain == domain, warmup_days.c.day == day
            )
        ).scalar()
        left = max(0, allowance - int(used or 0))
        return int(open_now[0]) + min(int(open_now[1]), left)

    def admitted_on(self, domain: str, day: str) -> int:
        """Rows the domain has let go on `day` so far; reads only."""
        used = self.connection.execute(
            select(warmup_days.c.admitted).where(
                warmup_days.c.domain == domain, warmup_days.c.day == day
            )
        ).scalar()
        return int(used or 0)

    def sent_on(self, day: str) -> int:
        """Digests sent that were let go on `day`."""
        return int(
            self.connection.execute(
                select(func.count()).where(
                    deliveries.c.warmup_day == day,
                    deliveries.c.status == DeliveryStatus.SENT.value,
                )
            ).scalar_one()
        )

    def waiting(self, day: str) -> int:
        """Pending rows of unfinished runs that warm-up has not let go on `day`."""
        return int(
            self.connection.execute(
                select(func.count())
                .select_from(deliveries)
                .join(digest_runs, digest_runs.c.id == deliveries.c.run_id)
                .where(
                    digest_runs.c.status != RunStatus.DONE.value,
                    deliveries.c.status == _PENDING,
                    held(day),
                )
            ).scalar_one()
        )

    def _ensure(self, domain: str, day: str) -> None:
        dialect = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        self.connection.execute(
            dialect.insert(warmup_days)
            .values(domain=domain, day=day, admitted=0)
            .on_conflict_do_nothing()
        )

    def _lock_day(self, domain: str, day: str) -> int:
        """The day's count so far, its row locked until the transaction ends (PostgreSQL;
        SQLite's one writer serializes senders anyway)."""
        self._ensure(domain, day)
        return int(
            self.connection.execute(
                select(warmup_days.c.admitted)
                .where(warmup_days.c.domain == domain, warmup_days.c.day == day)
                .with_for_update()
            ).scalar_one()
        )
