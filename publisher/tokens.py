"""Signed, expiring tokens for the confirm, unsubscribe and preferences links (itsdangerous),
and the signed bounce tokens of the VERP return path.

A token names the subscriber (id and address) and its purpose; it carries no secret and
needs no database row. A forged, altered or expired token is simply not valid.

A PREVIEW token stands in any link of a `send --dry-run` preview: signed under its own
salt, so it never checks as a confirm or unsubscribe token; the routes answer it with a
"this is a preview" page and change nothing.

A bounce token goes in the local part of the envelope sender (`bounces+<token>@domain`),
so it must stay short (a local part is at most 64 octets) and survive an MTA that folds
case: lower-case hex ids and a lower-case base32 HMAC, no timestamp (a DSN may come back
days later, and an address that bounces is worth knowing whenever it does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from itsdangerous import BadData, Signer, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from publisher.errors import ConfigError

__all__ = [
    "CONFIRM",
    "PREFERENCES",
    "PREVIEW",
    "UNSUBSCRIBE",
    "BounceClaim",
    "PreviewClaim",
    "TokenClaim",
    "Tokens",
]

CONFIRM = "confirm"
UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
PREVIEW = "preview"
_LINKS = (CONFIRM, UNSUBSCRIBE, PREFERENCES)  # what a preview link may stand in for

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class TokenClaim:
    subscriber_id: int
    email: str


@dataclass(frozen=True, slots=True)
class PreviewClaim:
    """What a preview link stands in for: `link` (confirm, unsubscribe...) of `email`."""

    link: str
    subscriber_id: int
    email: str


@dataclass(frozen=True, slots=True)
class BounceClaim:
    """Who one outgoing digest went to: the subscriber and the delivery (ledger row)."""

    subscriber_id: int
    delivery_id: int


# 16 base32 characters: an 80-bit HMAC, more than enough against guessing
_BOUNCE_MAC_CHARS = 16
_BOUNCE_TOKEN = re.compile(r"([0-9a-f]{1,12})\.([0-9a-f]{1,12})\.([a-z2-7]{16})")


def _kept(owner: object, slot: str, key: K, make: Callable[[K], V]) -> V:
    """`make(key)`, kept in a dict on `owner` (itsdangerous's classes have no slots)."""
    cache: dict[K, V] = owner.__dict__.setdefault(slot, {})
    if key not in cache:
        cache[key] = make(key)
    return cache[key]


class _KeyCachingSigner(TimestampSigner):
    """Derives its HMAC key once per secret, not on every sign and check."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return _kept(self, "_derived", secret_key, super().derive_key)


class _Uncompressed(URLSafeTimedSerializer):
    """No zlib attempt per token: paid once per digest message, for nothing (payloads are tiny).
    One signer per salt, kept (itsdangerous builds one, and derives its key, per token)."""

    default_signer = _KeyCachingSigner

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        return _kept(self, "_signers", salt, super().make_signer)


class Tokens:
    """Makes and checks tokens for one secret; one serializer per purpose (salt)."""

    def __init__(self, secret_key: str | None) -> None:
        if not secret_key:
            raise ConfigError(
                "secret_key is not set; confirm and unsubscribe links cannot be signed",
                "set PUBLISHER_SECRET_KEY (any long random string)",
            )
        self._serializers = {
            purpose: _Uncompressed(secret_key, salt=f"publisher.{purpose}")
            for purpose in (CONFIRM, UNSUBSCRIBE, PREFERENCES, PREVIEW)
        }
        self._bounce_key = hashlib.sha256(b"publisher.bounce\0" + secret_key.encode()).digest()

    def _bounce_mac(self, ids: str) -> str:
        digest = hmac.new(self._bounce_key, ids.encode("ascii"), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode("ascii").lower()[:_BOUNCE_MAC_CHARS]

    def bounce(self, subscriber_id: int, delivery_id: int) -> str:
        """The VERP token of one delivery: `<subscriber hex>.<delivery hex>.<mac>`."""
        ids = f"{subscriber_id:x}.{delivery_id:x}"
        return f"{ids}.{self._bounce_mac(ids)}"

    def check_bounce(self, token: str) -> BounceClaim | None:
        """The delivery a bounce token names, or None for a forged or malformed one (case
        is ignored: some MTAs fold the local part)."""
        match = _BOUNCE_TOKEN.fullmatch(token.strip().lower())
        if match is None:
            return None
        ids = f"{match[1]}.{match[2]}"
        if not hmac.compare_digest(self._bounce_mac(ids), match[3]):
            return None
        return BounceClaim(int(match[1], 16), int(match[2], 16))

    def make(self, purpose: str, subscriber_id: int, email: str) -> str:
        if purpose == PREVIEW:
            raise ValueError("a preview token is made with make_preview")
        token: str = self._serializers[purpose].dumps([subscriber_id, email])
        return token

    def make_preview(self, link: str, subscriber_id: int, email: str) -> str:
        """An inert token for the `link` of a preview (it can never confirm or unsubscribe)."""
        if link not in _LINKS:
            raise ValueError(f"no preview for {link!r} links")
        token: str = self._serializers[PREVIEW].dumps([link, subscriber_id, email])
        return token

    def check_preview(self, token: str, max_age: int) -> PreviewClaim | None:
        """The claim inside a valid preview token, else None."""
        try:
            value = self._serializers[PREVIEW].loads(token, max_age=max_age)
        except BadData:
            return None
        if (
            not isinstance(value, list)
            or len(value) != 3
            or value[0] not in _LINKS
            or not isinstance(value[1], int)
            or not isinstance(value[2], str)
        ):
            return None
        return PreviewClaim(value[0], value[1], value[2])

    def check(self, purpose: str, token: str, max_age: int) -> TokenClaim | None:
        """The claim inside a valid token, or None for a forged, malformed or expired one."""
        if purpose == PREVIEW:
            return None
        try:
            value = self._serializers[purpose].loads(token, max_age=max_age)
        except (BadData, KeyError):
            return None
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], int)
            or not isinstance(value[1], str)
        ):
            return None
        return TokenClaim(value[0], value[1])
