"""Subscribers: the operator's CRUD and CSV, and the web's subscription service (double
opt-in, confirm, unsubscribe) with its confirmation mail."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.config import Settings
from publisher.errors import PublisherError, SendError
from publisher.links import confirm_path
from publisher.mailer import Mailer
from publisher.messages import (
    InvalidSubscription,
    confirmation_message,
    display_name,
    normalize_email,
    parse_frequency,
    sender_address,
)
from publisher.model import Frequency, Subscriber, SubscriberStatus
from publisher.render import template_environment
from publisher.store import Store
from publisher.store.subscribers import Registration, Subscribers
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens

__all__ = ["ImportReport", "Newsletter"]

log = logging.getLogger("publisher.subscribers")


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
    """Would `status` end a suppression? A web form may make an address that unsubscribed
    pending again, but only its own click on the confirm link lifts the suppression: anyone
    can type an address into the form."""
    held = is_suppressed(existing.status) or (
        existing.status is SubscriberStatus.PENDING and existing.unsubscribed is not None
    )
    return held and status is not existing.status and not is_suppressed(status)


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
    """The subscriber use cases over one store; also the web's SubscriptionService."""

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
        self._outbox: deque[Registration] = deque()  # confirmation mails waiting to be sent
        self._senders = 0

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
        registered = await asyncio.to_thread(
            self._register_pending, address, display_name(name)[:200] or None, clean, chosen
        )
        # rendering and SMTP happen in the background, so a new address answers as fast
        # as a known one; the transaction above ran the same statements for both
        self._enqueue_confirmation(registered)

    def _register_pending(
        self, address: str, name: str | None, categories: list[str], frequency: Frequency
    ) -> Registration | None:
        """The confirmation to mail, or None (confirmed, bounced, or in cool-down)."""
        now = self.clock()
        cooldown = timedelta(seconds=self.settings.server.subscribe_cooldown_seconds)
        with self.store.begin() as connection:
            people = Subscribers(connection)
            self._expire_pending(people, now)
            return people.register_pending(
                email=address,
                name=name,
                categories=categories,
                frequency=frequency,
                timezone=self.settings.timezone,
                now=now,
                cooldown_since=now - cooldown,
            )

    def _expire_pending(self, people: Subscribers, now: datetime) -> None:
        """Unconfirmed for server.pending_expiry_days: runs at every subscribe and confirm."""
        expired = people.expire_pending(
            now - timedelta(days=self.settings.server.pending_expiry_days), now
        )
        if expired:
            log.info("%d unconfirmed subscribers expired", expired)

    def _enqueue_confirmation(self, registered: Registration | None) -> None:
        """Hand a confirmation mail to at most `confirmation_senders` concurrent sends,
        with at most `confirmation_backlog` waiting; beyond that it is dropped (and the
        address may ask again at once): a hanging SMTP server must not collect sockets."""
        if registered is None:
            return
        server = self.settings.server
        if self._senders >= server.confirmation_senders and (
            len(self._outbox) >= server.confirmation_backlog
        ):
            log.warning(
                "confirmation mail to %s dropped: %d mails are waiting for the SMTP server",
                registered.subscriber.email,
                len(self._outbox),
            )
            self._in_background(asyncio.to_thread(self._release_cooldown, registered))
            return
        self._outbox.append(registered)
        if self._senders < server.confirmation_senders:
            self._senders += 1
            self._in_background(self._send_confirmations())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_confirmations(self) -> None:
        try:
            while self._outbox:
                await self._send_confirmation(self._outbox.popleft())
        finally:
            self._senders -= 1

    async def _send_confirmation(self, registered: Registration) -> None:
        """One confirmation mail; if it is not accepted the cool-down is given back."""
        subscriber = registered.subscriber
        try:
            token = self.tokens.make(CONFIRM, subscriber.id, subscriber.email)
            message = confirmation_message(
                self.environment,
                self.settings,
                to_name=subscriber.name,
                to_address=subscriber.email,
                confirm_url=self.settings.url(confirm_path(token)),
                categories=subscriber.categories,
                frequency=subscriber.frequency.value,
                now=self.clock(),
            )
            await Mailer(self.settings.smtp).send_one(
                sender_address(self.settings), subscriber.email, bytes(message)
            )
        except SendError as exc:
            log.warning("confirmation mail to %s failed: %s", subscriber.email, exc.message)
        except Exception:
            log.exception("confirmation mail to %s failed", subscriber.email)
        else:
            return
        await asyncio.to_thread(self._release_cooldown, registered)

    def _release_cooldown(self, registered: Registration) -> None:
        with self.store.begin() as connection:
            Subscribers(connection).release_cooldown(registered)

    async def drain(self) -> None:
        """Wait for confirmation mails still being sent (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def confirm_target(self, token: str) -> str | None:
        """The address a valid confirm token names while it may confirm; nothing changes."""
        claim = self.tokens.check(CONFIRM, token, self.settings.server.token_max_age_seconds)
        if claim is None:
            return None
        return await asyncio.to_thread(
            self._find,
            claim.subscriber_id,
            claim.email,
            (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED),
        )

    async def confirm(self, token: str) -> str | None:
        claim = self.tokens.check(CONFIRM, token, self.settings.server.token_max_age_seconds)
        if claim is None:
            return None
        return await asyncio.to_thread(self._confirm, claim.subscriber_id, claim.email)

    def _confirm(self, subscriber_id: int, email: str) -> str | None:
        """pending -> confirmed, once; a confirmed address stays as it is (the answer is the
        same), and an unsubscribed or bounced one is never brought back by an old link."""
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            self._expire_pending(people, now)
            if people.confirm_pending(subscriber_id, email, now):
                return email
            found = people.get(subscriber_id)
        confirmed = found is not None and found.status is SubscriberStatus.CONFIRMED
        return email if confirmed and found is not None and found.email == email else None

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

    def _find(
        self,
        subscriber_id: int,
        email: str,
        statuses: Sequence[SubscriberStatus] | None = None,
    ) -> str | None:
        with self.store.read() as connection:
            found = Subscribers(connection).get(subscriber_id)
        if found is None or found.email != email:
            return None
        return found.email if statuses is None or found.status in statuses else None

    def _set_status(self, subscriber_id: int, email: str, status: SubscriberStatus) -> str | None:
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.get(subscriber_id)
            if found is None or found.email != email:
                return None  # a token for a removed (or re-created) subscriber
            if found.status is not status:
                people.set_status(subscriber_id, status, self.clock())
            return found.email
