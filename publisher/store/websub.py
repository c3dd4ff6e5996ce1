"""The built-in WebSub hub's subscriptions over one Connection (the caller owns the
transaction). Only verified subscriptions are stored; an expired one is never returned
and is dropped by the next `prune`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from publisher.store.schema import websub_subscriptions as table

__all__ = ["HubSubscription", "HubSubscriptions"]


@dataclass(frozen=True, slots=True)
class HubSubscription:
    topic: str
    callback: str
    secret: str | None
    expires: datetime


class HubSubscriptions:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def save(
        self,
        *,
        topic: str,
        callback: str,
        host: str,
        secret: str | None,
        now: datetime,
        expires: datetime,
    ) -> None:
        """Add the subscription, or renew it (a new lease and secret) when it exists."""
        same = and_(table.c.topic == topic, table.c.callback == callback)
        renewed = self.connection.execute(
            update(table).where(same).values(secret=secret, expires=expires, host=host)
        ).rowcount
        if not renewed:
            self.connection.execute(
                insert(table).values(
                    topic=topic,
                    callback=callback,
                    host=host,
                    secret=secret,
                    created=now,
                    expires=expires,
                )
            )

    def remove(self, topic: str, callback: str) -> bool:
        same = and_(table.c.topic == topic, table.c.callback == callback)
        return bool(self.connection.execute(delete(table).where(same)).rowcount)

    def exists(self, topic: str, callback: str, now: datetime) -> bool:
        found = self.connection.execute(
            select(table.c.id).where(
                table.c.topic == topic, table.c.callback == callback, table.c.expires > now
            )
        ).first()
        return found is not None

    def active(self, topic: str, now: datetime) -> list[HubSubscription]:
        rows = self.connection.execute(
            select(table.c.topic, table.c.callback, table.c.secret, table.c.expires)
            .where(table.c.topic == topic, table.c.expires > now)
            .order_by(table.c.id)
        )
        return [HubSubscription(r.topic, r.callback, r.secret, r.expires) for r in rows]

    def count_for_host(self, host: str, now: datetime) -> int:
        counted = self.connection.execute(
            select(func.count()).where(table.c.host == host, table.c.expires > now)
        ).scalar_one()
        return int(counted)

    def prune(self, now: datetime) -> int:
        return int(self.connection.execute(delete(table).where(table.c.expires <= now)).rowcount)
