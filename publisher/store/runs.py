"""Digest runs and their fan-out: one 'pending' row per (run, subscriber) with something new."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update

from publisher.model import Delivery, DeliveryStatus, DigestRun, RunStatus, Subscriber
from publisher.store.chunks import chunks
from publisher.store.rows import OPEN, PAIR_COLUMNS, delivery_and_subscriber, digest_run
from publisher.store.schema import (
    deliveries,
    digest_runs,
    ingest_log,
    sent_articles,
    subscribers,
)

__all__ = ["DigestRuns", "PlannedDelivery"]


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A row to write at fan-out."""

    subscriber_id: int
    message_id: str
    article_ids: tuple[str, ...]


class DigestRuns:
    """Runs, their fan-out and their open rows, bound to a connection (the caller owns the
    transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- runs -------------------------------------------------------------------------

    def unfinished_runs(self) -> list[DigestRun]:
        """Runs a crash, Ctrl-C or an unreachable server left unfinished, oldest first."""
        rows = self.connection.execute(
            select(digest_runs)
            .where(digest_runs.c.status != RunStatus.DONE.value)
            .order_by(digest_runs.c.id)
        )
        return [digest_run(row) for row in rows]

    def create_run(self, frequency: str, as_of: datetime, now: datetime) -> DigestRun:
        key = self.connection.execute(
            insert(digest_runs).values(
                frequency=frequency,
                as_of=as_of,
                status=RunStatus.FANOUT.value,
                fanned_out_through=0,
                skipped_empty=0,
                created=now,
            )
        ).inserted_primary_key
        assert key is not None
        return self.run(int(key[0]))

    def run(self, run_id: int) -> DigestRun:
        return digest_run(
            self.connection.execute(select(digest_runs).where(digest_runs.c.id == run_id)).one()
        )

    def fanned_out_through(self, run_id: int) -> tuple[int, int]:
        """(last subscriber id fanned out, subscribers skipped as empty so far)."""
        row = self.connection.execute(
            select(digest_runs.c.fanned_out_through, digest_runs.c.skipped_empty).where(
                digest_runs.c.id == run_id
            )
        ).one()
        return int(row[0]), int(row[1])

    def fan_out(
        self,
        run_id: int,
        planned: Sequence[PlannedDelivery],
        through: int,
        skipped: int,
        now: datetime,
    ) -> None:
        """Write one batch of pending rows and remember how far fan-out got."""
        if planned:
            self.connection.execute(
                insert(deliveries),
                [
                    {
                        "run_id": run_id,
                        "subscriber_id": p.subscriber_id,
                        "status": DeliveryStatus.PENDING.value,
                        "attempts": 0,
                        "message_id": p.message_id,
                        "article_ids": json.dumps(list(p.article_ids)),
                        "created": now,
                    }
                    for p in planned
                ],
            )
        self.connection.execute(
            update(digest_runs)
            .where(digest_runs.c.id == run_id)
            .values(
                fanned_out_through=through,
                skipped_empty=digest_runs.c.skipped_empty + skipped,
            )
        )

    def set_run_status(self, run_id: int, status: RunStatus, now: datetime) -> None:
        values: dict[str, Any] = {"status": status.value}
        if status is RunStatus.DONE:
            values["finished"] = now
        self.connection.execute(
            update(digest_runs).where(digest_runs.c.id == run_id).values(**values)
        )

    def counts(self, run_id: int) -> dict[str, int]:
        rows = self.connection.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.run_id == run_id)
            .group_by(deliveries.c.status)
        )
        return {str(status): int(n) for status, n in rows}

    # -- rows -------------------------------------------------------------------------

    def unfinished(
        self, run_id: int, *, after: int, limit: int, let_go_on: str | None = None
    ) -> list[tuple[Delivery, Subscriber]]:
        """Rows of the run not yet sent or failed, by id, with their subscriber.

        `let_go_on` (a warm-up day): of the pending rows only those warm-up let go that
        day; 'sending' rows always (their SMTP transaction may have happened)."""
        query = (
            select(*PAIR_COLUMNS)
            .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
            .where(
                deliveries.c.run_id == run_id,
                deliveries.c.id > after,
                deliveries.c.status.in_(OPEN),
            )
            .order_by(deliveries.c.id)
            .limit(limit)
        )
        if let_go_on is not None:
            query = query.where(
                or_(
                    deliveries.c.status == DeliveryStatus.SENDING.value,
                    deliveries.c.warmup_day == let_go_on,
                )
            )
        rows = self.connection.execute(query)
        return [delivery_and_subscriber(row) for row in rows]

    def sent_to(
        self, subscriber_ids: Sequence[int], article_ids: Iterable[str]
    ) -> dict[int, set[str]]:
        """Which of these articles each of these subscribers has already been sent."""
        candidates = list(article_ids)
        result: dict[int, set[str]] = defaultdict(set)
        if not subscriber_ids or not candidates:
            return result
        for chunk in chunks(list(subscriber_ids), 500):
            rows = self.connection.execute(
                select(sent_articles.c.subscriber_id, sent_articles.c.article_id).where(
                    sent_articles.c.subscriber_id.in_(chunk),
                    sent_articles.c.article_id.in_(candidates),
                )
            )
            for subscriber_id, article_id in rows:
                result[int(subscriber_id)].add(str(article_id))
        return result

    def sent_as_of(
        self, subscriber_ids: Sequence[int], article_ids: Iterable[str]
    ) -> dict[int, dict[str, datetime]]:
        """Which of these articles each of these subscribers was sent, each with the `as_of`
        of the run that sent it (what the message showed of it)."""
        candidates = list(article_ids)
        result: dict[int, dict[str, datetime]] = defaultdict(dict)
        if not subscriber_ids or not candidates:
            return result
        for people in chunks(list(subscriber_ids), 500):
            for ids in chunks(candidates, 500):
                rows = self.connection.execute(
                    select(
                        sent_articles.c.subscriber_id,
                        sent_articles.c.article_id,
                        digest_runs.c.as_of,
                    )
                    .join(digest_runs, digest_runs.c.id == sent_articles.c.run_id)
                    .where(
                        sent_articles.c.subscriber_id.in_(people),
                        sent_articles.c.article_id.in_(ids),
                    )
                )
                for subscriber_id, article_id, as_of in rows:
                    result[int(subscriber_id)][str(article_id)] = as_of
        return result

    def corrected_between(self, start: datetime, end: datetime) -> dict[str, datetime]:
        """Articles updated in place by an ingest in (start, end], each with the time of
        its latest such update up to `end`."""
        latest = func.max(ingest_log.c.at)
        rows = self.connection.execute(
            select(ingest_log.c.article_id, latest)
            .where(
                ingest_log.c.outcome == "updated",
                ingest_log.c.article_id.is_not(None),
                ingest_log.c.at > start,
                ingest_log.c.at <= end,
            )
            .group_by(ingest_log.c.article_id)
        )
        return {str(article_id): at for article_id, at in rows}

    def open_elsewhere(self, subscriber_ids: Sequence[int], run_id: int) -> set[int]:
        """Which of these subscribers have a row not yet sent in a run other than this one."""
        found: set[int] = set()
        for chunk in chunks(list(subscriber_ids), 500):
            rows = self.connection.execute(
                select(deliveries.c.subscriber_id).where(
                    deliveries.c.subscriber_id.in_(chunk),
                    deliveries.c.status.in_(OPEN),
                    deliveries.c.run_id != run_id,
                )
            )
            found.update(int(i) for i in rows.scalars())
        return found
