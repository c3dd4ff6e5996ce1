"""atheris fuzz target for publisher.parse.parse_article: any bytes -> ParsedArticle or ParseError.

Run by hand, bounded (not collected by pytest: the file name does not start with test_):

    python tests/fuzz/fuzz_parse.py -max_total_time=60 -dict=tests/fuzz/parse.dict /tmp/parse-corpus

The corpus folder is seeded from seeds/ on first run. ParseError is the expected answer for
junk; any other exception (or a broken invariant of a parsed article) is a finding, and
libFuzzer writes the input to crash-<sha1> in the current folder.

Found so far (fixed in parse.py, kept in tests/unit/test_parse_regressions.py): U+FFFF in a
title (lxml then refused every feed build), a normalization that was not idempotent
("e<U+FFFE>\u0301"), and, from a year-357 input, dates near year 1 that overflow UTC.
About 5,500 inputs/s; 3 min with the dictionary after the fixes: nothing.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import atheris

with atheris.instrument_imports():
    from publisher.errors import ParseError
    from publisher.parse import normalize_line, parse_article, slugify, summarize

ROOT = Path(__file__).resolve().parents[2]
ZONE = ZoneInfo("Asia/Shanghai")
# Characters outside XML 1.0's Char production.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _stamp(value: datetime) -> str:
    """The 'Updated :' form of a datetime; %Y would drop the zero padding of years < 1000."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )


def check(data: bytes) -> None:
    """One input: parse it; a parsed article must satisfy what the rest of the app relies on."""
    try:
        article = parse_article(data, source_file="fuzz.txt", zone=ZONE)
    except ParseError:
        return
    assert article.title and article.title == normalize_line(article.title), article.title
    assert article.blocks, "an article without a body was accepted"
    for block in article.blocks:
        assert block.text and all(line == normalize_line(line) for line in block.lines)
    assert article.published.tzinfo is not None
    article.published.astimezone(UTC)  # the store keeps UTC
    for text in (article.title, *article.category_path, article.author or "", article.source or ""):
        assert not _NOT_XML.search(text), text  # lxml (feeds) refuses these: one breaks every build
    for block in article.blocks:
        assert not _NOT_XML.search(block.text), block.text
    assert slugify(article.published, article.title)
    summarize(article.blocks)
    # Writing the parsed article back out and parsing that gives the same article (the rule the
    # seeds round-trip test checks); breadcrumb and byline lines are always written so a title
    # starting "Home>" or a first paragraph starting "By" cannot be read as one.
    text = "\n\n".join(
        [
            "Home>" + ">".join(article.category_path),
            article.title,
            f"Updated : {_stamp(article.published)}",
            "By " + (article.author or "") + (f" ( {article.source} )" if article.source else ""),
            *(block.text for block in article.blocks),
        ]
    )
    again = parse_article(text, source_file="fuzz.txt", zone=ZONE)
    assert again.title == article.title, (again.title, article.title)
    assert again.category_path == article.category_path
    assert again.published == article.published
    assert (again.author, again.source) == (article.author, article.source)
    assert again.blocks == article.blocks, (again.blocks, article.blocks)
    assert again.content_hash == article.content_hash


def seed_corpus(folder: Path) -> None:
    """Give libFuzzer the five real articles to mutate (only when the folder is empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        for path in sorted((ROOT / "seeds").glob("*.txt")):
            (folder / path.name).write_bytes(path.read_bytes())


def main() -> None:
    corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for folder in corpus:
        seed_corpus(Path(folder))
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
