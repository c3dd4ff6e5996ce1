"""The delivery ledger: each row committed 'sending' BEFORE its SMTP transaction, and 'sent'
or 'failed' after; a row left 'sending' by a crash is the one message that may repeat,
with its Message-ID.

`DeliveryLedger` batches the ledger writes of all sender tasks into shared transactions
(group commit): each task still waits for its own 'sending' row to be durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Interval, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from publisher.errors import SendError, StoreError
from publisher.model import DeliveryStatus, DigestRun, SubscriberStatus
from publisher.store.engine import Store
from publisher.store.rows import OPEN
from publisher.store.schema import deliveries, subscribers

__all__ = [
    "DeliveryLedger",
    "FailedDelivery",
    "FailureHook",
    "LedgerRows",
    "in_ledger_transaction",
    "ledger_transaction",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A delivery that failed, with its subscriber as the failure left it."""

    subscriber_id: int
    email: str
    error: str
    hard: bool  # counts toward bouncing the address (a 5xx about the mailbox)
    code: int | None
    hard_failures: int
    status: SubscriberStatus


FailureHook = Callable[[Connection, list[FailedDelivery], datetime], None]

# The ledger's hot statements, built once: each group commit runs them, and building
# and compiling Core statements anew cost more CPU than the database spends executing
# them. Each takes the whole batch's ids at once (no executemany: one round trip).
_SENDING = (
    update(deliveries)
    .where(deliveries.c.id.in_(bindparam("ids", expanding=True)), deliveries.c.status.in_(OPEN))
    .values(status=DeliveryStatus.SENDING.value, sending_at=bindparam("now"))
    .returning(deliveries.c.id)
)
_SENDING_CLAIMED = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
        deliveries.c.status.in_(OPEN),
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


# A worker's usual group commit on PostgreSQL in one statement:
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


class LedgerRows:
    """The marks on ledger rows, bound to a connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

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
        self, failed: Sequence[tuple[Any, ...]], now: datetime, bounce_after: int
    ) -> list[FailedDelivery]:
        """(delivery id, error, counts as bounce, attempts[, SMTP code]); `bounce_after`
        such failures bounce a subscriber. Returns each failure with its subscriber as
        it is now (for the consent history)."""
        if not failed:
            return []
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
                for key, error, _, attempts, *_ in failed
            ],
        )
        hard = [key for key, _, bounce, *_ in failed if bounce]
        if hard:
            self._count_hard_failures(hard, bounce_after)
        return self._failures(failed)

    def _failures(self, failed: Sequence[tuple[Any, ...]]) -> list[FailedDelivery]:
        by_id = {key: (error, bounce, rest) for key, error, bounce, _, *rest in failed}
        rows = self.connection.execute(
            select(
                deliveries.c.id,
                subscribers.c.id.label("subscriber_id"),
                subscribers.c.email,
                subscribers.c.status,
                subscribers.c.hard_failures,
            )
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(deliveries.c.id.in_(list(by_id)))
        ).all()
        found = []
        for row in rows:
            error, bounce, rest = by_id[row.id]
            found.append(
                FailedDelivery(
                    subscriber_id=int(row.subscriber_id),
                    email=row.email,
                    error=error,
                    hard=bool(bounce),
                    code=rest[0] if rest else None,
                    hard_failures=int(row.hard_failures),
                    status=SubscriberStatus(row.status),
                )
            )
        return found

    def _count_hard_failures(self, hard: list[int], bounce_after: int) -> None:
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
                .where(deliveries.c.id.in_(list(ids)), deliveries.c.status.in_(OPEN))
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
        on_failed: FailureHook | None = None,
    ) -> None:
        """`on_failed(connection, failures, now)` runs in the transaction that records
        failed deliveries (the consent history of a 5xx)."""
        self.store = store
        self.on_failed = on_failed
        self.run = run
        self.bounce_after = bounce_after
        self.clock = clock or (lambda: datetime.now(UTC))
        # claims checked at 'sending'; `accepting()` False
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
        self._put(
            (
                "failed",
                (item.key, error.message, error.counts_as_bounce, attempts, error.code),
                None,
            )
        )

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
            ledger = LedgerRows(connection)
            ledger.mark_sent(sent, self.run.as_of, now)
            failures = ledger.mark_failed(failed, now, self.bounce_after)
            if failures and self.on_failed is not None:
                self.on_failed(connection, failures, now)
            return ledger.mark_sending(
                sending, now, worker=self.worker, lease_seconds=self.lease_seconds
            )

        if self.worker is not None and not failed and self.store.dialect == "postgresql":
            return self._commit_in_one_statement(sent, sending, now)
        return in_ledger_transaction(self.store, commit)

    def _commit_in_one_statement(
        self, sent: list[tuple[int, int]], sending: list[int], now: datetime
    ) -> set[int]:
        """PostgreSQL, the usual batch (no failure) as ONE statement
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

        return retrying(once)

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


@contextmanager
def ledger_transaction(store: Store) -> Iterator[Connection]:
    """A write transaction for ledger rows and claims: on PostgreSQL NOT behind the store's
    global writer lock, so workers commit side by side; row locks (and SKIP LOCKED at
    claim time) keep them apart. SQLite has one writer anyway."""
    with store.begin(serialized=False) as connection:
        yield connection


_RETRY_STATES = {"40P01", "40001"}  # deadlock detected, serialization failure


def in_ledger_transaction(store: Store, work: Callable[[Connection], T], attempts: int = 5) -> T:
    """`work(connection)` in a ledger transaction, run again as `retrying` says."""

    def once() -> T:
        with ledger_transaction(store) as connection:
            return work(connection)

    return retrying(once, attempts)


def retrying(once: Callable[[], T], attempts: int = 5) -> T:
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
