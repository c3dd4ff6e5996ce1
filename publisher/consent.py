"""Recording one consent event: stored with its time and source, and one log line.

Every path that changes or tests an address's consent (the CLI, the web routes, a send
that met a hard 5xx, inbound mail, provider webhooks) records through `record_consent`
inside its own transaction. Log lines show the address masked (secrecy.masked_address):
the full address lives only in the database, and `subscribers history` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from publisher.config import Settings
from publisher.model import ConsentEvent, ConsentKind, ConsentSource, SubscriberStatus
from publisher.secrecy import address_hash, masked_address, printable
from publisher.store.consent import ConsentEvents
from publisher.store.ledger import FailedDelivery

__all__ = ["record_consent", "send_failure_recorder"]

log = logging.getLogger("publisher.consent")


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
    event = events.record(
        email_hash=address_hash(email, settings.secret_key),
        subscriber_id=subscriber_id,
        kind=kind,
        source=source,
        detail=detail,
        at=at,
        client=client,
    )
    log.info(
        "consent %s %s via %s%s: %s",
        event.kind.value,
        masked_address(email, settings.secret_key),
        event.source.value,
        f" from {printable(event.client)}" if event.client else "",
        printable(event.detail),
    )
    return event


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
