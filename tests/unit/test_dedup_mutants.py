"""The duplicate decisions without a database (dedup/ is pure), and the LSH index:
what the other tests leave open (found by mutmut)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from publisher.dedup import rules
from publisher.dedup.minhash import NearDuplicateIndex, Signer, lsh_bands
from publisher.dedup.rules import (
    Decision,
    Holder,
    Incoming,
    NearMatch,
    Outcome,
    PlannedRemoval,
    StoredFacts,
    Teaser,
    block_key,
    title_key,
    trailing_teaser,
)
from publisher.model import Block, ParsedArticle

LEDE = "The city opened its first smart library on Monday."
HEADLINE = "Harbin ramps up childcare services"
BLURB = "A new comprehensive service center opened in Daoli district."
SHARED = "part of a run of blocks repeated in other articles (boilerplate)"
# a block before a shared one in another article that is not this article's: no run
UNSHARED = " ".join(["word"] * 15)


def decide(
    article: ParsedArticle, facts: StoredFacts, near: list[NearMatch], min_articles: int
) -> Decision:
    """rules.decide of an incoming file with this article (its keys and teaser derived)."""
    return rules.decide(Incoming.of(article, "slug"), facts, near, min_articles)


def parsed(title: str, *blocks: str, date: str = "2021-03-04") -> ParsedArticle:
    return ParsedArticle(
        title=title,
        category_path=("News",),
        published=datetime.fromisoformat(date).replace(tzinfo=UTC),
        author=None,
        source=None,
        blocks=tuple(Block(b) for b in blocks),
        content_hash="h",
        source_file="a.txt",
    )


def blocks(*texts: str) -> tuple[Block, ...]:
    return tuple(Block(t) for t in texts)


# -- keys ------------------------------------------------------------------------------


def test_block_and_title_keys() -> None:
    assert block_key("Same TEXT") == block_key("same text")
    assert block_key("one") != block_key("two")
    # stored with every boilerplate decision: a change would forget them all
    assert block_key("Harbin") == "c2a57c917371efd4"
    assert title_key("  Harbin   RAMPS up\u00a0childcare ") == "harbin ramps up childcare"


# -- the trailing teaser ---------------------------------------------------------------


def test_a_trailing_teaser_is_a_short_headline_then_one_paragraph() -> None:
    assert trailing_teaser(blocks(LEDE, HEADLINE, BLURB)) == Teaser(HEADLINE, (1, 2))
    assert trailing_teaser(blocks(LEDE, "More.", HEADLINE, BLURB)) == Teaser(HEADLINE, (2, 3))


@pytest.mark.parametrize(
    "texts",
    [
        (HEADLINE, BLURB),  # two blocks: the headline would be the whole article
        (LEDE, HEADLINE + "\nsecond line", BLURB),
        (LEDE, HEADLINE, BLURB + "\nsecond line"),
        (LEDE, " ".join(["word"] * 15), BLURB),
        *((LEDE, HEADLINE + mark, BLURB) for mark in ".!?:;,"),
    ],
)
def test_what_is_not_a_trailing_teaser(texts: tuple[str, ...]) -> None:
    assert trailing_teaser(blocks(*texts)) is None


def test_a_headline_of_fourteen_words_is_still_a_headline() -> None:
    headline = " ".join(["word"] * 14)
    assert trailing_teaser(blocks(LEDE, headline, BLURB)) == Teaser(headline, (1, 2))


# -- decide: exact copies, re-publications, new articles -------------------------------


def test_an_exact_copy_is_a_duplicate_and_plans_nothing() -> None:
    article = parsed("T", LEDE, HEADLINE, BLURB)
    facts = StoredFacts(exact_article_id="A", titles={title_key(HEADLINE): "B"})
    assert decide(article, facts, [NearMatch("C", 0.9, "2021-01-01")], 2) == Decision(
        Outcome.DUPLICATE, "A", (), (), "exact copy of A"
    )


def test_a_near_duplicate_updates_the_most_similar_stored_article() -> None:
    near = [NearMatch("B", 0.85, "2021-03-01"), NearMatch("C", 0.95, "2021-03-04")]
    assert decide(parsed("T", LEDE), StoredFacts(), near, 2) == Decision(
        Outcome.UPDATED, "C", (), (), "re-publication of C (similarity 0.95)"
    )


def test_an_older_version_of_a_stored_article_is_a_duplicate_of_it() -> None:
    near = [NearMatch("B", 0.99, "2021-03-05"), NearMatch("C", 0.8, "2020-01-01")]
    assert decide(parsed("T", LEDE, date="2021-03-04"), StoredFacts(), near, 2) == Decision(
        Outcome.DUPLICATE, "B", (), (), "older version of B (similarity 0.99)"
    )


def test_a_new_article_is_added() -> None:
    assert decide(parsed("T", LEDE), StoredFacts(), [], 2) == Decision(
        Outcome.ADDED, None, (), (), "new article"
    )


# -- decide: boilerplate ---------------------------------------------------------------


def test_a_block_already_declared_boilerplate_is_removed_unless_it_advertises_this_article() -> (
    None
):
    facts = StoredFacts(boilerplate={block_key(BLURB): frozenset({title_key(HEADLINE)})})
    removal = PlannedRemoval(
        None, block_key(BLURB), BLURB, "shared", "appears in other articles (boilerplate)"
    )
    other = decide(parsed("Other story", LEDE, BLURB, BLURB), facts, [], 3)
    assert other.removals == (removal,)
    assert other.new_boilerplate == ()
    advertised = decide(parsed(HEADLINE, BLURB, LEDE), facts, [], 3)
    assert advertised.removals == ()


def holders(*ids: str, previous: str = LEDE) -> list[Holder]:
    return [Holder(i, previous, f"Title of {i}") for i in ids]


def test_a_block_held_by_enough_other_articles_becomes_boilerplate_everywhere() -> None:
    article = parsed("Own title", LEDE, HEADLINE, BLURB)
    facts = StoredFacts(
        holders={
            block_key(HEADLINE): holders("x1", "x2", "x2"),  # x2 twice: counted once
            block_key(BLURB): holders("x1", "x2", previous=HEADLINE),
        }
    )
    decision = decide(article, facts, [], 3)
    assert decision.outcome is Outcome.ADDED
    assert decision.new_boilerplate == (
        (block_key(HEADLINE), HEADLINE, LEDE),
        (block_key(BLURB), BLURB, HEADLINE),
    )
    expected = [
        PlannedRemoval(article_id, block_key(text), text, "shared", SHARED)
        for text in (HEADLINE, BLURB)
        for article_id in (None, "x1", "x2")
    ]
    assert list(decision.removals) == expected


def test_below_the_threshold_nothing_is_boilerplate() -> None:
    facts = StoredFacts(holders={block_key(BLURB): holders("x1", previous=UNSHARED)})
    decision = decide(parsed("Own", LEDE, BLURB), facts, [], 3)
    assert (decision.removals, decision.new_boilerplate) == ((), ())
    assert decide(parsed("Own", LEDE, BLURB), facts, [], 2).new_boilerplate == (
        (block_key(BLURB), BLURB, LEDE),
    )


def test_the_article_a_shared_teaser_advertises_keeps_it() -> None:
    article = parsed(HEADLINE, BLURB, "More about it.")
    facts = StoredFacts(
        holders={block_key(BLURB): holders("x1", "x2", previous=HEADLINE)}, titles={}
    )
    decision = decide(article, facts, [], 3)
    assert [r.article_id for r in decision.removals] == ["x1", "x2"]
    assert decision.new_boilerplate == ((block_key(BLURB), BLURB, HEADLINE),)


def test_a_holder_whose_title_is_the_block_keeps_it() -> None:
    facts = StoredFacts(
        holders={block_key(BLURB): [Holder("x1", None, BLURB), Holder("x2", None, "Another title")]}
    )
    decision = decide(parsed("Own", LEDE, BLURB), facts, [], 3)
    assert [r.article_id for r in decision.removals] == [None, "x2"]
    assert decision.new_boilerplate == ((block_key(BLURB), BLURB, LEDE),)


def test_a_long_preceding_block_is_not_a_headline() -> None:
    long = " ".join(["word"] * 15)
    facts = StoredFacts(holders={block_key(BLURB): holders("x1", "x2", previous=long)})
    decision = decide(parsed("Own", BLURB, "Tail."), facts, [], 3)
    assert decision.new_boilerplate == ((block_key(BLURB), BLURB, None),)


def test_its_own_earlier_version_does_not_count_as_another_holder() -> None:
    facts = StoredFacts(holders={block_key(BLURB): holders("self", "x1", previous=UNSHARED)})
    near = [NearMatch("self", 0.9, "2021-01-01")]
    decision = decide(parsed("Own", LEDE, BLURB), facts, near, 3)
    assert decision.outcome is Outcome.UPDATED
    assert (decision.removals, decision.new_boilerplate) == ((), ())
    assert decide(parsed("Own", LEDE, BLURB), facts, [], 3).new_boilerplate != ()


def test_a_trailing_teaser_for_another_stored_article_is_removed() -> None:
    facts = StoredFacts(titles={title_key(HEADLINE): "adv"})
    decision = decide(parsed("Own", LEDE, HEADLINE, BLURB), facts, [], 3)
    reason = "teaser for another article (adv)"
    assert decision.removals == (
        PlannedRemoval(None, block_key(HEADLINE), HEADLINE, "teaser", reason),
        PlannedRemoval(None, block_key(BLURB), BLURB, "teaser", reason),
    )


def test_a_teaser_for_itself_is_kept() -> None:
    facts = StoredFacts(titles={title_key(HEADLINE): "self"})
    near = [NearMatch("self", 0.9, "2021-01-01")]
    assert decide(parsed("Own", LEDE, HEADLINE, BLURB), facts, near, 3).removals == ()


def test_stored_articles_advertising_this_one_lose_their_teaser() -> None:
    pair = ((block_key(HEADLINE), HEADLINE), (block_key(BLURB), BLURB))
    facts = StoredFacts(advertisers=[("a1", pair), ("self", pair), ("a2", pair[:1])])
    near = [NearMatch("self", 0.9, "2021-01-01")]
    decision = decide(parsed(HEADLINE, BLURB, LEDE), facts, near, 3)
    reason = f"teaser for another article ({HEADLINE})"
    assert decision.removals == (
        PlannedRemoval("a1", block_key(HEADLINE), HEADLINE, "teaser", reason),
        PlannedRemoval("a1", block_key(BLURB), BLURB, "teaser", reason),
        PlannedRemoval("a2", block_key(HEADLINE), HEADLINE, "teaser", reason),
    )


def test_a_repeated_block_counts_once_and_the_blocks_after_it_are_still_planned() -> None:
    facts = StoredFacts(
        boilerplate={block_key(LEDE): frozenset()},
        holders={block_key(BLURB): holders("x1", "x2", previous=HEADLINE)},
    )
    decision = decide(parsed("Own", LEDE, LEDE, "Middle.", "Middle.", BLURB), facts, [], 3)
    assert decision.new_boilerplate == ((block_key(BLURB), BLURB, HEADLINE),)
    assert [(r.article_id, r.text) for r in decision.removals] == [
        (None, LEDE),
        (None, BLURB),
        ("x1", BLURB),
        ("x2", BLURB),
    ]
    shared_twice = decide(parsed("Own", BLURB, BLURB, "Tail."), facts, [], 3)
    assert shared_twice.new_boilerplate == ((block_key(BLURB), BLURB, HEADLINE),)


def test_a_preceding_block_of_fourteen_words_is_a_headline() -> None:
    fourteen = " ".join(["word"] * 14)
    facts = StoredFacts(holders={block_key(BLURB): holders("x1", "x2", previous=fourteen)})
    decision = decide(parsed("Own", BLURB, "Tail."), facts, [], 3)
    assert decision.new_boilerplate == ((block_key(BLURB), BLURB, fourteen),)


def test_one_block_is_removed_once_from_one_article() -> None:
    facts = StoredFacts(
        boilerplate={block_key(BLURB): frozenset()},
        titles={title_key(HEADLINE): "adv"},
        advertisers=[("a1", ((block_key(BLURB), BLURB), (block_key(BLURB), BLURB)))],
    )
    decision = decide(parsed("Own", LEDE, HEADLINE, BLURB), facts, [], 3)
    assert [(r.article_id, r.text, r.rule) for r in decision.removals] == [
        (None, BLURB, "shared"),
        (None, HEADLINE, "teaser"),
        ("a1", BLURB, "teaser"),
    ]


# -- signer parameters -----------------------------------------------------------------


@pytest.mark.parametrize(("num_perm", "shingle"), [(0, 3), (65536, 3), (64, 0), (64, 65536)])
def test_signer_parameters_are_bounded(num_perm: int, shingle: int) -> None:
    with pytest.raises(ValueError) as caught:
        Signer(num_perm, shingle)
    assert str(caught.value) == "num_perm and shingle_size must be between 1 and 65535"


def test_signer_edges_and_header() -> None:
    assert Signer(1, 1).num_perm == 1
    big = Signer(65535, 65535)
    assert (big.num_perm, big.shingle_size) == (65535, 65535)
    signer = Signer(16, 3)
    signature = signer.sign_text("A title", ["Some words here.", "More words there."])
    assert signer.is_current(signature)
    assert len(signer.values(signature)) == 16
    assert not Signer(16, 2).is_current(signature)
    assert not Signer(17, 3).is_current(signature)
    assert not signer.is_current(signature[:-4])
    assert not signer.is_current(b"XXXX" + signature[4:])


def test_signatures_are_the_same_in_every_process_and_version() -> None:
    # stored beside every article and compared with later ones: the permutations are
    # fixed (seeded), else a restart would make every stored signature incomparable
    texts = ["one two three four", "five"]
    made = Signer(8, 3).sign_text("A title", texts)
    assert made == Signer(8, 3).sign_text("A title", texts)
    assert made.hex() == (
        "4d486434080003005429f13d923ff98fed65442bf8b31d2a674e0a3426863850aedb62b7870cbb26"
    )


def test_rows_of_blocks_without_words_are_neutral() -> None:
    signer = Signer(16, 3)
    rows = signer.block_rows("Title words", ["", "...", "one two three four"])
    assert rows.shape == (4, 16)
    assert (rows[1] == 0xFFFFFFFF).all() and (rows[2] == 0xFFFFFFFF).all()
    assert signer.signature(rows) == signer.signature(rows[[0, 3]])
    empty = signer.block_rows("", [""])
    assert (empty == 0xFFFFFFFF).all()


def test_short_texts_are_one_shingle_and_shingles_stay_in_their_block() -> None:
    signer = Signer(32, 3)
    rows = signer.block_rows("t", ["a b", "c d e f"])
    again = signer.block_rows("t", ["a b"])
    assert (rows[1] == again[1]).all()
    alone = signer.block_rows("x", ["c d e f"])
    assert (rows[2] == alone[1]).all()
    assert not (rows[1] == signer.block_rows("t", ["b a"])[1]).all()


# -- LSH bands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "num_perm", "expected"),
    [(0.8, 64, (16, 4)), (0.7, 128, (16, 2)), (0.9, 16, (8, 2)), (0.9, 128, (16, 8))],
)
def test_lsh_bands_examples(threshold: float, num_perm: int, expected: tuple[int, int]) -> None:
    bands, rows = lsh_bands(threshold, num_perm)
    assert (bands, rows) == expected
    assert isinstance(bands, int) and isinstance(rows, int)


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [16, 64, 128])
def test_lsh_bands_take_the_most_rows_that_keep_recall_at_the_threshold(
    threshold: float, num_perm: int
) -> None:
    bands, rows = lsh_bands(threshold, num_perm)

    def recall(b: int, r: int) -> float:
        return float(1 - (1 - threshold**r) ** b)

    assert isinstance(bands, int)
    assert 1 <= bands <= 16 and bands * rows <= num_perm
    assert recall(bands, rows) >= 0.999
    more = rows + 1
    assert more > num_perm or recall(min(16, num_perm // more), more) < 0.999


def test_lsh_bands_fall_back_to_single_rows() -> None:
    assert lsh_bands(0.1, 4) == (4, 1)
    assert lsh_bands(0.1, 64, max_bands=8) == (8, 1)


# -- the index -------------------------------------------------------------------------


SIGNER = Signer(64, 3)


def signature(values: np.ndarray) -> bytes:
    return SIGNER.header + values.astype(np.uint32).tobytes()


def base(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)


def changed(values: np.ndarray, positions: range) -> np.ndarray:
    other = values.copy()
    for p in positions:
        other[p] ^= np.uint32(0x5A5A5A5A)
    return other


def test_an_index_finds_a_near_duplicate_at_or_above_the_threshold_only() -> None:
    index = NearDuplicateIndex(SIGNER, 0.8)
    assert (index.bands, index.rows) == (16, 4)
    a = base(1)
    index.add("a", signature(a))
    index.add("z", signature(base(2)))
    assert len(index) == 2
    assert index.query(signature(a)) == [("a", 1.0)]
    # 12 of 64 values differ, all in the first three bands: 13 bands still agree
    assert index.query(signature(changed(a, range(12)))) == [("a", 52 / 64)]
    # 16 differ: 0.75 < 0.8, a candidate (12 bands agree) but not a match
    assert index.query(signature(changed(a, range(16)))) == []
    assert index.query(signature(base(3))) == []


def test_a_near_duplicate_sharing_one_band_is_a_candidate() -> None:
    index = NearDuplicateIndex(SIGNER, 0.01)
    a = base(1)
    index.add("a", signature(a))
    near = changed(a, range(index.rows, 64))  # only the first band agrees
    [(found, similarity)] = index.query(signature(near))
    assert found == "a" and similarity == pytest.approx(index.rows / 64)


def test_an_empty_index_finds_nothing_and_refuses_foreign_signatures() -> None:
    index = NearDuplicateIndex(SIGNER, 0.8)
    assert index.query(signature(base(1))) == []
    with pytest.raises(ValueError, match="signature of x is not of the current scheme"):
        index.add("x", Signer(32, 3).header + base(1)[:32].tobytes())


def test_re_adding_an_article_replaces_its_signature() -> None:
    index = NearDuplicateIndex(SIGNER, 0.8)
    first, second = base(1), base(2)
    index.add("a", signature(first))
    index.add("a", signature(second))
    assert len(index) == 1
    assert index.query(signature(second)) == [("a", 1.0)]
    # the old keys still lead to "a", whose current signature no longer matches
    assert index.query(signature(first)) == []


def test_several_articles_under_one_band_key_are_all_candidates() -> None:
    index = NearDuplicateIndex(SIGNER, 0.8)
    a = base(1)
    copies = {f"c{i}": changed(a, range(60 + i % 4, 61 + i % 4)) for i in range(4)}
    for name, values in copies.items():
        index.add(name, signature(values))
    found = dict(index.query(signature(a)))
    assert set(found) == set(copies)
    assert all(s == 63 / 64 for s in found.values())


def test_a_large_index_merges_its_recent_keys_and_still_finds_everything() -> None:
    index = NearDuplicateIndex(SIGNER, 0.8)
    count = 2200  # past 1024 rows (growth) and twice past 16384 recent keys (two merges)
    values = [base(1000 + n) for n in range(count)]
    for n, v in enumerate(values):
        index.add(f"a{n}", signature(v))
        if n % 100 == 5:  # a second article under the same keys, before each merge
            index.add(f"copy{n}", signature(v))
    assert len(index) == count + 22
    for n in (0, 1, 700, 1023, 1024, 1500, 2047, 2048, 2199):
        found = index.query(signature(changed(values[n], range(8))))
        assert found == [(f"a{n}", 56 / 64)]
    for n in (5, 1005, 2105):
        assert sorted(index.query(signature(values[n]))) == [(f"a{n}", 1.0), (f"copy{n}", 1.0)]
    assert index.query(signature(base(5))) == []


def test_a_similarity_exactly_at_the_threshold_is_a_match() -> None:
    index = NearDuplicateIndex(SIGNER, 0.75)
    a = base(1)
    index.add("a", signature(a))
    assert index.query(signature(changed(a, range(16)))) == [("a", 0.75)]  # 48 of 64
