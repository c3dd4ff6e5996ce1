"""Near-duplicate signatures: the compact LSH index, and signatures of another scheme.

A database written by an older publisher (datasketch MinHash, 64 raw uint32 values) or with
other dedup settings holds signatures the current Signer cannot compare with its own. They
are made again from the stored title and blocks on the next ingest, so re-publications of
articles stored back then are still found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from publisher.app import App
from publisher.dedup.minhash import NearDuplicateIndex, Signer, lsh_bands
from publisher.store.schema import articles
from tests.integration.test_republications import split_pairs


def test_signatures_of_another_scheme_are_made_again(store_app: App, tmp_path: Path) -> None:
    originals, copies = split_pairs(tmp_path)
    first = store_app.ingest([originals])
    assert first.count("added") >= 8
    # as an older publisher left them: raw values without a header, or none at all
    rng = np.random.default_rng(1)
    with store_app.store.begin() as connection:
        ids = list(connection.execute(select(articles.c.id)).scalars())
        for n, article_id in enumerate(ids):
            legacy = b"" if n == 0 else rng.integers(0, 2**32, 64, dtype=np.uint32).tobytes()
            connection.execute(
                update(articles).where(articles.c.id == article_id).values(signature=legacy)
            )

    restarted = App(store_app.settings)  # a new process: its index is built from the store
    try:
        second = restarted.ingest([copies])
        assert {r.outcome for r in second.results} == {"updated"}
        signer = restarted.ingestor.signer
        with restarted.store.read() as connection:
            stored = list(connection.execute(select(articles.c.signature)).scalars())
        assert stored and all(signer.is_current(bytes(s)) for s in stored)
    finally:
        restarted.close()


def test_index_finds_updates_and_forgets_replaced_signatures() -> None:
    signer = Signer(64, 3)
    index = NearDuplicateIndex(signer, 0.8)
    assert (index.bands, index.rows) == lsh_bands(0.8, 64) == (16, 4)
    words = [f"w{i % 97}x{i % 13}" for i in range(300)]
    text = " ".join(words)
    changed = " ".join(["other" if i % 60 == 0 else w for i, w in enumerate(words)])
    unrelated = " ".join(f"u{i}" for i in range(300))
    original = signer.sign_text("Title", [text])
    index.add("a", original)
    index.add("b", signer.sign_text("Else", [unrelated]))
    assert len(index) == 2
    matches = dict(index.query(signer.sign_text("Title", [changed])))
    assert list(matches) == ["a"] and 0.8 <= matches["a"] < 1.0
    assert index.query(original) == [("a", 1.0)]
    # "a" re-signed with other text: its old bands no longer lead to it
    index.add("a", signer.sign_text("Again", [" ".join(f"v{i}" for i in range(300))]))
    assert len(index) == 2
    assert index.query(original) == []
    with pytest.raises(ValueError):
        index.add("c", b"\x00" * 256)


def test_signer_header_names_scheme_and_settings() -> None:
    signature = Signer(64, 3).sign_text("Title", ["one two three four"])
    assert Signer(64, 3).is_current(signature)
    assert not Signer(32, 3).is_current(signature)
    assert not Signer(64, 4).is_current(signature)
    assert not Signer(64, 3).is_current(signature[8:])
