"""parse.py: bytes in, a normalized ParsedArticle or a ParseError out."""

from __future__ import annotations

import contextlib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import ParseError
from publisher.parse import normalize_line, parse_article, slugify

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
ZONE = ZoneInfo("Asia/Shanghai")


def seed(prefix: str) -> bytes:
    return next(SEEDS.glob(f"{prefix}_*.txt")).read_bytes()


def parse(data: bytes | str, name: str = "a.txt"):  # type: ignore[no-untyped-def]
    return parse_article(data, source_file=name, zone=ZONE)


ARTICLE = (
    "Home>News>City\n\nA title\n\nUpdated : 2021-03-04\n\nBy Li Na ( example.com )\n\n"
    "First paragraph.\n\nSecond paragraph\nwith two lines.\n"
)


def test_seed_000_has_no_author_and_a_source() -> None:
    article = parse(seed("000"))
    assert article.title == "Harbin regains ‘National Civilized City’ title"
    assert article.author is None
    assert article.source == "e.my399.com"
    assert article.category_path == ("Civilization progress",)
    assert article.published.isoformat() == "2020-09-01T00:00:00+08:00"


def test_seed_001_has_author_and_source() -> None:
    article = parse(seed("001"))
    assert (article.author, article.source) == ("Wang Wei", "chinadaily.com.cn")


def test_seed_003_title_has_plain_spaces_and_list_lines_are_kept() -> None:
    article = parse(seed("003"))
    assert article.title == "Harbin sets up development goals for 2022"
    assert "\u00a0" not in article.title
    first = article.blocks[0]
    assert len(first.lines) > 20
    assert "Economic development" in first.lines
    assert "Build 30 new smart libraries" in first.lines
    assert all("\u00a0" not in block.text for block in article.blocks)


def test_crlf_bom_and_utf8_parse_like_plain_lf() -> None:
    plain = parse(ARTICLE)
    crlf = parse(b"\xef\xbb\xbf" + ARTICLE.replace("\n", "\r\n").encode("utf-8"))
    assert crlf.blocks == plain.blocks
    assert crlf.title == plain.title
    assert crlf.content_hash == plain.content_hash


def test_latin1_file_is_decoded_not_rejected() -> None:
    text = ARTICLE.replace("A title", "Café in Zürich")
    article = parse(text.encode("latin-1"))
    assert article.title == "Café in Zürich"


def test_cp1252_curly_quotes_are_decoded() -> None:
    text = ARTICLE.replace("A title", "\u201cQuoted\u201d title")
    assert parse(text.encode("cp1252")).title == "\u201cQuoted\u201d title"


def test_breadcrumb_with_several_levels() -> None:
    assert parse(ARTICLE).category_path == ("News", "City")
    assert parse(ARTICLE).category == "City"


def test_byline_with_author_and_missing_byline() -> None:
    article = parse(ARTICLE)
    assert (article.author, article.source) == ("Li Na", "example.com")
    without = parse(ARTICLE.replace("By Li Na ( example.com )\n\n", ""))
    assert (without.author, without.source) == (None, None)
    assert without.blocks == article.blocks


def test_updated_variants_with_time_are_timezone_aware() -> None:
    article = parse(ARTICLE.replace("Updated : 2021-03-04", "Updated: 2021-03-04 14:05"))
    assert article.published.isoformat() == "2021-03-04T14:05:00+08:00"


def test_multi_line_block_keeps_lines_and_runs_of_blank_lines_collapse() -> None:
    article = parse(ARTICLE.replace("First paragraph.\n\n", "First paragraph.\n\n\n\n\n"))
    assert [b.text for b in article.blocks] == [
        "First paragraph.",
        "Second paragraph\nwith two lines.",
    ]


def test_odd_spaces_become_plain_and_words_are_untouched() -> None:
    assert normalize_line("a\u00a0b\u2009c\u3000 d  e\t") == "a b c d e"
    assert normalize_line("“quoted” – dash") == "“quoted” – dash"
    assert normalize_line("e\u0301") == "é"  # NFC


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"  \n\n \r\n", "empty file"),
        (bytes(range(256)) * 4, "binary"),
        (b"Home>News\n\nTitle only\n\nsome text\n", "no date"),
        (b"Home>News\n\nUpdated : 2021-01-01\n\ntext\n", "no title"),
        (b"Home>News\n\nTitle\n\nUpdated : 2021-01-01\n", "no body"),
        (b"Home>News\n\nTitle\n\nUpdated : 2021-02-30\n\ntext\n", "bad date"),
    ],
)
def test_not_an_article_raises_parse_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError, match=reason):
        parse(data)


def test_slug_is_readable_ascii_from_date_and_title() -> None:
    article = parse(seed("000"))
    assert (
        slugify(article.published, article.title)
        == "2020-09-01-harbin-regains-national-civilized-city-title"
    )
    assert (
        slugify(article.published, "Harbin’s people's «plan»") == "2020-09-01-harbins-peoples-plan"
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_give_an_article_or_a_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse(data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_normalization_is_idempotent(text: str) -> None:
    once = normalize_line(text)
    assert normalize_line(once) == once


def test_seeds_round_trip_through_their_normalized_text() -> None:
    for path in sorted(SEEDS.iterdir()):
        article = parse(path.read_bytes())
        byline = f"By {article.author or ''} ( {article.source} )"
        text = "\n\n".join(
            [
                "Home>" + ">".join(article.category_path),
                article.title,
                f"Updated : {article.published.date().isoformat()}",
                byline,
                *(block.text for block in article.blocks),
            ]
        )
        again = parse(text)
        assert again.content_hash == article.content_hash
        assert (again.author, again.source) == (article.author, article.source)
