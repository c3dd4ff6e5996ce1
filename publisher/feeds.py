"""Atom 1.0, RSS 2.0 and JSON Feed 1.1 bytes from articles. Pure: values in, bytes out.

The only module importing feedgen. Every character of article text is escaped: the
HTML content is built with `html.escape`, and the XML writer escapes that HTML again,
so `<script>` in an article is text in every reader, never markup.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from xml.sax.saxutils import escape

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator

from publisher import __version__
from publisher.body import body_html
from publisher.links import slug_words
from publisher.model import Article, Block

__all__ = [
    "ATOM_TYPE",
    "JSON_FEED_TYPE",
    "RSS_TYPE",
    "Archive",
    "Channel",
    "Entry",
    "Issue",
    "Tombstone",
    "atom",
    "category_slug",
    "content_html",
    "feed_language",
    "issues_atom",
    "json_feed",
    "rss",
    "sitemap",
    "sitemap_index",
]

ATOM_TYPE = "application/atom+xml"
RSS_TYPE = "application/rss+xml"
JSON_FEED_TYPE = "application/feed+json"
GENERATOR = "publisher"
# an empty feed still needs `updated`; a fixed instant keeps its bytes (and ETag) stable
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HISTORY_NS = "http://purl.org/syndication/history/1.0"
TOMBSTONES_NS = "http://purl.org/atompub/tombstones/1.0"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """An entry this feed no longer carries (RFC 6721 at:deleted-entry): its id, and when."""

    ref: str
    when: datetime


@dataclass(frozen=True, slots=True)
class Archive:
    """RFC 5005 links of one archive document (absolute URLs)."""

    current: str
    prev: str | None = None
    next: str | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    """Feed-level facts shared by the three formats (absolute URLs)."""

    title: str
    subtitle: str
    home: str  # the HTML page this feed mirrors (alternate)
    atom_url: str
    rss_url: str
    json_url: str
    zone: tzinfo
    language: str | None = None
    author: str | None = None  # feed-level author: the site
    icon: str | None = None
    logo: str | None = None
    prev_archive: str | None = None  # subscription document -> newest archive page
    archive: Archive | None = None  # set when this document *is* an archive page
    empty_updated: datetime = EPOCH
    tombstones: tuple[Tombstone, ...] = ()  # Atom only; newest first
    # relative href of feed.xsl from this document (same origin, so a browser applies it)
    stylesheet: str | None = None
    next_json: str | None = None  # JSON Feed next_url: the next older archive page
    hubs: tuple[str, ...] = ()  # WebSub hubs: <link rel="hub"> (Atom, RSS), `hubs` (JSON)


@dataclass(frozen=True, slots=True)
class Entry:
    """One article and the URL of its page."""

    article: Article
    url: str
    # the article's content_html, when made once for the three formats of a build
    content: str | None = None

    @property
    def html(self) -> str:
        return self.content if self.content is not None else content_html(self.article.blocks)


@dataclass(frozen=True, slots=True)
class Issue:
    """One past digest of the web archive: its web copy's id and URL, what it was."""

    id: str
    url: str
    title: str
    sent: datetime
    summary: str


SLUG_BYTES = 180  # a folder name is at most 255 bytes


def category_slug(name: str) -> str:
    """Folder name for a category: 'Civilization progress' -> 'civilization-progress',
    '哈尔滨' -> '哈尔滨' (see links.slug_words)."""
    slug = slug_words(name)
    while not slug.isascii() and len(slug.encode()) > SLUG_BYTES:
        slug = slug[:-1].rstrip("-")
    if not slug:
        # a name without a letter or digit (emoji, symbols) still needs a stable, distinct folder
        slug = "c-" + "-".join(f"{ord(c):x}" for c in name if not c.isspace())[:60]
    return slug or "uncategorized"


# A feed holds max_entries articles in full: past this many characters of text an entry
# ends with "…" (its page has all of it), so a feed stays a few MB whatever the inbox holds.
ENTRY_TEXT_LIMIT = 100_000


def content_html(blocks: Sequence[Block], limit: int = ENTRY_TEXT_LIMIT) -> str:
    """The body as sanitized HTML (see body.py); at most `limit` characters of text, then "…"."""
    return body_html(blocks, limit)


def _updated(channel: Channel, entries: Sequence[Entry]) -> datetime:
    # a deletion changes the feed as much as a new entry does
    times = [e.article.updated for e in entries] + [t.when for t in channel.tombstones]
    newest = max(times, default=channel.empty_updated)
    return newest.astimezone(channel.zone)


def _author(article: Article, channel: Channel) -> str:
    # Atom needs an author on every entry or the feed; the source stands in for a
    # missing byline, the site for a missing source
    return article.author or article.source or channel.author or channel.title


def _language(article: Article, channel: Channel) -> str | None:
    return article.language or channel.language


def feed_language(channel: Channel, entries: Sequence[Entry]) -> str | None:
    """The language every entry shares, else the site's (the channel's)."""
    found = {_language(e.article, channel) for e in entries}
    return found.pop() if len(found) == 1 else channel.language


_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class _EntryLanguage(BaseEntryExtension):  # type: ignore[misc]
    """xml:lang on an Atom entry whose article names its own language (RFC 4287 2)."""

    language = ""

    def extend_atom(self, entry: Any) -> Any:
        entry.set(_XML_LANG, self.language)
        return entry


class _History(BaseExtension):  # type: ignore[misc]
    """Adds <fh:archive/> (RFC 5005 section 4) to an Atom archive document."""

    def extend_ns(self) -> dict[str, str]:
        return {"fh": _HISTORY_NS}

    def extend_atom(self, feed: Any) -> Any:
        from lxml import etree  # feedgen's own XML library; only needed here

        element = etree.Element(f"{{{_HISTORY_NS}}}archive")
        # RFC 5005 wants it among the feed's metadata, before the entries
        first_entry = feed.find("{http://www.w3.org/2005/Atom}entry")
        if first_entry is None:
            feed.append(element)
        else:
            first_entry.addprevious(element)
        return feed


class _RssHubs(BaseExtension):  # type: ignore[misc]
    """<atom:link rel="hub"/> per WebSub hub in an RSS channel: feedgen writes only
    rel="self" there."""

    hubs: tuple[str, ...] = ()

    def extend_rss(self, feed: Any) -> Any:
        from lxml import etree  # feedgen's own XML library; only needed here

        channel = feed.find("channel")
        for hub in self.hubs:
            etree.SubElement(channel, "{http://www.w3.org/2005/Atom}link", href=hub, rel="hub")
        return feed


class _Tombstones(BaseExtension):  # type: ignore[misc]
    """Adds one <at:deleted-entry ref=… when=…/> per deleted entry (RFC 6721 section 2),
    after the entries: feedgen has no such element."""

    tombstones: tuple[Tombstone, ...] = ()
    zone: tzinfo = UTC

    def extend_ns(self) -> dict[str, str]:
        return {"at": TOMBSTONES_NS}

    def extend_atom(self, feed: Any) -> Any:
        from lxml import etree  # feedgen's own XML library; only needed here

        for tombstone in self.tombstones:
            element = etree.SubElement(feed, f"{{{TOMBSTONES_NS}}}deleted-entry")
            element.set("ref", tombstone.ref)
            element.set("when", tombstone.when.astimezone(self.zone).isoformat())
        return feed


def _generator(
    channel: Channel, entries: Sequence[Entry], *, archive: bool, tombstones: bool = False
) -> FeedGenerator:
    fg = FeedGenerator()
    if archive:
        fg.register_extension("fh", _History, None, atom=True, rss=False)
    if tombstones and channel.tombstones:
        fg.register_extension("at", _Tombstones, None, atom=True, rss=False)
        fg.at.tombstones = channel.tombstones
        fg.at.zone = channel.zone
    fg.id(channel.atom_url)
    fg.title(channel.title)
    fg.subtitle(channel.subtitle or channel.title)
    fg.updated(_updated(channel, entries))
    fg.lastBuildDate(_updated(channel, entries))  # feedgen defaults to now(): churn
    fg.generator(GENERATOR, version=__version__)
    fg.author({"name": channel.author or channel.title})
    language = feed_language(channel, entries)
    if language:
        fg.language(language)
    if channel.icon:
        fg.icon(channel.icon)
    if channel.logo:
        fg.logo(channel.logo)
    if channel.archive is not None:
        fg.link(href=channel.archive.current, rel="current", type=ATOM_TYPE)
        if channel.archive.prev:
            fg.link(href=channel.archive.prev, rel="prev-archive", type=ATOM_TYPE)
        if channel.archive.next:
            fg.link(href=channel.archive.next, rel="next-archive", type=ATOM_TYPE)
    elif channel.prev_archive:
        fg.link(href=channel.prev_archive, rel="prev-archive", type=ATOM_TYPE)
    for hub in channel.hubs:  # WebSub 4: rel="hub" beside rel="self"
        fg.link(href=hub, rel="hub")
    # feedgen uses the *last* link as RSS <link>: alternate goes last
    fg.link(href=channel.atom_url, rel="self", type=ATOM_TYPE)
    fg.link(href=channel.home, rel="alternate", type="text/html")
    for entry in entries:
        _add_entry(fg, entry, channel)
    return fg


def _add_entry(fg: FeedGenerator, entry: Entry, channel: Channel) -> None:
    article = entry.article
    fe = fg.add_entry(order="append")
    fe.id(article.id)
    fe.guid(article.id, permalink=False)
    fe.title(article.title)
    fe.link(href=entry.url, rel="alternate", type="text/html")
    fe.published(article.published.astimezone(channel.zone))
    fe.updated(article.updated.astimezone(channel.zone))
    fe.author({"name": _author(article, channel)})
    if article.author and article.source:
        fe.contributor({"name": article.source})
    fe.category({"term": article.category, "label": article.category})
    fe.summary(article.summary or article.title)
    fe.content(entry.html, type="html")
    if article.language:
        fe.register_extension("language", _EntryLanguage, atom=True, rss=False)
        fe.language.language = article.language


def _with_stylesheet(data: bytes, href: str | None) -> bytes:
    """The document with an xml-stylesheet processing instruction after its declaration:
    a browser then shows the XSLT's page; feed readers ignore it."""
    if not href:
        return data
    declaration, _, rest = data.partition(b"\n")
    quoted = escape(href, {'"': "&quot;"})
    instruction = f'<?xml-stylesheet type="text/xsl" href="{quoted}"?>'
    return declaration + b"\n" + instruction.encode("utf-8") + b"\n" + rest


def atom(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """An Atom 1.0 document: the subscription feed, or an RFC 5005 archive page; the
    channel's tombstones as RFC 6721 deleted entries."""
    fg = _generator(channel, entries, archive=channel.archive is not None, tombstones=True)
    data: bytes = fg.atom_str(pretty=True)
    return _with_stylesheet(data, channel.stylesheet)


def rss(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """An RSS 2.0 document (atom:link rel=self, guid isPermaLink=false, RFC 822 dates)."""
    rss_channel = Channel(**{**_fields(channel), "archive": None, "prev_archive": None})
    fg = _generator(rss_channel, entries, archive=False)
    fg.link(href=channel.rss_url, rel="self", replace=True, type=RSS_TYPE)
    fg.link(href=channel.home, rel="alternate", type="text/html")
    fg.load_extension("dc", atom=False, rss=True)
    if channel.hubs:
        fg.register_extension("websub", _RssHubs, None, atom=False, rss=True)
        fg.websub.hubs = channel.hubs
    for fe, entry in zip(fg.entry(), entries, strict=True):
        # RSS <author> must be an email address; dc:creator carries a plain name
        fe.dc.dc_creator(_author(entry.article, channel))
        # readers take <description> as HTML: the plain-text summary goes in escaped
        summary = entry.article.summary or entry.article.title
        fe.description(html.escape(summary, quote=False), isSummary=True)
    data: bytes = fg.rss_str(pretty=True)
    return _with_stylesheet(data, channel.stylesheet)


def json_feed(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """A JSON Feed 1.1 document from the same entry data (feedgen has no JSON Feed)."""
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": channel.title,
        "home_page_url": channel.home,
        "feed_url": channel.json_url,
        "description": channel.subtitle or channel.title,
        "authors": [{"name": channel.author or channel.title}],
    }
    language = feed_language(channel, entries)
    if language:
        document["language"] = language
    if channel.logo:
        document["icon"] = channel.logo
    if channel.icon:
        document["favicon"] = channel.icon
    if channel.next_json:
        document["next_url"] = channel.next_json
    if channel.hubs:
        document["hubs"] = [{"type": "WebSub", "url": hub} for hub in channel.hubs]
    document["items"] = [_json_item(entry, channel, language) for entry in entries]
    text = json.dumps(document, ensure_ascii=False, indent=2)
    # the same strings, but no raw < > & in the bytes: safe even if someone inlines it
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (text + "\n").encode("utf-8")


def _json_item(entry: Entry, channel: Channel, feed_level: str | None) -> dict[str, Any]:
    article = entry.article
    item: dict[str, Any] = {
        "id": article.id,
        "url": entry.url,
        "title": article.title,
        "content_html": entry.html,
        "summary": article.summary or article.title,
        "date_published": article.published.astimezone(channel.zone).isoformat(),
        "date_modified": article.updated.astimezone(channel.zone).isoformat(),
        "authors": [{"name": _author(article, channel)}],
        "tags": [article.category],
    }
    language = _language(article, channel)
    if language and language != feed_level:
        item["language"] = language
    return item


def _fields(channel: Channel) -> dict[str, Any]:
    return {name: getattr(channel, name) for name in Channel.__slots__}


_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"


SITEMAP_LIMIT = 50_000  # URLs per sitemap file, and sitemaps per index (sitemaps.org)


def sitemap(urls: Sequence[tuple[str, str | None]]) -> bytes:
    """A sitemaps.org urlset of these (absolute URL, lastmod W3C date or None) pairs."""
    if len(urls) > SITEMAP_LIMIT:
        raise ValueError(f"a sitemap holds at most {SITEMAP_LIMIT} URLs, not {len(urls)}")
    lines = [
        f"  <url><loc>{escape(url)}</loc>"
        + (f"<lastmod>{escape(lastmod)}</lastmod>" if lastmod else "")
        + "</url>"
        for url, lastmod in urls
    ]
    return _sitemap_document("urlset", lines)


def sitemap_index(urls: Sequence[str]) -> bytes:
    """A sitemaps.org sitemap index naming these sitemap files."""
    lines = [f"  <sitemap><loc>{escape(url)}</loc></sitemap>" for url in urls]
    return _sitemap_document("sitemapindex", lines)


def _sitemap_document(root: str, lines: Sequence[str]) -> bytes:
    head = ['<?xml version="1.0" encoding="UTF-8"?>', f'<{root} xmlns="{_SITEMAP_NS}">']
    return ("\n".join([*head, *lines, f"</{root}>"]) + "\n").encode("utf-8")


def issues_atom(
    *, title: str, atom_url: str, home: str, language: str | None, issues: Sequence[Issue]
) -> bytes:
    """The Atom feed of the digest archive: one entry per web copy, newest first."""
    fg = FeedGenerator()
    fg.id(atom_url)
    fg.title(title)
    fg.subtitle(title)
    newest = max((issue.sent for issue in issues), default=EPOCH)
    fg.updated(newest)
    fg.lastBuildDate(newest)
    fg.generator(GENERATOR, version=__version__)
    fg.author({"name": title})
    if language:
        fg.language(language)
    fg.link(href=atom_url, rel="self", type=ATOM_TYPE)
    fg.link(href=home, rel="alternate", type="text/html")
    for issue in issues:
        fe = fg.add_entry(order="append")
        fe.id(issue.url)
        fe.title(issue.title)
        fe.link(href=issue.url, rel="alternate", type="text/html")
        fe.published(issue.sent)
        fe.updated(issue.sent)
        fe.summary(issue.summary or issue.title)
    data: bytes = fg.atom_str(pretty=True)
    return data
