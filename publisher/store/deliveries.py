"""The delivery ledger: digest runs, one row per (run, subscriber), and what was sent to whom.

A row is written 'pending' at fan-out, committed 'sending' BEFORE its SMTP transaction,
and 'sent' or 'failed' after. Re-running an unfinished run sends only rows not yet sent;
a row left 'sending' by a crash is the one message that may repeat, with its Message-ID.
`claimed_by` / `lease_until` are kept for several workers claiming rows (PostgreSQL
`FOR UPDATE SKIP LOCKED`); one process does not need them.

`DeliveryLedger` batches the ledger writes of all sender tasks into shared transactions
(group commit): each task still waits for its own 'sending' row to be durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import (
    Connection,
    Interval,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError

from publisher.errors import SendError, StoreError
from publisher.model import Delivery, DeliveryStatus, DigestRun, Subscriber, SubscriberStatus
from publisher.store.chunks import chunks
from publisher.store.engine import Store
from publisher.store.schema import deliveries, digest_runs, sent_articles, subscribers, workers
from publisher.store.subscribers import _subscriber

__all__ = [
    "Claims",
    "Deliveries",
    "DeliveryLedger",
    "PlannedDelivery",
    "RunProgress",
    "WorkerRow",
    "in_ledger_transaction",
    "ledger_transaction",
]

_OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A row to write at fan-out."""

    subscriber_id: int
    message_id: str
    article_ids: tuple[str, ...]


# What `_delivery` reads: rows are read by the thousand, so not the claim and lease
# columns (their timestamps cost a conversion each and are not part of a Delivery).
_DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.run_id,
    deliveries.c.subscriber_id,
    deliveries.c.message_id,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.article_ids,
    deliveries.c.error,
    deliveries.c.finished_at,
)

# A row to send and its subscriber, read in one statement: a second query `id IN (500
# ids)` for the subscribers is a sequential scan of every subscriber while the table has
# no statistics yet. `_pair` splits it.
_PAIR_COLUMNS = (
    *subscribers.c,
    *(column.label(f"delivery_{column.name}") for column in _DELIVERY_COLUMNS),
)

# The ledger's hot statements, built once: each group commit runs them, and building
# and compiling Core statements anew cost more CPU than the database spends executing
# them. Each takes the whole batch's ids at once (no executemany: one round trip).
_SENDING = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)), deliveries.c.status.in_(_OPEN))
    .values(status=DeliveryStatus.SENDING.value, sending_at=bindparam("now"))
    .returning(deliveries.c.id)
)
_SENDING_CLAIMED = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
        deliveries.c.status.in_(_OPEN),
        deliveries.c.claimed_by == bindparam("worker"),
    )
    .values(
        status=DeliveryStatus.SENDING.value,
        sending_at=bindparam("now"),
        lease_until=func.now() + bindparam("lease", type_=Interval()),
    )
    .returning(deliveries.c.id)
)
_SENT = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=DeliveryStatus.SENT.value,
        attempts=bindparam("attempts"),
        finished_at=bindparam("now"),
        error=None,
    )
)
_MOVE_WINDOW = (
    update(subscribers)
    .where(
        subscribers.c.id.in_(
            select(deliveries.c.subscriber_id)
            .where(deliveries.c.id.in_(bindparam("ids", expanding=True)))
            .scalar_subquery()
        ),
        or_(
            subscribers.c.last_digest.is_(None),
            subscribers.c.last_digest < bindparam("as_of", type_=subscribers.c.last_digest.type),
        ),
    )
    .values(last_digest=bindparam("as_of"), hard_failures=0)
)
# (subscriber, article) for every article of the rows just sent, expanded by the database
# from the row's JSON list; the SELECT's WHERE keeps SQLite's parser off ON as a join.
_SENT_ARTICLES = {
    "sqlite": text(
        "INSERT INTO sent_articles (subscriber_id, article_id, run_id) "
        "SELECT d.subscriber_id, j.value, d.run_id "
        "FROM deliveries AS d, json_each(d.article_ids) AS j "
        "WHERE d.id IN :ids ON CONFLICT DO NOTHING"
    ).bindparams(bindparam("ids", expanding=True)),
    "postgresql": text(
        "INSERT INTO sent_articles (subscriber_id, article_id, run_id) "
        "SELECT d.subscriber_id, j.value, d.run_id "
        "FROM deliveries AS d CROSS JOIN LATERAL json_array_elements_text(d.article_ids::json) "
        "AS j(value) WHERE d.id IN :ids ON CONFLICT DO NOTHING"
    ).bindparams(bindparam("ids", expanding=True)),
}


# -- scale-out workers --: a worker's usual group commit on PostgreSQL in one statement:
# the rows just sent (with their attempts), their subscribers' windows, their articles,
# then the rows about to be sent (still open, still this worker's: their lease renewed).
# Data-modifying CTEs run in one snapshot on disjoint rows; all of it commits or none.
_PG_GROUP_COMMIT = text(
    """
WITH done AS (
    UPDATE deliveries AS d
    SET status = 'sent', attempts = v.attempts, finished_at = :now, error = NULL
    FROM unnest(CAST(:sent_ids AS bigint[]), CAST(:sent_attempts AS integer[]))
        AS v(id, attempts)
    WHERE d.id = v.id
    RETURNING d.run_id, d.subscriber_id, d.article_ids
), moved AS (
    UPDATE subscribers
    SET last_digest = :as_of, hard_failures = 0
    WHERE id IN (SELECT subscriber_id FROM done)
        AND (last_digest IS NULL OR last_digest < :as_of)
), remembered AS (
    INSERT INTO sent_articles (subscriber_id, article_id, run_id)
    SELECT done.subscriber_id, j.value, done.run_id
    FROM done CROSS JOIN LATERAL json_array_elements_text(done.article_ids::json) AS j(value)
    ON CONFLICT DO NOTHING
), starting AS (
    UPDATE deliveries
    SET status = 'sending', sending_at = :now, lease_until = now() + :lease
    WHERE id = ANY(CAST(:sending_ids AS bigint[]))
        AND status IN ('pending', 'sending')
        AND claimed_by = :worker
    RETURNING id
)
SELECT id FROM starting
"""
).bindparams(
    bindparam("now", type_=deliveries.c.sending_at.type),
    bindparam("as_of", type_=deliveries.c.sending_at.type),
    bindparam("lease", type_=Interval()),
)


class Deliveries:
    """Runs and ledger rows, bound to a connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- runs -------------------------------------------------------------------------

    def unfinished_runs(self) -> list[DigestRun]:
        """Runs a crash, Ctrl-C or an unreachable server left unfinished, oldest first."""
        rows = self.connection.execute(
            select(digest_runs).where(digest_runs.c.status != "done").order_by(digest_runs.c.id)
        )
        return [_run(row) for row in rows]

    def create_run(self, frequency: str, as_of: datetime, now: datetime) -> DigestRun:
        key = self.connection.execute(
            insert(digest_runs).values(
                frequency=frequency,
                as_of=as_of,
                status="fanout",
                fanned_out_through=0,
                skipped_empty=0,
                created=now,
            )
        ).inserted_primary_key
        assert key is not None
        return self.run(int(key[0]))

    def run(self, run_id: int) -> DigestRun:
        return _run(
            self.connection.execute(select(digest_runs).where(digest_runs.c.id == run_id)).one()
        )

    def fanned_out_through(self, run_id: int) -> tuple[int, int]:
        """(last subscriber id fanned out, subscribers skipped as empty so far)."""
        row = self.connection.execute(
            select(digest_runs.c.fanned_out_through, digest_runs.c.skipped_empty).where(
                digest_runs.c.id == run_id
            )
        ).one()
        return int(row[0]), int(row[1])

    def fan_out(
        self,
        run_id: int,
        planned: Sequence[PlannedDelivery],
        through: int,
        skipped: int,
        now: datetime,
    ) -> None:
        """Write one batch of pending rows and remember how far fan-out got."""
        if planned:
            self.connection.execute(
                insert(deliveries),
                [
                    {
                        "run_id": run_id,
                        "subscriber_id": p.subscriber_id,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "message_id": p.message_id,
                        "article_ids": json.dumps(list(p.article_ids)),
                        "created": now,
                    }
                    for p in planned
                ],
            )
        self.connection.execute(
            update(digest_runs)
            .where(digest_runs.c.id == run_id)
            .values(
                fanned_out_through=through,
                skipped_empty=digest_runs.c.skipped_empty + skipped,
            )
        )

    def set_run_status(self, run_id: int, status: str, now: datetime) -> None:
        values: dict[str, Any] = {"status": status}
        if status == "done":
            values["finished"] = now
        self.connection.execute(
            update(digest_runs).where(digest_runs.c.id == run_id).values(**values)
        )

    def counts(self, run_id: int) -> dict[str, int]:
        rows = self.connection.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.run_id == run_id)
            .group_by(deliveries.c.status)
        )
        return {str(status): int(n) for status, n in rows}

    # -- rows -------------------------------------------------------------------------

    def unfinished(
        self, run_id: int, *, after: int, limit: int
    ) -> list[tuple[Delivery, Subscriber]]:
        """Rows of the run not yet sent or failed, by id, with their subscriber."""
        rows = self.connection.execute(
            select(*_PAIR_COLUMNS)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.run_id == run_id,
                deliveries.c.id > after,
                deliveries.c.status.in_(_OPEN),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        return [_pair(row) for row in rows]

    def sent_to(
        self, subscriber_ids: Sequence[int], article_ids: Iterable[str]
    ) -> dict[int, set[str]]:
        """Which of these articles each of these subscribers has already been sent."""
        candidates = list(article_ids)
        result: dict[int, set[str]] = defaultdict(set)
        if not subscriber_ids or not candidates:
            return result
        for chunk in chunks(list(subscriber_ids), 500):
            rows = self.connection.execute(
                select(sent_articles.c.subscriber_id, sent_articles.c.article_id).where(
                    sent_articles.c.subscriber_id.in_(chunk),
                    sent_articles.c.article_id.in_(candidates),
                )
            )
            for subscriber_id, article_id in rows:
                result[int(subscriber_id)].add(str(article_id))
        return result

    def open_elsewhere(self, subscriber_ids: Sequence[int], run_id: int) -> set[int]:
        """Which of these subscribers have a row not yet sent in a run other than this one."""
        found: set[int] = set()
        for chunk in chunks(list(subscriber_ids), 500):
            rows = self.connection.execute(
                select(deliveries.c.subscriber_id).where(
                    deliveries.c.subscriber_id.in_(chunk),
                    deliveries.c.status.in_(_OPEN),
                    deliveries.c.run_id != run_id,
                )
            )
            found.update(int(i) for i in rows.scalars())
        return found

    def mark_sending(
        self,
        ids: Sequence[int],
        now: datetime,
        *,
        worker: str | None = None,
        lease_seconds: float = 0.0,
    ) -> set[int]:
        """Mark rows 'sending'; returns the ids that were still open (the others: skip).

        With `worker`: only rows this worker still holds (a row whose lease ran out may
        have been reclaimed by another worker), and their lease starts afresh.
        """
        if not ids:
            return set()
        if worker is None:
            rows = self.connection.execute(_SENDING, {"ids": list(ids), "now": now})
        else:
            rows = self.connection.execute(
                _SENDING_CLAIMED,
                {
                    "ids": list(ids),
                    "now": now,
                    "worker": worker,
                    "lease": timedelta(seconds=lease_seconds),
                },
            )
        return {int(i) for i in rows.scalars()}

    def mark_sent(self, done: Sequence[tuple[int, int]], as_of: datetime, now: datetime) -> None:
        """(delivery id, attempts) accepted by SMTP: row sent, subscriber's window moves."""
        if not done:
            return
        by_attempts: dict[int, list[int]] = defaultdict(list)
        for key, attempts in done:
            by_attempts[attempts].append(key)
        for attempts, keys in by_attempts.items():  # nearly always one: first attempt
            self.connection.execute(_SENT, {"ids": keys, "attempts": attempts, "now": now})
        ids = [key for key, _ in done]
        self.connection.execute(_MOVE_WINDOW, {"ids": ids, "as_of": as_of})
        self.connection.execute(_SENT_ARTICLES[self.connection.dialect.name], {"ids": ids})

    def mark_failed(
        self, failed: Sequence[tuple[int, str, bool, int]], now: datetime, bounce_after: int
    ) -> None:
        """(delivery id, error, counts as bounce, attempts); `bounce_after` such failures
        bounce a subscriber."""
        if not failed:
            return
        self.connection.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values(
                status=DeliveryStatus.FAILED.value,
                error=bindparam("b_error"),
                attempts=bindparam("b_attempts"),
                finished_at=now,
            ),
            [
                {"b_id": key, "b_error": error[:2000], "b_attempts": attempts}
                for key, error, _, attempts in failed
            ],
        )
        hard = [key for key, _, bounce, _ in failed if bounce]
        if not hard:
            return
        people = list(
            self.connection.execute(
                select(deliveries.c.subscriber_id).where(deliveries.c.id.in_(hard))
            ).scalars()
        )
        self.connection.execute(
            update(subscribers)
            .where(subscribers.c.id.in_(people))
            .values(hard_failures=subscribers.c.hard_failures + 1)
        )
        self.connection.execute(
            update(subscribers)
            .where(
                and_(
                    subscribers.c.id.in_(people),
                    subscribers.c.hard_failures >= max(1, bounce_after),
                    subscribers.c.status == SubscriberStatus.CONFIRMED.value,
                )
            )
            .values(status=SubscriberStatus.BOUNCED.value)
        )

    def abandon(self, ids: Sequence[int], reason: str, now: datetime) -> None:
        """Close rows that must not be sent any more (the subscriber left mid-run)."""
        if ids:
            self.connection.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(list(ids)), deliveries.c.status.in_(_OPEN))
                .values(status=DeliveryStatus.FAILED.value, error=reason, finished_at=now)
            )


class _Keyed(Protocol):
    @property
    def key(self) -> int: ...


class DeliveryLedger:
    """The mailer's Ledger over the store, with group commit.

    Every sender task's 'sending' mark is awaited until its transaction committed (the
    exactly-once rule); 'sent'/'failed' marks are queued in order, so they are durable no
    later than that task's next 'sending' mark. Use as `async with`; exit flushes.

    The commits run on one thread of the ledger's own, which takes the next batch (all
    marks queued meanwhile) as soon as a commit is done: under load it never sleeps, so
    a commit costs no thread hand-off, only one wake-up of the event loop for its result.
    """

    def __init__(
        self,
        store: Store,
        run: DigestRun,
        *,
        bounce_after: int,
        clock: Any = None,
        worker: str | None = None,
        lease_seconds: float = 0.0,
        accepting: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.run = run
        self.bounce_after = bounce_after
        self.clock = clock or (lambda: datetime.now(UTC))
        # -- scale-out workers --: claims checked at 'sending'; `accepting()` False
        # (SIGTERM) means start no new SMTP transaction, finish the ones in flight
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.accepting = accepting
        self._queue: list[_Mark] = []
        self._signal = threading.Condition()  # guards _queue, _closing, _idle, _error
        self._idle = False
        self._closing = False
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._connection: Connection | None = None  # the ledger thread's, PostgreSQL only
        self.commits = 0

    async def __aenter__(self) -> DeliveryLedger:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        threading.Thread(target=self._run, name="publisher-ledger", daemon=True).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with self._signal:
            self._closing = True
            self._signal.notify()
        if self._stopped is not None:
            await asyncio.shield(self._stopped)  # the marks queued so far are committed
        if self._error is not None and exc[0] is None:
            raise self._error

    async def sending(self, item: _Keyed) -> bool:
        self._raise_if_broken()
        if self.accepting is not None and not self.accepting():
            return False
        assert self._loop is not None, "use DeliveryLedger as `async with`"
        future: asyncio.Future[bool] = self._loop.create_future()
        self._put(("sending", (item.key,), future))
        return await future

    async def sent(self, item: _Keyed, attempts: int) -> None:
        self._put(("sent", (item.key, attempts), None))

    async def failed(self, item: _Keyed, error: SendError, attempts: int) -> None:
        self._put(("failed", (item.key, error.message, error.counts_as_bounce, attempts), None))

    def _raise_if_broken(self) -> None:
        if self._error is not None:
            raise self._error

    def _put(self, mark: _Mark) -> None:
        with self._signal:
            self._raise_if_broken()
            self._queue.append(mark)
            if self._idle:
                self._signal.notify()

    # -- the ledger's thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._signal:
                    while not self._queue and not self._closing:
                        self._idle = True
                        self._signal.wait()
                    self._idle = False
                    if not self._queue:
                        return  # closing, and every mark is committed
                    batch, self._queue = self._queue, []
                try:
                    still_open = self._commit(batch)
                except BaseException as exc:
                    with self._signal:
                        self._error = exc
                        batch += self._queue
                        self._queue = []
                    self._to_loop(_fail, batch, exc)
                    return
                self.commits += 1
                self._to_loop(_resolve, batch, still_open)
        finally:
            self._close_connection()
            self._to_loop(_finish, self._stopped)

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _commit(self, batch: list[_Mark]) -> set[int]:
        now = self.clock()
        sending = [args[0] for kind, args, _ in batch if kind == "sending"]
        sent = [(args[0], args[1]) for kind, args, _ in batch if kind == "sent"]
        failed = [args for kind, args, _ in batch if kind == "failed"]

        def commit(connection: Connection) -> set[int]:
            ledger = Deliveries(connection)
            ledger.mark_sent(sent, self.run.as_of, now)
            ledger.mark_failed(failed, now, self.bounce_after)
            return ledger.mark_sending(
                sending, now, worker=self.worker, lease_seconds=self.lease_seconds
            )

        if self.worker is not None and not failed and self.store.dialect == "postgresql":
            return self._commit_in_one_statement(sent, sending, now)
        return in_ledger_transaction(self.store, commit)

    def _commit_in_one_statement(
        self, sent: list[tuple[int, int]], sending: list[int], now: datetime
    ) -> set[int]:
        """-- scale-out workers --: PostgreSQL, the usual batch (no failure) as ONE statement
        on a connection kept for the run, in autocommit: one round trip per group commit
        instead of seven (pool ping, BEGIN, four statements, COMMIT). One statement is one
        transaction, so it is exactly as atomic as the transaction it replaces."""
        parameters = {
            "sent_ids": [key for key, _ in sent],
            "sent_attempts": [attempts for _, attempts in sent],
            "sending_ids": sending,
            "now": now,
            "as_of": self.run.as_of,
            "worker": self.worker,
            "lease": timedelta(seconds=self.lease_seconds),
        }

        def once() -> set[int]:
            if self._connection is None:
                self._connection = self.store.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
            try:
                rows = self._connection.execute(_PG_GROUP_COMMIT, parameters)
                return {int(i) for i in rows.scalars()}
            except DBAPIError as exc:
                self._close_connection()
                raise self.store.error(exc) from exc

        return _retrying(once)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


_Mark = tuple[str, tuple[Any, ...], "asyncio.Future[bool] | None"]


def _resolve(batch: list[_Mark], still_open: set[int]) -> None:
    for _kind, args, future in batch:
        if future is not None and not future.done():
            future.set_result(args[0] in still_open)


def _fail(batch: list[_Mark], error: BaseException) -> None:
    for _kind, _args, future in batch:
        if future is not None and not future.done():
            future.set_exception(error)


def _finish(stopped: asyncio.Future[None] | None) -> None:
    if stopped is not None and not stopped.done():
        stopped.set_result(None)


# -- scale-out workers (issue 6) ----------------------------------------------------
#
# On PostgreSQL any number of processes share a run: each claims a batch of open rows
# with SELECT ... FOR UPDATE SKIP LOCKED (no two claim the same row at the same time)
# and stamps it claimed_by + lease_until. A live worker renews its leases; the rows of
# a dead one become claimable again once lease_until has passed. Lease times come from
# the database clock (now()), so workers on hosts with skewed clocks agree.


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
        return self.counts.get("sent", 0) + self.counts.get("failed", 0)


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
            .where(digest_runs.c.status.in_(("fanout", "sending")))
            .order_by(digest_runs.c.id)
        )
        return [_run(row) for row in rows]

    def claim(
        self, run_id: int, worker: str, limit: int, lease_seconds: float, *, after: int = 0
    ) -> list[tuple[Delivery, Subscriber]]:
        """Take up to `limit` open rows nobody holds (never claimed, released, or lease ran
        out), oldest first; only rows after id `after` (a worker's last claim).

        One status at a time, each read in id order and stopped after `limit` free rows:
        `status IN (...)` read and sorted every open row of the run for each claim
        (100,000 rows: 42 ms, a sort spilled to disk). With statistics from before the
        run's rows were sent, PostgreSQL reads 'pending' rows off the primary key, through
        every row already sent (halfway through 100,000: 31 ms); `after` skips those.
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
                    )
                    .order_by(deliveries.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                    .subquery()
                    .c.id
                )
                for status in _OPEN
            )
        ).subquery()
        # the subscribers come back joined (_PAIR_COLUMNS)
        rows = self.connection.execute(
            update(deliveries)
            .where(
                deliveries.c.id.in_(
                    select(free.c.id).order_by(free.c.id).limit(limit).scalar_subquery()
                ),
                subscribers.c.id == deliveries.c.subscriber_id,
            )
            .values(claimed_by=worker, lease_until=_lease(lease_seconds))
            .returning(*_PAIR_COLUMNS)
        ).all()
        return [_pair(row) for row in sorted(rows, key=lambda row: int(row.delivery_id))]

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
                deliveries.c.status.in_(_OPEN),
                deliveries.c.claimed_by == worker,
            )
            .with_for_update(skip_locked=True)
        )
        result = self.connection.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(mine.scalar_subquery()))
            .values(lease_until=_lease(lease_seconds))
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
        statuses = _OPEN if sending_too else (DeliveryStatus.PENDING.value,)
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

    def finish_if_complete(self, run_id: int, now: datetime) -> bool:
        """Mark the run done when fan-out is over and no row is open; True if this call did."""
        still_open = exists().where(deliveries.c.run_id == run_id, deliveries.c.status.in_(_OPEN))
        result = self.connection.execute(
            update(digest_runs)
            .where(digest_runs.c.id == run_id, digest_runs.c.status == "sending", ~still_open)
            .values(status="done", finished=now)
        )
        return bool(result.rowcount)

    def run_state(self, run_id: int, worker: str) -> tuple[str, int]:
        """(run status, open rows not held by `worker`): may this worker stop waiting?"""
        status = self.connection.execute(
            select(digest_runs.c.status).where(digest_runs.c.id == run_id)
        ).scalar_one()
        elsewhere = self.connection.execute(
            select(func.count()).where(
                deliveries.c.run_id == run_id,
                deliveries.c.status.in_(_OPEN),
                or_(deliveries.c.claimed_by.is_(None), deliveries.c.claimed_by != worker),
            )
        ).scalar_one()
        return str(status), int(elsewhere)

    def progress(self, run: DigestRun) -> RunProgress:
        """One pass over the run's rows (a heartbeat asks every second; at 100,000 rows
        three passes took 60-110 ms of the database's CPU each time)."""
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
            if status in _OPEN:
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


@contextmanager
def ledger_transaction(store: Store) -> Iterator[Connection]:
    """A write transaction for ledger rows and claims: on PostgreSQL NOT behind the store's
    global writer lock, so workers commit side by side; row locks (and SKIP LOCKED at
    claim time) keep them apart. SQLite has one writer anyway."""
    with store.begin(serialized=False) as connection:
        yield connection


_RETRY_STATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def in_ledger_transaction(store: Store, work: Callable[[Connection], T], attempts: int = 5) -> T:
    """`work(connection)` in a ledger transaction, run again as `_retrying` says."""

    def once() -> T:
        with ledger_transaction(store) as connection:
            return work(connection)

    return _retrying(once, attempts)


def _retrying(once: Callable[[], T], attempts: int = 5) -> T:
    """`once()`, run again if PostgreSQL aborted its transaction as a deadlock victim or a
    serialization failure (the transaction rolled back whole, so running it again is exact)."""
    for attempt in range(1, attempts + 1):
        try:
            return once()
        except StoreError as exc:
            state = getattr(getattr(exc.__cause__, "orig", None), "sqlstate", None)
            if state not in _RETRY_STATES or attempt == attempts:
                raise
            time.sleep(0.01 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _lease(seconds: float) -> Any:
    """now() + seconds on the database clock."""
    return func.now() + timedelta(seconds=seconds)


def _run(row: Any) -> DigestRun:
    return DigestRun(
        id=int(row.id),
        frequency=row.frequency,
        as_of=row.as_of,
        status=row.status,
        created=row.created,
        finished=row.finished,
    )


def _pair(row: Any) -> tuple[Delivery, Subscriber]:
    """A row of `_PAIR_COLUMNS`: the delivery, and its subscriber."""
    return _delivery(row[len(subscribers.c) :]), _subscriber(row)


def _delivery(row: Sequence[Any]) -> Delivery:
    """From the values of `_DELIVERY_COLUMNS`, in that order."""
    key, run_id, subscriber_id, message_id, status, attempts, article_ids, error, sent_at = row
    return Delivery(
        id=int(key),
        run_id=int(run_id),
        subscriber_id=int(subscriber_id),
        message_id=message_id,
        status=DeliveryStatus(status),
        attempts=int(attempts),
        article_ids=tuple(json.loads(article_ids)),
        error=error,
        sent_at=sent_at,
    )
