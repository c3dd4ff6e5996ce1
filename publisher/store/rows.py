"""Ledger rows as they come out of the database: the columns read, and their decoders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from publisher.model import Delivery, DeliveryStatus, DigestRun, RunStatus, Subscriber
from publisher.store.schema import deliveries, subscribers
from publisher.store.subscribers import subscriber_from_row

__all__ = [
    "DELIVERY_COLUMNS",
    "OPEN",
    "PAIR_COLUMNS",
    "delivery",
    "delivery_and_subscriber",
    "digest_run",
]

OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)  # not yet sent or failed

# What `delivery` reads: rows are read by the thousand, so not the claim and lease
# columns (their timestamps cost a conversion each and are not part of a Delivery).
DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.run_id,
    deliveries.c.subscriber_id,
    deliveries.c.message_id,
    deliveries.c.status,
    deliveries.c.attempts,
    deliveries.c.article_ids,
    deliveries.c.error,
    deliveries.c.finished_at,
)

# A row to send and its subscriber, read in one statement: a second query `id IN (500
# ids)` for the subscribers is a sequential scan of every subscriber while the table has
# no statistics yet. `delivery_and_subscriber` splits it.
PAIR_COLUMNS = (
    *subscribers.c,
    *(column.label(f"delivery_{column.name}") for column in DELIVERY_COLUMNS),
)


def digest_run(row: Any) -> DigestRun:
    return DigestRun(
        id=int(row.id),
        frequency=row.frequency,
        as_of=row.as_of,
        status=RunStatus(row.status),
        created=row.created,
        finished=row.finished,
    )


def delivery_and_subscriber(row: Any) -> tuple[Delivery, Subscriber]:
    """A row of `PAIR_COLUMNS`: the delivery, and its subscriber."""
    return delivery(row[len(subscribers.c) :]), subscriber_from_row(row)


def delivery(row: Sequence[Any]) -> Delivery:
    """From the values of `DELIVERY_COLUMNS`, in that order."""
    key, run_id, subscriber_id, message_id, status, attempts, article_ids, error, sent_at = row
    return Delivery(
        id=int(key),
        run_id=int(run_id),
        subscriber_id=int(subscriber_id),
        message_id=message_id,
        status=DeliveryStatus(status),
        attempts=int(attempts),
        article_ids=tuple(json.loads(article_ids)),
        error=error,
        sent_at=sent_at,
    )
