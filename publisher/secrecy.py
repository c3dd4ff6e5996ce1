"""Keeping what publisher prints safe, and the one secret it may have to make.

Secrets: the first line of defence is not to put a secret in a message at all (Settings
hides them from repr, status shows database URLs without their password). This is the
second: `secret_values` lists what the settings hold and `redact` replaces any of them
that still slips through (a library's exception text, a traceback) with `***`; the
terminal (console.py) applies it to errors, logs and --json.

Control characters: file names, titles, subscriber names and SMTP replies come from
outside. A newline in one would forge a log line, an ESC sequence would drive the
terminal (clear it, set its title). `printable` shows them as visible escapes instead.

Addresses: `address_hash` is a keyed hash of a normalized address, what the store keeps
once the address itself is erased (a suppression, the consent history), and what log lines
carry with `masked_address` instead of the address: logs are kept and shipped elsewhere.

`ensure_secret_key` writes the random key file a fresh checkout signs its links with.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import replace
from secrets import token_urlsafe
from urllib.parse import unquote, urlsplit

from publisher.config import Settings

__all__ = [
    "MIN_SECRET_LENGTH",
    "address_hash",
    "ensure_secret_key",
    "masked_address",
    "masked_in",
    "printable",
    "redact",
    "secret_values",
]

# logged where `run` and `send` log their start-up
log = logging.getLogger("publisher.run")

# shorter values would blot out ordinary words; such a secret is weak anyway
MIN_SECRET_LENGTH = 6


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Every secret the settings hold: secret key, SMTP and database passwords, webhook
    credentials."""
    hooks = settings.webhooks
    found = [
        settings.secret_key,
        settings.smtp.password,
        hooks.postmark_password,
        hooks.mailgun_signing_key,
    ]
    for key in (settings.dkim.private_key, settings.dkim.ed25519_key):
        if key:  # a PEM line that slips through alone is as secret as the whole key
            found += [key, *(line for line in key.splitlines() if not line.startswith("-"))]
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


def address_hash(email: str, secret_key: str | None) -> str:
    """HMAC-SHA256 (hex) of a normalized address under a key derived from the secret key.

    Keyed, so a copy of the database does not reveal an erased address by hashing a list
    of guesses. Without a secret key the hash is unkeyed (still never the address).
    Changing the secret key orphans hashes made before: the history of a deleted
    subscriber is then no longer found by the address."""
    key = hashlib.sha256(b"publisher.address:" + (secret_key or "").encode("utf-8")).digest()
    return hmac.new(key, email.encode("utf-8"), hashlib.sha256).hexdigest()


def masked_address(email: str, secret_key: str | None) -> str:
    """An address as log lines show it: first letter, domain, and a hash prefix that
    `subscribers history` output and other log lines of the same address share."""
    local, _, domain = email.rpartition("@")
    shown = f"{local[:1]}***@{domain}" if local else "***"
    return printable(f"{shown} #{address_hash(email, secret_key)[:8]}")


def masked_in(text: str, email: str, secret_key: str | None) -> str:
    """`text` (an SMTP error, say) with every spelling of `email` in it masked as
    `masked_address` shows it: servers echo the recipient back in their replies."""
    if not email:
        return printable(text)
    shown = masked_address(email, secret_key)
    return printable(re.sub(re.escape(email), lambda _: shown, text, flags=re.IGNORECASE))


def ensure_secret_key(settings: Settings) -> Settings:
    """No secret key configured but a secret_key_file named: write a random one (0600) there.

    Lets a fresh clone send digests with working unsubscribe links; `publisher send`,
    `serve` and `run` read the same file. Production sets PUBLISHER_SECRET_KEY instead.
    """
    path = settings.secret_key_file
    if settings.secret_key or path is None:
        return settings
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token_urlsafe(32) + "\n")
        log.info("created a secret key in %s (set PUBLISHER_SECRET_KEY in production)", path)
    return replace(settings, secret_key=path.read_text(encoding="utf-8").strip())
