"""Article bodies: Markdown source -> blocks, blocks -> sanitized HTML. Pure.

A block's `text` is always plain text (dedup and summaries read it); a Markdown block also
keeps its source in `markup`, rendered here with markdown-it (CommonMark, raw HTML off) and
then cleaned by nh3, so markup from a file never reaches a page or a feed unchecked.
A plain-text block renders with its URLs as links and list-like runs of lines as a list.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

from publisher.model import Block

__all__ = ["block_html", "body_html", "markdown_blocks"]

ALLOWED_TAGS = frozenset(
    {"p", "a", "em", "strong", "ul", "ol", "li", "h2", "h3", "h4", "blockquote", "code"}
    | {"pre", "img", "br"}
)
ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
LINK_REL = "nofollow noopener"
_ABSOLUTE_URL = re.compile(r"https?://[^\s/?#]+", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_URL_TAIL = ".,;:!?)]}'\""
# a line in a list-like run: short, not a sentence, not an introduction ("...include:")
LIST_LINE_MAX = 200
LIST_MIN_LINES = 3
_SENTENCE_END = (".", "!", "?", ":", "。", "！", "？", "：")


def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False})


def markdown_blocks(source: str) -> list[Block]:
    """A Markdown body -> one Block per top-level element (paragraph, heading, list, ...)."""
    lines = source.split("\n")
    tokens = _markdown().parse(source)
    blocks: list[Block] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        end = _closing(tokens, index)
        if token.map is not None:
            start, stop = token.map
            markup = "\n".join(lines[start:stop]).strip("\n")
            text = "\n".join(_plain_lines(tokens[index : end + 1]))
            if text.strip():
                blocks.append(Block(text, markup=markup))
        index = end + 1
    return blocks


def _closing(tokens: Sequence[Token], index: int) -> int:
    """The index of the token that closes the top-level element opened at `index`."""
    if tokens[index].nesting != 1:
        return index
    depth = 0
    for position in range(index, len(tokens)):
        depth += tokens[position].nesting
        if depth == 0:
            return position
    return len(tokens) - 1


def _plain_lines(tokens: Sequence[Token]) -> list[str]:
    """One line per inline run (a paragraph, a heading, a list item) or code line."""
    lines: list[str] = []
    for token in tokens:
        if token.type == "inline":
            words = []
            for child in token.children or []:
                if child.type in ("text", "code_inline"):
                    words.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    words.append(" ")
                elif child.type == "image":
                    words.append(child.content)
            line = " ".join("".join(words).split())
            if line:
                lines.append(line)
        elif token.type in ("fence", "code_block"):
            lines.extend(line for line in token.content.split("\n") if line.strip())
    return lines


def block_html(block: Block) -> str:
    """One block as safe HTML."""
    if block.markup is not None:
        return _clean(_render_markdown(block.markup))
    return _plain_html(block.lines)


def body_html(blocks: Sequence[Block], limit: int | None = None) -> str:
    """The body as HTML; with a limit, at most about `limit` characters of text, then "…"."""
    parts: list[str] = []
    left = limit
    for block in blocks:
        if left is not None and len(block.text) > left:
            if left > 0:
                parts.append(_plain_html(_cut(block.lines, left)))
            parts.append("<p>…</p>")
            break
        parts.append(block_html(block))
        if left is not None:
            left -= len(block.text)
    return "".join(parts)


def _cut(lines: tuple[str, ...], limit: int) -> tuple[str, ...]:
    kept: list[str] = []
    for line in lines:
        kept.append(line[:limit])
        limit -= len(line)
        if limit <= 0:
            break
    return tuple(kept)


def _render_markdown(markup: str) -> str:
    md = _markdown()
    tokens = md.parse(markup)
    for token in tokens:
        # the page's title is its h1: a file's headings sit below it, h2 to h4
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(max(int(token.tag[1]), 2), 4)}"
    rendered: str = md.renderer.render(tokens, md.options, {})
    return rendered


def _keep_absolute(tag: str, attribute: str, value: str) -> str | None:
    if (tag, attribute) in (("a", "href"), ("img", "src")) and not _ABSOLUTE_URL.match(value):
        return None
    return value


def _clean(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes={"http", "https"},
        link_rel=LINK_REL,
        attribute_filter=_keep_absolute,
        strip_comments=True,
    ).strip()


def _plain_html(lines: Sequence[str]) -> str:
    """Plain text lines: list-like runs of lines become a <ul>, the rest <p> with <br>."""
    parts: list[str] = []
    paragraph: list[str] = []
    for kind, run in _runs(lines):
        if kind == "list":
            if paragraph:
                parts.append("<p>" + "<br>".join(paragraph) + "</p>")
                paragraph = []
            parts.append("<ul>" + "".join(f"<li>{_linked(line)}</li>" for line in run) + "</ul>")
        else:
            paragraph.extend(_linked(line) for line in run)
    if paragraph:
        parts.append("<p>" + "<br>".join(paragraph) + "</p>")
    return "".join(parts)


def _runs(lines: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(kind, lines): 'list' for LIST_MIN_LINES or more list-like lines in a row, else 'text'."""
    runs: list[tuple[str, list[str]]] = []
    current: list[str] = []

    def flush() -> None:
        if len(current) >= LIST_MIN_LINES:
            runs.append(("list", list(current)))
        elif current:
            runs.append(("text", list(current)))
        current.clear()

    for line in lines:
        if len(line) <= LIST_LINE_MAX and not line.endswith(_SENTENCE_END):
            current.append(line)
        else:
            flush()
            runs.append(("text", [line]))
    flush()
    return runs


def _linked(line: str) -> str:
    """A line as escaped HTML with its http(s) URLs as links."""
    out: list[str] = []
    position = 0
    for match in _URL.finditer(line):
        url = match.group(0).rstrip(_URL_TAIL)
        out.append(html.escape(line[position : match.start()], quote=True))
        href = html.escape(url, quote=True)
        out.append(f'<a href="{href}" rel="{LINK_REL}">{href}</a>')
        position = match.start() + len(url)
    out.append(html.escape(line[position:], quote=True))
    return "".join(out)
