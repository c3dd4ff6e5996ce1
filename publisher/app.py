"""The use cases, wired to the adapters. The CLI and the scheduler call only this."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from publisher.boilerplate import BoilerplateEditor, Kept
from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.inbox import Inbox, safe_name
from publisher.ingest import Ingestor, IngestReport
from publisher.model import Article, ConsentEvent, FileOutcome, RemovedBlock, Subscriber
from publisher.preferences import PreferenceCentre
from publisher.site import BuildResult, ChangeReport, SiteBuilder
from publisher.store import Articles, Store
from publisher.subscribers import ImportReport, SubscriberAdmin
from publisher.subscribing import Subscriptions
from publisher.watch import finished_files

if TYPE_CHECKING:  # typing only: these load when a command needs them
    from publisher.deleting import ArticleDeleter, Deleted, Restored
    from publisher.doctor import Check
    from publisher.inbound import InboundMail
    from publisher.sending.claiming import ClaimingSender
    from publisher.sending.reports import DigestReport
    from publisher.sending.runs import DigestSender
    from publisher.store.claims import RunProgress
    from publisher.web import BaseRoute
    from publisher.websubbing import FeedAnnouncer, WebSub

__all__ = ["App", "run_until_signal"]

log = logging.getLogger("publisher")
T = TypeVar("T")


class App:
    """One per process: owns the store connection pool and the dedup index."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        """`read_only`: the store is opened to read only (see Store), for commands that
        must create and change nothing."""
        self.settings = settings
        self.read_only = read_only
        self._store: Store | None = None
        self._ingestor: Ingestor | None = None
        self._site: SiteBuilder | None = None  # feeds and pages
        self._subscriber_admin: SubscriberAdmin | None = None
        self._subscriptions: Subscriptions | None = None  # the web's
        self._preferences: PreferenceCentre | None = None  # the web's
        self._sender: DigestSender | None = None  # digests
        self._inbound: InboundMail | None = None  # bounces, complaints, mailto unsubscribes
        self._websub: WebSub | None = None
        self._announcer: FeedAnnouncer | None = None  # changed feeds, for the hubs

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(
                self.settings.database_url,
                busy_timeout=self.settings.database_busy_timeout,
                read_only=self.read_only,
            )
        return self._store

    @property
    def ingestor(self) -> Ingestor:
        if self._ingestor is None:
            self._ingestor = Ingestor(self.settings, self.store)
        return self._ingestor

    def close(self) -> None:
        if self._websub is not None:
            self._websub.close()
        if self._store is not None:
            self._store.close()

    # -- articles --------------------------------------------------------------

    def seed_inbox(self) -> int:
        """First run: copy the seed articles into a missing or empty inbox if nothing is stored.

        `run`, `watch` and `ingest` without paths call it, so a fresh checkout shows the
        five seeds whichever command comes first.
        """
        seeds, inbox = self.settings.seeds_dir, Inbox(self.settings.inbox)
        if seeds is None or not seeds.is_dir():
            return 0
        if next(inbox.files(), None):
            return 0
        with self.store.read() as connection:
            if Articles(connection).count():
                return 0
        copied = inbox.seed(seeds)
        if copied:
            log.info("first run: seeded %s with %d articles from %s", inbox.folder, copied, seeds)
        return copied

    def ingest(
        self,
        paths: Sequence[Path] | None = None,
        progress: Callable[[int, int], None] | None = None,
        now: Callable[[], datetime] | None = None,
        *,
        missing_ok: bool = False,  # the watcher's files may vanish meanwhile
    ) -> IngestReport:
        for path in paths or ():
            if not missing_ok and not path.exists():
                raise PublisherError(f"no such file or folder: {path}")
        kwargs = {"now": now} if now is not None else {}
        report = self.ingestor.ingest(list(paths) if paths else None, progress=progress, **kwargs)
        if report.changed or self.site.build_owed():
            self.after_ingest(report)
        return report

    def after_ingest(self, report: IngestReport) -> None:
        """The 'changed' hook: runs after every ingest that added or updated articles, or
        when a build is owed (an earlier ingest was killed before it built: a full one)."""
        try:
            self.build_feeds(report)
        except PublisherError as exc:  # a known fault is one line, no traceback
            log.error("rebuilding the feeds failed: %s", exc.message)
        except Exception:
            # the articles are stored; a failed rebuild must not stop the watcher,
            # and the next change (or `publisher build`) writes everything again
            log.exception("rebuilding the feeds failed")

    def articles(
        self, *, category: str | None = None, search: str | None = None, limit: int | None = None
    ) -> list[Article]:
        """Newest first; `category` and `search` (title, slug or id) ignore case."""
        with self.store.read() as connection:
            return Articles(connection).matching(category=category, search=search, limit=limit)

    def article(self, reference: str) -> Article:
        """By id or slug, or a unique prefix of either (BadReference otherwise)."""
        from publisher.deleting import find_article

        return find_article(self.store, reference)

    @property
    def deleter(self) -> ArticleDeleter:
        from publisher.deleting import ArticleDeleter

        return ArticleDeleter(self.settings, self.store)

    def delete_articles(self, references: Sequence[str]) -> list[Deleted]:
        """Unpublish articles (see deleting.py), then rebuild what showed them."""
        done = self.deleter.delete(references)
        if any(not d.already for d in done) or self.site.build_owed():
            self.build_feeds()
        return done

    def restore_article(self, reference: str) -> Restored:
        """Publish a deleted article again, then rebuild."""
        restored = self.deleter.restore(reference)
        self.build_feeds()
        return restored

    # -- boilerplate -------------------------------------------------------------

    def removed_boilerplate(self) -> list[RemovedBlock]:
        """Every block removed as boilerplate, with its rule and articles."""
        return BoilerplateEditor(self.store).removed()

    def keep_boilerplate(self, wanted: str) -> tuple[Kept, BuildResult]:
        """Put a block (its text, or a unique prefix of its key) back into every article
        it was removed from, never to be removed again; rebuild what shows them."""
        kept = BoilerplateEditor(self.store).keep(wanted, datetime.now(UTC))
        return kept, self.build_feeds(kept)

    # -- feeds and pages ---------------------------------------------------------

    @property
    def site(self) -> SiteBuilder:
        if self._site is None:
            self._site = SiteBuilder(self.settings, self.store)
        return self._site

    def build_feeds(self, report: ChangeReport | None = None) -> BuildResult:
        """Write feeds, archives and pages; None: a full build, else only what changed."""
        try:
            result = self.site.build(report)
        except OSError as exc:  # read-only or full output folder
            raise output_error(self.settings.output_dir, exc) from exc
        if self.websub_enabled:
            from publisher.websub import changed_topics

            self.announcer.changed(changed_topics(result.written))
        return result

    # -- WebSub ------------------------------------------------------------------

    @property
    def websub_enabled(self) -> bool:
        return bool(self.settings.websub.hub_urls or self.settings.websub.builtin)

    @property
    def websub(self) -> WebSub:
        """The WebSub publisher and built-in hub."""
        if self._websub is None:
            from publisher.websubbing import WebSub

            self._websub = WebSub(self.settings, self.store)
        return self._websub

    @property
    def announcer(self) -> FeedAnnouncer:
        """Feeds the builds changed, announced to the hubs (see websubbing.py)."""
        if self._announcer is None:
            from publisher.websubbing import FeedAnnouncer

            self._announcer = FeedAnnouncer(self.websub)
        return self._announcer

    async def announce_feeds(self, stop: asyncio.Event) -> None:
        """`run` / `watch`: announce every changed feed in the background until `stop`."""
        if self.websub_enabled:
            await self.announcer.run(stop)

    def announce_pending(self, timeout: float = 5.0) -> None:
        """One-shot commands: announce what this process built, one try, within `timeout`."""
        if self._announcer is not None:
            self._announcer.flush(timeout)

    def web_routes(self) -> list[BaseRoute]:
        """Dynamic routes mounted before the static files (subscribe, confirm, unsubscribe,
        preferences, provider webhooks, the built-in WebSub hub)."""
        from publisher.inbound import ProviderFeedback, WebhookReplays
        from publisher.web.hub import hub_routes
        from publisher.web.preferences import preference_routes
        from publisher.web.subscriptions import subscription_routes
        from publisher.web.webhooks import webhook_routes

        return [
            *subscription_routes(self.settings, self.subscriptions),
            *webhook_routes(
                self.settings,
                ProviderFeedback(self.subscriber_admin),
                WebhookReplays(self.settings, self.store),
            ),
            *preference_routes(self.settings, self.preferences, self.subscriptions.preview),
            *(hub_routes(self.websub) if self.settings.websub.builtin else []),
        ]

    # -- subscribers and digests ----------------------------------------------------

    @property
    def subscriber_admin(self) -> SubscriberAdmin:
        """The operator's subscriber tools (add, remove, list, CSV)."""
        if self._subscriber_admin is None:
            self._subscriber_admin = SubscriberAdmin(self.settings, self.store)
        return self._subscriber_admin

    @property
    def subscriptions(self) -> Subscriptions:
        """The web's subscription service (double opt-in, confirm, unsubscribe)."""
        if self._subscriptions is None:
            self._subscriptions = Subscriptions(self.settings, self.store)
        return self._subscriptions

    @property
    def preferences(self) -> PreferenceCentre:
        """The web's preference centre (categories, frequency, pause, data, delete me)."""
        if self._preferences is None:
            self._preferences = PreferenceCentre(self.settings, self.store)
        return self._preferences

    def add_subscriber(
        self,
        email: str,
        *,
        name: str | None = None,
        categories: Sequence[str] = (),
        frequency: str | None = None,
        force: bool = False,
    ) -> tuple[Subscriber, bool]:
        """Add (or update) a confirmed subscriber: the operator vouches for the address
        (a suppressed address only with `force`)."""
        return self.subscriber_admin.add(
            email, name=name, categories=categories, frequency=frequency, force=force
        )

    def subscriber_history(self, email: str) -> list[ConsentEvent]:
        """Every consent event of the address, oldest first."""
        return self.subscriber_admin.history(email)

    def remove_subscriber(self, email: str) -> Subscriber | None:
        """Delete a subscriber; a suppressed one stays suppressed as a keyed hash of its
        address, and its record as it was (no name, no choices) is returned."""
        return self.subscriber_admin.remove(email)

    def subscribers(
        self, *, category: str | None = None, search: str | None = None, limit: int | None = None
    ) -> list[Subscriber]:
        """By id; `category`: who chose it or chose all; `search`: in the email or name;
        both ignore case. The categories are a JSON list, so the match is made here."""
        wanted = category.casefold() if category is not None else None
        needle = search.casefold() if search is not None else None
        found: list[Subscriber] = []
        for subscriber in self.subscriber_admin.all():
            if limit is not None and len(found) >= limit:
                break
            if _subscriber_matches(subscriber, wanted, needle):
                found.append(subscriber)
        return found

    @property
    def inbound(self) -> InboundMail:
        """Acts on mail that comes back: bounces, complaints, mailto unsubscribes."""
        if self._inbound is None:
            from publisher.inbound import InboundMail

            self._inbound = InboundMail(self.settings, self.store, self.subscriber_admin)
        return self._inbound

    def import_subscribers(self, path: Path, *, force: bool = False) -> ImportReport:
        return self.subscriber_admin.import_csv(path, force=force)

    def export_subscribers(self, stream: TextIO) -> int:
        return self.subscriber_admin.export_csv(stream)

    def send_digests(
        self,
        frequency: str | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
        out_dir: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        deliver: bool | None = None,
    ) -> DigestReport:
        """Build and send every due digest (dry run: .eml files only); see sending/runs.py.

        `deliver=False`: create the run and its rows only, for `publisher worker`s.
        """
        return asyncio.run(
            self.send_digests_async(frequency, now, dry_run, out_dir, progress, deliver)
        )

    async def send_digests_async(
        self,
        frequency: str | None = None,
        now: datetime | None = None,
        dry_run: bool = False,
        out_dir: Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        deliver: bool | None = None,
    ) -> DigestReport:
        """The same inside a running loop (scheduler, `publisher run`)."""
        return await self.sender.send(
            frequency, now, dry_run=dry_run, out_dir=out_dir, progress=progress, deliver=deliver
        )

    @property
    def sender(self) -> DigestSender:
        """Digest runs: fan-out, the producer, the dry run."""
        if self._sender is None:
            from publisher.sending.pacing import DatabasePacer
            from publisher.sending.runs import DigestSender

            pacer = DatabasePacer(self.settings.pacing, self.store)
            self._sender = DigestSender(self.settings, self.store, pacer=pacer)
        return self._sender

    # -- scale-out workers ---------------------------------------------------------

    def worker(
        self,
        concurrency: int | None = None,
        on_progress: Callable[[RunProgress, ClaimingSender], None] | None = None,
    ) -> ClaimingSender:
        """A `publisher worker` (PostgreSQL only; ConfigError on SQLite): `async with` it."""
        from publisher.sending.claiming import ClaimingSender, require_shared_database

        require_shared_database(self.store)
        sender = self.sender
        return ClaimingSender(
            sender.producer, concurrency=concurrency, on_progress=on_progress, pacer=sender.pacer
        )

    def status(self, now: datetime | None = None) -> dict[str, Any]:
        """What `publisher status` shows (see status.py); reads only, creates nothing.
        `now`: the moment whose day the warm-up figures are for (default: the clock)."""
        from publisher.status import gather_status

        return gather_status(self.settings, lambda: self.store, now)

    def doctor(self, *, probe: bool = True) -> list[Check]:
        """`publisher doctor`'s checks (see doctor.py); reads only, creates nothing."""
        from publisher.doctor import run_checks
        from publisher.resolver import Resolver

        return run_checks(
            self.settings, Resolver(self.settings.doctor), lambda: self.store, probe=probe
        )

    # -- watching --------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """Ingest every file that lands in the inbox, once its writer has finished, until
        `stop` is set."""
        inbox = self.ingestor.inbox
        self.settings.inbox.mkdir(parents=True, exist_ok=True)
        log.info("watching %s", self.settings.inbox)
        await asyncio.to_thread(self._catch_up)

        def wanted(path: Path) -> bool:
            # a quarantined file that changes may be a stalled upload completed there
            return inbox.is_candidate(path) or inbox.is_quarantined(path)

        watching = self.settings.watch
        async for batch in finished_files(
            self.settings.inbox,
            wanted,
            stop,
            settle=watching.settle_seconds,
            backend=watching.backend.value,
        ):
            files = [path for path in batch if not inbox.is_quarantined(path)]
            if len(files) < len(batch):
                await asyncio.to_thread(inbox.release_finished)  # they come back as events
            if not files:
                continue
            # a settled file can be gone by now (a concurrent `publisher
            # ingest` quarantined it); that must not stop the watcher, and so `publisher run`
            report = await asyncio.to_thread(self.ingest, files, missing_ok=True)
            for result in report.results:
                if result.outcome is not FileOutcome.UNCHANGED:
                    log.info("%s %s: %s", result.outcome, result.file, safe_name(result.detail))

    def _catch_up(self) -> None:
        """Before watching: quarantined files completed since go back, an owed build is done."""
        self.ingestor.inbox.release_finished()
        if self.site.build_owed():
            self.after_ingest(IngestReport())


def _subscriber_matches(subscriber: Subscriber, category: str | None, needle: str | None) -> bool:
    """`category` and `needle` are casefolded; no categories chosen means every category."""
    chosen = {c.casefold() for c in subscriber.categories}
    if category is not None and chosen and category not in chosen:
        return False
    if needle is None:
        return True
    return any(needle in value.casefold() for value in (subscriber.email, subscriber.name or ""))


def output_error(folder: Path, exc: OSError) -> PublisherError:
    """A failed write into the output folder, as one line with a fix-it hint.

    Every file is replaced atomically, so whatever was there before is still whole.
    """
    where = f" ({exc.filename})" if exc.filename else ""
    return PublisherError(
        f"cannot write the feeds into {folder}: {exc.strerror or exc}{where}",
        "the files already there are unchanged; free some space or fix the folder's "
        "permissions, then run `publisher build`",
    )


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `main(stop)` in a fresh loop; SIGINT/SIGTERM set `stop` for a clean exit."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await main(stop)

    return asyncio.run(runner())
