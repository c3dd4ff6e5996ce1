"""The blocks removed as boilerplate, and the ones the editor kept, over one Connection
(the caller owns the transaction)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from publisher.model import RemovalRule, RemovedBlock
from publisher.store.schema import articles, boilerplate, kept_blocks, removals, withheld_removals

__all__ = ["BoilerplateBlocks"]


class BoilerplateBlocks:
    """`publisher boilerplate list` and `keep` on the store."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def removed(self) -> list[RemovedBlock]:
        """Every block removed from at least one article, by its first removal's time."""
        texts: dict[str, str] = {}
        rules: dict[str, set[RemovalRule]] = defaultdict(set)
        held: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for row in self.connection.execute(
            select(removals.c.key, removals.c.text, removals.c.rule, articles.c.id, articles.c.slug)
            .join(articles, articles.c.id == removals.c.article_id)
            .order_by(removals.c.decided, articles.c.seq)
        ):
            texts.setdefault(row.key, row.text)
            rules[row.key].add(RemovalRule(row.rule))
            held[row.key].append((str(row.id), str(row.slug)))
        return [
            RemovedBlock(key, text, tuple(sorted(rules[key])), tuple(held[key]))
            for key, text in texts.items()
        ]

    def keep(self, key: str, text: str, now: datetime) -> list[str]:
        """Put block `key` back into every article it was removed from, and record it as
        kept so that no rule removes it again. Returns those articles' ids."""
        conn = self.connection
        ids = sorted(
            set(conn.execute(select(removals.c.article_id).where(removals.c.key == key)).scalars())
        )
        conn.execute(delete(removals).where(removals.c.key == key))
        conn.execute(delete(withheld_removals).where(withheld_removals.c.key == key))
        conn.execute(delete(boilerplate).where(boilerplate.c.key == key))
        if conn.execute(select(kept_blocks.c.key).where(kept_blocks.c.key == key)).first() is None:
            conn.execute(insert(kept_blocks).values(key=key, text=text, kept=now))
        return ids
