"""Article queries and writes over one Connection (the caller owns the transaction)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, Row, and_, delete, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from publisher.dedup import Decision, Holder, Outcome, StoredFacts, block_key, title_key
from publisher.model import Article, Block, ParsedArticle, Removal
from publisher.parse import slugify, summarize
from publisher.store.schema import articles, blocks, boilerplate, ingest_log, removals

__all__ = ["Articles"]

_INGESTED = ("added", "updated")


class Articles:
    """The article side of the store, bound to a connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- ingest -----------------------------------------------------------------

    def seen_file(self, file: str, raw_hash: str) -> str | None:
        """Outcome of an earlier ingest of these exact bytes under this name, if any."""
        row = self.connection.execute(
            select(ingest_log.c.outcome)
            .where(
                ingest_log.c.file == file,
                ingest_log.c.raw_hash == raw_hash,
                ingest_log.c.outcome != "quarantined",
            )
            .limit(1)
        ).first()
        return None if row is None else str(row.outcome)

    def facts(self, article: ParsedArticle, teaser_headline: str | None) -> StoredFacts:
        """Everything dedup needs to know about one incoming article, in a few bounded queries."""
        conn = self.connection
        exact = conn.execute(
            select(ingest_log.c.article_id)
            .where(
                ingest_log.c.content_hash == article.content_hash,
                ingest_log.c.outcome.in_(_INGESTED),
            )
            .limit(1)
        ).scalar()
        if exact is not None:
            return StoredFacts(exact_article_id=exact)
        keys = {block_key(b.text) for b in article.blocks}
        declared = {
            row.key: frozenset(filter(None, (row.advertises, title_key(row.text))))
            for row in conn.execute(select(boilerplate).where(boilerplate.c.key.in_(keys)))
        }
        undeclared = keys - declared.keys()
        holders: dict[str, list[Holder]] = defaultdict(list)
        if undeclared:
            before = aliased(blocks)
            rows = conn.execute(
                select(blocks.c.key, blocks.c.article_id, before.c.text, articles.c.title)
                .join(articles, articles.c.id == blocks.c.article_id)
                .outerjoin(
                    before,
                    and_(
                        before.c.article_id == blocks.c.article_id,
                        before.c.position == blocks.c.position - 1,
                    ),
                )
                .where(blocks.c.key.in_(undeclared))
            )
            for row in rows:
                holders[row.key].append(Holder(row.article_id, row.text, row.title))
        titles: dict[str, str] = {}
        if teaser_headline is not None:
            wanted = title_key(teaser_headline)
            found = conn.execute(
                select(articles.c.id).where(articles.c.title_key == wanted).limit(1)
            ).scalar()
            if found is not None:
                titles[wanted] = found
        advertisers = []
        for advertiser in conn.execute(
            select(articles.c.id).where(articles.c.teaser_key == title_key(article.title))
        ).scalars():
            tail = conn.execute(
                select(blocks.c.key, blocks.c.text)
                .where(blocks.c.article_id == advertiser)
                .order_by(blocks.c.position.desc())
                .limit(2)
            ).all()
            advertisers.append((advertiser, [(row.key, row.text) for row in tail]))
        return StoredFacts(
            boilerplate=declared, holders=holders, titles=titles, advertisers=advertisers
        )

    def apply(
        self,
        decision: Decision,
        article: ParsedArticle,
        *,
        signature: bytes,
        teaser_headline: str | None,
        id_host: str,
        now: datetime,
    ) -> str:
        """Write the decision: insert or update the article, record removals. Returns its id."""
        conn = self.connection
        if decision.outcome is Outcome.ADDED:
            slug = self._free_slug(slugify(article.published, article.title))
            article_id = f"tag:{id_host},{article.published.date().isoformat()}:{slug}"
            conn.execute(
                insert(articles).values(
                    id=article_id,
                    slug=slug,
                    ingested=now,
                    published=article.published,
                    updated=article.published,
                    signature=signature,
                    **self._columns(article, teaser_headline),
                )
            )
        else:
            assert decision.target_id is not None
            article_id = decision.target_id
            stored_updated = conn.execute(
                select(articles.c.updated).where(articles.c.id == article_id)
            ).scalar_one()
            # A correction dated the same day still has to move `updated` forward.
            updated = article.published if article.published > stored_updated else now
            conn.execute(
                update(articles)
                .where(articles.c.id == article_id)
                .values(
                    updated=updated,
                    signature=signature,
                    **self._columns(article, teaser_headline),
                )
            )
            conn.execute(delete(blocks).where(blocks.c.article_id == article_id))
            conn.execute(delete(removals).where(removals.c.article_id == article_id))
        conn.execute(
            insert(blocks),
            [
                {"article_id": article_id, "position": i, "key": block_key(b.text), "text": b.text}
                for i, b in enumerate(article.blocks)
            ],
        )
        for key, text, headline in decision.new_boilerplate:
            conn.execute(
                insert(boilerplate).values(
                    key=key,
                    text=text,
                    advertises=title_key(headline) if headline else None,
                    decided=now,
                )
            )
        self._record_removals(decision, article_id, now)
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
        self.connection.execute(
            insert(ingest_log).values(
                file=file,
                raw_hash=raw_hash,
                content_hash=content_hash,
                outcome=outcome,
                article_id=article_id,
                reason=reason,
                at=now,
            )
        )

    def updated(self, ids: Iterable[str]) -> dict[str, datetime]:
        rows = self.connection.execute(
            select(articles.c.id, articles.c.updated).where(articles.c.id.in_(list(ids)))
        )
        return {str(row.id): row.updated for row in rows}

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

    # -- reading ---------------------------------------------------------------

    def get(self, id_or_slug: str) -> Article | None:
        rows = self.connection.execute(
            select(articles).where(or_(articles.c.id == id_or_slug, articles.c.slug == id_or_slug))
        ).all()
        found = self._load(rows, with_removals=True)
        return found[0] if found else None

    def latest(
        self, limit: int | None = None, *, category: str | None = None, offset: int = 0
    ) -> list[Article]:
        """Newest first by publication date (ties: most recently ingested first)."""
        query = select(articles).order_by(articles.c.published.desc(), articles.c.seq.desc())
        if category is not None:
            query = query.where(articles.c.category == category)
        return self._load(self.connection.execute(query.offset(offset).limit(limit)).all())

    def ingested_between(
        self, since: datetime | None, until: datetime, categories: Sequence[str] = ()
    ) -> list[Article]:
        query = select(articles).where(articles.c.ingested <= until)
        if since is not None:
            query = query.where(articles.c.ingested > since)
        if categories:
            query = query.where(articles.c.category.in_(categories))
        query = query.order_by(articles.c.ingested.desc(), articles.c.seq.desc())
        return self._load(self.connection.execute(query).all())

    def count(self) -> int:
        return int(self.connection.execute(select(func.count()).select_from(articles)).scalar_one())

    def categories(self) -> list[tuple[str, int]]:
        rows = self.connection.execute(
            select(articles.c.category, func.count())
            .group_by(articles.c.category)
            .order_by(articles.c.category)
        )
        return [(str(name), int(n)) for name, n in rows]

    def last_ingest(self) -> datetime | None:
        value: datetime | None = self.connection.execute(select(func.max(ingest_log.c.at))).scalar()
        return value

    # -- internals -------------------------------------------------------------

    @staticmethod
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
        }

    def _free_slug(self, slug: str) -> str:
        taken = set(
            self.connection.execute(
                select(articles.c.slug).where(
                    or_(articles.c.slug == slug, articles.c.slug.like(f"{slug}-%"))
                )
            ).scalars()
        )
        candidate, n = slug, 2
        while candidate in taken:
            candidate, n = f"{slug}-{n}", n + 1
        return candidate

    def _record_removals(self, decision: Decision, article_id: str, now: datetime) -> None:
        planned = [(r.article_id or article_id, r) for r in decision.removals]
        if not planned:
            return
        existing = {
            (row.article_id, row.key)
            for row in self.connection.execute(
                select(removals.c.article_id, removals.c.key).where(
                    removals.c.article_id.in_({target for target, _ in planned}),
                    removals.c.key.in_({r.key for _, r in planned}),
                )
            )
        }
        rows = [
            {
                "article_id": target,
                "key": r.key,
                "text": r.text,
                "rule": r.rule,
                "reason": r.reason,
                "decided": now,
            }
            for target, r in planned
            if (target, r.key) not in existing
        ]
        if rows:
            self.connection.execute(insert(removals), rows)

    def _load(
        self, rows: Sequence[Row[tuple[object, ...]]], *, with_removals: bool = True
    ) -> list[Article]:
        if not rows:
            return []
        ids = [row.id for row in rows]
        body: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for chunk in _chunks(ids, 500):
            for b in self.connection.execute(
                select(blocks.c.article_id, blocks.c.key, blocks.c.text)
                .where(blocks.c.article_id.in_(chunk))
                .order_by(blocks.c.article_id, blocks.c.position)
            ):
                body[b.article_id].append((b.key, b.text))
        removed: dict[str, list[tuple[str, Removal]]] = defaultdict(list)
        for chunk in _chunks(ids, 500):
            for r in self.connection.execute(
                select(removals)
                .where(removals.c.article_id.in_(chunk))
                .order_by(removals.c.decided)
            ):
                removed[r.article_id].append((r.key, Removal(r.text, r.rule, r.reason)))
        result = []
        for row in rows:
            gone = {key for key, _ in removed[row.id]}
            kept = tuple(Block(text) for key, text in body[row.id] if key not in gone)
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
                )
            )
        return result


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
