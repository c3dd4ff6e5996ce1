"""Digest selection: windows on first-ingested time, categories, newest first, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from publisher.digest import select
from publisher.model import Article, Frequency, Subscriber, SubscriberStatus

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def article(n: int, ingested: datetime, category: str = "Harbin Today", **kw: object) -> Article:
    values: dict[str, object] = dict(
        id=f"tag:x,2020:{n}",
        slug=f"a-{n}",
        title=f"Article {n}",
        category_path=(category,),
        published=datetime(2019, 1, 1, tzinfo=UTC),  # printed long ago: irrelevant
        updated=datetime(2019, 1, 1, tzinfo=UTC),
        author=None,
        source=None,
        blocks=(),
        summary="",
        content_hash=str(n),
        source_file=f"{n}.txt",
        ingested=ingested,
    )
    values.update(kw)
    return Article(**values)  # type: ignore[arg-type]


def subscriber(**kw: object) -> Subscriber:
    values: dict[str, object] = dict(
        id=1,
        email="a@example.com",
        name=None,
        status=SubscriberStatus.CONFIRMED,
        categories=(),
        frequency=Frequency.WEEKLY,
        timezone="UTC",
        created=NOW - timedelta(days=30),
    )
    values.update(kw)
    return Subscriber(**values)  # type: ignore[arg-type]


def test_first_weekly_digest_takes_the_last_seven_days_by_ingest_time() -> None:
    old = article(1, NOW - timedelta(days=8))
    recent = article(2, NOW - timedelta(days=6))
    future = article(3, NOW + timedelta(minutes=1))
    digest = select([old, recent, future], subscriber(), NOW)
    assert digest.article_ids == (recent.id,)


def test_first_daily_digest_takes_the_last_day() -> None:
    items = [article(1, NOW - timedelta(hours=30)), article(2, NOW - timedelta(hours=2))]
    digest = select(items, subscriber(frequency=Frequency.DAILY), NOW)
    assert digest.article_ids == (items[1].id,)


def test_after_a_digest_only_what_was_ingested_since() -> None:
    last = NOW - timedelta(days=2)
    items = [
        article(1, last - timedelta(seconds=1)),
        article(2, last),
        article(3, last + timedelta(seconds=1)),
    ]
    digest = select(items, subscriber(last_digest=last), NOW)
    assert digest.article_ids == (items[2].id,)


def test_an_old_printed_date_ingested_today_is_new() -> None:
    printed_last_year = article(
        1, NOW - timedelta(hours=1), published=datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert not select([printed_last_year], subscriber(), NOW).empty


def test_categories_filter_and_newest_first() -> None:
    a = article(1, NOW - timedelta(hours=3), "Harbin Today")
    b = article(2, NOW - timedelta(hours=2), "Government bulletin")
    c = article(3, NOW - timedelta(hours=1), "Harbin Today")
    digest = select([a, b, c], subscriber(categories=("Harbin Today",)), NOW)
    assert digest.article_ids == (c.id, a.id)
    assert select([a, b, c], subscriber(), NOW).article_ids == (c.id, b.id, a.id)


def test_an_article_already_sent_is_never_sent_again() -> None:
    corrected = article(1, NOW - timedelta(hours=1))  # a re-publication keeps its id
    digest = select([corrected], subscriber(), NOW, already_sent={corrected.id})
    assert digest.empty


@given(
    st.lists(st.integers(min_value=-20 * 24, max_value=2), max_size=30),
    st.sampled_from([Frequency.WEEKLY, Frequency.DAILY]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=20 * 24)),
)
def test_selection_is_exactly_the_window(
    hours: list[int], frequency: Frequency, last_hours_ago: int | None
) -> None:
    items = [article(i, NOW + timedelta(hours=h)) for i, h in enumerate(hours)]
    last = None if last_hours_ago is None else NOW - timedelta(hours=last_hours_ago)
    who = subscriber(frequency=frequency, last_digest=last)
    digest = select(items, who, NOW)
    since = (
        last
        if last is not None
        else NOW - timedelta(days=7 if frequency is Frequency.WEEKLY else 1)
    )
    assert {a.id for a in digest.articles} == {a.id for a in items if since < a.ingested <= NOW}
    assert [a.ingested for a in digest.articles] == sorted(
        (a.ingested for a in digest.articles), reverse=True
    )
