"""SendGrid (Twilio) signed event webhook: a JSON array of events, signed with ECDSA.

The signature (`X-Twilio-Email-Event-Webhook-Signature`, base64 DER) is ECDSA P-256 with
SHA-256 over the timestamp header (`X-Twilio-Email-Event-Webhook-Timestamp`) followed by
the body's exact bytes; the public key is the one SendGrid shows when signing is turned on
(base64 DER, or PEM). A timestamp outside the replay window is refused. Events: `bounce`
(type bounce: hard; type blocked: soft), `deferred` (soft), `dropped` for a suppressed
address (its reason), `spamreport`, `unsubscribe` and `group_unsubscribe`; the rest
(processed, delivered, open, click) are ignored.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from publisher.webhooks import (
    Batch,
    FeedbackKind,
    Malformed,
    ProviderEvent,
    Unauthentic,
    address,
    collect,
    joined,
    read_json,
    text,
)

__all__ = ["load_public_key", "sendgrid_events", "verify_sendgrid"]

PROVIDER = "sendgrid"
MAX_SIGNATURE = 512  # base64 characters; a P-256 DER signature is about 96
EVENTS: Mapping[str, FeedbackKind] = {
    "deferred": FeedbackKind.SOFT_BOUNCE,
    "spamreport": FeedbackKind.COMPLAINT,
    "unsubscribe": FeedbackKind.UNSUBSCRIBE,
    "group_unsubscribe": FeedbackKind.UNSUBSCRIBE,
}
# `dropped`: SendGrid did not send because its own list holds the address
DROPPED: Mapping[str, FeedbackKind] = {
    "Bounced Address": FeedbackKind.HARD_BOUNCE,
    "Invalid": FeedbackKind.HARD_BOUNCE,
    "Spam Reporting Address": FeedbackKind.COMPLAINT,
    "Unsubscribed Address": FeedbackKind.UNSUBSCRIBE,
}


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key from base64 DER or PEM; ValueError unless a P-256 key."""
    try:
        if "-----BEGIN" in value:
            key = serialization.load_pem_public_key(value.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("not a base64 DER or PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    now: float,
    window: float,
) -> None:
    """Unauthentic unless `signature` signs timestamp + body and the timestamp is fresh."""
    if not signature or not timestamp:
        raise Unauthentic("no SendGrid signature or timestamp header")
    if len(signature) > MAX_SIGNATURE or len(timestamp) > 20:
        raise Unauthentic("the SendGrid signature header is too long")
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthentic("the SendGrid signature is not base64") from None
    try:
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Unauthentic("the SendGrid signature does not match") from None
    try:
        moment = float(timestamp)
    except ValueError:
        raise Unauthentic("the SendGrid timestamp is not a number") from None
    if not math.isfinite(moment) or abs(now - moment) > window:
        raise Unauthentic("the SendGrid timestamp is outside the replay window")


def sendgrid_events(body: bytes) -> Batch:
    """The events of one (verified) SendGrid body: a JSON array of event objects."""
    data = read_json(body)
    if not isinstance(data, list):
        raise Malformed("the body is not a SendGrid event list (a JSON array)")
    return collect(_read(number, event) for number, event in enumerate(data, 1))


def _read(number: int, event: Any) -> ProviderEvent | str | None:
    if not isinstance(event, dict):
        return f"SendGrid event {number}: not an object"
    name = event.get("event")
    if not isinstance(name, str):
        return f"SendGrid event {number}: no event name"
    if name == "bounce":
        kind: FeedbackKind | None = (
            FeedbackKind.SOFT_BOUNCE if event.get("type") == "blocked" else FeedbackKind.HARD_BOUNCE
        )
    elif name == "dropped":
        reason = event.get("reason")
        kind = DROPPED.get(reason) if isinstance(reason, str) else None
    else:
        kind = EVENTS.get(name)
    if kind is None:
        return None
    found = address(event.get("email"))
    if found is None:
        return f"SendGrid event {number} ({text(name, 30)}): no email"
    detail = joined(
        f"SendGrid {name}" + (f" ({text(event.get('type'), 20)})" if name == "bounce" else ""),
        event.get("status"),
        event.get("reason") or event.get("response"),
    )
    return ProviderEvent(PROVIDER, kind, found, detail)
