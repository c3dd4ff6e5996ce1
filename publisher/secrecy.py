"""Keeping secrets out of what publisher prints: logs, error lines, --json output.

The first line of defence is not to put a secret in a message at all (settings hide them
from repr, database URLs are shown with `redact_url`). This is the second: a log filter
and a text scrubber that replace any configured secret value that still slips through
(a library's exception text, a traceback) with `***`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from publisher.config import Settings

__all__ = ["MIN_SECRET_LENGTH", "Redactor", "redact", "secret_values"]

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
