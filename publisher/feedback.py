"""Provider feedback: the events of a verified webhook, acted on through the consent API.

The same policy as mail that comes back (inbound.py): a hard bounce suppresses as
bounced, a complaint as complained, an unsubscribe as unsubscribed, a soft bounce counts
toward `inbound.soft_bounce_limit`. Each event is its own transaction, recorded with
source `webhook`, the provider's reason as its detail and the provider's address as its
client. An address we do not know is counted and nothing is stored for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from publisher.model import ConsentKind, ConsentSource
from publisher.subscribers import SubscriberAdmin
from publisher.webhooks import Applied, FeedbackKind, ProviderEvent

__all__ = ["ProviderFeedback"]

SUPPRESSING: Mapping[FeedbackKind, ConsentKind] = {
    FeedbackKind.HARD_BOUNCE: ConsentKind.BOUNCED,
    FeedbackKind.COMPLAINT: ConsentKind.COMPLAINED,
    FeedbackKind.UNSUBSCRIBE: ConsentKind.UNSUBSCRIBED,
}


class ProviderFeedback:
    """What `POST /webhooks/<provider>` does with its events (web.webhooks.FeedbackService)."""

    def __init__(self, admin: SubscriberAdmin) -> None:
        self.admin = admin

    async def apply(self, events: Sequence[ProviderEvent], client: str | None) -> Applied:
        if not events:
            return Applied()
        return await asyncio.to_thread(self.apply_now, events, client)

    def apply_now(self, events: Sequence[ProviderEvent], client: str | None) -> Applied:
        acted = unknown = 0
        for event in events:
            detail = f"{event.provider}: {event.detail}"
            if event.kind is FeedbackKind.SOFT_BOUNCE:
                found = self.admin.soft_bounced(
                    event.email, source=ConsentSource.WEBHOOK, detail=detail
                )
            else:
                found = self.admin.suppress(
                    event.email,
                    SUPPRESSING[event.kind],
                    source=ConsentSource.WEBHOOK,
                    detail=detail,
                    client=client,
                )
            if found is None:
                unknown += 1
            else:
                acted += 1
        return Applied(acted, unknown)
