"""Names and records of the digest web copies (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.webcopies import ArchivedDigest, copy_id, copy_path, record_path

CONTENT = ("weekly", ("Harbin Today",), ("a1", "a2"), ())


def test_a_name_is_26_base32_letters_fixed_by_run_content_and_secret() -> None:
    name = copy_id("secret", 7, CONTENT)
    assert re.fullmatch(r"[a-z2-7]{26}", name)
    assert copy_id("secret", 7, CONTENT) == name  # workers sharing a run agree
    assert copy_id("other secret", 7, CONTENT) != name  # unknowable without the key
    assert copy_id("secret", 8, CONTENT) != name  # each run's issue is its own page
    assert copy_id("secret", 7, ("weekly", (), ("a1", "a2"), ())) != name


def test_names_stay_inside_the_archive_folder() -> None:
    assert copy_path("abc") == "digests/abc.html"
    assert record_path("abc") == "digests/.records/abc.json"


@given(
    subject=st.text(max_size=200),
    headlines=st.lists(st.text(max_size=80), max_size=3),
    count=st.integers(min_value=0, max_value=10_000),
)
def test_a_record_round_trips_through_json(subject: str, headlines: list[str], count: int) -> None:
    record = ArchivedDigest(
        id="a" * 26,
        run_id=3,
        subject=subject,
        frequency="daily",
        as_of=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        count=count,
        headlines=tuple(headlines),
    )
    assert ArchivedDigest.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'{"id": "x", "run_id": "y"}', b"[]"],
)
def test_a_record_not_written_by_us_is_refused(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        ArchivedDigest.from_json(data)
