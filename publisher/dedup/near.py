"""Re-publications the MinHash threshold misses: short stories, appended paragraphs. Pure.

The Jaccard estimate of minhash.py finds a long article re-published with a few words
changed. It cannot find a short one: one changed word takes 3 of a 40-word story's ~40
shingles from each side, and appended paragraphs lower the Jaccard whatever the length.
So when the LSH finds nothing, the few stored articles that share a block or the title
with the incoming one, or that a second band set for short texts (minhash.ShortTextIndex)
estimates it holds most of (`candidates`), are compared with it word by word: the share
of the shorter text's words that the longer holds in the same order, in runs of at least
two words for a short text (k for a long one), which a correction, or paragraphs
appended, barely move. Containment alone would merge a brief into the round-up quoting it whole,
so the titles must be alike and the dates close as well (`republication`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from difflib import SequenceMatcher

from publisher.dedup.minhash import WORD_PATTERN
from publisher.dedup.rules import Incoming, NearMatch, StoredFacts, title_key

__all__ = [
    "MAX_CANDIDATES",
    "ContainmentRule",
    "Version",
    "candidates",
    "contained_matches",
    "containment",
    "republication",
    "similar_titles",
]

MAX_CANDIDATES = 8  # articles compared word by word per incoming file, at most
# a block more articles hold than this is a notice or a teaser, no sign of a re-publication
MAX_BLOCK_HOLDERS = 16
# words of each side compared: the matcher's cost grows with their product
MAX_WORDS = 5_000
TITLE_JACCARD = 0.6  # "Update: X" and X are alike; two "Police report: ..." titles are not


@dataclass(frozen=True, slots=True)
class Version:
    """What the comparison needs of one version of an article."""

    title: str
    day: date  # the incoming file's date; a stored article's `updated` date
    texts: Sequence[str]  # its blocks, boilerplate left out
    # a stored article's first date: a correction saved the day of its original moves
    # `updated` to the time of ingest, which says nothing of the story's own dates
    published: date | None = None


@dataclass(frozen=True, slots=True)
class ContainmentRule:
    """dedup.containment_threshold (0: off), dedup.republication_days, and the length
    under which runs of two words count (dedup.short_text_words), else shingle_size."""

    threshold: float
    days: int
    short_words: int
    shingle_size: int


def candidates(
    facts: StoredFacts, also: Sequence[str] = (), limit: int = MAX_CANDIDATES
) -> list[str]:
    """Stored articles worth a word-by-word look: those of the same title (newest first),
    those `also` names (the short-text index's, best first), then those sharing the most
    of its blocks (each held by few articles)."""
    shared: Counter[str] = Counter()
    for holders in facts.holders.values():
        ids = {h.article_id for h in holders}
        if len(ids) <= MAX_BLOCK_HOLDERS:
            shared.update(ids)
    picked = list(dict.fromkeys([*reversed(facts.same_title), *also]))
    ranked = sorted(shared, key=lambda article_id: (-shared[article_id], article_id))
    picked += [article_id for article_id in ranked if article_id not in picked]
    return picked[:limit]


def _words(texts: Sequence[str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        found += WORD_PATTERN.findall(text.casefold())
        if len(found) >= MAX_WORDS:
            return found[:MAX_WORDS]
    return found


def containment(a: Sequence[str], b: Sequence[str], run: int) -> float:
    """The share of the shorter word list found in the longer, in order, in runs of at
    least `run` words (a word in common by chance is no evidence)."""
    shorter, longer = (a, b) if len(a) <= len(b) else (b, a)
    if not shorter:
        return 0.0
    matcher = SequenceMatcher(None, shorter, longer, autojunk=False)
    found = sum(block.size for block in matcher.get_matching_blocks() if block.size >= run)
    return found / len(shorter)


def similar_titles(a: str, b: str) -> bool:
    """The same title key, or most title words in common."""
    if title_key(a) == title_key(b):
        return True
    words_a = set(WORD_PATTERN.findall(a.casefold()))
    words_b = set(WORD_PATTERN.findall(b.casefold()))
    union = words_a | words_b
    return bool(union) and len(words_a & words_b) / len(union) >= TITLE_JACCARD


def republication(incoming: Version, stored: Version, rule: ContainmentRule) -> float | None:
    """The containment of the shorter text in the longer when it makes `incoming` a
    re-publication of `stored`, else None."""
    if rule.threshold <= 0:
        return None
    days = (stored.day, stored.published or stored.day)
    if all(abs((incoming.day - day).days) > rule.days for day in days):
        return None
    if not similar_titles(incoming.title, stored.title):
        return None
    a, b = _words(incoming.texts), _words(stored.texts)
    if title_key(incoming.title) != title_key(stored.title) and _template_siblings(
        incoming.title, stored.title, a, b
    ):
        return None
    run = 2 if min(len(a), len(b)) < rule.short_words else rule.shingle_size
    score = containment(a, b, run)
    return score if score >= rule.threshold else None


def _template_siblings(title_a: str, title_b: str, a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two texts differ only where their titles do ("Road closed in Daoli" and
    "Road closed in Nangang", each naming its district in the same notice): two articles
    made from one template, not a correction. A number corrected in the title and the text
    alike looks the same and stays a second article: a visible duplicate the editor can
    delete, where a false merge would hide an article."""
    words_a = set(WORD_PATTERN.findall(title_a.casefold()))
    words_b = set(WORD_PATTERN.findall(title_b.casefold()))
    if not (words_a - words_b and words_b - words_a):
        return False  # words added to a title ("Update: ...") replace nothing
    body_a, body_b = set(a), set(b)
    only_a, only_b = body_a - body_b, body_b - body_a
    return bool(only_a or only_b) and only_a <= words_a - words_b and only_b <= words_b - words_a


StoredVersions = Callable[[Sequence[str]], Mapping[str, Version]]


def contained_matches(
    item: Incoming,
    facts: StoredFacts,
    stored: StoredVersions,
    rule: ContainmentRule,
    also: Sequence[str] = (),
) -> list[NearMatch]:
    """The candidates `item` is a re-publication of by containment; `stored` gives the
    current versions of those of the ids the store still has."""
    if rule.threshold <= 0:
        return []
    ids = candidates(facts, also)
    if not ids:
        return []
    kept = [
        block.text
        for block, key in zip(item.article.blocks, item.block_keys, strict=True)
        if key not in facts.boilerplate
    ]
    incoming = Version(item.article.title, item.article.published.date(), kept)
    matches = []
    for article_id, version in stored(ids).items():
        score = republication(incoming, version, rule)
        if score is not None:
            evidence = f"containment {score:.2f}, similar title, {version.day.isoformat()}"
            matches.append(NearMatch(article_id, score, version.day.isoformat(), evidence))
    return matches
