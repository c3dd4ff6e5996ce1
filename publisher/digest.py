"""Who gets what: pure digest selection. Values in, values out; the clock is passed as `now`.

"New" means newly known to the publisher (`Article.ingested`), never the date printed in
the file: an editor may drop in an article dated last year today, and it is news to readers.
"Corrected" likewise means a correction newly known (when it was ingested), not a date the
file prints: a file dated next week is not a correction, and a re-publication that prints
an earlier date than the digest that carried the article still is one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from publisher.model import Article, Frequency, Subscriber

__all__ = ["PERIODS", "Correction", "Digest", "corrections", "select", "window_start"]

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
    # stored in the site's spelling; a row kept from before that still matches ignoring case
    wanted = {c.casefold() for c in subscriber.categories}
    chosen = [
        a
        for a in articles
        if since < a.ingested <= now
        and (not wanted or a.category.casefold() in wanted)
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


@dataclass(frozen=True, slots=True)
class Correction:
    """A stored article and when its latest correction (an in-place update) was ingested."""

    article: Article
    at: datetime


def corrections(
    corrected: Iterable[Correction],
    subscriber: Subscriber,
    now: datetime,
    *,
    sent: Mapping[str, datetime],
    exclude: Collection[str] = (),
) -> tuple[Article, ...]:
    """What the "updated since your last digest" section of `subscriber`'s digest at `now`
    lists, newest correction first.

    `sent` maps the ids of the articles already sent to them to the `as_of` of the run that
    sent each. An article is listed when it was corrected after that run and within this
    digest's window (window start, now]: the next digest's window starts where this one
    ends, so each correction is listed once. `exclude` (this digest's new articles) wins.
    """
    since = window_start(subscriber, now)
    chosen = [
        c
        for c in corrected
        if c.article.id in sent
        and c.article.id not in exclude
        and since < c.at <= now
        and c.at > sent[c.article.id]
    ]
    chosen.sort(key=lambda c: (c.at, c.article.id), reverse=True)
    return tuple(c.article for c in chosen)
