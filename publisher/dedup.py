"""The three duplicate decisions, given what is stored. Pure: no I/O, no clock.

1. exact copy      same content hash as an article already ingested  -> ignored
2. re-publication  MinHash Jaccard >= threshold with a stored article -> update it in place
3. boilerplate     a block in >= N articles, or a trailing teaser advertising
                   another known article -> removed (except from the advertised article)

`app.ingest` asks the store for `StoredFacts` about one parsed file, calls `decide`,
and applies the `Decision` in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from publisher.model import Block, ParsedArticle

__all__ = [
    "Decision",
    "Holder",
    "NearDuplicateIndex",
    "NearMatch",
    "Outcome",
    "PlannedRemoval",
    "Signer",
    "StoredFacts",
    "Teaser",
    "block_key",
    "decide",
    "title_key",
    "trailing_teaser",
]

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = (".", "!", "?", ":", ";", ",")


class Outcome(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    DUPLICATE = "duplicate"


def block_key(text: str) -> str:
    """Key of a block's normalized text; two blocks are 'the same' when keys match."""
    return xxhash.xxh3_64_hexdigest(text.casefold().encode("utf-8"))


def title_key(title: str) -> str:
    """Titles compare case-insensitively, as a teaser headline may differ in case."""
    return " ".join(title.casefold().split())


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
    if len(headline.split()) > 14 or headline.endswith(_SENTENCE_END):
        return None
    return Teaser(headline=headline, positions=(len(blocks) - 2, len(blocks) - 1))


@dataclass(frozen=True, slots=True)
class PlannedRemoval:
    """Remove block `key` from `article_id` (None: the incoming article)."""

    article_id: str | None
    key: str
    text: str
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class NearMatch:
    article_id: str
    similarity: float
    updated_date: str  # ISO date of the stored version, to spot stale re-sends


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
    # this article's block keys already declared boilerplate -> the headlines they advertise
    boilerplate: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # for its other block keys: the articles holding each
    holders: Mapping[str, Sequence[Holder]] = field(default_factory=dict)
    # stored article titles (title_key) -> their ids, for this article's teaser headline
    titles: Mapping[str, str] = field(default_factory=dict)
    # stored articles whose trailing teaser advertises this article's title
    advertisers: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    target_id: str | None  # updated article, or the one this duplicates
    removals: tuple[PlannedRemoval, ...]
    new_boilerplate: tuple[tuple[str, str, str | None], ...]  # (key, text, headline)
    reason: str


def decide(
    article: ParsedArticle,
    facts: StoredFacts,
    near: Sequence[NearMatch],
    min_articles: int,
) -> Decision:
    """Classify one parsed article and plan the boilerplate removals it causes."""
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
        if article.published.date().isoformat() < best.updated_date:
            return Decision(
                Outcome.DUPLICATE,
                best.article_id,
                (),
                (),
                f"older version of {best.article_id} (similarity {best.similarity:.2f})",
            )
        target = best.article_id
    removals, new_boilerplate = _plan_boilerplate(article, facts, target, min_articles)
    if target is not None:
        similarity = max(match.similarity for match in near)
        return Decision(
            Outcome.UPDATED,
            target,
            removals,
            new_boilerplate,
            f"re-publication of {target} (similarity {similarity:.2f})",
        )
    return Decision(Outcome.ADDED, None, removals, new_boilerplate, "new article")


def _plan_boilerplate(
    article: ParsedArticle, facts: StoredFacts, self_id: str | None, min_articles: int
) -> tuple[tuple[PlannedRemoval, ...], tuple[tuple[str, str, str | None], ...]]:
    own_title = title_key(article.title)
    removals: list[PlannedRemoval] = []
    declared: list[tuple[str, str, str | None]] = []
    seen: set[str] = set()
    for index, block in enumerate(article.blocks):
        key = block_key(block.text)
        if key in seen:
            continue
        seen.add(key)
        previous = article.blocks[index - 1].text if index else None
        if key in facts.boilerplate:
            if own_title not in facts.boilerplate[key]:
                removals.append(
                    PlannedRemoval(
                        None, key, block.text, "shared", "appears in other articles (boilerplate)"
                    )
                )
            continue
        others = [h for h in facts.holders.get(key, ()) if h.article_id != self_id]
        if len({h.article_id for h in others}) + 1 < min_articles:
            continue
        preceding = [p for p in (*(h.previous for h in others), previous) if p]
        # the article a teaser advertises keeps the text: there it is the real lede
        advertised = {title_key(p) for p in preceding} | {title_key(block.text)}
        headline = next((p for p in preceding if len(p.split()) <= 14), None)
        declared.append((key, block.text, headline))
        reason = f"appears in {len({h.article_id for h in others}) + 1} articles (boilerplate)"
        if own_title not in advertised:
            removals.append(PlannedRemoval(None, key, block.text, "shared", reason))
        for holder in others:
            if title_key(holder.title) not in advertised:
                removals.append(
                    PlannedRemoval(holder.article_id, key, block.text, "shared", reason)
                )

    teaser = trailing_teaser(article.blocks)
    if teaser is not None:
        advertised_id = facts.titles.get(title_key(teaser.headline))
        if advertised_id is not None and advertised_id != self_id:
            for position in teaser.positions:
                text = article.blocks[position].text
                removals.append(
                    PlannedRemoval(
                        None,
                        block_key(text),
                        text,
                        "teaser",
                        f"teaser for another article ({advertised_id})",
                    )
                )
    for advertiser, blocks in facts.advertisers:
        if advertiser == self_id:
            continue
        for key, text in blocks:
            removals.append(
                PlannedRemoval(
                    advertiser, key, text, "teaser", f"teaser for another article ({article.title})"
                )
            )
    return tuple(_unique(removals)), tuple(declared)


def _unique(removals: Iterable[PlannedRemoval]) -> list[PlannedRemoval]:
    seen: set[tuple[str | None, str]] = set()
    kept = []
    for removal in removals:
        if (removal.article_id, removal.key) not in seen:
            seen.add((removal.article_id, removal.key))
            kept.append(removal)
    return kept


class Signer:
    """MinHash signatures over word shingles; one instance reuses the permutations."""

    def __init__(self, num_perm: int, shingle_size: int) -> None:
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._template = MinHash(
            num_perm=num_perm, hashfunc=xxhash.xxh32_intdigest, scheme="affine32"
        )

    def shingles(self, article: ParsedArticle, skip: frozenset[str] = frozenset()) -> set[bytes]:
        text = " ".join(
            [article.title, *(b.text for b in article.blocks if block_key(b.text) not in skip)]
        )
        words = _WORD.findall(text.casefold())
        size = min(self.shingle_size, len(words)) or 1
        return {
            " ".join(words[i : i + size]).encode() for i in range(max(1, len(words) - size + 1))
        }

    def sign(self, article: ParsedArticle, skip: frozenset[str] = frozenset()) -> bytes:
        minhash = self._template.copy()
        minhash.update_batch(self.shingles(article, skip))
        return bytes(minhash.hashvalues.astype(np.uint32).tobytes())

    def minhash(self, signature: bytes) -> MinHash:
        return MinHash(
            hashvalues=np.frombuffer(signature, dtype=np.uint32),
            permutations=self._template.permutations,
            hashfunc=xxhash.xxh32_intdigest,
            scheme="affine32",
        )


class NearDuplicateIndex:
    """In-memory LSH over stored signatures, rebuilt from the store on start."""

    def __init__(self, signer: Signer, threshold: float) -> None:
        self.signer = signer
        self.threshold = threshold
        # -- hardening --: weigh false negatives 9:1. The default (5 bands x 11 rows of 64)
        # missed ~2% of corrected re-publications at Jaccard 0.9-0.97 (the soak), and a missed
        # one turns the shared paragraphs into "boilerplate" removed from both articles.
        # 9 bands x 7 rows finds them; query() still checks the estimate against the threshold.
        self._lsh = MinHashLSH(threshold=threshold, num_perm=signer.num_perm, weights=(0.1, 0.9))
        self._signatures: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._signatures)

    def add(self, article_id: str, signature: bytes) -> None:
        if article_id in self._signatures:
            self._lsh.remove(article_id)
        self._lsh.insert(article_id, self.signer.minhash(signature))
        self._signatures[article_id] = signature

    def query(self, signature: bytes) -> list[tuple[str, float]]:
        """Stored articles whose estimated Jaccard similarity reaches the threshold."""
        mine = np.frombuffer(signature, dtype=np.uint32)
        matches = []
        for article_id in self._lsh.query(self.signer.minhash(signature)):
            theirs = np.frombuffer(self._signatures[article_id], dtype=np.uint32)
            similarity = float(np.count_nonzero(mine == theirs)) / len(mine)
            if similarity >= self.threshold:
                matches.append((article_id, similarity))
        return matches
