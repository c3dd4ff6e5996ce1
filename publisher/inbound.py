"""The mail that comes back, acted on: bounces, complaints and mailto unsubscribes.

One message in (from `publisher inbound`, the `[inbound]` listener of `publisher run`),
`bounces.classify` says what it is, and every state change goes through the consent API
of `SubscriberAdmin`: a hard bounce suppresses (bounced), a soft one counts toward
`inbound.soft_bounce_limit`, a complaint suppresses (complained), a mailto request
unsubscribes. What matches no subscriber is kept in `<data_dir>/inbound/unmatched/` with
a reason file, never dropped. `receive` returns only after the change is committed or the
message is kept, so its caller may acknowledge it then and not before.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
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
from publisher.store.subscribers import Subscribers
from publisher.subscribers import SubscriberAdmin
from publisher.tokens import Tokens

__all__ = ["InboundMail", "InboundOutcome"]

log = logging.getLogger("publisher.inbound")


@dataclass(frozen=True, slots=True)
class InboundOutcome:
    """What one message did: `handled` (acted on, or a notice needing nothing), else it
    was kept at `kept` for the reason given."""

    event: InboundEvent
    handled: bool
    done: tuple[str, ...] = ()  # one line per change, addresses masked
    kept: Path | None = None
    reason: str = ""


class InboundMail:
    """Receives inbound messages; one per process (safe to call from several threads)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        admin: SubscriberAdmin,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.admin = admin
        self.clock = clock or (lambda: datetime.now(UTC))
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
        event = classify(
            data,
            tokens=self.tokens,
            mailboxes=self.mailboxes,
            max_bytes=self.settings.inbound.max_message_bytes,
        )
        if event.kind is EventKind.NOT_OURS:
            return self._keep(data, event, event.reason)
        if event.kind is EventKind.NOTICE:
            log.info("inbound %s: %s (no action)", event.format, event.reason)
            return InboundOutcome(event, True, reason=event.reason)
        done: list[str] = []
        missing: list[str] = []
        for target in event.targets:
            email, why = self._address(target)
            if email is None:
                missing.append(why)
                continue
            changed = self._act(event, target, email)
            shown = masked_address(email, self.settings.secret_key)
            if changed is None:
                missing.append(f"no subscriber {shown}")
            else:
                done.append(f"{shown}: {event.kind.value} -> {changed.status}")
        if not done:
            return self._keep(data, event, "; ".join(missing) or "no recipient")
        for line in done:
            log.info("inbound %s: %s (%s)", event.format, line, event.reason)
        return InboundOutcome(event, True, tuple(done), reason=event.reason)

    def _address(self, target: Target) -> tuple[str | None, str]:
        """The subscriber's address: by the verified token's id (and its address, when the
        token carries one), else the address the report names."""
        if target.subscriber_id is None:
            return target.email, "no recipient address"
        with self.store.read() as connection:
            found: Subscriber | None = Subscribers(connection).get(target.subscriber_id)
        if found is None:
            return None, f"subscriber #{target.subscriber_id} no longer exists"
        if target.email is not None and target.email.lower() != found.email.lower():
            return None, f"subscriber #{target.subscriber_id} has another address now"
        return found.email, ""

    def _act(self, event: InboundEvent, target: Target, email: str) -> Subscriber | None:
        source = ConsentSource.INBOUND
        detail = f"{event.format}: {target.detail or event.reason}"[:500]
        if event.kind is EventKind.BOUNCE and not target.hard:
            return self.admin.soft_bounced(email, source=source, detail=detail)
        kind = {
            EventKind.BOUNCE: ConsentKind.BOUNCED,
            EventKind.COMPLAINT: ConsentKind.COMPLAINED,
            EventKind.UNSUBSCRIBE: ConsentKind.UNSUBSCRIBED,
        }[event.kind]
        return self.admin.suppress(email, kind, source=source, detail=detail)

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
