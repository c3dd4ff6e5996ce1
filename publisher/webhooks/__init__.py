"""Provider webhooks, pure: a request body (and its headers) in, verified typed events out.

One module per provider: ses.py (SNS envelope, SES bounce and complaint notifications),
postmark.py (basic auth), mailgun.py (HMAC-SHA256, replay window) and
sendgrid.py (ECDSA event webhook). Each verifies first, then reads the events; a failed
check raises `Unauthentic` and nothing is read. An event that cannot be read is skipped
with a reason (`Batch.skipped`), never the batch. No I/O and no clock: `now` is passed in,
and ses.py is handed the signing certificate the adapter fetched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from publisher.errors import PublisherError

__all__ = [
    "Applied",
    "Batch",
    "FeedbackKind",
    "Malformed",
    "ProviderEvent",
    "Unauthentic",
    "read_json",
]

MAX_DETAIL = 300  # characters of a provider's reason kept with an event
MAX_ADDRESS = 320  # RFC 5321: 64 + 1 + 255
# an address inside a provider's reason ("550 5.1.1 <jane@example.com>... User"): the
# detail is logged, and log lines show addresses only masked
_ADDRESS_IN_TEXT = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


class Unauthentic(PublisherError, PermissionError):
    """A forged, missing or stale signature (or wrong credentials): answered 401."""


class Malformed(PublisherError, ValueError):
    """A body that is not the provider's format at all: answered 400."""


class FeedbackKind(StrEnum):
    """What a provider says about one recipient; each maps onto one consent API call."""

    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One recipient's bounce, complaint or unsubscribe as a provider reported it.

    `email` is as the provider wrote it (the use case normalizes it); `detail` is a short
    reason for the consent history, already bounded."""

    provider: str
    kind: FeedbackKind
    email: str
    detail: str


@dataclass(frozen=True, slots=True)
class Batch:
    """The events one request carried, and a reason for each one skipped."""

    events: tuple[ProviderEvent, ...] = ()
    skipped: tuple[str, ...] = ()
    ignored: int = 0  # events of kinds we do not act on (deliveries, opens, clicks)

    def __add__(self, other: Batch) -> Batch:
        return Batch(
            self.events + other.events,
            self.skipped + other.skipped,
            self.ignored + other.ignored,
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """What acting on a batch did: events of known addresses, and of addresses we do not
    know (nothing stored for those)."""

    acted: int = 0
    unknown: int = 0


def read_json(body: bytes) -> Any:
    """The body as JSON, or Malformed."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise Malformed(f"the body is not JSON: {exc.__class__.__name__}") from None


def text(value: Any, limit: int = MAX_DETAIL) -> str:
    """A provider's value as one bounded line ('' for None or a non-scalar)."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return ""
    line = " ".join(str(value).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def address(value: Any) -> str | None:
    """A plausible recipient address from a provider's field, else None."""
    if not isinstance(value, str):
        return None
    candidate = value.strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    if not candidate or len(candidate) > MAX_ADDRESS or "@" not in candidate:
        return None
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in candidate):
        return None
    return candidate


def joined(*parts: Any) -> str:
    """Non-empty parts of a detail, joined by '; ', bounded, with any address in them
    replaced by <address>."""
    line = "; ".join(t for t in (text(p) for p in parts) if t)
    return text(_ADDRESS_IN_TEXT.sub("<address>", line))


def collect(items: Iterable[ProviderEvent | str | None]) -> Batch:
    """Events, skip reasons (str) and ignored ones (None) into one Batch."""
    events: list[ProviderEvent] = []
    skipped: list[str] = []
    ignored = 0
    for item in items:
        if item is None:
            ignored += 1
        elif isinstance(item, str):
            skipped.append(item)
        else:
            events.append(item)
    return Batch(tuple(events), tuple(skipped), ignored)
