"""Inbox file names as text every database stores and every terminal shows, and which
names are article files at all (not hidden, temporary or half-written, not a reason)."""

from __future__ import annotations

import re
import unicodedata

REASON_SUFFIX = ".error.txt"


TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload", "~", REASON_SUFFIX)


_ESCAPED = re.compile(r"\\(\\|[nrt]|x[0-9a-f]{2}|u[0-9a-f]{4})")


# the escapes the terminal shows too (secrecy.printable), so a name reads the same
# in the database, the log and the table
_NAMED = {"\n": "n", "\r": "r", "\t": "t"}


def safe_name(name: str) -> str:
    """A name as text every database stores and every terminal shows as it is.

    A backslash is doubled; a byte that is not UTF-8 (os.fsdecode's surrogate escape) becomes
    \\xNN (NN >= 80); a newline, CR or tab becomes \\n, \\r, \\t, any other control character
    or line separator \\xNN (below 80) or \\uNNNN. Reversible (`original_name`); a printable
    name without a backslash is unchanged.
    """
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(_escape(char) for char in name)


def _escape(char: str) -> str:
    code = ord(char)
    if char == "\\":
        return "\\\\"
    if char in _NAMED:
        return "\\" + _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
        return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"
    return char


_UNNAMED = {escape: char for char, escape in _NAMED.items()}


def original_name(text: str) -> str:
    """The name `safe_name` was given (os.fsencode of it gives the bytes on disk)."""

    def unescape(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape == "\\":
            return "\\"
        if escape in _UNNAMED:
            return _UNNAMED[escape]
        code = int(escape[1:], 16)
        return chr(0xDC00 + code if escape[0] == "x" and code >= 0x80 else code)

    return _ESCAPED.sub(unescape, text)


def is_article_name(name: str) -> bool:
    """Hidden, temporary and half-written files are not articles (yet); nor reasons."""
    return not (name.startswith((".", "~")) or name.endswith(TEMPORARY_SUFFIXES))
