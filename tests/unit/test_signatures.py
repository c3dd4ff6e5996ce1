"""Per-block MinHash rows: each is datasketch's MinHash of that block's word shingles."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.dedup.minhash import (
    PERMUTATION_SEED,
    SHINGLE_MIX,
    WORD_PATTERN,
    Signer,
    affine32_permutations,
    murmur_finalize,
)

SIGNER = Signer(128, 3)


def datasketch_row(text: str, k: int = 3) -> np.ndarray | None:
    """The block's k-shingles hashed as publisher does, fed one by one to datasketch."""
    words = WORD_PATTERN.findall(text.casefold())
    if not words:
        return None
    hashed = np.array([xxhash.xxh3_64_intdigest(w.encode()) for w in words], dtype=np.uint64)
    size = min(k, len(hashed))
    count = len(hashed) - size + 1
    shingles = hashed[:count].copy()
    for offset in range(1, size):
        shingles *= SHINGLE_MIX
        shingles ^= hashed[offset : offset + count]
    minhash = MinHash(num_perm=128, seed=PERMUTATION_SEED, hashfunc=int)
    minhash.update_batch((murmur_finalize(shingles) >> np.uint64(32)).tolist())
    return minhash.hashvalues


texts = st.text(alphabet=st.sampled_from(list("ab AB cé,\n.1_-'\x1f\t")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(title=texts, blocks=st.lists(texts, max_size=6))
def test_each_row_is_datasketchs_minhash_of_its_block(title: str, blocks: list[str]) -> None:
    rows = SIGNER.block_rows(title, blocks)
    assert rows.shape == (len(blocks) + 1, 128)
    for row, text in zip(rows, [title, *blocks], strict=True):
        expected = datasketch_row(text)
        if expected is None:  # no words: a row that changes no minimum
            assert (row == 0xFFFFFFFF).all()
        else:
            assert (row == expected).all()


def test_signature_without_a_block_is_the_minimum_of_the_other_rows() -> None:
    blocks = ["first paragraph of the story", "Read more: another story", "last words here"]
    rows = SIGNER.block_rows("Title", blocks)
    without = SIGNER.sign_text("Title", [blocks[0], blocks[2]])
    assert SIGNER.signature(rows[[0, 1, 3]]) == without
    assert SIGNER.signature(rows) != without


@pytest.mark.parametrize("blocks", [[], [""], ["!!!"]])
def test_article_of_a_title_alone_signs(blocks: list[str]) -> None:
    assert SIGNER.signature(SIGNER.block_rows("One title", blocks)) == SIGNER.sign_text(
        "One title", []
    )


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=2**32 - 1))
def test_the_permutations_are_datasketchs_own(num_perm: int, seed: int) -> None:
    multipliers, offsets = MinHash(num_perm=num_perm, seed=seed).permutations
    ours = affine32_permutations(num_perm, seed)
    assert np.array_equal(ours[0], np.asarray(multipliers, dtype=np.uint32))
    assert np.array_equal(ours[1], np.asarray(offsets, dtype=np.uint32))
