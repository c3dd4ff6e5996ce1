"""Consent events over one Connection (the caller owns the transaction).

Rows are found by the keyed hash of the address, so the history of a deleted subscriber
(its `subscriber_id` set to NULL by the foreign key) stays findable by the address.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select

from publisher.model import ConsentEvent, ConsentKind, ConsentSource
from publisher.store.schema import consent_events

__all__ = ["DETAIL_LIMIT", "ConsentEvents"]

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
        event = ConsentEvent(
            at=at,
            kind=kind,
            source=source,
            detail=detail[:DETAIL_LIMIT],
            client=client[:_CLIENT_LIMIT] if client else None,
        )
        self.connection.execute(
            insert(consent_events).values(
                subscriber_id=subscriber_id,
                email_hash=email_hash,
                at=event.at,
                kind=event.kind.value,
                source=event.source.value,
                detail=event.detail,
                client=event.client,
            )
        )
        return event

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


def _event(row: Any) -> ConsentEvent:
    return ConsentEvent(
        at=row.at,
        kind=ConsentKind(row.kind),
        source=ConsentSource(row.source),
        detail=row.detail,
        client=row.client,
    )
