"""The three duplicate decisions, given what is stored. Pure: no I/O, no clock.

0. same source     the file an article came from (its Id: header, else its path inside
                   the inbox), saved again with any change     -> update it in place
1. exact copy      same content hash as an article already ingested  -> ignored
2. re-publication  MinHash Jaccard >= threshold with a stored article, or for what that
                   misses (short stories, appended paragraphs) containment of the shorter
                   text in the longer, a similar title and close dates (dedup/near.py)
                                                                  -> update it in place
3. boilerplate     a run of two or more consecutive blocks repeated in another article,
                   a single block in >= N articles, or a trailing teaser advertising
                   another known article -> removed (except from the advertised article,
                   from none that it would leave empty, and never a block the editor kept)

`publisher.ingest` asks the store for `StoredFacts` about one incoming file (what the
files before it in the batch changed included: dedup/overlay.py), calls `decide`, and
applies the `Decision`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import xxhash

from publisher.model import Block, ParsedArticle, RemovalRule

__all__ = [
    "HEADLINE_MAX_WORDS",
    "Decision",
    "Holder",
    "Incoming",
    "NearMatch",
    "Outcome",
    "PlannedRemoval",
    "StoredFacts",
    "Teaser",
    "block_key",
    "decide",
    "leaves_empty",
    "plan_boilerplate",
    "source_key",
    "title_key",
    "trailing_teaser",
]

_SENTENCE_END = (".", "!", "?", ":", ";", ",")
HEADLINE_MAX_WORDS = 14  # a longer block is a paragraph, not a headline


class Outcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    DUPLICATE = "duplicate"


def block_key(text: str) -> str:
    """Key of a block's normalized text; two blocks are 'the same' when keys match."""
    return xxhash.xxh3_64_hexdigest(text.casefold().encode("utf-8"))


TITLE_KEY_CHARS = 200  # 600 bytes of UTF-8 at most: well inside any index's row limit


def title_key(title: str) -> str:
    """Titles compare case-insensitively, as a teaser headline may differ in case. A long
    title's key is its first TITLE_KEY_CHARS characters and a hash of the whole, so keys
    stay indexable (PostgreSQL refuses btree rows over 2,704 bytes) and still tell apart
    long titles that share a beginning."""
    key = " ".join(title.casefold().split())
    if len(key) <= TITLE_KEY_CHARS:
        return key
    return key[:TITLE_KEY_CHARS] + "#" + xxhash.xxh3_64_hexdigest(key.encode("utf-8"))


SOURCE_KEY_CHARS = 300  # bounded as title keys are: an index row must stay small


def source_key(editor_id: str | None, relative_path: str) -> str:
    """Where an article comes from: its editor's `Id:` header, else its file's path inside
    the inbox (as stored and shown, see inbox.safe_name). The prefixes keep an id from
    ever meaning a path. A long key is cut and the hash of the whole appended."""
    key = f"id:{editor_id}" if editor_id else f"file:{relative_path}"
    if len(key) <= SOURCE_KEY_CHARS:
        return key
    return key[:SOURCE_KEY_CHARS] + "#" + xxhash.xxh3_64_hexdigest(key.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Teaser:
    """A trailing 'headline + one sentence' pair that advertises another article."""

    headline: str
    positions: tuple[int, int]


def trailing_teaser(blocks: Sequence[Block]) -> Teaser | None:
    """The last two blocks if they look like a teaser: a short headline, then one paragraph."""
    if len(blocks) < 3:
        return None
    headline, sentence = blocks[-2].text, blocks[-1].text
    if "\n" in headline or "\n" in sentence:
        return None
    if len(headline.split()) > HEADLINE_MAX_WORDS or headline.endswith(_SENTENCE_END):
        return None
    return Teaser(headline=headline, positions=(len(blocks) - 2, len(blocks) - 1))


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed file on its way into the store: what dedup and the store need of it,
    derived once (in prepare, possibly in a worker process)."""

    article: ParsedArticle
    slug: str  # slugify of its date and title, before any -2 for a taken one
    block_keys: tuple[str, ...]  # block_key of each block, in order
    teaser: Teaser | None  # its trailing teaser, if it has one
    source_key: str = ""  # see source_key(); set once the file's place in the inbox is known

    @classmethod
    def of(cls, article: ParsedArticle, slug: str, source: str = "") -> Incoming:
        keys = tuple(block_key(block.text) for block in article.blocks)
        return cls(article, slug, keys, trailing_teaser(article.blocks), source)


@dataclass(frozen=True, slots=True)
class PlannedRemoval:
    """Remove block `key` from `article_id` (None: the incoming article)."""

    article_id: str | None
    key: str
    text: str
    rule: RemovalRule
    reason: str


@dataclass(frozen=True, slots=True)
class NearMatch:
    article_id: str
    similarity: float
    updated_date: str  # ISO date of the stored version, to spot stale re-sends
    evidence: str = ""  # how it was found, when not by the MinHash estimate (dedup/near.py)


@dataclass(frozen=True, slots=True)
class Holder:
    """A stored article that has a given block, the block before it there, and its title."""

    article_id: str
    previous: str | None
    title: str


@dataclass(frozen=True)
class StoredFacts:
    """What the store knows that bears on one incoming article (small, bounded queries)."""

    exact_article_id: str | None = None
    # the article this file's source key belongs to: the file saved again
    source_article_id: str | None = None
    # that article holds this very content now (an earlier version's copy is a change)
    source_unchanged: bool = False
    # this article's block keys already declared boilerplate -> the headlines they advertise
    boilerplate: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # for its other block keys: the articles holding each
    holders: Mapping[str, Sequence[Holder]] = field(default_factory=dict)
    # stored article titles (title_key) -> their ids, for this article's teaser headline
    titles: Mapping[str, str] = field(default_factory=dict)
    # stored articles whose trailing teaser advertises this article's title
    advertisers: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()
    # block keys the editor kept (`publisher boilerplate keep`): no rule removes them
    kept: frozenset[str] = frozenset()
    # stored articles of this article's title (title_key), oldest first: re-publication
    # candidates the LSH may miss (dedup/near.py)
    same_title: Sequence[str] = ()


Declaration = tuple[str, str, str | None]  # a block declared boilerplate: key, text, headline


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    target_id: str | None  # updated article, or the one this duplicates
    removals: tuple[PlannedRemoval, ...]
    new_boilerplate: tuple[Declaration, ...]
    reason: str


def decide(
    item: Incoming,
    facts: StoredFacts,
    near: Sequence[NearMatch],
    min_articles: int,
) -> Decision:
    """Classify one incoming article and plan the boilerplate removals it causes."""
    own = facts.source_article_id
    if own is not None and facts.source_unchanged:
        return Decision(Outcome.DUPLICATE, own, (), (), f"same content as {own}")
    if own is not None:
        # its own source saved again: an update whatever the similarity or the date
        removals, new_boilerplate = plan_boilerplate(item, facts, own, min_articles)
        return Decision(
            Outcome.UPDATED, own, removals, new_boilerplate, f"same source as {own} (saved again)"
        )
    if facts.exact_article_id is not None:
        return Decision(
            Outcome.DUPLICATE,
            facts.exact_article_id,
            (),
            (),
            f"exact copy of {facts.exact_article_id}",
        )
    target: str | None = None
    if near:
        best = max(near, key=lambda match: match.similarity)
        if item.article.published.date().isoformat() < best.updated_date:
            return Decision(
                Outcome.DUPLICATE,
                best.article_id,
                (),
                (),
                f"older version of {best.article_id} "
                f"({best.evidence or f'similarity {best.similarity:.2f}'})",
            )
        target = best.article_id
    removals, new_boilerplate = plan_boilerplate(item, facts, target, min_articles)
    if target is not None:
        best = max(near, key=lambda match: match.similarity)
        found = best.evidence or f"similarity {best.similarity:.2f}"
        reason = f"re-publication of {target} ({found})"
        return Decision(Outcome.UPDATED, target, removals, new_boilerplate, reason)
    return Decision(Outcome.ADDED, None, removals, new_boilerplate, "new article")


def plan_boilerplate(
    item: Incoming, facts: StoredFacts, self_id: str | None, min_articles: int
) -> tuple[tuple[PlannedRemoval, ...], tuple[Declaration, ...]]:
    """The removals the incoming article causes (from itself and from stored articles) and
    the blocks it makes boilerplate. `self_id` is the article it updates, if any: its
    stored version is not another holder of its blocks, nor another teaser's target."""
    removals, declared = _shared_blocks(item, facts, self_id, min_articles)
    removals += _own_teaser(item, facts, self_id)
    removals += _teasers_for(item.article.title, facts, self_id)
    kept = [r for r in _unique(removals) if r.key not in facts.kept]
    return tuple(kept), tuple(d for d in declared if d[0] not in facts.kept)


def leaves_empty(body: Iterable[str], removed: Iterable[str]) -> bool:
    """Whether removing the blocks keyed `removed` leaves nothing of an article whose
    blocks are keyed `body`: such a removal is not applied (no rule may empty a story)."""
    gone = set(removed)
    return all(key in gone for key in body)


def _in_run(item: Incoming, index: int, holder: Holder, facts: StoredFacts) -> bool:
    """Whether `holder` has block `index` of the incoming article next to the same block
    before or after it: a repeated run (a teaser's headline and blurb), not one sentence
    two stories happen to share."""
    keys = item.block_keys
    if index > 0 and holder.previous is not None and block_key(holder.previous) == keys[index - 1]:
        return True
    if index + 1 < len(keys) and keys[index + 1] != keys[index]:
        return any(
            h.article_id == holder.article_id
            and h.previous is not None
            and block_key(h.previous) == keys[index]
            for h in facts.holders.get(keys[index + 1], ())
        )
    return False


def _shared_blocks(
    item: Incoming, facts: StoredFacts, self_id: str | None, min_articles: int
) -> tuple[list[PlannedRemoval], list[Declaration]]:
    """Blocks repeated in other articles: a block that is part of a run of two or more
    consecutive blocks found in another article as well, or a single block found in
    >= min_articles articles (this one included). Removed from each, except where the text
    is the article's own (it advertises that article's title)."""
    own_title = title_key(item.article.title)
    removals: list[PlannedRemoval] = []
    declared: list[Declaration] = []
    seen: set[str] = set()
    blocks = item.article.blocks
    for index, (block, key) in enumerate(zip(blocks, item.block_keys, strict=True)):
        if key in seen or key in facts.kept:
            continue
        seen.add(key)
        if key in facts.boilerplate:
            if own_title not in facts.boilerplate[key]:
                removals.append(
                    PlannedRemoval(
                        None,
                        key,
                        block.text,
                        RemovalRule.SHARED,
                        "appears in other articles (boilerplate)",
                    )
                )
            continue
        others = [h for h in facts.holders.get(key, ()) if h.article_id != self_id]
        if not others:
            continue
        if any(_in_run(item, index, h, facts) for h in others):
            reason = "part of a run of blocks repeated in other articles (boilerplate)"
        elif len({h.article_id for h in others}) + 1 >= min_articles:
            reason = f"appears in {min_articles} or more articles (boilerplate)"
        else:
            continue
        previous = blocks[index - 1].text if index else None
        preceding = [p for p in (*(h.previous for h in others), previous) if p]
        # the article a teaser advertises keeps the text: there it is the real lede
        advertised = {title_key(p) for p in preceding} | {title_key(block.text)}
        headline = next((p for p in preceding if len(p.split()) <= HEADLINE_MAX_WORDS), None)
        declared.append((key, block.text, headline))
        if own_title not in advertised:
            removals.append(PlannedRemoval(None, key, block.text, RemovalRule.SHARED, reason))
        for holder in others:
            if title_key(holder.title) not in advertised:
                removals.append(
                    PlannedRemoval(holder.article_id, key, block.text, RemovalRule.SHARED, reason)
                )
    return removals, declared


def _own_teaser(item: Incoming, facts: StoredFacts, self_id: str | None) -> list[PlannedRemoval]:
    """The incoming article's trailing teaser, if it advertises another known article."""
    if item.teaser is None:
        return []
    advertised_id = facts.titles.get(title_key(item.teaser.headline))
    if advertised_id is None or advertised_id == self_id:
        return []
    reason = f"teaser for another article ({advertised_id})"
    return [
        PlannedRemoval(
            None,
            item.block_keys[position],
            item.article.blocks[position].text,
            RemovalRule.TEASER,
            reason,
        )
        for position in item.teaser.positions
    ]


def _teasers_for(title: str, facts: StoredFacts, self_id: str | None) -> list[PlannedRemoval]:
    """The trailing teasers of stored articles that advertise the incoming one."""
    reason = f"teaser for another article ({title})"
    return [
        PlannedRemoval(advertiser, key, text, RemovalRule.TEASER, reason)
        for advertiser, blocks in facts.advertisers
        if advertiser != self_id
        for key, text in blocks
    ]


def _unique(removals: Iterable[PlannedRemoval]) -> list[PlannedRemoval]:
    seen: set[tuple[str | None, str]] = set()
    kept = []
    for removal in removals:
        if (removal.article_id, removal.key) not in seen:
            seen.add((removal.article_id, removal.key))
            kept.append(removal)
    return kept
