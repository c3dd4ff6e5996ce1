"""The output folder built from the five seeds in a real SQLite store, read back by feedparser."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import pytest

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import SEEDS, write_config

ATOM = "{http://www.w3.org/2005/Atom}"
SEED_TITLES = {
    "Digital management helps Harbin compete for National Civilized City Award",
    "Harbin regains ‘National Civilized City’ title",
    "Harbin to further improve people's livelihoods",
    "Harbin sets up development goals for 2022",
    "Harbin recognized as international image development city",
}
CATEGORIES = {"civilization-progress": 2, "government-bulletin": 1, "harbin-today": 2}
EVIL_ARTICLE = """Home>Security

Escaping <script>alert(1)</script> & ]]> test

Updated : 2024-07-01

By Tom & Jerry ( evil.example )

Before <script>alert(1)</script> & after ]]> end.

List <b>one</b>
line &amp; two
"""


def make_app(tmp_path: Path, **extra: str) -> Iterator[App]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", **extra)
    shutil.copytree(SEEDS, tmp_path / "inbox", dirs_exist_ok=True)
    app = App(load_settings(config, environ={}))
    yield app
    app.close()


@pytest.fixture
def built(tmp_path: Path) -> Iterator[App]:
    """Seeds ingested (which builds through the after_ingest hook), then a full build."""
    for app in make_app(tmp_path):
        app.ingest()
        app.build_feeds()
        yield app


def feeds_in(public: Path) -> list[Path]:
    site = [path for path in public.glob("*.xml") if path.name != "sitemap.xml"]  # not a feed
    return sorted([*site, *public.glob("category/*/*.xml")])


def test_layout_of_the_output_folder(built: App) -> None:
    public = built.settings.output_dir
    for name in ("atom.xml", "rss.xml", "feed.json", "index.html"):
        assert (public / name).is_file(), name
    assert not (public / "archive/1.xml").exists()  # 5 articles do not fill a page of 50
    for slug in CATEGORIES:
        for name in ("atom.xml", "rss.xml", "feed.json"):
            assert (public / "category" / slug / name).is_file()
    assert len(list((public / "articles").glob("*.html"))) == 5


def test_feedparser_reads_every_feed_without_complaint(built: App) -> None:
    public = built.settings.output_dir
    for path in feeds_in(public):
        parsed = feedparser.parse(path.read_bytes())
        assert parsed.bozo == 0, f"{path}: {parsed.get('bozo_exception')}"
        folder = path.parent.name
        expected = CATEGORIES.get(folder, 5)
        assert len(parsed.entries) == expected, path
        for entry in parsed.entries:
            assert entry.title in SEED_TITLES
            assert entry.author  # a byline, else the source
            assert entry.tags and entry.tags[0].term
            assert entry.published.endswith("+08:00") or entry.published.endswith("+0800")
            assert entry.published_parsed is not None
            assert entry.link.startswith("http://127.0.0.1:8080/articles/")
        if folder in CATEGORIES:
            assert {e.tags[0].term for e in parsed.entries} == {parsed.entries[0].tags[0].term}


def test_site_feeds_hold_the_seed_titles_authors_and_categories(built: App) -> None:
    parsed = feedparser.parse((built.settings.output_dir / "atom.xml").read_bytes())
    assert {e.title for e in parsed.entries} == SEED_TITLES
    by_title = {e.title: e for e in parsed.entries}
    digital = by_title["Digital management helps Harbin compete for National Civilized City Award"]
    assert digital.author == "Wang Wei"
    assert digital.tags[0].term == "Harbin Today"
    assert digital.published == "2017-07-11T00:00:00+08:00"
    regains = by_title["Harbin regains ‘National Civilized City’ title"]
    assert regains.author == "e.my399.com"  # no byline name: the source stands in
    # newest first
    dates = [e.published_parsed for e in parsed.entries]
    assert dates == sorted(dates, reverse=True)


def test_the_childcare_teaser_is_in_no_output(built: App) -> None:
    public = built.settings.output_dir
    for path in public.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            assert b"childcare" not in path.read_bytes(), path


def test_json_feeds_are_json_feed_1_1_with_the_same_entries(built: App) -> None:
    public = built.settings.output_dir
    atom_ids = [e.id for e in feedparser.parse((public / "atom.xml").read_bytes()).entries]
    for path in [public / "feed.json", *public.glob("category/*/feed.json")]:
        document = json.loads(path.read_bytes())
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert document["feed_url"].endswith(path.relative_to(public).as_posix())
        for item in document["items"]:
            assert {
                "id",
                "url",
                "title",
                "content_html",
                "date_published",
                "authors",
                "tags",
            } <= item.keys()
            assert datetime.fromisoformat(item["date_published"]).utcoffset() == timedelta(hours=8)
    assert [i["id"] for i in json.loads((public / "feed.json").read_bytes())["items"]] == atom_ids


def test_atom_meets_the_rfc4287_rules_a_validator_checks(built: App) -> None:
    public = built.settings.output_dir
    for path in [
        *public.glob("atom.xml"),
        *public.glob("category/*/atom.xml"),
        *public.glob("archive/*.xml"),
    ]:
        root = ElementTree.parse(path).getroot()
        assert root.tag == f"{ATOM}feed"
        for required in ("id", "title", "updated"):
            assert root.findtext(f"{ATOM}{required}"), (path, required)
        self_links = [link for link in root.findall(f"{ATOM}link") if link.get("rel") == "self"]
        assert len(self_links) == 1
        assert self_links[0].get("href", "").endswith(path.relative_to(public).as_posix())
        feed_author = root.find(f"{ATOM}author/{ATOM}name") is not None
        entries = root.findall(f"{ATOM}entry")
        ids = [e.findtext(f"{ATOM}id") for e in entries]
        assert len(ids) == len(set(ids)), f"duplicate ids in {path}"
        newest = None
        for entry in entries:
            for required in ("id", "title", "updated", "published"):
                assert entry.findtext(f"{ATOM}{required}"), (path, required)
            assert feed_author or entry.find(f"{ATOM}author/{ATOM}name") is not None
            assert entry.find(f"{ATOM}content") is not None or entry.find(f"{ATOM}link") is not None
            updated = datetime.fromisoformat(entry.findtext(f"{ATOM}updated") or "")
            assert updated.utcoffset() is not None
            newest = max(newest or updated, updated)
        if newest is not None:
            assert datetime.fromisoformat(root.findtext(f"{ATOM}updated") or "") == newest


def test_rss_has_a_unique_guid_per_item_and_rfc822_dates(built: App) -> None:
    public = built.settings.output_dir
    for path in [public / "rss.xml", *public.glob("category/*/rss.xml")]:
        channel = ElementTree.parse(path).getroot().find("channel")
        assert channel is not None
        guids = [item.findtext("guid") for item in channel.findall("item")]
        assert all(guids) and len(guids) == len(set(guids))
        for item in channel.findall("item"):
            assert item.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]
            date = item.findtext("pubDate") or ""
            assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}", date), date
            assert parsedate_to_datetime(date).utcoffset() == timedelta(hours=8)


def test_rfc5005_archives_cover_every_article_and_full_pages_stay_put(tmp_path: Path) -> None:
    for app in make_app(tmp_path, feeds="{ max_entries = 2, archive_page_size = 2 }"):
        app.ingest()
        app.build_feeds()
        public = app.settings.output_dir
        # 5 articles, 2 a page: pages 1 and 2 are archives, the fifth is only in atom.xml
        assert sorted(p.name for p in (public / "archive").glob("*.xml")) == ["1.xml", "2.xml"]
        current = feedparser.parse((public / "atom.xml").read_bytes())
        seen: list[str] = []
        links = {link["rel"]: link["href"] for link in current.feed.links}
        assert links["prev-archive"] == "http://127.0.0.1:8080/archive/2.xml"
        number: int | None = 2
        while number is not None:  # walk back the way a reader does
            parsed = feedparser.parse((public / f"archive/{number}.xml").read_bytes())
            assert parsed.bozo == 0
            seen += [e.id for e in parsed.entries]
            rels = {link["rel"]: link["href"] for link in parsed.feed.links}
            assert rels["current"] == "http://127.0.0.1:8080/atom.xml"
            prev = rels.get("prev-archive")
            number = int(prev.rsplit("/", 1)[1].removesuffix(".xml")) if prev else None
        assert len(seen) == len(set(seen)) == 4
        assert len(set(seen) | {e.id for e in current.entries}) == 5
        full_page = (public / "archive/1.xml").read_bytes()
        second_page = (public / "archive/2.xml").read_bytes()
        stat = (public / "archive/1.xml").stat()
        new = app.settings.inbox / "new.txt"
        new.write_text(EVIL_ARTICLE, encoding="utf-8")
        report = app.ingest([new])  # incremental build through after_ingest
        assert report.summary()["added"] == 1
        assert (public / "archive/1.xml").read_bytes() == full_page
        assert (public / "archive/1.xml").stat().st_mtime_ns == stat.st_mtime_ns
        assert (public / "archive/2.xml").read_bytes() == second_page
        third = feedparser.parse((public / "archive/3.xml").read_bytes())
        assert len(third.entries) == 2  # the new article filled page 3 ...
        assert not (public / "archive/4.xml").exists()  # ... and no page waits after it
        rels = {link["rel"] for link in third.feed.links}
        assert rels == {"prev-archive", "current", "self", "alternate"}


def test_escaping_holds_in_all_three_feeds_and_the_page(built: App) -> None:
    new = built.settings.inbox / "evil.txt"
    new.write_text(EVIL_ARTICLE, encoding="utf-8")
    report = built.ingest([new])
    assert report.summary()["added"] == 1, report.results
    public = built.settings.output_dir
    title = "Escaping <script>alert(1)</script> & ]]> test"
    atom_entry = feedparser.parse((public / "atom.xml").read_bytes()).entries[0]
    rss_entry = feedparser.parse((public / "rss.xml").read_bytes()).entries[0]
    for entry in (atom_entry, rss_entry):
        assert entry.title == title
        html = entry.content[0].value
        assert "<script>" not in html
        assert "Before &lt;script&gt;alert(1)&lt;/script&gt; &amp; after ]]&gt; end." in html
        assert re.search(r"List &lt;b&gt;one&lt;/b&gt;<br ?/?>line &amp;amp; two", html)
    item = json.loads((public / "feed.json").read_bytes())["items"][0]
    assert item["title"] == title
    assert (
        "Before &lt;script&gt;alert(1)&lt;/script&gt; &amp; after ]]&gt; end."
        in item["content_html"]
    )
    for name in ("atom.xml", "rss.xml", "feed.json", "index.html"):
        assert b"<script>" not in (public / name).read_bytes(), name
    page = next((public / "articles").glob("*escaping*.html")).read_text(encoding="utf-8")
    assert "<script>" not in page and "<b>one" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "line &amp;amp; two" in page  # the author's literal "&amp;" stays text


def test_an_unchanged_rebuild_writes_nothing(built: App) -> None:
    public = built.settings.output_dir
    before = {p: p.stat().st_mtime_ns for p in public.rglob("*") if p.is_file()}
    result = built.build_feeds()
    assert result.written == []
    assert {
        p: p.stat().st_mtime_ns
        for p in public.rglob("*")
        if p.is_file() and ".build" not in p.parts
    } == {p: m for p, m in before.items() if ".build" not in p.parts}
    assert not list(public.rglob("*.tmp"))


def test_incremental_build_touches_only_what_the_change_reaches(built: App) -> None:
    public = built.settings.output_dir
    untouched = public / "category/government-bulletin/atom.xml"
    mtime = untouched.stat().st_mtime_ns
    new = built.settings.inbox / "evil.txt"
    new.write_text(EVIL_ARTICLE, encoding="utf-8")
    report = built.ingest([new])
    result = built.build_feeds(report)
    assert not result.full
    assert untouched.stat().st_mtime_ns == mtime
    assert (public / "category/security/atom.xml").is_file()
    assert len(feedparser.parse((public / "atom.xml").read_bytes()).entries) == 6
    assert "security" in (public / "index.html").read_text(encoding="utf-8")


def test_a_correction_updates_the_entry_in_place(built: App) -> None:
    public = built.settings.output_dir
    original = next(SEEDS.glob("002_*")).read_text(encoding="utf-8")
    corrected = original.replace("Updated : 2021-11-12", "Updated : 2021-11-20").replace(
        "announced", "has announced", 1
    )
    assert corrected != original
    path = built.settings.inbox / "002-corrected.txt"
    path.write_text(corrected, encoding="utf-8")
    report = built.ingest([path])
    assert report.summary()["updated"] == 1, report.results
    for name in ("atom.xml", "category/civilization-progress/atom.xml"):
        parsed = feedparser.parse((public / name).read_bytes())
        titles = [e.title for e in parsed.entries]
        assert titles.count("Harbin to further improve people's livelihoods") == 1
        entry = next(e for e in parsed.entries if e.title.startswith("Harbin to further"))
        assert entry.updated.startswith("2021-11-20")
        assert "has announced" in entry.content[0].value


@pytest.mark.parametrize("emptied", [True, False])
def test_a_correction_that_moves_category_leaves_the_old_feed_at_once(
    built: App, emptied: bool
) -> None:
    """The incremental build after the correction, not the next full build, moves it."""
    public = built.settings.output_dir
    title = "Harbin sets up development goals for 2022"
    if not emptied:  # a second article keeps the old category alive
        extra = EVIL_ARTICLE.replace("Home>Security", "Home>Government bulletin")
        (built.settings.inbox / "second.txt").write_text(extra, encoding="utf-8")
        built.ingest([built.settings.inbox / "second.txt"])
    original = next(SEEDS.glob("003_*")).read_text(encoding="utf-8")
    moved = original.replace("Home>Government bulletin", "Home>Harbin Today").replace(
        "Updated : 2022-05-05", "Updated : 2022-05-09", 1
    )
    path = built.settings.inbox / "003-moved.txt"
    path.write_text(moved, encoding="utf-8")
    report = built.ingest([path])
    assert report.summary()["updated"] == 1, report.results

    def titles(folder: str) -> list[str]:
        feed = public / folder / "atom.xml"
        if not feed.exists():
            return []
        return [e.title for e in feedparser.parse(feed.read_bytes()).entries]

    assert title in titles("category/harbin-today")
    assert title not in titles("category/government-bulletin")
    # an emptied category's readers get a valid, empty feed, not a stale one or a 404
    for name in ("atom.xml", "rss.xml"):
        parsed = feedparser.parse((public / "category/government-bulletin" / name).read_bytes())
        assert parsed.bozo == 0 and parsed.feed.title == "Harbin News: Government bulletin"
    listed = json.loads((public / "category/government-bulletin/feed.json").read_bytes())
    assert [i["title"] for i in listed["items"]] == (
        [] if emptied else ["Escaping <script>alert(1)</script> & ]]> test"]
    )
    assert [t for t in titles("") if t == title] == [title]
    assert built.build_feeds().full  # and a full build keeps it so
    assert title not in titles("category/government-bulletin")
    page = (public / "articles").glob("*.html")
    assert any(title in p.read_text(encoding="utf-8") for p in page)
    index = (public / "index.html").read_text(encoding="utf-8")
    assert ("category/government-bulletin/" in index) is not emptied


def test_the_index_links_feeds_articles_and_has_the_subscribe_form(built: App) -> None:
    html = (built.settings.output_dir / "index.html").read_text(encoding="utf-8")
    for kind, href in [
        ("application/atom+xml", "atom.xml"),
        ("application/rss+xml", "rss.xml"),
        ("application/feed+json", "feed.json"),
    ]:
        assert re.search(rf'<link rel="alternate" type="{re.escape(kind)}"[^>]*href="{href}"', html)
    assert '<form class="subscribe" method="post" action="/subscribe">' in html
    assert 'name="email"' in html and 'name="name"' in html
    assert html.count('name="categories"') == 3
    for slug in CATEGORIES:
        assert f'href="category/{slug}/atom.xml"' in html
    for link in re.findall(r'href="(articles/[^"]+)"', html):
        assert (built.settings.output_dir / link).is_file()


def test_writes_are_atomic_replacements(built: App) -> None:
    """A reader holding the old file keeps reading the old bytes: the file is replaced."""
    public = built.settings.output_dir
    with (public / "atom.xml").open("rb") as handle:
        inode = (public / "atom.xml").stat().st_ino
        new = built.settings.inbox / "evil.txt"
        new.write_text(EVIL_ARTICLE, encoding="utf-8")
        built.ingest([new])
        assert (public / "atom.xml").stat().st_ino != inode
        assert b"Escaping" not in handle.read()
