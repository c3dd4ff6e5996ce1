"""Several senders on one run (PostgreSQL): claims, leases and the worker registry.

Each process claims a batch of open rows with SELECT ... FOR UPDATE SKIP LOCKED (no two
claim the same row at the same time) and stamps it claimed_by + lease_until. A live
worker renews its leases; the rows of a dead one become claimable again once lease_until
has passed. Lease times come from the database clock (now()), so workers on hosts with
skewed clocks agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, or_, select, union_all, update

from publisher.model import Delivery, DeliveryStatus, DigestRun, RunStatus, Subscriber
from publisher.store.rows import OPEN, PAIR_COLUMNS, delivery_and_subscriber, digest_run
from publisher.store.schema import deliveries, digest_runs, subscribers, workers

__all__ = ["Claims", "RunProgress", "WorkerRow", "lease"]


@dataclass(frozen=True, slots=True)
class RunProgress:
    """One run across every worker: rows by status, and rows sent by each worker."""

    run_id: int
    frequency: str
    status: str
    as_of: datetime
    counts: dict[str, int]
    sent_by: dict[str, int]
    claimed: int  # open rows under a live lease

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        return self.counts.get(DeliveryStatus.SENT, 0) + self.counts.get(DeliveryStatus.FAILED, 0)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    host: str
    pid: int
    started: datetime
    seen: datetime
    state: str
    run_id: int | None
    sent: int
    failed: int


class Claims:
    """Claim / lease / reclaim queries (PostgreSQL), bound to a connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def open_runs(self) -> list[DigestRun]:
        """Runs still being fanned out or sent, oldest first."""
        rows = self.connection.execute(
            select(digest_runs)
            .where(digest_runs.c.status.in_((RunStatus.FANOUT.value, RunStatus.SENDING.value)))
            .order_by(digest_runs.c.id)
        )
        return [digest_run(row) for row in rows]

    def claim(
        self,
        run_id: int,
        worker: str,
        limit: int,
        lease_seconds: float,
        *,
        after: int = 0,
        let_go_on: str | None = None,
    ) -> list[tuple[Delivery, Subscriber]]:
        """Take up to `limit` open rows nobody holds (never claimed, released, or lease ran
        out), oldest first; only rows after id `after` (a worker's last claim).
        `let_go_on` (a warm-up day): only pending rows warm-up let go that day.

        One status at a time, each read in id order and stopped after `limit` free rows:
        `status IN (...)` read and sorted every open row of the run for each claim, so a
        claim's cost grew with the run. With statistics from before the run's rows were
        sent, PostgreSQL reads 'pending' rows off the primary key, through every row
        already sent; `after` skips those.
        """
        free = union_all(
            *(
                select(
                    select(deliveries.c.id)
                    .where(
                        deliveries.c.run_id == run_id,
                        deliveries.c.status == status,
                        deliveries.c.id > after,
                        or_(
                            deliveries.c.lease_until.is_(None),
                            deliveries.c.lease_until < func.now(),
                        ),
                        *_let_go(status, let_go_on),
                    )
                    .order_by(deliveries.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                    .subquery()
                    .c.id
                )
                for status in OPEN
            )
        ).subquery()
        # the subscribers come back joined (PAIR_COLUMNS)
        rows = self.connection.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(
                    select(free.c.id).order_by(free.c.id).limit(limit).scalar_subquery()
                ),
                subscribers.c.id == deliveries.c.subscriber_id,
            )
            .values(claimed_by=worker, lease_until=lease(lease_seconds))
            .returning(*PAIR_COLUMNS)
        ).all()
        return [
            delivery_and_subscriber(row)
            for row in sorted(rows, key=lambda row: int(row.delivery_id))
        ]

    def renew(self, run_ids: Iterable[int], worker: str, lease_seconds: float) -> int:
        """Extend the lease of every open row this worker holds (its heartbeat)."""
        ids = list(run_ids)
        if not ids:
            return 0
        # SKIP LOCKED: a row this worker's ledger is marking right now is skipped, not
        # waited for (it gets a fresh lease there); waiting could deadlock the two
        mine = (
            select(deliveries.c.id)
            .where(
                deliveries.c.run_id.in_(ids),
                deliveries.c.status.in_(OPEN),
                deliveries.c.claimed_by == worker,
            )
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(mine.scalar_subquery()))
            .values(lease_until=lease(lease_seconds))
        )
        return int(result.rowcount or 0)

    def release(self, run_ids: Iterable[int], worker: str, *, sending_too: bool = False) -> int:
        """Give back the rows this worker holds: claimable by others at once.

        Pending rows always (never handed to SMTP). 'sending' rows only when the caller
        knows none of them is in flight (its mailer pool has returned).
        """
        ids = list(run_ids)
        if not ids:
            return 0
        statuses = OPEN if sending_too else (DeliveryStatus.PENDING.value,)
        result = self.connection.execute(
            update(deliveries)
            .where(
                deliveries.c.run_id.in_(ids),
                deliveries.c.status.in_(statuses),
                deliveries.c.claimed_by == worker,
            )
            .values(claimed_by=None, lease_until=None)
        )
        return int(result.rowcount or 0)

    def release_rows(self, run_id: int, ids: Iterable[int], worker: str) -> int:
        """Give back these pending rows of ours (held back by pacing): claimable at once."""
        chosen = list(ids)
        if not chosen:
            return 0
        result = self.connection.execute(
            update(deliveries)
            .where(
                deliveries.c.run_id == run_id,
                deliveries.c.id.in_(chosen),
                deliveries.c.status == DeliveryStatus.PENDING.value,
                deliveries.c.claimed_by == worker,
            )
            .values(claimed_by=None, lease_until=None)
        )
        return int(result.rowcount or 0)

    def finish_if_complete(self, run_id: int, now: datetime) -> bool:
        """Mark the run done when fan-out is over and no row is open; True if this call did."""
        still_open = exists().where(deliveries.c.run_id == run_id, deliveries.c.status.in_(OPEN))
        result = self.connection.execute(
            update(digest_runs)
            .where(
                digest_runs.c.id == run_id,
                digest_runs.c.status == RunStatus.SENDING.value,
                ~still_open,
            )
            .values(status=RunStatus.DONE.value, finished=now)
        )
        return bool(result.rowcount)

    def run_state(
        self, run_id: int, worker: str, *, let_go_on: str | None = None
    ) -> tuple[str, int]:
        """(run status, open rows not held by `worker`): may this worker stop waiting?
        `let_go_on` (a warm-up day): rows warm-up holds back for a later day do not count."""
        status = self.connection.execute(
            select(digest_runs.c.status).where(digest_runs.c.id == run_id)
        ).scalar_one()
        query = select(func.count()).where(
            deliveries.c.run_id == run_id,
            deliveries.c.status.in_(OPEN),
            or_(deliveries.c.claimed_by.is_(None), deliveries.c.claimed_by != worker),
        )
        if let_go_on is not None:
            query = query.where(
                or_(
                    deliveries.c.status == DeliveryStatus.SENDING.value,
                    deliveries.c.warmup_day == let_go_on,
                )
            )
        elsewhere = self.connection.execute(query).scalar_one()
        return str(status), int(elsewhere)

    def progress(self, run: DigestRun) -> RunProgress:
        """One pass over the run's rows: a heartbeat asks every second, so this must not
        grow into several passes over a large run."""
        counts: dict[str, int] = defaultdict(int)
        sent_by: dict[str, int] = {}
        claimed = 0
        rows = self.connection.execute(
            select(
                deliveries.c.status,
                deliveries.c.claimed_by,
                func.count(),
                func.count().filter(deliveries.c.lease_until > func.now()),
            )
            .where(deliveries.c.run_id == run.id)
            .group_by(deliveries.c.status, deliveries.c.claimed_by)
        )
        for status, name, n, leased in rows:
            counts[str(status)] += int(n)
            if status == DeliveryStatus.SENT.value and name is not None:
                sent_by[str(name)] = int(n)
            if status in OPEN:
                claimed += int(leased)
        return RunProgress(
            run.id, run.frequency, run.status, run.as_of, dict(counts), sent_by, claimed
        )

    # -- the worker registry --

    def register(self, row: WorkerRow) -> None:
        self.connection.execute(delete(workers).where(workers.c.name == row.name))
        self.connection.execute(
            insert(workers).values(
                name=row.name,
                host=row.host,
                pid=row.pid,
                started=row.started,
                seen=row.seen,
                state=row.state,
                run_id=row.run_id,
                sent=row.sent,
                failed=row.failed,
            )
        )

    def beat(
        self, name: str, now: datetime, state: str, run_id: int | None, sent: int, failed: int
    ) -> None:
        self.connection.execute(
            update(workers)
            .where(workers.c.name == name)
            .values(seen=now, state=state, run_id=run_id, sent=sent, failed=failed)
        )

    def workers(self, seen_since: datetime | None = None) -> list[WorkerRow]:
        query = select(workers).order_by(workers.c.started)
        if seen_since is not None:
            query = query.where(workers.c.seen >= seen_since, workers.c.state != "stopped")
        return [
            WorkerRow(
                name=row.name,
                host=row.host,
                pid=int(row.pid),
                started=row.started,
                seen=row.seen,
                state=row.state,
                run_id=None if row.run_id is None else int(row.run_id),
                sent=int(row.sent),
                failed=int(row.failed),
            )
            for row in self.connection.execute(query)
        ]


def _let_go(status: str, day: str | None) -> tuple[Any, ...]:
    """The claim's extra condition under warm-up: a pending row only if let go on `day`."""
    if day is None or status != DeliveryStatus.PENDING.value:
        return ()
    return (deliveries.c.warmup_day == day,)


def lease(seconds: float) -> Any:
    """now() + seconds on the database clock."""
    return func.now() + timedelta(seconds=seconds)
