"""A digest's size and contents stay readable whatever the articles hold: the HTML budget,
the lead headline in the subject, and the corrected articles listed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.config import DigestSettings, Settings
from publisher.digest import Correction, corrections
from publisher.messages import (
    HTML_PART_BUDGET,
    LEAD_CHARS,
    clip,
    personalize,
    prepare_digest,
    subject_line,
)
from publisher.model import Article, Block, Frequency, Subscriber, SubscriberStatus
from publisher.render import template_environment

AS_OF = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
UNSUBSCRIBE = "https://news.example.org/unsubscribe/" + "T" * 120


def _article(n: int, title: str, summary: str = "", category: str = "Harbin Today") -> Article:
    return Article(
        id=f"tag:x,2026:{n}",
        slug=f"article-{n}",
        title=title,
        category_path=(category,),
        published=AS_OF - timedelta(minutes=n),
        updated=AS_OF - timedelta(minutes=n),
        author=None,
        source=None,
        blocks=(Block(summary),),
        summary=summary,
        content_hash=str(n),
        source_file=f"{n}.txt",
        ingested=AS_OF - timedelta(minutes=n),
    )


def _settings(**digest: object) -> Settings:
    return Settings(
        secret_key="k" * 32,
        base_url="https://news.example.org/",
        digest=DigestSettings(**digest),  # type: ignore[arg-type]
    )


def _message(
    settings: Settings,
    articles: list[Article],
    corrected: list[Article] = [],  # noqa: B006 - never changed
    categories: tuple[str, ...] = (),
) -> EmailMessage:
    prepared = prepare_digest(
        template_environment(settings),
        settings,
        articles=articles,
        corrected=corrected,
        frequency="weekly",
        categories=categories,
        as_of=AS_OF,
        article_url=lambda a: settings.url(f"articles/{a.slug}.html"),
    )
    data = personalize(
        prepared,
        to_name="Ann",
        to_address="ann@example.com",
        message_id="<digest.1.1.x@news.example.org>",
        unsubscribe_url=UNSUBSCRIBE,
        unsubscribe_mail="mailto:unsubscribe@example.org?subject=unsubscribe%20T",
    )
    parsed: EmailMessage = message_from_bytes(data, policy=policy.default)  # type: ignore[assignment]
    return parsed


def _html(message: EmailMessage) -> tuple[str, int]:
    page = message.get_body(("html",))
    assert isinstance(page, EmailMessage)
    encoded = page.get_payload()
    assert isinstance(encoded, str)
    return page.get_content(), len(encoded.encode("ascii"))


@pytest.mark.parametrize("letter", ["x", "长"], ids=["ascii", "cjk"])
def test_huge_articles_and_corrections_keep_the_html_part_under_budget(letter: str) -> None:
    articles = [
        _article(n, f"{n} " + letter * 10_000, letter * 50_000, "C" * 5_000) for n in range(40)
    ]
    fixed = [_article(100 + n, f"fixed {n} " + letter * 10_000) for n in range(40)]
    categories = tuple(f"category {n} " + letter * 100 for n in range(500))
    message = _message(_settings(), articles, fixed, categories)
    html, encoded = _html(message)
    assert encoded < 100_000 and len(html.encode("utf-8")) < 100_000
    assert encoded <= HTML_PART_BUDGET + 2 * len(UNSUBSCRIBE)
    assert f'href="{UNSUBSCRIBE}"' in html and "You get this weekly digest" in html
    assert "more on the site</a>" in html
    text = message.get_body(("plain",))
    assert isinstance(text, EmailMessage) and f"Unsubscribe: {UNSUBSCRIBE}" in text.get_content()


def test_at_most_max_items_of_each_list_then_one_link_to_the_site() -> None:
    articles = [_article(n, f"New {n}", "Short.") for n in range(7)]
    fixed = [_article(100 + n, f"Fixed {n}") for n in range(5)]
    message = _message(_settings(max_items=3), articles, fixed)
    text_part = message.get_body(("plain",))
    assert isinstance(text_part, EmailMessage)
    text = text_part.get_content()
    assert [f"New {n}" in text for n in range(7)] == [True] * 3 + [False] * 4
    assert "and 4 more on the site: https://news.example.org/" in text
    assert [f"- Fixed {n}" in text for n in range(5)] == [True] * 3 + [False] * 2
    assert "and 2 more updated on the site" in text
    html, _ = _html(message)
    assert html.count('href="https://news.example.org/"') >= 2
    assert "Updated since your last digest" in html and "Fixed 2" in html


def test_the_subject_names_the_lead_and_how_many_more() -> None:
    settings = _settings()
    one = subject_line(settings, "weekly", 1, AS_OF, "Snow festival opens")
    assert one == "Harbin News weekly — Snow festival opens"
    many = subject_line(settings, "daily", 12, AS_OF, "Snow festival\r\nBcc: x@example.org")
    assert many == "Harbin News daily — Snow festival Bcc: x@example.org (+11 more)"
    long = subject_line(settings, "weekly", 2, AS_OF, "word " * 100)
    lead = long.removeprefix("Harbin News weekly — ").removesuffix(" (+1 more)")
    assert len(lead) <= LEAD_CHARS and lead.endswith("word…")
    old_style = _settings(subject="{site} {frequency} — {count} new articles, {date}")
    assert subject_line(old_style, "weekly", 2, AS_OF, "Lead") == (
        "Harbin News weekly — 2 new articles, 23 Nov 2026"
    )


@given(st.text(max_size=400), st.integers(min_value=2, max_value=300))
def test_clip_keeps_a_prefix_within_the_limit(text: str, limit: int) -> None:
    clipped = clip(text, limit)
    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text
    else:
        assert clipped.endswith("…") and text.startswith(clipped[:-1])


def _subscriber(last_digest: datetime | None) -> Subscriber:
    return Subscriber(
        id=1,
        email="a@example.com",
        name=None,
        status=SubscriberStatus.CONFIRMED,
        categories=(),
        frequency=Frequency.WEEKLY,
        timezone="UTC",
        created=AS_OF - timedelta(days=60),
        last_digest=last_digest,
    )


def test_a_correction_is_listed_in_the_one_window_it_arrived_in() -> None:
    sent_on = AS_OF - timedelta(days=14)
    article = _article(1, "Corrected")
    fix = [Correction(article, sent_on + timedelta(days=3))]
    sent = {article.id: sent_on}
    windows = [(sent_on, sent_on + timedelta(days=7)), (sent_on + timedelta(days=7), AS_OF)]
    listed = [corrections(fix, _subscriber(since), until, sent=sent) for since, until in windows]
    assert listed == [(article,), ()]


def test_only_articles_sent_before_the_correction_and_not_new_again_are_listed() -> None:
    since = AS_OF - timedelta(days=7)
    sent, fixed_before, fresh, never_sent = (_article(n, f"A{n}") for n in range(4))
    found = [
        Correction(sent, since + timedelta(days=1)),
        Correction(fixed_before, since + timedelta(days=1)),
        Correction(fresh, since + timedelta(days=2)),
        Correction(never_sent, since + timedelta(days=2)),
    ]
    was_sent = {
        sent.id: since,
        fixed_before.id: since + timedelta(days=2),  # its digest already showed the fix
        fresh.id: since - timedelta(days=1),
    }
    listed = corrections(found, _subscriber(since), AS_OF, sent=was_sent, exclude={fresh.id})
    assert listed == (sent,)


def test_corrections_newest_first_and_none_after_now() -> None:
    since = AS_OF - timedelta(days=7)
    a, b, c = (_article(n, f"A{n}") for n in range(3))
    found = [
        Correction(a, since + timedelta(days=1)),
        Correction(b, since + timedelta(days=3)),
        Correction(c, AS_OF + timedelta(seconds=1)),
    ]
    sent = {x.id: since - timedelta(days=1) for x in (a, b, c)}
    assert corrections(found, _subscriber(since), AS_OF, sent=sent) == (b, a)
