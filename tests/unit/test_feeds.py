"""feeds.py on hand-made articles: escaping, dates with zone, ids, links, archive markup."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from html import unescape
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import feedparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.feeds import (
    Archive,
    Channel,
    Entry,
    atom,
    category_slug,
    content_html,
    json_feed,
    rss,
)
from publisher.links import href
from publisher.model import Article, Block

ATOM = "{http://www.w3.org/2005/Atom}"
ZONE = ZoneInfo("Asia/Shanghai")
EVIL = '<script>alert(1)</script> & ]]> "quoted"'


def article(
    n: int, *, title: str = "", blocks: tuple[str, ...] = ("Body.",), **extra: object
) -> Article:
    published = datetime(2024, 1, n, 16, 0, tzinfo=UTC)
    values: dict[str, object] = {
        "id": f"tag:example.org,2024-01-{n:02d}:a{n}",
        "slug": f"a{n}",
        "title": title or f"Article {n}",
        "category_path": ("Home", "News"),
        "published": published,
        "updated": published,
        "author": "Wang Wei",
        "source": "chinadaily.com.cn",
        "blocks": tuple(Block(b) for b in blocks),
        "summary": blocks[0] if blocks else "",
        "content_hash": f"h{n}",
        "source_file": f"{n}.txt",
        "ingested": published,
    }
    values.update(extra)
    return Article(**values)  # type: ignore[arg-type]


def channel(**extra: object) -> Channel:
    values: dict[str, object] = {
        "title": "Harbin News",
        "subtitle": "Articles",
        "home": "http://example.org/index.html",
        "atom_url": "http://example.org/atom.xml",
        "rss_url": "http://example.org/rss.xml",
        "json_url": "http://example.org/feed.json",
        "zone": ZONE,
        "language": "en",
        "author": "Harbin News",
    }
    values.update(extra)
    return Channel(**values)  # type: ignore[arg-type]


def entries(*articles: Article) -> list[Entry]:
    return [Entry(a, f"http://example.org/articles/{a.slug}.html") for a in articles]


def test_content_html_is_a_paragraph_per_block_and_lines_joined_by_br() -> None:
    html = content_html((Block("one"), Block("two\nthree")))
    assert html == "<p>one</p><p>two<br>three</p>"


def test_content_html_escapes_every_character_of_the_text() -> None:
    html = content_html((Block(EVIL),))
    assert "<script>" not in html
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt; &quot;quoted&quot;</p>"


@given(st.text(min_size=1, max_size=40).filter(lambda t: t.strip() and "\x00" not in t))
def test_category_slug_is_a_safe_folder_name(name: str) -> None:
    slug = category_slug(name)
    assert slug and "/" not in slug and ".." not in slug and not slug.startswith(".")
    assert slug == slug.lower() and href(slug).isascii() and len(slug.encode()) <= 180
    for char in slug:  # ASCII letters, digits, '-', or a letter, digit or mark of a script
        if char.isascii():
            assert char.isalnum() or char == "-"
        else:
            assert unicodedata.category(char)[0] in "LNM"


def test_category_slug_keeps_the_letters_of_other_scripts() -> None:
    assert category_slug("哈尔滨 新闻") == "哈尔滨-新闻"
    assert category_slug("Новости города") == "новости-города"
    assert category_slug("Café société") == "cafe-societe"  # Latin as before
    assert category_slug("🎉🎉").startswith("c-")  # no letters at all: still a folder


def test_category_slug_reads_well() -> None:
    assert category_slug("Civilization progress") == "civilization-progress"
    assert category_slug("Harbin Today") == "harbin-today"


@pytest.mark.parametrize("render", [atom, rss, json_feed], ids=["atom", "rss", "json"])
def test_evil_text_arrives_as_text_in_every_format(render: object) -> None:
    evil = article(1, title=EVIL, blocks=(EVIL, f"line {EVIL}\nsecond line"), author=EVIL)
    data = render(channel(), entries(evil))  # type: ignore[operator]
    assert b"<script>" not in data
    if render is json_feed:
        item = json.loads(data)["items"][0]
        assert item["title"] == EVIL
        assert "<script>" not in item["content_html"]
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt;" in item["content_html"]
        return
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0
    entry = parsed.entries[0]
    assert entry.title == EVIL  # the title decodes back to the exact text
    body = entry.content[0].value if "content" in entry else entry.description
    # after one level of XML decoding the HTML still carries the text escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>" not in body


TRACKING = '<img src="http://tracker.example/p.gif"><a href="http://phish.example/">log in</a><script>x()</script>'


def test_rss_description_carries_the_first_paragraph_as_text_not_markup() -> None:
    """Readers take <description> as HTML: an <img> or <a> in the text must not become one."""
    planted = article(1, blocks=(f"Lead {TRACKING} end.", "Second paragraph."))
    data = rss(channel(), entries(planted))
    description = ElementTree.fromstring(data).findtext("channel/item/description")
    assert description is not None
    assert "<img" not in description and "<a " not in description
    assert "&lt;img" in description  # one level of escaping survives the XML decoding
    entry = feedparser.parse(data).entries[0]
    assert "<img" not in entry.summary and "<a " not in entry.summary
    assert "<script" not in entry.summary
    # as HTML it is exactly the words the editor wrote
    assert unescape(entry.summary) == f"Lead {TRACKING} end."


def test_atom_entry_has_id_dates_with_zone_author_category_and_both_texts() -> None:
    a = article(2, updated=datetime(2024, 1, 3, 1, 30, tzinfo=UTC))
    root = ElementTree.fromstring(atom(channel(), entries(a)))
    entry = root.find(f"{ATOM}entry")
    assert entry is not None
    assert entry.findtext(f"{ATOM}id") == a.id
    assert entry.findtext(f"{ATOM}published") == "2024-01-03T00:00:00+08:00"
    assert entry.findtext(f"{ATOM}updated") == "2024-01-03T09:30:00+08:00"
    assert entry.findtext(f"{ATOM}author/{ATOM}name") == "Wang Wei"
    assert entry.findtext(f"{ATOM}contributor/{ATOM}name") == "chinadaily.com.cn"
    category = entry.find(f"{ATOM}category")
    assert category is not None and category.get("term") == "News"
    assert entry.findtext(f"{ATOM}summary") == "Body."
    content = entry.find(f"{ATOM}content")
    assert content is not None and content.get("type") == "html"
    assert content.text == "<p>Body.</p>"
    link = entry.find(f"{ATOM}link")
    assert link is not None and link.get("href") == "http://example.org/articles/a2.html"
    # the feed's updated is its newest entry's, not the time of the build
    assert root.findtext(f"{ATOM}updated") == "2024-01-03T09:30:00+08:00"


def test_without_a_byline_the_source_is_the_author_and_then_the_site() -> None:
    no_byline = article(1, author=None)
    nothing = article(2, author=None, source=None)
    root = ElementTree.fromstring(atom(channel(), entries(no_byline, nothing)))
    names = [e.findtext(f"{ATOM}author/{ATOM}name") for e in root.iter(f"{ATOM}entry")]
    assert names == ["chinadaily.com.cn", "Harbin News"]


def test_atom_feed_level_metadata() -> None:
    c = channel(icon="http://example.org/icon.png", logo="http://example.org/logo.png")
    root = ElementTree.fromstring(atom(c, entries(article(1))))
    assert root.findtext(f"{ATOM}title") == "Harbin News"
    assert root.findtext(f"{ATOM}subtitle") == "Articles"
    assert root.findtext(f"{ATOM}id") == "http://example.org/atom.xml"
    assert root.findtext(f"{ATOM}generator") == "publisher"
    assert root.findtext(f"{ATOM}icon") == "http://example.org/icon.png"
    assert root.findtext(f"{ATOM}logo") == "http://example.org/logo.png"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links["self"] == "http://example.org/atom.xml"
    assert links["alternate"] == "http://example.org/index.html"


def test_output_is_deterministic_so_etags_do_not_churn() -> None:
    items = entries(article(1), article(2))
    assert atom(channel(), items) == atom(channel(), items)
    assert rss(channel(), items) == rss(channel(), items)
    assert json_feed(channel(), items) == json_feed(channel(), items)


def test_rss_guid_is_the_stable_id_not_a_permalink_and_dates_are_rfc822_with_zone() -> None:
    a = article(5)
    root = ElementTree.fromstring(rss(channel(), entries(a)))
    item = root.find("channel/item")
    assert item is not None
    guid = item.find("guid")
    assert guid is not None and guid.text == a.id and guid.get("isPermaLink") == "false"
    pub_date = item.findtext("pubDate")
    assert pub_date == "Sat, 06 Jan 2024 00:00:00 +0800"
    assert parsedate_to_datetime(pub_date) == a.published
    assert item.findtext("{http://purl.org/dc/elements/1.1/}creator") == "Wang Wei"
    self_link = root.find("channel/{http://www.w3.org/2005/Atom}link")
    assert self_link is not None and self_link.get("href") == "http://example.org/rss.xml"
    assert root.findtext("channel/link") == "http://example.org/index.html"


def test_json_feed_follows_version_1_1() -> None:
    a = article(1)
    document = json.loads(json_feed(channel(logo="http://example.org/logo.png"), entries(a)))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["feed_url"] == "http://example.org/feed.json"
    assert document["home_page_url"] == "http://example.org/index.html"
    assert document["icon"] == "http://example.org/logo.png"
    item = document["items"][0]
    assert item["id"] == a.id
    assert item["url"] == "http://example.org/articles/a1.html"
    assert item["date_published"] == "2024-01-02T00:00:00+08:00"
    assert item["authors"] == [{"name": "Wang Wei"}]
    assert item["tags"] == ["News"]


def test_archive_document_carries_rfc5005_links_and_fh_archive() -> None:
    c = channel(
        atom_url="http://example.org/archive/2.xml",
        archive=Archive(
            current="http://example.org/atom.xml",
            prev="http://example.org/archive/1.xml",
            next="http://example.org/archive/3.xml",
        ),
    )
    root = ElementTree.fromstring(atom(c, entries(article(1))))
    links = {link.get("rel"): link.get("href") for link in root.findall(f"{ATOM}link")}
    assert links["current"] == "http://example.org/atom.xml"
    assert links["prev-archive"] == "http://example.org/archive/1.xml"
    assert links["next-archive"] == "http://example.org/archive/3.xml"
    assert links["self"] == "http://example.org/archive/2.xml"
    assert root.find("{http://purl.org/syndication/history/1.0}archive") is not None


def test_an_empty_feed_is_still_valid_and_stable() -> None:
    data = atom(channel(), [])
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0 and parsed.entries == []
    assert ElementTree.fromstring(data).findtext(f"{ATOM}updated") == "1970-01-01T08:00:00+08:00"


def test_a_sitemap_carries_lastmod_escaped_and_refuses_more_than_50000_urls() -> None:
    from publisher.feeds import SITEMAP_LIMIT, sitemap

    data = sitemap([("http://x.example/a?b=1&c=2", "2024-01-02"), ("http://x.example/b", None)])
    root = ElementTree.fromstring(data)
    space = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    urls = root.findall(f"{space}url")
    assert urls[0].findtext(f"{space}loc") == "http://x.example/a?b=1&c=2"
    assert urls[0].findtext(f"{space}lastmod") == "2024-01-02"
    assert urls[1].find(f"{space}lastmod") is None
    assert SITEMAP_LIMIT == 50_000
    sitemap([("http://x.example/", None)] * SITEMAP_LIMIT)
    with pytest.raises(ValueError):
        sitemap([("http://x.example/", None)] * (SITEMAP_LIMIT + 1))


def test_a_stylesheet_instruction_follows_the_declaration_and_is_escaped() -> None:
    from dataclasses import replace

    base = Channel(
        title="T",
        subtitle="S",
        home="http://x.example/",
        atom_url="http://x.example/atom.xml",
        rss_url="http://x.example/rss.xml",
        json_url="http://x.example/feed.json",
        zone=ZONE,
    )
    for render in (atom, rss):
        plain = render(base, [])
        styled = render(replace(base, stylesheet='../a"b&.xsl'), [])
        first, second, rest = styled.split(b"\n", 2)
        assert second == b'<?xml-stylesheet type="text/xsl" href="../a&quot;b&amp;.xsl"?>'
        assert first + b"\n" + rest == plain
        assert feedparser.parse(styled).bozo == 0
    document = json.loads(json_feed(replace(base, next_json="http://x.example/archive/2.json"), []))
    assert document["next_url"] == "http://x.example/archive/2.json"
    assert "next_url" not in json.loads(json_feed(base, []))
