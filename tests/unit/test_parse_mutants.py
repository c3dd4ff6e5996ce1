"""The article format's edges that the other parse tests leave open (found by mutmut):
header lines without blank lines between them, CR-only files, date and breadcrumb
variants, the exact quarantine reasons, the slug's 80-character cut and the summary."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import ParseError
from publisher.model import Block, ParsedArticle
from publisher.parse import content_hash, decode, normalize_line, parse_article, slugify, summarize

ZONE = ZoneInfo("Asia/Shanghai")
SPACED = (
    "Home>News>City\n\nA title\n\nUpdated : 2021-03-04\n\nBy Li Na ( example.com )\n\n"
    "First paragraph.\n\nSecond paragraph\nwith two lines.\n"
)
DAY = datetime(2021, 3, 4, tzinfo=ZONE)


def parse(data: bytes | str) -> ParsedArticle:
    return parse_article(data, source_file="a.txt", zone=ZONE)


def reason(data: bytes | str) -> str:
    with pytest.raises(ParseError) as caught:
        parse(data)
    return caught.value.message


def article(date_line: str = "Updated : 2021-03-04", head: str = "Home>News") -> str:
    return f"{head}\n\nA title\n\n{date_line}\n\nBody.\n"


# -- the header lines ---------------------------------------------------------------


def test_header_lines_without_blank_lines_between_them_parse_like_spaced_ones() -> None:
    tight = (
        "Home>News>City\nA title\nUpdated : 2021-03-04\nBy Li Na ( example.com )\n"
        "First paragraph.\n\nSecond paragraph\nwith two lines.\n"
    )
    assert parse(tight) == parse(SPACED)


@pytest.mark.parametrize(
    "text",
    [
        "Home>News\nA title\n\nUpdated : 2021-03-04\n\nBody.\n",  # title right after breadcrumb
        "Home>News\n\nA title\nUpdated : 2021-03-04\n\nBody.\n",  # date right after title
        "Home>News\n\nA title\n\nUpdated : 2021-03-04\nBody.\n",  # body right after date
    ],
)
def test_each_missing_blank_line_alone_changes_nothing(text: str) -> None:
    assert parse(text) == parse(article())


def test_body_right_after_the_byline_keeps_its_first_line() -> None:
    parsed = parse("Home>News\n\nA title\n\nUpdated : 2021-03-04\n\nBy ( x.com )\nBody.\n")
    assert parsed.blocks == (Block("Body."),)
    assert parsed.source == "x.com"


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_cr_only_crlf_and_lf_files_parse_alike(ending: str) -> None:
    assert parse(SPACED.replace("\n", ending).encode()) == parse(SPACED)


def test_mixed_line_endings_parse_alike() -> None:
    mixed = "Home>News>City\r\rA title\r\n\r\nUpdated : 2021-03-04\n\nBy Li Na ( example.com )\r\r"
    mixed += "First paragraph.\n\r\nSecond paragraph\rwith two lines.\r"
    assert parse(mixed) == parse(SPACED)


# -- dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Updated : 2021-03-04", datetime(2021, 3, 4, tzinfo=ZONE)),
        ("Updated : 2021-3-4", datetime(2021, 3, 4, tzinfo=ZONE)),
        ("updated : 2021-03-04", datetime(2021, 3, 4, tzinfo=ZONE)),
        ("UPDATED:2021-03-04", datetime(2021, 3, 4, tzinfo=ZONE)),
        ("Updated :  2021-03-04  ", datetime(2021, 3, 4, tzinfo=ZONE)),
        ("Updated : 2021-03-04T09:30", datetime(2021, 3, 4, 9, 30, tzinfo=ZONE)),
        ("Updated : 2021-03-04T09:30:15", datetime(2021, 3, 4, 9, 30, 15, tzinfo=ZONE)),
        ("Updated : 2021-03-04 9:05:07", datetime(2021, 3, 4, 9, 5, 7, tzinfo=ZONE)),
    ],
)
def test_date_variants(line: str, expected: datetime) -> None:
    published = parse(article(line)).published
    assert published == expected
    assert published.utcoffset() == expected.utcoffset()


def test_a_bad_date_names_the_whole_line() -> None:
    assert reason(article("Updated : 2021-02-30")).startswith("bad date 'Updated : 2021-02-30': ")


# -- breadcrumbs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "path"),
    [
        ("Home>News", ("News",)),
        ("Home > News", ("News",)),
        ("home>news", ("news",)),
        ("HOME >News > City", ("News", "City")),
        ("Home>News>>City>", ("News", "City")),
        ("Home>", ()),
        ("Home\u00a0>\u00a0Local news", ("Local news",)),
    ],
)
def test_breadcrumb_variants(head: str, path: tuple[str, ...]) -> None:
    parsed = parse(article(head=head))
    assert parsed.category_path == path
    assert parsed.category == (path[-1] if path else "Uncategorized")
    assert parsed.title == "A title"


def test_a_file_without_breadcrumb_starts_with_its_title() -> None:
    parsed = parse("A title\n\nUpdated : 2021-03-04\n\nBody.\n")
    assert (parsed.title, parsed.category_path) == ("A title", ())


# -- why a file is not an article (the reason written beside it in quarantine) -------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b" \n\t\n", "empty file"),
        (" \n\n\r\n", "empty file"),
        ("Home>News\n\n\n", "no title"),
        ("Home>News\n\nUpdated : 2021-01-01\n\ntext\n", "no title"),
        (
            "Home>News\n\nA title\n\ntext\n",
            "no date (expected a line 'Updated : YYYY-MM-DD' after the title)",
        ),
        (
            "Home>News\n\nA title\n",
            "no date (expected a line 'Updated : YYYY-MM-DD' after the title)",
        ),
        (
            "Home>News\n\nA title\n\nUpdated : 2021-01-01\n",
            "no body (title and date but no paragraphs)",
        ),
        (
            "Home>News\n\nA title\n\nUpdated : 2021-01-01\n\nBy X\n\n",
            "no body (title and date but no paragraphs)",
        ),
    ],
)
def test_the_reasons_are_exact(data: bytes | str, expected: str) -> None:
    assert reason(data) == expected


def test_one_nul_byte_makes_a_file_binary_however_long() -> None:
    data = article().encode() + b"x" * 5000 + b"\x00"
    with pytest.raises(ParseError) as caught:
        decode(data)
    assert caught.value.message == "binary file (contains NUL bytes)"


def test_a_few_control_characters_are_dropped_many_make_a_file_binary() -> None:
    short = article().encode()
    assert len(short) < 300  # the allowance is 2 below 300 characters
    two = short.replace(b"Body.", b"Bo\x01dy\x02.")
    assert parse(two).blocks == (Block("Body."),)
    three = short.replace(b"Body.", b"B\x01o\x02dy\x03.")
    with pytest.raises(ParseError) as caught:
        decode(three)
    assert caught.value.message == "binary file (too many control characters)"


def test_the_control_character_allowance_is_one_percent_of_the_text() -> None:
    prefix = "Home>News\n\nA title\n\nUpdated : 2021-03-04\n\n"
    filler = "B" * (1000 - len(prefix) - 10 - 2)
    allowed = (prefix + "\x01" * 10 + filler + ".\n").encode()
    assert len(decode(allowed)) == 1000  # 10 of 1000 characters: dropped, still an article
    assert parse(allowed).blocks == (Block(filler + "."),)
    too_many = allowed.replace(b"\x01B", b"\x01\x01", 1)
    with pytest.raises(ParseError, match="too many control characters"):
        decode(too_many)


def test_normalize_collapses_runs_of_plain_spaces_in_ascii() -> None:
    assert normalize_line("  a  b   c  ") == "a b c"
    assert normalize_line("a b") == "a b"


# -- content hash --------------------------------------------------------------------


def test_content_hash_is_stable_across_versions() -> None:
    # stored in every database: a change would make exact copies of stored articles new
    blocks = (Block("First paragraph."), Block("Second paragraph\nwith two lines."))
    assert content_hash("A title", DAY, blocks) == (
        "b3d8aacf253644bea02a55b187597d342bc3d9665bc58fa58db1c54022696add"
    )


def test_content_hash_keeps_block_boundaries() -> None:
    one = content_hash("T", DAY, (Block("ab"), Block("c")))
    assert one != content_hash("T", DAY, (Block("a"), Block("bc")))
    assert one != content_hash("Tab", DAY, (Block("c"),))
    assert one == content_hash("T", DAY.replace(hour=23), (Block("ab"), Block("c")))


# -- slug: date, then at most 80 characters of title words, cut between words -------


WORDS = "harbin-regains-national-civilized-city-title"


def test_a_slug_of_exactly_80_characters_is_kept_whole() -> None:
    words = ("abcdefghi-" * 8)[:79] + "z"  # 80 characters ending in a word
    assert len(words) == 80
    assert slugify(DAY, words.replace("-", " ")) == "2021-03-04-" + words


def test_a_longer_slug_is_cut_after_the_last_whole_word_within_80() -> None:
    title = " ".join(["abcdefghi"] * 12)  # 9-letter words: one ends at character 79
    words = slugify(DAY, title).removeprefix("2021-03-04-")
    assert words == "-".join(["abcdefghi"] * 8)
    assert len(words) == 79


def test_a_single_word_longer_than_80_is_cut_at_80() -> None:
    assert slugify(DAY, "a" * 100) == "2021-03-04-" + "a" * 80


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("abcxyz019", min_size=1, max_size=30), min_size=1, max_size=12))
def test_slug_words_are_a_whole_word_prefix_of_at_most_80_characters(words: list[str]) -> None:
    full = "-".join(words)
    cut = slugify(DAY, " ".join(words)).removeprefix("2021-03-04-")
    if len(full) <= 80:
        assert cut == full
    else:
        assert len(cut) <= 80
        assert full.startswith(cut)
        assert full[len(cut)] == "-" or ("-" not in full[:80] and len(cut) == 80)


def test_slug_edges_lose_their_separators_and_a_title_without_letters_is_article() -> None:
    assert slugify(DAY, "(Update) Harbin!") == "2021-03-04-update-harbin"
    assert slugify(DAY, "  ...  ") == "2021-03-04-article"
    assert slugify(DAY, "哈尔滨") == "2021-03-04-哈尔滨"  # a title keeps its own letters
    assert slugify(DAY, "Café Zürich") == "2021-03-04-cafe-zurich"


# -- summary: the first paragraph, trimmed to 280 characters at a word boundary ------


def test_summary_is_the_whole_first_paragraph_up_to_280_characters() -> None:
    assert summarize((Block("First."), Block("Second."))) == "First."
    assert summarize((Block("a list\nof lines"),)) == "a list of lines"
    exactly = "word " * 55 + "abcde"  # 280 characters
    assert len(exactly) == 280
    assert summarize((Block(exactly),)) == exactly
    assert summarize(()) == ""


def test_a_longer_first_paragraph_is_cut_at_the_last_space_with_an_ellipsis() -> None:
    over = "word " * 55 + "abcdef"  # 281 characters
    assert summarize((Block(over),)) == ("word " * 55).rstrip() + "…"
    assert summarize((Block(over),), limit=281) == over


def test_the_cut_drops_a_trailing_comma_semicolon_or_colon_but_keeps_the_word() -> None:
    for mark in ",;:":
        text = "a" * 270 + " TAX" + mark + " " + "b" * 20  # the cut falls in the b's
        assert summarize((Block(text),)) == "a" * 270 + " TAX…"
    text = "a" * 270 + " to: " + "b" * 20
    assert summarize((Block(text),)) == "a" * 270 + " to…"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("ab ,;:.X", min_size=1, max_size=120), min_size=1, max_size=5))
def test_summary_is_a_prefix_of_the_first_paragraph(lines: list[str]) -> None:
    first = " ".join(lines)
    summary = summarize((Block("\n".join(lines)), Block("next")))
    if len(first) <= 280:
        assert summary == first
    else:
        assert summary.endswith("…")
        kept = summary[:-1]
        assert len(kept) <= 280
        assert first.startswith(kept)
        assert not kept.endswith((",", ";", ":"))
