"""Subscribers and digest sending, wired to the store and the mailer (App delegates here).

Sending a digest run, exactly once per (run, subscriber):

1. open the unfinished run of this frequency (a crash or Ctrl-C left it) or create one;
   every selection in a run uses the run's `as_of`, so a re-run selects the same articles;
2. fan out in batches: one 'pending' ledger row per subscriber with something new, with
   its Message-ID (derived from run and subscriber) and article ids;
3. stream the open rows, render each distinct content once, personalize per recipient,
   and hand them to the mailer, which commits 'sending' before each SMTP transaction.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher import digest as selection
from publisher.config import Settings
from publisher.errors import PublisherError, SendError
from publisher.mailer import Mailer, Outgoing, SendReport
from publisher.messages import (
    InvalidSubscription,
    PreparedDigest,
    confirmation_message,
    digest_message_id,
    display_name,
    normalize_email,
    parse_frequency,
    personalize,
    prepare_digest,
    sender_address,
    unsubscribe_mailto,
)
from publisher.model import Article, DigestRun, Frequency, Subscriber, SubscriberStatus
from publisher.render import render, template_environment
from publisher.store import Articles, Store
from publisher.store.deliveries import Deliveries, DeliveryLedger, PlannedDelivery
from publisher.store.subscribers import Subscribers
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens
from publisher.worker import ClaimingSender, worker_name

__all__ = ["DigestReport", "ImportReport", "Newsletter", "Preview"]

log = logging.getLogger("publisher.send")

BATCH = 1000  # subscribers per fan-out transaction and rows per delivery page
_PREPARED_CACHE = 512  # distinct digest contents kept rendered


@dataclass(frozen=True, slots=True)
class Preview:
    recipient: str
    items: int
    subject: str
    size: int
    path: Path


@dataclass
class DigestReport:
    """What one `send` did; `previews` only for a dry run."""

    dry_run: bool
    run_id: int | None = None
    resumed: bool = False
    as_of: datetime | None = None
    sent: int = 0
    skipped_empty: int = 0
    retried: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    digests_rendered: int = 0
    fanned_out: int = 0  # rows open after fan-out (this send's share, or the workers')
    render_seconds: float = 0.0
    seconds: float = 0.0
    deferred: int = 0  # -- hardening --: left open because the SMTP server was unreachable
    unreachable: str | None = None

    def summary(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "skipped-empty": self.skipped_empty,
            "retried": self.retried,
            "failed": self.failed,
            "not-sent": self.deferred,
        }


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


EXPORT_COLUMNS = (
    "email",
    "name",
    "categories",
    "frequency",
    "status",
    "timezone",
    "created",
    "confirmed",
    "unsubscribed",
    "last_digest",
    "hard_failures",
)
# OWASP "CSV injection": a cell starting with one of these is run as a formula
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_spreadsheet(cell: str) -> str:
    """A CSV cell no spreadsheet runs as a formula: a leading ' where it could start one
    (also before a ' that already stands there, so from_spreadsheet restores every cell)."""
    return "'" + cell if cell.lstrip("'").startswith(_FORMULA_START) else cell


def from_spreadsheet(cell: str) -> str:
    """The inverse of to_spreadsheet."""
    escaped = cell.startswith("'") and cell.lstrip("'").startswith(_FORMULA_START)
    return cell[1:] if escaped else cell


def is_suppressed(status: SubscriberStatus) -> bool:
    """Unsubscribed, bounced (or complained): never mailed, never confirmed again unasked."""
    return status not in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)


def _lifts_suppression(existing: Subscriber, status: SubscriberStatus) -> bool:
    return is_suppressed(existing.status) and not is_suppressed(status)


def _exported(s: Subscriber) -> list[str]:
    def moment(value: datetime | None) -> str:
        return value.isoformat() if value is not None else ""

    return [
        s.email,
        s.name or "",
        ";".join(s.categories),
        s.frequency.value,
        s.status.value,
        s.timezone,
        moment(s.created),
        moment(s.confirmed),
        moment(s.unsubscribed),
        moment(s.last_digest),
        str(s.hard_failures),
    ]


def _imported(cells: dict[str, str], timezone: str, now: datetime) -> tuple[Subscriber, bool]:
    """One CSV row as a Subscriber (id 0) and whether it named a status; ValueError if bad."""

    def moment(key: str) -> datetime | None:
        text = cells.get(key, "").strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{key} is not an ISO 8601 time: {text!r}") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    named = cells.get("status", "").strip().lower()
    try:
        status = SubscriberStatus(named) if named else SubscriberStatus.CONFIRMED
    except ValueError:
        known = ", ".join(s.value for s in SubscriberStatus)
        raise ValueError(f"status must be one of {known}, got {named!r}") from None
    zone = cells.get("timezone", "").strip() or timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {zone!r}") from None
    failures = cells.get("hard_failures", "").strip()
    if failures and not failures.isdigit():
        raise ValueError(f"hard_failures must be a whole number, got {failures!r}")
    confirmed = moment("confirmed")
    record = Subscriber(
        id=0,
        email=normalize_email(cells.get("email", "").strip()),
        name=display_name(cells.get("name")) or None,
        status=status,
        categories=tuple(
            c.strip() for c in re.split(r"[;|]", cells.get("categories", "")) if c.strip()
        ),
        frequency=parse_frequency(cells.get("frequency") or None),
        timezone=zone,
        created=moment("created") or now,
        confirmed=confirmed or (now if status is SubscriberStatus.CONFIRMED else None),
        unsubscribed=moment("unsubscribed")
        or (now if status is SubscriberStatus.UNSUBSCRIBED else None),
        last_digest=moment("last_digest"),
        hard_failures=int(failures or 0),
    )
    return record, bool(named)


class Newsletter:
    """The subscriber and digest use cases over one store; also the web's SubscriptionService."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or (lambda: datetime.now(UTC))
        self._environment: Any = None
        self._tokens: Tokens | None = None
        self._background: set[asyncio.Task[None]] = set()

    @property
    def environment(self) -> Any:
        if self._environment is None:
            self._environment = template_environment(self.settings)
        return self._environment

    @property
    def tokens(self) -> Tokens:
        if self._tokens is None:
            self._tokens = Tokens(self.settings.secret_key)
        return self._tokens

    def article_url(self, article: Article) -> str:
        return self.settings.url(f"articles/{article.slug}.html")

    # -- subscribers (CLI) ------------------------------------------------------------

    def add(
        self,
        email: str,
        *,
        name: str | None = None,
        categories: Sequence[str] = (),
        frequency: str | None = None,
        status: SubscriberStatus = SubscriberStatus.CONFIRMED,
        force: bool = False,
    ) -> tuple[Subscriber, bool]:
        """Add (or update) a subscriber; the operator vouches, so confirmed by default.

        An address that unsubscribed, bounced or complained stays so unless `force`."""
        try:
            address = normalize_email(email)
            chosen = parse_frequency(frequency)
        except InvalidSubscription as exc:
            raise PublisherError(str(exc)) from exc
        with self.store.begin() as connection:
            people = Subscribers(connection)
            existing = people.by_email(address)
            if existing is not None and not force and _lifts_suppression(existing, status):
                raise PublisherError(
                    f"{address} is {existing.status.value}: not subscribing it again",
                    "pass --force if they asked to be subscribed again",
                )
            return people.upsert(
                email=address,
                name=display_name(name) or None,
                categories=[c.strip() for c in categories if c.strip()],
                frequency=chosen,
                timezone=self.settings.timezone,
                status=status,
                now=self.clock(),
            )

    def remove(self, email: str) -> Subscriber | None:
        """Delete a subscriber; None. A suppressed one (unsubscribed, bounced) keeps its
        address and status, so no import or add brings it back; that record is returned."""
        try:
            address = normalize_email(email)
        except InvalidSubscription as exc:
            raise PublisherError(str(exc)) from exc
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.by_email(address)
            if found is None:
                raise PublisherError(f"no subscriber {address}", "see `publisher subscribers list`")
            if is_suppressed(found.status):
                people.forget_details(found.id)
                return people.get(found.id)
            people.remove(address)
            return None

    def all(self) -> Iterator[Subscriber]:
        with self.store.read() as connection:
            yield from Subscribers(connection).all()

    def import_csv(self, path: Path, *, force: bool = False) -> ImportReport:
        """Rows of an export (`email,name,categories,frequency,status,...`): every column
        but `email` optional; no status means confirmed (the operator vouches). A suppressed
        address is not made pending or confirmed again unless `force`. Bad rows are reported
        by line, good rows kept."""
        report = ImportReport()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PublisherError(f"{path} is not UTF-8 text", "save the CSV as UTF-8") from exc
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip().lower() for h in reader.fieldnames or []]
        if "email" not in header:
            raise PublisherError(
                f"{path} has no 'email' column", f"the header is: {','.join(EXPORT_COLUMNS)}"
            )
        reader.fieldnames = header
        now = self.clock()
        records: list[tuple[int, Subscriber, bool]] = []
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            cells = {k: from_spreadsheet(v or "") for k, v in row.items() if k is not None}
            try:
                record, has_status = _imported(cells, self.settings.timezone, now)
            except (InvalidSubscription, ValueError) as exc:
                report.errors.append((line, str(exc)))
                continue
            if record.email in seen:
                report.errors.append((line, f"{record.email} repeats line {seen[record.email]}"))
                continue
            seen[record.email] = line
            records.append((line, record, has_status))
        with self.store.begin() as connection:
            people = Subscribers(connection)
            for line, record, has_status in records:
                existing = people.by_email(record.email)
                if existing is None:
                    people.insert_record(record)
                    report.added += 1
                    continue
                status = record.status
                if not has_status and existing.status is not SubscriberStatus.CONFIRMED:
                    status = SubscriberStatus.CONFIRMED  # no status column: the operator vouches
                if is_suppressed(existing.status) and is_suppressed(status):
                    status = existing.status
                elif not force and _lifts_suppression(existing, status):
                    report.errors.append(
                        (
                            line,
                            f"{record.email} is {existing.status.value}: not made "
                            f"{status.value} again (--force to do so)",
                        )
                    )
                    continue
                elif existing.status is SubscriberStatus.CONFIRMED and not is_suppressed(status):
                    status = existing.status  # an older file never undoes a confirmation
                changed, _ = people.upsert(
                    email=record.email,
                    name=record.name,
                    categories=record.categories,
                    frequency=record.frequency,
                    timezone=record.timezone,
                    status=status,
                    now=now,
                )
                if status is SubscriberStatus.UNSUBSCRIBED and changed.unsubscribed is None:
                    people.set_status(changed.id, status, record.unsubscribed or now)
                report.updated += 1
        return report

    def export_csv(self, stream: TextIO) -> int:
        """Every subscriber, suppressed ones too (so the suppression moves with the file),
        each field a column; cells a spreadsheet would run as a formula start with '."""
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        n = 0
        for s in self.all():
            writer.writerow([to_spreadsheet(cell) for cell in _exported(s)])
            n += 1
        return n

    # -- the web's SubscriptionService ----------------------------------------------

    async def subscribe(
        self, email: str, name: str | None, categories: Sequence[str], frequency: str
    ) -> None:
        address = normalize_email(email)
        chosen = parse_frequency(frequency)
        clean = [c.strip()[:200] for c in categories if c.strip()][:50]
        target = await asyncio.to_thread(
            self._register_pending, address, display_name(name)[:200] or None, clean, chosen
        )
        if target is not None:
            # in the background: the answer must not take longer for a new address
            task = asyncio.create_task(self._send_confirmation(target))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _register_pending(
        self, address: str, name: str | None, categories: list[str], frequency: Frequency
    ) -> Subscriber | None:
        """The subscriber to mail a confirmation to, or None (confirmed, or in cool-down)."""
        now = self.clock()
        cooldown = timedelta(seconds=self.settings.server.subscribe_cooldown_seconds)
        with self.store.begin() as connection:
            people = Subscribers(connection)
            existing = people.by_email(address)
            if existing is not None:
                if existing.status is SubscriberStatus.CONFIRMED:
                    return None  # an attacker must not change a confirmed subscription
                last = people.last_confirmation(existing.id)
                if last is not None and now - last < cooldown:
                    return None
            subscriber, _ = people.upsert(
                email=address,
                name=name,
                categories=categories,
                frequency=frequency,
                timezone=self.settings.timezone,
                status=SubscriberStatus.PENDING,
                now=now,
            )
            people.confirmation_sent(subscriber.id, now)
            return subscriber

    async def _send_confirmation(self, subscriber: Subscriber) -> None:
        token = self.tokens.make(CONFIRM, subscriber.id, subscriber.email)
        message = confirmation_message(
            self.environment,
            self.settings,
            to_name=subscriber.name,
            to_address=subscriber.email,
            confirm_url=self.settings.url(f"confirm/{token}"),
            categories=subscriber.categories,
            frequency=subscriber.frequency.value,
            now=self.clock(),
        )
        try:
            await Mailer(self.settings.smtp).send_one(
                sender_address(self.settings), subscriber.email, bytes(message)
            )
        except SendError as exc:
            log.warning("confirmation mail to %s failed: %s", subscriber.email, exc.message)

    async def drain(self) -> None:
        """Wait for confirmation mails still being sent (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def confirm(self, token: str) -> str | None:
        claim = self.tokens.check(CONFIRM, token, self.settings.server.token_max_age_seconds)
        if claim is None:
            return None
        return await asyncio.to_thread(
            self._set_status, claim.subscriber_id, claim.email, SubscriberStatus.CONFIRMED
        )

    async def unsubscribe_target(self, token: str) -> str | None:
        claim = self.tokens.check(
            UNSUBSCRIBE, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        return await asyncio.to_thread(self._find, claim.subscriber_id, claim.email)

    async def unsubscribe(self, token: str) -> str | None:
        claim = self.tokens.check(
            UNSUBSCRIBE, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        return await asyncio.to_thread(
            self._set_status, claim.subscriber_id, claim.email, SubscriberStatus.UNSUBSCRIBED
        )

    def _find(self, subscriber_id: int, email: str) -> str | None:
        with self.store.read() as connection:
            found = Subscribers(connection).get(subscriber_id)
        return found.email if found is not None and found.email == email else None

    def _set_status(self, subscriber_id: int, email: str, status: SubscriberStatus) -> str | None:
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.get(subscriber_id)
            if found is None or found.email != email:
                return None  # a token for a removed (or re-created) subscriber
            if found.status is not status:
                people.set_status(subscriber_id, status, self.clock())
            return found.email

    # -- digests ------------------------------------------------------------------------

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
        its rows; `publisher worker` processes send them. On PostgreSQL this process sends
        by claiming rows like a worker, so it can share the run with running workers.
        """
        chosen = parse_frequency(frequency) if frequency else None
        as_of = now or self.clock()
        if as_of.tzinfo is None:
            raise PublisherError("--now needs a timezone", "e.g. 2026-11-23T08:00:00+08:00")
        if dry_run:
            return await asyncio.to_thread(
                self._preview, chosen, as_of, out_dir or Path("outbox-preview")
            )
        started = time.monotonic()
        run, resumed = await asyncio.to_thread(self._open_run, chosen, as_of)
        report = DigestReport(dry_run=False, run_id=run.id, resumed=resumed, as_of=run.as_of)
        candidates = await asyncio.to_thread(self._candidates, chosen, run.as_of)
        report.skipped_empty = await asyncio.to_thread(self._fan_out, run, chosen, candidates)
        total = await asyncio.to_thread(self._open_count, run.id)
        report.fanned_out = total
        if not (self.settings.workers.deliver_locally if deliver is None else deliver):
            # -- scale-out workers --: fan-out only; workers claim and send the rows
            log.info("digest run %s: %d messages left to the workers", run.id, total)
            report.seconds = time.monotonic() - started
            return report
        done = 0

        def count(smtp: SendReport) -> None:
            nonlocal done
            done = smtp.sent + smtp.failed + smtp.skipped
            if progress is not None:
                progress(done, total)

        if progress is not None:
            progress(0, total)
        by_id = {a.id: a for a in candidates}
        if self.store.dialect == "postgresql":
            # -- scale-out workers --: claim rows with a lease, like `publisher worker`
            async with ClaimingSender(self, name=worker_name("send")) as claiming:
                smtp = await claiming.deliver(
                    run, until_done=True, articles=by_id, digest_report=report, progress=count
                )
        else:
            ledger = DeliveryLedger(self.store, run, bounce_after=self.settings.smtp.bounce_after)
            async with ledger:
                smtp = await Mailer(self.settings.smtp).send_all(
                    self._outgoing(run, by_id, report), ledger, progress=count
                )
        report.sent, report.failed, report.retried = smtp.sent, smtp.failed, smtp.retried
        report.failures = smtp.failures
        report.deferred, report.unreachable = smtp.deferred, smtp.unreachable
        await asyncio.to_thread(self._finish_run, run.id)
        report.seconds = time.monotonic() - started
        return report

    def _open_run(self, frequency: Frequency | None, as_of: datetime) -> tuple[DigestRun, bool]:
        key = frequency.value if frequency else "all"
        with self.store.begin() as connection:
            ledger = Deliveries(connection)
            run = ledger.open_run(key)
            if run is not None:
                log.info("resuming digest run %s (as of %s)", run.id, run.as_of.isoformat())
                return run, True
            return ledger.create_run(key, as_of, self.clock()), False

    def _candidates(self, frequency: Frequency | None, as_of: datetime) -> list[Article]:
        """Every article some due subscriber's window can hold (articles are few)."""
        with self.store.read() as connection:
            oldest, never = Subscribers(connection).earliest_window(frequency)
            starts = [oldest] if oldest is not None else []
            if never:
                periods = (
                    [selection.PERIODS[frequency]] if frequency else selection.PERIODS.values()
                )
                starts.append(as_of - max(periods))
            if not starts:
                return []
            return Articles(connection).ingested_between(min(starts), as_of)

    def _due(
        self,
        frequency: Frequency | None,
        as_of: datetime,
        candidates: Sequence[Article],
        after: int,
    ) -> Iterator[tuple[list[tuple[Subscriber, selection.Digest]], int]]:
        """(page of (subscriber, digest), number with nothing new) per page of due subscribers."""
        cache: dict[tuple[Any, ...], selection.Digest] = {}
        ids = [a.id for a in candidates]
        while True:
            with self.store.read() as connection:
                page = Subscribers(connection).page(
                    after=after, limit=BATCH, status=SubscriberStatus.CONFIRMED, frequency=frequency
                )
                sent = Deliveries(connection).sent_to([s.id for s in page], ids)
            if not page:
                return
            chosen: list[tuple[Subscriber, selection.Digest]] = []
            for s in page:
                already = sent.get(s.id)
                if already:
                    found = selection.select(candidates, s, as_of, already_sent=already)
                else:
                    key = (selection.window_start(s, as_of), s.categories, s.frequency)
                    found = cache.get(key) or cache.setdefault(
                        key, selection.select(candidates, s, as_of)
                    )
                chosen.append((s, found))
            yield chosen, page[-1].id
            after = page[-1].id
            if len(cache) > 10_000:
                cache.clear()

    def _fan_out(
        self, run: DigestRun, frequency: Frequency | None, candidates: Sequence[Article]
    ) -> int:
        with self.store.read() as connection:
            through, skipped_before = Deliveries(connection).fanned_out_through(run.id)
        skipped_total = 0
        for page, last in self._due(frequency, run.as_of, candidates, through):
            planned = [
                PlannedDelivery(
                    s.id, digest_message_id(run.id, s.id, self.settings.host), d.article_ids
                )
                for s, d in page
                if not d.empty
            ]
            skipped = len(page) - len(planned)
            skipped_total += skipped
            with self.store.begin() as connection:
                Deliveries(connection).fan_out(run.id, planned, last, skipped, self.clock())
        with self.store.begin() as connection:
            Deliveries(connection).set_run_status(run.id, "sending", self.clock())
        return skipped_total + skipped_before

    def _open_count(self, run_id: int) -> int:
        with self.store.read() as connection:
            counts = Deliveries(connection).counts(run_id)
        return counts.get("pending", 0) + counts.get("sending", 0)

    def _finish_run(self, run_id: int) -> None:
        with self.store.begin() as connection:
            ledger = Deliveries(connection)
            counts = ledger.counts(run_id)
            if not counts.get("pending") and not counts.get("sending"):
                ledger.set_run_status(run_id, "done", self.clock())

    def _prepared(
        self,
        cache: OrderedDict[tuple[Any, ...], PreparedDigest],
        subscriber: Subscriber,
        articles: Sequence[Article],
        as_of: datetime,
        report: DigestReport,
    ) -> PreparedDigest:
        """Rendered once per distinct content (frequency, categories, articles)."""
        key = (subscriber.frequency, subscriber.categories, tuple(a.id for a in articles))
        prepared = cache.get(key)
        if prepared is None:
            prepared = prepare_digest(
                self.environment,
                self.settings,
                articles=articles,
                frequency=subscriber.frequency.value,
                categories=subscriber.categories,
                as_of=as_of,
                article_url=self.article_url,
            )
            report.digests_rendered += 1
            report.render_seconds += prepared.render_seconds
            cache[key] = prepared
            if len(cache) > _PREPARED_CACHE:
                cache.popitem(last=False)
        return prepared

    @functools.cached_property
    def _mailto_prefix(self) -> str:
        """The List-Unsubscribe mailto before its token: the From address parsed once."""
        return unsubscribe_mailto(self.settings, "")

    def _message(self, prepared: PreparedDigest, subscriber: Subscriber, message_id: str) -> bytes:
        token = self.tokens.make(UNSUBSCRIBE, subscriber.id, subscriber.email)
        return personalize(
            prepared,
            to_name=subscriber.name,
            to_address=subscriber.email,
            message_id=message_id,
            unsubscribe_url=self.settings.url(f"unsubscribe/{token}"),
            unsubscribe_mail=self._mailto_prefix + token,
        )

    async def _outgoing(
        self, run: DigestRun, by_id: dict[str, Article], report: DigestReport
    ) -> AsyncIterator[Outgoing]:
        """The run's open rows as messages, a page at a time (memory stays flat)."""
        sender = sender_address(self.settings)
        cache: OrderedDict[tuple[Any, ...], PreparedDigest] = OrderedDict()
        after = 0
        while True:
            page = await asyncio.to_thread(self._open_rows, run.id, after)
            if not page:
                return
            gone: list[int] = []
            for delivery, subscriber in page:
                after = delivery.id
                if subscriber.status is not SubscriberStatus.CONFIRMED:
                    gone.append(delivery.id)
                    continue
                missing = [i for i in delivery.article_ids if i not in by_id]
                if missing:
                    by_id.update(await asyncio.to_thread(self._load_articles, missing))
                articles = [by_id[i] for i in delivery.article_ids if i in by_id]
                prepared = self._prepared(cache, subscriber, articles, run.as_of, report)
                yield Outgoing(
                    delivery.id,
                    sender,
                    subscriber.email,
                    self._message(prepared, subscriber, delivery.message_id),
                    delivery.message_id,
                )
            if gone:
                await asyncio.to_thread(self._abandon, gone)

    def _open_rows(self, run_id: int, after: int) -> list[Any]:
        with self.store.read() as connection:
            return Deliveries(connection).unfinished(run_id, after=after, limit=BATCH)

    def _load_articles(self, ids: Iterable[str]) -> dict[str, Article]:
        found: dict[str, Article] = {}
        with self.store.read() as connection:
            for article_id in ids:
                article = Articles(connection).get(article_id)
                if article is not None:
                    found[article.id] = article
        return found

    def _abandon(self, ids: list[int]) -> None:
        with self.store.begin() as connection:
            Deliveries(connection).abandon(ids, "subscriber no longer confirmed", self.clock())

    def _preview(self, frequency: Frequency | None, as_of: datetime, out_dir: Path) -> DigestReport:
        """Dry run: every due digest as DIR/<email>.eml plus index.html; records nothing."""
        report = DigestReport(dry_run=True, as_of=as_of)
        out_dir.mkdir(parents=True, exist_ok=True)
        candidates = self._candidates(frequency, as_of)
        cache: OrderedDict[tuple[Any, ...], PreparedDigest] = OrderedDict()
        for page, _ in self._due(frequency, as_of, candidates, 0):
            for subscriber, found in page:
                if found.empty:
                    report.skipped_empty += 1
                    continue
                prepared = self._prepared(cache, subscriber, found.articles, as_of, report)
                data = self._message(
                    prepared,
                    subscriber,
                    digest_message_id("preview", subscriber.id, self.settings.host),
                )
                path = out_dir / f"{_file_name(subscriber.email)}.eml"
                path.write_bytes(data)
                report.previews.append(
                    Preview(subscriber.email, prepared.count, prepared.subject, len(data), path)
                )
        index = render(
            self.environment,
            "preview_index.html.j2",
            previews=report.previews,
            as_of=as_of.astimezone(self.settings.zone),
            skipped_empty=report.skipped_empty,
        )
        (out_dir / "index.html").write_text(index, encoding="utf-8")
        return report


def _file_name(email: str) -> str:
    """An address as a safe file name (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email).lstrip(".") or "recipient"
