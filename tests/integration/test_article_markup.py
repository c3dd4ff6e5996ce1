"""Article bodies as markup: .md files (Markdown, sanitized), .txt links and lists.

Each page is fetched over real HTTP from `build` output and read with html.parser; each
feed is read with feedparser. Only the allowed tags and attributes may come through.
"""

from __future__ import annotations

import html.parser
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import httpx
import pytest

from publisher.app import App
from publisher.body import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, body_html
from publisher.config import load_settings
from publisher.feeds import Channel, Entry, atom
from publisher.model import Article
from publisher.parse import parse_article
from tests.conftest import SEEDS, write_config

MARKDOWN_ARTICLE = """Home>News>City

Markdown comes to the newsroom

Updated : 2026-11-20

By Li Na ( Harbin Daily )

Id: md-0001

# Winter plans

The city *will* open **three** rinks; see [the plan](https://example.org/plan?a=1&b=2).
A [bad link](javascript:alert(1)) and a [relative one](/etc/passwd) stay text.

- skating lessons
- a longer ice festival

![Ice lanterns](https://img.example.org/lanterns.jpg)

<script>alert("x")</script>

<img src="x" onerror="alert(1)">
"""

TXT_ARTICLE = """Home>News

Links in plain text

Updated : 2026-11-21

The full report is at https://example.org/report?id=7&x=<b> and more.
"""


class Tags(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def tags_of(markup: str) -> Tags:
    parser = Tags()
    parser.feed(markup)
    parser.close()
    return parser


def assert_only_allowed(markup: str) -> Tags:
    found = tags_of(markup)
    for tag, attrs in found.tags:
        assert tag in ALLOWED_TAGS, f"<{tag}> came through"
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
        assert set(attrs) <= allowed, f"<{tag} {attrs}> came through"
        for name in ("href", "src"):
            if name in attrs:
                assert (attrs[name] or "").startswith(("http://", "https://")), attrs
        if tag == "a":
            assert attrs["rel"] == "nofollow noopener"
    return found


def assert_markdown_rendered(markup: str) -> None:
    found = assert_only_allowed(markup)
    names = [tag for tag, _ in found.tags]
    assert {"h2", "em", "strong", "ul", "li", "a", "img"} <= set(names)
    # a javascript: link is left as text, a relative one loses its href: only one points anywhere
    links = [attrs.get("href") for tag, attrs in found.tags if tag == "a"]
    assert [link for link in links if link] == ["https://example.org/plan?a=1&b=2"]
    images = [attrs for tag, attrs in found.tags if tag == "img"]
    assert images == [{"src": "https://img.example.org/lanterns.jpg", "alt": "Ice lanterns"}]
    text = "".join(found.text)
    assert "Winter plans" in text and "skating lessons" in text
    assert "javascript" not in "".join(str(attrs) for _, attrs in found.tags)
    # the file's raw HTML arrives as text to read, never as markup
    assert '<script>alert("x")</script>' in text


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The seeds plus the two articles ingested and built; the output served over HTTP."""
    inbox = tmp_path / "articles"
    inbox.mkdir()
    for seed in SEEDS.iterdir():
        (inbox / seed.name).write_bytes(seed.read_bytes())
    (inbox / "winter.md").write_text(MARKDOWN_ARTICLE, encoding="utf-8")
    (inbox / "links.txt").write_text(TXT_ARTICLE, encoding="utf-8")
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'publisher.db'}")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([inbox])
        app.build_feeds()
    finally:
        app.close()
    public = tmp_path / "public"
    handler = partial(SimpleHTTPRequestHandler, directory=str(public))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield public, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def page(public: Path, base: str, title_words: str) -> str:
    [path] = [p for p in (public / "articles").glob("*.html") if title_words in p.name]
    response = httpx.get(base + f"articles/{path.name}")
    assert response.status_code == 200
    return response.text


def body_of(page_html: str) -> str:
    return page_html.split('<div class="body">', 1)[1].split("</div>", 1)[0]


def test_seed_003_renders_its_goals_as_a_list(site: tuple[Path, str]) -> None:
    public, base = site
    body = body_of(page(public, base, "harbin-sets-up-development-goals"))
    found = assert_only_allowed(body)
    items = [tag for tag, _ in found.tags if tag == "li"]
    assert len(items) >= 20
    assert "<li>Build 30 new smart libraries</li>" in body
    # the introduction ends with a colon: it stays the paragraph the list follows
    assert "will include:</p><ul>" in body
    entry = next(
        e
        for e in feedparser.parse((public / "atom.xml").read_bytes()).entries
        if e.title == "Harbin sets up development goals for 2022"
    )
    assert "<li>Add 83,000 new jobs in urban areas</li>" in entry.content[0].value


def test_a_url_in_a_txt_article_becomes_an_escaped_link(site: tuple[Path, str]) -> None:
    public, base = site
    body = body_of(page(public, base, "links-in-plain-text"))
    found = assert_only_allowed(body)
    assert [attrs["href"] for tag, attrs in found.tags if tag == "a"] == [
        "https://example.org/report?id=7&x="
    ]
    assert "&lt;b&gt; and more." in body
    entry = next(
        e
        for e in feedparser.parse((public / "atom.xml").read_bytes()).entries
        if e.title == "Links in plain text"
    )
    assert entry.content[0].value.count('rel="nofollow noopener"') == 1


def test_a_markdown_article_page_and_feed_carry_the_allowed_markup_only(
    site: tuple[Path, str],
) -> None:
    public, base = site
    assert_markdown_rendered(body_of(page(public, base, "markdown-comes-to-the-newsroom")))
    entry = next(
        e
        for e in feedparser.parse((public / "atom.xml").read_bytes()).entries
        if e.title == "Markdown comes to the newsroom"
    )
    assert_markdown_rendered(entry.content[0].value)


def parsed_markdown() -> Article:
    parsed = parse_article(
        MARKDOWN_ARTICLE.encode(), source_file="winter.md", zone=ZoneInfo("Asia/Shanghai")
    )
    when = datetime(2026, 11, 20, tzinfo=UTC)
    return Article(
        id="tag:example.org,2026-11-20:md-0001",
        slug="2026-11-20-markdown-comes-to-the-newsroom",
        title=parsed.title,
        category_path=parsed.category_path,
        published=when,
        updated=when,
        author=parsed.author,
        source=parsed.source,
        blocks=parsed.blocks,
        summary="",
        content_hash=parsed.content_hash,
        source_file="winter.md",
        ingested=when,
    )


def test_a_markdown_body_renders_the_allowed_markup_only_in_atom_and_html() -> None:
    article = parsed_markdown()
    assert_markdown_rendered(body_html(article.blocks))
    channel = Channel(
        title="Harbin News",
        subtitle="Articles",
        home="http://example.org/index.html",
        atom_url="http://example.org/atom.xml",
        rss_url="http://example.org/rss.xml",
        json_url="http://example.org/feed.json",
        zone=ZoneInfo("Asia/Shanghai"),
        language="en",
        author="Harbin News",
    )
    feed = feedparser.parse(atom(channel, [Entry(article, "http://example.org/a.html")]))
    [entry] = feed.entries
    assert_markdown_rendered(entry.content[0].value)


def test_a_markdown_file_keeps_its_headers_and_plain_text_blocks_for_dedup() -> None:
    parsed = parse_article(MARKDOWN_ARTICLE.encode(), source_file="winter.md", zone=ZoneInfo("UTC"))
    assert (parsed.author, parsed.source, parsed.editor_id) == ("Li Na", "Harbin Daily", "md-0001")
    texts = [block.text for block in parsed.blocks]
    assert texts[0] == "Winter plans"
    assert texts[1].startswith("The city will open three rinks; see the plan.")
    assert texts[2] == "skating lessons\na longer ice festival"
    assert "*" not in texts[1] and "(https://example.org/plan" not in texts[1]
    assert parsed.blocks[0].markup == "# Winter plans"


def test_a_markdown_edit_that_only_changes_a_link_is_a_changed_article() -> None:
    zone = ZoneInfo("UTC")
    before = parse_article(MARKDOWN_ARTICLE.encode(), source_file="winter.md", zone=zone)
    edited = MARKDOWN_ARTICLE.replace("https://example.org/plan", "https://example.org/plan-v2")
    after = parse_article(edited.encode(), source_file="winter.md", zone=zone)
    assert [b.text for b in before.blocks] == [b.text for b in after.blocks]
    assert before.content_hash != after.content_hash
