"""Postmark: HTTP basic auth on the webhook URL, one JSON record per request.

Postmark signs nothing; the webhook URL carries credentials (`https://user:pass@host/...`)
and each request an `Authorization: Basic` header, compared in constant time. Records:
`Bounce` (its `Type`: HardBounce and BadEmailAddress hard; SoftBounce, Transient and
DnsError soft; Unsubscribe an unsubscribe; SpamComplaint a complaint; the rest, such as
AutoResponder, ignored), `SpamComplaint`, and `SubscriptionChange` (SuppressSending true:
suppressed for its SuppressionReason; false, a reactivation, is ignored: a provider never
subscribes anyone again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

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

__all__ = ["check_basic_auth", "postmark_events"]

PROVIDER = "postmark"
BOUNCE_TYPES: Mapping[str, FeedbackKind] = {
    "HardBounce": FeedbackKind.HARD_BOUNCE,
    "BadEmailAddress": FeedbackKind.HARD_BOUNCE,
    "SoftBounce": FeedbackKind.SOFT_BOUNCE,
    "Transient": FeedbackKind.SOFT_BOUNCE,
    "DnsError": FeedbackKind.SOFT_BOUNCE,
    "Unsubscribe": FeedbackKind.UNSUBSCRIBE,
    "SpamComplaint": FeedbackKind.COMPLAINT,
}
SUPPRESSION_REASONS: Mapping[str, FeedbackKind] = {
    "HardBounce": FeedbackKind.HARD_BOUNCE,
    "SpamComplaint": FeedbackKind.COMPLAINT,
    "ManualSuppression": FeedbackKind.UNSUBSCRIBE,
}


def check_basic_auth(authorization: str | None, user: str, password: str) -> None:
    """Unauthentic unless the Authorization header names exactly this user and password."""
    if not authorization or not authorization[:6].lower() == "basic ":
        raise Unauthentic("no basic auth credentials")
    try:
        given = base64.b64decode(authorization[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Unauthentic("the basic auth credentials are not base64") from None
    expected = f"{user}:{password}".encode()
    # digests first: compare_digest's time then says nothing of the length either
    if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest()):
        raise Unauthentic("wrong basic auth credentials")


def postmark_events(body: bytes) -> Batch:
    """The events of one Postmark webhook body (one record, or a list of them)."""
    data = read_json(body)
    records = data if isinstance(data, list) else [data]
    if not records or not all(isinstance(record, dict) for record in records):
        raise Malformed("the body is not a Postmark record (a JSON object)")
    return collect(item for record in records for item in _read(record))


def _read(record: dict[str, Any]) -> Iterator[ProviderEvent | str | None]:
    kind = record.get("RecordType")
    if kind == "SubscriptionChange":
        yield _subscription_change(record)
        return
    if kind not in ("Bounce", "SpamComplaint"):
        yield None  # Delivery, Open, Click, Inbound...
        return
    found = address(record.get("Email"))
    if found is None:
        yield f"a Postmark {text(kind, 30)} record without an Email"
        return
    bounce_type = "SpamComplaint" if kind == "SpamComplaint" else record.get("Type")
    feedback = BOUNCE_TYPES.get(bounce_type) if isinstance(bounce_type, str) else None
    if feedback is None:
        yield None  # AutoResponder, AddressChange, ChallengeVerification...
        return
    detail = joined(
        f"Postmark {text(bounce_type, 40)}", record.get("Description"), record.get("Details")
    )
    yield ProviderEvent(PROVIDER, feedback, found, detail)


def _subscription_change(record: dict[str, Any]) -> ProviderEvent | str | None:
    found = address(record.get("Recipient"))
    if found is None:
        return "a Postmark SubscriptionChange without a Recipient"
    if record.get("SuppressSending") is not True:
        return None
    reason = record.get("SuppressionReason")
    feedback = SUPPRESSION_REASONS.get(reason) if isinstance(reason, str) else None
    if feedback is None:
        return f"a Postmark SubscriptionChange with unknown SuppressionReason {text(reason, 40)!r}"
    detail = joined(f"Postmark suppression: {reason}", f"origin {text(record.get('Origin'), 40)}")
    return ProviderEvent(PROVIDER, feedback, found, detail)
