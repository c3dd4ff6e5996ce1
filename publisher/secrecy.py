"""Keeping what publisher prints safe: no secrets, no control characters.

Secrets: the first line of defence is not to put a secret in a message at all (settings
hide them from repr, database URLs are shown with `redact_url`). This is the second: a log
filter and a text scrubber that replace any configured secret value that still slips
through (a library's exception text, a traceback) with `***`.

Control characters: file names, titles, subscriber names and SMTP replies come from
outside. A newline in one would forge a log line, an ESC sequence would drive the
terminal (clear it, set its title). `printable` shows them as visible escapes instead;
`EscapeControls` does it to every log record, and the CLI to every cell and message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from publisher.config import Settings

__all__ = [
    "MIN_SECRET_LENGTH",
    "EscapeControls",
    "Redactor",
    "printable",
    "redact",
    "secret_values",
]

# shorter values would blot out ordinary words; such a secret is weak anyway
MIN_SECRET_LENGTH = 6


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Every secret the settings hold: secret key, SMTP password, database password."""
    found = [settings.secret_key, settings.smtp.password]
    try:
        password = urlsplit(settings.database_url).password
    except ValueError:
        password = None
    if password:
        found += [password, unquote(password)]
    unique = {value for value in found if value and len(value) >= MIN_SECRET_LENGTH}
    return tuple(sorted(unique, key=len, reverse=True))  # longest first: no partial leftovers


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by ***."""
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text


class Redactor(logging.Filter):
    """A handler filter: scrubs the message and any traceback of a record before output."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


# C0, DEL, C1; the bidirectional overrides and isolates (they reorder what a line shows);
# line and paragraph separators; lone surrogates (an undecodable file name) that would
# fail to encode on output
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    code = ord(character)
    return _NAMED.get(character) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """`text` on one line with every control character shown as an escape (\\n, \\x1b)."""
    return _UNSAFE.sub(_escape, text)


class EscapeControls(logging.Filter):
    """A handler filter: a record's message becomes one line with control characters escaped,
    so no logged value (a file name with a newline) can forge or hide a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True
