"""Ingest into a real database (SQLite file, and PostgreSQL when it is up)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.model import Article
from tests.conftest import SEEDS, write_config

CHILDCARE = "Harbin ramps up childcare services"
CHILDCARE_SENTENCE = "A new comprehensive service center for childcare in Harbin"


def drop(app: App, name: str, text: str | bytes) -> Path:
    path = app.settings.inbox / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def copy_seeds(app: App, prefixes: Iterator[str] | list[str] | None = None) -> None:
    for path in sorted(SEEDS.iterdir()):
        if prefixes is None or path.name[:3] in prefixes:
            shutil.copy(path, app.settings.inbox / path.name)


def body(article: Article) -> str:
    return "\n\n".join(block.text for block in article.blocks)


def test_seeds_ingest_into_five_articles_without_the_shared_teaser(store_app: App) -> None:
    copy_seeds(store_app)
    report = store_app.ingest()
    assert report.summary()["added"] == 5
    articles = {a.source_file[:3]: a for a in store_app.articles()}
    assert len(articles) == 5
    for article in articles.values():
        assert CHILDCARE not in body(article)
        assert CHILDCARE_SENTENCE not in body(article)
    assert (articles["001"].author, articles["001"].source) == ("Wang Wei", "chinadaily.com.cn")
    assert (articles["000"].author, articles["000"].source) == (None, "e.my399.com")
    assert articles["003"].title == "Harbin sets up development goals for 2022"
    assert "Build 30 new smart libraries" in articles["003"].blocks[0].lines
    # 001's own teaser advertises an article nobody has stored: it stays
    assert "Xiangfang leads the way in smart government" in body(articles["001"])
    removed = {r.text for r in articles["000"].removed}
    assert CHILDCARE in removed and any(CHILDCARE_SENTENCE in text for text in removed)


def test_reingesting_the_same_files_changes_nothing(store_app: App) -> None:
    copy_seeds(store_app)
    store_app.ingest()
    before = [a.as_dict() for a in store_app.articles()]
    report = store_app.ingest()
    assert report.summary()["unchanged"] == 5
    assert [a.as_dict() for a in store_app.articles()] == before


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["000", "001", "002", "003", "004"]))[::29]
)
def test_one_at_a_time_in_any_order_matches_all_at_once(
    tmp_path: Path, order: tuple[str, ...]
) -> None:
    def bodies(folder: Path, batches: list[list[str]]) -> dict[str, list[str]]:
        (folder / "inbox").mkdir(parents=True)
        app = App(load_settings(write_config(folder, f"sqlite:///{folder}/db.sqlite"), environ={}))
        for batch in batches:
            copy_seeds(app, batch)
            app.ingest()
        result = {a.title: [b.text for b in a.blocks] for a in app.articles()}
        app.close()
        return result

    together = bodies(tmp_path / "together", [list(order)])
    one_by_one = bodies(tmp_path / "single", [[prefix] for prefix in order])
    assert one_by_one == together
    assert len(together) == 5


def test_exact_copy_under_another_name_adds_nothing(store_app: App) -> None:
    copy_seeds(store_app)
    store_app.ingest()
    shutil.copy(SEEDS / "002_bd7350f417640b14.txt", store_app.settings.inbox / "copy-of-002.txt")
    report = store_app.ingest()
    result = next(r for r in report.results if r.file == "copy-of-002.txt")
    assert result.outcome == "duplicate"
    assert "exact copy" in result.detail
    assert len(store_app.articles()) == 5


def test_crlf_copy_is_an_exact_duplicate(store_app: App) -> None:
    copy_seeds(store_app, ["002"])
    store_app.ingest()
    data = next(SEEDS.glob("002_*")).read_bytes().replace(b"\n", b"\r\n")
    drop(store_app, "002-windows.txt", b"\xef\xbb\xbf" + data)
    assert store_app.ingest().summary()["duplicate"] == 1


def test_republication_updates_the_same_article_in_place(store_app: App) -> None:
    copy_seeds(store_app)
    store_app.ingest()
    original = next(a for a in store_app.articles() if a.source_file.startswith("000"))
    text = next(SEEDS.glob("000_*")).read_text(encoding="utf-8")
    corrected = (
        text.replace("Updated : 2020-09-01", "Updated : 2020-09-03")
        .replace("304 days", "305 days")
        .replace("more than 20,000", "more than 21,000")
    )
    drop(store_app, "000-corrected.txt", corrected)
    report = store_app.ingest()
    assert report.summary()["updated"] == 1
    articles = store_app.articles()
    assert len(articles) == 5
    updated = next(a for a in articles if a.id == original.id)
    assert updated.updated > original.updated
    assert updated.published == original.published
    assert updated.ingested == original.ingested
    assert "305 days" in body(updated) and "304 days" not in body(updated)
    assert CHILDCARE not in body(updated)


def test_older_copy_of_a_corrected_article_does_not_roll_it_back(store_app: App) -> None:
    text = next(SEEDS.glob("000_*")).read_text(encoding="utf-8")
    drop(
        store_app,
        "new.txt",
        text.replace("2020-09-01", "2020-09-05").replace("304 days", "305 days"),
    )
    store_app.ingest()
    drop(store_app, "old.txt", text)
    assert store_app.ingest().summary()["duplicate"] == 1
    assert "305 days" in body(store_app.articles()[0])


def test_bad_files_are_quarantined_with_reasons_and_the_rest_ingest(store_app: App) -> None:
    copy_seeds(store_app)
    drop(store_app, "random.bin", bytes(range(256)) * 8)
    drop(store_app, "empty.txt", b"")
    drop(store_app, "nodate.txt", "Home>News\n\nA title\n\nJust text.\n")
    report = store_app.ingest()
    assert report.summary()["added"] == 5
    assert report.summary()["quarantined"] == 3
    quarantine = store_app.settings.quarantine
    for name, reason in [
        ("random.bin", "binary"),
        ("empty.txt", "empty"),
        ("nodate.txt", "no date"),
    ]:
        assert (quarantine / name).exists()
        assert reason in (quarantine / f"{name}.error.txt").read_text()
        assert not (store_app.settings.inbox / name).exists()
    assert (quarantine / "random.bin").read_bytes() == bytes(range(256)) * 8


def test_the_advertised_article_keeps_the_teaser_text_as_its_lede(store_app: App) -> None:
    copy_seeds(store_app)
    store_app.ingest()
    drop(
        store_app,
        "childcare.txt",
        (
            "Home>Harbin Today\n\nHarbin ramps up childcare services\n\nUpdated : 2024-07-01\n\n"
            "By ( e.my399.com )\n\nA new comprehensive service center for childcare in Harbin is "
            "expected to be finished by the end of the year.\n\nThe center will offer daycare for "
            "children under three and training for parents across all nine districts of the city.\n"
        ),
    )
    assert store_app.ingest().summary()["added"] == 1
    articles = {a.title: a for a in store_app.articles()}
    assert CHILDCARE_SENTENCE in articles[CHILDCARE].blocks[0].text
    for title, article in articles.items():
        if title != CHILDCARE:
            assert CHILDCARE_SENTENCE not in body(article)


def test_a_single_teaser_goes_once_its_article_arrives(store_app: App) -> None:
    copy_seeds(store_app, ["001"])
    store_app.ingest()
    assert "Xiangfang leads the way" in body(store_app.articles()[0])
    drop(
        store_app,
        "xiangfang.txt",
        (
            "Home>Harbin Today\n\nXiangfang leads the way in smart government\n\n"
            "Updated : 2017-08-01\n\nBy ( e.my399.com )\n\nHarbin's Xiangfang district is bringing "
            "city administration into the digital age, establishing the first WeChat city "
            "administration monitoring platform in Heilongjiang province.\n\nResidents can now report "
            "problems with a photo and follow how quickly the district answers them.\n"
        ),
    )
    store_app.ingest()
    articles = {a.source_file: a for a in store_app.articles()}
    old = next(a for name, a in articles.items() if name.startswith("001"))
    assert "Xiangfang leads the way" not in body(old)
    teaser_removals = {r.text: r.rule for r in old.removed}
    assert teaser_removals["Xiangfang leads the way in smart government"] == "teaser"
    assert "WeChat city administration" in articles["xiangfang.txt"].blocks[0].text


def test_ids_are_stable_tag_uris_and_slugs_readable(store_app: App) -> None:
    copy_seeds(store_app)
    store_app.ingest()
    article = store_app.article("2020-09-01-harbin-regains-national-civilized-city-title")
    assert (
        article.id
        == "tag:127.0.0.1,2020-09-01:2020-09-01-harbin-regains-national-civilized-city-title"
    )
    assert store_app.article(article.id).slug == article.slug


def test_digests_select_on_ingest_time_not_printed_date(store_app: App) -> None:
    copy_seeds(store_app, ["000"])
    first = datetime(2026, 1, 1, tzinfo=UTC)
    store_app.ingest(now=lambda: first)
    copy_seeds(store_app, ["004"])
    store_app.ingest(now=lambda: first + timedelta(days=3))
    with store_app.store.read() as connection:
        from publisher.store import Articles

        recent = Articles(connection).ingested_between(
            first + timedelta(days=1), first + timedelta(days=5)
        )
    assert [a.source_file[:3] for a in recent] == ["004"]
