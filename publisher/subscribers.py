"""The operator's subscriber tools: add, remove, list, and CSV import / export.

Consent is data never lost: an address that unsubscribed or bounced stays suppressed
through every one of these paths unless the operator passes `force`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.config import Settings
from publisher.consent import record_consent
from publisher.errors import PublisherError
from publisher.messages import (
    InvalidSubscription,
    display_name,
    normalize_email,
    parse_frequency,
)
from publisher.model import (
    ConsentEvent,
    ConsentKind,
    ConsentSource,
    Subscriber,
    SubscriberStatus,
)
from publisher.secrecy import address_hash
from publisher.store import Store
from publisher.store.consent import ConsentEvents
from publisher.store.subscribers import Subscribers

__all__ = ["ImportReport", "SubscriberAdmin", "is_suppressed", "stronger_status"]

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


# how strong a suppression is: a complaint or a hard bounce is never downgraded to an
# unsubscribe (their status is what keeps the address from being mailed or re-added)
_STRENGTH = {
    SubscriberStatus.UNSUBSCRIBED: 1,
    SubscriberStatus.BOUNCED: 2,
    SubscriberStatus.COMPLAINED: 3,
}
_SUPPRESSING = {
    ConsentKind.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
    ConsentKind.BOUNCED: SubscriberStatus.BOUNCED,
    ConsentKind.COMPLAINED: SubscriberStatus.COMPLAINED,
}


def stronger_status(current: SubscriberStatus, wanted: SubscriberStatus) -> SubscriberStatus:
    """`wanted` unless `current` is a stronger suppression (complained > bounced >
    unsubscribed); pending and confirmed are no suppression at all."""
    return current if _STRENGTH.get(current, 0) >= _STRENGTH.get(wanted, 0) else wanted


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


class SubscriberAdmin:
    """The subscriber use cases of the CLI over one store."""

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

    # -- what comes back: unsubscribe requests, bounces, complaints ---------------------

    def suppress(
        self,
        email: str,
        kind: ConsentKind,
        *,
        source: ConsentSource,
        detail: str,
        client: str | None = None,
    ) -> Subscriber | None:
        """An unsubscribe, hard bounce or complaint of `email`: its status becomes the
        matching suppression unless it already holds a stronger one, and the event is
        recorded (again on a repeat, which changes nothing else). None, and nothing
        stored, for an unknown address."""
        if kind not in _SUPPRESSING:
            raise ValueError(f"suppress() takes unsubscribed, bounced or complained, not {kind}")
        try:
            address = normalize_email(email.strip())
        except InvalidSubscription:
            return None
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.by_email(address)
            if found is None:
                return None
            status = stronger_status(found.status, _SUPPRESSING[kind])
            if status is not found.status:
                people.set_status(found.id, status, now)
            record_consent(
                ConsentEvents(connection),
                self.settings,
                email=address,
                subscriber_id=found.id,
                kind=kind,
                source=source,
                detail=detail,
                at=now,
                client=client,
            )
            return people.get(found.id)

    def soft_bounced(self, email: str, *, source: ConsentSource, detail: str) -> Subscriber | None:
        """A soft (4.x.x) bounce of `email`, recorded; the `inbound.soft_bounce_limit`-th
        within `inbound.soft_bounce_days` suppresses it as bounced. None for an unknown
        address (nothing stored)."""
        try:
            address = normalize_email(email.strip())
        except InvalidSubscription:
            return None
        policy = self.settings.inbound
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.by_email(address)
            if found is None:
                return None
            events = ConsentEvents(connection)
            record_consent(
                events,
                self.settings,
                email=address,
                subscriber_id=found.id,
                kind=ConsentKind.SOFT_BOUNCED,
                source=source,
                detail=detail,
                at=now,
            )
            since = now - timedelta(days=policy.soft_bounce_days)
            recent = events.count(
                address_hash(address, self.settings.secret_key),
                (ConsentKind.SOFT_BOUNCED,),
                since,
            )
            status = stronger_status(found.status, SubscriberStatus.BOUNCED)
            if recent >= policy.soft_bounce_limit and status is not found.status:
                people.set_status(found.id, status, now)
                record_consent(
                    events,
                    self.settings,
                    email=address,
                    subscriber_id=found.id,
                    kind=ConsentKind.BOUNCED,
                    source=source,
                    detail=f"{recent} soft bounces within {policy.soft_bounce_days:g} days",
                    at=now,
                )
            return people.get(found.id)

    def history(self, email: str) -> list[ConsentEvent]:
        """Every consent event of the address, oldest first; also those recorded while it
        was someone else's row and after its row was deleted (found by its keyed hash)."""
        try:
            address = normalize_email(email.strip())
        except InvalidSubscription as exc:
            raise PublisherError(str(exc)) from exc
        with self.store.read() as connection:
            found = Subscribers(connection).by_email(address)
            return ConsentEvents(connection).history(
                address_hash(address, self.settings.secret_key),
                found.id if found is not None else None,
            )

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
