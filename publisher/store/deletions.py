"""Deleted articles (the deletions table): written by `articles delete`, read by every output.

The article's row stays in `articles` (archive positions count every row, and a later copy
of it must still be recognised); a row here takes it out of feeds, pages and digests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from publisher.model import DeliveryStatus
from publisher.store.chunks import chunks
from publisher.store.schema import articles, deletions, deliveries

__all__ = ["Deletion", "Deletions"]


@dataclass(frozen=True, slots=True)
class Deletion:
    """One deleted article: when, its category (for its feed's tombstone) and its file."""

    article_id: str
    at: datetime
    category: str
    moved_to: str | None = None  # its file's name in <inbox>/deleted/
    moved_from: str | None = None  # where that file was, relative to the inbox


class Deletions:
    """The deletions table, bound to a connection (the caller owns the transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def ids(self) -> frozenset[str]:
        """Every deleted article's id (a small table: read whole)."""
        return frozenset(self.connection.execute(select(deletions.c.article_id)).scalars())

    def all(self) -> dict[str, Deletion]:
        rows = self.connection.execute(
            select(
                deletions.c.article_id,
                deletions.c.at,
                deletions.c.moved_to,
                deletions.c.moved_from,
                articles.c.category,
            ).join(articles, articles.c.id == deletions.c.article_id)
        )
        return {
            str(row.article_id): Deletion(
                str(row.article_id), row.at, str(row.category), row.moved_to, row.moved_from
            )
            for row in rows
        }

    def get(self, article_id: str) -> Deletion | None:
        return self.all().get(article_id)

    def add(
        self, article_id: str, at: datetime, moved_to: str | None, moved_from: str | None
    ) -> None:
        """Mark it deleted, and release its source key (kept here for a restore)."""
        key = self.connection.execute(
            select(articles.c.source_key).where(articles.c.id == article_id)
        ).scalar()
        self.connection.execute(
            insert(deletions).values(
                article_id=article_id,
                at=at,
                moved_to=moved_to,
                moved_from=moved_from,
                source_key=key,
            )
        )
        self.connection.execute(
            update(articles).where(articles.c.id == article_id).values(source_key=None)
        )

    def remove(self, article_id: str) -> None:
        """Publish it again; its source key comes back unless another article took it."""
        key = self.connection.execute(
            select(deletions.c.source_key).where(deletions.c.article_id == article_id)
        ).scalar()
        self.connection.execute(delete(deletions).where(deletions.c.article_id == article_id))
        if key is None:
            return
        taken = self.connection.execute(
            select(articles.c.id).where(articles.c.source_key == key)
        ).first()
        if taken is None:
            self.connection.execute(
                update(articles).where(articles.c.id == article_id).values(source_key=key)
            )

    def drop_from_pending(self, ids: Iterable[str]) -> int:
        """Take these articles out of every delivery not handed to SMTP yet; the number of
        rows changed. A row already `sending` is left: its message may be on the wire."""
        gone = set(ids)
        changed: list[dict[str, object]] = []
        query = select(deliveries.c.id, deliveries.c.article_ids).where(
            deliveries.c.status == DeliveryStatus.PENDING.value
        )
        for row in self.connection.execute(query):
            held = json.loads(row.article_ids)
            if gone & set(held):
                kept = [i for i in held if i not in gone]
                changed.append({"target": row.id, "new_ids": json.dumps(kept)})
        for chunk in chunks(changed, 500):
            self.connection.execute(
                update(deliveries)
                .where(deliveries.c.id == bindparam("target"))
                .values(article_ids=bindparam("new_ids")),
                chunk,
            )
        return len(changed)
