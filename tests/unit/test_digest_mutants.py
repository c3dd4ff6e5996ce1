"""What a Digest records besides its articles: who it is for, how often, and its window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from publisher.digest import Digest, select, window_start
from publisher.model import Frequency
from tests.unit.test_digest import NOW, article, subscriber


def test_a_digest_names_its_subscriber_frequency_and_window() -> None:
    last = NOW - timedelta(days=2)
    reader = subscriber(id=42, frequency=Frequency.DAILY, last_digest=last)
    digest = select([article(1, NOW - timedelta(hours=1))], reader, NOW)
    assert digest == Digest(
        subscriber_id=42,
        frequency=Frequency.DAILY,
        since=last,
        until=NOW,
        articles=digest.articles,
    )
    assert digest.article_ids == ("tag:x,2020:1",)
    assert not digest.empty


def test_a_first_digest_looks_back_one_period_of_its_frequency() -> None:
    assert window_start(subscriber(frequency=Frequency.DAILY), NOW) == NOW - timedelta(days=1)
    assert window_start(subscriber(frequency=Frequency.WEEKLY), NOW) == NOW - timedelta(days=7)
    digest = select([], subscriber(frequency=Frequency.WEEKLY), NOW)
    assert (digest.since, digest.until) == (NOW - timedelta(days=7), NOW)
    assert digest.empty and digest.article_ids == ()


def test_the_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    since = datetime(2026, 11, 20, tzinfo=UTC)
    reader = subscriber(last_digest=since)
    on_start = article(1, since)
    on_end = article(2, NOW)
    after = article(3, NOW + timedelta(microseconds=1))
    assert select([on_start, on_end, after], reader, NOW).article_ids == ("tag:x,2020:2",)
