"""Recording one consent event: stored with its time and source, and one log line.

Every path that changes or tests an address's consent (the CLI, the web routes, a send
that met a hard 5xx, inbound mail, provider webhooks) records through `record_consent`
inside its own transaction. Log lines show the address masked (secrecy.masked_address):
the full address lives only in the database, and `subscribers history` shows it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from publisher.config import Settings
from publisher.model import ConsentEvent, ConsentKind, ConsentSource
from publisher.secrecy import address_hash, masked_address, printable
from publisher.store.consent import ConsentEvents

__all__ = ["record_consent"]

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
