"""One error tree for everything the user can cause or fix.

    PublisherError(message, hint)
    ├── ConfigError   (ValueError)       bad settings: exit 2
    ├── UsageError    (ValueError)       a bad argument (an unknown category): exit 2
    ├── ParseError    (ValueError)       a file that is not an article: quarantined
    ├── StoreError    (RuntimeError)     database unreachable, locked, bad schema
    │   └── MissingDatabase                a read-only command found no database yet
    └── SendError     (ConnectionError)  SMTP failures, carries code and recipient

Like aiosmtplib's errors, each class also inherits the built-in it resembles so
callers that only know the built-ins still catch them.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "MissingDatabase",
    "ParseError",
    "PublisherError",
    "SendError",
    "StoreError",
    "UsageError",
]

# RFC 3463 enhanced codes for "message length exceeds administrative limit" and
# "message too big for system"
_MESSAGE_TOO_BIG = re.compile(r"\b5\.(?:2\.3|3\.4)\b")


class PublisherError(Exception):
    """An error with a one-line message and an optional fix-it hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(PublisherError, ValueError):
    """The configuration file or environment is wrong."""


class UsageError(PublisherError, ValueError):
    """An argument the command cannot take (an unknown category name)."""


class ParseError(PublisherError, ValueError):
    """A file is not an article; `message` is the reason written beside it in quarantine."""


class StoreError(PublisherError, RuntimeError):
    """The database cannot be opened, migrated or written."""


class MissingDatabase(StoreError):
    """Nothing was stored yet and the command must not create the database (`status`)."""


class SendError(PublisherError, ConnectionError):
    """A message could not be handed to the SMTP server."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        code: int | None = None,
        recipient: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.code = code
        self.recipient = recipient

    @property
    def permanent(self) -> bool:
        """5xx replies are final for that recipient; everything else may be retried."""
        return self.code is not None and 500 <= self.code < 600

    @property
    def counts_as_bounce(self) -> bool:
        """A permanent refusal of the address, not of this message: a 552 or an enhanced
        5.2.3 / 5.3.4 (the message is too big) says nothing about the mailbox, so it must
        never count toward bouncing a subscriber."""
        if not self.permanent or self.code == 552:
            return False
        return _MESSAGE_TOO_BIG.search(self.message) is None
