"""Scale-out sending on PostgreSQL: many processes, on any hosts, share one digest run.

A run is fanned out once (by the scheduler or `publisher send`): one 'pending' row per
subscriber. Every `publisher worker` (and `publisher send` itself on PostgreSQL) then
loops: claim a batch of open rows (`SELECT ... FOR UPDATE SKIP LOCKED`, stamped with its
name and a lease), render and personalize them, and hand them to the pooled mailer,
whose ledger commits 'sending' (only if the row is still ours) before each SMTP
transaction and 'sent'/'failed' after. A heartbeat renews the leases of the rows a live
worker holds; a SIGKILLed worker's rows become claimable when its lease runs out, so the
only message that can go twice is one in flight at the kill, with the same Message-ID.
SIGTERM: start no new transaction, finish those in flight, give the rest back.

SQLite has no row locks to skip: `publisher worker` refuses it (exit 2) and
`publisher send` does the whole run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from publisher.consent import send_failure_recorder
from publisher.errors import ConfigError
from publisher.mailer import Mailer, Pacer, SendReport
from publisher.model import Article, Delivery, DigestRun, RunStatus, Subscriber
from publisher.sending.archive import ArchivingLedger
from publisher.sending.produce import DigestProducer, Page
from publisher.sending.reports import DigestReport
from publisher.sending.warmup import WarmupGate
from publisher.store import Store
from publisher.store.claims import Claims, RunProgress, WorkerRow
from publisher.store.ledger import DeliveryLedger, in_ledger_transaction
from publisher.warmup import WarmupState

__all__ = ["ClaimingSender", "WorkerReport", "require_shared_database", "worker_name"]

log = logging.getLogger("publisher.worker")

LET_GO_PAGE = 1000  # rows warm-up lets go at once, a claim batch or more (bench/warmup.py)


@dataclass
class WorkerReport:
    """What one worker process did before it stopped."""

    name: str
    runs: list[int] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0  # claimed rows given back at a clean stop
    unreachable: str | None = None  # the SMTP server could not be reached (last time)
    failover: str | None = None  # "relay A unreachable (why), sent through B" (first time)
    warmup: WarmupState | None = None  # today's warm-up when it stopped; None: off
    seconds: float = 0.0


def require_shared_database(store: Store) -> None:
    """Workers need PostgreSQL; on SQLite say so in one line (ConfigError: exit 2)."""
    if store.dialect != "postgresql":
        raise ConfigError(
            "`publisher worker` needs PostgreSQL (database_url = postgresql+psycopg://...); "
            f"this database is {store.dialect}",
            "on SQLite `publisher send` (or the `publisher run` scheduler) sends the whole "
            "run in one process",
        )


def worker_name(role: str = "worker") -> str:
    """Unique across hosts and restarts: host, pid, a random suffix."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class ClaimingSender:
    """One process's share of the open digest runs on a shared PostgreSQL database.

    Use as `async with`: entering registers the worker and starts its heartbeat (lease
    renewal, progress); leaving gives back the rows it still holds and deregisters.
    """

    def __init__(
        self,
        producer: DigestProducer,
        *,
        name: str | None = None,
        concurrency: int | None = None,
        on_progress: Callable[[RunProgress, ClaimingSender], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        """`clock`: the moment whose local day warm-up counts (default: the real clock)."""
        settings = producer.settings
        self.pacer = pacer
        self.producer = producer
        self.settings = settings
        self.store = producer.store
        self.lease = max(0.5, settings.workers.lease_seconds)
        self.batch = max(1, settings.workers.claim_batch)
        self.poll = max(0.05, settings.workers.poll_seconds)
        self.concurrency = max(
            1, concurrency or settings.workers.concurrency or settings.smtp.pool_size
        )
        self.name = name or worker_name()
        self.on_progress = on_progress
        self.warmup = WarmupGate(settings)
        self.now: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self._let_go_on: str | None = None  # the warm-up day of the last claim, if limited
        self.report = WorkerReport(self.name)
        self.state = "idle"
        self.run: DigestRun | None = None
        self.stopping = False
        self._runs: set[int] = set()
        self._heart: asyncio.Task[None] | None = None
        self._live = SendReport()  # counts of the delivery in progress

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> ClaimingSender:
        now = datetime.now(UTC)
        row = WorkerRow(self.name, socket.gethostname(), os.getpid(), now, now, "idle", None, 0, 0)
        await asyncio.to_thread(self._write, lambda claims: claims.register(row))
        self._heart = asyncio.create_task(self._heartbeat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._heart is not None:
            self._heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heart
        self.state = "stopped"

        def goodbye(claims: Claims) -> None:
            self.report.released = claims.release(self._runs, self.name)
            claims.beat(self.name, datetime.now(UTC), "stopped", None, *self._totals())

        await asyncio.to_thread(self._write, goodbye)
        if self.report.released:
            log.info("gave back %d claimed rows", self.report.released)

    def stop(self) -> None:
        """Start no new SMTP transaction; those in flight finish (SIGTERM)."""
        self.stopping = True
        self.state = "stopping"

    # -- the worker loop -------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, *, exit_when_idle: bool = False) -> WorkerReport:
        """Work on open runs until `stop` is set (or, `exit_when_idle`, nothing is left)."""
        started = time.monotonic()
        watcher = asyncio.create_task(self._stop_on(stop))
        try:
            while not self.stopping:
                runs = await asyncio.to_thread(self._read, lambda c: c.open_runs())
                worked = False
                for run in runs:
                    if self.stopping:
                        break
                    smtp = await self.deliver(run)
                    if getattr(smtp, "unreachable", None):
                        worked = False  # the server is down: wait, do not spin
                        break
                    worked = worked or bool(smtp.sent or smtp.failed or smtp.skipped)
                if worked:
                    continue
                if exit_when_idle:
                    break
                self.state, self.run = "idle", None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
        finally:
            watcher.cancel()
        self.report.warmup = await asyncio.to_thread(self.warmup.state, self.store, self.now())
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    async def deliver(
        self,
        run: DigestRun,
        *,
        until_done: bool = False,
        articles: dict[str, Article] | None = None,
        digest_report: DigestReport | None = None,
        progress: Callable[[SendReport], None] | None = None,
    ) -> SendReport:
        """Claim, render and send rows of `run` until none is left to claim.

        `until_done` (`publisher send`): also wait for rows other processes hold, and
        reclaim them if their lease runs out, until the run has no open row.
        """
        self._runs.add(run.id)
        if self.run is None or self.run.id != run.id:
            self.report.runs.append(run.id)
        self.run, self.state = run, "sending"
        report = digest_report or DigestReport(dry_run=False, run_id=run.id, as_of=run.as_of)
        settings = self.settings
        ledger = DeliveryLedger(
            self.store,
            run,
            bounce_after=settings.smtp.bounce_after,
            worker=self.name,
            lease_seconds=self.lease,
            accepting=lambda: not self.stopping,
            on_failed=send_failure_recorder(settings),
        )

        def count(smtp: SendReport) -> None:
            self._live = smtp
            if progress is not None:
                progress(smtp)

        mailer = Mailer.for_settings(
            settings, replace(settings.smtp, pool_size=self.concurrency), self.pacer
        )
        pages = self._claimed_pages(run, until_done, mailer)
        items = self.producer.messages(pages, run.as_of, report, dict(articles or {}))
        archiving = ArchivingLedger(ledger, self.producer.archive)
        async with ledger:
            smtp = await mailer.send_all(items, archiving, progress=count)
        # the pool has returned: nothing of ours is in flight, so rows still open here
        # (skipped at SIGTERM, or never handed over) go back to the others at once
        await asyncio.to_thread(
            self._write, lambda c: c.release([run.id], self.name, sending_too=True)
        )
        self._live = SendReport()
        unreachable = getattr(smtp, "unreachable", None)
        if unreachable:
            self.report.unreachable = str(unreachable)
        self.report.sent += smtp.sent
        self.report.failed += smtp.failed
        self.report.retried += smtp.retried
        self.report.failover = self.report.failover or smtp.failover
        if await asyncio.to_thread(
            self._write, lambda c: c.finish_if_complete(run.id, datetime.now(UTC))
        ):
            log.info("digest run %s done", run.id)
        return smtp

    async def _claimed_pages(
        self, run: DigestRun, until_done: bool, mailer: Mailer
    ) -> AsyncIterator[Page]:
        """Claimed rows with their subscribers, a batch at a time (memory stays flat).

        Rows the mailer holds back (their domain group's lane is full) are given back at
        once, for this worker or another to claim when the group has room.
        """
        # Claims go on after this worker's last one. Rows before it come free again only
        # when given back or when a lease runs out: a pass from the start takes them once
        # nothing is left ahead.
        after = 0
        while not self.stopping:
            page = await asyncio.to_thread(self._claim, run.id, after)
            if not page and after:
                after = 0
                if mailer.holding and mailer.unreachable is None:
                    await mailer.room()
                continue
            if not page:
                status, elsewhere = await asyncio.to_thread(self._run_state, run.id)
                if status != RunStatus.FANOUT and not (until_done and elsewhere):
                    return
                await asyncio.sleep(self.poll)  # more rows coming, or a lease to run out
                continue
            after = page[-1][0].id
            chosen = mailer.admitting([(d.id, s.email) for d, s in page])
            admitted = [pair for pair in page if pair[0].id in chosen]
            if len(admitted) < len(page):
                taken = {pair[0].id for pair in admitted}
                held = [
                    pair[0].id
                    for pair in page
                    if pair[0].id not in taken and not mailer.handed(pair[0].id)
                ]
                await asyncio.to_thread(self._give_back, run.id, held)
            if admitted:
                yield admitted

    def _claim(self, run_id: int, after: int) -> list[tuple[Delivery, Subscriber]]:
        """A batch of free rows; under warm-up only rows let go today, and when those run
        short, more let go first (within the day's allowance, in the same transaction)."""

        def claim(connection: Any) -> list[tuple[Delivery, Subscriber]]:
            limit = self.warmup.day_limit(connection, self.now())
            day = self._let_go_on = None if limit is None else limit.day
            claims = Claims(connection)
            page = claims.claim(
                run_id, self.name, self.batch, self.lease, after=after, let_go_on=day
            )
            # Letting go reads every held row of the run, so it goes a page at a time
            # (not a claim batch): the rows let go and not claimed here are free to every
            # worker's next claim.
            more = max(LET_GO_PAGE, self.batch)
            if (
                limit is not None
                and len(page) < self.batch
                and self.warmup.admit(connection, run_id, limit, more)
            ):
                page += claims.claim(
                    run_id, self.name, self.batch - len(page), self.lease, let_go_on=day
                )
                page.sort(key=lambda pair: pair[0].id)
            return page

        page: list[tuple[Delivery, Subscriber]] = in_ledger_transaction(self.store, claim)
        return page

    def _give_back(self, run_id: int, ids: list[int]) -> None:
        self._write(lambda claims: claims.release_rows(run_id, ids, self.name))

    def _run_state(self, run_id: int) -> tuple[str, int]:
        """(run status, open rows someone else holds) for the end-of-claims decision; rows
        warm-up holds back for a later day are nobody's to wait for."""
        with self.store.read() as connection:
            return Claims(connection).run_state(run_id, self.name, let_go_on=self._let_go_on)

    # -- heartbeat -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        tick = min(1.0, self.lease / 4)
        # renewing passes over every open row of the run, so it comes every lease/4,
        # not every tick: the margin
        # before a live worker's lease runs out stays three quarters of the lease
        renew_every = max(1, round(self.lease / 4 / tick))
        beats = 0
        while True:
            await asyncio.sleep(tick)
            try:
                progress = await asyncio.to_thread(self._beat, beats % renew_every == 0)
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("heartbeat failed", exc_info=True)
                continue
            finally:
                beats += 1
            if progress is not None and self.on_progress is not None:
                self.on_progress(progress, self)

    def _beat(self, renew: bool) -> RunProgress | None:
        run = self.run

        def beat(claims: Claims) -> RunProgress | None:
            if renew:
                claims.renew(self._runs, self.name, self.lease)
            claims.beat(
                self.name,
                datetime.now(UTC),
                self.state,
                run.id if run is not None else None,
                *self._totals(),
            )
            if run is None or self.on_progress is None:
                return None
            return claims.progress(run)

        result: RunProgress | None = self._write(beat)
        return result

    def _totals(self) -> tuple[int, int]:
        return self.report.sent + self._live.sent, self.report.failed + self._live.failed

    # -- database helpers --------------------------------------------------------------------

    def _write(self, work: Callable[[Claims], Any]) -> Any:
        return in_ledger_transaction(self.store, lambda connection: work(Claims(connection)))

    def _read(self, work: Callable[[Claims], Any]) -> Any:
        with self.store.read() as connection:
            return work(Claims(connection))
