"""Webhook tokens and SNS message ids already taken, over one Connection (the caller owns
the transaction). A key is taken once per provider until it expires; expired rows go
with the next `take`, so the table holds one signature window of traffic."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from publisher.store.schema import webhook_replays as table

__all__ = ["Replays"]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class Replays:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def take(self, provider: str, key: str, *, now: datetime, expires: datetime) -> bool:
        """Record `key` as taken until `expires`; False if it is taken already. Two
        processes taking the same key at once: the primary key lets one of them win."""
        self.connection.execute(delete(table).where(table.c.expires < now))
        values = {"provider": provider, "digest": _digest(key), "expires": expires}
        dialect = postgresql if self.connection.dialect.name == "postgresql" else sqlite
        statement = (
            dialect.insert(table)
            .values(values)
            .on_conflict_do_nothing()
            .returning(table.c.digest)  # psycopg reports no rowcount here; a row says it
        )
        return self.connection.execute(statement).first() is not None

    def give_back(self, provider: str, key: str) -> None:
        """Forget `key`: acting on its request failed, so the provider's retry is taken."""
        self.connection.execute(
            delete(table).where(and_(table.c.provider == provider, table.c.digest == _digest(key)))
        )

    def count(self) -> int:
        return int(self.connection.execute(select(func.count()).select_from(table)).scalar_one())
