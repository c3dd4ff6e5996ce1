"""The write side of ingest: facts for a batch of files fetched in bulk, writes buffered.

A batch is one transaction. Dedup still decides file by file, in order: the facts
each file sees include what the files before it in the batch added (an overlay kept
here), so a batch gives the same result as one transaction per file, at a fraction
of the round trips. A re-publication is buffered too: its new body replaces what the
buffer held for it, its stored body is deleted first when the buffer is written, and the
overlay is corrected, as it changes what later files would see. Writing the buffer is a
few executemany statements per batch, whatever the mix of new articles and updates.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection, Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import aliased

from publisher.dedup import Decision, Holder, StoredFacts, block_key, title_key
from publisher.model import Incoming, ParsedArticle
from publisher.store.chunks import chunks
from publisher.store.schema import articles, blocks, boilerplate, ingest_log, removals

__all__ = ["IngestBatch"]

_INGESTED = ("added", "updated")


class IngestBatch:
    """Bulk-fetched dedup facts plus an overlay of this batch's own writes."""

    def __init__(self, connection: Connection, incoming: Sequence[Incoming], id_host: str) -> None:
        self.connection = connection
        self.incoming = incoming
        self.id_host = id_host
        self._rows: dict[str, list[dict[str, object]]] = defaultdict(list)
        # buffered new articles (by id), updates of stored ones, and per-article bodies
        self._new_articles: dict[str, dict[str, object]] = {}
        self._updates: dict[str, dict[str, object]] = {}
        self._bodies: dict[str, list[dict[str, object]]] = defaultdict(list)
        self._removals: dict[str, list[dict[str, object]]] = defaultdict(list)
        self._stored_updated: dict[str, datetime] = {}
        self._fetch()

    # -- reading ---------------------------------------------------------------

    def seen_files(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """(file, raw hash) pairs already ingested with those exact bytes."""
        wanted = list(pairs)
        if not wanted:
            return set()
        found: set[tuple[str, str]] = set()
        for chunk in chunks(sorted({name for name, _ in wanted})):
            rows = self.connection.execute(
                select(ingest_log.c.file, ingest_log.c.raw_hash).where(
                    ingest_log.c.file.in_(chunk),  # the leading column of the index
                    ingest_log.c.outcome != "quarantined",
                )
            )
            found |= {(row.file, row.raw_hash) for row in rows}
        return found & set(wanted)

    def facts(self, article: ParsedArticle, teaser_headline: str | None) -> StoredFacts:
        exact = self._exact.get(article.content_hash)
        if exact is not None:
            return StoredFacts(exact_article_id=exact)
        keys = {block_key(b.text) for b in article.blocks}
        titles = {}
        if teaser_headline is not None and title_key(teaser_headline) in self._titles:
            titles[title_key(teaser_headline)] = self._titles[title_key(teaser_headline)]
        return StoredFacts(
            boilerplate={k: self._declared[k] for k in keys if k in self._declared},
            holders={
                k: self._holders[k] for k in keys if k not in self._declared and k in self._holders
            },
            titles=titles,
            advertisers=list(self._advertisers.get(title_key(article.title), ())),
        )

    def updated_dates(self, ids: Iterable[str]) -> dict[str, datetime]:
        wanted = set(ids)
        found = {i: self._added_updated[i] for i in wanted if i in self._added_updated}
        rest = wanted - found.keys()
        if rest:
            rows = self.connection.execute(
                select(articles.c.id, articles.c.updated).where(articles.c.id.in_(rest))
            )
            stored = {str(row.id): row.updated for row in rows}
            self._stored_updated.update(stored)
            found.update(stored)
        return found

    # -- writing ---------------------------------------------------------------

    def add(self, decision: Decision, item: Incoming, *, signature: bytes, now: datetime) -> str:
        """Buffer a new article and the removals its arrival causes; returns its id."""
        article = item.article
        slug = self._free_slug(item.slug)
        article_id = f"tag:{self.id_host},{article.published.date().isoformat()}:{slug}"
        self._new_articles[article_id] = {
            "id": article_id,
            "slug": slug,
            "ingested": now,
            "published": article.published,
            "updated": article.published,
            "signature": signature,
            **_columns(article, item.teaser_headline),
        }
        self._write_body(decision, item, article_id, now)
        self._remember(decision, item, article_id)
        return article_id

    def update(self, decision: Decision, item: Incoming, *, signature: bytes, now: datetime) -> str:
        """Update a stored article in place (same id, new `updated`, new body)."""
        article, article_id = item.article, decision.target_id
        assert article_id is not None
        # the target came through updated_dates(), which knows its current `updated`
        stored_updated = self._added_updated.get(article_id) or self._stored_updated.get(article_id)
        if stored_updated is None:
            stored_updated = self.connection.execute(
                select(articles.c.updated).where(articles.c.id == article_id)
            ).scalar_one()
        # A correction dated the same day still has to move `updated` forward.
        updated = article.published if article.published > stored_updated else now
        values = {
            "updated": updated,
            "signature": signature,
            **_columns(article, item.teaser_headline),
        }
        if article_id in self._new_articles:  # added earlier in this batch: not stored yet
            self._new_articles[article_id].update(values)
        else:
            self._updates[article_id] = values
        # the new body replaces the old one, stored or buffered
        self._bodies.pop(article_id, None)
        self._removals.pop(article_id, None)
        self._write_body(decision, item, article_id, now)
        self._forget(article_id)
        self._remember(decision, item, article_id)
        self._added_updated[article_id] = updated
        return article_id

    def log(
        self,
        *,
        file: str,
        raw_hash: str,
        outcome: str,
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
                "outcome": outcome,
                "article_id": article_id,
                "reason": reason,
                "at": now,
            }
        )
        if content_hash is not None and outcome in _INGESTED and article_id is not None:
            self._exact[content_hash] = article_id

    def flush(self) -> None:
        """Write what is buffered (inside the caller's transaction)."""
        conn = self.connection
        replaced = sorted(self._updates)
        seq_of = self._seqs(replaced)
        for chunk in chunks(replaced):
            replaced_seqs = [seq_of[article_id] for article_id in chunk]
            conn.execute(delete(blocks).where(blocks.c.article_seq.in_(replaced_seqs)))
            conn.execute(delete(removals).where(removals.c.article_id.in_(chunk)))
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
        removal_rows = self._new_removals([row for rows in self._removals.values() for row in rows])
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
        ):
            if rows:
                _insert_many(conn, table, rows)
        self._new_articles.clear()
        self._updates.clear()
        self._bodies.clear()
        self._removals.clear()

    # -- internals -------------------------------------------------------------

    def _fetch(self) -> None:
        conn = self.connection
        hashes = {item.article.content_hash for item in self.incoming}
        keys = {block_key(b.text) for item in self.incoming for b in item.article.blocks}
        headlines = {title_key(i.teaser_headline) for i in self.incoming if i.teaser_headline}
        own_titles = {title_key(item.article.title) for item in self.incoming}
        self._exact: dict[str, str] = {}
        for chunk in chunks(sorted(hashes)):
            for row in conn.execute(
                select(ingest_log.c.content_hash, ingest_log.c.article_id).where(
                    ingest_log.c.content_hash.in_(chunk), ingest_log.c.outcome.in_(_INGESTED)
                )
            ):
                self._exact[row.content_hash] = row.article_id
        self._declared: dict[str, frozenset[str]] = {}
        for chunk in chunks(sorted(keys)):
            for declared in conn.execute(select(boilerplate).where(boilerplate.c.key.in_(chunk))):
                self._declared[declared.key] = frozenset(
                    filter(None, (declared.advertises, title_key(declared.text)))
                )
        self._holders: dict[str, list[Holder]] = defaultdict(list)
        self._keys_of: dict[str, set[str]] = defaultdict(set)
        before = aliased(blocks)
        for chunk in chunks(sorted(keys - self._declared.keys())):
            rows = conn.execute(
                select(
                    blocks.c.key, articles.c.id.label("article_id"), before.c.text, articles.c.title
                )
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
            for held in rows:
                self._holders[held.key].append(Holder(held.article_id, held.text, held.title))
                self._keys_of[held.article_id].add(held.key)
        self._titles: dict[str, str] = {}
        # what each article holds in the overlay's title and advertiser maps, so that
        # forgetting one costs its own entries, not a pass over the whole batch's
        self._titles_of: dict[str, set[str]] = defaultdict(set)
        self._advertises: dict[str, set[str]] = defaultdict(set)
        for chunk in chunks(sorted(headlines)):
            for row in conn.execute(
                select(articles.c.title_key, articles.c.id).where(articles.c.title_key.in_(chunk))
            ):
                self._own_title(row.title_key, row.id)
        self._advertisers: dict[str, list[tuple[str, list[tuple[str, str]]]]] = defaultdict(list)
        advertisers: dict[str, str] = {}
        for chunk in chunks(sorted(own_titles)):
            for row in conn.execute(
                select(articles.c.id, articles.c.teaser_key).where(articles.c.teaser_key.in_(chunk))
            ):
                advertisers[row.id] = row.teaser_key
        tails: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for chunk in chunks(sorted(advertisers)):
            for block in conn.execute(
                select(
                    articles.c.id.label("article_id"),
                    blocks.c.position,
                    blocks.c.key,
                    blocks.c.text,
                )
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(articles.c.id.in_(chunk))
            ):
                tails[block.article_id].append((block.position, block.key, block.text))
        for advertiser, teaser in advertisers.items():
            last_two = sorted(tails[advertiser], reverse=True)[:2]
            self._advertisers[teaser].append((advertiser, [(k, t) for _, k, t in last_two]))
            self._advertises[advertiser].add(teaser)
        self._added_updated: dict[str, datetime] = {}
        self._slugs: set[str] = set()
        base_slugs = {item.slug for item in self.incoming}
        for chunk in chunks(sorted(base_slugs)):
            self._slugs.update(
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
            {"position": i, "key": block_key(b.text), "text": b.text}
            for i, b in enumerate(item.article.blocks)
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
                    "rule": r.rule,
                    "reason": r.reason,
                    "decided": now,
                }
            )

    def _remember(self, decision: Decision, item: Incoming, article_id: str) -> None:
        """Keep the overlay current so later files of the batch see this one."""
        article = item.article
        self._added_updated[article_id] = article.published
        for key, text, headline in decision.new_boilerplate:
            self._declared[key] = frozenset(
                filter(None, (title_key(headline) if headline else None, title_key(text)))
            )
        previous: str | None = None
        for block in article.blocks:
            key = block_key(block.text)
            if key not in self._declared:
                self._holders[key].append(Holder(article_id, previous, article.title))
                self._keys_of[article_id].add(key)
            previous = block.text
        self._own_title(title_key(article.title), article_id)
        if item.teaser_headline is not None and len(article.blocks) >= 2:
            tail = [(block_key(b.text), b.text) for b in reversed(article.blocks[-2:])]
            teaser = title_key(item.teaser_headline)
            self._advertisers[teaser].append((article_id, tail))
            self._advertises[article_id].add(teaser)

    def _own_title(self, key: str, article_id: str) -> None:
        if key not in self._titles:  # the first article of a title keeps it
            self._titles[key] = article_id
            self._titles_of[article_id].add(key)

    def _forget(self, article_id: str) -> None:
        """Drop what the overlay knew of an article whose body is being replaced."""
        for key in self._keys_of.pop(article_id, set()):
            self._holders[key] = [h for h in self._holders[key] if h.article_id != article_id]
        for title in self._titles_of.pop(article_id, set()):
            del self._titles[title]
        for teaser in self._advertises.pop(article_id, set()):
            held = self._advertisers[teaser]
            held[:] = [a for a in held if a[0] != article_id]

    def _free_slug(self, slug: str) -> str:
        """The slug itself, or slug-2, slug-3… when taken (in the database or this batch)."""
        if slug in self._slugs:
            taken = (
                set(
                    self.connection.execute(
                        select(articles.c.slug).where(
                            or_(articles.c.slug == slug, articles.c.slug.like(f"{slug}-%"))
                        )
                    ).scalars()
                )
                | self._slugs
            )
            candidate, n = slug, 2
            while candidate in taken:
                candidate, n = f"{slug}-{n}", n + 1
            slug = candidate
        self._slugs.add(slug)
        return slug

    def _new_removals(self, rows: list[dict[str, object]]) -> list[dict[str, object]]:
        """Drop removals already recorded (in the database or earlier in this buffer)."""
        if not rows:
            return []
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
        kept = []
        for row in rows:
            pair = (str(row["article_id"]), str(row["key"]))
            if pair not in existing:
                existing.add(pair)
                kept.append(row)
        # in the order of the unique (article_id, key) index: one sweep of it, not random pages
        return sorted(kept, key=lambda row: (str(row["article_id"]), str(row["key"])))


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, object]]) -> None:
    """On SQLite: executemany straight to the driver, each value through its column's
    own SQLAlchemy bind processor. SQLAlchemy's per-row parameter handling cost ~1.7 us a
    row, more than SQLite's insert itself (~1 us); a batch writes ~12 rows per article.
    PostgreSQL keeps SQLAlchemy's path (multi-row inserts there)."""
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


def _columns(article: ParsedArticle, teaser_headline: str | None) -> dict[str, object]:
    return {
        "title": article.title,
        "title_key": title_key(article.title),
        "category": article.category,
        "category_path": json.dumps(list(article.category_path), ensure_ascii=False),
        "author": article.author,
        "source": article.source,
        "content_hash": article.content_hash,
        "source_file": article.source_file,
        "teaser_key": title_key(teaser_headline) if teaser_headline else None,
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
