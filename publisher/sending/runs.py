"""Sending digest runs, exactly once per (run, subscriber).

1. Take the send lock: one sender per database at a time, so two sends never resume the
   same rows or fan the same people out twice; a second sender waits, then finds nothing.
2. Finish every unfinished run (a crash, Ctrl-C or an unreachable server left it),
   whatever its frequency: its rows are promises already made.
3. Open this send's run: every selection in it uses the run's `as_of`, so a resumed run
   selects the same articles. Fan out in pages: one 'pending' row per subscriber with
   something new, with its Message-ID (from run and subscriber) and article ids.
4. Hand the open rows to the producer and the mailer, whose ledger commits 'sending'
   before each SMTP transaction (on PostgreSQL rows are claimed like a worker's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from publisher.config import Settings, ehlo_name, relay_chain
from publisher.consent import send_failure_recorder
from publisher.errors import PublisherError
from publisher.mailer import Mailer, Pacer, SendReport
from publisher.messages import digest_message_id, parse_frequency
from publisher.model import (
    Article,
    DeliveryStatus,
    DigestRun,
    Frequency,
    RunStatus,
    Subscriber,
)
from publisher.sending.archive import ArchivingLedger
from publisher.sending.claiming import ClaimingSender, worker_name
from publisher.sending.due import PAGE, candidates, due_pages
from publisher.sending.preview import DigestPreview
from publisher.sending.produce import DigestProducer, Page
from publisher.sending.reports import DigestReport
from publisher.sending.warmup import DayLimit, WarmupGate
from publisher.store import Store
from publisher.store.ledger import DeliveryLedger
from publisher.store.locks import DatabaseLock
from publisher.store.runs import DigestRuns, PlannedDelivery

__all__ = ["SEND_LOCK", "DigestSender"]

log = logging.getLogger("publisher.send")

SEND_LOCK = "send"
T = TypeVar("T")


class DigestSender:
    """The `send` use case over one store; the scheduler's jobs call it too."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pacer = pacer  # per domain group limits; None: only smtp.rate_per_second
        self.clock = clock or (lambda: datetime.now(UTC))
        self.producer = DigestProducer(settings, store, self.clock)
        self.warmup = WarmupGate(settings)

    async def send(
        self,
        frequency: str | None = None,
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        out_dir: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        deliver: bool | None = None,
    ) -> DigestReport:
        """Build every due digest and send it (or, dry run, write .eml files and record nothing).

        `deliver=False` (default: settings.workers.deliver_locally) only creates the run and
        its rows; `publisher worker` processes send them.
        """
        chosen = parse_frequency(frequency) if frequency else None
        as_of = now or self.clock()
        if as_of.tzinfo is None:
            raise PublisherError("--now needs a timezone", "e.g. 2026-11-23T08:00:00+08:00")
        if dry_run:
            preview = DigestPreview(self.producer)
            return await preview.write(chosen, as_of, out_dir or Path("outbox-preview"))
        async with self._sending_lock():
            return await self._send_due(chosen, as_of, progress, deliver)

    @contextlib.asynccontextmanager
    async def _sending_lock(self) -> AsyncIterator[None]:
        lock = DatabaseLock(self.store, SEND_LOCK)
        waiting = False
        while not await asyncio.to_thread(lock.try_acquire):
            if not waiting:
                holder = lock.holder()
                log.warning(
                    "another publisher send is running%s; waiting for it to finish",
                    f" ({holder})" if holder else "",
                )
                waiting = True
            await asyncio.sleep(0.2)
        try:
            yield
        finally:
            await asyncio.to_thread(lock.release)

    async def _send_due(
        self,
        chosen: Frequency | None,
        as_of: datetime,
        progress: Callable[[int, int], None] | None,
        deliver: bool | None,
    ) -> DigestReport:
        started = time.monotonic()
        key = chosen.value if chosen else "all"
        deliver_now = self.settings.workers.deliver_locally if deliver is None else deliver
        if deliver_now:
            for relay in relay_chain(self.settings.smtp):  # a sender unfit to greet
                ehlo_name(relay)  # any of its relays opens no run
        report = DigestReport(dry_run=False, as_of=as_of)
        unfinished = await asyncio.to_thread(self._read, lambda runs: runs.unfinished_runs())
        for run in unfinished:
            log.info("resuming digest run %s (as of %s)", run.id, run.as_of.isoformat())
            report.resumed = True
            await self._send_run(run, report, progress, deliver_now, as_of)
            if report.unreachable:
                break
        if not report.unreachable and all(run.frequency != key for run in unfinished):
            run = await asyncio.to_thread(self._create_run, key, as_of)
            await self._send_run(run, report, progress, deliver_now, as_of)
        report.warmup = await asyncio.to_thread(self.warmup.state, self.store, as_of)
        report.seconds = time.monotonic() - started
        return report

    async def _send_run(
        self,
        run: DigestRun,
        report: DigestReport,
        progress: Callable[[int, int], None] | None,
        deliver: bool,
        now: datetime,
    ) -> None:
        """Fan one run out (the rest of it, if resumed) and send it; adds to `report`.
        `now`: this send's moment, whose local day warm-up counts (a resumed run's
        `as_of` is an earlier one)."""
        chosen = None if run.frequency == "all" else Frequency(run.frequency)
        report.run_id, report.as_of = run.id, run.as_of
        articles = await asyncio.to_thread(candidates, self.store, chosen, run.as_of)
        paused: list[Subscriber] = []
        report.skipped_empty += await asyncio.to_thread(
            self._fan_out, run, chosen, articles, paused
        )
        report.skipped_paused += len(paused)
        total = await asyncio.to_thread(self._open_count, run.id)
        report.fanned_out += total
        if not deliver:
            log.info("digest run %s: %d messages left to the workers", run.id, total)
            return
        if self.warmup.enabled:  # the bar ends at what today's allowance lets go
            total = await asyncio.to_thread(self._sendable_today, run.id, now, total)

        def count(smtp: SendReport) -> None:
            if progress is not None:
                progress(smtp.sent + smtp.failed + smtp.skipped, total)

        if progress is not None:
            progress(0, total)
        by_id = {a.id: a for a in articles}
        if self.store.dialect == "postgresql":
            # claim rows with a lease, like `publisher worker`, so both can share the run
            async with ClaimingSender(
                self.producer, name=worker_name("send"), clock=lambda: now, pacer=self.pacer
            ) as claiming:
                smtp = await claiming.deliver(
                    run, until_done=True, articles=by_id, digest_report=report, progress=count
                )
        else:
            ledger = DeliveryLedger(
                self.store,
                run,
                bounce_after=self.settings.smtp.bounce_after,
                on_failed=send_failure_recorder(self.settings),
            )
            mailer = Mailer.for_settings(self.settings, pacer=self.pacer)
            pages = self._open_pages(run, now, mailer)
            messages = self.producer.messages(pages, run.as_of, report, by_id)
            archiving = ArchivingLedger(ledger, self.producer.archive)
            async with ledger:
                smtp = await mailer.send_all(messages, archiving, progress=count)
        report.delivery.add(smtp)
        await asyncio.to_thread(self._finish_run, run.id)

    def _create_run(self, key: str, as_of: datetime) -> DigestRun:
        with self.store.begin() as connection:
            return DigestRuns(connection).create_run(key, as_of, self.clock())

    def _fan_out(
        self,
        run: DigestRun,
        frequency: Frequency | None,
        articles: Sequence[Article],
        paused: list[Subscriber] | None = None,
    ) -> int:
        """Write the run's pending rows a page at a time; the number skipped as empty
        (the paused ones, left out, are added to `paused`)."""
        through, skipped_before = self._read(lambda runs: runs.fanned_out_through(run.id))
        skipped_total = 0
        host = self.settings.host
        for page, last in due_pages(
            self.store, frequency, run.as_of, articles, after=through, run_id=run.id, paused=paused
        ):
            planned = [
                PlannedDelivery(s.id, digest_message_id(run.id, s.id, host), d.article_ids)
                for s, d in page
                if not d.empty
            ]
            skipped = len(page) - len(planned)
            skipped_total += skipped
            with self.store.begin() as connection:
                DigestRuns(connection).fan_out(run.id, planned, last, skipped, self.clock())
        with self.store.begin() as connection:
            DigestRuns(connection).set_run_status(run.id, RunStatus.SENDING, self.clock())
        return skipped_total + skipped_before

    def _open_count(self, run_id: int) -> int:
        counts = self._read(lambda runs: runs.counts(run_id))
        return counts.get(DeliveryStatus.PENDING, 0) + counts.get(DeliveryStatus.SENDING, 0)

    def _finish_run(self, run_id: int) -> None:
        with self.store.begin() as connection:
            runs = DigestRuns(connection)
            counts = runs.counts(run_id)
            if not counts.get(DeliveryStatus.PENDING) and not counts.get(DeliveryStatus.SENDING):
                runs.set_run_status(run_id, RunStatus.DONE, self.clock())

    async def _open_pages(
        self, run: DigestRun, now: datetime, mailer: Mailer
    ) -> AsyncIterator[Page]:
        """The run's open rows with their subscribers, a page at a time, in id order.

        Under warm-up: first the rows already let go today (and any left 'sending'),
        then rows let go a page at a time, oldest subscription first, until the day's
        allowance is used; the rest stay pending for a later day. The rows the mailer
        holds back (their domain group's lane is full) stay pending and are read again,
        from the start, once it has room: all in this run."""
        limit = await asyncio.to_thread(self._day_limit, now)
        day = None if limit is None else limit.day
        while True:
            after = 0
            while page := await asyncio.to_thread(self._open_rows, run.id, after, day):
                after = page[-1][0].id
                if admitted := _admitted(mailer, page):
                    yield admitted
            if limit is not None:
                while page := await asyncio.to_thread(self._admit, run.id, limit):
                    if admitted := _admitted(mailer, page):
                        yield admitted
            if not mailer.holding or mailer.unreachable is not None:
                return
            await mailer.room()

    def _open_rows(self, run_id: int, after: int, let_go_on: str | None) -> Page:
        return self._read(
            lambda runs: runs.unfinished(run_id, after=after, limit=PAGE, let_go_on=let_go_on)
        )

    def _sendable_today(self, run_id: int, now: datetime, open_rows: int) -> int:
        with self.store.begin() as connection:
            return self.warmup.sendable(connection, run_id, now, open_rows)

    def _day_limit(self, now: datetime) -> DayLimit | None:
        if not self.warmup.enabled:
            return None
        with self.store.begin() as connection:
            return self.warmup.day_limit(connection, now)

    def _admit(self, run_id: int, limit: DayLimit) -> Page:
        with self.store.begin() as connection:
            return self.warmup.admit(connection, run_id, limit, PAGE)

    def _read(self, work: Callable[[DigestRuns], T]) -> T:
        with self.store.read() as connection:
            return work(DigestRuns(connection))


def _admitted(mailer: Mailer, page: Page) -> Page:
    """The rows of `page` the mailer takes now; the others stay pending for a later pass."""
    chosen = mailer.admitting([(delivery.id, subscriber.email) for delivery, subscriber in page])
    return [pair for pair in page if pair[0].id in chosen]
