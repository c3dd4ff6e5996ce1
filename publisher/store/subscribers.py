"""Subscriber queries and writes over one Connection (the caller owns the transaction)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Row,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)

from publisher.model import Frequency, Subscriber, SubscriberStatus
from publisher.store.schema import UTCDateTime, deliveries, pauses, subscribers

__all__ = ["Registration", "Subscribers", "subscriber_from_row"]

# a web form may (re)request a confirmation for these; never for confirmed or bounced ones
_REQUESTABLE = (SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value)


@dataclass(frozen=True, slots=True)
class Registration:
    """A pending subscriber to mail a confirmation to; `previous` is the cool-down it replaced."""

    subscriber: Subscriber
    sent_at: datetime
    previous: datetime | None


def _with_pause() -> Any:
    """Subscriber rows with their pause's end (None when not paused)."""
    return select(subscribers, pauses.c.until.label("paused_until")).select_from(
        subscribers.outerjoin(pauses, pauses.c.subscriber_id == subscribers.c.id)
    )


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

    def update_details(
        self,
        subscriber_id: int,
        *,
        name: str | None,
        categories: Sequence[str],
        frequency: Frequency,
    ) -> None:
        """Name, categories and frequency of one row; its status and times stay."""
        self.connection.execute(
            update(subscribers)
            .where(subscribers.c.id == subscriber_id)
            .values(
                name=name,
                categories=json.dumps(sorted(set(categories)), ensure_ascii=False),
                frequency=frequency.value,
            )
        )

    def set_status(self, subscriber_id: int, status: SubscriberStatus, now: datetime) -> None:
        self.set_statuses((subscriber_id,), status, now)

    def set_statuses(
        self, subscriber_ids: Sequence[int], status: SubscriberStatus, now: datetime
    ) -> None:
        """`set_status` for many rows at once (one statement per chunk)."""
        values: dict[str, Any] = {"status": status.value}
        if status is SubscriberStatus.CONFIRMED:
            values.update(confirmed=now, unsubscribed=None, hard_failures=0)
        elif status is SubscriberStatus.UNSUBSCRIBED:
            values["unsubscribed"] = now
        elif status is SubscriberStatus.COMPLAINED:  # a complaint also unsubscribes
            values["unsubscribed"] = func.coalesce(
                subscribers.c.unsubscribed, literal(now, UTCDateTime())
            )
        for chunk in _chunks(list(subscriber_ids)):
            self.connection.execute(
                update(subscribers).where(subscribers.c.id.in_(chunk)).values(**values)
            )

    def register_pending(
        self,
        *,
        email: str,
        name: str | None,
        categories: Sequence[str],
        frequency: Frequency,
        timezone: str,
        now: datetime,
        cooldown_since: datetime,
        held: tuple[SubscriberStatus, datetime] | None = None,
    ) -> Registration | None:
        """A web subscription: the Registration to mail, or None (known or in cool-down).

        The same three statements run whatever the address is (new, pending, confirmed,
        suppressed, in cool-down) and each writes, so the answer's timing does not tell
        them apart. Writers are serialized, so the row read here is still the row updated.
        Confirmed and bounced rows are never changed; an unsubscribed one becomes pending
        again (it keeps its `unsubscribed` time until it confirms). `held`: the status and
        time of a hash-only suppression of this address, which a new row starts from (an
        unsubscribe: pending but held until it confirms; a bounce or complaint: as it was).
        """
        details: dict[str, Any] = {
            "name": name,
            "categories": json.dumps(sorted(set(categories)), ensure_ascii=False),
            "frequency": frequency.value,
            "timezone": timezone,
        }
        start = SubscriberStatus.PENDING
        if held is not None and held[0] is not SubscriberStatus.UNSUBSCRIBED:
            start = held[0]
        fresh = {
            **details,
            "email": email,
            "status": start.value,
            "created": now,
            "unsubscribed": held[1] if held is not None else None,
            "hard_failures": 0,
        }
        columns = list(fresh)
        moments = ("created", "unsubscribed")
        self.connection.execute(
            insert(subscribers).from_select(
                columns,
                select(
                    *(
                        literal(fresh[c], UTCDateTime()) if c in moments else literal(fresh[c])
                        for c in columns
                    )
                ).where(not_(exists().where(subscribers.c.email == email))),
            )
        )
        row = self.connection.execute(
            select(subscribers).where(subscribers.c.email == email)
        ).first()
        if row is None:  # removed by another writer in between
            return None
        eligible = row.status in _REQUESTABLE and (
            row.confirmation_sent is None or row.confirmation_sent <= cooldown_since
        )
        # the row is written either way (its own values when nothing may change), so a
        # known address commits as much as a new one
        kept = {column: row._mapping[column] for column in details}
        self.connection.execute(
            update(subscribers)
            .where(subscribers.c.id == row.id)
            .values(
                **(details if eligible else kept),
                status=SubscriberStatus.PENDING.value if eligible else row.status,
                confirmation_sent=now if eligible else row.confirmation_sent,
            )
        )
        if not eligible:
            return None
        subscriber = replace(
            subscriber_from_row(row),
            name=name,
            status=SubscriberStatus.PENDING,
            categories=tuple(json.loads(details["categories"])),
            frequency=frequency,
            timezone=timezone,
        )
        return Registration(subscriber, now, row.confirmation_sent)

    def release_cooldown(self, registration: Registration) -> None:
        """The confirmation mail was not accepted: let the address ask again at once."""
        self.connection.execute(
            update(subscribers)
            .where(
                subscribers.c.id == registration.subscriber.id,
                subscribers.c.confirmation_sent == registration.sent_at,
            )
            .values(confirmation_sent=registration.previous)
        )

    def confirm_pending(self, subscriber_id: int, email: str, now: datetime) -> bool:
        """pending -> confirmed; False for every other status (an old link changes nothing)."""
        return bool(
            self.connection.execute(
                update(subscribers)
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.email == email,
                    subscribers.c.status == SubscriberStatus.PENDING.value,
                )
                .values(
                    status=SubscriberStatus.CONFIRMED.value,
                    confirmed=now,
                    unsubscribed=None,
                    hard_failures=0,
                )
            ).rowcount
        )

    def expire_pending(self, before: datetime, now: datetime) -> int:
        """Pending rows whose last confirmation mail went out before `before`: a row never
        anything but pending is deleted; one that was subscribed once goes back to
        unsubscribed (its suppression is kept). Returns how many."""
        stale = and_(
            subscribers.c.status == SubscriberStatus.PENDING.value,
            func.coalesce(subscribers.c.confirmation_sent, subscribers.c.created) < before,
        )
        had_deliveries = exists().where(deliveries.c.subscriber_id == subscribers.c.id)
        history = or_(subscribers.c.unsubscribed.is_not(None), had_deliveries)
        deleted = self.connection.execute(delete(subscribers).where(stale, not_(history))).rowcount
        reverted = self.connection.execute(
            update(subscribers)
            .where(stale, history)
            .values(
                status=SubscriberStatus.UNSUBSCRIBED.value,
                unsubscribed=func.coalesce(subscribers.c.unsubscribed, literal(now, UTCDateTime())),
            )
        ).rowcount
        return int(deleted) + int(reverted)

    def last_confirmation(self, subscriber_id: int) -> datetime | None:
        value: datetime | None = self.connection.execute(
            select(subscribers.c.confirmation_sent).where(subscribers.c.id == subscriber_id)
        ).scalar()
        return value

    def pending_confirmation_sent(self, email: str) -> datetime | None:
        """When the last confirmation mail went to this address while it waits to confirm
        (None for any other status): one statement whatever the address."""
        value: datetime | None = self.connection.execute(
            select(subscribers.c.confirmation_sent).where(
                subscribers.c.email == email,
                subscribers.c.status == SubscriberStatus.PENDING.value,
            )
        ).scalar()
        return value

    def pause(self, subscriber_id: int, until: datetime, now: datetime) -> None:
        """No digest for this subscriber before `until` (replaces an earlier pause)."""
        self.resume(subscriber_id)
        self.connection.execute(
            insert(pauses).values(subscriber_id=subscriber_id, until=until, since=now)
        )

    def resume(self, subscriber_id: int) -> None:
        self.connection.execute(delete(pauses).where(pauses.c.subscriber_id == subscriber_id))

    def remove(self, email: str) -> bool:
        return bool(
            self.connection.execute(
                delete(subscribers).where(subscribers.c.email == email)
            ).rowcount
        )

    # -- reads ----------------------------------------------------------------------

    def get(self, subscriber_id: int) -> Subscriber | None:
        row = self.connection.execute(
            _with_pause().where(subscribers.c.id == subscriber_id)
        ).first()
        return None if row is None else subscriber_from_row(row)

    def by_email(self, email: str) -> Subscriber | None:
        row = self.connection.execute(_with_pause().where(subscribers.c.email == email)).first()
        return None if row is None else subscriber_from_row(row)

    def by_emails(self, emails: Sequence[str]) -> dict[str, Subscriber]:
        """The stored ones of these addresses, by address (one query per chunk)."""
        found: dict[str, Subscriber] = {}
        for chunk in _chunks(sorted(set(emails))):
            rows = self.connection.execute(
                select(subscribers).where(subscribers.c.email.in_(chunk))
            ).all()
            found.update((row.email, subscriber_from_row(row)) for row in rows)
        return found

    def get_many(self, subscriber_ids: Sequence[int]) -> dict[int, Subscriber]:
        """The stored ones of these ids, by id (one query per chunk)."""
        found: dict[int, Subscriber] = {}
        for chunk in _chunks(sorted(set(subscriber_ids))):
            rows = self.connection.execute(
                select(subscribers).where(subscribers.c.id.in_(chunk))
            ).all()
            found.update((row.id, subscriber_from_row(row)) for row in rows)
        return found

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
        query = _with_pause().where(subscribers.c.id > after)
        if status is not None:
            query = query.where(subscribers.c.status == status.value)
        if frequency is not None:
            query = query.where(subscribers.c.frequency == frequency.value)
        rows = self.connection.execute(query.order_by(subscribers.c.id).limit(limit)).all()
        return [subscriber_from_row(row) for row in rows]

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


# values bound per IN (...) list: well under SQLite's and PostgreSQL's limits
_CHUNK = 500
_T = TypeVar("_T")


def _chunks(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def subscriber_from_row(row: Row[Any]) -> Subscriber:
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
        paused_until=row._mapping.get("paused_until"),
    )
