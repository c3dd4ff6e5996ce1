"""Inputs the fuzzer (tests/fuzz/fuzz_parse.py) turned up: each one stays fixed.

1. A date at the edge of year 1 (or 9999 in a zone west of UTC) parsed, then the store's
   UTC conversion raised OverflowError and the whole ingest batch failed with a traceback.
2. U+FFFE / U+FFFF (valid UTF-8) reached a title; lxml refuses them, so every later feed
   build failed while that article was stored.
3. Normalization composed (NFC) before removing invisible characters, so "e<ZWSP>\u0301"
   normalized to "e\u0301", which a second normalization turned into "é".
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from publisher.app import App
from publisher.errors import ParseError
from publisher.parse import normalize_line, parse_article

SHANGHAI = ZoneInfo("Asia/Shanghai")


def article(date: str = "2021-03-04", title: str = "A title", body: str = "Body.") -> bytes:
    return f"Home>News\n\n{title}\n\nUpdated : {date}\n\n{body}\n".encode()


@pytest.mark.parametrize(
    ("date", "zone"),
    [
        ("0001-01-01", SHANGHAI),
        ("0001-01-01 08:05", SHANGHAI),
        ("9999-12-31 23:00", ZoneInfo("America/New_York")),
    ],
)
def test_a_date_that_does_not_fit_in_utc_is_a_parse_error(date: str, zone: ZoneInfo) -> None:
    with pytest.raises(ParseError, match="bad date"):
        parse_article(article(date), source_file="a.txt", zone=zone)


def test_the_earliest_and_latest_dates_that_fit_still_parse() -> None:
    early = parse_article(article("0001-01-02"), source_file="a.txt", zone=SHANGHAI)
    late = parse_article(article("9999-12-31 23:00"), source_file="a.txt", zone=SHANGHAI)
    assert early.published.astimezone(UTC).year == 1
    assert late.published.astimezone(UTC).year == 9999


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
def test_characters_xml_forbids_are_removed(char: str) -> None:
    parsed = parse_article(
        article(title=f"Bad{char} title", body=f"Body{char} text."),
        source_file="a.txt",
        zone=SHANGHAI,
    )
    assert parsed.title == "Bad title"
    assert parsed.blocks[0].text == "Body text."


def test_a_lone_surrogate_in_text_input_is_removed() -> None:
    parsed = parse_article(
        article().decode().replace("A title", "A \ud800title"), source_file="a.txt", zone=SHANGHAI
    )
    assert parsed.title == "A title"


@pytest.mark.parametrize("between", ["\u200b", "\ufeff", "\u00ad", "\x01", "\ufffe"])
def test_normalization_is_idempotent_when_a_removed_character_splits_a_combining_pair(
    between: str,
) -> None:
    once = normalize_line(f"caf e{between}\u0301")
    assert once == "caf é"
    assert normalize_line(once) == once


def test_a_file_with_u_ffff_and_one_dated_year_1_do_not_stop_the_feeds(
    app: App, tmp_path: Path
) -> None:
    """End to end on real SQLite: the good files are stored and the feed builds and parses."""
    inbox = tmp_path / "drop"
    inbox.mkdir()
    (inbox / "ffff.txt").write_bytes(article(title="Title \uffff here", date="2021-01-01"))
    (inbox / "year1.txt").write_bytes(article(title="Ancient", date="0001-01-01"))
    (inbox / "good.txt").write_bytes(article(title="Good one", date="2021-01-02", body="Other."))

    report = app.ingest([inbox])

    outcomes = {Path(r.file).name: r.outcome for r in report.results}
    assert outcomes == {"ffff.txt": "added", "year1.txt": "quarantined", "good.txt": "added"}
    feed = feedparser.parse(app.settings.output_dir / "atom.xml")
    assert not feed.bozo, feed.get("bozo_exception")
    assert sorted(entry.title for entry in feed.entries) == ["Good one", "Title here"]
