"""The write side of ingest: facts for a batch of files read in bulk, writes buffered.

A batch is one transaction. Dedup still decides file by file, in order: the facts each
file sees include what the files before it in the batch added (dedup/overlay.py, fed the
rows read here), so a batch gives the same result as one transaction per file, at a
fraction of the round trips. A re-publication is buffered too: its new body replaces what
the buffer held for it, and its stored body is deleted first when the buffer is written.
Writing the buffer is a few executemany statements per batch, whatever the mix of new
articles and updates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import aliased

from publisher.dedup.near import Version
from publisher.dedup.overlay import BatchOverlay, BatchQuestions, updated_on_republication
from publisher.dedup.rules import Decision, Incoming, StoredFacts, leaves_empty, title_key
from publisher.model import FileOutcome
from publisher.store.chunks import chunks
from publisher.store.schema import (
    articles,
    blocks,
    boilerplate,
    ingest_log,
    kept_blocks,
    removals,
    withheld_removals,
)

__all__ = ["IngestBatch"]

_INGESTED = (FileOutcome.ADDED.value, FileOutcome.UPDATED.value)
_NOT_SEEN = (FileOutcome.QUARANTINED.value, FileOutcome.DELETED.value)


class IngestBatch:
    """Bulk-read dedup facts, seen through the overlay of this batch's own writes."""

    def __init__(self, connection: Connection, incoming: Sequence[Incoming], id_host: str) -> None:
        self.connection = connection
        self.overlay = BatchOverlay(id_host)
        self._rows: dict[str, list[dict[str, object]]] = defaultdict(list)
        # buffered new articles (by id), updates of stored ones, and per-article bodies
        self._new_articles: dict[str, dict[str, object]] = {}
        self._updates: dict[str, dict[str, object]] = {}
        self._bodies: dict[str, list[dict[str, object]]] = defaultdict(list)
        self._removals: dict[str, list[dict[str, object]]] = defaultdict(list)
        # stored articles that now come from another file, in the order they moved
        self._moved_sources: dict[str, str] = {}
        self._seen_articles: dict[str, str | None] = {}  # file -> article of its newest log row
        # after flush(): the removals withheld (not applied: they would have left an article
        # empty) that were not recorded before
        self.withheld: list[dict[str, object]] = []
        self._fetch(BatchQuestions.of(incoming))

    # -- reading ---------------------------------------------------------------

    def seen_files(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """(file, raw hash) pairs whose file was last ingested with those exact bytes (a
        file saved back to an earlier version is a change: its article is updated)."""
        wanted = list(pairs)
        if not wanted:
            return set()
        newest: dict[str, tuple[int, str, str | None]] = {}  # file -> (log seq, raw hash, id)
        for chunk in chunks(sorted({name for name, _ in wanted})):
            rows = self.connection.execute(
                select(
                    ingest_log.c.file,
                    ingest_log.c.raw_hash,
                    ingest_log.c.seq,
                    ingest_log.c.article_id,
                ).where(
                    ingest_log.c.file.in_(chunk),  # the leading column of the index
                    # a copy of a deleted article is looked at again: after a restore it
                    # is a duplicate or a correction like any other
                    ingest_log.c.outcome.not_in(_NOT_SEEN),
                )
            )
            for row in rows:
                if row.file not in newest or newest[row.file][0] < row.seq:
                    newest[row.file] = (row.seq, row.raw_hash, row.article_id)
        self._seen_articles.update({file: found[2] for file, found in newest.items()})
        found = {(file, raw_hash) for file, (_, raw_hash, _) in newest.items()}
        return found & set(wanted)

    def seen_article(self, file: str) -> str | None:
        """The article a file named by `seen_files` was last ingested into, if any."""
        return self._seen_articles.get(file)

    def facts(self, item: Incoming) -> StoredFacts:
        return self.overlay.facts(item)

    def updated_dates(self, ids: Iterable[str]) -> dict[str, datetime]:
        wanted = set(ids)
        found = self.overlay.batch_updated(wanted)
        rest = wanted - found.keys()
        if rest:
            rows = self.connection.execute(
                select(articles.c.id, articles.c.updated).where(articles.c.id.in_(rest))
            )
            stored = {str(row.id): row.updated for row in rows}
            self.overlay.load_updated(stored)
            found.update(stored)
        return found

    def versions(self, ids: Sequence[str], zone: tzinfo) -> dict[str, Version]:
        """The current versions of those of `ids` that exist (written earlier in this
        batch, else stored), without the blocks removed from them, dated by `updated` and
        by `published`."""
        updated = self.updated_dates(ids)
        wanted = [article_id for article_id in ids if article_id in updated]
        new = {i: self._new_articles[i] for i in wanted if i in self._new_articles}
        heads: dict[str, tuple[str, datetime]] = {}
        for article_id, values in new.items():
            published = values["published"]
            assert isinstance(published, datetime)
            heads[article_id] = (str(values["title"]), published)
        stored = [i for i in wanted if i not in new]
        if stored:
            for row in self.connection.execute(
                select(articles.c.id, articles.c.title, articles.c.published).where(
                    articles.c.id.in_(stored)
                )
            ):
                heads[str(row.id)] = (str(row.title), row.published)
        texts: dict[str, list[str]] = defaultdict(list)
        unread = [i for i in stored if i not in self._updates]
        if unread:
            removed = and_(removals.c.article_id == articles.c.id, removals.c.key == blocks.c.key)
            for article_id, key, text in self.connection.execute(
                select(articles.c.id, blocks.c.key, blocks.c.text)
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .outerjoin(removals, removed)
                .where(articles.c.id.in_(unread), removals.c.key.is_(None))
                .order_by(blocks.c.article_seq, blocks.c.position)
            ):
                # removals this batch planned on stored articles are not written yet
                if not any(r["key"] == key for r in self._removals.get(article_id, ())):
                    texts[article_id].append(text)
        for article_id in wanted:
            if article_id in unread:
                continue
            gone = {str(r["key"]) for r in self._removals.get(article_id, ())}
            texts[article_id] = [
                str(r["text"]) for r in self._bodies[article_id] if r["key"] not in gone
            ]
        found: dict[str, Version] = {}
        for article_id in wanted:
            if article_id in heads:
                title, published = heads[article_id]
                found[article_id] = Version(
                    title,
                    updated[article_id].astimezone(zone).date(),
                    texts[article_id],
                    published.astimezone(zone).date(),
                )
        return found

    # -- writing ---------------------------------------------------------------

    def add(self, decision: Decision, item: Incoming, *, signature: bytes, now: datetime) -> str:
        """Buffer a new article and the removals its arrival causes; returns its id."""
        article = item.article
        similar = self._similar_slugs(item.slug) if self.overlay.slug_is_taken(item.slug) else ()
        article_id, slug = self.overlay.mint(item, similar)
        self._new_articles[article_id] = {
            "id": article_id,
            "slug": slug,
            "ingested": now,
            "published": article.published,
            "updated": article.published,
            "signature": signature,
            "source_key": item.source_key or None,
            **_columns(item),
        }
        self._write_body(decision, item, article_id, now)
        self.overlay.added(decision, item, article_id)
        return article_id

    def update(self, decision: Decision, item: Incoming, *, signature: bytes, now: datetime) -> str:
        """Update a stored article in place (same id, new `updated`, new body)."""
        article, article_id = item.article, decision.target_id
        assert article_id is not None
        # the target came through updated_dates(), which knows its current `updated`
        stored_updated = self.overlay.updated_of(article_id)
        if stored_updated is None:
            stored_updated = self.connection.execute(
                select(articles.c.updated).where(articles.c.id == article_id)
            ).scalar_one()
        updated = updated_on_republication(stored_updated, article.published, now)
        values = {"updated": updated, "signature": signature, **_columns(item)}
        moves = self.overlay.source_moves(item, article_id)
        if article_id in self._new_articles:  # added earlier in this batch: not stored yet
            self._new_articles[article_id].update(values)
            if moves:
                self._new_articles[article_id]["source_key"] = item.source_key
        else:
            self._updates[article_id] = values
            if moves:
                self._moved_sources.pop(article_id, None)
                self._moved_sources[article_id] = item.source_key
        # the new body replaces the old one, stored or buffered
        self._bodies.pop(article_id, None)
        self._removals.pop(article_id, None)
        self._write_body(decision, item, article_id, now)
        self.overlay.replaced(decision, item, article_id, updated)
        return article_id

    def log(
        self,
        *,
        file: str,
        raw_hash: str,
        outcome: FileOutcome,
        now: datetime,
        content_hash: str | None = None,
        article_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        self._rows["ingest_log"].append(
            {
                "file": file,
                "raw_hash": raw_hash,
                "content_hash": content_hash,
                "outcome": outcome.value,
                "article_id": article_id,
                "reason": reason,
                "at": now,
            }
        )
        if content_hash is not None and outcome in _INGESTED and article_id is not None:
            self.overlay.ingested(content_hash, article_id)

    def flush(self) -> None:
        """Write what is buffered (inside the caller's transaction)."""
        conn = self.connection
        replaced = sorted(self._updates)
        seq_of = self._seqs(replaced)
        for chunk in chunks(replaced):
            replaced_seqs = [seq_of[article_id] for article_id in chunk]
            conn.execute(delete(blocks).where(blocks.c.article_seq.in_(replaced_seqs)))
            conn.execute(delete(removals).where(removals.c.article_id.in_(chunk)))
            conn.execute(delete(withheld_removals).where(withheld_removals.c.article_id.in_(chunk)))
        if self._updates:
            conn.execute(
                update(articles)
                .where(articles.c.id == bindparam("target"))
                .values({name: bindparam(f"new_{name}") for name in _UPDATED_COLUMNS}),
                [
                    {"target": target, **{f"new_{k}": v for k, v in values.items()}}
                    for target, values in self._updates.items()
                ],
            )
        if self._moved_sources:
            conn.execute(
                update(articles)
                .where(articles.c.id == bindparam("target"))
                .values(source_key=bindparam("new_source_key")),
                [
                    {"target": target, "new_source_key": key}
                    for target, key in self._moved_sources.items()
                ],
            )
        removal_rows, withheld = self._new_removals(
            [row for rows in self._removals.values() for row in rows]
        )
        self.withheld = self._new_withheld(withheld)
        if self._new_articles:
            _insert_many(conn, articles, list(self._new_articles.values()))
            seq_of |= self._seqs(sorted(self._new_articles))  # given by the insert
        # in key order: the inserts into the block-key index then sweep it once, page after
        # page, instead of landing on random pages (the (article_seq, position) index grows
        # at its right end whatever the order: this batch's seqs are the newest)
        body_rows = sorted(
            (
                {"article_seq": seq_of[article_id], **row}
                for article_id, rows in self._bodies.items()
                for row in rows
            ),
            key=lambda row: str(row["key"]),
        )
        for table, rows in (
            (blocks, body_rows),
            (boilerplate, self._rows.pop("boilerplate", [])),
            (ingest_log, self._rows.pop("ingest_log", [])),
            (removals, removal_rows),
            (withheld_removals, self.withheld),
        ):
            if rows:
                _insert_many(conn, table, rows)
        self._new_articles.clear()
        self._updates.clear()
        self._moved_sources.clear()
        self._bodies.clear()
        self._removals.clear()

    # -- internals -------------------------------------------------------------

    def _fetch(self, asked: BatchQuestions) -> None:
        """Read what the store knows about the batch's files into the overlay."""
        conn, overlay = self.connection, self.overlay
        for chunk in chunks(sorted(asked.content_hashes)):
            overlay.load_exact(
                conn.execute(
                    select(ingest_log.c.content_hash, ingest_log.c.article_id).where(
                        ingest_log.c.content_hash.in_(chunk), ingest_log.c.outcome.in_(_INGESTED)
                    )
                )
            )
        for chunk in chunks(sorted(asked.source_keys)):
            overlay.load_sources(
                conn.execute(
                    select(articles.c.source_key, articles.c.id, articles.c.content_hash).where(
                        articles.c.source_key.in_(chunk)
                    )
                )
            )
        for chunk in chunks(sorted(asked.block_keys)):
            overlay.load_boilerplate(
                conn.execute(
                    select(boilerplate.c.key, boilerplate.c.text, boilerplate.c.advertises).where(
                        boilerplate.c.key.in_(chunk)
                    )
                )
            )
        before = aliased(blocks)
        for chunk in chunks(sorted(overlay.undeclared(asked.block_keys))):
            overlay.load_holders(
                conn.execute(
                    select(blocks.c.key, articles.c.id, before.c.text, articles.c.title)
                    .join(articles, articles.c.seq == blocks.c.article_seq)
                    .outerjoin(
                        before,
                        and_(
                            before.c.article_seq == blocks.c.article_seq,
                            before.c.position == blocks.c.position - 1,
                        ),
                    )
                    .where(blocks.c.key.in_(chunk))
                )
            )
        for chunk in chunks(sorted(asked.headlines)):
            overlay.load_titles(
                conn.execute(
                    select(articles.c.title_key, articles.c.id).where(
                        articles.c.title_key.in_(chunk)
                    )
                )
            )
        teasers: dict[str, str] = {}
        for chunk in chunks(sorted(asked.titles)):
            for article_id, teaser_key in conn.execute(
                select(articles.c.id, articles.c.teaser_key).where(articles.c.teaser_key.in_(chunk))
            ):
                teasers[article_id] = teaser_key
        tails: list[tuple[str, int, str, str]] = []
        for chunk in chunks(sorted(teasers)):
            tails += conn.execute(
                select(articles.c.id, blocks.c.position, blocks.c.key, blocks.c.text)
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(articles.c.id.in_(chunk))
            )
        overlay.load_advertisers(teasers, tails)
        # every kept block, not only the batch's: a stored teaser's may be one (a small table)
        overlay.load_kept(conn.execute(select(kept_blocks.c.key)).scalars())
        for chunk in chunks(sorted(asked.titles)):
            overlay.load_same_titles(
                conn.execute(
                    select(articles.c.title_key, articles.c.id)
                    .where(articles.c.title_key.in_(chunk))
                    .order_by(articles.c.seq)
                )
            )
        for chunk in chunks(sorted(asked.slugs)):
            overlay.load_slugs(
                conn.execute(select(articles.c.slug).where(articles.c.slug.in_(chunk))).scalars()
            )

    def _seqs(self, ids: Sequence[str]) -> dict[str, int]:
        seq_of: dict[str, int] = {}
        for chunk in chunks(ids):
            rows = self.connection.execute(
                select(articles.c.id, articles.c.seq).where(articles.c.id.in_(chunk))
            )
            seq_of.update((str(row.id), int(row.seq)) for row in rows)
        return seq_of

    def _write_body(
        self, decision: Decision, item: Incoming, article_id: str, now: datetime
    ) -> None:
        self._bodies[article_id] = [
            {"position": i, "key": key, "text": block.text, "markup": block.markup}
            for i, (block, key) in enumerate(zip(item.article.blocks, item.block_keys, strict=True))
        ]
        for key, text, headline in decision.new_boilerplate:
            self._rows["boilerplate"].append(
                {
                    "key": key,
                    "text": text,
                    "decided": now,
                    "advertises": title_key(headline) if headline else None,
                }
            )
        for r in decision.removals:
            self._removals[r.article_id or article_id].append(
                {
                    "article_id": r.article_id or article_id,
                    "key": r.key,
                    "text": r.text,
                    "rule": r.rule.value,
                    "reason": r.reason,
                    "decided": now,
                }
            )

    def _similar_slugs(self, slug: str) -> set[str]:
        """The stored slugs `slug` and `slug-…`, to find the first free `slug-N`."""
        return set(
            self.connection.execute(
                select(articles.c.slug).where(
                    or_(articles.c.slug == slug, articles.c.slug.like(f"{slug}-%"))
                )
            ).scalars()
        )

    def _new_removals(
        self, rows: list[dict[str, object]]
    ) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """The removals to record, new ones only (not already in the database or earlier in
        this buffer), and those withheld: the new removals of an article they would leave
        with no block at all, none of which is applied."""
        if not rows:
            return [], []
        ids = sorted({str(r["article_id"]) for r in rows})
        existing: set[tuple[str, str]] = set()
        # by article id, the leading column of the unique index: a (id, key) row-value IN
        # list is a full scan on SQLite, whose cost grew with the table
        for chunk in chunks(ids):
            existing |= {
                (row.article_id, row.key)
                for row in self.connection.execute(
                    select(removals.c.article_id, removals.c.key).where(
                        removals.c.article_id.in_(chunk)
                    )
                )
            }
        new: dict[str, list[dict[str, object]]] = defaultdict(list)
        for row in rows:
            pair = (str(row["article_id"]), str(row["key"]))
            if pair not in existing:
                existing.add(pair)
                new[pair[0]].append(row)
        gone: dict[str, set[str]] = defaultdict(set)  # recorded before, and planned now
        for article_id, key in existing:
            gone[article_id].add(key)
        body = self._body_keys(sorted(new))
        kept: list[dict[str, object]] = []
        withheld: list[dict[str, object]] = []
        for article_id, planned in new.items():
            emptied = leaves_empty(body.get(article_id, ()), gone[article_id])
            (withheld if emptied else kept).extend(planned)
        # in the order of the unique (article_id, key) index: one sweep of it, not random pages
        return sorted(kept, key=lambda row: (str(row["article_id"]), str(row["key"]))), withheld

    def _body_keys(self, ids: Sequence[str]) -> dict[str, list[str]]:
        """The block keys of these articles: buffered in this batch, else stored."""
        found = {i: [str(row["key"]) for row in self._bodies[i]] for i in ids if i in self._bodies}
        stored = [i for i in ids if i not in found]
        for chunk in chunks(stored):
            for row in self.connection.execute(
                select(articles.c.id, blocks.c.key)
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(articles.c.id.in_(chunk))
            ):
                found.setdefault(str(row.id), []).append(str(row.key))
        return found

    def _new_withheld(self, rows: list[dict[str, object]]) -> list[dict[str, object]]:
        """The withheld removals not recorded yet (a later batch may plan one again)."""
        if not rows:
            return []
        existing: set[tuple[str, str]] = set()
        for chunk in chunks(sorted({str(r["article_id"]) for r in rows})):
            existing |= {
                (row.article_id, row.key)
                for row in self.connection.execute(
                    select(withheld_removals.c.article_id, withheld_removals.c.key).where(
                        withheld_removals.c.article_id.in_(chunk)
                    )
                )
            }
        fresh = []
        for row in rows:
            pair = (str(row["article_id"]), str(row["key"]))
            if pair not in existing:
                existing.add(pair)
                fresh.append(row)
        return fresh


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """On SQLite: executemany straight to the driver, each value through its column's
    own SQLAlchemy bind processor (SQLAlchemy's per-row parameter handling costs more than
    SQLite's insert itself, and a batch writes about a dozen rows per article). PostgreSQL
    keeps SQLAlchemy's path (multi-row inserts there)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(rows[0]))
    order = compiled.positiontup or []
    processors = [table.c[key].type.bind_processor(conn.dialect) for key in order]
    columns = [
        [row[key] for row in rows] if process is None else [process(row[key]) for row in rows]
        for key, process in zip(order, processors, strict=True)
    ]
    conn.exec_driver_sql(str(compiled), list(zip(*columns, strict=True)))


def _columns(item: Incoming) -> dict[str, object]:
    article, teaser = item.article, item.teaser
    return {
        "title": article.title,
        "title_key": title_key(article.title),
        "category": article.category,
        "category_path": json.dumps(list(article.category_path), ensure_ascii=False),
        "author": article.author,
        "source": article.source,
        "content_hash": article.content_hash,
        "source_file": article.source_file,
        "teaser_key": title_key(teaser.headline) if teaser is not None else None,
        "language": article.language,
    }


_UPDATED_COLUMNS = (
    "updated",
    "signature",
    "title",
    "title_key",
    "category",
    "category_path",
    "author",
    "source",
    "content_hash",
    "source_file",
    "teaser_key",
    "language",
)
