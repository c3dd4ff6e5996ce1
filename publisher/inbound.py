"""What comes back, acted on: bounces, complaints and unsubscribes, by mail or by webhook.

One policy for every path (`POLICY`): a hard bounce suppresses (bounced), a soft one
counts toward `inbound.soft_bounce_limit`, a complaint suppresses (complained), an
unsubscribe request unsubscribes. Mail (`publisher inbound`, the `[inbound]` listener of
`publisher run`, the IMAP poller) is classified by `bounces.classify`; a provider's
webhook arrives as verified `webhooks.ProviderEvent`s. Both become `Feedback` for the
consent API of `SubscriberAdmin`, a batch of them in one transaction.

Mail that matches no subscriber is kept in `<data_dir>/inbound/unmatched/` with a reason
file, never dropped. `receive` / `receive_many` return only after the change is committed
or the message is kept, so the caller may acknowledge each message then and not before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from publisher.bounces import EventKind, InboundEvent, Mailboxes, Target, classify
from publisher.config import Settings
from publisher.mailkeep import MailKeeper
from publisher.messages import unsubscribe_address
from publisher.model import ConsentKind, ConsentSource, Subscriber
from publisher.secrecy import masked_address
from publisher.store import Store
from publisher.store.replays import Replays
from publisher.store.subscribers import Subscribers
from publisher.subscribers import Feedback, SubscriberAdmin
from publisher.tokens import Tokens
from publisher.usecase import UseCase
from publisher.webhooks import Applied, FeedbackKind, ProviderEvent

__all__ = ["POLICY", "InboundMail", "InboundOutcome", "ProviderFeedback", "mail_kind"]

log = logging.getLogger("publisher.inbound")

# the one mapping from what came back to what it does to consent, for mail and webhooks
POLICY: Mapping[FeedbackKind, ConsentKind] = {
    FeedbackKind.HARD_BOUNCE: ConsentKind.BOUNCED,
    FeedbackKind.SOFT_BOUNCE: ConsentKind.SOFT_BOUNCED,
    FeedbackKind.COMPLAINT: ConsentKind.COMPLAINED,
    FeedbackKind.UNSUBSCRIBE: ConsentKind.UNSUBSCRIBED,
}

_ACTIONABLE = (EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.UNSUBSCRIBE)


def mail_kind(event: InboundEvent, target: Target) -> FeedbackKind:
    """What a classified message (a bounce, complaint or unsubscribe request) says about
    one of its recipients, in the same terms as a provider's event."""
    if event.kind is EventKind.BOUNCE:
        return FeedbackKind.HARD_BOUNCE if target.hard else FeedbackKind.SOFT_BOUNCE
    if event.kind is EventKind.COMPLAINT:
        return FeedbackKind.COMPLAINT
    if event.kind is EventKind.UNSUBSCRIBE:
        return FeedbackKind.UNSUBSCRIBE
    raise ValueError(f"nothing to act on in a {event.kind.value} message")


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What one message did: `handled` (acted on, or a notice needing nothing), else it
    was kept at `kept` for the reason given."""

    event: InboundEvent
    handled: bool
    done: tuple[str, ...] = ()  # one line per change, addresses masked
    kept: Path | None = None
    reason: str = ""


class InboundMail(UseCase):
    """Receives inbound messages; one per process (safe to call from several threads)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        admin: SubscriberAdmin,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, store, clock=clock)
        self.admin = admin
        self.keeper = MailKeeper(settings.data_dir / "inbound" / "unmatched")

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings.secret_key)

    @functools.cached_property
    def mailboxes(self) -> Mailboxes:
        return Mailboxes(
            bounce_address=self.settings.smtp.bounce_address or None,
            unsubscribe_address=unsubscribe_address(self.settings),
            unsubscribe_max_age=self.settings.server.unsubscribe_token_max_age_seconds,
        )

    def receive_stream(self, stream: BinaryIO) -> InboundOutcome:
        """`receive` for a stream (stdin): one over `inbound.max_message_bytes` is kept
        whole, unread, as too large."""
        limit = self.settings.inbound.max_message_bytes
        head = stream.read(limit + 1)
        if len(head) <= limit:
            return self.receive(head)
        event = InboundEvent(
            EventKind.NOT_OURS, "unknown", reason=f"message over the {limit}-byte limit"
        )
        return self._keep(head, event, event.reason, rest=stream)

    def receive(self, data: bytes) -> InboundOutcome:
        """Classify one message and act on it; committed (or kept) when this returns."""
        [outcome] = self.receive_many([data])
        return outcome

    def receive_many(self, messages: Sequence[bytes]) -> list[InboundOutcome]:
        """`receive` for each message, with every change in one transaction: all of them
        are committed (or kept) when this returns. If it raises, treat none as answered:
        the changes were committed whole or not at all, and acting on a message again
        changes nothing but its history."""
        events = [
            classify(
                data,
                tokens=self.tokens,
                mailboxes=self.mailboxes,
                max_bytes=self.settings.inbound.max_message_bytes,
            )
            for data in messages
        ]
        known = self._subscribers(events)
        reports: list[Feedback] = []
        owners: list[tuple[int, str]] = []  # (message, address) of each report
        missing: list[list[str]] = [[] for _ in messages]
        for index, event in enumerate(events):
            if event.kind not in _ACTIONABLE:
                continue
            for target in event.targets:
                email, why = self._address(target, known)
                if email is None:
                    missing[index].append(why)
                    continue
                detail = f"{event.format}: {target.detail or event.reason}"[:500]
                reports.append(
                    Feedback(email, POLICY[mail_kind(event, target)], ConsentSource.INBOUND, detail)
                )
                owners.append((index, email))
        done: list[list[str]] = [[] for _ in messages]
        for (index, email), changed in zip(
            owners, self.admin.record_feedback(reports) if reports else [], strict=True
        ):
            shown = masked_address(email, self.settings.secret_key)
            if changed is None:
                missing[index].append(f"no subscriber {shown}")
            else:
                done[index].append(f"{shown}: {events[index].kind.value} -> {changed.status}")
        return [
            self._outcome(data, event, done[n], missing[n])
            for n, (data, event) in enumerate(zip(messages, events, strict=True))
        ]

    def _outcome(
        self, data: bytes, event: InboundEvent, done: list[str], missing: list[str]
    ) -> InboundOutcome:
        if event.kind is EventKind.NOT_OURS:
            return self._keep(data, event, event.reason)
        if event.kind is EventKind.NOTICE:
            log.info("inbound %s: %s (no action)", event.format, event.reason)
            return InboundOutcome(event, True, reason=event.reason)
        if not done:
            return self._keep(data, event, "; ".join(missing) or "no recipient")
        for line in done:
            log.info("inbound %s: %s (%s)", event.format, line, event.reason)
        return InboundOutcome(event, True, tuple(done), reason=event.reason)

    def _subscribers(self, events: Sequence[InboundEvent]) -> dict[int, Subscriber]:
        """The subscribers the verified tokens of these messages name, in one read."""
        ids = [
            target.subscriber_id
            for event in events
            if event.kind in _ACTIONABLE
            for target in event.targets
            if target.subscriber_id is not None
        ]
        if not ids:
            return {}
        with self.store.read() as connection:
            return Subscribers(connection).get_many(ids)

    def _address(self, target: Target, known: Mapping[int, Subscriber]) -> tuple[str | None, str]:
        """The subscriber's address: by the verified token's id (and its address, when the
        token carries one), else the address the report names."""
        if target.subscriber_id is None:
            return target.email, "no recipient address"
        found = known.get(target.subscriber_id)
        if found is None:
            return None, f"subscriber #{target.subscriber_id} no longer exists"
        if target.email is not None and target.email.lower() != found.email.lower():
            return None, f"subscriber #{target.subscriber_id} has another address now"
        return found.email, ""

    def _keep(
        self, data: bytes, event: InboundEvent, reason: str, rest: BinaryIO | None = None
    ) -> InboundOutcome:
        now = self.clock()
        path = self.keeper.keep(
            data,
            [
                ("reason", reason),
                ("kind", event.kind.value),
                ("format", event.format),
                ("received", now.isoformat()),
            ],
            now,
            rest=rest,
        )
        log.warning("inbound: not matched (%s); kept as %s", reason, path.name)
        return InboundOutcome(event, False, kept=path, reason=reason)


class ProviderFeedback:
    """What `POST /webhooks/<provider>` does with its verified events
    (web.webhooks.FeedbackService): the same `POLICY`, source `webhook`, the provider's
    reason as the detail and the provider's address as the client; a whole batch in one
    transaction. An address we do not know is counted and nothing is stored for it."""

    def __init__(self, admin: SubscriberAdmin) -> None:
        self.admin = admin

    async def apply(self, events: Sequence[ProviderEvent], client: str | None) -> Applied:
        if not events:
            return Applied()
        return await asyncio.to_thread(self.apply_now, events, client)

    def apply_now(self, events: Sequence[ProviderEvent], client: str | None) -> Applied:
        found = self.admin.record_feedback(
            [
                Feedback(
                    event.email,
                    POLICY[event.kind],
                    ConsentSource.WEBHOOK,
                    f"{event.provider}: {event.detail}",
                    client,
                )
                for event in events
            ]
        )
        acted = sum(subscriber is not None for subscriber in found)
        return Applied(acted, len(found) - acted)


class WebhookReplays(UseCase):
    """The replay memory of `POST /webhooks/<provider>` (web.webhooks.ReplayMemory): a
    Mailgun token or SNS message id is taken once, in the database, so neither a restart
    nor a second process on the same database acts on a replay. Times are POSIX seconds,
    as the webhook checks count them."""

    async def claim(self, provider: str, key: str, *, now: float, until: float) -> bool:
        return await asyncio.to_thread(self.claim_now, provider, key, now=now, until=until)

    async def release(self, provider: str, key: str) -> None:
        await asyncio.to_thread(self.release_now, provider, key)

    def claim_now(self, provider: str, key: str, *, now: float, until: float) -> bool:
        """Take `key` until `until` (the end of its signature's window); False if taken."""
        with self.store.begin() as connection:
            return Replays(connection).take(
                provider,
                key,
                now=datetime.fromtimestamp(now, UTC),
                expires=datetime.fromtimestamp(until, UTC),
            )

    def release_now(self, provider: str, key: str) -> None:
        with self.store.begin() as connection:
            Replays(connection).give_back(provider, key)

    def kept(self) -> int:
        """How many keys the database holds (tests: expired ones are dropped)."""
        with self.store.read() as connection:
            return Replays(connection).count()
