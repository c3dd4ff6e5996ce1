"""The web's subscription service: double opt-in, confirm, unsubscribe, and the
confirmation mail, sent through a bounded queue in the background."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

from publisher.config import Settings
from publisher.consent import record_consent
from publisher.errors import UsageError
from publisher.links import confirm_path, preferences_path
from publisher.messages import (
    InvalidSubscription,
    confirmation_message,
    display_name,
    normalize_email,
    parse_frequency,
    welcome_message,
)
from publisher.model import (
    Choices,
    ConsentKind,
    ConsentSource,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from publisher.schedule import next_digest
from publisher.secrecy import address_hash, masked_address
from publisher.store import Store
from publisher.store.consent import ConsentEvents, Suppressions
from publisher.store.subscribers import Registration, Subscribers
from publisher.subscribers import (
    canonical_categories,
    is_suppressed,
    known_categories,
    stronger_status,
)
from publisher.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, PreviewClaim
from publisher.usecase import MailingUseCase

__all__ = ["Subscriptions"]

log = logging.getLogger("publisher.subscribers")


def _choices(categories: Sequence[str], frequency: Frequency) -> str:
    return f"categories: {', '.join(categories) or 'all'}; frequency: {frequency.value}"


class Subscriptions(MailingUseCase):
    """What the subscribe, confirm and unsubscribe routes do (web.SubscriptionService)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, store, clock=clock)
        self._outbox: deque[Registration] = deque()  # confirmation mails waiting to be sent
        self._senders = 0

    async def subscribe(
        self,
        email: str,
        name: str | None,
        categories: Sequence[str],
        frequency: str,
        client: str | None = None,
    ) -> datetime | None:
        """None, or when the last confirmation went to this waiting address if that was
        within the cool-down (no new mail is sent; the form says so)."""
        address = normalize_email(email)
        chosen = parse_frequency(frequency)
        clean = [c.strip()[:200] for c in categories if c.strip()][:50]
        registered, cooling = await asyncio.to_thread(
            self._register_pending,
            address,
            display_name(name)[:200] or None,
            clean,
            chosen,
            client,
        )
        # rendering and SMTP happen in the background, so a new address answers as fast
        # as a known one; the transaction above ran the same statements for both
        self._enqueue_confirmation(registered)
        return cooling

    def _register_pending(
        self,
        address: str,
        name: str | None,
        categories: list[str],
        frequency: Frequency,
        client: str | None = None,
    ) -> tuple[Registration | None, datetime | None]:
        """The confirmation to mail, or None (confirmed, bounced, or in cool-down); and,
        in cool-down, when the last one was sent. InvalidSubscription for an unknown
        category (the form lists the known ones)."""
        now = self.clock()
        cooldown = timedelta(seconds=self.settings.server.subscribe_cooldown_seconds)
        with self.store.begin() as connection:
            try:
                wanted = canonical_categories(
                    categories, known_categories(self.settings, connection)
                )
            except UsageError as exc:
                raise InvalidSubscription(exc.message) from exc
            people = Subscribers(connection)
            self._expire_pending(people, now)
            # a removed address that was suppressed: its new row starts from that status
            hashed = address_hash(address, self.settings.secret_key)
            entries = Suppressions(connection)
            entry = entries.get(hashed)
            registered = people.register_pending(
                email=address,
                name=name,
                categories=wanted,
                frequency=frequency,
                timezone=self.settings.timezone,
                now=now,
                cooldown_since=now - cooldown,
                held=(entry.status, entry.since) if entry is not None else None,
            )
            entries.lift(hashed)  # the row holds the status now
            sent = people.pending_confirmation_sent(address)  # run for every address
            # one event whatever the address is (the same statements for every answer):
            # a request that changed nothing is consent evidence too
            row = people.by_email(address)
            if row is not None:
                if registered is not None:
                    kind, detail = ConsentKind.SUBSCRIBED, "confirmation requested"
                elif is_suppressed(row.status) and row.status is not SubscriberStatus.UNSUBSCRIBED:
                    kind, detail = (
                        ConsentKind.SUPPRESSED,
                        f"refused: the address {row.status.value}",
                    )
                else:
                    kind, detail = (
                        ConsentKind.SUBSCRIBED,
                        f"nothing changed ({row.status.value}, or a confirmation was sent lately)",
                    )
                record_consent(
                    ConsentEvents(connection),
                    self.settings,
                    email=address,
                    subscriber_id=row.id,
                    kind=kind,
                    source=ConsentSource.WEB,
                    detail=f"subscribe form ({_choices(wanted, frequency)}): {detail}",
                    at=now,
                    client=client,
                )
        cooling = registered is None and sent is not None and sent > now - cooldown
        return registered, sent if cooling else None

    def _expire_pending(self, people: Subscribers, now: datetime) -> None:
        """Unconfirmed for server.pending_expiry_days: runs at every subscribe and confirm."""
        expired = people.expire_pending(
            now - timedelta(days=self.settings.server.pending_expiry_days), now
        )
        if expired:
            log.info("%d unconfirmed subscribers expired", expired)

    def _enqueue_confirmation(self, registered: Registration | None) -> None:
        """Hand a confirmation mail to at most `confirmation_senders` concurrent sends,
        with at most `confirmation_backlog` waiting; beyond that it is dropped (and the
        address may ask again at once): a hanging SMTP server must not collect sockets."""
        if registered is None:
            return
        server = self.settings.server
        if self._senders >= server.confirmation_senders and (
            len(self._outbox) >= server.confirmation_backlog
        ):
            log.warning(
                "confirmation mail to %s dropped: %d mails are waiting for the SMTP server",
                masked_address(registered.subscriber.email, self.settings.secret_key),
                len(self._outbox),
            )
            self._in_background(asyncio.to_thread(self._release_cooldown, registered))
            return
        self._outbox.append(registered)
        if self._senders < server.confirmation_senders:
            self._senders += 1
            self._in_background(self._send_confirmations())

    async def _send_confirmations(self) -> None:
        try:
            while self._outbox:
                await self._send_confirmation(self._outbox.popleft())
        finally:
            self._senders -= 1

    async def _send_confirmation(self, registered: Registration) -> None:
        """One confirmation mail; if it is not accepted the cool-down is given back."""
        subscriber = registered.subscriber

        def build() -> EmailMessage:
            token = self.tokens.make(CONFIRM, subscriber.id, subscriber.email)
            return confirmation_message(
                self.environment,
                self.settings,
                to_name=subscriber.name,
                to_address=subscriber.email,
                confirm_url=self.settings.url(confirm_path(token)),
                categories=subscriber.categories,
                frequency=subscriber.frequency.value,
                now=self.clock(),
            )

        if await self._mail("confirmation mail", subscriber.email, build):
            await asyncio.to_thread(self._confirmation_sent, registered)
        else:
            await asyncio.to_thread(self._release_cooldown, registered)

    def _confirmation_sent(self, registered: Registration) -> None:
        subscriber = registered.subscriber
        with self.store.begin() as connection:
            record_consent(
                ConsentEvents(connection),
                self.settings,
                email=subscriber.email,
                subscriber_id=subscriber.id,
                kind=ConsentKind.CONFIRMATION_SENT,
                source=ConsentSource.WEB,
                detail="confirmation mail accepted by the SMTP server",
                at=self.clock(),
            )

    def _release_cooldown(self, registered: Registration) -> None:
        with self.store.begin() as connection:
            Subscribers(connection).release_cooldown(registered)

    def preview(self, token: str) -> PreviewClaim | None:
        """What a preview link stands in for, if `token` is one; nothing changes."""
        return self.tokens.check_preview(
            token, self.settings.server.unsubscribe_token_max_age_seconds
        )

    async def confirm_target(self, token: str) -> str | None:
        """The address a valid confirm token names while it may confirm; nothing changes."""
        claim = self.tokens.check(CONFIRM, token, self.settings.server.token_max_age_seconds)
        if claim is None:
            return None
        return await asyncio.to_thread(
            self._find,
            claim.subscriber_id,
            claim.email,
            (SubscriberStatus.PENDING, SubscriberStatus.CONFIRMED),
        )

    async def confirm(self, token: str, client: str | None = None) -> str | None:
        claim = self.tokens.check(CONFIRM, token, self.settings.server.token_max_age_seconds)
        if claim is None:
            return None
        address, confirmed = await asyncio.to_thread(
            self._confirm, claim.subscriber_id, claim.email, client
        )
        if confirmed and self.settings.digest.welcome:
            self._in_background(self._send_welcome(claim.subscriber_id, claim.email))
        return address

    async def known_categories(self) -> list[str]:
        """The categories the subscribe form offers: configured ones, then stored ones."""

        def read() -> list[str]:
            with self.store.read() as connection:
                return known_categories(self.settings, connection)

        return await asyncio.to_thread(read)

    async def unsubscribe_status(self, token: str) -> SubscriberStatus | None:
        """The status of the subscriber a valid unsubscribe token names, else None."""
        claim = self.tokens.check(
            UNSUBSCRIBE, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        found = await asyncio.to_thread(self._find_subscriber, claim.email)
        if found is None or found.id != claim.subscriber_id:
            return None
        return found.status

    async def choices(self, email: str) -> Choices | None:
        """What a confirmed address chose, and when its first digest comes."""
        found = await asyncio.to_thread(self._find_subscriber, email)
        if found is None:
            return None
        return self._choices_of(found)

    def _find_subscriber(self, email: str) -> Subscriber | None:
        with self.store.read() as connection:
            return Subscribers(connection).by_email(email)

    def _choices_of(self, found: Subscriber) -> Choices:
        fire = next_digest(self.settings, found.frequency.value, self.clock())
        first = None
        if fire is not None:
            local = fire.astimezone(self.settings.zone)
            first = (
                f"on {local:%A} {local.day} {local:%B %Y} at {local:%H:%M} "
                f"({self.settings.timezone})"
            )
        return Choices(found.email, found.frequency, found.categories, first)

    async def _send_welcome(self, subscriber_id: int, email: str) -> None:
        """The welcome mail: their choices, the first digest, the preference link."""
        try:
            found = await asyncio.to_thread(self._find_subscriber, email)
        except Exception:
            log.exception(
                "welcome mail to %s failed", masked_address(email, self.settings.secret_key)
            )
            return
        if found is None or found.id != subscriber_id:
            return
        subscriber = found

        def build() -> EmailMessage:
            token = self.tokens.make(PREFERENCES, subscriber.id, subscriber.email)
            return welcome_message(
                self.environment,
                self.settings,
                to_name=subscriber.name,
                to_address=subscriber.email,
                preferences_url=self.settings.url(preferences_path(token)),
                categories=subscriber.categories,
                frequency=subscriber.frequency.value,
                first_digest=self._choices_of(subscriber).first_digest,
                now=self.clock(),
            )

        await self._mail("welcome mail", subscriber.email, build)

    def _confirm(
        self, subscriber_id: int, email: str, client: str | None = None
    ) -> tuple[str | None, bool]:
        """pending -> confirmed, once; a confirmed address stays as it is (the answer is the
        same), and an unsubscribed or bounced one is never brought back by an old link.
        The address, and whether this call confirmed it."""
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            self._expire_pending(people, now)
            before = people.get(subscriber_id)
            if people.confirm_pending(subscriber_id, email, now):
                lifted = before is not None and before.unsubscribed is not None
                record_consent(
                    ConsentEvents(connection),
                    self.settings,
                    email=email,
                    subscriber_id=subscriber_id,
                    kind=ConsentKind.CONFIRMED,
                    source=ConsentSource.WEB,
                    detail="confirm button (double opt-in)"
                    + ("; ends the earlier unsubscribe" if lifted else ""),
                    at=now,
                    client=client,
                )
                return email, True
            found = people.get(subscriber_id)
        confirmed = found is not None and found.status is SubscriberStatus.CONFIRMED
        return (email if confirmed and found is not None and found.email == email else None), False

    async def unsubscribe_target(self, token: str) -> str | None:
        claim = self.tokens.check(
            UNSUBSCRIBE, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        return await asyncio.to_thread(self._find, claim.subscriber_id, claim.email)

    async def unsubscribe(self, token: str, client: str | None = None) -> str | None:
        claim = self.tokens.check(
            UNSUBSCRIBE, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        return await asyncio.to_thread(self._unsubscribe, claim.subscriber_id, claim.email, client)

    def _find(
        self,
        subscriber_id: int,
        email: str,
        statuses: Sequence[SubscriberStatus] | None = None,
    ) -> str | None:
        with self.store.read() as connection:
            found = Subscribers(connection).get(subscriber_id)
        if found is None or found.email != email:
            return None
        return found.email if statuses is None or found.status in statuses else None

    def _unsubscribe(self, subscriber_id: int, email: str, client: str | None) -> str | None:
        """Unsubscribed, recorded; a bounced or complained address stays as it is (the
        stronger suppression)."""
        now = self.clock()
        with self.store.begin() as connection:
            people = Subscribers(connection)
            found = people.get(subscriber_id)
            if found is None or found.email != email:
                return None  # a token for a removed (or re-created) subscriber
            status = stronger_status(found.status, SubscriberStatus.UNSUBSCRIBED)
            if found.status is not status:
                people.set_status(subscriber_id, status, now)
            record_consent(
                ConsentEvents(connection),
                self.settings,
                email=email,
                subscriber_id=subscriber_id,
                kind=ConsentKind.UNSUBSCRIBED,
                source=ConsentSource.WEB,
                detail="unsubscribe link (POST)"
                + ("" if found.status is not status else f"; was already {found.status.value}"),
                at=now,
                client=client,
            )
            return found.email
