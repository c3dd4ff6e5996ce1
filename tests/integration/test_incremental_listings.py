"""Listing pages (archive/ and category/<slug>/) in incremental builds: they show the
summary the full article would (its first block no removal took) without loading bodies,
and a category change of an old article (outside the newest feeds.max_entries) reaches
every page it moves, as a full build would write them. Real SQLite, real ingest."""

from __future__ import annotations

import html
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from publisher.app import App
from publisher.config import load_settings
from publisher.model import RemovalRule
from publisher.store.schema import blocks, removals
from tests.conftest import write_config
from tests.integration.test_site_pages import PAGE, listed_slugs, slugs_of, story


def site(folder: Path, count: int, max_entries: int = 50) -> App:
    config = write_config(
        folder,
        f"sqlite:///{folder}/db.sqlite",
        feeds=f"{{ archive_page_size = {PAGE}, max_entries = {max_entries} }}",
    )
    (folder / "inbox").mkdir()
    app = App(load_settings(config, environ={}))
    paths = []
    for number in range(count):
        path = folder / "inbox" / f"story-{number:03d}.txt"
        path.write_text(story(number), encoding="utf-8")
        paths.append(path)
    assert app.ingest(paths).summary()["added"] == count
    app.build_feeds()
    return app


def listing_files(public: Path) -> dict[str, bytes]:
    found = [*public.glob("archive/*.html"), *public.glob("category/*/*.html")]
    return {str(p.relative_to(public)): p.read_bytes() for p in found}


def summaries(page: str) -> dict[str, str]:
    """slug -> the summary paragraph one listing page shows under its link."""
    found = re.findall(r'articles/([^"/]+)\.html">.*?</div>\s*(?:<p>(.*?)</p>)?', page, re.S)
    return {slug: html.unescape(text) for slug, text in found}


def test_a_listing_shows_the_summary_of_the_first_block_left_after_removals(
    tmp_path: Path,
) -> None:
    app = site(tmp_path, 30)
    try:
        target = next(a for a in app.articles() if a.category == "Economy")
        with app.store.begin() as connection:
            number = target.title.split(":")[0].removeprefix("Story ")
            key = connection.execute(
                select(blocks.c.key).where(
                    blocks.c.position == 0, blocks.c.text.contains(f"(story {number} part 0)")
                )
            ).scalar_one()
            connection.execute(
                insert(removals).values(
                    article_id=target.id,
                    key=key,
                    text="x",
                    rule=RemovalRule.SHARED.value,
                    reason="test",
                    decided=datetime.now(UTC),
                )
            )
        app.build_feeds()
        stored = next(a for a in app.articles() if a.id == target.id)
        assert "part 1)" in stored.summary  # the first paragraph is gone from the body
        public = app.settings.output_dir
        for name in ("archive/index.html", "category/economy/index.html"):
            shown = summaries((public / name).read_text(encoding="utf-8"))
            assert shown[target.slug] == stored.summary
            for article in app.articles():
                if article.slug in shown:
                    assert shown[article.slug] == article.summary
    finally:
        app.close()


@pytest.mark.parametrize(
    "count",
    [
        60,  # Economy: 15 articles on 2 pages, then 14; Culture & Arts 15, then 16
        44,  # Economy: 11 articles, then 10: its page 2 goes
    ],
)
def test_an_old_article_moved_to_another_category_moves_on_every_page_incrementally(
    tmp_path: Path, count: int
) -> None:
    # story 2 is Economy's oldest, far outside its newest 3 (the feeds' max_entries)
    app = site(tmp_path, count, max_entries=3)
    try:
        public = app.settings.output_dir
        moved = next(a for a in app.articles() if a.source_file.endswith("story-002.txt"))
        assert moved.category == "Economy"
        economy_feed = (public / "category/economy/atom.xml").read_text(encoding="utf-8")
        assert moved.id not in economy_feed
        path = app.settings.inbox / "story-002.txt"
        corrected = story(2).replace("Home>Economy", "Home>Culture & Arts")
        path.write_text(corrected.replace("part 0)", "part 0, corrected)"), "utf-8")
        report = app.ingest([path])
        assert report.summary()["updated"] == 1
        assert not app.build_feeds(report).full  # what the watcher does per change
        economy = {slug for slug, category in slugs_of(app).items() if category == "Economy"}
        culture = {slug for slug, category in slugs_of(app).items() if category == "Culture & Arts"}
        assert moved.slug in culture
        assert sorted(listed_slugs(public, "category/economy/")) == sorted(economy)
        assert sorted(listed_slugs(public, "category/culture-arts/")) == sorted(culture)
        incremental = listing_files(public)
        # a full build from nothing writes the same pages
        shutil.rmtree(public)
        assert app.build_feeds().full
        assert listing_files(public) == incremental
    finally:
        app.close()


def test_a_database_without_the_listing_index_gains_it_on_open(tmp_path: Path) -> None:
    app = site(tmp_path, 3)
    with app.store.begin() as connection:
        connection.execute(text("DROP INDEX ix_articles_category_seq"))
    app.close()
    again = App(app.settings)
    try:
        names = {index["name"] for index in inspect(again.store.engine).get_indexes("articles")}
        assert "ix_articles_category_seq" in names
        assert len(again.articles()) == 3
    finally:
        again.close()
