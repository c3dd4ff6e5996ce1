"""Use case: the output folder from the store — feeds, RFC 5005 archives, article pages, index.

Layout: design.md, and the paths in links.py. Archives follow ingest order (RFC 5005
section 4), so an article's page never moves: with N articles and page size P, pages
1..N // P are archive documents of exactly P entries each, and the N % P newest by
ingest order are in no archive yet: the subscription feed (atom.xml) carries them
besides its latest entries, and its prev-archive link names the newest archive. A page
becomes an archive once it is full and is written once: it links only to `current` and
its `prev-archive` (a next-archive link would change it when the next page fills), so
its bytes change only if one of its own entries is corrected. Pages count positions over
every stored row, so a deleted article must keep its row and only be left out of its
page's entries, or every later page would shift. Each archive/<n>.xml has a JSON Feed
twin archive/<n>.json, and next_url chains feed.json through them as prev-archive does.

The HTML listings (archive/ and each category/<slug>/, see "HTML listings" below) are
paged the same way, so a new article rewrites only the newest page of each.

A deleted article (store/deletions.py) is in no feed, page or listing; its page file is
removed and named in GONE_PAGES, which the web server answers 410 Gone; the Atom feeds
(the site's and its category's) carry an RFC 6721 tombstone for it for
`feeds.tombstone_days`.

A small state file (`.build/state.json`, never served) remembers fingerprints so a full
build re-renders only what changed and an incremental build knows which category feeds
held a changed article, and which categories an older article joined or left (their row
counts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from publisher import __version__, feeds
from publisher.body import body_html
from publisher.config import Settings
from publisher.errors import StoreError
from publisher.feeds import Archive, Channel, Entry, Tombstone, category_slug
from publisher.links import (
    FEED_STYLESHEET,
    GONE_PAGES,
    archive_json_path,
    archive_path,
    article_path,
    category_index_path,
    category_path,
    href,
    listing_page_path,
    sitemap_listing_path,
    sitemap_path,
)
from publisher.model import Article
from publisher.output import OutputDir
from publisher.render import builtin_templates, render, template_environment
from publisher.search import SearchIndex
from publisher.store import Store
from publisher.store.builds import SiteBuilds
from publisher.store.deletions import Deletion, Deletions
from publisher.store.pages import ArticleStamp, ListedArticle, SiteQueries
from publisher.websub import hub_urls

__all__ = ["BuildResult", "ChangeReport", "ChangedArticle", "SiteBuilder", "category_slugs"]

log = logging.getLogger("publisher.site")

STATE = ".build/state.json"
PAGES_STATE = ".build/pages.json"
STATE_VERSION = 4  # bumped whenever the state file changes shape
# removals recorded by a writer that committed after our last build may carry a
# slightly older timestamp; look back this far so none is missed
REMOVAL_LOOKBACK = timedelta(minutes=5)
SITEMAP_PAGE = 1000  # article pages per sitemap/<n>.xml (the protocol allows 50,000)
LISTING_SITEMAP = 50_000  # listing pages per sitemap/listings-<n>.xml (the protocol's limit)
ARCHIVE_FOLDER = "archive/"
_TEMPLATES = (
    "base.html.j2",
    "index.html.j2",
    "article.html.j2",
    "_subscribe_form.html.j2",
    "listing.html.j2",
    "static/style.css",
    "static/feed.xsl",
    "static/favicon.svg",
    "static/favicon.ico",
    "static/search.js",
)
# copied from templates/static into the output folder: (template name, output path)
_STATIC_FILES = (
    ("static/style.css", "static/style.css"),
    ("static/favicon.svg", "static/favicon.svg"),
    ("static/feed.xsl", FEED_STYLESHEET),
    ("static/favicon.ico", "favicon.ico"),  # asked for by browsers showing a non-HTML page
    ("static/search.js", "static/search.js"),
)


class ChangedArticle(Protocol):
    """One changed file of an ingest report (ingest.FileResult fits)."""

    @property
    def article_id(self) -> str | None: ...


class ChangeReport(Protocol):
    """What an incremental build needs from an ingest report (ingest.IngestReport fits)."""

    @property
    def changed(self) -> Sequence[ChangedArticle]: ...

    @property
    def build_requests(self) -> Sequence[int]: ...


@dataclass
class BuildResult:
    """What a build wrote (relative paths) and how long it took."""

    full: bool
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    rendered: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "full": self.full,
            "written": self.written,
            "unchanged": self.unchanged,
            "rendered": self.rendered,
            "seconds": round(self.seconds, 4),
        }


def _covers(requests: Sequence[int], built: int, requested: int) -> bool:
    """Every build asked for since the last one, up to the report's last, was the report's
    own: its changes are all an incremental build must write."""
    if not requests:
        return requested == built
    return set(range(built + 1, max(requests) + 1)) <= set(requests)


def category_slugs(names: Iterable[str]) -> dict[str, str]:
    """Folder per category; names that slugify alike get -2, -3 in sorted order."""
    result: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(set(names)):
        base = category_slug(name)
        slug, n = base, 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug)
        result[name] = slug
    return result


class SiteBuilder:
    """Builds the output folder of one Settings from one Store."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock  # when tombstones expire
        self.environment = template_environment(settings)
        self.size = max(1, settings.feeds.archive_page_size)
        self.limit = max(1, settings.feeds.max_entries)
        self.search = SearchIndex(settings.output_dir, settings.site.language)

    # -- entry points ------------------------------------------------------------

    def build(self, report: ChangeReport | None = None) -> BuildResult:
        """Full build (report None), or only what the report's changes touch.

        A build owed by another ingest (one killed before it built) makes it a full one.
        """
        started = time.perf_counter()
        out = OutputDir(self.settings.output_dir)
        state = self._load_state(out)
        with self.store.read() as connection:
            requested, built = SiteBuilds(connection).counters()
        if report is None or state is None or not _covers(report.build_requests, built, requested):
            result = self._full(out, state or {})
            covered = requested
        else:
            result = self._incremental(out, state, report)
            covered = max(report.build_requests, default=built)
        if self.settings.site.search:
            self._search(out, result.full)
        if covered > built:
            try:
                with self.store.begin(serialized=False) as connection:
                    SiteBuilds(connection).mark_built(covered)
            except StoreError as exc:  # the output is whole; the next build is a full one
                log.warning("could not record the build: %s", exc.message)
        # the state files are bookkeeping, not output
        result.written = [p for p in out.log.written if not p.startswith(".build/")]
        result.unchanged = len([p for p in out.log.unchanged if not p.startswith(".build/")])
        result.seconds = time.perf_counter() - started
        log.info(
            "%s build: %d written, %d unchanged in %.3fs",
            "full" if result.full else "incremental",
            len(result.written),
            result.unchanged,
            result.seconds,
        )
        return result

    def build_owed(self) -> bool:
        """An ingest committed changes that no build has written yet."""
        with self.store.read() as connection:
            return SiteBuilds(connection).pending()

    def _full(self, out: OutputDir, state: dict[str, Any]) -> BuildResult:
        result = BuildResult(full=True)
        with self.store.read() as connection:
            queries = SiteQueries(connection)
            stamps = queries.stamps()
            deleted = Deletions(connection).all()
            _, newest_removal = queries.removals_since(None)
            slugs = category_slugs(s.category for s in stamps)
            latest = queries.latest(self.limit)
            archived = self._archived(len(stamps))
            current = self._current(queries, latest, len(stamps))
            self._site_feeds(out, current, archived, self._tombstones(deleted.values()))
            held: dict[str, list[str]] = {}
            for name, slug in slugs.items():
                found = queries.latest(self.limit, category=name)
                gone = self._tombstones(d for d in deleted.values() if d.category == name)
                self._category_feeds(out, name, slug, found, gone)
                held[slug] = [a.id for a in found]
            names = self._emptied_categories(out, state, slugs, held)
            archives = self._full_archives(out, queries, stamps, state.get("archives", {}))
            listings, listing_pages, lastmods = self._full_listings(
                out, queries, stamps, slugs, state
            )
            result.rendered += self._full_pages(out, queries, stamps, slugs, deleted)
            self._index(out, latest, queries.categories(include_deleted=False), slugs)
            self._full_sitemap(out, stamps, lastmods)
        self._static(out)
        self._save_state(
            out,
            {
                "category_counts": dict(Counter(s.category for s in stamps)),
                "categories": held,
                "category_names": names,
                "archives": archives,
                "archived": archived,
                "listings": listings,
                "listing_pages": listing_pages,
                "listing_lastmod": lastmods,
                "removal_mark": newest_removal.isoformat() if newest_removal else None,
            },
        )
        return result

    def _incremental(
        self, out: OutputDir, state: dict[str, Any], report: ChangeReport
    ) -> BuildResult:
        result = BuildResult(full=False)
        changed = {r.article_id for r in report.changed if r.article_id}
        mark = state.get("removal_mark")
        since = datetime.fromisoformat(mark) - REMOVAL_LOOKBACK if mark else None
        listed_before = dict(state.get("listing_lastmod", {}))
        with self.store.read() as connection:
            queries = SiteQueries(connection)
            touched, newest_removal = queries.removals_since(since)
            changed |= touched
            found = queries.by_ids(changed)
            deleted = Deletions(connection).all()
            categories = queries.categories()  # every row: archive positions count them all
            slugs = category_slugs(name for name, _ in categories)
            total = sum(n for _, n in categories)
            archived = self._archived(total)
            latest = queries.latest(self.limit)
            current = self._current(queries, latest, total)
            self._site_feeds(out, current, archived, self._tombstones(deleted.values()))
            held: dict[str, list[str]] = state.get("categories", {})
            counts = dict(categories)
            ranks = queries.ranks(changed, total)
            shifted = self._shifted_categories(state, counts, found, ranks)
            wanted = {a.category for a in found} | shifted
            wanted |= {name for name, slug in slugs.items() if changed & set(held.get(slug, ()))}
            for name in sorted(wanted):
                slug = slugs.get(name, category_slug(name))
                in_category = queries.latest(self.limit, category=name)
                gone = self._tombstones(d for d in deleted.values() if d.category == name)
                self._category_feeds(out, name, slug, in_category, gone)
                held[slug] = [a.id for a in in_category]
            names = self._emptied_categories(out, state, slugs, held)
            # archives holding a changed article, and the pages that filled up since
            numbers = {rank // self.size + 1 for rank in ranks.values()}
            numbers |= set(range(int(state.get("archived", 0)) + 1, archived + 1))
            archives: dict[str, str] = state.get("archives", {})
            for number in sorted(n for n in numbers if n <= archived):
                self._archive_page(out, queries, number, total=total)
                archives.pop(str(number), None)  # next full build re-checks it
            self._changed_listing(
                out,
                queries,
                ARCHIVE_FOLDER,
                "All articles",
                None,
                total,
                ranks.values(),
                state,
                slugs,
            )
            now_in = {a.category for a in found}
            for name in sorted(wanted):
                in_total = counts.get(name, 0)
                own: Iterable[int] = queries.ranks(changed, in_total, category=name).values()
                if name not in now_in or name in shifted:
                    # an article left or joined this category: every later position moved
                    own = range(in_total)
                folder = category_path(slugs.get(name, category_slug(name)))
                self._changed_listing(out, queries, folder, name, name, in_total, own, state, slugs)
            for article in found:
                self._article_page(out, article, slugs)
                result.rendered += 1
            self._index(out, latest, queries.live_categories(categories), slugs)
            lastmods = state["listing_lastmod"]
            self._changed_sitemap(
                out, queries, ranks.values(), total, lastmods, lastmods != listed_before
            )
        state.update(
            category_counts=counts,
            categories=held,
            category_names=names,
            archives=archives,
            archived=archived,
            removal_mark=(newest_removal.isoformat() if newest_removal else mark),
        )
        self._save_state(out, state)
        return result

    @staticmethod
    def _shifted_categories(
        state: dict[str, Any],
        counts: dict[str, int],
        found: Sequence[Article],
        ranks: dict[str, int],
    ) -> set[str]:
        """Categories an older article joined or left since the last build: their count
        moved by other than the new articles (ranked after every row the last build saw),
        so every listing position after the mover shifted."""
        before: dict[str, int] = state.get("category_counts", {})
        seen = sum(before.values())
        new = Counter(a.category for a in found if ranks.get(a.id, -1) >= seen)
        return {
            name
            for name in set(before) | set(counts)
            if counts.get(name, 0) - before.get(name, 0) != new.get(name, 0)
        }

    # -- feeds -------------------------------------------------------------------

    def _channel(self, title: str, subtitle: str, folder: str, **extra: Any) -> Channel:
        url = self.settings.url
        site = self.settings.site
        return Channel(
            title=title,
            subtitle=subtitle,
            home=url("index.html"),
            atom_url=url(folder + "atom.xml"),
            rss_url=url(folder + "rss.xml"),
            json_url=url(folder + "feed.json"),
            zone=self.settings.zone,
            language=site.language or None,
            author=site.title,
            icon=url(site.icon) if site.icon else None,
            logo=url(site.logo) if site.logo else None,
            hubs=hub_urls(self.settings),
            **{"stylesheet": "../" * folder.count("/") + FEED_STYLESHEET, **extra},
        )

    def _entries(self, found: Sequence[Article]) -> list[Entry]:
        # each body made once: it goes into Atom, RSS and JSON Feed alike
        return [
            Entry(a, self.settings.url(article_path(a.slug)), feeds.content_html(a.blocks))
            for a in found
        ]

    def _current(
        self, queries: SiteQueries, latest: Sequence[Article], total: int
    ) -> list[Article]:
        """The subscription feed's entries: the latest ones, plus every article no archive
        holds yet (however old its date), so current + prev-archive reach them all."""
        shown = {a.id for a in latest}
        waiting = queries.in_ingest_order(self._archived(total) * self.size, self.size, total)
        extra = [a for a in waiting if a.id not in shown]
        if not extra:
            return list(latest)
        return sorted([*latest, *extra], key=lambda a: a.published, reverse=True)

    def _tombstones(self, deleted: Iterable[Deletion]) -> tuple[Tombstone, ...]:
        """RFC 6721 deleted entries for the articles deleted within feeds.tombstone_days,
        newest first."""
        cutoff = self.clock() - timedelta(days=self.settings.feeds.tombstone_days)
        recent = sorted(
            (d for d in deleted if d.at > cutoff), key=lambda d: (d.at, d.article_id), reverse=True
        )
        return tuple(Tombstone(d.article_id, d.at) for d in recent)

    def _site_feeds(
        self,
        out: OutputDir,
        current: Sequence[Article],
        archived: int,
        tombstones: tuple[Tombstone, ...] = (),
    ) -> None:
        site = self.settings.site
        url = self.settings.url
        channel = self._channel(
            site.title,
            site.subtitle,
            "",
            prev_archive=url(archive_path(archived)) if archived else None,
            next_json=url(archive_json_path(archived)) if archived else None,
            tombstones=tombstones,
        )
        self._write_feeds(out, "", channel, self._entries(current))

    def _category_feeds(
        self,
        out: OutputDir,
        name: str,
        slug: str,
        found: Sequence[Article],
        tombstones: tuple[Tombstone, ...] = (),
    ) -> None:
        site = self.settings.site
        channel = self._channel(
            f"{site.title}: {name}",
            f"{name} — {site.subtitle}",
            category_path(slug),
            tombstones=tombstones,
        )
        self._write_feeds(out, category_path(slug), channel, self._entries(found))

    def _emptied_categories(
        self,
        out: OutputDir,
        state: dict[str, Any],
        slugs: dict[str, str],
        held: dict[str, list[str]],
    ) -> dict[str, str]:
        """Give a category that lost its last article valid, empty feeds; return all names.

        Its readers keep polling the old address: an empty feed tells them, a stale
        one or a 404 would not.
        """
        names: dict[str, str] = {**state.get("category_names", {})}
        names.update({slug: name for name, slug in slugs.items()})
        gone = (set(held) | out.names("category", folders=True)) - set(slugs.values())
        for slug in sorted(gone):
            self._category_feeds(out, names.get(slug, slug), slug, [])
            held[slug] = []
            folder = category_path(slug)
            self._listing_page(out, folder, names.get(slug, slug), 1, 1, [], slugs, {})
        return names

    def _write_feeds(
        self, out: OutputDir, folder: str, channel: Channel, entries: Sequence[Entry]
    ) -> None:
        out.write(folder + "atom.xml", feeds.atom(channel, entries))
        out.write(folder + "rss.xml", feeds.rss(channel, entries))
        out.write(folder + "feed.json", feeds.json_feed(channel, entries))

    # -- archives ------------------------------------------------------------------

    def _archived(self, total: int) -> int:
        """How many pages are full, hence archives."""
        return total // self.size

    def _archive_page(
        self,
        out: OutputDir,
        queries: SiteQueries,
        number: int,
        found: Sequence[Article] | None = None,
        total: int | None = None,
    ) -> None:
        if found is None:
            found = queries.in_ingest_order((number - 1) * self.size, self.size, total)
        url = self.settings.url
        site = self.settings.site
        archive = Archive(
            current=url("atom.xml"), prev=url(archive_path(number - 1)) if number > 1 else None
        )
        channel = self._channel(
            f"{site.title} — archive {number}", site.subtitle, f"archive/{number}/", archive=archive
        )
        # an archive document's self link is the page itself; its JSON twin pages on
        # to the next older one, as JSON Feed's next_url means; no hubs: no topic, an
        # archive page never changes for a subscriber
        channel = replace(
            channel,
            atom_url=url(archive_path(number)),
            json_url=url(archive_json_path(number)),
            next_json=url(archive_json_path(number - 1)) if number > 1 else None,
            stylesheet="../" + FEED_STYLESHEET,
            hubs=(),
        )
        entries = self._entries(sorted(found, key=lambda a: a.published, reverse=True))
        out.write(archive_path(number), feeds.atom(channel, entries))
        out.write(archive_json_path(number), feeds.json_feed(channel, entries))

    def _full_archives(
        self,
        out: OutputDir,
        queries: SiteQueries,
        stamps: Sequence[ArticleStamp],
        known: dict[str, str],
    ) -> dict[str, str]:
        archived = self._archived(len(stamps))
        fingerprints: dict[str, str] = {}
        present = out.names("archive")  # one listing, not a stat per page
        for name in sorted(present):
            number_text = name.removesuffix(".xml")
            if number_text.isdigit() and int(number_text) > archived:
                # a page an older release wrote before it was full: no link leads to it
                out.path(archive_path(int(number_text))).unlink(missing_ok=True)
                out.path(archive_json_path(int(number_text))).unlink(missing_ok=True)
        for number in range(1, archived + 1):
            members = stamps[(number - 1) * self.size : number * self.size]
            digest = hashlib.blake2b(str(number).encode(), digest_size=16)
            for stamp in members:
                digest.update(stamp.key)
            fingerprint = digest.hexdigest()
            fingerprints[str(number)] = fingerprint
            if known.get(str(number)) == fingerprint and {f"{number}.xml", f"{number}.json"} <= (
                present
            ):
                continue
            found = queries.by_ids(s.id for s in members)
            self._archive_page(out, queries, number, found, total=len(stamps))
        return fingerprints

    # -- HTML listings: the archive and the category pages ---------------------------
    # A listing (archive/ or category/<slug>/) is paged like the RFC 5005 archives, by
    # ingest order counting every row: page n holds positions (n-1)*P .. n*P-1, so a new
    # article changes only the last page (and the one before, when it starts a new page),
    # and a deletion only its own page. index.html repeats the last (newest) page; every
    # page lists newest first and links to the older and newer page.

    def _listing_heading(self, folder: str, names: dict[str, str]) -> str:
        if folder == ARCHIVE_FOLDER:
            return "All articles"
        return names.get(folder.removeprefix("category/").rstrip("/"), folder)

    def _listing_page(
        self,
        out: OutputDir,
        folder: str,
        heading: str,
        number: int,
        pages: int,
        found: Sequence[ListedArticle],
        slugs: dict[str, str],
        lastmods: dict[str, str],
    ) -> None:
        zone = self.settings.zone
        root = "../" * folder.count("/")
        # ingest order reversed, then by date: newest first, ties newest ingested first
        newest_first = sorted(reversed(found), key=lambda a: a.published, reverse=True)
        items = [
            {
                "article": a,
                "url": root + href(article_path(a.slug)),
                "published": a.published.astimezone(zone),
                "category_url": root
                + href(category_index_path(slugs.get(a.category, category_slug(a.category)))),
            }
            for a in newest_first
        ]
        lastmod = max((_lastmod(a) for a in found), default=None)
        names = [listing_page_path(folder, number)]
        if number == pages:
            names.append(folder + "index.html")
        for name in names:
            html = render(
                self.environment,
                "listing.html.j2",
                heading=heading,
                # the entry page reads as the listing itself, not as "page 14"
                number=1 if name.endswith("/index.html") else number,
                articles=items,
                older=f"{number - 1}.html" if number > 1 else None,
                newer=f"{number + 1}.html" if number < pages else None,
                feed=f"{root}{href(folder)}atom.xml" if folder != ARCHIVE_FOLDER else None,
                canonical=self.settings.url(name),
                root=root,
            )
            out.write(name, html.encode("utf-8"))
            if lastmod:
                lastmods[name] = lastmod
            else:
                lastmods.pop(name, None)

    def _listing_groups(
        self, stamps: Sequence[ArticleStamp], slugs: dict[str, str]
    ) -> list[tuple[str, list[ArticleStamp]]]:
        by_category: dict[str, list[ArticleStamp]] = {name: [] for name in slugs}
        for stamp in stamps:
            by_category.setdefault(stamp.category, []).append(stamp)
        groups = [(ARCHIVE_FOLDER, list(stamps))]
        for name, members in sorted(by_category.items()):
            groups.append((category_path(slugs.get(name, category_slug(name))), members))
        return groups

    def _full_listings(
        self,
        out: OutputDir,
        queries: SiteQueries,
        stamps: Sequence[ArticleStamp],
        slugs: dict[str, str],
        state: dict[str, Any],
    ) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
        """Every listing page whose articles (or neighbours) changed since the last build;
        returns the page fingerprints, the page count of each listing and the lastmods."""
        known: dict[str, str] = state.get("listings", {})
        lastmods: dict[str, str] = dict(state.get("listing_lastmod", {}))
        names = {slug: name for name, slug in slugs.items()}
        fingerprints: dict[str, str] = {}
        counts: dict[str, int] = {}
        for folder, members_all in self._listing_groups(stamps, slugs):
            pages = max(1, -(-len(members_all) // self.size))
            counts[folder] = pages
            present = out.names(folder.rstrip("/"))
            heading = self._listing_heading(folder, names)
            for number in range(1, pages + 1):
                members = members_all[(number - 1) * self.size : number * self.size]
                # a page only knows whether a newer one exists, not how many there are
                place = "last" if number == pages else "newer"
                digest = hashlib.blake2b(f"{folder}{number}/{place}".encode(), digest_size=16)
                for stamp in members:
                    digest.update(stamp.key)
                digest.update(heading.encode())
                key = listing_page_path(folder, number)
                fingerprints[key] = digest.hexdigest()
                wanted = {f"{number}.html"} | ({"index.html"} if number == pages else set())
                if known.get(key) == fingerprints[key] and wanted <= present:
                    continue
                found = queries.listed(s.id for s in members)
                self._listing_page(out, folder, heading, number, pages, found, slugs, lastmods)
            for name in present:
                number_text = name.removesuffix(".html")
                if number_text.isdigit() and int(number_text) > pages:
                    out.remove(listing_page_path(folder, int(number_text)))
                    lastmods.pop(listing_page_path(folder, int(number_text)), None)
        # a listing no stored article names any more (a category emptied) leaves the sitemap
        lastmods = {k: v for k, v in lastmods.items() if k.rsplit("/", 1)[0] + "/" in counts}
        return fingerprints, counts, lastmods

    def _changed_listing(
        self,
        out: OutputDir,
        queries: SiteQueries,
        folder: str,
        heading: str,
        category: str | None,
        total: int,
        ranks: Iterable[int],
        state: dict[str, Any],
        slugs: dict[str, str],
    ) -> None:
        """The pages of one listing holding a changed article, its last page, and the pages
        between its old and new last page (their newer links appear)."""
        counts: dict[str, int] = state.setdefault("listing_pages", {})
        known: dict[str, str] = state.setdefault("listings", {})
        lastmods: dict[str, str] = state.setdefault("listing_lastmod", {})
        pages = max(1, -(-total // self.size))
        before = int(counts.get(folder, pages))
        numbers = {rank // self.size + 1 for rank in ranks}
        numbers |= set(range(max(1, min(before, pages)), pages + 1))
        for number in sorted(n for n in numbers if 1 <= n <= pages):
            offset = (number - 1) * self.size
            found = queries.listed_in_ingest_order(offset, self.size, total, category=category)
            self._listing_page(out, folder, heading, number, pages, found, slugs, lastmods)
            known.pop(listing_page_path(folder, number), None)  # next full build re-checks it
        for number in range(pages + 1, before + 1):  # the listing lost a page
            out.remove(listing_page_path(folder, number))
            lastmods.pop(listing_page_path(folder, number), None)
            known.pop(listing_page_path(folder, number), None)
        counts[folder] = pages

    # -- pages ---------------------------------------------------------------------

    def _full_pages(
        self,
        out: OutputDir,
        queries: SiteQueries,
        stamps: Sequence[ArticleStamp],
        slugs: dict[str, str],
        deleted: dict[str, Deletion],
    ) -> int:
        known = self._load_json(out, PAGES_STATE) or {}
        fingerprints = {s.id: s.key.hex() for s in stamps}
        present = out.names("articles")
        stale = [
            s.id
            for s in stamps
            if not s.deleted
            and (known.get(s.id) != fingerprints[s.id] or f"{s.slug}.html" not in present)
        ]
        for start in range(0, len(stale), 500):
            for article in queries.by_ids(stale[start : start + 500]):
                self._article_page(out, article, slugs)
        gone: dict[str, str] = {}
        for stamp in stamps:
            if stamp.deleted:
                # removed, not rewritten: a plain static server then says 404, never the text
                out.remove(article_path(stamp.slug))
                found = deleted.get(stamp.id)
                gone[article_path(stamp.slug)] = found.at.isoformat() if found else ""
        out.write(GONE_PAGES, _json_bytes(gone))
        out.write(PAGES_STATE, _json_bytes(fingerprints))
        return len(stale)

    def _article_page(self, out: OutputDir, article: Article, slugs: dict[str, str]) -> None:
        zone = self.settings.zone
        slug = slugs.get(article.category, category_slug(article.category))
        html = render(
            self.environment,
            "article.html.j2",
            article=article,
            page_language=article.language or self.settings.site.language or "en",
            published=article.published.astimezone(zone),
            updated=article.updated.astimezone(zone),
            category_feed=f"../{href(category_path(slug))}atom.xml",
            category_url=f"../{href(category_index_path(slug))}",
            canonical=self.settings.url(article_path(article.slug)),
            root="../",
            body=body_html(article.blocks),
        )
        out.write(article_path(article.slug), html.encode("utf-8"))

    def _index(
        self,
        out: OutputDir,
        latest: Sequence[Article],
        categories: Sequence[tuple[str, int]],
        slugs: dict[str, str],
    ) -> None:
        zone = self.settings.zone
        html = render(
            self.environment,
            "index.html.j2",
            articles=[
                {
                    "article": a,
                    "url": href(article_path(a.slug)),
                    "published": a.published.astimezone(zone),
                    "category_url": href(
                        category_index_path(slugs.get(a.category, category_slug(a.category)))
                    ),
                }
                for a in latest
            ],
            categories=[
                # the slug as the page prints it in its links
                {"name": name, "slug": href(slugs.get(name, category_slug(name))), "count": n}
                for name, n in categories
            ],
            canonical=self.settings.url("index.html"),
            root="",
        )
        out.write("index.html", html.encode("utf-8"))

    def _search(self, out: OutputDir, full: bool) -> None:
        """Search follows the article pages this build wrote or removed (search.py); a
        full build knows every deleted page."""
        pages = [p for p in out.log.written if p.startswith("articles/")]
        gone = [p for p in out.log.removed if p.startswith("articles/")]
        if full:
            gone = list(self._load_json(out, GONE_PAGES) or {})
        self.search.update(pages, gone, every_gone=full)

    # -- sitemap -------------------------------------------------------------------
    # sitemap/<n>.xml pages hold SITEMAP_PAGE articles each in ingest order, as archives
    # do, so a build rewrites only the pages whose articles changed; sitemap.xml indexes them

    def _sitemap_pages(self, total: int) -> int:
        return max(1, -(-total // SITEMAP_PAGE))

    def _full_sitemap(
        self, out: OutputDir, stamps: Sequence[ArticleStamp], lastmods: dict[str, str]
    ) -> None:
        count = self._sitemap_pages(len(stamps))
        for number in range(1, count + 1):
            members = stamps[(number - 1) * SITEMAP_PAGE : number * SITEMAP_PAGE]
            self._sitemap_page(out, number, [(s.slug, s.updated) for s in members if not s.deleted])
        for name in out.names("sitemap"):
            number_text = name.removesuffix(".xml")
            if number_text.isdigit() and int(number_text) > count:
                out.remove(sitemap_path(int(number_text)))
        self._sitemap_index(out, count, self._listing_sitemaps(out, lastmods))

    def _changed_sitemap(
        self,
        out: OutputDir,
        queries: SiteQueries,
        ranks: Iterable[int],
        total: int,
        lastmods: dict[str, str],
        listings_changed: bool = True,
    ) -> None:
        count = self._sitemap_pages(total)
        for number in sorted({rank // SITEMAP_PAGE + 1 for rank in ranks} | {count}):
            offset = (number - 1) * SITEMAP_PAGE
            self._sitemap_page(out, number, queries.live_slugs(offset, SITEMAP_PAGE, total))
        listings = self._listing_sitemap_count(lastmods)
        # thousands of listing URLs: rendered again only when one of them changed
        if listings_changed or not out.path(sitemap_listing_path(listings)).is_file():
            listings = self._listing_sitemaps(out, lastmods)
        self._sitemap_index(out, count, listings)

    def _sitemap_page(self, out: OutputDir, number: int, pages: Sequence[tuple[str, str]]) -> None:
        url = self.settings.url
        entries = [(url(article_path(slug)), _date_of(updated)) for slug, updated in pages]
        out.write(sitemap_path(number), feeds.sitemap(entries))

    def _listing_sitemaps(self, out: OutputDir, lastmods: dict[str, str]) -> int:
        """sitemap/listings-<n>.xml: the index, archive and category pages that list
        articles, each with the newest change among them; returns how many files."""
        url = self.settings.url
        entries: list[tuple[str, str | None]] = [
            ("index.html", max(lastmods.values(), default=None))
        ]
        entries += sorted(lastmods.items())
        count = self._listing_sitemap_count(lastmods)
        for number in range(1, count + 1):
            chunk = entries[(number - 1) * LISTING_SITEMAP : number * LISTING_SITEMAP]
            document = feeds.sitemap([(url(path), lastmod) for path, lastmod in chunk])
            out.write(sitemap_listing_path(number), document)
        for name in out.names("sitemap"):
            number_text = name.removeprefix("listings-").removesuffix(".xml")
            if name.startswith("listings-") and number_text.isdigit() and int(number_text) > count:
                out.remove(sitemap_listing_path(int(number_text)))
        return count

    @staticmethod
    def _listing_sitemap_count(lastmods: dict[str, str]) -> int:
        """How many sitemap/listings-<n>.xml files: the index page, then every listing page."""
        return max(1, -(-(len(lastmods) + 1) // LISTING_SITEMAP))

    def _sitemap_index(self, out: OutputDir, count: int, listings: int) -> None:
        urls = [self.settings.url(sitemap_listing_path(n)) for n in range(1, listings + 1)]
        urls += [self.settings.url(sitemap_path(n)) for n in range(1, count + 1)]
        out.write("sitemap.xml", feeds.sitemap_index(urls))

    def _static(self, out: OutputDir) -> None:
        """The style sheet, default favicon and feed.xsl (an operator's templates_dir
        copy wins), and robots.txt naming the sitemap."""
        for name, target in _STATIC_FILES:
            for folder in [self.settings.templates_dir, builtin_templates()]:
                if folder is not None and (folder / name).is_file():
                    out.write(target, (folder / name).read_bytes())
                    break
        robots = f"User-agent: *\nAllow: /\n\nSitemap: {self.settings.url('sitemap.xml')}\n"
        out.write("robots.txt", robots.encode("utf-8"))

    # -- state ---------------------------------------------------------------------

    def _fingerprint(self) -> str:
        """Changes when anything but the articles would change the output."""
        s = self.settings
        digest = hashlib.blake2b(digest_size=16)
        digest.update(
            repr(
                (STATE_VERSION, __version__, s.base_url, s.timezone, s.site, s.feeds, hub_urls(s))
            ).encode()
        )
        for name in _TEMPLATES:
            for folder in [s.templates_dir, builtin_templates()]:
                if folder is not None and (folder / name).is_file():
                    digest.update((folder / name).read_bytes())
                    break
        return digest.hexdigest()

    def _load_state(self, out: OutputDir) -> dict[str, Any] | None:
        state = self._load_json(out, STATE)
        if state is None or state.get("fingerprint") != self._fingerprint():
            return None
        return state

    @staticmethod
    def _load_json(out: OutputDir, relative: str) -> dict[str, Any] | None:
        data = out.read(relative)
        if data is None:
            return None
        try:
            loaded = json.loads(data)
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def _save_state(self, out: OutputDir, state: dict[str, Any]) -> None:
        state["fingerprint"] = self._fingerprint()
        out.write(STATE, _json_bytes(state))


def _lastmod(article: Article | ListedArticle) -> str:
    """A page's sitemap lastmod from an article: its UTC date."""
    return article.updated.astimezone(UTC).date().isoformat()


def _date_of(stored: str) -> str | None:
    """The UTC date of a datetime as the database prints it (naive: UTC, as stored)."""
    try:
        when = datetime.fromisoformat(stored)
    except ValueError:
        return stored[:10] or None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).date().isoformat()


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
