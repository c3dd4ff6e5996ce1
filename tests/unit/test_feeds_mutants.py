"""Feed details the other feed tests leave open (found by mutmut): every feed-level link
with its type, the live feed's prev-archive link, the archive marker's place, the
feed-level <updated>, entry order, authors and contributors, and the JSON feed's fields
and raw escaping of < > &."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from xml.etree import ElementTree

from publisher import __version__
from publisher.feeds import (
    EPOCH,
    JSON_FEED_TYPE,
    Archive,
    Channel,
    Entry,
    atom,
    category_slug,
    json_feed,
    rss,
)
from tests.unit.test_feeds import ZONE, article, channel

A = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
DC = "{http://purl.org/dc/elements/1.1/}"
ATOM_TYPE = "application/atom+xml"


def entries(*numbers: int, title: str = "", blocks: tuple[str, ...] = ("Body.",)) -> list[Entry]:
    return [
        Entry(article(n, title=title, blocks=blocks), f"http://example.org/a{n}.html")
        for n in numbers
    ]


def links(feed: ElementTree.Element) -> list[tuple[str | None, str | None, str | None]]:
    return [(x.get("rel"), x.get("type"), x.get("href")) for x in feed.findall(f"{A}link")]


def parsed(data: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(data)


# -- Atom: links ----------------------------------------------------------------------


def test_the_live_feed_links_self_alternate_and_its_newest_archive_page() -> None:
    feed = parsed(atom(channel(prev_archive="http://example.org/archive/3.xml"), entries(1)))
    assert links(feed) == [
        ("prev-archive", ATOM_TYPE, "http://example.org/archive/3.xml"),
        ("self", ATOM_TYPE, "http://example.org/atom.xml"),
        ("alternate", "text/html", "http://example.org/index.html"),
    ]
    assert feed.find(f"{FH}archive") is None  # the live feed is not an archive


def test_a_live_feed_without_archives_has_no_prev_archive_link() -> None:
    feed = parsed(atom(channel(), entries(1)))
    assert [rel for rel, _, _ in links(feed)] == ["self", "alternate"]


def test_an_archive_page_links_current_prev_and_next_and_is_marked_before_its_entries() -> None:
    page = Archive(
        current="http://example.org/atom.xml",
        prev="http://example.org/archive/1.xml",
        next="http://example.org/archive/3.xml",
    )
    data = atom(channel(archive=page, prev_archive="http://example.org/ignored.xml"), entries(1, 2))
    feed = parsed(data)
    assert links(feed)[:3] == [
        ("current", ATOM_TYPE, "http://example.org/atom.xml"),
        ("prev-archive", ATOM_TYPE, "http://example.org/archive/1.xml"),
        ("next-archive", ATOM_TYPE, "http://example.org/archive/3.xml"),
    ]
    assert "http://example.org/ignored.xml" not in data.decode()
    children = [child.tag for child in feed]
    assert children.count(f"{FH}archive") == 1
    assert children.index(f"{FH}archive") < children.index(f"{A}entry")  # RFC 5005 section 4


def test_an_empty_archive_page_is_still_marked() -> None:
    feed = parsed(atom(channel(archive=Archive(current="http://example.org/atom.xml")), []))
    assert feed.find(f"{FH}archive") is not None
    assert [rel for rel, _, _ in links(feed)] == ["current", "self", "alternate"]


# -- Atom: feed-level metadata --------------------------------------------------------


def test_feed_updated_is_the_newest_entry_update_in_the_site_zone() -> None:
    newest = datetime(2024, 1, 9, 20, 30, tzinfo=UTC)
    items = [*entries(1), Entry(article(2, updated=newest), "u"), *entries(3)]
    feed = parsed(atom(channel(), items))
    assert feed.findtext(f"{A}updated") == "2024-01-10T04:30:00+08:00"
    last_build = parsed(rss(channel(), items)).findtext("channel/lastBuildDate")
    assert last_build is not None
    assert parsedate_to_datetime(last_build) == newest
    assert last_build.endswith("+0800")


def test_an_empty_feed_is_updated_at_its_fixed_instant() -> None:
    feed = parsed(atom(channel(), []))
    assert feed.findtext(f"{A}updated") == EPOCH.astimezone(ZONE).isoformat()
    moment = datetime(2025, 5, 5, tzinfo=UTC)
    assert parsed(atom(channel(empty_updated=moment), [])).findtext(f"{A}updated") == (
        "2025-05-05T08:00:00+08:00"
    )
    last_build = parsed(rss(channel(), [])).findtext("channel/lastBuildDate")
    assert last_build is not None and parsedate_to_datetime(last_build) == EPOCH


def test_generator_names_the_version_and_the_feed_author_is_the_site() -> None:
    feed = parsed(atom(channel(author="Desk"), []))
    generator = feed.find(f"{A}generator")
    assert generator is not None
    assert (generator.text, generator.get("version")) == ("publisher", __version__)
    assert feed.findtext(f"{A}author/{A}name") == "Desk"
    untitled = parsed(atom(channel(author=None), []))
    assert untitled.findtext(f"{A}author/{A}name") == "Harbin News"


def test_feeds_are_indented_one_element_a_line() -> None:
    for data in (atom(channel(), entries(1)), rss(channel(), entries(1))):
        assert b"\n  <" in data and b"\n    <" in data


# -- entries --------------------------------------------------------------------------


def test_entries_keep_the_given_order_in_every_format() -> None:
    items = entries(3, 1, 2)
    ids = [e.article.id for e in items]
    assert [x.findtext(f"{A}id") for x in parsed(atom(channel(), items)).iter(f"{A}entry")] == ids
    assert [x.findtext("guid") for x in parsed(rss(channel(), items)).iter("item")] == ids
    assert [item["id"] for item in json.loads(json_feed(channel(), items))["items"]] == ids


def test_rss_guid_is_the_id_and_not_a_permalink() -> None:
    [guid] = parsed(rss(channel(), entries(1))).iter("guid")
    assert (guid.text, guid.get("isPermaLink")) == ("tag:example.org,2024-01-01:a1", "false")


def test_entry_authors_fall_back_to_source_then_site_author_then_title() -> None:
    items = [
        Entry(article(1), "u1"),
        Entry(article(2, author=None), "u2"),
        Entry(article(3, author=None, source=None), "u3"),
    ]
    expected = ["Wang Wei", "chinadaily.com.cn", "Desk"]
    feed = parsed(atom(channel(author="Desk"), items))
    assert [x.findtext(f"{A}author/{A}name") for x in feed.iter(f"{A}entry")] == expected
    document = parsed(rss(channel(author="Desk"), items))
    assert [x.findtext(f"{DC}creator") for x in document.iter("item")] == expected
    items_json = json.loads(json_feed(channel(author="Desk"), items))["items"]
    assert [item["authors"] for item in items_json] == [[{"name": n}] for n in expected]
    untitled = json.loads(json_feed(channel(author=None), items[2:]))["items"]
    assert untitled[0]["authors"] == [{"name": "Harbin News"}]


def test_the_source_is_a_contributor_only_beside_a_named_author() -> None:
    items = [Entry(article(1), "u1"), Entry(article(2, author=None), "u2")]
    feed = parsed(atom(channel(), items))
    contributors = [x.findtext(f"{A}contributor/{A}name") for x in feed.iter(f"{A}entry")]
    assert contributors == ["chinadaily.com.cn", None]


def test_rss_has_no_archive_markup_and_atom_no_dublin_core() -> None:
    page = Archive(current="http://example.org/atom.xml", prev="http://example.org/archive/1.xml")
    data = rss(channel(archive=page, prev_archive="http://example.org/x.xml"), entries(1))
    assert b"purl.org/syndication/history" not in data
    assert b"prev-archive" not in data
    assert b"purl.org/dc/elements" not in atom(channel(), entries(1))
    [self_link] = parsed(data).iter(f"{A}link")
    assert (self_link.get("rel"), self_link.get("type"), self_link.get("href")) == (
        "self",
        "application/rss+xml",
        "http://example.org/rss.xml",
    )
    assert parsed(data).findtext("channel/link") == "http://example.org/index.html"


# -- JSON Feed ------------------------------------------------------------------------


def test_json_feed_top_level_fields() -> None:
    document = json.loads(
        json_feed(
            channel(
                author="Desk", icon="http://example.org/i.png", logo="http://example.org/l.png"
            ),
            [],
        )
    )
    assert document == {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Harbin News",
        "home_page_url": "http://example.org/index.html",
        "feed_url": "http://example.org/feed.json",
        "description": "Articles",
        "authors": [{"name": "Desk"}],
        "language": "en",
        "icon": "http://example.org/l.png",
        "favicon": "http://example.org/i.png",
        "items": [],
    }
    plain = json.loads(json_feed(channel(subtitle="", author=None, language=None), []))
    assert plain["description"] == "Harbin News"
    assert plain["authors"] == [{"name": "Harbin News"}]
    assert "language" not in plain and "icon" not in plain and "favicon" not in plain
    assert JSON_FEED_TYPE == "application/feed+json"


def test_json_item_fields_and_dates_in_the_site_zone() -> None:
    updated = datetime(2024, 2, 1, 17, 0, tzinfo=UTC)
    [item] = json.loads(json_feed(channel(), [Entry(article(1, updated=updated), "u")]))["items"]
    assert item["summary"] == "Body."
    assert item["date_published"] == "2024-01-02T00:00:00+08:00"
    assert item["date_modified"] == "2024-02-02T01:00:00+08:00"
    assert item["tags"] == ["News"]
    untold = Entry(article(2, summary="", title="Only a title"), "u")
    [bare] = json.loads(json_feed(channel(), [untold]))["items"]
    assert bare["summary"] == "Only a title"


def test_json_feed_bytes_have_no_raw_angle_brackets_or_ampersands() -> None:
    title = "Fish & <chips> > all"
    data = json_feed(channel(title=title), entries(1, title=title, blocks=("a < b & c > d",)))
    assert b"<" not in data and b">" not in data and b"&" not in data
    assert b"\\u003c" in data and b"\\u003e" in data and b"\\u0026" in data
    document = json.loads(data)
    assert document["title"] == title
    assert document["items"][0]["title"] == title
    assert document["items"][0]["content_html"] == "<p>a &lt; b &amp; c &gt; d</p>"


def test_json_feed_is_utf8_indented_by_two_and_ends_with_a_newline() -> None:
    data = json_feed(channel(title="Harbin 新闻 café"), [])
    assert "Harbin 新闻 café".encode() in data  # not \\u-escaped
    assert data.startswith(b'{\n  "version": ')
    assert data.endswith(b"}\n")


# -- category folders -----------------------------------------------------------------


def test_category_slug_edges() -> None:
    assert category_slug("(Local) News!") == "local-news"
    assert category_slug("Café Zürich") == "cafe-zurich"
    assert category_slug("哈尔滨 新闻") == "哈尔滨-新闻"
    assert category_slug("哈" * 40) == "哈" * 40
    long = category_slug("哈" * 100)  # a folder name: at most 180 bytes of UTF-8
    assert long == "哈" * 60 and len(long.encode()) == 180


def test_channel_fields_are_all_copied_for_rss() -> None:
    # rss() rebuilds the channel without its archive links; every other field survives
    full = channel(author="Desk", icon="http://example.org/i.png", logo="http://example.org/l.png")
    data = parsed(rss(full, []))
    assert data.findtext("channel/title") == "Harbin News"
    assert data.findtext("channel/language") == "en"
    assert data.findtext("channel/image/url") == "http://example.org/l.png"
    assert isinstance(full, Channel)
