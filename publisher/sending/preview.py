"""The dry run: the same due selection and the same producer as a send, written to files.

Every due digest becomes DIR/<email>.eml, with DIR/index.html listing them; nothing is
sent and nothing is recorded (the rows are made up in memory, never written). The files'
links are inert preview links (tokens.PREVIEW): opening one changes nothing.

Under warm-up only today's share is written: the rows a send would let go today, oldest
subscription first, as `WarmupDays.admit` chooses them; the report counts the rest.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from publisher.digest import select
from publisher.messages import date_header, digest_message_id
from publisher.model import (
    Article,
    Delivery,
    DeliveryStatus,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from publisher.render import render
from publisher.sending.due import candidates, due_pages
from publisher.sending.produce import DigestProducer, Page
from publisher.sending.reports import (
    SKIP_NO_CATEGORY,
    SKIP_NOTHING_NEW,
    SKIP_PAUSED,
    SKIP_SUPPRESSED,
    DigestReport,
    Preview,
)
from publisher.sending.warmup import WarmupGate
from publisher.store import Store
from publisher.store.subscribers import Subscribers
from publisher.subscribers import is_suppressed
from publisher.warmup import WarmupForecast

__all__ = ["DigestPreview"]


class DigestPreview:
    """Writes what a send would send now; one per dry run."""

    def __init__(self, producer: DigestProducer) -> None:
        self.producer = producer
        self.settings = producer.settings

    async def write(
        self, frequency: Frequency | None, as_of: datetime, out_dir: Path
    ) -> DigestReport:
        report = DigestReport(dry_run=True, as_of=as_of)
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        store = self.producer.store
        articles = await asyncio.to_thread(candidates, store, frequency, as_of)
        pages = self._pages(frequency, as_of, articles, report)
        room = await asyncio.to_thread(WarmupGate(self.settings).room_today, store, as_of)
        if room is not None:
            pages = _todays_share(pages, room, report)
        by_id = {a.id: a for a in articles}
        report.skipped.extend(
            (email, SKIP_SUPPRESSED)
            for email in await asyncio.to_thread(_suppressed, store, frequency)
        )
        produced_all = self.producer.produce(pages, as_of, report, by_id, preview=True)
        async for produced in produced_all:
            item, prepared = produced.outgoing, produced.prepared
            path = out_dir / f"{file_name(item.recipient)}.eml"
            data = date_header(as_of) + item.message  # as a send at `as_of` would date it
            await asyncio.to_thread(path.write_bytes, data)
            report.previews.append(
                Preview(item.recipient, prepared.count, prepared.subject, len(data), path)
            )
        index = render(
            self.producer.environment,
            "preview_index.html.j2",
            previews=report.previews,
            as_of=as_of.astimezone(self.settings.zone),
            skipped_empty=report.skipped_empty,
        )
        await asyncio.to_thread((out_dir / "index.html").write_text, index, encoding="utf-8")
        return report

    async def _pages(
        self,
        frequency: Frequency | None,
        as_of: datetime,
        articles: Sequence[Article],
        report: DigestReport,
    ) -> AsyncIterator[Page]:
        """Who is due, as rows that exist only here."""
        paused: list[Subscriber] = []
        pages = due_pages(self.producer.store, frequency, as_of, articles, paused=paused)
        host = self.settings.host
        while (found := await asyncio.to_thread(next, pages, None)) is not None:
            rows: Page = []
            report.skipped_paused += len(paused)
            report.skipped.extend((s.email, SKIP_PAUSED) for s in paused)
            paused.clear()
            for subscriber, digest in found[0]:
                if digest.empty:
                    report.skipped_empty += 1
                    report.skipped.append(
                        (subscriber.email, _why_empty(subscriber, as_of, articles))
                    )
                    continue
                row = Delivery(
                    id=subscriber.id,
                    run_id=0,
                    subscriber_id=subscriber.id,
                    message_id=digest_message_id("preview", subscriber.id, host),
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    article_ids=digest.article_ids,
                )
                rows.append((row, subscriber))
            yield rows


WARMUP_PAGE = 500  # rows of today's share handed to the producer at once


def _first_to_go(row: tuple[Delivery, Subscriber]) -> tuple[datetime, int]:
    """The order `WarmupDays.admit` lets rows go in: oldest subscription first."""
    subscriber = row[1]
    return (subscriber.confirmed or subscriber.created, subscriber.id)


async def _todays_share(
    pages: AsyncIterator[Page], room: tuple[int, int], report: DigestReport
) -> AsyncIterator[Page]:
    """Only the rows warm-up would let go today; memory stays within twice today's room."""
    day, left = room
    kept: list[tuple[Delivery, Subscriber]] = []
    total = 0
    async for page in pages:
        total += len(page)
        kept.extend(page)
        if len(kept) > 2 * left:
            kept = sorted(kept, key=_first_to_go)[:left]
    kept = sorted(kept, key=_first_to_go)[:left]
    report.forecast = WarmupForecast(day, len(kept), total - len(kept))
    kept.sort(key=lambda row: row[0].id)
    for start in range(0, len(kept), WARMUP_PAGE):
        yield kept[start : start + WARMUP_PAGE]


def _why_empty(subscriber: Subscriber, as_of: datetime, articles: Sequence[Article]) -> str:
    """An empty digest: were there new articles, only none in its categories?"""
    if subscriber.categories:
        anything = select(articles, replace(subscriber, categories=()), as_of)
        if not anything.empty:
            return SKIP_NO_CATEGORY
    return SKIP_NOTHING_NEW


def _suppressed(store: Store, frequency: Frequency | None) -> list[str]:
    """The addresses a send never mails because they left (or bounced, or complained)."""
    found: list[str] = []
    with store.read() as connection:
        people = Subscribers(connection)
        for status in SubscriberStatus:
            if not is_suppressed(status):
                continue
            after = 0
            while page := people.page(after=after, limit=1000, status=status, frequency=frequency):
                found.extend(s.email for s in page)
                after = page[-1].id
    return found


def file_name(email: str) -> str:
    """An address as a safe file name (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9@._+-]", "_", email).lstrip(".") or "recipient"
