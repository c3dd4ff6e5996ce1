"""Read queries the site builder needs: archive pages in ingest order, light fingerprints."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, String, and_, cast, func, select

from publisher.model import Article, Block
from publisher.parse import summarize
from publisher.store.articles import LIVE, Articles
from publisher.store.chunks import chunks
from publisher.store.schema import articles, blocks, deletions, removals

__all__ = ["ArticleStamp", "ListedArticle", "SiteQueries"]


@dataclass(frozen=True, slots=True)
class ArticleStamp:
    """What decides whether an article's rendered outputs are still current (no body)."""

    seq: int
    id: str
    slug: str
    category: str
    key: bytes  # digest of everything that shows: dates, content, removed blocks, deletion
    deleted: bool = False
    updated: str = ""  # the stored text; its first 10 characters are the date (sitemap lastmod)


@dataclass(frozen=True, slots=True)
class ListedArticle:
    """What a listing page shows of an article: no body, only its summary."""

    seq: int
    id: str
    slug: str
    title: str
    category: str
    published: datetime
    updated: datetime
    author: str | None
    summary: str
    deleted: bool = False


# the columns a listing reads; `category` is the last element of category_path, as stored
_LISTED = (
    articles.c.seq,
    articles.c.id,
    articles.c.slug,
    articles.c.title,
    articles.c.category,
    articles.c.published,
    articles.c.updated,
    articles.c.author,
    (~LIVE).label("deleted"),
)


class SiteQueries(Articles):
    """Articles plus the queries of the site builder (archives go by ingest order)."""

    def stamps(self) -> list[ArticleStamp]:
        """Every article's stamp in ingest order, without loading bodies or parsing dates."""
        removed: dict[str, list[str]] = defaultdict(list)
        for row in self.connection.execute(
            select(removals.c.article_id, removals.c.key).order_by(
                removals.c.article_id, removals.c.key
            )
        ):
            removed[row.article_id].append(row.key)
        deleted = {
            str(row.article_id): str(row.at)
            for row in self.connection.execute(select(deletions.c.article_id, deletions.c.at))
        }
        rows = self.connection.execute(
            select(
                articles.c.seq,
                articles.c.id,
                articles.c.slug,
                articles.c.category,
                # the stored text is enough to notice a change; parsing 2 x N dates is not
                cast(articles.c.published, String).label("published"),
                cast(articles.c.updated, String).label("updated"),
                articles.c.content_hash,
                articles.c.language,
            ).order_by(articles.c.seq)
        )
        stamps = []
        for seq, article_id, slug, category, published, updated, content_hash, lang in rows:
            parts = [article_id, slug, category, published, updated, content_hash, lang or ""]
            gone = deleted.get(article_id)
            if gone is not None:
                parts.append(f"deleted {gone}")
            text = "\x1f".join([*parts, *removed.get(article_id, [])])
            key = hashlib.blake2b(text.encode(), digest_size=12).digest()
            stamps.append(
                ArticleStamp(
                    int(seq), article_id, slug, category, key, gone is not None, str(updated)
                )
            )
        return stamps

    def by_ids(self, ids: Iterable[str], *, include_deleted: bool = False) -> list[Article]:
        """Articles with these ids (missing ones skipped, deleted ones unless
        `include_deleted`), in ingest order."""
        wanted = list(dict.fromkeys(ids))
        found: list[Article] = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            query = select(articles).where(articles.c.id.in_(chunk)).order_by(articles.c.seq)
            if not include_deleted:
                query = query.where(LIVE)
            rows = self.connection.execute(query).all()
            found.extend(self._load(rows, with_removals=False))
        return found

    def listed(self, ids: Iterable[str]) -> list[ListedArticle]:
        """`by_ids` for a listing page: the live ones among these ids, in ingest order,
        with their summary but no body."""
        wanted = list(dict.fromkeys(ids))
        rows: list[Row[Any]] = []
        for chunk in chunks(wanted, 500):
            query = select(*_LISTED).where(articles.c.id.in_(chunk), LIVE)
            rows += self.connection.execute(query.order_by(articles.c.seq)).all()
        rows.sort(key=lambda row: int(row.seq))
        return self._listed(rows)

    def listed_in_ingest_order(
        self, offset: int, limit: int, total: int, *, category: str | None = None
    ) -> list[ListedArticle]:
        """`in_ingest_order` for a listing page: summaries, no bodies."""
        if offset > total // 2:
            skip = max(0, total - offset - limit)
            take = min(limit, total - offset)
            if take <= 0:
                return []
            newest_first = self.connection.execute(
                _in(select(*_LISTED), category)
                .order_by(articles.c.seq.desc())
                .offset(skip)
                .limit(take)
            ).all()
            rows = list(reversed(newest_first))
        else:
            rows = list(
                self.connection.execute(
                    _in(select(*_LISTED), category)
                    .order_by(articles.c.seq)
                    .offset(offset)
                    .limit(limit)
                ).all()
            )
        return [a for a in self._listed(rows) if not a.deleted]

    def _listed(self, rows: Sequence[Row[Any]]) -> list[ListedArticle]:
        firsts = self.first_kept_blocks([int(row.seq) for row in rows])
        return [
            ListedArticle(
                seq=int(row.seq),
                id=str(row.id),
                slug=str(row.slug),
                title=str(row.title),
                category=str(row.category),
                published=row.published,
                updated=row.updated,
                author=row.author,
                summary=summarize((Block(firsts[row.seq]),)) if row.seq in firsts else "",
                deleted=bool(row.deleted),
            )
            for row in rows
        ]

    def first_kept_blocks(self, seqs: Sequence[int]) -> dict[int, str]:
        """The text of each article's first block that no removal took (what its summary
        is made of), read without the rest of its body."""
        found: dict[int, str] = {}
        for chunk in chunks(list(seqs), 500):
            removed = (
                select(removals.c.key)
                .where(removals.c.article_id == articles.c.id, removals.c.key == blocks.c.key)
                .exists()
            )
            first = (
                select(blocks.c.article_seq, func.min(blocks.c.position).label("position"))
                .join(articles, articles.c.seq == blocks.c.article_seq)
                .where(blocks.c.article_seq.in_(chunk), ~removed)
                .group_by(blocks.c.article_seq)
                .subquery()
            )
            rows = self.connection.execute(
                select(blocks.c.article_seq, blocks.c.text).join(
                    first,
                    and_(
                        blocks.c.article_seq == first.c.article_seq,
                        blocks.c.position == first.c.position,
                    ),
                )
            )
            found.update((int(row.article_seq), str(row.text)) for row in rows)
        return found

    def in_ingest_order(
        self, offset: int, limit: int, total: int | None = None, *, category: str | None = None
    ) -> list[Article]:
        """One archive page: articles by ingest order (oldest first). Positions count every
        row, deleted ones too, so no page shifts; the deleted ones are then left out.
        With `category`, positions count that category's rows (and `total` is its count).

        Pages near the end (the ones that change) are read backwards from the newest
        row, so the database does not walk past every older article to get there.
        """
        if total is not None and offset > total // 2:
            skip = max(0, total - offset - limit)
            take = min(limit, total - offset)
            if take <= 0:
                return []
            rows = self.connection.execute(
                _in(select(articles), category)
                .order_by(articles.c.seq.desc())
                .offset(skip)
                .limit(take)
            ).all()
            return _live(list(reversed(self._load(rows, with_removals=False))))
        rows = self.connection.execute(
            _in(select(articles), category).order_by(articles.c.seq).offset(offset).limit(limit)
        ).all()
        return _live(self._load(rows, with_removals=False))

    def ranks(
        self, ids: Iterable[str], total: int, *, category: str | None = None
    ) -> dict[str, int]:
        """0-based position of each article in ingest order (what archive page it is on);
        with `category`, among that category's rows (`total` its count; others skipped).

        Counted from the end: changed articles are usually the newest ones.
        """
        result: dict[str, int] = {}
        for article_id in dict.fromkeys(ids):
            query = select(articles.c.seq).where(articles.c.id == article_id)
            seq = self.connection.execute(_in(query, category)).scalar()
            if seq is None:
                continue
            newer_or_same = self.connection.execute(
                _in(select(func.count()).select_from(articles), category).where(
                    articles.c.seq >= seq
                )
            ).scalar_one()
            result[article_id] = total - int(newer_or_same)
        return result

    def live_slugs(self, offset: int, limit: int, total: int) -> list[tuple[str, str]]:
        """(slug, updated as stored text) of the articles at positions [offset, offset +
        limit) in ingest order that are not deleted (a sitemap page); read from the nearer
        end, as in_ingest_order."""
        query = select(
            articles.c.slug, cast(articles.c.updated, String).label("updated"), LIVE.label("live")
        )
        if offset > total // 2:
            skip = max(0, total - offset - limit)
            take = min(limit, total - offset)
            if take <= 0:
                return []
            rows = list(
                reversed(
                    self.connection.execute(
                        query.order_by(articles.c.seq.desc()).offset(skip).limit(take)
                    ).all()
                )
            )
        else:
            rows = list(
                self.connection.execute(
                    query.order_by(articles.c.seq).offset(offset).limit(limit)
                ).all()
            )
        return [(str(row.slug), str(row.updated)) for row in rows if row.live]

    def removals_since(self, since: datetime | None) -> tuple[set[str], datetime | None]:
        """Articles that had blocks removed at or after `since`, and the newest decision time."""
        query = select(removals.c.article_id, removals.c.decided)
        if since is not None:
            query = query.where(removals.c.decided >= since)
        ids: set[str] = set()
        newest: datetime | None = None
        for row in self.connection.execute(query):
            ids.add(str(row.article_id))
            if newest is None or row.decided > newest:
                newest = row.decided
        return ids, newest


def _in(query: Select[Any], category: str | None) -> Select[Any]:
    return query if category is None else query.where(articles.c.category == category)


def _live(found: list[Article]) -> list[Article]:
    return [article for article in found if article.deleted is None]
