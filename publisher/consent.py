"""Recording one consent event: stored with its time and source, and one log line.

Every path that changes or tests an address's consent (the CLI, the web routes, a send
that met a hard 5xx, inbound mail, provider webhooks) records through `record_consent`
inside its own transaction. Log lines show the address masked (secrecy.masked_address):
the full address lives only in the database, and `subscribers history` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from publisher.config import Settings
from publisher.model import ConsentEvent, ConsentKind, ConsentSource, SubscriberStatus
from publisher.secrecy import address_hash, masked_address, printable
from publisher.store.consent import ConsentEvents, NewEvent
from publisher.store.ledger import FailedDelivery

__all__ = ["Consent", "record_consent", "record_consents", "send_failure_recorder"]

log = logging.getLogger("publisher.consent")


@dataclass(frozen=True, slots=True)
class Consent:
    """One consent event of a normalized address, to record."""

    email: str
    subscriber_id: int | None
    kind: ConsentKind
    source: ConsentSource
    detail: str
    at: datetime
    client: str | None = None


def record_consent(
    events: ConsentEvents,
    settings: Settings,
    *,
    email: str,
    subscriber_id: int | None,
    kind: ConsentKind,
    source: ConsentSource,
    detail: str,
    at: datetime,
    client: str | None = None,
) -> ConsentEvent:
    """Store one event of a normalized address (in the transaction of `events`) and log it."""
    [event] = record_consents(
        events, settings, [Consent(email, subscriber_id, kind, source, detail, at, client)]
    )
    return event


def record_consents(
    events: ConsentEvents, settings: Settings, items: Sequence[Consent]
) -> list[ConsentEvent]:
    """`record_consent` for many events in one statement; still one log line each."""
    stored = events.record_many(
        [
            NewEvent(
                email_hash=address_hash(item.email, settings.secret_key),
                subscriber_id=item.subscriber_id,
                kind=item.kind,
                source=item.source,
                detail=item.detail,
                at=item.at,
                client=item.client,
            )
            for item in items
        ]
    )
    for item, event in zip(items, stored, strict=True):
        log.info(
            "consent %s %s via %s%s: %s",
            event.kind.value,
            masked_address(item.email, settings.secret_key),
            event.source.value,
            f" from {printable(event.client)}" if event.client else "",
            printable(event.detail),
        )
    return stored


def send_failure_recorder(
    settings: Settings,
) -> Callable[[Any, list[FailedDelivery], datetime], None]:
    """The ledger's hook for failed deliveries: a hard 5xx is a `bounced` event (the
    address is suppressed after smtp.bounce_after of them), any other final failure of a
    4xx reply a `soft_bounced` one; recorded in the ledger's own transaction."""

    def record(connection: Any, failures: list[FailedDelivery], now: datetime) -> None:
        events = ConsentEvents(connection)
        limit = settings.smtp.bounce_after
        for failure in failures:
            if failure.hard:
                kind = ConsentKind.BOUNCED
                outcome = "; suppressed" if failure.status is SubscriberStatus.BOUNCED else ""
                detail = (
                    f"hard failure {failure.hard_failures} of {limit}{outcome}: {failure.error}"
                )
            elif failure.code is not None and 400 <= failure.code < 500:
                kind, detail = ConsentKind.SOFT_BOUNCED, f"retries used up: {failure.error}"
            else:
                continue  # not about the mailbox (a message too big, a broken connection)
            record_consent(
                events,
                settings,
                email=failure.email,
                subscriber_id=failure.subscriber_id,
                kind=kind,
                source=ConsentSource.SEND,
                detail=detail,
                at=now,
            )

    return record
