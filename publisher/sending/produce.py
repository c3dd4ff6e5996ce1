"""The one message producer: ledger rows -> personalized digest messages.

Every sender feeds it pages of (row, subscriber): the single-process send reads them in id
order, a claiming sender claims them, the dry run makes them up from who is due. Each
distinct content (frequency, categories, articles, corrections) is rendered once and then
personalized per recipient; rows of people who left meanwhile are closed, not sent.

A row holds the new articles chosen at fan-out; the "updated since your last digest"
section is found here, a page at a time, from what the store says was sent to whom and
when each article was corrected up to the run's `as_of`, so a resumed row lists the same.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from publisher import digest as selection
from publisher.config import Settings
from publisher.links import article_path, preferences_path, unsubscribe_path
from publisher.mailer import Outgoing
from publisher.messages import (
    PreparedDigest,
    envelope_sender,
    personalize,
    prepare_digest,
    render_web_copy,
    subject_line,
    unsubscribe_mailto,
)
from publisher.model import Article, Delivery, Subscriber, SubscriberStatus
from publisher.render import template_environment
from publisher.sending.archive import WebArchive, WebCopy
from publisher.sending.reports import DigestReport
from publisher.store import Articles, Store
from publisher.store.deletions import Deletions
from publisher.store.ledger import LedgerRows
from publisher.store.runs import DigestRuns
from publisher.tokens import PREFERENCES, UNSUBSCRIBE, Tokens
from publisher.webcopies import ArchivedDigest, copy_id

__all__ = ["DigestProducer", "Page", "Produced"]

Page = list[tuple[Delivery, Subscriber]]
RENDERED_KEPT = 512  # distinct digest contents kept rendered


@dataclass(frozen=True, slots=True)
class Produced:
    outgoing: Outgoing
    prepared: PreparedDigest


@dataclass(slots=True)
class CorrectionsFound:
    """What one `produce` call has read of the corrections up to its `as_of`: the latest
    correction time of each article corrected in (since, as_of]."""

    since: datetime | None = None
    at: dict[str, datetime] = field(default_factory=dict)


class DigestProducer:
    """Renders and personalizes digests for the rows it is given; one per process."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock

    @functools.cached_property
    def environment(self) -> Any:
        return template_environment(self.settings)

    @functools.cached_property
    def archive(self) -> WebArchive:
        """The web copies of what this process sends (the senders' ledgers publish them)."""
        return WebArchive(self.settings, self.environment)

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings.secret_key)

    @functools.cached_property
    def mailto_prefix(self) -> str | None:
        """The List-Unsubscribe mailto before its token (None: off), the From parsed once."""
        return unsubscribe_mailto(self.settings, "")

    def article_url(self, article: Article) -> str:
        return self.settings.url(article_path(article.slug))

    def render(
        self,
        cache: OrderedDict[tuple[Any, ...], tuple[PreparedDigest, WebCopy | None]],
        subscriber: Subscriber,
        articles: Sequence[Article],
        as_of: datetime,
        report: DigestReport,
        corrected: Sequence[Article] = (),
        *,
        run_id: int | None = None,
    ) -> tuple[PreparedDigest, WebCopy | None]:
        """Rendered once per distinct content (frequency, categories, articles, corrections),
        with its web copy when it belongs to run `run_id` (a preview has none: its
        "View in browser" link shows the archive)."""
        key = (
            subscriber.frequency.value,
            subscriber.categories,
            tuple(a.id for a in articles),
            tuple(a.id for a in corrected),
        )
        found = cache.get(key)
        if found is None:
            web: WebCopy | None = None
            view_url = self.archive.index_url
            if run_id is not None:
                # the copy names nobody's categories: equal articles, one copy
                name = self._copy_name(run_id, (key[0], key[2], key[3]))
                view_url = self.archive.url(name)
                web = self.archive.waiting(name)
                if web is None and not self.archive.written(name):
                    web = self._web_copy(name, run_id, articles, corrected, as_of, subscriber)
            prepared = prepare_digest(
                self.environment,
                self.settings,
                articles=articles,
                corrected=corrected,
                frequency=subscriber.frequency.value,
                categories=subscriber.categories,
                as_of=as_of,
                article_url=self.article_url,
                view_url=view_url,
            )
            report.digests_rendered += 1
            report.render_seconds += prepared.render_seconds
            found = cache[key] = (prepared, web)
            if len(cache) > RENDERED_KEPT:
                cache.popitem(last=False)
        return found

    def _copy_name(self, run_id: int, content: tuple[Any, ...]) -> str:
        self.tokens  # noqa: B018 - refuses an unset secret_key, as every signed link does
        return copy_id(self.settings.secret_key or "", run_id, content)

    def _web_copy(
        self,
        name: str,
        run_id: int,
        articles: Sequence[Article],
        corrected: Sequence[Article],
        as_of: datetime,
        subscriber: Subscriber,
    ) -> WebCopy:
        frequency = subscriber.frequency.value
        page = render_web_copy(
            self.environment,
            self.settings,
            articles=articles,
            corrected=corrected,
            frequency=frequency,
            as_of=as_of,
            article_url=self.article_url,
            archive_url=self.archive.index_url,
        )
        lead = [a.title for a in articles[:3]]
        record = ArchivedDigest(
            id=name,
            run_id=run_id,
            subject=subject_line(
                self.settings, frequency, len(articles), as_of, lead[0] if lead else ""
            ),
            frequency=frequency,
            as_of=as_of,
            count=len(articles),
            headlines=tuple(lead),
        )
        return WebCopy(record, page)

    def message(
        self,
        prepared: PreparedDigest,
        subscriber: Subscriber,
        message_id: str,
        *,
        preview: bool = False,
    ) -> bytes:
        """The recipient's message, without Date (the mailer stamps it at hand-off). In a
        `preview` every link carries an inert preview token: clicking around in a dry run's
        .eml files, or a mail client's one-click POST to its List-Unsubscribe, unsubscribes
        nobody."""
        if preview:
            token = self.tokens.make_preview(UNSUBSCRIBE, subscriber.id, subscriber.email)
            choices = self.tokens.make_preview(PREFERENCES, subscriber.id, subscriber.email)
        else:
            token = self.tokens.make(UNSUBSCRIBE, subscriber.id, subscriber.email)
            choices = self.tokens.make(PREFERENCES, subscriber.id, subscriber.email)
        return personalize(
            prepared,
            to_name=subscriber.name,
            to_address=subscriber.email,
            message_id=message_id,
            unsubscribe_url=self.settings.url(unsubscribe_path(token)),
            unsubscribe_mail=None if self.mailto_prefix is None else self.mailto_prefix + token,
            preferences_url=self.settings.url(preferences_path(choices)),
        )

    @functools.cached_property
    def from_sender(self) -> str:
        """The envelope sender without VERP: the From address, parsed once, not per message."""
        return envelope_sender(self.settings, None)

    def sender(self, subscriber: Subscriber, delivery: Delivery) -> str:
        """The envelope sender: a VERP address naming this delivery when bounces are read."""
        if not self.settings.smtp.bounce_address:
            return self.from_sender
        return envelope_sender(self.settings, self.tokens.bounce(subscriber.id, delivery.id))

    async def produce(
        self,
        pages: AsyncIterator[Page],
        as_of: datetime,
        report: DigestReport,
        articles: dict[str, Article],
        *,
        preview: bool = False,
    ) -> AsyncIterator[Produced]:
        """The rows as messages, a page at a time (memory stays flat). A `preview`'s rows
        exist only in memory: its links are inert and no row is closed."""
        cache: OrderedDict[tuple[Any, ...], tuple[PreparedDigest, WebCopy | None]] = OrderedDict()
        found = CorrectionsFound()
        async for page in pages:
            gone: list[int] = []
            emptied: list[int] = []
            corrections = await asyncio.to_thread(self._corrections, page, as_of, found, articles)
            # an article deleted after the fan-out (or while this page waited) is not sent
            deleted = await asyncio.to_thread(self._deleted)
            for delivery, subscriber in page:
                if subscriber.status is not SubscriberStatus.CONFIRMED:
                    gone.append(delivery.id)
                    continue
                missing = [i for i in delivery.article_ids if i not in articles]
                if missing:
                    articles.update(await asyncio.to_thread(self._load_articles, missing))
                chosen = [
                    articles[i] for i in delivery.article_ids if i in articles and i not in deleted
                ]
                if not chosen:
                    if not preview:
                        emptied.append(delivery.id)
                    continue
                corrected = [a for a in corrections.get(delivery.id, ()) if a.id not in deleted]
                prepared, web = self.render(
                    cache,
                    subscriber,
                    chosen,
                    as_of,
                    report,
                    corrected,
                    run_id=None if preview else delivery.run_id,
                )
                if web is not None:
                    self.archive.expect(delivery.id, web)
                data = self.message(prepared, subscriber, delivery.message_id, preview=preview)
                outgoing = Outgoing(
                    delivery.id,
                    self.sender(subscriber, delivery),
                    subscriber.email,
                    data,
                    delivery.message_id,
                    stamp_date=True,
                )
                yield Produced(outgoing, prepared)
            if gone and not preview:
                await asyncio.to_thread(self._abandon, gone)
            if emptied:
                await asyncio.to_thread(
                    self._abandon, emptied, "nothing left to send: its articles were deleted"
                )

    async def messages(
        self,
        pages: AsyncIterator[Page],
        as_of: datetime,
        report: DigestReport,
        articles: dict[str, Article],
    ) -> AsyncIterator[Outgoing]:
        """`produce`, as the mailer takes it."""
        async for produced in self.produce(pages, as_of, report, articles):
            yield produced.outgoing

    def _corrections(
        self, page: Page, as_of: datetime, found: CorrectionsFound, articles: dict[str, Article]
    ) -> dict[int, tuple[Article, ...]]:
        """Each row's corrected articles (by row id); none when the setting is off."""
        if not self.settings.digest.include_corrections or not page:
            return {}
        people = [s for _, s in page if s.status is SubscriberStatus.CONFIRMED]
        if not people:
            return {}
        since = min(selection.window_start(s, as_of) for s in people)
        with self.store.read() as connection:
            runs = DigestRuns(connection)
            if found.since is None or since < found.since:
                found.at = runs.corrected_between(since, as_of)
                found.since = since
            if not found.at:
                return {}
            sent = runs.sent_as_of([s.id for s in people], found.at)
            missing = {i for ids in sent.values() for i in ids} - set(articles)
            for article_id in missing:
                article = Articles(connection).get(article_id)
                if article is not None:
                    articles[article.id] = article
        result: dict[int, tuple[Article, ...]] = {}
        for delivery, subscriber in page:
            if subscriber.id in sent:
                theirs = sent[subscriber.id]
                result[delivery.id] = selection.corrections(
                    (
                        selection.Correction(articles[i], found.at[i])
                        for i in theirs
                        if i in articles
                    ),
                    subscriber,
                    as_of,
                    sent=theirs,
                    exclude=delivery.article_ids,
                )
        return result

    def _load_articles(self, ids: Iterable[str]) -> dict[str, Article]:
        with self.store.read() as connection:
            return {article.id: article for article in Articles(connection).by_ids(list(ids))}

    def _deleted(self) -> frozenset[str]:
        with self.store.read() as connection:
            return Deletions(connection).ids()

    def _abandon(self, ids: list[int], reason: str = "subscriber no longer confirmed") -> None:
        with self.store.begin() as connection:
            LedgerRows(connection).abandon(ids, reason, self.clock())
