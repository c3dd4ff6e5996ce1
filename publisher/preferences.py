"""The preference centre: what a subscriber changes from `/preferences/<token>`.

Categories, frequency, a pause and its end, "send me my data" (mailed, never shown on
the page) and "delete me" (erasure that keeps the suppression). Every change goes through
SubscriberAdmin, which records it as a consent event; the token (signed, long-lived like
the unsubscribe one) is the only proof asked for. Also the mail a visitor with a broken
or expired link asks for: a fresh preference link, sent only to a known address, with the
same answer either way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from publisher.errors import UsageError
from publisher.links import preferences_path, unsubscribe_path
from publisher.mailer import Mailer
from publisher.messages import (
    InvalidSubscription,
    build_message,
    data_message,
    normalize_email,
    sender_address,
)
from publisher.model import ConsentSource, Subscriber, SubscriberStatus
from publisher.render import render
from publisher.store.subscribers import Subscribers
from publisher.subscribers import SubscriberAdmin, is_suppressed, known_categories
from publisher.tokens import PREFERENCES, UNSUBSCRIBE
from publisher.usecase import MailingUseCase

__all__ = ["MAX_PAUSE_WEEKS", "PreferenceCentre", "Preferences"]

log = logging.getLogger("publisher.subscribers")

MAX_PAUSE_WEEKS = 52


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the form shows: the subscriber's choices and the categories to choose from."""

    email: str
    status: SubscriberStatus
    categories: tuple[str, ...]
    frequency: str
    paused_until: datetime | None
    known_categories: tuple[str, ...]


class PreferenceCentre(MailingUseCase):
    """The use cases behind the preference routes (web.preferences.PreferenceService)."""

    @functools.cached_property
    def admin(self) -> SubscriberAdmin:
        return SubscriberAdmin(self.settings, self.store, clock=self.clock)

    def _claimed(self, token: str) -> Subscriber | None:
        """The subscriber a valid token names (same id and address), else None."""
        claim = self.tokens.check(
            PREFERENCES, token, self.settings.server.unsubscribe_token_max_age_seconds
        )
        if claim is None:
            return None
        with self.store.read() as connection:
            found = Subscribers(connection).get(claim.subscriber_id)
        if found is None or found.email != claim.email:
            return None
        return found

    def _shown(self, found: Subscriber) -> Preferences:
        with self.store.read() as connection:
            known = known_categories(self.settings, connection)
        return Preferences(
            email=found.email,
            status=found.status,
            categories=found.categories,
            frequency=found.frequency.value,
            # a pause that has ended is no pause (its row stays until the next change)
            paused_until=(
                found.paused_until
                if found.paused_until is not None and found.paused_until > self.clock()
                else None
            ),
            known_categories=tuple(known),
        )

    async def load(self, token: str) -> Preferences | None:
        """The form's content for a valid token; None for a broken, expired or stale one."""

        def work() -> Preferences | None:
            found = self._claimed(token)
            return None if found is None else self._shown(found)

        return await asyncio.to_thread(work)

    async def save(
        self,
        token: str,
        *,
        categories: Sequence[str],
        frequency: str,
        pause_weeks: int | None,
        resume: bool,
        client: str | None,
    ) -> Preferences | None:
        """Apply the form; None for a bad token. UsageError for an unknown category, a
        bad frequency or a pause out of range (the page shows it)."""
        if pause_weeks is not None and not 1 <= pause_weeks <= MAX_PAUSE_WEEKS:
            raise UsageError(f"a pause is 1 to {MAX_PAUSE_WEEKS} weeks")

        def work() -> Preferences | None:
            found = self._claimed(token)
            if found is None:
                return None
            until = self.clock() + timedelta(weeks=pause_weeks) if pause_weeks is not None else None
            changed = self.admin.change_preferences(
                found.email,
                categories=categories,
                frequency=frequency,
                paused_until=until,
                resume=resume,
                source=ConsentSource.WEB,
                client=client,
            )
            return None if changed is None else self._shown(changed)

        return await asyncio.to_thread(work)

    async def send_data(self, token: str) -> str | None:
        """Mail what we hold about the token's subscriber to its address; the address, or
        None for a bad token. SendError when the SMTP server refuses it."""
        found = await asyncio.to_thread(self._claimed, token)
        if found is None:
            return None
        held = await asyncio.to_thread(self.admin.held_data, found.email)
        if held is None:
            return None
        message = data_message(
            self.environment,
            self.settings,
            to_name=found.name,
            to_address=found.email,
            preferences_url=self.settings.url(preferences_path(token)),
            data=json.dumps(held, ensure_ascii=False, indent=2).encode("utf-8"),
            now=self.clock(),
        )
        await Mailer.for_settings(self.settings).send_one(
            sender_address(self.settings), found.email, bytes(message)
        )
        return found.email

    async def delete(self, token: str, client: str | None) -> str | None:
        """Erase the subscriber; the suppression entry (a keyed hash) stays, so nothing is
        ever mailed to the address again unless it subscribes anew. None for a bad token."""

        def work() -> str | None:
            found = self._claimed(token)
            if found is None:
                return None
            self.admin.remove(found.email, source=ConsentSource.WEB, client=client, leaving=True)
            return found.email

        return await asyncio.to_thread(work)

    def request_fresh_link(self, email: str) -> None:
        """Start mailing a fresh link (in the background: the answer takes as long for an
        unknown address as for a known one)."""
        self._in_background(self.send_fresh_link(email))

    async def send_fresh_link(self, email: str) -> None:
        """Mail a fresh preference (and unsubscribe) link to a known, not bounced address;
        nothing for any other."""
        try:
            address = normalize_email(email.strip())
        except InvalidSubscription:
            return

        def find() -> Subscriber | None:
            with self.store.read() as connection:
                return Subscribers(connection).by_email(address)

        found = await asyncio.to_thread(find)
        if found is None or (
            is_suppressed(found.status) and found.status is not SubscriberStatus.UNSUBSCRIBED
        ):
            return
        context = {
            "preferences_url": self.settings.url(
                preferences_path(self.tokens.make(PREFERENCES, found.id, found.email))
            ),
            "unsubscribe_url": self.settings.url(
                unsubscribe_path(self.tokens.make(UNSUBSCRIBE, found.id, found.email))
            ),
            "status": found.status.value,
        }
        subscriber = found

        def build() -> EmailMessage:
            return build_message(
                settings=self.settings,
                subject=f"Your {self.settings.site.title} links",
                to_name=subscriber.name,
                to_address=subscriber.email,
                text=render(self.environment, "fresh_link.txt.j2", **context),
                html_body=render(self.environment, "fresh_link.html.j2", **context),
                date=self.clock(),
            )

        await self._mail("fresh link", found.email, build)
