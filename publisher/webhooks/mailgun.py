"""Mailgun: `signature: {timestamp, token, signature}` in the JSON body.

The signature is HMAC-SHA256 of timestamp + token under the webhook signing key. A
timestamp outside the replay window is refused here, and a token already seen within it
by the webhook route (the database remembers tokens): a captured request cannot be played
again. Events (`event-data.event`): `failed` with
severity permanent (hard) or temporary (soft), `complained`, `unsubscribed`; the rest
(delivered, opened, clicked, accepted) are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Any

from publisher.webhooks import (
    Batch,
    FeedbackKind,
    Malformed,
    ProviderEvent,
    Unauthentic,
    address,
    joined,
    read_json,
    text,
)

__all__ = ["mailgun_events", "read_mailgun", "verify_mailgun"]

PROVIDER = "mailgun"
MAX_TOKEN = 256


def read_mailgun(body: bytes) -> dict[str, Any]:
    data = read_json(body)
    if not isinstance(data, dict):
        raise Malformed("the body is not a Mailgun webhook (a JSON object)")
    return data


def verify_mailgun(
    data: dict[str, Any], signing_key: str, *, now: float, window: float
) -> tuple[str, float]:
    """The request's token, and until when it could be replayed (its timestamp plus the
    window), once its signature and freshness are checked; else Unauthentic. Novelty is
    the caller's: it takes the token in the database (a token seen before is refused)."""
    signature = data.get("signature")
    if not isinstance(signature, dict):
        raise Unauthentic("no Mailgun signature")
    timestamp, token, digest = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str | int) and str(v) for v in (timestamp, token, digest)):
        raise Unauthentic("the Mailgun signature lacks timestamp, token or signature")
    timestamp, token, digest = str(timestamp), str(token), str(digest)
    if len(token) > MAX_TOKEN:
        raise Unauthentic("the Mailgun token is too long")
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected.encode(), digest.lower().encode()):
        raise Unauthentic("the Mailgun signature does not match")
    try:
        moment = float(timestamp)
    except ValueError:
        raise Unauthentic("the Mailgun timestamp is not a number") from None
    if not math.isfinite(moment) or abs(now - moment) > window:
        raise Unauthentic("the Mailgun timestamp is outside the replay window")
    return token, moment + window


def mailgun_events(data: dict[str, Any]) -> Batch:
    """The event of one Mailgun webhook (it sends one per request)."""
    event = data.get("event-data")
    if not isinstance(event, dict):
        return Batch(skipped=("a Mailgun webhook without event-data",))
    name = event.get("event")
    if name == "failed":
        severity = event.get("severity")
        if severity == "permanent":
            kind = FeedbackKind.HARD_BOUNCE
        elif severity == "temporary":
            kind = FeedbackKind.SOFT_BOUNCE
        else:
            return Batch(skipped=(f"a Mailgun failure of severity {text(severity, 30)!r}",))
    elif name == "complained":
        kind = FeedbackKind.COMPLAINT
    elif name == "unsubscribed":
        kind = FeedbackKind.UNSUBSCRIBE
    else:
        return Batch(ignored=1)
    found = address(event.get("recipient"))
    if found is None:
        return Batch(skipped=(f"a Mailgun {name} event without a recipient",))
    status = event.get("delivery-status")
    status = status if isinstance(status, dict) else {}
    detail = joined(
        f"Mailgun {name}" + (f" ({event.get('severity')})" if name == "failed" else ""),
        event.get("reason"),
        status.get("code"),
        status.get("description") or status.get("message"),
    )
    return Batch(events=(ProviderEvent(PROVIDER, kind, found, detail),))
