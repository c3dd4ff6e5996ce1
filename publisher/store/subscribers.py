"""Subscriber queries and writes over one Connection (the caller owns the transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, or_, select, update

from publisher.model import Frequency, Subscriber, SubscriberStatus
from publisher.store.schema import subscribers

__all__ = ["Subscribers"]


class Subscribers:
    """The subscriber side of the store, bound to a connection. Emails arrive normalized."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- writes ---------------------------------------------------------------------

    def upsert(
        self,
        *,
        email: str,
        name: str | None,
        categories: Sequence[str],
        frequency: Frequency,
        timezone: str,
        status: SubscriberStatus,
        now: datetime,
    ) -> tuple[Subscriber, bool]:
        """Add, or update the existing row with the same address. Returns (row, created)."""
        existing = self.by_email(email)
        values: dict[str, Any] = {
            "name": name,
            "categories": json.dumps(sorted(set(categories)), ensure_ascii=False),
            "frequency": frequency.value,
            "timezone": timezone,
            "status": status.value,
        }
        if status is SubscriberStatus.CONFIRMED:
            values["confirmed"] = now
            values["unsubscribed"] = None
            values["hard_failures"] = 0
        if existing is None:
            new_id = self.connection.execute(
                insert(subscribers).values(
                    **{"hard_failures": 0, **values, "email": email, "created": now}
                )
            ).inserted_primary_key
            assert new_id is not None
            created = self.get(int(new_id[0]))
            assert created is not None
            return created, True
        if status is SubscriberStatus.CONFIRMED and existing.status is SubscriberStatus.CONFIRMED:
            values.pop("confirmed")  # keep the first confirmation time
        self.connection.execute(
            update(subscribers).where(subscribers.c.id == existing.id).values(**values)
        )
        changed = self.get(existing.id)
        assert changed is not None
        return changed, False

    def insert_record(self, record: Subscriber) -> Subscriber:
        """A new row holding every field of `record` (an import of an export); `id` is new."""
        values = {
            "email": record.email,
            "name": record.name,
            "status": record.status.value,
            "categories": json.dumps(sorted(set(record.categories)), ensure_ascii=False),
            "frequency": record.frequency.value,
            "timezone": record.timezone,
            "created": record.created,
            "confirmed": record.confirmed,
            "unsubscribed": record.unsubscribed,
            "last_digest": record.last_digest,
            "hard_failures": record.hard_failures,
        }
        new_id = self.connection.execute(insert(subscribers).values(**values)).inserted_primary_key
        assert new_id is not None
        created = self.get(int(new_id[0]))
        assert created is not None
        return created

    def forget_details(self, subscriber_id: int) -> None:
        """Keep only what a suppression needs (address, status, times): no name, no choices."""
        self.connection.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(name=None, categories="[]")
        )

    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None:
        values: dict[str, Any] = {"status": status.value}
        if status is SubscriberStatus.CONFIRMED:
            values.update(confirmed=now, unsubscribed=None, hard_failures=0)
        elif status is SubscriberStatus.UNSUBSCRIBED:
            values["unsubscribed"] = now
        self.connection.execute(
            update(subscribers).where(subscribers.c.id == subscriber_id).values(**values)
        )

    def confirmation_sent(self, subscriber_id: int, now: datetime) -> None:
        self.connection.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(confirmation_sent=now)
        )

    def last_confirmation(self, subscriber_id: int) -> datetime | None:
        value: datetime | None = self.connection.execute(
            select(subscribers.c.confirmation_sent).where(subscribers.c.id == subscriber_id)
        ).scalar()
        return value

    def remove(self, email: str) -> bool:
        return bool(
            self.connection.execute(
                delete(subscribers).where(subscribers.c.email == email)
            ).rowcount
        )

    # -- reads ----------------------------------------------------------------------

    def get(self, subscriber_id: int) -> Subscriber | None:
        row = self.connection.execute(
            select(subscribers).where(subscribers.c.id == subscriber_id)
        ).first()
        return None if row is None else _subscriber(row)

    def by_email(self, email: str) -> Subscriber | None:
        row = self.connection.execute(
            select(subscribers).where(subscribers.c.email == email)
        ).first()
        return None if row is None else _subscriber(row)

    def all(self, batch: int = 1000) -> Iterator[Subscriber]:
        """Every subscriber by id, read in pages so a large list never sits in memory."""
        after = 0
        while True:
            page = self.page(after=after, limit=batch)
            if not page:
                return
            yield from page
            after = page[-1].id

    def page(
        self,
        *,
        after: int,
        limit: int,
        status: SubscriberStatus | None = None,
        frequency: Frequency | None = None,
    ) -> list[Subscriber]:
        query = select(subscribers).where(subscribers.c.id > after)
        if status is not None:
            query = query.where(subscribers.c.status == status.value)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == frequency.value)
        rows = self.connection.execute(query.order_by(subscribers.c.id).limit(limit)).all()
        return [_subscriber(row) for row in rows]

    def earliest_window(self, frequency: Frequency | None) -> tuple[datetime | None, bool]:
        """(oldest last_digest, whether some confirmed subscriber never got one)."""
        query = select(
            func.min(subscribers.c.last_digest),
            func.count().filter(subscribers.c.last_digest.is_(None)),
        ).where(subscribers.c.status == SubscriberStatus.CONFIRMED.value)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == frequency.value)
        oldest, never = self.connection.execute(query).one()
        return oldest, bool(never)

    def count(self, status: SubscriberStatus | None = None) -> int:
        query = select(func.count()).select_from(subscribers)
        if status is not None:
            query = query.where(subscribers.c.status == status.value)
        return int(self.connection.execute(query).scalar_one())

    def with_emails(self, emails: Sequence[str]) -> dict[str, Subscriber]:
        if not emails:
            return {}
        rows = self.connection.execute(
            select(subscribers).where(or_(subscribers.c.email.in_(list(emails))))
        ).all()
        return {row.email: _subscriber(row) for row in rows}


def _subscriber(row: Row[Any]) -> Subscriber:
    return Subscriber(
        id=int(row.id),
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        categories=tuple(json.loads(row.categories)),
        frequency=Frequency(row.frequency),
        timezone=row.timezone,
        created=row.created,
        confirmed=row.confirmed,
        unsubscribed=row.unsubscribed,
        last_digest=row.last_digest,
        hard_failures=int(row.hard_failures),
    )
