"""The real watcher (`publisher watch`, a subprocess) against odd inbox entries."""

from __future__ import annotations

import os
from pathlib import Path

from publisher.store import Articles, Store
from tests.integration.test_inbox_hostile import NOT_AN_ARTICLE, article
from tests.integration.test_watch import _wait_for, watcher, watching

__all__ = ["watcher", "watching"]  # the fixtures, used by name


def _sources(store: Store) -> set[str]:
    with store.read() as connection:
        return {a.source_file for a in Articles(connection).latest()}


def test_a_name_that_is_not_utf8_does_not_stop_the_watcher(
    watcher: tuple[Path, Store],
) -> None:
    inbox, store = watcher
    Path(os.fsdecode(bytes(inbox) + b"/caf\xe9.txt")).write_bytes(article("Coffee"))
    _wait_for(lambda: "caf\\xe9.txt" in _sources(store), 20)
    (inbox / "after.txt").write_bytes(article("Written after the odd name"))
    _wait_for(lambda: "after.txt" in _sources(store), 20)


def test_links_and_loops_are_skipped_and_the_watcher_goes_on(
    watcher: tuple[Path, Store], tmp_path: Path
) -> None:
    inbox, store = watcher
    secret = tmp_path / "secret.txt"
    secret.write_bytes(article("Outside the inbox"))
    (inbox / "link.txt").symlink_to(secret)
    (inbox / "self.txt").symlink_to(inbox / "self.txt")
    (inbox / "loop").symlink_to(inbox)
    (inbox / "quarantine").write_bytes(b"a file where the folder goes\n")
    (inbox / "bad.txt").write_bytes(NOT_AN_ARTICLE)
    (inbox / "real.txt").write_bytes(article("A real file"))
    _wait_for(lambda: "real.txt" in _sources(store), 20)
    assert _sources(store) == {"real.txt"}
    assert (inbox / "bad.txt").read_bytes() == NOT_AN_ARTICLE  # nowhere safe to move it
    assert secret.exists()
    (inbox / "later.txt").write_bytes(article("Still watching"))
    _wait_for(lambda: "later.txt" in _sources(store), 20)


def test_an_upload_completed_inside_the_quarantine_is_ingested(
    watcher: tuple[Path, Store],
) -> None:
    inbox, store = watcher
    (inbox / "stalled.txt").write_bytes(b"Home>News>Society\n\nHalf an upload\n\n")
    reason = inbox / "quarantine" / "stalled.txt.error.txt"
    _wait_for(reason.exists, 20)
    quarantined = inbox / "quarantine" / "stalled.txt"
    quarantined.write_bytes(article("Half an upload"))
    written = reason.stat().st_mtime_ns
    if quarantined.stat().st_mtime_ns <= written:  # a coarse clock: it is still later
        os.utime(quarantined, ns=(written + 1_000_000, written + 1_000_000))
    _wait_for(lambda: "stalled.txt" in _sources(store), 20)
    assert not reason.exists()
