"""The one message producer: ledger rows -> personalized digest messages.

Every sender feeds it pages of (row, subscriber): the single-process send reads them in id
order, a claiming sender claims them, the dry run makes them up from who is due. Each
distinct content (frequency, categories, articles) is rendered once and then
personalized per recipient; rows of people who left meanwhile are closed, not sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from publisher.config import Settings
from publisher.links import article_path, unsubscribe_path
from publisher.mailer import Outgoing
from publisher.messages import (
    PreparedDigest,
    personalize,
    prepare_digest,
    sender_address,
    unsubscribe_mailto,
)
from publisher.model import Article, Delivery, Subscriber, SubscriberStatus
from publisher.render import template_environment
from publisher.sending.reports import DigestReport
from publisher.store import Articles, Store
from publisher.store.ledger import LedgerRows
from publisher.tokens import UNSUBSCRIBE, Tokens

__all__ = ["DigestProducer", "Page", "Produced"]

Page = list[tuple[Delivery, Subscriber]]
RENDERED_KEPT = 512  # distinct digest contents kept rendered


@dataclass(frozen=True, slots=True)
class Produced:
    outgoing: Outgoing
    prepared: PreparedDigest


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
    def tokens(self) -> Tokens:
        return Tokens(self.settings.secret_key)

    @functools.cached_property
    def mailto_prefix(self) -> str:
        """The List-Unsubscribe mailto before its token: the From address parsed once."""
        return unsubscribe_mailto(self.settings, "")

    def article_url(self, article: Article) -> str:
        return self.settings.url(article_path(article.slug))

    def render(
        self,
        cache: OrderedDict[tuple[Any, ...], PreparedDigest],
        subscriber: Subscriber,
        articles: Sequence[Article],
        as_of: datetime,
        report: DigestReport,
    ) -> PreparedDigest:
        """Rendered once per distinct content (frequency, categories, articles)."""
        key = (subscriber.frequency, subscriber.categories, tuple(a.id for a in articles))
        prepared = cache.get(key)
        if prepared is None:
            prepared = prepare_digest(
                self.environment,
                self.settings,
                articles=articles,
                frequency=subscriber.frequency.value,
                categories=subscriber.categories,
                as_of=as_of,
                article_url=self.article_url,
            )
            report.digests_rendered += 1
            report.render_seconds += prepared.render_seconds
            cache[key] = prepared
            if len(cache) > RENDERED_KEPT:
                cache.popitem(last=False)
        return prepared

    def message(self, prepared: PreparedDigest, subscriber: Subscriber, message_id: str) -> bytes:
        token = self.tokens.make(UNSUBSCRIBE, subscriber.id, subscriber.email)
        return personalize(
            prepared,
            to_name=subscriber.name,
            to_address=subscriber.email,
            message_id=message_id,
            unsubscribe_url=self.settings.url(unsubscribe_path(token)),
            unsubscribe_mail=self.mailto_prefix + token,
        )

    async def produce(
        self,
        pages: AsyncIterator[Page],
        as_of: datetime,
        report: DigestReport,
        articles: dict[str, Article],
    ) -> AsyncIterator[Produced]:
        """The rows as messages, a page at a time (memory stays flat)."""
        sender = sender_address(self.settings)
        cache: OrderedDict[tuple[Any, ...], PreparedDigest] = OrderedDict()
        async for page in pages:
            gone: list[int] = []
            for delivery, subscriber in page:
                if subscriber.status is not SubscriberStatus.CONFIRMED:
                    gone.append(delivery.id)
                    continue
                missing = [i for i in delivery.article_ids if i not in articles]
                if missing:
                    articles.update(await asyncio.to_thread(self._load_articles, missing))
                chosen = [articles[i] for i in delivery.article_ids if i in articles]
                prepared = self.render(cache, subscriber, chosen, as_of, report)
                data = self.message(prepared, subscriber, delivery.message_id)
                outgoing = Outgoing(
                    delivery.id, sender, subscriber.email, data, delivery.message_id
                )
                yield Produced(outgoing, prepared)
            if gone:
                await asyncio.to_thread(self._abandon, gone)

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

    def _load_articles(self, ids: Iterable[str]) -> dict[str, Article]:
        found: dict[str, Article] = {}
        with self.store.read() as connection:
            for article_id in ids:
                article = Articles(connection).get(article_id)
                if article is not None:
                    found[article.id] = article
        return found

    def _abandon(self, ids: list[int]) -> None:
        with self.store.begin() as connection:
            LedgerRows(connection).abandon(ids, "subscriber no longer confirmed", self.clock())
