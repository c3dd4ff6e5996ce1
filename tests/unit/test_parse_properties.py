"""Properties of parse.py that test_parse.py does not cover: on article-shaped input.

test_parse.py feeds random bytes (almost all rejected at the first line) and random lines.
These build articles from parts with hostile text in every field, so the parser's later
stages run: every result is an Article or a ParseError, the fields are normalized and
XML-safe, and writing an article back out and parsing it gives the same article.
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from publisher.errors import ParseError
from publisher.model import ParsedArticle
from publisher.parse import normalize_line, parse_article

ZONE = ZoneInfo("Asia/Shanghai")
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# Awkward characters the design names (NBSP, BOM, zero-width, curly quotes, dashes) and a few
# it does not (combining marks, line/paragraph separators, C0/C1 controls, noncharacters).
AWKWARD = st.sampled_from(
    list(
        "\u00a0\u2009\u3000\u200b\ufeff\u00ad\u2018\u2019\u201c\u201d\u2013\u0301\u0308"
        "\u2028\u2029\x85\x01\x1b\x7f\ufffe\uffff\t\x0b\x0c\r>()é"
    )
)
WORDS = st.text(
    st.one_of(st.characters(codec="utf-8", exclude_categories=("Cs",)), AWKWARD), max_size=40
)
LINE = st.lists(st.one_of(WORDS, st.sampled_from(["Home>", "By ", "Updated : 2020-01-01"])))


@st.composite
def article_text(draw: st.DrawFn) -> str:
    """An article-shaped text: each part is usually right and sometimes hostile."""
    parts: list[str] = []
    if draw(st.booleans()):
        parts.append("Home>" + ">".join(draw(st.lists(WORDS, max_size=3))))
    parts.append(draw(WORDS))
    year = draw(st.integers(1, 9999))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    clock = draw(st.sampled_from(["", " 00:00", " 23:59:59", " 07:30", " 24:00"]))
    parts.append(
        f"Updated{draw(st.sampled_from([' : ', ':', ' :  ']))}{year:04d}-{month:02d}-{day:02d}{clock}"
    )
    if draw(st.booleans()):
        parts.append(f"By {draw(WORDS)} ( {draw(WORDS)} )")
    for _ in range(draw(st.integers(0, 4))):
        parts.append("\n".join(draw(st.lists(WORDS, min_size=1, max_size=3))))
    separator = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n \n", "\n\u00a0\n\n"]))
    return separator.join(parts)


def parse(data: bytes | str, name: str = "a.txt") -> ParsedArticle:
    return parse_article(data, source_file=name, zone=ZONE)


def write_back(article: ParsedArticle) -> str:
    """The article as a file again; breadcrumb and byline always written (see the fuzz target)."""
    p = article.published
    byline = "By " + (article.author or "") + (f" ( {article.source} )" if article.source else "")
    return "\n\n".join(
        [
            "Home>" + ">".join(article.category_path),
            article.title,
            f"Updated : {p.year:04d}-{p.month:02d}-{p.day:02d} {p:%H:%M:%S}",
            byline,
            *(block.text for block in article.blocks),
        ]
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(article_text(), st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "str"]))
def test_article_shaped_input_gives_a_normalized_xml_safe_article_or_a_parse_error(
    text: str, encoding: str
) -> None:
    if encoding == "str":
        data: bytes | str = text
    else:
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            data = text.encode("utf-8")
    try:
        article = parse(data)
    except ParseError:
        return
    fields = [article.title, *article.category_path, article.author or "", article.source or ""]
    for field in fields:
        assert normalize_line(field) == field or ">" in field  # parts of a stripped breadcrumb
        assert not NOT_XML.search(field), field
    assert article.title
    for block in article.blocks:
        assert block.lines and all(line and normalize_line(line) == line for line in block.lines)
        assert not NOT_XML.search(block.text)
    assert article.published.tzinfo is not None
    assert article.published.astimezone(UTC) > datetime(1, 1, 1, tzinfo=UTC)


@SETTINGS
@given(article_text())
def test_normalizing_a_normalized_article_changes_nothing(text: str) -> None:
    """Idempotence on whole articles: parse(write_back(parse(x))) == parse(x)."""
    with contextlib.suppress(ParseError):
        article = parse(text)
        again = parse(write_back(article))
        assert (again.title, again.category_path, again.published) == (
            article.title,
            article.category_path,
            article.published,
        )
        assert (again.author, again.source) == (article.author, article.source)
        assert again.blocks == article.blocks
        assert again.content_hash == article.content_hash


@SETTINGS
@given(article_text())
def test_line_endings_bom_and_file_name_do_not_change_the_content(text: str) -> None:
    lf = text.replace("\r\n", "\n")
    assume("\r" not in lf)  # a lone CR is a line break of its own
    try:
        plain = parse(lf.encode(), "a.txt")
    except ParseError:
        return
    variant = parse(b"\xef\xbb\xbf" + lf.replace("\n", "\r\n").encode(), "b.txt")
    assert variant.content_hash == plain.content_hash
    assert variant.blocks == plain.blocks and variant.title == plain.title
    assert variant.source_file == "b.txt"
