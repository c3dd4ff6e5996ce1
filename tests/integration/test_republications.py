"""Corrected re-publications the watcher soak saw stored as new articles (MinHash LSH misses).

tests/data/republications/ holds ten pairs from the 10,000-file soak: an original and its
corrected copy (one or two words changed, two days later; true word-3-shingle Jaccard
0.91-0.97). With datasketch's default band split (5 x 11 of 64 permutations) none of the ten
was found: each became a second article, and since its paragraphs then appeared in two
articles they were declared boilerplate and removed from both. Each must be an update.
"""

from __future__ import annotations

from pathlib import Path

from publisher.app import App
from publisher.store import Articles

PAIRS = Path(__file__).resolve().parents[1] / "data" / "republications"


def split_pairs(folder: Path) -> tuple[Path, Path]:
    """The pairs' originals and corrected copies, in two sub-folders of `folder`."""
    originals, copies = folder / "originals", folder / "copies"
    originals.mkdir()
    copies.mkdir()
    for path in sorted(PAIRS.glob("*.txt")):
        target = originals if "-a-original" in path.name else copies
        (target / path.name).write_bytes(path.read_bytes())
    return originals, copies


def test_every_corrected_copy_updates_its_original(app: App, tmp_path: Path) -> None:
    originals, copies = split_pairs(tmp_path)

    first = app.ingest([originals])
    stored = first.count("added")
    assert stored + first.count("duplicate") == 10  # two pairs share one original

    second = app.ingest([copies])

    assert {r.file: r.outcome for r in second.results} == {
        r.file: "updated" for r in second.results
    }
    assert len(second.results) == 10
    with app.store.read() as connection:
        repo = Articles(connection)
        assert repo.count() == stored
        for article in repo.latest(limit=100):
            assert article.blocks, f"{article.slug} lost its body as 'boilerplate'"
            assert len(article.blocks) >= 3
