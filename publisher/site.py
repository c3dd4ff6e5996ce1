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
page's entries, or every later page would shift.

A deleted article (store/deletions.py) is in no feed, page or listing; its page file is
removed and named in GONE_PAGES, which the web server answers 410 Gone; the Atom feeds
(the site's and its category's) carry an RFC 6721 tombstone for it for
`feeds.tombstone_days`.

A small state file (`.build/state.json`, never served) remembers fingerprints so a full
build re-renders only what changed and an incremental build knows which category feeds
held a changed article.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from publisher import __version__, feeds
from publisher.body import body_html
from publisher.config import Settings
from publisher.errors import StoreError
from publisher.feeds import Archive, Channel, Entry, Tombstone, category_slug
from publisher.links import (
    GONE_PAGES,
    archive_path,
    article_path,
    category_path,
    href,
    sitemap_path,
)
from publisher.model import Article
from publisher.output import OutputDir
from publisher.render import builtin_templates, render, template_environment
from publisher.store import Store
from publisher.store.builds import SiteBuilds
from publisher.store.deletions import Deletion, Deletions
from publisher.store.pages import ArticleStamp, SiteQueries
from publisher.websub import hub_urls

__all__ = ["BuildResult", "ChangeReport", "ChangedArticle", "SiteBuilder", "category_slugs"]

log = logging.getLogger("publisher.site")

STATE = ".build/state.json"
PAGES_STATE = ".build/pages.json"
STATE_VERSION = 2
# removals recorded by a writer that committed after our last build may carry a
# slightly older timestamp; look back this far so none is missed
REMOVAL_LOOKBACK = timedelta(minutes=5)
SITEMAP_PAGE = 1000  # article pages per sitemap/<n>.xml (the protocol allows 50,000)
_TEMPLATES = ("base.html.j2", "index.html.j2", "article.html.j2", "static/style.css")


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
            result.rendered += self._full_pages(out, queries, stamps, slugs, deleted)
            self._index(out, latest, queries.categories(include_deleted=False), slugs)
            self._full_sitemap(out, stamps)
        self._static(out)
        self._save_state(
            out,
            {
                "categories": held,
                "category_names": names,
                "archives": archives,
                "archived": archived,
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
            wanted = {a.category for a in found}
            wanted |= {name for name, slug in slugs.items() if changed & set(held.get(slug, ()))}
            for name in sorted(wanted):
                slug = slugs.get(name, category_slug(name))
                in_category = queries.latest(self.limit, category=name)
                gone = self._tombstones(d for d in deleted.values() if d.category == name)
                self._category_feeds(out, name, slug, in_category, gone)
                held[slug] = [a.id for a in in_category]
            names = self._emptied_categories(out, state, slugs, held)
            # archives holding a changed article, and the pages that filled up since
            ranks = list(queries.ranks(changed, total).values())
            numbers = {rank // self.size + 1 for rank in ranks}
            numbers |= set(range(int(state.get("archived", 0)) + 1, archived + 1))
            archives: dict[str, str] = state.get("archives", {})
            for number in sorted(n for n in numbers if n <= archived):
                self._archive_page(out, queries, number, total=total)
                archives.pop(str(number), None)  # next full build re-checks it
            for article in found:
                self._article_page(out, article, slugs)
                result.rendered += 1
            self._index(out, latest, queries.categories(include_deleted=False), slugs)
            self._changed_sitemap(out, queries, ranks, total)
        state.update(
            categories=held,
            category_names=names,
            archives=archives,
            archived=archived,
            removal_mark=(newest_removal.isoformat() if newest_removal else mark),
        )
        self._save_state(out, state)
        return result

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
            **extra,
        )

    def _entries(self, found: Sequence[Article]) -> list[Entry]:
        return [Entry(a, self.settings.url(article_path(a.slug))) for a in found]

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
        newest_archive = self.settings.url(archive_path(archived)) if archived else None
        channel = self._channel(
            site.title, site.subtitle, "", prev_archive=newest_archive, tombstones=tombstones
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
        # an archive document's self link is the page itself
        channel = Channel(
            **{
                **{name: getattr(channel, name) for name in Channel.__slots__},
                "atom_url": url(archive_path(number)),
                "hubs": (),  # no topic: an archive page never changes for a subscriber
            }
        )
        newest_first = sorted(found, key=lambda a: a.published, reverse=True)
        out.write(archive_path(number), feeds.atom(channel, self._entries(newest_first)))

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
        for number in range(1, archived + 1):
            members = stamps[(number - 1) * self.size : number * self.size]
            digest = hashlib.blake2b(str(number).encode(), digest_size=16)
            for stamp in members:
                digest.update(stamp.key)
            fingerprint = digest.hexdigest()
            fingerprints[str(number)] = fingerprint
            if known.get(str(number)) == fingerprint and f"{number}.xml" in present:
                continue
            found = queries.by_ids(s.id for s in members)
            self._archive_page(out, queries, number, found, total=len(stamps))
        return fingerprints

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
                }
                for a in latest
            ],
            categories=[
                # the slug as the page prints it in its links
                {"name": name, "slug": href(slugs.get(name, category_slug(name))), "count": n}
                for name, n in categories
            ],
            root="",
        )
        out.write("index.html", html.encode("utf-8"))

    # -- sitemap -------------------------------------------------------------------
    # sitemap/<n>.xml pages hold SITEMAP_PAGE articles each in ingest order, as archives
    # do, so a build rewrites only the pages whose articles changed; sitemap.xml indexes them

    def _sitemap_pages(self, total: int) -> int:
        return max(1, -(-total // SITEMAP_PAGE))

    def _full_sitemap(self, out: OutputDir, stamps: Sequence[ArticleStamp]) -> None:
        count = self._sitemap_pages(len(stamps))
        for number in range(1, count + 1):
            members = stamps[(number - 1) * SITEMAP_PAGE : number * SITEMAP_PAGE]
            self._sitemap_page(out, number, [s.slug for s in members if not s.deleted])
        for name in out.names("sitemap"):
            number_text = name.removesuffix(".xml")
            if number_text.isdigit() and int(number_text) > count:
                out.remove(sitemap_path(int(number_text)))
        self._sitemap_index(out, count)

    def _changed_sitemap(
        self, out: OutputDir, queries: SiteQueries, ranks: Iterable[int], total: int
    ) -> None:
        count = self._sitemap_pages(total)
        for number in sorted({rank // SITEMAP_PAGE + 1 for rank in ranks} | {count}):
            offset = (number - 1) * SITEMAP_PAGE
            self._sitemap_page(out, number, queries.live_slugs(offset, SITEMAP_PAGE, total))
        self._sitemap_index(out, count)

    def _sitemap_page(self, out: OutputDir, number: int, slugs: Sequence[str]) -> None:
        url = self.settings.url
        pages = [url(article_path(slug)) for slug in slugs]
        if number == 1:
            pages.insert(0, url("index.html"))
        out.write(sitemap_path(number), feeds.sitemap(pages))

    def _sitemap_index(self, out: OutputDir, count: int) -> None:
        urls = [self.settings.url(sitemap_path(n)) for n in range(1, count + 1)]
        out.write("sitemap.xml", feeds.sitemap_index(urls))

    def _static(self, out: OutputDir) -> None:
        for folder in [self.settings.templates_dir, builtin_templates()]:
            if folder is not None and (folder / "static" / "style.css").is_file():
                out.write("static/style.css", (folder / "static" / "style.css").read_bytes())
                return

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


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
