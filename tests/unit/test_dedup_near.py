"""The containment check for re-publications the MinHash estimate misses (dedup/near.py),
and the short-text band set that names its candidates (minhash.ShortTextIndex)."""

from __future__ import annotations

from datetime import date

from publisher.dedup.minhash import NearDuplicateIndex, ShortTextIndex, Signer
from publisher.dedup.near import (
    ContainmentRule,
    Version,
    candidates,
    containment,
    republication,
)
from publisher.dedup.rules import Holder, StoredFacts

SIGNER = Signer(128, 3)
RULE = ContainmentRule(threshold=0.8, days=7, short_words=200, shingle_size=3)
DAY = date(2026, 12, 2)
TITLE = "Crane collapse injures workers"
LEDE = "A crane fell on Xuefu Road on Tuesday and two workers were hurt, one of them badly."
SECOND = "The site was closed, the district said."
MORE = (
    "Witnesses said the crane swayed in strong wind for several minutes before it fell.",
    "The company that runs the site said it would cooperate fully with investigators.",
    "Work on the tower, due to open next year, will not resume before the inquiry ends.",
)
CORRECTED = LEDE.replace("two workers", "three workers")


def estimate(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    index = NearDuplicateIndex(SIGNER, 0.0)
    index.add("stored", SIGNER.sign_text(TITLE, a))
    [(_, similarity)] = index.query(SIGNER.sign_text(TITLE, b))
    return similarity


def test_one_corrected_word_keeps_a_short_story_contained_though_its_jaccard_falls() -> None:
    assert estimate((LEDE, SECOND), (CORRECTED, SECOND)) < 0.8
    stored, incoming = Version(TITLE, DAY, (LEDE, SECOND)), Version(TITLE, DAY, (CORRECTED, SECOND))
    score = republication(incoming, stored, RULE)
    assert score is not None and score >= 0.9


def test_appended_paragraphs_leave_the_shorter_text_whole_in_the_longer() -> None:
    assert estimate((LEDE, SECOND), (LEDE, SECOND, *MORE)) < 0.5
    grown = Version("Update: " + TITLE, DAY, (LEDE, SECOND, *MORE))
    assert republication(grown, Version(TITLE, DAY, (LEDE, SECOND)), RULE) == 1.0


def test_a_brief_quoted_whole_in_a_round_up_of_another_title_is_not_merged() -> None:
    brief = Version(TITLE, DAY, (LEDE, SECOND))
    round_up = Version("Harbin in brief: Tuesday", DAY, ("Other news first.", LEDE, SECOND))
    assert (
        containment(
            " ".join(brief.texts).lower().split(), " ".join(round_up.texts).lower().split(), 2
        )
        > 0.9
    )
    assert republication(round_up, brief, RULE) is None


def test_versions_months_apart_are_not_merged_by_containment() -> None:
    stored = Version(TITLE, date(2026, 6, 1), (LEDE, SECOND))
    assert republication(Version(TITLE, DAY, (CORRECTED, SECOND)), stored, RULE) is None


def test_a_shared_closing_sentence_is_no_containment() -> None:
    closing = "Police said the investigation is ongoing."
    a = Version("Police report: fire in Nangang", DAY, ("A noodle shop burned down.", closing))
    b = Version("Police report: fire in Daoli", DAY, ("Two bicycles were stolen.", closing))
    assert republication(a, b, RULE) is None


def test_a_threshold_of_zero_turns_the_check_off() -> None:
    off = ContainmentRule(threshold=0.0, days=7, short_words=200, shingle_size=3)
    same = Version(TITLE, DAY, (LEDE, SECOND))
    assert republication(same, same, off) is None


def test_candidates_come_by_title_then_by_shared_blocks_and_common_blocks_are_skipped() -> None:
    common = [Holder(f"n{i}", None, "T") for i in range(40)]  # a notice in 40 articles
    facts = StoredFacts(
        holders={"k1": [Holder("b", None, "T")], "k2": [Holder("b", None, "T")], "k3": common},
        same_title=("old", "new"),
    )
    assert candidates(facts, also=("s",)) == ["new", "old", "s", "b"]


def test_the_short_text_index_finds_a_short_story_its_longer_retitled_version_holds() -> None:
    index = ShortTextIndex(SIGNER, max_shingles=200)
    index.add("crane", SIGNER.sign_text(TITLE, (LEDE, SECOND)))
    index.add("long", SIGNER.sign_text("Long", [" ".join(f"w{i}" for i in range(2000))]))
    assert len(index) == 1  # a long text is not held
    grown = SIGNER.sign_text("Update: crane collapse", (CORRECTED, SECOND, *MORE))
    assert index.holding(grown, 8) == ["crane"]
    other = SIGNER.sign_text("Fire in Nangang", ("A noodle shop burned down late on Monday.",))
    assert index.holding(other, 8) == []


def test_a_short_story_grown_long_is_compared_by_what_it_holds_now() -> None:
    index = ShortTextIndex(SIGNER, max_shingles=200)
    index.add("crane", SIGNER.sign_text(TITLE, (LEDE, SECOND)))
    index.add("crane", SIGNER.sign_text(TITLE, [" ".join(f"w{i}" for i in range(2000))]))
    assert index.holding(SIGNER.sign_text(TITLE, (CORRECTED, SECOND)), 8) == []


def test_two_notices_from_one_template_differing_where_their_titles_do_stay_apart() -> None:
    def notice(district: str) -> Version:
        text = f"The road through {district} will be closed from Monday for repairs."
        return Version(f"Road closed in {district}", DAY, (text, "Buses will take a detour."))

    assert republication(notice("Daoli"), notice("Nangang"), RULE) is None
    retitled = Version("Crane collapse injures builders", DAY, (CORRECTED, SECOND))
    assert republication(retitled, Version(TITLE, DAY, (LEDE, SECOND)), RULE) is not None
