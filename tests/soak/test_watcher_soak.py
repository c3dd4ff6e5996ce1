"""Watcher soak: files dropped in bursts into a running `publisher run`, every one accounted for.

The small version (300 files) runs in the default suite; the full one (10,000 files) is
opt-in: `pytest -m soak tests/soak` (or `python -m tests.soak.soak --files 10000`).
See tests/soak/soak.py for what is dropped and what is checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.soak import soak


def _assert_clean(folder: Path, files: int, bursts: int, timeout: float) -> None:
    result = soak(folder, files=files, bursts=bursts, pause=0.2, settle_timeout=timeout)
    print(
        f"{result.files} files, {result.seconds_to_account:.1f}s "
        f"({result.files_per_second:.0f} files/s), outcomes {result.outcomes}, "
        f"concurrent {result.concurrent}, http {result.http}"
    )
    assert result.problems == []
    decided = ("added", "updated", "duplicate", "quarantined")
    assert sum(result.outcomes.get(outcome, 0) for outcome in decided) == files
    assert result.outcomes["quarantined"] == result.kinds["bad"]
    assert result.outcomes.get("duplicate", 0) >= result.kinds["exact"]
    assert result.concurrent["ingest runs"] >= 1
    assert result.concurrent["send --dry-run runs"] >= 1


@pytest.mark.timeout(90)
def test_300_files_in_bursts_are_all_accounted_for(tmp_path: Path) -> None:
    _assert_clean(tmp_path, files=300, bursts=6, timeout=60)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_10000_files_in_bursts_are_all_accounted_for(tmp_path: Path) -> None:
    _assert_clean(tmp_path, files=10_000, bursts=40, timeout=900)
