"""Consent events and hash-only suppressions over one Connection (the caller owns the
transaction).

Rows are found by the keyed hash of the address, so the history of a deleted subscriber
(its `subscriber_id` set to NULL by the foreign key) stays findable by the address, and a
removed suppressed address stays suppressed without its address being kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select

from publisher.model import ConsentEvent, ConsentKind, ConsentSource, SubscriberStatus
from publisher.store.schema import consent_events, suppressions

__all__ = ["DETAIL_LIMIT", "ConsentEvents", "NewEvent", "Suppression", "Suppressions"]

DETAIL_LIMIT = 500  # characters of `detail` kept (the column's size)
_CLIENT_LIMIT = 64


class ConsentEvents:
    """Records and reads consent events; emails arrive already hashed."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def record(
        self,
        *,
        email_hash: str,
        subscriber_id: int | None,
        kind: ConsentKind,
        source: ConsentSource,
        detail: str,
        at: datetime,
        client: str | None = None,
    ) -> ConsentEvent:
        [event] = self.record_many(
            [NewEvent(email_hash, subscriber_id, kind, source, detail, at, client)]
        )
        return event

    def record_many(self, new: Sequence[NewEvent]) -> list[ConsentEvent]:
        """Store these events, in order, in one statement."""
        stored = [
            ConsentEvent(
                at=item.at,
                kind=item.kind,
                source=item.source,
                detail=item.detail[:DETAIL_LIMIT],
                client=item.client[:_CLIENT_LIMIT] if item.client else None,
            )
            for item in new
        ]
        if stored:
            self.connection.execute(
                insert(consent_events),
                [
                    {
                        "subscriber_id": item.subscriber_id,
                        "email_hash": item.email_hash,
                        "at": event.at,
                        "kind": event.kind.value,
                        "source": event.source.value,
                        "detail": event.detail,
                        "client": event.client,
                    }
                    for item, event in zip(new, stored, strict=True)
                ],
            )
        return stored

    def history(self, email_hash: str, subscriber_id: int | None = None) -> list[ConsentEvent]:
        """Every event of the hash (or of the subscriber row), oldest first."""
        match = consent_events.c.email_hash == email_hash
        if subscriber_id is not None:
            match = or_(match, consent_events.c.subscriber_id == subscriber_id)
        rows = self.connection.execute(
            select(consent_events).where(match).order_by(consent_events.c.at, consent_events.c.id)
        ).all()
        return [_event(row) for row in rows]

    def count(self, email_hash: str, kinds: Iterable[ConsentKind], since: datetime) -> int:
        """Events of these kinds of one address at or after `since`."""
        query = (
            select(func.count())
            .select_from(consent_events)
            .where(
                consent_events.c.email_hash == email_hash,
                consent_events.c.kind.in_([k.value for k in kinds]),
                consent_events.c.at >= since,
            )
        )
        return int(self.connection.execute(query).scalar_one())

    def counts(
        self, email_hashes: Iterable[str], kinds: Iterable[ConsentKind], since: datetime
    ) -> dict[str, int]:
        """`count` for many addresses at once; a hash without events is absent."""
        wanted = sorted(set(email_hashes))
        found: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            query = (
                select(consent_events.c.email_hash, func.count())
                .where(
                    consent_events.c.email_hash.in_(wanted[start : start + 500]),
                    consent_events.c.kind.in_([k.value for k in kinds]),
                    consent_events.c.at >= since,
                )
                .group_by(consent_events.c.email_hash)
            )
            found.update((row[0], int(row[1])) for row in self.connection.execute(query))
        return found


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A consent event to store: its address only as the keyed hash."""

    email_hash: str
    subscriber_id: int | None
    kind: ConsentKind
    source: ConsentSource
    detail: str
    at: datetime
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    """A removed address that stays suppressed: its keyed hash and status only."""

    email_hash: str
    status: SubscriberStatus
    since: datetime
    removed: datetime


class Suppressions:
    """The hash-only suppression list (store.schema.suppressions)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, email_hash: str) -> Suppression | None:
        row = self.connection.execute(
            select(suppressions).where(suppressions.c.email_hash == email_hash)
        ).first()
        if row is None:
            return None
        return Suppression(row.email_hash, SubscriberStatus(row.status), row.since, row.removed)

    def keep(self, entry: Suppression) -> None:
        """Add or replace the entry of its hash."""
        self.lift(entry.email_hash)
        self.connection.execute(
            insert(suppressions).values(
                email_hash=entry.email_hash,
                status=entry.status.value,
                since=entry.since,
                removed=entry.removed,
            )
        )

    def lift(self, email_hash: str) -> None:
        """No entry for this hash any more (a subscriber row holds its status again)."""
        self.connection.execute(delete(suppressions).where(suppressions.c.email_hash == email_hash))

    def all(self) -> list[Suppression]:
        rows = self.connection.execute(select(suppressions).order_by(suppressions.c.removed))
        return [
            Suppression(r.email_hash, SubscriberStatus(r.status), r.since, r.removed) for r in rows
        ]


def _event(row: Any) -> ConsentEvent:
    return ConsentEvent(
        at=row.at,
        kind=ConsentKind(row.kind),
        source=ConsentSource(row.source),
        detail=row.detail,
        client=row.client,
    )
