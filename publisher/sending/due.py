"""Who is due a digest, and with what: pages of confirmed subscribers and their selections."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from publisher import digest as selection
from publisher.model import Article, Frequency, Subscriber, SubscriberStatus
from publisher.store import Articles, Store
from publisher.store.runs import DigestRuns
from publisher.store.subscribers import Subscribers

__all__ = ["PAGE", "DuePage", "candidates", "due_pages"]

PAGE = 1000  # subscribers per fan-out transaction and rows per delivery page

DuePage = list[tuple[Subscriber, selection.Digest]]


def candidates(store: Store, frequency: Frequency | None, as_of: datetime) -> list[Article]:
    """Every article some due subscriber's window can hold (articles are few)."""
    with store.read() as connection:
        oldest, never = Subscribers(connection).earliest_window(frequency)
        starts = [oldest] if oldest is not None else []
        if never:
            periods = [selection.PERIODS[frequency]] if frequency else selection.PERIODS.values()
            starts.append(as_of - max(periods))
        if not starts:
            return []
        return Articles(connection).ingested_between(min(starts), as_of)


def due_pages(
    store: Store,
    frequency: Frequency | None,
    as_of: datetime,
    articles: Sequence[Article],
    *,
    after: int = 0,
    run_id: int | None = None,
    paused: list[Subscriber] | None = None,
) -> Iterator[tuple[DuePage, int]]:
    """(page of (subscriber, digest), last subscriber id read) for the confirmed subscribers
    after id `after`; a digest may be empty (nothing new).

    A subscriber whose pause lasts past `as_of` is left out (added to `paused` if given):
    their window is not moved, so the digest after the pause covers what it missed.

    With `run_id`, subscribers with an open row in another run are left out: that row
    goes out first, and one message at a time is all anyone gets.
    """
    cache: dict[tuple[Any, ...], selection.Digest] = {}
    ids = [a.id for a in articles]
    while True:
        with store.read() as connection:
            page = Subscribers(connection).page(
                after=after, limit=PAGE, status=SubscriberStatus.CONFIRMED, frequency=frequency
            )
            runs = DigestRuns(connection)
            people = [s.id for s in page]
            sent = runs.sent_to(people, ids)
            busy = runs.open_elsewhere(people, run_id) if run_id else set()
        if not page:
            return
        chosen: DuePage = []
        for s in page:
            if s.id in busy:
                continue
            if s.paused_until is not None and s.paused_until > as_of:
                if paused is not None:
                    paused.append(s)
                continue
            already = sent.get(s.id)
            if already:
                found = selection.select(articles, s, as_of, already_sent=already)
            else:
                key = (selection.window_start(s, as_of), s.categories, s.frequency)
                found = cache.get(key) or cache.setdefault(
                    key, selection.select(articles, s, as_of)
                )
            chosen.append((s, found))
        yield chosen, page[-1].id
        after = page[-1].id
        if len(cache) > 10_000:
            cache.clear()
