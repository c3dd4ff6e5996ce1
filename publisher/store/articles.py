"""Article queries and writes over one Connection (the caller owns the transaction)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, func, or_, select, update

from publisher.model import Article, Block, Removal, RemovalRule
from publisher.parse import summarize
from publisher.store.chunks import chunks
from publisher.store.schema import (
    articles,
    blocks,
    boilerplate,
    deletions,
    ingest_log,
    removals,
    withheld_removals,
)

__all__ = ["Articles"]

_INGESTED = ("added", "updated")
# not deleted (store/deletions.py): what feeds, pages and digests may show
LIVE = ~select(deletions.c.article_id).where(deletions.c.article_id == articles.c.id).exists()
RESOLVE_SHOWN = 10  # matches of an ambiguous prefix listed


class Articles:
    """The article side of the store, bound to a connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- ingest -----------------------------------------------------------------

    def max_seq(self) -> int:
        return int(
            self.connection.execute(select(func.coalesce(func.max(articles.c.seq), 0))).scalar_one()
        )

    def signatures(self, after_seq: int = 0) -> Iterator[tuple[int, str, bytes]]:
        """(seq, id, signature) of articles stored after `after_seq`, to rebuild the LSH index."""
        rows = self.connection.execute(
            select(articles.c.seq, articles.c.id, articles.c.signature)
            .where(articles.c.seq > after_seq)
            .order_by(articles.c.seq)
        )
        for row in rows:
            yield int(row.seq), str(row.id), bytes(row.signature)

    def bodies(self, ids: Sequence[str]) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
        """(id, title, [(block key, text)] in order) of the given articles, all blocks kept."""
        for chunk in chunks(list(ids), 500):
            titles = {
                str(row.id): str(row.title)
                for row in self.connection.execute(
                    select(articles.c.id, articles.c.title).where(articles.c.id.in_(chunk))
                )
            }
            body: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for b in self.connection.execute(
                select(articles.c.id, blocks.c.key, blocks.c.text)
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(articles.c.id.in_(chunk))
                .order_by(blocks.c.article_seq, blocks.c.position)
            ):
                body[b.id].append((b.key, b.text))
            for article_id in chunk:
                if article_id in titles:
                    yield article_id, titles[article_id], body[article_id]

    def boilerplate_keys(self) -> frozenset[str]:
        """Every block key declared boilerplate (one row per shared block: a small table)."""
        return frozenset(self.connection.execute(select(boilerplate.c.key)).scalars())

    def set_signatures(self, signatures: Sequence[tuple[str, bytes]]) -> None:
        self.connection.execute(
            update(articles)
            .where(articles.c.id == bindparam("target"))
            .values(signature=bindparam("new_signature")),
            [{"target": i, "new_signature": s} for i, s in signatures],
        )

    # -- reading ---------------------------------------------------------------

    def resolve(self, reference: str) -> list[tuple[str, str]]:
        """(id, slug) of the article `reference` names: its id or slug, else every article
        whose id or slug starts with it (at most RESOLVE_SHOWN + 1: enough to say it is
        ambiguous). Deleted articles are found too."""
        exact = self.connection.execute(
            select(articles.c.id, articles.c.slug).where(
                or_(articles.c.id == reference, articles.c.slug == reference)
            )
        ).all()
        if exact or not reference:
            return [(str(row.id), str(row.slug)) for row in exact]
        rows = self.connection.execute(
            select(articles.c.id, articles.c.slug)
            .where(
                or_(
                    articles.c.id.startswith(reference, autoescape=True),
                    articles.c.slug.startswith(reference, autoescape=True),
                )
            )
            .order_by(articles.c.seq)
            .limit(RESOLVE_SHOWN + 1)
        ).all()
        return [(str(row.id), str(row.slug)) for row in rows]

    def source_key_of(self, article_id: str) -> str | None:
        key: str | None = self.connection.execute(
            select(articles.c.source_key).where(articles.c.id == article_id)
        ).scalar()
        return key

    def logged_files(self, article_id: str) -> set[str]:
        """The file names ingest_log records as ingested into this article."""
        rows = self.connection.execute(
            select(ingest_log.c.file).where(
                ingest_log.c.article_id == article_id, ingest_log.c.outcome.in_(_INGESTED)
            )
        )
        return {str(row.file) for row in rows}

    def get(self, id_or_slug: str) -> Article | None:
        rows = self.connection.execute(
            select(articles).where(or_(articles.c.id == id_or_slug, articles.c.slug == id_or_slug))
        ).all()
        found = self._load(rows, with_removals=True)
        return found[0] if found else None

    def detail(self, id_or_slug: str) -> Article | None:
        """`get`, plus every article holding each removed block and the removals withheld
        (`articles show`; a footer's holders can be every article, so only here)."""
        article = self.get(id_or_slug)
        if article is None:
            return None
        held = self.holders(sorted({r.key for r in article.removed}))
        withheld = tuple(
            Removal(r.text, RemovalRule(r.rule), r.reason, key=r.key)
            for r in self.connection.execute(
                select(withheld_removals)
                .where(withheld_removals.c.article_id == article.id)
                .order_by(withheld_removals.c.decided, withheld_removals.c.key)
            )
        )
        removed = tuple(replace(r, holders=tuple(held.get(r.key, ()))) for r in article.removed)
        return replace(article, removed=removed, withheld=withheld)

    def holders(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """The ids of every article holding each block key (removed there or not), oldest
        first: the true count, however many articles arrived after the decision."""
        found: dict[str, list[str]] = defaultdict(list)
        for chunk in chunks(list(keys), 500):
            for row in self.connection.execute(
                select(blocks.c.key, articles.c.seq, articles.c.id)
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(blocks.c.key.in_(chunk))
                .distinct()
                .order_by(blocks.c.key, articles.c.seq)
            ):
                found[str(row.key)].append(str(row.id))
        return dict(found)

    def by_ids(self, ids: Sequence[str], *, include_deleted: bool = False) -> list[Article]:
        """The stored articles among these ids (a page of rows at a time, not one query each);
        deleted ones only with `include_deleted`."""
        found: list[Article] = []
        for chunk in chunks(list(ids), 500):
            query = select(articles).where(articles.c.id.in_(chunk))
            if not include_deleted:
                query = query.where(LIVE)
            rows = self.connection.execute(query)
            found += self._load(rows.all())
        return found

    def latest(
        self,
        limit: int | None = None,
        *,
        category: str | None = None,
        offset: int = 0,
        include_deleted: bool = False,
    ) -> list[Article]:
        """Newest first by publication date (ties: most recently ingested first); deleted
        articles only with `include_deleted`."""
        query = select(articles).order_by(articles.c.published.desc(), articles.c.seq.desc())
        if not include_deleted:
            query = query.where(LIVE)
        if category is not None:
            query = query.where(articles.c.category == category)
        return self._load(self.connection.execute(query.offset(offset).limit(limit)).all())

    def matching(
        self, *, category: str | None = None, search: str | None = None, limit: int | None = None
    ) -> list[Article]:
        """Newest first, like `latest`, deleted ones included (marked): those of `category`
        and with `search` in their title, slug or id, both ignoring case. Matched in Python
        with casefold on a scan of four short columns (SQLite's lower() folds ASCII only),
        so only the matches are loaded whole."""
        if category is None and search is None:
            return self.latest(limit, include_deleted=True)
        wanted_category = category.casefold() if category is not None else None
        needle = search.casefold() if search is not None else None
        query = select(
            articles.c.seq, articles.c.id, articles.c.slug, articles.c.title, articles.c.category
        ).order_by(articles.c.published.desc(), articles.c.seq.desc())
        seqs: list[int] = []
        result = self.connection.execute(query)
        for row in result:
            if wanted_category is not None and row.category.casefold() != wanted_category:
                continue
            if needle is not None and not any(
                needle in value.casefold() for value in (row.title, row.slug, row.id)
            ):
                continue
            seqs.append(row.seq)
            if limit is not None and len(seqs) >= limit:
                break
        result.close()
        rows: list[Row[tuple[object, ...]]] = []
        for chunk in chunks(seqs, 500):
            rows.extend(
                self.connection.execute(select(articles).where(articles.c.seq.in_(chunk))).all()
            )
        position = {seq: i for i, seq in enumerate(seqs)}
        rows.sort(key=lambda row: position[row.seq])
        return self._load(rows)

    def ingested_between(
        self, since: datetime | None, until: datetime, categories: Sequence[str] = ()
    ) -> list[Article]:
        """Articles first seen in (since, until], newest first; never a deleted one."""
        query = select(articles).where(articles.c.ingested <= until, LIVE)
        if since is not None:
            query = query.where(articles.c.ingested > since)
        if categories:
            query = query.where(articles.c.category.in_(categories))
        query = query.order_by(articles.c.ingested.desc(), articles.c.seq.desc())
        return self._load(self.connection.execute(query).all())

    def count(self) -> int:
        return int(self.connection.execute(select(func.count()).select_from(articles)).scalar_one())

    def count_deleted(self) -> int:
        return int(
            self.connection.execute(select(func.count()).select_from(deletions)).scalar_one()
        )

    def categories(self, *, include_deleted: bool = True) -> list[tuple[str, int]]:
        """(category, articles in it) by name; every row counts unless `include_deleted` is
        False (archive positions count every row; what a page lists does not)."""
        rows = self.connection.execute(
            select(articles.c.category, func.count())
            .group_by(articles.c.category)
            .order_by(articles.c.category)
        )
        counts = [(str(name), int(n)) for name, n in rows]
        return counts if include_deleted else self.live_categories(counts)

    def live_categories(self, counts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """`counts` of every row (from `categories`) less the deleted ones: the few deleted
        rows are counted, not a LIVE test made on every row."""
        gone: dict[str, int] = defaultdict(int)
        # the deleted ids first: a join lets the planner walk every article instead
        deleted = list(self.connection.execute(select(deletions.c.article_id)).scalars())
        for chunk in chunks(deleted, 500):
            for name in self.connection.execute(
                select(articles.c.category).where(articles.c.id.in_(chunk))
            ).scalars():
                gone[str(name)] += 1
        live = [(name, n - gone.get(name, 0)) for name, n in counts]
        return [(name, n) for name, n in live if n > 0]

    def last_ingest(self) -> datetime | None:
        value: datetime | None = self.connection.execute(select(func.max(ingest_log.c.at))).scalar()
        return value

    # -- internals -------------------------------------------------------------

    def _load(
        self, rows: Sequence[Row[tuple[object, ...]]], *, with_removals: bool = True
    ) -> list[Article]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        body: dict[int, list[tuple[str, Block]]] = defaultdict(list)
        for seqs in chunks([row.seq for row in rows], 500):
            for b in self.connection.execute(
                select(blocks.c.article_seq, blocks.c.key, blocks.c.text, blocks.c.markup)
                .where(blocks.c.article_seq.in_(seqs))
                .order_by(blocks.c.article_seq, blocks.c.position)
            ):
                body[b.article_seq].append((b.key, Block(b.text, b.markup)))
        removed: dict[str, list[tuple[str, Removal]]] = defaultdict(list)
        for chunk in chunks(ids, 500):
            for r in self.connection.execute(
                select(removals)
                .where(removals.c.article_id.in_(chunk))
                .order_by(removals.c.decided)
            ):
                removed[r.article_id].append(
                    (r.key, Removal(r.text, RemovalRule(r.rule), r.reason, key=r.key))
                )
        deleted: dict[str, datetime] = {}
        for chunk in chunks(ids, 500):
            for d in self.connection.execute(
                select(deletions.c.article_id, deletions.c.at).where(
                    deletions.c.article_id.in_(chunk)
                )
            ):
                deleted[d.article_id] = d.at
        result = []
        for row in rows:
            gone = {key for key, _ in removed[row.id]}
            kept = tuple(block for key, block in body[row.seq] if key not in gone)
            result.append(
                Article(
                    id=row.id,
                    slug=row.slug,
                    title=row.title,
                    category_path=tuple(json.loads(row.category_path)),
                    published=row.published,
                    updated=row.updated,
                    author=row.author,
                    source=row.source,
                    blocks=kept,
                    summary=summarize(kept),
                    content_hash=row.content_hash,
                    source_file=row.source_file,
                    ingested=row.ingested,
                    removed=tuple(r for _, r in removed[row.id]) if with_removals else (),
                    language=row.language,
                    deleted=deleted.get(row.id),
                )
            )
        return result
