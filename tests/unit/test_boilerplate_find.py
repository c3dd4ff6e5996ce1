"""Which removed block `publisher boilerplate keep KEY|TEXT` means."""

from __future__ import annotations

import pytest

from publisher.boilerplate import UnknownBlock, find_block
from publisher.model import RemovalRule, RemovedBlock

BLOCKS = [
    RemovedBlock("ab12cd34ef560001", "Read more\non the site.", (RemovalRule.SHARED,), ()),
    RemovedBlock("ab12cd34ef560002", "Subscribe today.", (RemovalRule.TEASER,), ()),
    RemovedBlock("ff00000000000000", "ab12", (RemovalRule.SHARED,), ()),
]


def test_the_text_in_any_case_and_spacing_names_a_block() -> None:
    assert find_block(BLOCKS, "  READ more on   the site. ").key == "ab12cd34ef560001"


def test_a_unique_prefix_of_a_key_names_a_block_and_text_comes_first() -> None:
    assert find_block(BLOCKS, "ab12cd34ef560002").key == "ab12cd34ef560002"
    assert find_block(BLOCKS, "AB12CD34EF560002").key == "ab12cd34ef560002"
    assert find_block(BLOCKS, "ab12").key == "ff00000000000000"  # that block's text


@pytest.mark.parametrize("wanted", ["ab12cd", "nothing like it", "   "])
def test_an_ambiguous_prefix_or_an_unknown_block_is_refused(wanted: str) -> None:
    with pytest.raises(UnknownBlock) as refused:
        find_block(BLOCKS, wanted)
    assert "\n" not in refused.value.message
