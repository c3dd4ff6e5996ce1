"""The HTML site of a 132-article newsroom: category pages, the paged archive, sharing
metadata, robots.txt and sitemap, readable feeds, JSON Feed paging; over a served site."""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
from collections import deque
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit
from xml.etree import ElementTree

import feedparser
import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import SEEDS, write_config
from tests.integration.test_web import run_server

PAGE = 10
TOTAL = 132
TOPICS = ["Harbin Today", "Culture & Arts", "Economy", 'Sport "live" & <more']
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
WORDS = [
    "harbor",
    "council",
    "river",
    "budget",
    "school",
    "winter",
    "bridge",
    "market",
    "museum",
    "railway",
    "forest",
    "clinic",
    "theatre",
    "library",
    "festival",
    "tram",
    "ferry",
    "garden",
    "orchard",
    "factory",
    "airport",
    "stadium",
    "harvest",
    "canal",
    "tower",
    "square",
    "opera",
    "bakery",
    "college",
    "hospital",
]


def story(number: int) -> str:
    rng = random.Random(number)
    paragraphs = [
        " ".join(rng.choices(WORDS, k=25)) + f" (story {number} part {part})." for part in range(3)
    ]
    day = 1 + number % 28
    month = 1 + number % 12
    return (
        f"Home>{TOPICS[number % len(TOPICS)]}\n\n"
        f"Story {number}: {rng.choice(WORDS)} {rng.choice(WORDS)} news\n\n"
        f"Updated : 2024-{month:02d}-{day:02d}\n\nBy Desk ( Wire )\n\n"
        + "\n\n".join(paragraphs)
        + "\n"
    )


def make_site(folder: Path, count: int = TOTAL) -> App:
    config = write_config(
        folder, f"sqlite:///{folder}/db.sqlite", feeds=f"{{ archive_page_size = {PAGE} }}"
    )
    (folder / "inbox").mkdir()
    app = App(load_settings(config, environ={}))
    paths = []
    for number in range(count):
        path = folder / "inbox" / f"story-{number:03d}.txt"
        path.write_text(story(number), encoding="utf-8")
        paths.append(path)
    report = app.ingest(paths)
    assert report.summary()["added"] == count, report.results
    app.build_feeds()
    return app


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    app = make_site(tmp_path_factory.mktemp("site"))
    yield app
    app.close()


class Page(HTMLParser):
    """Links, h1 texts and the head's meta/link tags of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.h1: list[str] = []
        self.meta: dict[str, str] = {}
        self.rel: dict[str, str] = {}
        self.listed: list[str] = []  # article links inside <ol class="articles">
        self._in_h1 = False
        self._in_list = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "a" and "href" in found:
            self.links.append(found["href"])
            if self._in_list and "title" in found.get("class", "").split():
                self.listed.append(found["href"])
        if tag == "link" and "rel" in found:
            self.rel[found["rel"]] = found.get("href", "")
        if tag == "meta":
            key = found.get("property") or found.get("name")
            if key:
                self.meta[key] = found.get("content", "")
        if tag == "h1":
            self._in_h1 = True
            self.h1.append("")
        if tag == "ol" and "articles" in found.get("class", "").split():
            self._in_list += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "h1":
            self._in_h1 = False
        if tag == "ol" and self._in_list:
            self._in_list -= 1

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1[-1] += data


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def slugs_of(app: App) -> dict[str, str]:
    """slug -> category of every live article."""
    return {a.slug: a.category for a in app.articles() if a.deleted is None}


def article_slug(link: str) -> str | None:
    path = unquote(urlsplit(link).path)
    if "/articles/" not in path:
        return None
    return path.rsplit("/", 1)[-1].removesuffix(".html")


def listed_slugs(public: Path, folder: str) -> list[str]:
    """Articles the pages of one listing (archive/ or category/<slug>/) show, page by page
    from its entry page along the Older links."""
    seen: list[str] = []
    relative = folder + "index.html"
    visited: set[str] = set()
    while relative:
        assert relative not in visited
        visited.add(relative)
        page = parse((public / relative).read_text(encoding="utf-8"))
        seen += [s for s in map(article_slug, page.listed) if s]
        older = page.rel.get("prev")
        relative = folder + older if older else ""
    return seen


def test_132_articles_all_reachable_by_a_crawler_from_the_served_index(site: App) -> None:
    wanted = set(slugs_of(site))
    assert len(wanted) == TOTAL
    for base, _ in run_server(site):
        host = urlsplit(base).netloc
        queue, visited, reached = deque([base + "/"]), set(), set()
        with httpx.Client(timeout=10) as client:
            robots = client.get(base + "/robots.txt")
            assert robots.status_code == 200
            assert "Sitemap: http://127.0.0.1:8080/sitemap.xml" in robots.text
            while queue:
                url = queue.popleft()
                if url in visited:
                    continue
                visited.add(url)
                response = client.get(url)
                assert response.status_code == 200, url
                if not response.headers["content-type"].startswith("text/html"):
                    continue
                page = parse(response.text)
                assert len(page.h1) == 1 and page.h1[0].strip(), url
                assert page.rel.get("canonical", "").startswith("http://127.0.0.1:8080/"), url
                assert page.rel.get("icon"), url
                for link in page.links:
                    target = urljoin(url, link).split("#", 1)[0]
                    if urlsplit(target).netloc != host:
                        continue
                    if slug := article_slug(target):
                        reached.add(slug)
                    if target.endswith((".html", "/")):
                        queue.append(target)
    assert reached == wanted


def test_the_archive_lists_every_article_once_newest_page_first(site: App) -> None:
    public = site.settings.output_dir
    seen = listed_slugs(public, "archive/")
    assert len(seen) == len(set(seen)) == TOTAL
    assert set(seen) == set(slugs_of(site))
    assert sorted(p.stem for p in (public / "archive").glob("*.html")) == sorted(
        ["index", *(str(n) for n in range(1, -(-TOTAL // PAGE) + 1))]
    )


def test_category_pages_list_exactly_their_articles(site: App) -> None:
    public = site.settings.output_dir
    by_category: dict[str, set[str]] = {}
    for slug, category in slugs_of(site).items():
        by_category.setdefault(category, set()).add(slug)
    index = parse((public / "index.html").read_text(encoding="utf-8"))
    folders = {unquote(link).removesuffix("index.html") for link in index.links}
    for category, members in by_category.items():
        folder = next(f for f in folders if f.startswith("category/") and f.endswith("/"))
        matching = [
            f
            for f in folders
            if f.startswith("category/")
            and f.endswith("/")
            and category in parse((public / f / "index.html").read_text(encoding="utf-8")).h1[0]
        ]
        assert len(matching) == 1, (category, folder)
        seen = listed_slugs(public, matching[0])
        assert len(seen) == len(set(seen))
        assert set(seen) == members, category


def test_article_pages_carry_escaped_sharing_metadata_and_a_category_link(site: App) -> None:
    public = site.settings.output_dir
    article = next(a for a in site.articles() if a.category == TOPICS[3])
    text = (public / "articles" / f"{article.slug}.html").read_text(encoding="utf-8")
    assert "<more" not in text and "Sport &#34;live&#34; &amp; &lt;more" in text
    page = parse(text)
    url = f"http://127.0.0.1:8080/articles/{article.slug}.html"
    assert page.rel["canonical"] == url
    assert page.meta["og:url"] == url
    assert page.meta["og:title"] == article.title
    assert page.meta["og:type"] == "article"
    assert page.meta["description"] == page.meta["og:description"] == article.summary
    assert page.meta["twitter:card"] == "summary"
    assert page.h1 == [article.title]
    assert any(link.startswith("../category/sport-live-more/") for link in page.links)
    assert "../archive/index.html" in page.links  # "All articles" reaches everything
    index = parse((public / "index.html").read_text(encoding="utf-8"))
    assert len(index.h1) == 1 and index.meta["og:type"] == "website"


def test_sitemap_names_every_page_with_lastmod(site: App) -> None:
    public = site.settings.output_dir
    index = ElementTree.parse(public / "sitemap.xml").getroot()
    locs: list[str] = []
    for entry in index.iter(f"{SITEMAP_NS}sitemap"):
        loc = entry.findtext(f"{SITEMAP_NS}loc") or ""
        page = ElementTree.parse(public / urlsplit(loc).path.lstrip("/")).getroot()
        for url in page.iter(f"{SITEMAP_NS}url"):
            locs.append(url.findtext(f"{SITEMAP_NS}loc") or "")
            assert url.findtext(f"{SITEMAP_NS}lastmod"), locs[-1]
    paths = {unquote(urlsplit(loc).path).lstrip("/") for loc in locs}
    assert {f"articles/{slug}.html" for slug in slugs_of(site)} <= paths
    assert "archive/index.html" in paths
    assert any(p.startswith("category/") and p.endswith("/index.html") for p in paths)


def test_feeds_name_a_stylesheet_and_still_parse(site: App) -> None:
    public = site.settings.output_dir
    for name in ("atom.xml", "rss.xml", "category/economy/atom.xml"):
        data = (public / name).read_bytes()
        assert b'<?xml-stylesheet type="text/xsl" href="' in data.split(b"\n", 2)[1], name
        assert feedparser.parse(data).bozo == 0, name
    xsl = (public / "feed.xsl").read_text(encoding="utf-8")
    assert "copy this url into your reader" in xsl.lower()


def test_the_json_feed_next_url_chain_reaches_every_item(site: App) -> None:
    public = site.settings.output_dir
    document = json.loads((public / "feed.json").read_text(encoding="utf-8"))
    assert document["language"] == "en" and document["authors"]
    ids: list[str] = [item["id"] for item in document["items"]]
    visited: set[str] = set()
    while "next_url" in document:
        url = document["next_url"]
        assert url not in visited
        visited.add(url)
        document = json.loads((public / urlsplit(url).path.lstrip("/")).read_text("utf-8"))
        ids += [item["id"] for item in document["items"]]
    assert visited
    assert set(ids) == {a.id for a in site.articles() if a.deleted is None}


@pytest.mark.parametrize(
    ("count", "archive_pages", "economy_pages"),
    [
        (45, {5}, {2}),  # the newest archive page (5 of 5) and Economy's (11 -> 12) grow
        (40, {4, 5}, {1, 2}),  # both start a new page: the page before gains a Newer link
    ],
)
def test_one_new_article_rewrites_only_the_pages_it_changes(
    tmp_path: Path, count: int, archive_pages: set[int], economy_pages: set[int]
) -> None:
    app = make_site(tmp_path, count)
    try:
        public = app.settings.output_dir
        before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in public.rglob("*.html")}
        path = app.settings.inbox / "story-new.txt"
        path.write_text(story(200).replace(f"Home>{TOPICS[0]}", "Home>Economy"), "utf-8")
        result = app.ingest([path])
        assert result.summary()["added"] == 1
        changed = {
            str(p.relative_to(public))
            for p in public.rglob("*.html")
            if before.get(p) != (p.read_bytes(), p.stat().st_mtime_ns)
        }
        new_slug = next(a.slug for a in app.articles() if a.title.startswith("Story 200"))
        assert changed == {
            "index.html",
            f"articles/{new_slug}.html",
            "archive/index.html",
            *(f"archive/{n}.html" for n in archive_pages),
            "category/economy/index.html",
            *(f"category/economy/{n}.html" for n in economy_pages),
        }
        assert set(listed_slugs(public, "archive/")) == set(slugs_of(app))
        economy = {slug for slug, category in slugs_of(app).items() if category == "Economy"}
        assert set(listed_slugs(public, "category/economy/")) == economy
    finally:
        app.close()


def test_deleting_an_article_removes_it_from_its_category_page_and_the_archive(
    tmp_path: Path,
) -> None:
    app = make_site(tmp_path, 30)
    try:
        public = app.settings.output_dir
        victim = next(a for a in app.articles() if a.category == "Economy")
        folder = f"category/{victim.category.lower()}/"
        assert victim.slug in listed_slugs(public, folder)
        assert victim.slug in listed_slugs(public, "archive/")
        app.delete_articles([victim.id])
        assert victim.slug not in listed_slugs(public, folder)
        assert victim.slug not in listed_slugs(public, "archive/")
        assert len(listed_slugs(public, "archive/")) == 29
        sitemap = b"".join(p.read_bytes() for p in (public / "sitemap").glob("*.xml"))
        assert f"articles/{victim.slug}.html".encode() not in sitemap
    finally:
        app.close()


def test_robots_and_sitemap_are_served_with_no_html_policy_and_feeds_may_use_the_xsl(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        for base, _ in run_server(app):
            with httpx.Client(timeout=10) as client:
                robots = client.get(base + "/robots.txt")
                assert robots.headers["content-type"].startswith("text/plain")
                assert "content-security-policy" not in robots.headers
                sitemap = client.get(base + "/sitemap.xml")
                assert sitemap.status_code == 200
                assert "content-security-policy" not in sitemap.headers
                atom = client.get(base + "/atom.xml")
                policy = atom.headers.get("content-security-policy", "")
                # the stylesheet turns the feed into a page: its CSP must let it apply
                assert policy == "" or "'self'" in policy
                xsl = client.get(base + "/feed.xsl")
                assert xsl.status_code == 200
                assert xsl.headers["content-type"].split(";")[0] in (
                    "text/xsl",
                    "application/xslt+xml",
                    "application/xml",
                    "text/xml",
                )
                assert client.get(base + "/static/favicon.svg").status_code == 200
    finally:
        app.close()


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="no chromium")
def test_chromium_shows_the_atom_feed_as_a_readable_page(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        for base, _ in run_server(app):
            with playwright_api.sync_playwright() as playwright:
                try:
                    browser = playwright.chromium.launch(
                        executable_path="/usr/bin/chromium", args=["--no-sandbox"]
                    )
                except Exception as exc:  # any launch failure: this machine cannot run it
                    pytest.skip(f"chromium cannot start: {str(exc).splitlines()[0]}")
                page = browser.new_page()
                page.goto(base + "/atom.xml")
                page.wait_for_selector("text=copy this URL into your reader")
                assert "Harbin regains" in page.content()
                browser.close()
    finally:
        app.close()


def test_a_correction_moving_an_article_to_another_category_moves_it_on_the_pages(
    tmp_path: Path,
) -> None:
    app = make_site(tmp_path, 60)  # Economy: 15 articles, story 2 on its first page of 2
    try:
        public = app.settings.output_dir
        path = app.settings.inbox / "story-002.txt"  # 2 % 4: Economy
        moved = next(a for a in app.articles() if a.source_file.endswith("story-002.txt"))
        assert moved.category == "Economy"
        # a category alone is no change of content (ingest calls it a duplicate): a word too
        corrected = story(2).replace("Home>Economy", "Home>Culture & Arts")
        path.write_text(corrected.replace("part 0)", "part 0, corrected)"), "utf-8")
        assert app.ingest([path]).summary()["updated"] == 1
        assert moved.slug not in listed_slugs(public, "category/economy/")
        assert moved.slug in listed_slugs(public, "category/culture-arts/")
        economy = {slug for slug, category in slugs_of(app).items() if category == "Economy"}
        assert set(listed_slugs(public, "category/economy/")) == economy
    finally:
        app.close()


def test_category_pages_carry_the_subscribe_form_with_their_category_first(site: App) -> None:
    public = site.settings.output_dir
    for category in {a.category for a in site.articles()}:
        index = next(
            page
            for page in public.glob("category/*/index.html")
            if category in parse(page.read_text(encoding="utf-8")).h1[0]
        )
        text = index.read_text(encoding="utf-8")
        assert '<form class="subscribe" method="post" action="/subscribe">' in text
        offered = re.findall(r'name="categories" value="([^"]*)"', text)
        assert offered and html.unescape(offered[0]) == category, (category, offered)
