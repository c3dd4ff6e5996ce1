"""Identity by source in the pure rules: the file an article comes from decides first."""

from __future__ import annotations

from datetime import UTC, datetime

from publisher.dedup.overlay import BatchOverlay, BatchQuestions
from publisher.dedup.rules import (
    SOURCE_KEY_CHARS,
    Holder,
    Incoming,
    NearMatch,
    Outcome,
    StoredFacts,
    decide,
    source_key,
)
from publisher.model import Block, ParsedArticle
from publisher.parse import slugify

LEDE = "A crane fell on Xuefu Road on Tuesday and two workers were hurt."
LATER = "The site was closed, the district said."


def article(title: str, *texts: str, key: str) -> Incoming:
    published = datetime(2026, 12, 2, tzinfo=UTC)
    parsed = ParsedArticle(
        title=title,
        category_path=("News",),
        published=published,
        author=None,
        source=None,
        blocks=tuple(Block(text) for text in texts),
        content_hash=title + "|".join(texts),
        source_file="crane.txt",
    )
    return Incoming.of(parsed, slugify(published, title), key)


def test_a_source_key_is_the_id_header_else_the_path_and_stays_bounded() -> None:
    assert source_key("hd-42", "news/crane.txt") == "id:hd-42"
    assert source_key(None, "news/crane.txt") == "file:news/crane.txt"
    assert source_key("", "crane.txt") == "file:crane.txt"
    long_a, long_b = source_key(None, "a" * 5000), source_key(None, "a" * 4999 + "b")
    assert long_a != long_b and len(long_a) <= SOURCE_KEY_CHARS + 17


def test_its_own_file_saved_again_updates_it_whatever_the_similarity_or_date() -> None:
    item = article("Crane collapse", LEDE, LATER, key="file:crane.txt")
    stale = NearMatch("tag:other", 0.95, "2030-01-01")  # would make it an "older version"
    facts = StoredFacts(
        source_article_id="tag:crane",
        # its own stored version holds both paragraphs: that is no second article
        holders={item.block_keys[0]: [Holder("tag:crane", None, "Crane collapse")]},
    )
    decision = decide(item, facts, [stale], min_articles=2)
    assert (decision.outcome, decision.target_id) == (Outcome.UPDATED, "tag:crane")
    assert decision.removals == () and decision.new_boilerplate == ()


def test_its_own_file_saved_with_the_same_content_is_a_duplicate_of_it() -> None:
    item = article("Crane collapse", LEDE, key="file:crane.txt")
    overlay = BatchOverlay("example.org")
    overlay.load_exact([(item.article.content_hash, "tag:crane")])
    overlay.load_sources([("file:crane.txt", "tag:crane", item.article.content_hash)])
    decision = decide(item, overlay.facts(item), [], min_articles=2)
    assert (decision.outcome, decision.target_id) == (Outcome.DUPLICATE, "tag:crane")
    # the content of an earlier version of it, saved back: a change
    overlay.load_sources([("file:crane.txt", "tag:crane", "the corrected version's hash")])
    decision = decide(item, overlay.facts(item), [], min_articles=2)
    assert (decision.outcome, decision.target_id) == (Outcome.UPDATED, "tag:crane")


def test_later_files_of_a_batch_see_the_sources_of_earlier_ones() -> None:
    first = article("Crane collapse", LEDE, key="id:hd-42")
    second = article("City orders crane checks", LATER, key="id:hd-42")
    overlay = BatchOverlay("example.org")
    assert BatchQuestions.of([first, second]).source_keys == {"id:hd-42"}
    assert overlay.facts(first).source_article_id is None
    decision = decide(first, overlay.facts(first), [], min_articles=2)
    article_id, _ = overlay.mint(first)
    overlay.added(decision, first, article_id)
    assert overlay.facts(second).source_article_id == article_id


def test_a_re_publication_from_another_file_takes_that_files_key_if_free() -> None:
    overlay = BatchOverlay("example.org")
    overlay.load_sources([("file:old.txt", "tag:a", "ha"), ("file:taken.txt", "tag:b", "hb")])
    moved = article("Crane collapse", LEDE, key="file:new.txt")
    assert overlay.source_moves(moved, "tag:a")
    overlay.replaced(
        decide(moved, StoredFacts(), [NearMatch("tag:a", 0.9, "2026-12-01")], 2),
        moved,
        "tag:a",
        datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert overlay.facts(moved).source_article_id == "tag:a"
    assert overlay.facts(article("x", LEDE, key="file:old.txt")).source_article_id is None
    held = article("Crane collapse", LEDE, key="file:taken.txt")
    assert not overlay.source_moves(held, "tag:a")
