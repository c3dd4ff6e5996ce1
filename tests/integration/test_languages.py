"""Language: headers and non-Latin titles, from real files to pages, feeds and HTTP."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

import feedparser
import httpx
import pytest
from sqlalchemy import inspect, select, text

from publisher.app import App
from publisher.config import load_settings
from publisher.store.schema import SCHEMA_VERSION, schema_version
from tests.conftest import SEEDS, write_config
from tests.integration.test_web import run_server

ATOM = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ICE = "哈尔滨冰雪大世界开园"
SNOW = "哈尔滨举办国际雪雕比赛"
CATEGORY = "哈尔滨新闻"


def chinese(title: str, body: str, language: str = "zh") -> str:
    return (
        f"Home>{CATEGORY}\n\n{title}\n\nUpdated : 2026-12-02\n\nBy 李娜 ( chinadaily.com.cn )\n"
        f"Language: {language}\n\n{body}\n\n{body}再次报道。\n"
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    made = App(load_settings(config, environ={}))
    made.ingest()
    inbox = made.settings.inbox
    (inbox / "ice.txt").write_text(chinese(ICE, "冰雪大世界今天正式开园，游客众多。"), "utf-8")
    (inbox / "snow.txt").write_text(chinese(SNOW, "来自十个国家的队伍参加了雪雕比赛。"), "utf-8")
    report = made.ingest([inbox / "ice.txt", inbox / "snow.txt"])
    assert report.summary()["added"] == 2, report.results
    yield made
    made.close()


def by_title(app: App, title: str) -> dict[str, object]:
    return next(a.as_dict(body=False) for a in app.articles() if a.title == title)


def test_a_chinese_title_gets_a_readable_slug_of_its_own(app: App) -> None:
    ice, snow = by_title(app, ICE), by_title(app, SNOW)
    assert ice["slug"] == f"2026-12-02-{ICE}"
    assert snow["slug"] == f"2026-12-02-{SNOW}"
    assert ice["language"] == "zh"
    public = app.settings.output_dir
    page = (public / "articles" / f"2026-12-02-{ICE}.html").read_text("utf-8")
    assert '<html lang="zh">' in page
    assert f'href="../category/{quote(CATEGORY)}/atom.xml"' in page
    assert (public / "category" / CATEGORY / "atom.xml").is_file()
    index = (public / "index.html").read_text("utf-8")
    assert f'href="articles/{quote(f"2026-12-02-{ICE}")}.html"' in index
    assert f'href="category/{quote(CATEGORY)}/atom.xml"' in index
    seed_page = next((public / "articles").glob("*harbin-regains*.html")).read_text("utf-8")
    assert '<html lang="en">' in seed_page


def test_feeds_print_percent_encoded_links_and_each_entrys_language(app: App) -> None:
    public = app.settings.output_dir
    url = f"http://127.0.0.1:8080/articles/{quote(f'2026-12-02-{ICE}')}.html"
    site = feedparser.parse((public / "atom.xml").read_bytes())
    assert site.bozo == 0
    entry = next(e for e in site.entries if e.title == ICE)
    assert entry.link == url
    root = ElementTree.parse(public / "atom.xml").getroot()
    assert root.get(XML_LANG) == "en"  # mixed languages: the site's
    languages = {e.findtext(f"{ATOM}title"): e.get(XML_LANG) for e in root.findall(f"{ATOM}entry")}
    assert languages[ICE] == languages[SNOW] == "zh"
    assert entry.title_detail.language == "zh"  # what a reader sees
    site_json = json.loads((public / "feed.json").read_bytes())
    assert site_json["language"] == "en"
    items = {item["title"]: item for item in site_json["items"]}
    assert items[ICE]["language"] == "zh" and items[ICE]["url"] == url
    assert "language" not in next(i for t, i in items.items() if t not in (ICE, SNOW))

    folder = public / "category" / CATEGORY
    category = ElementTree.parse(folder / "atom.xml").getroot()
    assert category.get(XML_LANG) == "zh"  # every entry shares one
    rss = ElementTree.parse(folder / "rss.xml").getroot()
    assert rss.findtext("channel/language") == "zh"
    assert ElementTree.parse(public / "rss.xml").getroot().findtext("channel/language") == "en"
    category_json = json.loads((folder / "feed.json").read_bytes())
    assert category_json["language"] == "zh"
    assert all("language" not in item for item in category_json["items"])


def test_a_digest_links_the_percent_encoded_page(app: App, tmp_path: Path) -> None:
    app.add_subscriber("reader@example.org", name="Reader")
    app.send_digests(dry_run=True, out_dir=tmp_path / "preview")
    mail = message_from_bytes((tmp_path / "preview" / "reader@example.org.eml").read_bytes())
    parts = [part.get_payload(decode=True).decode() for part in mail.walk() if part.get_content_maintype() == "text"]  # fmt: skip
    url = f"http://127.0.0.1:8080/articles/{quote(f'2026-12-02-{ICE}')}.html"
    assert parts and all(url in part for part in parts)


def test_publisher_serves_the_page_at_its_percent_encoded_url(app: App) -> None:
    for base, _ in run_server(app):
        response = httpx.get(f"{base}articles/{quote(f'2026-12-02-{ICE}')}.html")
        assert response.status_code == 200
        assert '<html lang="zh">' in response.text and ICE in response.text
        feed = httpx.get(f"{base}category/{quote(CATEGORY)}/atom.xml")
        assert feed.status_code == 200 and feedparser.parse(feed.content).entries


def test_a_bad_language_tag_is_ignored_with_a_warning(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    path = app.settings.inbox / "bad.txt"
    path.write_text(chinese("松花江冬捕节开幕", "松花江上举行传统冬捕活动。", "zh_CN!"), "utf-8")
    with caplog.at_level(logging.WARNING):
        report = app.ingest([path])
    assert report.summary()["added"] == 1  # not quarantined
    assert by_title(app, "松花江冬捕节开幕")["language"] is None
    assert any("zh_CN!" in r.getMessage() and "bad.txt" in r.getMessage() for r in caplog.records)
    page = (app.settings.output_dir / "articles" / "2026-12-02-松花江冬捕节开幕.html").read_text()
    assert '<html lang="en">' in page


def test_a_schema_4_database_keeps_everything_and_gains_languages(store_app: App) -> None:
    for seed in sorted(SEEDS.iterdir()):
        shutil.copy(seed, store_app.settings.inbox / seed.name)
    store_app.ingest()
    store_app.add_subscriber("reader@example.org", name="Reader")
    before = [a.as_dict() for a in store_app.articles()]
    subscribers = [s.email for s in store_app.subscribers()]
    with store_app.store.begin() as connection:  # the database the previous release made
        connection.execute(text("ALTER TABLE articles DROP COLUMN language"))
        connection.execute(text("UPDATE schema_version SET version = 4"))
    store_app.close()

    upgraded = App(store_app.settings)
    try:
        assert [a.as_dict() for a in upgraded.articles()] == before
        assert [s.email for s in upgraded.subscribers()] == subscribers
        columns = {c["name"] for c in inspect(upgraded.store.engine).get_columns("articles")}
        assert "language" in columns
        with upgraded.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert max(versions) == SCHEMA_VERSION
        path = upgraded.settings.inbox / "ice.txt"
        path.write_text(chinese(ICE, "冰雪大世界今天正式开园，游客众多。", "zh-hant-tw"), "utf-8")
        assert upgraded.ingest([path]).summary()["added"] == 1
        assert by_title(upgraded, ICE)["language"] == "zh-Hant-TW"
    finally:
        upgraded.close()


def test_adding_a_language_line_to_a_published_file_updates_its_article(app: App) -> None:
    path = next(app.settings.inbox.glob("000_*.txt"))
    lines = path.read_text("utf-8").split("\n")
    byline = next(i for i, line in enumerate(lines) if line.startswith("By"))
    lines.insert(byline + 1, "Language: en-gb")
    path.write_text("\n".join(lines), "utf-8")
    report = app.ingest([path])
    assert report.summary()["updated"] == 1, report.results
    article = app.article(report.results[0].article_id or "")
    assert article.language == "en-GB"
    page = (app.settings.output_dir / "articles" / f"{article.slug}.html").read_text("utf-8")
    assert '<html lang="en-GB">' in page
