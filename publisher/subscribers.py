"""The operator's subscriber tools: add, remove, list, and CSV import / export.

Consent is data never lost: an address that unsubscribed or bounced stays suppressed
through every one of these paths unless the operator passes `force`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.config import Settings
from publisher.consent import Consent, record_consent, record_consents
from publisher.errors import PublisherError, UsageError
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
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from publisher.secrecy import address_hash, printable
from publisher.store import Articles
from publisher.store.consent import ConsentEvents, Suppression, Suppressions
from publisher.store.subscribers import Subscribers
from publisher.usecase import UseCase

__all__ = [
    "Feedback",
    "ImportReport",
    "SubscriberAdmin",
    "canonical_categories",
    "is_suppressed",
    "known_categories",
    "stronger_status",
]

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
_FEEDBACK = frozenset({*_SUPPRESSING, ConsentKind.SOFT_BOUNCED})


@dataclass(frozen=True, slots=True)
class Feedback:
    """One report about an address, from mail that came back or a provider: `kind` is
    unsubscribed, bounced or complained (a suppression) or soft_bounced (counted toward
    `inbound.soft_bounce_limit`); `client` is the sender's address, when known."""

    email: str
    kind: ConsentKind
    source: ConsentSource
    detail: str
    client: str | None = None


def stronger_status(current: SubscriberStatus, wanted: SubscriberStatus) -> SubscriberStatus:
    """`wanted` unless `current` is a stronger suppression (complained > bounced >
    unsubscribed); pending and confirmed are no suppression at all."""
    return current if _STRENGTH.get(current, 0) >= _STRENGTH.get(wanted, 0) else wanted


def is_suppressed(status: SubscriberStatus) -> bool:
    """Unsubscribed, bounced (or complained): never mailed, never confirmed again unasked."""
    return status not in (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED)


def _held(s: Subscriber) -> SubscriberStatus | None:
    """The suppression a row holds: its status, or unsubscribed for one the form made
    pending again that has not confirmed; None for none."""
    if is_suppressed(s.status):
        return s.status
    if s.status is SubscriberStatus.PENDING and s.unsubscribed is not None:
        return SubscriberStatus.UNSUBSCRIBED
    return None


def _lifts_suppression(existing: Subscriber, status: SubscriberStatus) -> bool:
    """Would `status` end a suppression? A web form may make an address that unsubscribed
    pending again, but only its own click on the confirm link lifts the suppression: anyone
    can type an address into the form."""
    held = is_suppressed(existing.status) or (
        existing.status is SubscriberStatus.PENDING and existing.unsubscribed is not None
    )
    return held and status is not existing.status and not is_suppressed(status)


# the event a status reached by the operator's tools is recorded as
_STATUS_EVENT = {
    SubscriberStatus.PENDING: ConsentKind.SUBSCRIBED,
    SubscriberStatus.CONFIRMED: ConsentKind.CONFIRMED,
    SubscriberStatus.UNSUBSCRIBED: ConsentKind.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED: ConsentKind.BOUNCED,
    SubscriberStatus.COMPLAINED: ConsentKind.COMPLAINED,
}


def _unique(names: Iterable[str]) -> list[str]:
    """First spelling of each name, compared case-insensitively."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.casefold(), name)
    return list(seen.values())


def known_categories(settings: Settings, connection: Any) -> list[str]:
    """Every category a subscriber may choose, in the site's spelling: the configured ones
    (site.categories), then those of stored articles. `connection`: an open transaction."""
    stored = [name for name, _ in Articles(connection).categories()]
    return _unique([*settings.site.category_names, *stored])


def canonical_categories(
    given: Iterable[str], known: Iterable[str], *, force: bool = False
) -> list[str]:
    """`given` in the site's spelling (matched ignoring case); an unknown name is a
    UsageError listing the known ones, unless `force` (then kept as given)."""
    spelling = {name.casefold(): name for name in reversed(_unique(known))}
    chosen: list[str] = []
    for name in (c.strip() for c in given):
        if not name:
            continue
        found = spelling.get(name.casefold())
        if found is None and not force:
            listed = ", ".join(sorted(spelling.values(), key=str.casefold)) or "none yet"
            raise UsageError(
                f"unknown category {name!r}; known: {listed}",
                "check the spelling, or pass --force to use it anyway",
            )
        chosen.append(found or name)
    return _unique(chosen)


def _choices(s: Subscriber) -> str:
    """Categories and frequency as an event's detail shows them (never the name)."""
    return f"categories: {', '.join(s.categories) or 'all'}; frequency: {s.frequency.value}"


def _changes(before: Subscriber, after: Subscriber) -> str | None:
    """What the operator changed, for the history; None when nothing did."""
    moved = []
    if before.name != after.name:
        moved.append("name changed")
    if set(before.categories) != set(after.categories):
        moved.append(
            f"categories: {', '.join(before.categories) or 'all'} -> "
            f"{', '.join(after.categories) or 'all'}"
        )
    if before.frequency is not after.frequency:
        moved.append(f"frequency: {before.frequency.value} -> {after.frequency.value}")
    return "; ".join(moved) or None


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


# the `email` cell of a removed, suppressed address: its keyed hash, never the address
HASH_PREFIX = "#hash:"


def _exported_suppression(entry: Suppression) -> list[str]:
    cells = dict.fromkeys(EXPORT_COLUMNS, "")
    cells.update(
        email=HASH_PREFIX + entry.email_hash,
        status=entry.status.value,
        created=entry.removed.isoformat(),
        unsubscribed=entry.since.isoformat(),
    )
    return [cells[column] for column in EXPORT_COLUMNS]


def _imported_suppression(cells: dict[str, str], now: datetime) -> Suppression:
    """A `#hash:` row of an export: the suppression of a removed address (ValueError if bad)."""
    hashed = cells["email"].removeprefix(HASH_PREFIX).strip()
    if not re.fullmatch(r"[0-9a-f]{64}", hashed):
        raise ValueError(f"{HASH_PREFIX} must be followed by 64 hex digits")
    try:
        status = SubscriberStatus(cells.get("status", "").strip().lower())
    except ValueError:
        status = SubscriberStatus.PENDING
    if not is_suppressed(status):
        raise ValueError(f"a {HASH_PREFIX} row must be unsubscribed, bounced or complained")

    def moment(key: str) -> datetime:
        text = cells.get(key, "").strip()
        try:
            value = datetime.fromisoformat(text) if text else now
        except ValueError:
            raise ValueError(f"{key} is not an ISO 8601 time: {text!r}") from None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    return Suppression(hashed, status, moment("unsubscribed"), moment("created"))


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


def _typed(
    email: str, frequency: str | None, error: type[PublisherError]
) -> tuple[str, Frequency | None]:
    """A typed-in address, normalized, and the frequency if one is given; `error` with
    the reason for either one that is not valid."""
    try:
        address = normalize_email(email.strip())
        return address, parse_frequency(frequency) if frequency else None
    except InvalidSubscription as exc:
        raise error(str(exc)) from exc


class SubscriberAdmin(UseCase):
    """The subscriber use cases of the CLI over one store."""

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
        """Add a subscriber, or update one: only the fields given change (no name, no
        categories, no frequency: those stay). The operator vouches, so confirmed by default.

        Categories are matched case-insensitively and stored as the site spells them; an
        unknown one is a UsageError unless `force`. An address that unsubscribed, bounced or
        complained stays so unless `force` (the refusal is recorded in its history)."""
        address, chosen = _typed(email, frequency, PublisherError)
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            events = ConsentEvents(connection)
            wanted = canonical_categories(
                categories, known_categories(self.settings, connection), force=force
            )
            existing = people.by_email(address)

            def record(kind: ConsentKind, detail: str, subscriber_id: int | None) -> None:
                record_consent(
                    events,
                    self.settings,
                    email=address,
                    subscriber_id=subscriber_id,
                    kind=kind,
                    source=ConsentSource.CLI,
                    detail=detail,
                    at=now,
                )

            hashed = address_hash(address, self.settings.secret_key)
            entries = Suppressions(connection)
            entry = entries.get(hashed) if existing is None else None
            changed: Subscriber | None = None
            refused_status: SubscriberStatus | None = None
            if entry is not None and not is_suppressed(status) and not force:
                record(
                    ConsentKind.SUPPRESSED,
                    f"add refused: the address was removed while {entry.status.value}",
                    None,
                )
                refused_status = entry.status
            elif existing is None:
                stored = stronger_status(entry.status, status) if entry is not None else status
                created, _ = people.upsert(
                    email=address,
                    name=display_name(name) or None,
                    categories=wanted,
                    frequency=chosen or Frequency.WEEKLY,
                    timezone=self.settings.timezone,
                    status=stored,
                    now=now,
                )
                if entry is not None:
                    entries.lift(hashed)  # the row holds the status now
                record(
                    ConsentKind.SUBSCRIBED,
                    f"added by the operator as {stored.value}; {_choices(created)}",
                    created.id,
                )
                if entry is not None and not is_suppressed(stored):
                    record(
                        ConsentKind.FORCED,
                        f"removed while {entry.status.value}; added again by the operator "
                        "(--force)",
                        created.id,
                    )
                return created, True
            if existing is not None:
                lifted = _lifts_suppression(existing, status)
                if lifted and not force:
                    record(
                        ConsentKind.SUPPRESSED,
                        f"add refused: the address is {existing.status.value}",
                        existing.id,
                    )
                    refused_status = existing.status
                else:
                    people.update_details(
                        existing.id,
                        name=(display_name(name) or None) if name is not None else existing.name,
                        categories=wanted if categories else existing.categories,
                        frequency=chosen or existing.frequency,
                    )
                    if status is not existing.status:
                        people.set_status(existing.id, status, now)
                    changed = people.get(existing.id)
                    assert changed is not None
                    if lifted:
                        record(
                            ConsentKind.FORCED,
                            f"{existing.status.value} -> {status.value} by the operator (--force)",
                            existing.id,
                        )
                    elif status is not existing.status:
                        record(
                            _STATUS_EVENT[status],
                            f"{existing.status.value} -> {status.value} by the operator",
                            existing.id,
                        )
                    if (moved := _changes(existing, changed)) is not None:
                        record(ConsentKind.PREFERENCES_CHANGED, moved, existing.id)
        if refused_status is not None:
            raise PublisherError(
                f"{address} is {refused_status.value}: not subscribing it again",
                "pass --force if they asked to be subscribed again",
            )
        assert changed is not None
        return changed, False

    def remove(
        self,
        email: str,
        *,
        source: ConsentSource = ConsentSource.CLI,
        client: str | None = None,
        leaving: bool = False,
    ) -> Subscriber | None:
        """Delete a subscriber (its row, deliveries and personal data); None. One that is
        suppressed (unsubscribed, bounced, complained) stays suppressed as a keyed hash of
        its address with its status, so no add, import or form subscribes it again unasked;
        its record as it was (name and choices erased) is returned. Either way its consent
        history stays, found by the address.

        `leaving`: the subscriber asked for it ("delete me"): unsubscribed first, in the
        same transaction, so the suppression entry is always kept."""
        address, _ = _typed(email, None, PublisherError)
        now = self.clock()
        hashed = address_hash(address, self.settings.secret_key)
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.by_email(address)
            if found is None:
                raise PublisherError(f"no subscriber {address}", "see `publisher subscribers list`")
            if leaving:
                status = stronger_status(found.status, SubscriberStatus.UNSUBSCRIBED)
                if status is not found.status:
                    people.set_status(found.id, status, now)
                record_consent(
                    ConsentEvents(connection),
                    self.settings,
                    email=address,
                    subscriber_id=found.id,
                    kind=ConsentKind.UNSUBSCRIBED,
                    source=source,
                    detail="asked to be deleted (preference centre)",
                    at=now,
                    client=client,
                )
                found = people.get(found.id) or found
            held = _held(found)
            record_consent(
                ConsentEvents(connection),
                self.settings,
                email=address,
                subscriber_id=found.id,
                kind=ConsentKind.REMOVED,
                source=source,
                detail=(
                    f"personal data erased; kept as {held.value} (a keyed hash of the address)"
                    if held is not None
                    else f"removed by the operator (was {found.status.value})"
                ),
                at=now,
                client=client,
            )
            entries = Suppressions(connection)
            if held is not None:
                entries.keep(Suppression(hashed, held, found.unsubscribed or now, now))
            else:
                entries.lift(hashed)
            people.remove(address)
        if held is None:
            return None
        return replace(found, name=None, categories=(), status=held)

    # -- the subscriber's own choices (the preference centre) -----------------------------

    def change_preferences(
        self,
        email: str,
        *,
        categories: Sequence[str] | None = None,
        frequency: str | None = None,
        paused_until: datetime | None = None,
        resume: bool = False,
        source: ConsentSource,
        client: str | None = None,
    ) -> Subscriber | None:
        """What the subscriber chose: categories (empty: all), frequency, a pause until a
        time or its end (`resume`); only what is given changes. Each change is a
        preferences_changed event. None for an unknown address; a UsageError for an
        unknown category (never forced: the subscriber chose from the known ones)."""
        address, chosen = _typed(email, frequency, UsageError)
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.by_email(address)
            if found is None:
                return None
            wanted = (
                canonical_categories(categories, known_categories(self.settings, connection))
                if categories is not None
                else list(found.categories)
            )
            people.update_details(
                found.id,
                name=found.name,
                categories=wanted,
                frequency=chosen or found.frequency,
            )
            moved: list[str] = []
            changed = people.get(found.id)
            assert changed is not None
            if (what := _changes(found, changed)) is not None:
                moved.append(what)
            if paused_until is not None:
                people.pause(found.id, paused_until, now)
                moved.append(f"paused until {paused_until.date().isoformat()}")
            elif resume and found.paused_until is not None:
                people.resume(found.id)
                moved.append("resumed")
            if moved:
                record_consent(
                    ConsentEvents(connection),
                    self.settings,
                    email=address,
                    subscriber_id=found.id,
                    kind=ConsentKind.PREFERENCES_CHANGED,
                    source=source,
                    detail="; ".join(moved),
                    at=now,
                    client=client,
                )
            return people.get(found.id)

    def held_data(self, email: str) -> dict[str, Any] | None:
        """Everything stored about the address (its record and consent history) as JSON
        values; None for an unknown address."""
        try:
            address = normalize_email(email.strip())
        except InvalidSubscription:
            return None
        with self.store.read() as connection:
            found = Subscribers(connection).by_email(address)
            if found is None:
                return None
            events = ConsentEvents(connection).history(
                address_hash(address, self.settings.secret_key), found.id
            )

        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "subscriber": {
                "email": found.email,
                "name": found.name,
                "status": found.status.value,
                "categories": list(found.categories),
                "frequency": found.frequency.value,
                "timezone": found.timezone,
                "created": moment(found.created),
                "confirmed": moment(found.confirmed),
                "unsubscribed": moment(found.unsubscribed),
                "last_digest": moment(found.last_digest),
                "paused_until": moment(found.paused_until),
                "hard_failures": found.hard_failures,
            },
            "consent_history": [
                {
                    "at": e.at.isoformat(),
                    "kind": e.kind.value,
                    "source": e.source.value,
                    "detail": e.detail,
                    "client": e.client,
                }
                for e in events
            ],
        }

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
        [found] = self.record_feedback([Feedback(email, kind, source, detail, client)])
        return found

    def soft_bounced(self, email: str, *, source: ConsentSource, detail: str) -> Subscriber | None:
        """A soft (4.x.x) bounce of `email`, recorded; the `inbound.soft_bounce_limit`-th
        within `inbound.soft_bounce_days` suppresses it as bounced. None for an unknown
        address (nothing stored)."""
        [found] = self.record_feedback([Feedback(email, ConsentKind.SOFT_BOUNCED, source, detail)])
        return found

    def record_feedback(self, reports: Sequence[Feedback]) -> list[Subscriber | None]:
        """Act on each report in order, all in one transaction (a bounce storm is one
        commit per batch, not per address): `suppress` for unsubscribed, bounced and
        complained, `soft_bounced` for soft_bounced, with the same rules (never a weaker
        status, one event each, a repeat changes nothing but the history). For each
        report, its subscriber as stored after the batch, or None (nothing stored) for an
        unknown address."""
        for report in reports:
            if report.kind not in _FEEDBACK:
                raise ValueError(f"not a kind of feedback: {report.kind}")
        addresses: list[str | None] = []
        for report in reports:
            try:
                addresses.append(normalize_email(report.email.strip()))
            except InvalidSubscription:
                addresses.append(None)
        wanted = [a for a in addresses if a is not None]
        if not wanted:
            return [None] * len(reports)
        policy = self.settings.inbound
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            events = ConsentEvents(connection)
            found = people.by_emails(wanted)
            status = {address: s.status for address, s in found.items()}
            soft = self._soft_bounces(events, addresses, reports, found, now)
            consents: list[Consent] = []
            for address, report in zip(addresses, reports, strict=True):
                subscriber = found.get(address) if address is not None else None
                if address is None or subscriber is None:
                    continue
                consents.append(
                    Consent(
                        address,
                        subscriber.id,
                        report.kind,
                        report.source,
                        report.detail,
                        now,
                        report.client,
                    )
                )
                if report.kind is not ConsentKind.SOFT_BOUNCED:
                    status[address] = stronger_status(status[address], _SUPPRESSING[report.kind])
                    continue
                soft[address] += 1
                stronger = stronger_status(status[address], SubscriberStatus.BOUNCED)
                if soft[address] >= policy.soft_bounce_limit and stronger is not status[address]:
                    status[address] = stronger
                    consents.append(
                        Consent(
                            address,
                            subscriber.id,
                            ConsentKind.BOUNCED,
                            report.source,
                            f"{soft[address]} soft bounces within {policy.soft_bounce_days:g} days",
                            now,
                            report.client,
                        )
                    )
            moved: dict[SubscriberStatus, list[int]] = {}
            for address, subscriber in found.items():
                if status[address] is not subscriber.status:
                    moved.setdefault(status[address], []).append(subscriber.id)
            for new_status, ids in moved.items():
                people.set_statuses(ids, new_status, now)
            record_consents(events, self.settings, consents)
            after = people.get_many([s.id for s in found.values()])
        rows = [found[a].id if a is not None and a in found else None for a in addresses]
        return [after.get(row) if row is not None else None for row in rows]

    def _soft_bounces(
        self,
        events: ConsentEvents,
        addresses: Sequence[str | None],
        reports: Sequence[Feedback],
        found: dict[str, Subscriber],
        now: datetime,
    ) -> dict[str, int]:
        """Soft bounces already recorded within `inbound.soft_bounce_days`, per address
        of a soft-bounce report of this batch."""
        hashes = {
            address: address_hash(address, self.settings.secret_key)
            for address, report in zip(addresses, reports, strict=True)
            if address in found and report.kind is ConsentKind.SOFT_BOUNCED
        }
        if not hashes:
            return {}
        since = now - timedelta(days=self.settings.inbound.soft_bounce_days)
        counted = events.counts(hashes.values(), (ConsentKind.SOFT_BOUNCED,), since)
        return {address: counted.get(hashed, 0) for address, hashed in hashes.items()}

    def history(self, email: str) -> list[ConsentEvent]:
        """Every consent event of the address, oldest first; also those recorded while it
        was someone else's row and after its row was deleted (found by its keyed hash)."""
        address, _ = _typed(email, None, PublisherError)
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
        address is not made pending or confirmed again unless `force`; an unknown category
        refuses its row unless `force`. Bad rows are reported by line, good rows kept; each
        row's change is recorded in the address's consent history."""
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
        hashed_rows: list[Suppression] = []
        for row in reader:
            line = reader.line_num
            cells = {k: from_spreadsheet(v or "") for k, v in row.items() if k is not None}
            if cells.get("email", "").startswith(HASH_PREFIX):
                try:
                    hashed_rows.append(_imported_suppression(cells, now))
                except ValueError as exc:
                    report.errors.append((line, str(exc)))
                continue
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
        source = printable(path.name)
        with self.store.begin() as connection:
            people = Subscribers(connection)
            events = ConsentEvents(connection)
            entries = Suppressions(connection)
            for kept in hashed_rows:
                entries.keep(kept)
                report.added += 1
            known = known_categories(self.settings, connection)

            def event(
                record: Subscriber, row_id: int | None, kind: ConsentKind, detail: str
            ) -> None:
                record_consent(
                    events,
                    self.settings,
                    email=record.email,
                    subscriber_id=row_id,
                    kind=kind,
                    source=ConsentSource.IMPORT,
                    detail=f"{source}:{line}: {detail}",
                    at=now,
                )

            for line, record, has_status in records:
                try:
                    wanted = canonical_categories(record.categories, known, force=force)
                except UsageError as exc:
                    report.errors.append((line, exc.message))
                    continue
                record = replace(record, categories=tuple(wanted))
                existing = people.by_email(record.email)
                hashed = address_hash(record.email, self.settings.secret_key)
                entry = entries.get(hashed) if existing is None else None
                if entry is not None:
                    if not is_suppressed(record.status) and not force:
                        event(
                            record,
                            None,
                            ConsentKind.SUPPRESSED,
                            f"import refused: the address was removed while {entry.status.value}",
                        )
                        report.errors.append(
                            (
                                line,
                                f"{record.email} is {entry.status.value}: not made "
                                f"{record.status.value} again (--force to do so)",
                            )
                        )
                        continue
                    if is_suppressed(record.status):
                        record = replace(
                            record,
                            status=stronger_status(entry.status, record.status),
                            unsubscribed=record.unsubscribed or entry.since,
                        )
                    entries.lift(hashed)  # the row holds the status now
                if existing is None:
                    created = people.insert_record(record)
                    event(
                        created,
                        created.id,
                        _STATUS_EVENT[created.status],
                        f"imported as {created.status.value}; {_choices(created)}",
                    )
                    if entry is not None and not is_suppressed(created.status):
                        event(
                            created,
                            created.id,
                            ConsentKind.FORCED,
                            f"removed while {entry.status.value}; imported again (--force)",
                        )
                    report.added += 1
                    continue
                status = record.status
                if not has_status and existing.status is not SubscriberStatus.CONFIRMED:
                    status = SubscriberStatus.CONFIRMED  # no status column: the operator vouches
                lifted = False
                if is_suppressed(existing.status) and is_suppressed(status):
                    status = stronger_status(existing.status, status)
                elif _lifts_suppression(existing, status):
                    if not force:
                        event(
                            existing,
                            existing.id,
                            ConsentKind.SUPPRESSED,
                            f"import refused: the address is {existing.status.value}",
                        )
                        report.errors.append(
                            (
                                line,
                                f"{record.email} is {existing.status.value}: not made "
                                f"{status.value} again (--force to do so)",
                            )
                        )
                        continue
                    lifted = True
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
                moved = f"{existing.status.value} -> {status.value}"
                if lifted:
                    event(existing, existing.id, ConsentKind.FORCED, f"{moved} (--force)")
                elif status is not existing.status:
                    event(existing, existing.id, _STATUS_EVENT[status], moved)
                if (choices := _changes(existing, changed)) is not None:
                    event(existing, existing.id, ConsentKind.PREFERENCES_CHANGED, choices)
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
        with self.store.read() as connection:
            kept = Suppressions(connection).all()
        for entry in kept:
            writer.writerow(_exported_suppression(entry))
            n += 1
        return n
