"""Who gets what: pure digest selection. Values in, values out; the clock is passed as `now`.

"New" means newly known to the publisher (`Article.ingested`), never the date printed in
the file: an editor may drop in an article dated last year today, and it is news to readers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from publisher.model import Article, Frequency, Subscriber

__all__ = ["PERIODS", "Digest", "select", "window_start"]

PERIODS: dict[Frequency, timedelta] = {
    Frequency.WEEKLY: timedelta(days=7),
    Frequency.DAILY: timedelta(days=1),
}


@dataclass(frozen=True, slots=True)
class Digest:
    """The articles one subscriber gets at `until`, newest first; empty means no mail."""

    subscriber_id: int
    frequency: Frequency
    since: datetime
    until: datetime
    articles: tuple[Article, ...]

    @property
    def empty(self) -> bool:
        return not self.articles

    @property
    def article_ids(self) -> tuple[str, ...]:
        return tuple(a.id for a in self.articles)


def window_start(subscriber: Subscriber, now: datetime) -> datetime:
    """After the last successful digest; for a first digest, the last period before `now`."""
    if subscriber.last_digest is not None:
        return subscriber.last_digest
    return now - PERIODS[subscriber.frequency]


def select(
    articles: Iterable[Article],
    subscriber: Subscriber,
    now: datetime,
    *,
    already_sent: Collection[str] = (),
) -> Digest:
    """The digest for `subscriber` at `now`.

    Articles first ingested in (window start, now], in the subscriber's categories (none
    chosen: all), newest first, minus every article id already sent to them — a corrected
    re-publication keeps its id, so it is never sent twice.
    """
    since = window_start(subscriber, now)
    wanted = set(subscriber.categories)
    chosen = [
        a
        for a in articles
        if since < a.ingested <= now
        and (not wanted or a.category in wanted)
        and a.id not in already_sent
    ]
    chosen.sort(key=lambda a: (a.ingested, a.published, a.id), reverse=True)
    return Digest(
        subscriber_id=subscriber.id,
        frequency=subscriber.frequency,
        since=since,
        until=now,
        articles=tuple(chosen),
    )
