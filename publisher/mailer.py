"""Adapter: hands messages to an SMTP server with aiosmtplib. The only aiosmtplib import.

A bounded pool of worker tasks, each owning ONE persistent connection (never shared):
reconnect on disconnect, a fresh connection every `messages_per_connection`, a shared rate
limit, retries with exponential backoff and jitter on 4xx replies and connection errors,
and a 5xx reply as a permanent failure for that recipient. Relays in order ([smtp], then
each [[smtp.relays]]): a session that cannot be opened (down, TLS, login refused) moves
the whole pool on to the next relay for the rest of the run; a reply about a recipient
never does.

Exactly-once is the ledger's job, reached through the small `Ledger` protocol (app.py wires
the store's delivery ledger in): `sending()` is awaited — committed — BEFORE the SMTP
transaction starts, `sent()`/`failed()` after. The only message that can repeat after a
crash is the one in flight at that instant, and it keeps its Message-ID.

Pacing per recipient domain group goes through the small `Pacer` protocol (app.py and the
senders wire the database's in): a limited group's messages wait in their own lane for a
slot, so a slow group never holds up the connections the others use; past a lane's
capacity `admitting()` leaves it out and the caller leaves the row pending, to read it again when
the lane has room. A 421 or 451 4.7.x reply pauses the group and puts the message back
in its lane (still 'sending', the same Message-ID): it goes again in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import aiosmtplib

from publisher.config import Settings, SmtpSettings, TlsMode, ehlo_name, relay_chain
from publisher.errors import SendError
from publisher.messages import date_header
from publisher.pacing import is_slow_down
from publisher.secrecy import masked_address, masked_in
from publisher.signing import Signer, signer_for

__all__ = [
    "Ledger",
    "Mailer",
    "Outgoing",
    "Pacer",
    "SendReport",
    "ServerUnreachable",
    "probe_relay",
]

log = logging.getLogger("publisher.mailer")

_CONNECTION_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPHeloError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class ServerUnreachable(SendError):
    """No session could be opened with the last relay (refused, TLS, login): no
    recipient's fault.

    Never counts against a recipient (no bounce) and never marks a row failed: once one
    message has used all its attempts this way, the pool stops and leaves the rest open.
    """

    detail: str = ""  # the reason alone, for "relay X unreachable (detail)"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one recipient; `key` is the ledger's row id."""

    key: int
    sender: str
    recipient: str
    message: bytes
    message_id: str
    # `message` has no Date: one is written at each hand-off (a retry or a resumed run
    # says when it really went out; the Message-ID stays the same)
    stamp_date: bool = False


class Ledger(Protocol):
    """Where the mailer records what it does; committed state, not memory."""

    async def sending(self, item: Outgoing) -> bool:
        """Record 'sending' durably; False means: already done elsewhere, skip it."""
        ...

    async def sent(self, item: Outgoing, attempts: int) -> None: ...

    async def failed(self, item: Outgoing, error: SendError, attempts: int) -> None: ...


class Pacer(Protocol):
    """Per recipient domain group limits shared with every other sending process."""

    def group(self, recipient: str) -> str:
        """The name of the recipient's domain group."""
        ...

    def paced(self, group: str) -> bool:
        """Whether the group's messages wait for slots now (False: unlimited, no pause)."""
        ...

    def capacity(self, group: str) -> int:
        """How many of the group's messages may wait in memory at once."""
        ...

    async def reserve(self, group: str, count: int) -> list[float]:
        """Start times (epoch seconds) of the group's next slots, at most `count`, reserved
        for this process."""
        ...

    async def slow_down(self, group: str) -> None:
        """The group's server asked to slow down: pause it, for every process."""
        ...


# a message answered "slow down" this often goes the ordinary 4xx way (retries, then failed)
MAX_SLOW_DOWNS = 10


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (recipient, error)
    seconds: float = 0.0
    # the server could not be reached; `deferred` rows were left open
    deferred: int = 0
    unreachable: str | None = None
    # rows left pending at least once because their domain group's lane was full
    held: int = 0
    slowed: int = 0  # 421 / 451 4.7.x replies that paused a domain group
    # relays that were down or refused the login, and the one that took over, in one line
    failover: str | None = None

    def add(self, other: SendReport) -> None:
        """Count another pool's sending into this one (a send that finished several runs)."""
        self.sent += other.sent
        self.failed += other.failed
        self.retried += other.retried
        self.skipped += other.skipped
        self.failures.extend(other.failures)
        self.seconds += other.seconds
        self.deferred += other.deferred
        self.held += other.held
        self.slowed += other.slowed
        self.unreachable = self.unreachable or other.unreachable
        self.failover = self.failover or other.failover


class _RateLimit:
    """At most `rate` message starts per second across all workers (0: unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class Mailer:
    """Sends through a pool of `pool_size` connections."""

    def __init__(
        self, settings: SmtpSettings, signer: Signer | None = None, pacer: Pacer | None = None
    ) -> None:
        self.settings = settings
        self.signer = signer
        # [smtp] then each [[smtp.relays]]; `active` only moves forward: the one that took
        # over keeps the rest of the run (a flapping relay does not get every other message)
        self.relays = relay_chain(settings)
        self.helo_names = [ehlo_name(r) for r in self.relays]  # ConfigError before sending
        self.active = 0  # index in `relays` of the relay in use
        self.down: list[tuple[str, str]] = []  # (host:port, why) of each relay given up on
        self.pacer = pacer
        self._lanes = _Lanes(pacer) if pacer is not None else None
        self._rate = _RateLimit(settings.rate_per_second)
        self.unreachable: ServerUnreachable | None = None  # set once: the pool stops
        self.secret_key: str | None = None  # keys the address hash log lines show
        self._date_line: tuple[int, bytes] = (0, b"")

    @classmethod
    def for_settings(
        cls, settings: Settings, smtp: SmtpSettings | None = None, pacer: Pacer | None = None
    ) -> Mailer:
        """The mailer every outgoing mail of these settings goes through: their relay (or
        `smtp`, a variant of it), their DKIM signer and, for digests, the pacer."""
        mailer = cls(smtp or settings.smtp, signer_for(settings), pacer)
        mailer.secret_key = settings.secret_key
        return mailer

    # -- pacing ---------------------------------------------------------------------------

    def admitting(self, page: list[tuple[int, str]]) -> set[int]:
        """The keys of the (row key, recipient) pairs of a page that `send_all` may take
        now: never a row twice, and none while its domain group's lane is full (held: the
        caller leaves it pending and offers it again after `room()`). The rows of the page
        before it are all taken or dropped by then."""
        if self._lanes is None:
            return {key for key, _ in page}
        self._lanes.next_page()
        return {key for key, recipient in page if self._lanes.admits(key, recipient)}

    def handed(self, key: int) -> bool:
        """Whether the row `key` was admitted to this mailer (sent, or on its way)."""
        return self._lanes is not None and key in self._lanes.seen

    @property
    def holding(self) -> int:
        """Rows held back since the last `room()`."""
        return self._lanes.holding if self._lanes is not None else 0

    async def room(self) -> None:
        """Wait until a lane that held rows back has room for them again (or the server
        is found unreachable); then count held rows afresh."""
        if self._lanes is not None:
            self._lanes.next_page()  # asked for after the last page was all taken
            await self._lanes.room_for_held(lambda: self.unreachable is not None)

    def dated(self, item: Outgoing) -> bytes:
        """The bytes to hand over now: a `stamp_date` item gets its Date header here
        (formatted once per second, not per message), then the DKIM signatures, over the
        final headers: a retry or a resumed run is signed afresh with its new Date."""
        message = item.message
        if item.stamp_date:
            now = datetime.now(UTC)
            second = int(now.timestamp())
            if self._date_line[0] != second:
                self._date_line = (second, date_header(now.replace(microsecond=0)))
            message = self._date_line[1] + message
        return message if self.signer is None else self.signer.sign(message)

    def fail_over(self, index: int, problem: ServerUnreachable) -> bool:
        """Relay `index` could not open a session: move on to the next one. False when it
        was the last (the caller raises `problem`); True to connect to `self.active`."""
        if index != self.active:
            return True  # another worker has already moved on from it
        if index + 1 >= len(self.relays):
            return False
        failed, self.active = self.relays[index], index + 1
        self.down.append((failed.name, problem.detail))
        log.info(
            "relay %s unreachable (%s); %s takes over",
            failed.name,
            problem.detail,
            self.relays[self.active].name,
        )
        return True

    def failover_line(self) -> str | None:
        """The line "relay A unreachable (why), sent through B" once B took over, else None."""
        if not self.down or self.unreachable is not None:
            return None
        return f"{self._down_text()}, sent through {self.relays[self.active].name}"

    def _down_text(self) -> str:
        return "; ".join(f"relay {name} unreachable ({why})" for name, why in self.down)

    # -- one-off mail (confirmation) ------------------------------------------------

    async def send_one(self, sender: str, recipient: str, message: bytes) -> None:
        """One message on a short-lived connection, with the same retry rules."""
        worker = _Worker(self, 0)
        try:
            item = Outgoing(0, sender, recipient, message, "")
            await worker.deliver(item, SendReport())
        finally:
            await worker.close()

    # -- the pool ---------------------------------------------------------------------

    async def send_all(
        self,
        items: AsyncIterable[Outgoing],
        ledger: Ledger,
        *,
        progress: Callable[[SendReport], None] | None = None,
    ) -> SendReport:
        """Send every item once; returns counts. Items are pulled lazily (memory stays flat)."""
        report = SendReport()
        started = time.monotonic()
        size = max(1, self.settings.pool_size)
        queue = _Feed(size * 4)
        lanes = self._lanes
        # items taken from `items` and not yet sent, failed or given up: the pool ends
        # when the producer is done and this is 0 (a paused message comes back)
        outstanding = 0
        produced_all = False
        finished = asyncio.Event()

        def done_one() -> None:
            nonlocal outstanding
            outstanding -= 1
            if produced_all and outstanding == 0:
                finished.set()

        async def produce() -> None:
            nonlocal outstanding, produced_all
            async for item in items:
                if self.unreachable is not None:
                    break  # render no more messages for a server that is down
                outstanding += 1
                if lanes is not None and lanes.route(item, queue, lambda: self.unreachable):
                    continue  # waits for its domain group's slot
                # with paced groups the reader must go on to their rows: unpaced rows
                # wait here instead (admission bounds them)
                await queue.put(item, bounded=lanes is None or not lanes.pacing)
            produced_all = True
            if outstanding == 0:
                finished.set()
            await _first(finished, lanes.stop if lanes is not None else None)
            if lanes is not None and lanes.failure is not None:
                raise lanes.failure
            # Only on a normal end: after an error every task is cancelled, and waiting to
            # put into a full queue nobody reads would hang the process.
            for _ in range(size):
                await queue.put(None)

        async def work(number: int) -> None:
            worker = _Worker(self, number)
            try:
                while (item := await queue.get()) is not None:
                    if lanes is not None:
                        lanes.taken(item)
                    if self.unreachable is not None:
                        report.deferred += 1  # still 'pending': the next run sends it
                        done_one()
                        continue
                    if not await ledger.sending(item):
                        report.skipped += 1
                        done_one()
                        continue
                    try:
                        attempts = await worker.deliver(item, report)
                    except _SlowedDown:
                        # not accepted: the row stays 'sending' and goes again, from its
                        # lane, once the domain group's pause is over
                        report.slowed += 1
                        assert lanes is not None
                        await lanes.slow_down(item, queue, lambda: self.unreachable)
                        continue
                    except ServerUnreachable as exc:
                        # never connected, so nothing was handed over: the row stays open
                        # ('sending') and the next run resumes it, like any unfinished row
                        self.unreachable = self.unreachable or exc
                        report.deferred += 1
                    except SendError as exc:
                        report.failed += 1
                        report.failures.append((item.recipient, exc.message))
                        await ledger.failed(item, exc, worker.attempts)
                    else:
                        report.sent += 1
                        await ledger.sent(item, attempts)
                    done_one()
                    if progress is not None:
                        progress(report)
            finally:
                await worker.close()

        producer = asyncio.create_task(produce())
        workers = [asyncio.create_task(work(n)) for n in range(size)]
        try:
            await asyncio.gather(producer, *workers)
        except BaseException:
            for task in [producer, *workers]:
                task.cancel()
            await asyncio.gather(producer, *workers, return_exceptions=True)
            raise
        finally:
            if lanes is not None:
                report.held = lanes.held
                await lanes.close()
        report.seconds = time.monotonic() - started
        if self.unreachable is not None:
            found = self.unreachable
            report.unreachable = found.message + (f" ({found.hint})" if found.hint else "")
            if self.down:
                report.unreachable = f"{self._down_text()}; then {report.unreachable}"
        report.failover = self.failover_line()
        return report


async def _first(event: asyncio.Event, other: asyncio.Event | None) -> None:
    """Wait until `event` (or `other`) is set."""
    if other is None:
        await event.wait()
        return
    waits = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(other.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class _Feed:
    """The pool's intake: messages whose slot has come first (a slot missed is a rate
    lost), then the others, at most `size` of those waiting (memory stays flat)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.due: deque[Outgoing] = deque()
        self.others: deque[Outgoing | None] = deque()
        self.ready = asyncio.Event()
        self.space = asyncio.Event()

    async def put(self, item: Outgoing | None, *, bounded: bool = True) -> None:
        while bounded and len(self.others) >= self.size:
            self.space.clear()
            await self.space.wait()
        self.others.append(item)
        self.ready.set()

    def put_due(self, item: Outgoing) -> None:
        self.due.append(item)
        self.ready.set()

    async def get(self) -> Outgoing | None:
        while not (self.due or self.others):
            self.ready.clear()
            await self.ready.wait()
        if self.due:
            return self.due.popleft()
        self.space.set()
        return self.others.popleft()


class _SlowedDown(SendError):
    """The recipient's server asked to slow down (421, 451 4.7.x): pause its group."""


# unpaced rows waiting for a connection, past which more of them are held back once a
# paced group is being sent (see `_Lanes.admits`)
LOOSE_CAPACITY = 1000
_LOOSE = ""  # `_Lanes.full` member: unpaced rows were held


class _Lanes:
    """The waiting messages of paced domain groups, one lane (and one task handing its
    messages to the pool at their slots) per group."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.seen: set[int] = set()  # rows admitted: one run's pool never takes a row twice
        self.coming: Counter[str] = Counter()  # admitted to a paced lane, not yet there
        self.counted: dict[int, str] = {}  # ... their rows and groups
        self.unrouted: set[int] = set()  # admitted unpaced rows not yet taken from `items`
        self.lanes: dict[str, deque[Outgoing]] = {}
        self.slots: dict[str, deque[float]] = {}
        self.wake: dict[str, asyncio.Event] = {}  # a message came into the lane
        self.paused: dict[str, asyncio.Event] = {}  # the group paused: slots cleared
        self.runners: dict[str, asyncio.Task[None]] = {}
        self.pauses: Counter[str] = Counter()
        self.failure: Exception | None = None  # a lane could not reserve slots
        self.stop = asyncio.Event()  # set with `failure`
        self.slowed: Counter[int] = Counter()
        self.full: set[str] = set()  # groups that held rows back since the last room()
        self.holding = 0
        self.held = 0
        self.pacing = False  # a paced group's row was admitted: unpaced ones are bounded
        self.loose = 0  # admitted rows of unpaced groups no connection has taken yet
        self.loose_keys: set[int] = set()
        self.changed = asyncio.Event()

    def waiting(self, group: str) -> int:
        return self.coming[group] + len(self.lanes.get(group, ()))

    def admits(self, key: int, recipient: str) -> bool:
        if key in self.seen:
            return False
        group = self.pacer.group(recipient)
        if self.pacer.paced(group):
            if self.waiting(group) >= self.pacer.capacity(group):
                self.full.add(group)
                self.holding += 1
                self.held += 1
                return False
            self.coming[group] += 1
            self.counted[key] = group
            self.pacing = True
        elif self.loose >= LOOSE_CAPACITY and self.pacing:
            # a paced group waits for rows behind these: do not let unpaced rows, which
            # go only as fast as the server takes them, keep the reader from coming back
            self.full.add(_LOOSE)
            self.holding += 1
            self.held += 1
            return False
        else:
            self.loose += 1
            self.loose_keys.add(key)
            self.unrouted.add(key)
        self.seen.add(key)
        return True

    def next_page(self) -> None:
        """The caller's previous page is all taken from `items`: rows of it admitted but
        never given as messages (the producer closed them: unsubscribed, emptied) take
        no room any more."""
        for group in self.counted.values():
            self.coming[group] -= 1
        self.counted.clear()
        for key in self.unrouted:
            self.loose_keys.discard(key)
            self.loose -= 1
        self.unrouted.clear()

    def taken(self, item: Outgoing) -> None:
        """A connection took the item."""
        if item.key in self.loose_keys:
            self.loose_keys.discard(item.key)
            self.loose -= 1
            self.changed.set()

    async def room_for_held(self, given_up: Callable[[], bool]) -> None:
        while self.full and not given_up():
            if any(
                self.loose <= LOOSE_CAPACITY // 2
                if group == _LOOSE
                else self.waiting(group) <= self.pacer.capacity(group) // 2
                or not self.pacer.paced(group)
                for group in self.full
            ):
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                # a pause of an unlimited group ends by the clock, not by a message
                await asyncio.wait_for(self.changed.wait(), 1.0)
        self.full.clear()
        self.holding = 0

    def route(
        self,
        item: Outgoing,
        queue: _Feed,
        down: Callable[[], ServerUnreachable | None],
    ) -> bool:
        """Put a paced group's item in its lane (True); False: it goes straight on."""
        group = self.pacer.group(item.recipient)
        self.unrouted.discard(item.key)
        if item.key in self.counted:
            self.coming[self.counted.pop(item.key)] -= 1
        elif not self.pacer.paced(group) and group not in self.lanes:
            return False
        if not self.pacer.paced(group) and not self.lanes.get(group):
            return False
        self._lane(group, queue, down).append(item)
        self.wake[group].set()
        return True

    def _lane(
        self,
        group: str,
        queue: _Feed,
        down: Callable[[], ServerUnreachable | None],
    ) -> deque[Outgoing]:
        if group not in self.lanes:
            self.lanes[group] = deque()
            self.slots[group] = deque()
            self.wake[group] = asyncio.Event()
            self.paused[group] = asyncio.Event()
        runner = self.runners.get(group)
        if runner is None or runner.done():
            self.runners[group] = asyncio.create_task(self._run(group, queue, down))
        return self.lanes[group]

    async def _run(
        self,
        group: str,
        queue: _Feed,
        down: Callable[[], ServerUnreachable | None],
    ) -> None:
        try:
            await self._hand_over(group, queue, down)
        except Exception as exc:  # the database failed: the pool stops and says why
            self.failure = self.failure or exc
            self.stop.set()

    async def _hand_over(
        self,
        group: str,
        queue: _Feed,
        down: Callable[[], ServerUnreachable | None],
    ) -> None:
        """Hand the lane's messages to the pool, each at a slot of its group.

        The next batch of slots is reserved while half of the current one is left, so
        batches follow each other without a gap (a gap would be rate lost: an idle
        group's next slot is now, not when the last batch ended).
        """
        lane, slots, wake = self.lanes[group], self.slots[group], self.wake[group]
        paused = self.paused[group]
        coming: asyncio.Task[list[float]] | None = None
        asked_in = 0  # the pause count when `coming` was asked for
        batch = 1
        while True:
            if not lane:
                wake.clear()
                await wake.wait()
                continue
            if down() is not None:  # nothing goes out: let the pool count them deferred
                queue.put_due(lane.popleft())
                self.changed.set()
                continue
            if coming is not None and coming.done():
                found = coming.result()
                coming = None
                batch = max(batch, len(found))
                if asked_in == self.pauses[group]:  # else: slots from before a pause
                    slots.extend(found)
            if coming is None and len(lane) > len(slots) and len(slots) <= batch // 2:
                asked_in = self.pauses[group]
                coming = asyncio.create_task(self.pacer.reserve(group, len(lane) - len(slots)))
            if not slots:
                assert coming is not None
                await asyncio.wait({coming})
                continue
            delay = slots[0] - time.time()
            if delay > 0:
                paused.clear()
                with contextlib.suppress(TimeoutError):
                    # set early by a pause, which clears the slots: take new ones
                    await asyncio.wait_for(paused.wait(), min(delay, 0.05 if coming else delay))
                continue
            slots.popleft()
            queue.put_due(lane.popleft())
            self.changed.set()

    async def slow_down(
        self,
        item: Outgoing,
        queue: _Feed,
        down: Callable[[], ServerUnreachable | None],
    ) -> None:
        group = self.pacer.group(item.recipient)
        self.slowed[item.key] += 1
        await self.pacer.slow_down(group)
        self._lane(group, queue, down).appendleft(item)
        self.slots[group].clear()  # reserved before the pause
        self.pauses[group] += 1
        self.wake[group].set()
        self.paused[group].set()

    def may_defer(self, item: Outgoing) -> bool:
        return self.slowed[item.key] < MAX_SLOW_DOWNS

    async def close(self) -> None:
        for runner in self.runners.values():
            runner.cancel()
        await asyncio.gather(*self.runners.values(), return_exceptions=True)
        self.runners.clear()


class _Worker:
    """One task's connection: opened lazily, reopened after errors or N messages."""

    def __init__(self, mailer: Mailer, number: int) -> None:
        self.mailer = mailer
        self.settings = mailer.settings
        self.number = number
        self.smtp: aiosmtplib.SMTP | None = None
        self.on_connection = 0
        self.attempts = 0
        self.relay = mailer.relays[mailer.active]  # the relay of the open (or last) session

    async def connect(self, index: int = 0) -> aiosmtplib.SMTP:
        """A session (TLS, login) with relay `index` of the mailer's chain."""
        s = self.mailer.relays[index]
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username or None,
            password=s.password or None,
            use_tls=s.tls is TlsMode.TLS,
            start_tls=s.tls is TlsMode.STARTTLS,
            validate_certs=s.verify_certificate,
            cert_bundle=s.ca_file or None,  # a private CA
            timeout=s.timeout_seconds,
            local_hostname=self.mailer.helo_names[index],  # not socket.getfqdn(): "localhost"
        )
        self.relay = s
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        self.smtp, self.on_connection = smtp, 0
        return smtp

    async def close(self, *, polite: bool = True) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            if polite and smtp.is_connected:
                await asyncio.wait_for(smtp.quit(), timeout=2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            smtp.close()

    async def deliver(self, item: Outgoing, report: SendReport) -> int:
        """Attempts until accepted (returns attempts) or SendError (5xx, or retries used up)."""
        limit = max(1, self.settings.attempts)
        self.attempts = 0
        while True:
            self.attempts += 1
            try:
                await self._transaction(item)
                return self.attempts
            except SendError as exc:
                lanes = self.mailer._lanes
                if (
                    lanes is not None
                    and not isinstance(exc, ServerUnreachable)
                    and is_slow_down(exc.code, exc.message)
                    and lanes.may_defer(item)
                ):
                    raise _SlowedDown(exc.message, code=exc.code, recipient=item.recipient) from exc
                if exc.permanent or self.attempts >= limit:
                    raise
                if isinstance(exc, ServerUnreachable) and self.mailer.unreachable is not None:
                    raise  # another worker already found the server down
                report.retried += 1
                delay = self.settings.backoff_seconds * 2 ** (self.attempts - 1)
                delay *= 0.5 + random.random()  # jitter: workers do not retry in lockstep
                log.info(
                    "retrying %s in %.2fs: %s",
                    masked_address(item.recipient, self.mailer.secret_key),
                    delay,
                    masked_in(exc.message, item.recipient, self.mailer.secret_key),
                )
                await asyncio.sleep(delay)

    async def _transaction(self, item: Outgoing) -> None:
        if self.smtp is not None and (
            not self.smtp.is_connected
            or self.on_connection >= max(1, self.settings.messages_per_connection)
        ):
            await self.close(polite=self.smtp.is_connected)
        await self.mailer._rate.wait()
        smtp = self.smtp or await self._connect_or_raise(item)
        try:
            await _sendmail(smtp, item, self.mailer.dated(item))
            self.on_connection += 1
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused else None
            text = refused.message if refused else str(exc)
            await self._reset_after_refusal()
            raise SendError(
                f"{item.recipient} refused: {code} {text}", code=code, recipient=item.recipient
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset_after_refusal()
            raise SendError(
                f"{item.recipient}: {exc.code} {exc.message}",
                code=exc.code,
                recipient=item.recipient,
            ) from exc
        except _CONNECTION_ERRORS as exc:
            # the connection is in an unknown state: drop it, the retry opens a new one
            await self.close(polite=False)
            raise SendError(
                f"{item.recipient}: connection to {self.relay.name} failed: {exc}",
                "is the SMTP server running? check smtp.host, smtp.port and smtp.tls",
                recipient=item.recipient,
            ) from exc

    async def _connect_or_raise(self, item: Outgoing) -> aiosmtplib.SMTP:
        """Connect (TLS, login) to the relay in use, else to the next ones in turn; a
        failure here is the relays', not the item's."""
        while True:
            index = self.mailer.active
            try:
                return await self.connect(index)
            except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as exc:
                await self.close(polite=False)
                problem = _unreachable(self.mailer.relays[index], index, exc, item)
                if not self.mailer.fail_over(index, problem):
                    raise problem from exc

    async def _reset_after_refusal(self) -> None:
        """aiosmtplib already sent RSET; only a connection lost on the way is dropped."""
        if self.smtp is not None and not self.smtp.is_connected:
            await self.close(polite=False)


def _unreachable(
    relay: SmtpSettings, index: int, exc: BaseException, item: Outgoing
) -> ServerUnreachable:
    """Why relay `index` (0: [smtp], n: [[smtp.relays]] n) opened no session, with the fix."""
    where = "smtp" if index == 0 else f"smtp.relays[{index}]"
    detail = _describe(exc)
    hint = f"is the SMTP server running? check {where}.host, {where}.port and {where}.tls"
    if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
        detail = "its TLS certificate did not verify: " + detail
        hint = (
            f"set {where}.ca_file to the CA that signed it, or (testing only) "
            f"{where}.verify_certificate = false"
        )
    elif isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        detail = f"login refused: {detail}"
        password = "PUBLISHER_SMTP_PASSWORD" if index == 0 else f"{where}.password_env"
        hint = f"check {where}.username and {password}"
    problem = ServerUnreachable(
        f"cannot reach SMTP server {relay.name} ({relay.tls}): {detail}",
        hint,
        recipient=item.recipient,
    )
    problem.detail = detail
    return problem


async def _sendmail(smtp: aiosmtplib.SMTP, item: Outgoing, message: bytes) -> None:
    """`smtp.sendmail(sender, [recipient], message)` for one recipient, without its extra
    passes over the message and the addresses: sendmail() rewrites the whole message once
    only to measure it for SIZE (then data() rewrites it again) and parses each address
    twice. A message already in CRLF form is measured by len(); any other goes the plain way.
    Same commands, same errors: EHLO (or HELO) first, SMTPRecipientsRefused for a refused
    recipient, RSET after a refusal or a malformed recipient (the envelope is not left open).
    """
    if not _is_crlf(message):
        await smtp.sendmail(item.sender, [item.recipient], message)
        return
    if smtp.is_ehlo_or_helo_needed:  # as sendmail(): EHLO first, so SIZE is known
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()
    options = [f"size={len(message)}"] if smtp.supports_extension("size") else []
    try:
        await smtp.mail(item.sender, options=options)
        try:
            await smtp.rcpt(item.recipient)
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise aiosmtplib.SMTPRecipientsRefused([exc]) from None
        await smtp.data(message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused, ValueError):
        # as sendmail() does: reset the envelope, do not report a failing RSET instead
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
        raise


def _is_crlf(message: bytes) -> bool:
    """Every line break is CRLF and the message ends with one: the SMTP form already."""
    crlf = message.count(b"\r\n")
    return (
        message.endswith(b"\r\n") and message.count(b"\n") == crlf and message.count(b"\r") == crlf
    )


def _describe(exc: BaseException) -> str:
    """One line for an exception; never the password (aiosmtplib does not put it in messages)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({str(cause).splitlines()[0]})"
    return text


async def probe_relay(settings: SmtpSettings) -> str | None:
    """Open one session as a send would (TLS, certificate check, login) and quit: None
    when it worked, else why not (`publisher doctor`)."""
    smtp = aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        username=settings.username or None,
        password=settings.password or None,
        use_tls=settings.tls is TlsMode.TLS,
        start_tls=settings.tls is TlsMode.STARTTLS,
        validate_certs=settings.verify_certificate,
        cert_bundle=settings.ca_file or None,
        timeout=min(settings.timeout_seconds, 10.0),
        local_hostname=ehlo_name(settings),
    )
    try:
        await smtp.connect()
        await smtp.quit()
    except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as exc:
        return _describe(exc)
    finally:
        smtp.close()
    return None
