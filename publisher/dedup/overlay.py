"""What the later files of a batch see of the earlier ones. Pure: no I/O, no clock.

A batch of files is one transaction, and dedup still decides file by file, in order: the
facts each file sees are what the store held when the batch began (read in bulk by
store/ingest_batch.py and loaded here as plain rows) plus what the files before it in the
batch added. A re-publication replaces what the overlay knew of the article it updates,
as it changes what later files would see. The overlay also mints each new article's id
and a slug no other article has.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from publisher.dedup.rules import Decision, Holder, Incoming, StoredFacts, title_key

__all__ = ["BatchOverlay", "BatchQuestions", "teaser_tail", "updated_on_republication"]

TailBlock = tuple[str, str]  # (key, text) of one block of a trailing teaser


@dataclass(frozen=True)
class BatchQuestions:
    """What the store is asked about a batch, derived from its files alone."""

    content_hashes: frozenset[str]
    block_keys: frozenset[str]
    headlines: frozenset[str]  # title keys of the files' teaser headlines
    titles: frozenset[str]  # title keys of the files' own titles
    slugs: frozenset[str]
    source_keys: frozenset[str] = frozenset()

    @classmethod
    def of(cls, items: Iterable[Incoming]) -> BatchQuestions:
        items = list(items)
        return cls(
            content_hashes=frozenset(item.article.content_hash for item in items),
            block_keys=frozenset(key for item in items for key in item.block_keys),
            headlines=frozenset(
                title_key(item.teaser.headline) for item in items if item.teaser is not None
            ),
            titles=frozenset(title_key(item.article.title) for item in items),
            slugs=frozenset(item.slug for item in items),
            source_keys=frozenset(item.source_key for item in items if item.source_key),
        )


def teaser_tail(blocks: Iterable[tuple[int, str, str]]) -> list[TailBlock]:
    """The (key, text) of an article's trailing teaser, last block first, from its
    (position, key, text) blocks: a teaser is an article's last two blocks."""
    return [(key, text) for _, key, text in sorted(blocks, reverse=True)[:2]]


def updated_on_republication(stored: datetime, published: datetime, now: datetime) -> datetime:
    """The `updated` of a re-published article: its new date, or now when that date is not
    later than the stored one (a correction dated the same day still moves it forward)."""
    return published if published > stored else now


class BatchOverlay:
    """The store's facts for one batch, kept current as the batch's files are decided."""

    def __init__(self, id_host: str) -> None:
        self.id_host = id_host
        self._exact: dict[str, str] = {}  # content hash -> article id
        self._sources: dict[str, str] = {}  # source key -> article id
        self._source_of: dict[str, str] = {}  # article id -> its source key, as known here
        self._content_of: dict[str, str] = {}  # article id -> the content hash it holds now
        self._declared: dict[str, frozenset[str]] = {}  # boilerplate key -> titles it keeps
        self._holders: dict[str, list[Holder]] = defaultdict(list)
        self._titles: dict[str, str] = {}  # title key -> the first article of that title
        self._titled: dict[str, list[str]] = defaultdict(list)  # title key -> every article
        # teaser headline's title key -> the articles ending in that teaser, and their tails
        self._advertisers: dict[str, list[tuple[str, list[TailBlock]]]] = defaultdict(list)
        # what each article holds in the maps above, so that forgetting one costs its own
        # entries, not a pass over the whole batch's
        self._keys_of: dict[str, set[str]] = defaultdict(set)
        self._titles_of: dict[str, set[str]] = defaultdict(set)
        self._titled_of: dict[str, str] = {}
        self._advertises: dict[str, set[str]] = defaultdict(set)
        self._batch_updated: dict[str, datetime] = {}  # added or updated in this batch
        self._stored_updated: dict[str, datetime] = {}
        self._slugs: set[str] = set()
        self._kept: frozenset[str] = frozenset()  # block keys the editor kept

    # -- what the store held (plain rows, in the order they are read) ------------

    def load_exact(self, rows: Iterable[tuple[str, str]]) -> None:
        """(content hash, article id) of ingested files."""
        for content_hash, article_id in rows:
            self._exact[content_hash] = article_id

    def load_sources(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(source key, article id, content hash) of stored articles."""
        for key, article_id, content_hash in rows:
            self._sources[key] = article_id
            self._source_of[article_id] = key
            self._content_of[article_id] = content_hash

    def load_boilerplate(self, rows: Iterable[tuple[str, str, str | None]]) -> None:
        """(key, text, advertised title key) of blocks declared boilerplate."""
        for key, text, advertises in rows:
            self._declared[key] = frozenset(filter(None, (advertises, title_key(text))))

    def undeclared(self, keys: Iterable[str]) -> set[str]:
        """The keys not (yet) boilerplate: their holders are what the store is asked next."""
        return set(keys) - self._declared.keys()

    def load_holders(self, rows: Iterable[tuple[str, str, str | None, str]]) -> None:
        """(key, article id, text of the block before it, article title) of stored blocks."""
        for key, article_id, previous, title in rows:
            self._holders[key].append(Holder(article_id, previous, title))
            self._keys_of[article_id].add(key)

    def load_titles(self, rows: Iterable[tuple[str, str]]) -> None:
        """(title key, article id) of stored articles."""
        for key, article_id in rows:
            self._own_title(key, article_id)

    def load_same_titles(self, rows: Iterable[tuple[str, str]]) -> None:
        """(title key, article id) of stored articles of the batch's titles, oldest first."""
        for key, article_id in rows:
            self._titled[key].append(article_id)
            self._titled_of[article_id] = key

    def load_advertisers(
        self, teasers: Mapping[str, str], blocks: Iterable[tuple[str, int, str, str]]
    ) -> None:
        """Stored articles whose trailing teaser advertises one of the batch's titles:
        `teasers` maps each one's id to its teaser's title key, `blocks` are their
        (article id, position, key, text) blocks."""
        bodies: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for article_id, position, key, text in blocks:
            bodies[article_id].append((position, key, text))
        for advertiser, teaser in teasers.items():
            self._advertisers[teaser].append((advertiser, teaser_tail(bodies[advertiser])))
            self._advertises[advertiser].add(teaser)

    def load_kept(self, keys: Iterable[str]) -> None:
        """Block keys the editor kept (`publisher boilerplate keep`): no rule removes them."""
        self._kept = self._kept | frozenset(keys)

    def load_slugs(self, slugs: Iterable[str]) -> None:
        self._slugs.update(slugs)

    def load_updated(self, rows: Mapping[str, datetime]) -> None:
        """The stored `updated` of articles read for a near-duplicate check."""
        self._stored_updated.update(rows)

    # -- what a file sees ------------------------------------------------------

    def facts(self, item: Incoming) -> StoredFacts:
        exact = self._exact.get(item.article.content_hash)
        own = self._sources.get(item.source_key) if item.source_key else None
        if own is not None and self._content_of.get(own) == item.article.content_hash:
            return StoredFacts(exact_article_id=exact, source_article_id=own, source_unchanged=True)
        if exact is not None and own is None:
            return StoredFacts(exact_article_id=exact)
        keys = set(item.block_keys)
        titles = {}
        if item.teaser is not None:
            headline = title_key(item.teaser.headline)
            if headline in self._titles:
                titles[headline] = self._titles[headline]
        return StoredFacts(
            exact_article_id=exact,
            source_article_id=own,
            boilerplate={k: self._declared[k] for k in keys if k in self._declared},
            holders={
                k: self._holders[k] for k in keys if k not in self._declared and k in self._holders
            },
            titles=titles,
            advertisers=list(self._advertisers.get(title_key(item.article.title), ())),
            kept=self._kept,
            same_title=tuple(self._titled.get(title_key(item.article.title), ())),
        )

    def batch_updated(self, ids: Iterable[str]) -> dict[str, datetime]:
        """The `updated` of those of `ids` added or updated earlier in this batch."""
        return {i: self._batch_updated[i] for i in ids if i in self._batch_updated}

    def updated_of(self, article_id: str) -> datetime | None:
        """The article's current `updated`, if this batch wrote or read it."""
        return self._batch_updated.get(article_id) or self._stored_updated.get(article_id)

    # -- minting ---------------------------------------------------------------

    def slug_is_taken(self, slug: str) -> bool:
        """Taken in the store or in this batch: then the store's `slug-N` are needed."""
        return slug in self._slugs

    def mint(self, item: Incoming, similar_slugs: Iterable[str] = ()) -> tuple[str, str]:
        """A new article's (id, slug): its slug, or slug-2, slug-3… when that is taken
        (`similar_slugs`: the store's slugs of the form slug-N, read when it is)."""
        slug = item.slug
        if slug in self._slugs:
            taken = set(similar_slugs) | self._slugs
            candidate, n = slug, 2
            while candidate in taken:
                candidate, n = f"{slug}-{n}", n + 1
            slug = candidate
        self._slugs.add(slug)
        date = item.article.published.date().isoformat()
        return f"tag:{self.id_host},{date}:{slug}", slug

    # -- after a decision ------------------------------------------------------

    def ingested(self, content_hash: str, article_id: str) -> None:
        """A file was stored as this article: a later exact copy is its duplicate."""
        self._exact[content_hash] = article_id

    def added(self, decision: Decision, item: Incoming, article_id: str) -> None:
        """Later files of the batch see this new article."""
        self._remember(decision, item, article_id)

    def replaced(
        self, decision: Decision, item: Incoming, article_id: str, updated: datetime
    ) -> None:
        """Later files see the article's new version instead of what it held before."""
        self._forget(article_id)
        self._remember(decision, item, article_id)
        self._batch_updated[article_id] = updated

    def source_moves(self, item: Incoming, article_id: str) -> bool:
        """Whether the article now comes from this file: its key is nobody else's (a
        re-publication from another file takes that file's key, an exact copy does not)."""
        key = item.source_key
        return bool(key) and self._sources.get(key, article_id) == article_id

    def _remember(self, decision: Decision, item: Incoming, article_id: str) -> None:
        article = item.article
        self._content_of[article_id] = article.content_hash
        if self.source_moves(item, article_id):
            # the key it had, if it was read: free for another file now
            self._sources.pop(self._source_of.get(article_id, ""), None)
            self._sources[item.source_key] = article_id
            self._source_of[article_id] = item.source_key
        self._batch_updated[article_id] = article.published
        for key, text, headline in decision.new_boilerplate:
            self._declared[key] = frozenset(
                filter(None, (title_key(headline) if headline else None, title_key(text)))
            )
        previous: str | None = None
        for block, key in zip(article.blocks, item.block_keys, strict=True):
            if key not in self._declared:
                self._holders[key].append(Holder(article_id, previous, article.title))
                self._keys_of[article_id].add(key)
            previous = block.text
        self._own_title(title_key(article.title), article_id)
        self._titled[title_key(article.title)].append(article_id)
        self._titled_of[article_id] = title_key(article.title)
        if item.teaser is not None:
            tail = _own_tail(item)
            teaser = title_key(item.teaser.headline)
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
        titled = self._titled_of.pop(article_id, None)
        if titled is not None:
            self._titled[titled].remove(article_id)
        for teaser in self._advertises.pop(article_id, set()):
            held = self._advertisers[teaser]
            held[:] = [a for a in held if a[0] != article_id]


def _own_tail(item: Incoming) -> list[TailBlock]:
    assert item.teaser is not None
    blocks: Sequence[tuple[int, str, str]] = [
        (position, item.block_keys[position], item.article.blocks[position].text)
        for position in item.teaser.positions
    ]
    return teaser_tail(blocks)
