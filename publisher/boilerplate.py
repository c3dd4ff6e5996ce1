"""Use case: the blocks removed as boilerplate (`publisher boilerplate list`), and putting
one back everywhere for good (`publisher boilerplate keep KEY|TEXT`).

A block is named by its normalized text (any case and spacing) or by a unique prefix of
its key. Keeping it deletes its removals and its declaration, records it in kept_blocks
(which every later dedup decision reads: dedup/rules.py) and asks for a site build in the
same transaction, so a process killed before it builds leaves the build owed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from publisher.errors import PublisherError
from publisher.model import RemovedBlock
from publisher.store import Store
from publisher.store.boilerplate import BoilerplateBlocks
from publisher.store.builds import SiteBuilds

__all__ = ["BoilerplateEditor", "Kept", "KeptArticle", "UnknownBlock", "find_block"]


class UnknownBlock(PublisherError, LookupError):
    """No removed block, or more than one, answers to what `keep` was given (exit 2)."""


@dataclass(frozen=True, slots=True)
class KeptArticle:
    """An article a kept block went back into (site.ChangedArticle fits)."""

    article_id: str | None


@dataclass(frozen=True)
class Kept:
    """What `keep` changed; `changed` and `build_requests` make it a site.ChangeReport."""

    block: RemovedBlock
    changed: Sequence[KeptArticle]
    build_requests: Sequence[int]


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


def find_block(blocks: Sequence[RemovedBlock], wanted: str) -> RemovedBlock:
    """The block whose normalized text is `wanted`'s, else whose key starts with it."""
    needle = _normalized(wanted)
    if not needle:
        raise UnknownBlock("give a block's text or a prefix of its key")
    by_text = [b for b in blocks if _normalized(b.text) == needle]
    if by_text:
        return by_text[0]
    by_key = [b for b in blocks if b.key.startswith(needle)]
    if len(by_key) == 1:
        return by_key[0]
    if by_key:
        keys = ", ".join(b.key for b in by_key[:10])
        raise UnknownBlock(f"'{wanted}' is the start of {len(by_key)} keys: {keys}")
    raise UnknownBlock(
        f"no block removed as boilerplate has the text or key '{wanted}'",
        "see `publisher boilerplate list`",
    )


class BoilerplateEditor:
    """List the removed blocks of one store; keep one."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def removed(self) -> list[RemovedBlock]:
        with self.store.read() as connection:
            return BoilerplateBlocks(connection).removed()

    def keep(self, wanted: str, now: datetime) -> Kept:
        with self.store.begin() as connection:
            blocks = BoilerplateBlocks(connection)
            block = find_block(blocks.removed(), wanted)
            ids = blocks.keep(block.key, block.text, now)
            request = SiteBuilds(connection).request()
        return Kept(block, [KeptArticle(i) for i in ids], [request])
