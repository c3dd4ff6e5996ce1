"""The dedup decisions on their own: facts in, a decision out, no database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.dedup.rules import (
    Holder,
    Incoming,
    NearMatch,
    Outcome,
    PlannedRemoval,
    StoredFacts,
    Teaser,
    block_key,
    decide,
    leaves_empty,
    plan_boilerplate,
    title_key,
    trailing_teaser,
)
from publisher.model import Block, ParsedArticle
from publisher.parse import parse_article, slugify
from tests.conftest import SEEDS

CHILDCARE = "Harbin ramps up childcare services"
CHILDCARE_SENTENCE = (
    "A new comprehensive service center for childcare in Harbin is expected to be finished "
    "by the end of the year."
)
XIANGFANG = "Xiangfang leads the way in smart government"


def article(
    title: str, *texts: str, published: datetime = datetime(2024, 1, 2, tzinfo=UTC)
) -> Incoming:
    parsed = ParsedArticle(
        title=title,
        category_path=("News",),
        published=published,
        author=None,
        source=None,
        blocks=tuple(Block(text) for text in texts),
        content_hash=block_key(title + "".join(texts)),
        source_file=f"{title}.txt",
    )
    return Incoming.of(parsed, slugify(published, title))


def seed(prefix: str) -> Incoming:
    path = next(p for p in sorted(SEEDS.iterdir()) if p.name.startswith(prefix))
    return seed_file(path)


def seed_file(path: Path) -> Incoming:
    parsed = parse_article(path.read_bytes(), source_file=path.name, zone=ZoneInfo("UTC"))
    return Incoming.of(parsed, slugify(parsed.published, parsed.title))


def removed(removals: tuple[PlannedRemoval, ...]) -> set[tuple[str | None, str]]:
    return {(r.article_id, r.text) for r in removals}


# -- keys and the teaser -------------------------------------------------------


def test_blocks_are_the_same_whatever_their_case_and_titles_whatever_their_spacing() -> None:
    assert block_key("Read More.") == block_key("read more.")
    assert block_key("Read more.") != block_key("Read more!")
    assert title_key("  Harbin  Ramps up\tchildcare SERVICES ") == title_key(CHILDCARE)


@pytest.mark.parametrize("prefix", ["000", "002", "003", "004"])
def test_four_seeds_end_in_the_childcare_teaser(prefix: str) -> None:
    item = seed(prefix)
    last = len(item.article.blocks) - 1
    assert item.teaser == Teaser(CHILDCARE, (last - 1, last))
    assert item.article.blocks[last].text == CHILDCARE_SENTENCE


def test_seed_001_ends_in_its_own_teaser() -> None:
    item = seed("001")
    assert item.teaser is not None and item.teaser.headline == XIANGFANG


@pytest.mark.parametrize(
    "texts",
    [
        ("Headline", "Sentence."),  # two blocks: nothing before the teaser
        ("Body.", "A headline that ends a sentence.", "Sentence."),
        ("Body.", "Two\nlines", "Sentence."),
        ("Body.", "Headline", "Two\nlines"),
        ("Body.", " ".join(["word"] * 15), "Sentence."),
    ],
)
def test_what_is_not_a_trailing_teaser(texts: tuple[str, ...]) -> None:
    assert trailing_teaser([Block(t) for t in texts]) is None


def test_a_fourteen_word_headline_is_still_one() -> None:
    headline = " ".join(["word"] * 14)
    assert trailing_teaser([Block("Body."), Block(headline), Block("One.")]) == Teaser(
        headline, (1, 2)
    )


def test_incoming_carries_each_blocks_key_and_its_teaser() -> None:
    item = article("T", "Body.", "Headline", "One sentence.")
    assert item.block_keys == (
        block_key("Body."),
        block_key("Headline"),
        block_key("One sentence."),
    )
    assert item.teaser == Teaser("Headline", (1, 2))


# -- decide --------------------------------------------------------------------


def test_an_exact_copy_is_a_duplicate_and_plans_nothing() -> None:
    decision = decide(article("T", "a", "b"), StoredFacts(exact_article_id="x"), [], 2)
    assert (decision.outcome, decision.target_id) == (Outcome.DUPLICATE, "x")
    assert decision.removals == () and decision.new_boilerplate == ()
    assert decision.reason == "exact copy of x"


def test_the_most_similar_stored_article_is_updated() -> None:
    near = [NearMatch("a", 0.85, "2024-01-01"), NearMatch("b", 0.95, "2024-01-01")]
    decision = decide(article("T", "a", "b"), StoredFacts(), near, 2)
    assert (decision.outcome, decision.target_id) == (Outcome.UPDATED, "b")
    assert decision.reason == "re-publication of b (similarity 0.95)"


def test_a_version_older_than_the_stored_one_is_a_duplicate() -> None:
    near = [NearMatch("a", 0.9, "2024-01-03")]
    decision = decide(article("T", "a", "b"), StoredFacts(), near, 2)
    assert (decision.outcome, decision.target_id) == (Outcome.DUPLICATE, "a")
    assert decision.reason == "older version of a (similarity 0.90)"


def test_a_version_of_the_same_day_updates() -> None:
    near = [NearMatch("a", 0.9, "2024-01-02")]
    assert decide(article("T", "a", "b"), StoredFacts(), near, 2).outcome is Outcome.UPDATED


def test_a_new_article_is_added() -> None:
    decision = decide(article("T", "a", "b"), StoredFacts(), [], 2)
    assert (decision.outcome, decision.target_id, decision.reason) == (
        Outcome.ADDED,
        None,
        "new article",
    )


# -- boilerplate planning ------------------------------------------------------


def test_a_block_held_by_enough_articles_is_declared_and_removed_from_all() -> None:
    item = article("Mine", "My lede.", "Subscribe now.")
    facts = StoredFacts(holders={block_key("Subscribe now."): [Holder("a", "Their lede.", "A")]})
    removals, declared = plan_boilerplate(item, facts, None, 2)
    # the headline it may advertise: the first short block found before it
    assert declared == ((block_key("Subscribe now."), "Subscribe now.", "Their lede."),)
    assert removed(removals) == {(None, "Subscribe now."), ("a", "Subscribe now.")}
    assert {r.reason for r in removals} == {"appears in 2 or more articles (boilerplate)"}
    assert {r.rule for r in removals} == {"shared"}


def test_a_block_held_by_too_few_articles_stays() -> None:
    item = article("Mine", "My lede.", "Subscribe now.")
    facts = StoredFacts(holders={block_key("Subscribe now."): [Holder("a", None, "A")]})
    assert plan_boilerplate(item, facts, None, 3) == ((), ())


def test_the_stored_version_of_the_updated_article_is_not_another_holder() -> None:
    item = article("Mine", "My lede.", "Subscribe now.")
    holders = [Holder("self", "My lede.", "Mine"), Holder("a", None, "A")]
    facts = StoredFacts(holders={block_key("Subscribe now."): holders})
    assert plan_boilerplate(item, facts, "self", 3) == ((), ())
    removals, _ = plan_boilerplate(item, facts, None, 3)
    assert removed(removals) == {
        (None, "Subscribe now."),
        ("self", "Subscribe now."),
        ("a", "Subscribe now."),
    }


def test_the_advertised_article_keeps_the_teaser_sentence_as_its_lede() -> None:
    # the childcare article arrives after two articles that end in its teaser
    item = article(CHILDCARE, CHILDCARE_SENTENCE, "More on childcare.")
    holders = [Holder("a", CHILDCARE, "A"), Holder("b", CHILDCARE, "B")]
    facts = StoredFacts(holders={block_key(CHILDCARE_SENTENCE): holders})
    removals, declared = plan_boilerplate(item, facts, None, 2)
    assert declared == ((block_key(CHILDCARE_SENTENCE), CHILDCARE_SENTENCE, CHILDCARE),)
    assert removed(removals) == {("a", CHILDCARE_SENTENCE), ("b", CHILDCARE_SENTENCE)}


def test_declared_boilerplate_is_removed_except_from_the_article_it_advertises() -> None:
    key = block_key(CHILDCARE_SENTENCE)
    facts = StoredFacts(boilerplate={key: frozenset({title_key(CHILDCARE)})})
    other = article("Other", "Body.", CHILDCARE_SENTENCE)
    removals, declared = plan_boilerplate(other, facts, None, 2)
    assert declared == ()
    assert removals == (
        PlannedRemoval(
            None, key, CHILDCARE_SENTENCE, "shared", "appears in other articles (boilerplate)"
        ),
    )
    advertised = article(CHILDCARE.upper(), CHILDCARE_SENTENCE)
    assert plan_boilerplate(advertised, facts, None, 2) == ((), ())


def test_a_block_repeated_in_one_article_is_planned_once() -> None:
    item = article("Mine", "Share this.", "Body.", "Share this.")
    facts = StoredFacts(holders={block_key("Share this."): [Holder("a", None, "A")]})
    removals, declared = plan_boilerplate(item, facts, None, 2)
    assert len(declared) == 1
    assert sorted(removed(removals), key=str) == [("a", "Share this."), (None, "Share this.")]


def test_the_headline_declared_is_the_first_short_block_before_the_shared_one() -> None:
    long_block = " ".join(["long"] * 15)
    item = article("Mine", "Short headline", "Shared.")
    holders = [Holder("a", long_block, "A"), Holder("b", None, "B")]
    _, declared = plan_boilerplate(
        item, StoredFacts(holders={block_key("Shared."): holders}), None, 2
    )
    assert declared[0][2] == "Short headline"


def test_a_trailing_teaser_for_a_known_article_is_removed_from_the_incoming_one() -> None:
    item = seed("001")
    facts = StoredFacts(titles={title_key(XIANGFANG): "xiangfang"})
    removals, declared = plan_boilerplate(item, facts, None, 2)
    teaser = item.article.blocks[-2:]
    assert declared == ()
    assert removals == tuple(
        PlannedRemoval(
            None, block_key(b.text), b.text, "teaser", "teaser for another article (xiangfang)"
        )
        for b in teaser
    )


def test_a_teaser_for_the_article_itself_stays() -> None:
    item = seed("001")
    facts = StoredFacts(titles={title_key(XIANGFANG): "self"})
    assert plan_boilerplate(item, facts, "self", 2) == ((), ())


def test_001s_teaser_for_an_unknown_article_stays() -> None:
    assert plan_boilerplate(seed("001"), StoredFacts(), None, 2) == ((), ())


def test_stored_teasers_advertising_the_incoming_article_are_removed_from_them() -> None:
    item = article(XIANGFANG, "Harbin's Xiangfang district is bringing city administration.")
    tail = [("k1", "The sentence."), ("k2", XIANGFANG)]
    facts = StoredFacts(advertisers=[("old", tail), ("self", tail)])
    removals, _ = plan_boilerplate(item, facts, "self", 2)
    reason = f"teaser for another article ({XIANGFANG})"
    assert removals == (
        PlannedRemoval("old", "k1", "The sentence.", "teaser", reason),
        PlannedRemoval("old", "k2", XIANGFANG, "teaser", reason),
    )


def test_a_block_both_shared_and_a_teaser_is_removed_once_as_shared() -> None:
    item = article("Mine", "Body.", "Known headline", "Sentence.")
    facts = StoredFacts(
        holders={block_key("Sentence."): [Holder("a", None, "A")]},
        titles={title_key("Known headline"): "known"},
    )
    removals, _ = plan_boilerplate(item, facts, None, 2)
    own = {r.text: r.rule for r in removals if r.article_id is None}
    assert own == {"Sentence.": "shared", "Known headline": "teaser"}


# -- a single sentence, a run, a kept block, an empty body -----------------------------

POLICE = "Police said the investigation is ongoing."


def test_one_sentence_two_unrelated_stories_share_is_not_boilerplate() -> None:
    item = article("Fire in a warehouse", "A warehouse burned on Tuesday.", POLICE)
    facts = StoredFacts(holders={block_key(POLICE): [Holder("a", "A barge hit a pier.", "A")]})
    assert plan_boilerplate(item, facts, None, 3) == ((), ())
    # a third story with it makes it boilerplate (min_articles 3)
    two = [Holder("a", "A barge hit a pier.", "A"), Holder("b", "Bikes were found.", "B")]
    removals, declared = plan_boilerplate(
        item, StoredFacts(holders={block_key(POLICE): two}), None, 3
    )
    assert removed(removals) == {(None, POLICE), ("a", POLICE), ("b", POLICE)}
    assert [key for key, _, _ in declared] == [block_key(POLICE)]


def test_a_run_of_two_blocks_goes_at_its_second_copy_whatever_min_articles() -> None:
    item = article("Mine", "My lede.", CHILDCARE, CHILDCARE_SENTENCE)
    facts = StoredFacts(
        holders={
            block_key(CHILDCARE): [Holder("a", "Their lede.", "A")],
            block_key(CHILDCARE_SENTENCE): [Holder("a", CHILDCARE, "A")],
        }
    )
    removals, declared = plan_boilerplate(item, facts, None, 5)
    assert removed(removals) == {
        (None, CHILDCARE),
        (None, CHILDCARE_SENTENCE),
        ("a", CHILDCARE),
        ("a", CHILDCARE_SENTENCE),
    }
    assert {r.reason for r in removals} == {
        "part of a run of blocks repeated in other articles (boilerplate)"
    }
    assert len(declared) == 2


def test_the_same_two_blocks_apart_in_another_article_are_no_run() -> None:
    item = article("Mine", "My lede.", CHILDCARE, CHILDCARE_SENTENCE)
    facts = StoredFacts(
        holders={
            block_key(CHILDCARE): [Holder("a", "Their lede.", "A")],
            block_key(CHILDCARE_SENTENCE): [Holder("a", "Something between.", "A")],
        }
    )
    assert plan_boilerplate(item, facts, None, 3) == ((), ())


def test_a_kept_block_is_never_removed_by_any_rule() -> None:
    keys = frozenset({block_key(CHILDCARE), block_key(CHILDCARE_SENTENCE)})
    item = article("Mine", "My lede.", CHILDCARE, CHILDCARE_SENTENCE)
    run = StoredFacts(
        holders={
            block_key(CHILDCARE): [Holder("a", "Their lede.", "A")],
            block_key(CHILDCARE_SENTENCE): [Holder("a", CHILDCARE, "A")],
        },
        kept=keys,
    )
    assert plan_boilerplate(item, run, None, 2) == ((), ())
    declared = StoredFacts(boilerplate={block_key(CHILDCARE_SENTENCE): frozenset()}, kept=keys)
    assert plan_boilerplate(item, declared, None, 2) == ((), ())
    teaser = StoredFacts(titles={title_key(CHILDCARE): "adv"}, kept=keys)
    assert plan_boilerplate(item, teaser, None, 2) == ((), ())
    tails = [("x", [(block_key(CHILDCARE), CHILDCARE)])]
    advertised = article(CHILDCARE, CHILDCARE_SENTENCE, "More.")
    facts = StoredFacts(advertisers=tails, kept=keys)
    assert plan_boilerplate(advertised, facts, None, 2) == ((), ())


def test_a_removal_that_takes_every_block_leaves_the_article_empty() -> None:
    assert leaves_empty(["a", "b"], ["b", "a"])
    assert not leaves_empty(["a", "b"], ["b"])
    assert leaves_empty(["a", "a"], ["a"])
