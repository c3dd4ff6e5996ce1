"""Article file bytes -> ParsedArticle. Pure: no files, clock or database.

The format (see design.md): breadcrumb "Home>A>B", title, "Updated : YYYY-MM-DD",
optional byline "By [author] ( source )", optional header lines "Id: <editor's id>" and
"Language: <BCP 47 tag>", then paragraphs separated by blank lines. A file named *.md has
the same header lines and a Markdown body (body.markdown_blocks): each block keeps its plain
text, for dedup, and its source, for rendering.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from publisher.body import markdown_blocks
from publisher.errors import ParseError
from publisher.links import slug_words
from publisher.model import Block, ParsedArticle

__all__ = [
    "content_hash",
    "decode",
    "is_markdown",
    "language_tag",
    "normalize_line",
    "parse_article",
    "slugify",
    "summarize",
]

log = logging.getLogger("publisher.parse")

# Every Unicode space separator plus the zero-width and soft characters that sneak in.
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t\f\v]")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_RUNS_OF_SPACES = re.compile(r" {2,}")
_DATE = re.compile(
    r"^Updated\s*:\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?\s*$",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"^By\b\s*(?P<author>[^()]*?)\s*(?:\(\s*(?P<source>[^()]*?)\s*\))?\s*$")
_BREADCRUMB = re.compile(r"^Home\s*>", re.IGNORECASE)
_HEADER = re.compile(r"^(?P<name>Id|Language)\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
# loose BCP 47: ASCII subtags of letters and digits joined by hyphens, the first letters only
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
LANGUAGE_MAX = 35
# C0 controls, plus what XML 1.0 forbids outright (lone surrogates, U+FFFE, U+FFFF): one such
# character in a title would make every later feed build fail.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_ASCII_ODD = re.compile(r"[\x00-\x08\t\x0b\x0c\x0e-\x1f\x7f]")


def decode(data: bytes) -> str:
    """Bytes -> text: UTF-8 (BOM or not), else cp1252, else Latin-1 (never fails)."""
    if not data.strip():
        raise ParseError("empty file")
    if b"\x00" in data:
        raise ParseError("binary file (contains NUL bytes)")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if len(_CONTROL.findall(text)) > max(2, len(text) // 100):
        raise ParseError("binary file (too many control characters)")
    return text


def normalize_line(line: str) -> str:
    """NFC, odd spaces -> plain space, runs collapsed, ends trimmed; nothing else changed."""
    if line.isascii() and "  " not in line and _ASCII_ODD.search(line) is None:
        return line.strip()  # the common case: nothing to normalize but the ends
    # Remove before composing: "e<ZWSP>\u0301" composes to "é" only once the ZWSP is gone, so
    # composing first would leave a line that a second normalization changes.
    line = unicodedata.normalize("NFC", _CONTROL.sub("", _INVISIBLE.sub("", line)))
    line = _ODD_SPACES.sub(" ", line)
    return _RUNS_OF_SPACES.sub(" ", line).strip()


def parse_article(data: bytes | str, *, source_file: str, zone: ZoneInfo) -> ParsedArticle:
    """Parse one article file; ParseError with the reason if it is not one."""
    text = decode(data) if isinstance(data, bytes) else data
    raw_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [normalize_line(line) for line in raw_lines]
    cursor = _skip_blank(lines, 0)
    if cursor == len(lines):
        raise ParseError("empty file")

    category_path: tuple[str, ...] = ()
    if _BREADCRUMB.match(lines[cursor]):
        parts = [part.strip() for part in lines[cursor].split(">")][1:]
        category_path = tuple(part for part in parts if part)
        cursor = _skip_blank(lines, cursor + 1)
    if cursor == len(lines) or _DATE.match(lines[cursor]):
        raise ParseError("no title")
    title = lines[cursor]
    cursor = _skip_blank(lines, cursor + 1)

    if cursor == len(lines) or not (match := _DATE.match(lines[cursor])):
        raise ParseError("no date (expected a line 'Updated : YYYY-MM-DD' after the title)")
    published = _date(match, zone)
    cursor = _skip_blank(lines, cursor + 1)

    author: str | None = None
    source: str | None = None
    if cursor < len(lines) and (byline := _BYLINE.match(lines[cursor])):
        author = byline["author"] or None
        source = byline["source"] or None
        cursor += 1
    headers, cursor = _headers(lines, cursor)
    language = None
    if "language" in headers:
        language = language_tag(headers["language"])
        if language is None:
            log.warning("%s: bad Language: header %r ignored", source_file, headers["language"])

    if is_markdown(source_file):
        blocks = tuple(markdown_blocks(_markdown_source(raw_lines[cursor:])))
    else:
        blocks = tuple(_blocks(lines[cursor:]))
    if not blocks:
        raise ParseError("no body (title and date but no paragraphs)")
    return ParsedArticle(
        title=title,
        category_path=category_path,
        published=published,
        author=author,
        source=source,
        blocks=blocks,
        content_hash=content_hash(title, published, blocks, language),
        source_file=source_file,
        language=language,
        editor_id=headers.get("id") or None,
    )


MARKDOWN_SUFFIXES = (".md", ".markdown")


def is_markdown(source_file: str) -> bool:
    """Whether a file's body is Markdown (by its name)."""
    return source_file.lower().endswith(MARKDOWN_SUFFIXES)


def _markdown_source(raw_lines: list[str]) -> str:
    """The body's lines with their indentation, which Markdown reads (lists, code)."""
    cleaned = []
    for line in raw_lines:
        line = unicodedata.normalize("NFC", _CONTROL.sub("", _INVISIBLE.sub("", line)))
        cleaned.append(line.replace("\t", "    ").rstrip())
    return "\n".join(cleaned)


def language_tag(text: str) -> str | None:
    """A BCP 47 tag in its usual case ('zh-hant-tw' -> 'zh-Hant-TW'), or None if it is not one."""
    if len(text) > LANGUAGE_MAX or not _LANGUAGE.fullmatch(text):
        return None
    first, *rest = text.split("-")
    subtags = [first.lower()]
    for subtag in rest:
        if len(subtag) == 4 and subtag.isalpha():
            subtags.append(subtag.title())  # script
        elif len(subtag) == 2 and subtag.isalpha():
            subtags.append(subtag.upper())  # region
        else:
            subtags.append(subtag.lower())
    return "-".join(subtags)


def _headers(lines: list[str], cursor: int) -> tuple[dict[str, str], int]:
    """The Id:/Language: lines before the first paragraph (a block made only of them)."""
    headers: dict[str, str] = {}
    start = _skip_blank(lines, cursor)
    end = start
    while end < len(lines) and (match := _HEADER.match(lines[end])):
        headers.setdefault(match["name"].lower(), match["value"])
        end += 1
    if end == start or (end < len(lines) and lines[end]):
        return {}, cursor  # no header lines, or the first paragraph only starts like one
    return headers, end


def content_hash(
    title: str, published: datetime, blocks: tuple[Block, ...], language: str | None = None
) -> str:
    """Identity of the normalized content: same hash = exact copy, whatever the file name.

    A language counts (adding a Language: line to a file changes what is published);
    without one the hash is what it always was, so stored articles keep theirs."""
    digest = hashlib.sha256()
    # a Markdown block counts by its source: a changed link or emphasis is a changed article
    parts = (block.text if block.markup is None else block.markup for block in blocks)
    for part in (title, published.date().isoformat(), *parts):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1e")
    if language:
        digest.update(b"\x1flanguage:" + language.encode("ascii"))
    return digest.hexdigest()


# a file name is at most 255 bytes: date, words and ".html" stay well under it in UTF-8
SLUG_WORDS_CHARS = 80
SLUG_WORDS_BYTES = 180


def slugify(published: datetime, title: str) -> str:
    """Readable slug from date + title: 2020-09-01-harbin-regains-national-civilized-city,
    2026-12-02-哈尔滨冰雪节开幕 (see links.slug_words)."""
    words = slug_words(title)
    if len(words) > SLUG_WORDS_CHARS or len(words.encode()) > SLUG_WORDS_BYTES:
        cut = words[:SLUG_WORDS_CHARS]
        while len(cut.encode()) > SLUG_WORDS_BYTES:
            cut = cut[:-1]
        words = cut.rsplit("-", 1)[0] if "-" in cut else cut
    return f"{published.date().isoformat()}-{words or 'article'}"


def summarize(blocks: tuple[Block, ...], limit: int = 280) -> str:
    """First paragraph, trimmed to a word boundary."""
    first = " ".join(blocks[0].lines) if blocks else ""
    if len(first) <= limit:
        return first
    return first[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _skip_blank(lines: list[str], index: int) -> int:
    while index < len(lines) and not lines[index]:
        index += 1
    return index


def _date(match: re.Match[str], zone: ZoneInfo) -> datetime:
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        value = datetime(year, month, day, hour, minute, second, tzinfo=zone)
        value.astimezone(UTC)  # stored in UTC: a date at the edge of year 1 or 9999 does not fit
    except (ValueError, OverflowError) as exc:
        raise ParseError(f"bad date '{match.group(0)}': {exc}") from exc
    return value


def _blocks(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line:
            current.append(line)
        elif current:
            blocks.append(Block("\n".join(current)))
            current = []
    return blocks
