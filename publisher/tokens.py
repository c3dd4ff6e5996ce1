"""Signed, expiring tokens for the confirm, unsubscribe and preferences links (itsdangerous).

A token names the subscriber (id and address) and its purpose; it carries no secret and
needs no database row. A forged, altered or expired token is simply not valid.

A PREVIEW token stands in any link of a `send --dry-run` preview: signed under its own
salt, so it never checks as a confirm or unsubscribe token; the routes answer it with a
"this is a preview" page and change nothing.
"""

from __future__ import annotations

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
