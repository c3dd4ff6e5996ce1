"""parse.py: bytes in, a normalized ParsedArticle or a ParseError out."""

from __future__ import annotations

import contextlib
import re
import unicodedata
from datetime import datetime
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


def old_slugify(published: datetime, title: str) -> str:
    """The ASCII-only slug of the release before non-Latin letters were kept."""
    title = re.sub(r"['’‘`]", "", title)
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    words = words[:80].rsplit("-", 1)[0] if len(words) > 80 else words
    return f"{published.date().isoformat()}-{words or 'article'}"


def is_latin(char: str) -> bool:
    return not char.isalpha() or unicodedata.name(char, "").startswith("LATIN")


@given(st.text(alphabet=st.characters(max_codepoint=0x24F).filter(is_latin), max_size=120))
def test_latin_titles_keep_the_slug_they_always_had(title: str) -> None:
    published = datetime(2020, 9, 1, tzinfo=ZONE)
    assert slugify(published, title) == old_slugify(published, title)


def test_a_non_latin_title_keeps_its_own_letters() -> None:
    published = datetime(2026, 12, 2, tzinfo=ZONE)
    assert slugify(published, "哈尔滨冰雪大世界开园") == "2026-12-02-哈尔滨冰雪大世界开园"
    assert slugify(published, "Москва: Новый мост") == "2026-12-02-москва-новый-мост"
    assert slugify(published, "हिन्दी समाचार") == "2026-12-02-हिन्दी-समाचार"  # marks stay
    assert slugify(published, "Harbin 冰雪节 2026") == "2026-12-02-harbin-冰雪节-2026"
    assert slugify(published, "🎉!") == "2026-12-02-article"
    long = slugify(published, "哈" * 200)
    assert len(f"{long}.html".encode()) < 255 and long.startswith("2026-12-02-哈")


def test_header_lines_after_the_byline_give_language_and_id() -> None:
    text = ARTICLE.replace("example.com )\n\n", "example.com )\nId: desk-42\nLanguage: ZH-hant\n\n")
    article = parse(text)
    assert article.language == "zh-Hant" and article.editor_id == "desk-42"
    assert article.blocks[0].text == "First paragraph."
    assert parse(ARTICLE).language is None


def test_a_first_paragraph_that_only_starts_like_a_header_is_body() -> None:
    text = ARTICLE.replace("First paragraph.", "Language: matters\nsaid the minister.")
    article = parse(text)
    assert article.language is None
    assert article.blocks[0].text == "Language: matters\nsaid the minister."


@pytest.mark.parametrize("tag", ["zh_CN", "x" * 36, "中文", "en--us", "-en", "12"])
def test_a_bad_language_tag_is_dropped(tag: str) -> None:
    text = ARTICLE.replace("example.com )\n", f"example.com )\nLanguage: {tag}\n")
    article = parse(text)
    assert article.language is None and article.blocks[0].text == "First paragraph."
