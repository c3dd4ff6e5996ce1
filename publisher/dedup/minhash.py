"""MinHash signatures over word shingles, and the LSH index that finds near-duplicates.

One set of MinHash values per block: a block's shingles stay inside the block, so the
signature of an article without some of its blocks (those found to be boilerplate) is the
element-wise minimum over the rows of the blocks it keeps, and the rows can be made before
the store is consulted, in another process (publisher/prepare.py). Each word is hashed once
(xxh3); k consecutive word hashes are combined into a shingle hash with numpy. The
permutations are datasketch's (affine32): datasketch's MinHash has no per-block update, so
the rows are its `update_batch` arithmetic applied once to all shingles and reduced per
block (tests/unit/test_signatures.py checks each row equals datasketch's MinHash of that
block). A signature starts with a header naming the scheme and its parameters, so a
signature made another way (an older publisher, other settings) is recognized and re-made,
never compared.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence

import numpy as np
import xxhash

__all__ = [
    "MAX_ROW_CELLS",
    "PERMUTATION_SEED",
    "SHINGLE_MIX",
    "WORD_PATTERN",
    "NearDuplicateIndex",
    "ShortTextIndex",
    "Signer",
    "affine32_permutations",
    "estimated_shingles",
    "lsh_bands",
    "murmur_finalize",
]

# a word is a run of \w; on ASCII text what is not [A-Za-z0-9_] separates words, and
# str.split() after a translation finds the same words much faster than the regex
WORD_PATTERN = re.compile(r"\w+", re.UNICODE)
_ASCII_SEPARATORS = str.maketrans(
    {chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")}
)

_SCHEME = b"MHd4"  # datasketch affine32 per block, minimum over kept blocks
_HEADER = struct.Struct("<4sHH")  # scheme, num_perm, shingle_size
PERMUTATION_SEED = 0x5EED_2026
# combines k word hashes into a shingle hash (the 64-bit golden ratio)
SHINGLE_MIX = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.uint32(0xFFFFFFFF)  # a row of a block without words: neutral in a minimum
# Making the rows holds num_perm uint32 values per shingle (~50 MB at this cap); an article
# longer than cap / num_perm words (100,000 at 128 permutations, a book) is signed on its
# first ones, the rest count as blocks without words. Shorter articles are signed whole.
MAX_ROW_CELLS = 128 * 100_000


# MurmurHash3's finalizer constants by width: (shift, multiplier, shift, multiplier, shift)
_FMIX = {
    np.dtype(np.uint64): (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33),
    np.dtype(np.uint32): (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16),  # as datasketch applies it
}


def murmur_finalize(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finalizer for h's width, in place: every input bit reaches every
    output bit."""
    s1, m1, s2, m2, s3 = (h.dtype.type(c) for c in _FMIX[h.dtype])
    h ^= h >> s1
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


def _words(text: str) -> list[str]:
    """The words of a text, case-folded: runs of \\w."""
    if text.isascii():
        return text.lower().translate(_ASCII_SEPARATORS).split()
    return WORD_PATTERN.findall(text.casefold())


def affine32_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (multiplier, offset) pairs of datasketch's affine32 MinHash for this seed, made
    as it makes them: odd multipliers keep h -> a * h + b mod 2^32 a bijection. datasketch
    itself stays a test oracle (it pulls in scipy, which the runtime never uses)."""
    generator = np.random.RandomState(seed)
    multipliers = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2)
    multipliers += np.uint32(1)
    offsets = generator.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return multipliers, offsets


class Signer:
    """MinHash signatures over word shingles; one instance holds the permutations.

    Picklable and light: worker processes get one with two small arrays.
    """

    def __init__(self, num_perm: int, shingle_size: int) -> None:
        if not 1 <= num_perm <= 0xFFFF or not 1 <= shingle_size <= 0xFFFF:
            raise ValueError("num_perm and shingle_size must be between 1 and 65535")
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self.header = _HEADER.pack(_SCHEME, num_perm, shingle_size)
        self._multipliers, self._offsets = affine32_permutations(num_perm, PERMUTATION_SEED)

    def block_rows(self, title: str, texts: Sequence[str]) -> np.ndarray:
        """MinHash values of the title (row 0) and of each block (row i + 1)."""
        counts: list[int] = []
        words: list[str] = []
        budget = max(1, MAX_ROW_CELLS // self.num_perm)
        for text in (title, *texts):
            found = _words(text)[:budget] if budget else []
            budget -= len(found)
            counts.append(len(found))
            words += found
        hashed = np.fromiter(
            map(xxhash.xxh3_64_intdigest, map(str.encode, words)),
            dtype=np.uint64,
            count=len(words),
        )
        shingles, starts, present = self._shingles(hashed, counts)
        rows = np.full((len(counts), self.num_perm), _EMPTY, dtype=np.uint32)
        if not len(shingles):
            return rows
        values = murmur_finalize((shingles >> np.uint64(32)).astype(np.uint32))
        # permutations down, shingles across: the per-block minimum runs along rows
        permuted = self._multipliers[:, None] * values
        permuted += self._offsets[:, None]
        rows[present] = np.minimum.reduceat(permuted, starts, axis=1).T
        return rows

    def _shingles(
        self, hashed: np.ndarray, counts: list[int]
    ) -> tuple[np.ndarray, list[int], list[int]]:
        """The shingle hashes of each text in turn, where each text's run of them starts,
        and which texts have any. A text of fewer than k words (k = shingle_size) is one
        shingle of them all; a shingle never spans two texts."""
        k = self.shingle_size
        spanning = max(len(hashed) - k + 1, 0)
        combined = hashed[:spanning].copy()  # every run of k words, some across texts
        for offset in range(1, k):
            combined *= SHINGLE_MIX
            combined ^= hashed[offset : offset + spanning]
        pieces: list[np.ndarray] = []
        starts: list[int] = []
        present: list[int] = []
        first = taken = 0
        for index, count in enumerate(counts):
            if count >= k:
                pieces.append(combined[first : first + count - k + 1])
            elif count:
                short = hashed[first : first + 1].copy()
                for offset in range(1, count):
                    short *= SHINGLE_MIX
                    short ^= hashed[first + offset]
                pieces.append(short)
            if count:
                starts.append(taken)
                present.append(index)
                taken += len(pieces[-1])
            first += count
        if not pieces:
            return np.zeros(0, dtype=np.uint64), starts, present
        return murmur_finalize(np.concatenate(pieces)), starts, present

    def signature(self, rows: np.ndarray) -> bytes:
        """The signature of what the rows hold: their element-wise minimum."""
        values: bytes = rows.min(axis=0).tobytes()
        return self.header + values

    def sign_text(self, title: str, texts: Sequence[str]) -> bytes:
        return self.signature(self.block_rows(title, texts))

    def is_current(self, signature: bytes) -> bool:
        """Made by this scheme with these parameters (else it must be made again)."""
        return (
            len(signature) == _HEADER.size + 4 * self.num_perm
            and signature[: _HEADER.size] == self.header
        )

    def values(self, signature: bytes) -> np.ndarray:
        return np.frombuffer(signature, dtype=np.uint32, offset=_HEADER.size)


def lsh_bands(threshold: float, num_perm: int, max_bands: int = 16) -> tuple[int, int]:
    """(bands, rows): the most rows per band (the fewest chance candidates) for which a pair
    at exactly the threshold still shares a band with probability >= 0.999, with at most
    `max_bands` bands (each costs memory per stored article)."""
    for rows in range(num_perm, 0, -1):
        bands = min(max_bands, num_perm // rows)
        if 1 - (1 - threshold**rows) ** bands >= 0.999:
            return bands, rows
    return min(max_bands, num_perm), 1


class NearDuplicateIndex:
    """In-memory LSH over stored signatures, rebuilt from the store on start.

    Compact: the signatures live in one uint32 array (a row per article); each band of
    each signature is a 64-bit key in one sorted uint64 array (its row beside it), with
    recent keys in a small dict until they are merged in. A re-signed article keeps its
    old keys: every candidate is checked against its current signature, so a stale key
    can only cost a comparison.
    """

    def __init__(
        self, signer: Signer, threshold: float, layout: tuple[int, int] | None = None
    ) -> None:
        self.signer = signer
        self.threshold = threshold
        # a missed re-publication becomes a second article and its paragraphs "boilerplate"
        # removed from both: the bands make a pair at the threshold itself a candidate with
        # probability >= 0.999, and query() checks each candidate's estimate against it
        self.bands, self.rows = layout or lsh_bands(threshold, signer.num_perm)
        rng = np.random.default_rng(PERMUTATION_SEED + 1)
        self._band_mix = rng.integers(1, 2**63, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._band_salt = rng.integers(0, 2**63, size=self.bands, dtype=np.uint64)
        self._values = np.zeros((1024, signer.num_perm), dtype=np.uint32)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._keys = np.zeros(0, dtype=np.uint64)  # sorted
        self._key_rows = np.zeros(0, dtype=np.int32)
        self._recent: dict[int, int | list[int]] = {}
        self._recent_count = 0
        self._last_keys: tuple[bytes, np.ndarray] = (b"", np.zeros(0, dtype=np.uint64))

    def __len__(self) -> int:
        return len(self._ids)

    def _band_keys(self, signature: bytes) -> np.ndarray:
        """The signature's band keys; ingest asks for one signature's twice in a row
        (query, then add), so the last answer is kept."""
        if self._last_keys[0] != signature:
            self._last_keys = (signature, self._compute_band_keys(self.signer.values(signature)))
        return self._last_keys[1]

    def _compute_band_keys(self, values: np.ndarray) -> np.ndarray:
        bands = values[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        bands *= self._band_mix
        keys = bands.sum(axis=1, dtype=np.uint64)
        keys ^= self._band_salt
        return murmur_finalize(keys)

    def add(self, article_id: str, signature: bytes) -> None:
        if not self.signer.is_current(signature):
            raise ValueError(f"signature of {article_id} is not of the current scheme")
        values = self.signer.values(signature)
        row = self._row_of.get(article_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._values):
                grown = np.zeros((row + row // 2, self.signer.num_perm), dtype=np.uint32)
                grown[:row] = self._values
                self._values = grown
            self._ids.append(article_id)
            self._row_of[article_id] = row
        self._values[row] = values
        for key in self._band_keys(signature).tolist():
            held = self._recent.get(key)
            if held is None:
                self._recent[key] = row
            elif isinstance(held, int):
                self._recent[key] = [held, row]
            else:
                held.append(row)
        self._recent_count += self.bands
        if self._recent_count >= max(1 << 14, len(self._keys) // 32):
            self._merge()

    def _merge(self) -> None:
        """Move the recent keys into the sorted arrays (one linear merge)."""
        pairs = [
            (key, row)
            for key, held in self._recent.items()
            for row in ((held,) if isinstance(held, int) else held)
        ]
        keys = np.fromiter((k for k, _ in pairs), dtype=np.uint64, count=len(pairs))
        rows = np.fromiter((r for _, r in pairs), dtype=np.int32, count=len(pairs))
        order = np.argsort(keys, kind="stable")
        keys, rows = keys[order], rows[order]
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._key_rows = np.insert(self._key_rows, at, rows)
        self._recent.clear()
        self._recent_count = 0

    def query(self, signature: bytes) -> list[tuple[str, float]]:
        """Stored articles whose estimated Jaccard similarity reaches the threshold."""
        values = self.signer.values(signature)
        rows = self._candidate_rows(signature)
        if not rows:
            return []
        similarity = np.count_nonzero(self._values[rows] == values, axis=1) / len(values)
        return [
            (self._ids[row], float(s))
            for row, s in zip(rows, similarity.tolist(), strict=True)
            if s >= self.threshold
        ]

    def _candidate_rows(self, signature: bytes) -> list[int]:
        """The rows of stored articles sharing a band with the signature, in order."""
        keys = self._band_keys(signature)
        candidates: set[int] = set()
        starts = np.searchsorted(self._keys, keys, side="left").tolist()
        stops = np.searchsorted(self._keys, keys, side="right").tolist()
        for start, stop in zip(starts, stops, strict=True):
            if stop > start:  # the run of stored keys equal to this band's
                candidates.update(self._key_rows[start:stop].tolist())
        for key in keys.tolist():
            held = self._recent.get(key)
            if isinstance(held, int):
                candidates.add(held)
            elif held is not None:
                candidates.update(held)
        return sorted(candidates)


def estimated_shingles(values: np.ndarray) -> np.ndarray:
    """How many distinct shingles each row of MinHash values was made of (the last axis):
    the minimum of n uniform values is 1 / (n + 1) on average."""
    count = values.shape[-1]
    total = values.sum(axis=-1, dtype=np.uint64).astype(np.float64) + count
    estimate: np.ndarray = np.maximum(count * 2.0**32 / total - 1.0, 0.0)
    return estimate


# a text this many times over the short-text size is no re-publication of a short story
_GROWTH = 2
# nor is one this many times longer or shorter than the story (paragraphs appended to a
# two-sentence story make it five times as long); between texts of sizes that unequal a
# Jaccard estimate of 1 / num_perm would pass for a large containment
_SIZE_RATIO = 8
# the estimated containment under which a short text is not worth a word-by-word look: a
# re-publication's is near 1, two stories sharing a closing sentence near 0.1
_CONTAINED_FLOOR = 0.5


class ShortTextIndex(NearDuplicateIndex):
    """A second band set, for short texts only: bands of two MinHash values, so a stored
    short story that a re-publication holds most of (paragraphs appended, words
    corrected, the title edited) is a candidate although their Jaccard is far under the
    threshold (a pair at Jaccard 0.3 shares one of 24 bands with probability 0.9). A
    text's size is estimated from its signature, so nothing more is stored.
    """

    def __init__(self, signer: Signer, max_shingles: int, bands: int = 24) -> None:
        rows = 2 if signer.num_perm >= 2 else 1
        super().__init__(signer, 0.0, (min(bands, signer.num_perm // rows), rows))
        self.max_shingles = max_shingles
        self._sizes: list[float] = []  # estimated shingles of each row's text

    def add(self, article_id: str, signature: bytes) -> None:
        """Index the article if it is short; one indexed before keeps its row current
        (and its old keys: a candidate is checked against its current values)."""
        if not self.signer.is_current(signature):
            return
        size = float(estimated_shingles(self.signer.values(signature)))
        if article_id not in self._row_of and size > self.max_shingles:
            return
        super().add(article_id, signature)
        row = self._row_of[article_id]
        if row == len(self._sizes):
            self._sizes.append(size)
        else:
            self._sizes[row] = size

    def holding(self, signature: bytes, limit: int) -> list[str]:
        """Up to `limit` stored short texts this one is estimated to hold most of, or to
        be most of, the likeliest first (a text far longer than a short story is no
        re-publication of one)."""
        if not self._ids:
            return []
        values = self.signer.values(signature)
        size = float(estimated_shingles(values))
        if size > _GROWTH * self.max_shingles:
            return []
        rows = self._candidate_rows(signature)
        if not rows:
            return []
        jaccard = np.count_nonzero(self._values[rows] == values, axis=1) / len(values)
        found = []
        for row, j in zip(rows, jaccard.tolist(), strict=True):
            theirs = self._sizes[row]
            smaller = max(min(size, theirs), 1.0)
            if max(size, theirs) > _SIZE_RATIO * smaller:
                continue
            contained = j * (size + theirs) / (1.0 + j) / smaller
            if contained >= _CONTAINED_FLOOR:
                found.append((contained, self._ids[row]))
        found.sort(key=lambda match: -match[0])
        return [article_id for _, article_id in found[:limit]]
