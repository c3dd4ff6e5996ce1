"""A title or teaser headline of any length is that article's business: PostgreSQL's
btree refuses index rows over 2,704 bytes, so an index key made from a 1,000-character
Chinese title (3,000 bytes) used to fail the whole ingest batch."""

from __future__ import annotations

from publisher.app import App
from publisher.dedup.rules import title_key

# 1,000 characters, 3,000 bytes of UTF-8 that do not compress (PostgreSQL compresses an
# index row before it measures it)
LONG = "".join(chr(0x4E00 + n * 7919 % 20000) for n in range(1000))


def _article(title: str, teaser_headline: str) -> str:
    return (
        f"Home>Harbin Today\n\n{title}\n\nUpdated : 2026-11-30\n\nBy ( e.my399.com )\n\n"
        "The ice festival opened on Monday with sculptures from twelve countries.\n\n"
        f"{teaser_headline}\nA new comprehensive service center opened in Daoli district.\n"
    )


def test_a_huge_title_and_teaser_headline_do_not_fail_the_batch(store_app: App) -> None:
    inbox = store_app.settings.inbox
    (inbox / "long.txt").write_text(_article(LONG, LONG + "。"), encoding="utf-8")
    (inbox / "plain.txt").write_text(
        _article("Harbin opens its ice festival", "Harbin ramps up childcare services"),
        encoding="utf-8",
    )
    report = store_app.ingest()
    assert sorted(r.outcome for r in report.results) == ["added", "added"]
    assert {a.title for a in store_app.articles()} == {LONG, "Harbin opens its ice festival"}


def test_a_long_key_still_tells_titles_apart_and_matches_its_own_title() -> None:
    assert title_key(LONG) == title_key(LONG.upper())
    assert title_key(LONG) != title_key(LONG[:-1] + "界")
    assert len(title_key(LONG).encode("utf-8")) < 1000
    assert title_key("Harbin ramps up  childcare services") == "harbin ramps up childcare services"
