"""`POST /webhooks/<provider>`: bounce, complaint and unsubscribe events from mail providers.

Each provider is checked first (signature, credentials, freshness: 401 and nothing read
otherwise), then its events are handed to a `FeedbackService` (App implements it through
the consent API). A provider without credentials in the settings answers 404, as does an
unknown name. The body is bounded by the request guard (`webhooks.max_body_bytes`, 413).
An event that cannot be read is logged and skipped; the rest of the batch still counts.
A store failure answers 503, so the provider delivers the batch again (acting on an
event twice changes nothing but the history). Mailgun tokens and SNS message ids are
taken in a `ReplayMemory` (the database, through App) before anything is acted on, so a
replay is refused whichever process, before or after a restart, receives it; a request
that then fails gives its token back, so the provider's retry is taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from publisher.config import Settings, WebhookSettings
from publisher.errors import ConfigError, PublisherError
from publisher.secrecy import printable
from publisher.web.sns import FetchError, SnsFetcher
from publisher.webhooks import (
    Applied,
    Batch,
    Malformed,
    ProviderEvent,
    Unauthentic,
)
from publisher.webhooks import ses as sns
from publisher.webhooks.mailgun import mailgun_events, read_mailgun, verify_mailgun
from publisher.webhooks.postmark import check_basic_auth, postmark_events
from publisher.webhooks.sendgrid import load_public_key, sendgrid_events, verify_sendgrid

__all__ = ["WEBHOOK_ROUTE", "FeedbackService", "ReplayMemory", "webhook_routes"]

log = logging.getLogger("publisher.webhooks")

WEBHOOK_ROUTE = "/webhooks/{provider}"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"

# what to undo if acting on a batch fails
Undo = Callable[[], Awaitable[None]]
# what a provider's reader returns: the batch, and its undo
Reader = Callable[[Request, bytes], Awaitable[tuple[Batch, Undo]]]


class FeedbackService(Protocol):
    async def apply(self, events: Sequence[ProviderEvent], client: str | None) -> Applied:
        """Act on each event through the consent API (source webhook)."""
        ...


class ReplayMemory(Protocol):
    async def claim(self, provider: str, key: str, *, now: float, until: float) -> bool:
        """Take `key` (a token, a message id) until `until`; False if it is taken."""
        ...

    async def release(self, provider: str, key: str) -> None:
        """Give `key` back: acting on its request failed."""
        ...


async def _nothing() -> None:
    pass


class _Providers:
    """The readers of the configured providers, and the memory their replay checks use."""

    def __init__(
        self, hooks: WebhookSettings, replays: ReplayMemory, clock: Callable[[], float]
    ) -> None:
        self.hooks = hooks
        self.replays = replays
        self.clock = clock
        self.readers: dict[str, Reader] = {}
        if hooks.topics:
            self.fetcher = SnsFetcher(hooks)
            self.readers["ses"] = self.ses
        if hooks.postmark_user and hooks.postmark_password:
            self.readers["postmark"] = self.postmark
        if hooks.mailgun_signing_key:
            self.readers["mailgun"] = self.mailgun
        if hooks.sendgrid_public_key:
            try:
                self.sendgrid_key = load_public_key(hooks.sendgrid_public_key)
            except ValueError as exc:
                raise ConfigError(
                    f"webhooks.sendgrid_public_key is {exc}",
                    "paste the Verification Key SendGrid shows under Signed Event Webhook",
                ) from exc
            self.readers["sendgrid"] = self.sendgrid

    async def ses(self, request: Request, body: bytes) -> tuple[Batch, Undo]:
        message = sns.parse_envelope(body)
        now = datetime.fromtimestamp(self.clock(), UTC)
        topics, max_age = self.hooks.topics, timedelta(seconds=self.hooks.ses_max_age_seconds)
        sns.check_envelope(message, topics=topics, now=now, max_age=max_age)
        pem = await self.fetcher.certificate(message.signing_cert_url)
        sns.verify_envelope(message, pem, topics=topics, now=now, max_age=max_age)
        until = sns.replayable_until(message, max_age).timestamp()
        if not await self.replays.claim(
            "ses", message.message_id, now=now.timestamp(), until=until
        ):
            return Batch(), _nothing  # SNS delivers at least once: a repeat is answered 200

        async def undo() -> None:
            await self.replays.release("ses", message.message_id)

        try:
            if message.type == sns.SUBSCRIPTION_CONFIRMATION and message.subscribe_url:
                await self.fetcher.confirm(message.subscribe_url)
                topic = printable(message.topic_arn)
                log.info("webhook ses: confirmed the subscription to %s", topic)
                batch = Batch()
            elif message.type == sns.UNSUBSCRIBE_CONFIRMATION:
                topic = printable(message.topic_arn)
                log.warning("webhook ses: %s unsubscribed this endpoint", topic)
                batch = Batch()
            else:
                batch = sns.ses_events(message.message)
        except BaseException:
            await undo()
            raise
        return batch, undo

    async def postmark(self, request: Request, body: bytes) -> tuple[Batch, Undo]:
        check_basic_auth(
            request.headers.get("authorization"),
            self.hooks.postmark_user or "",
            self.hooks.postmark_password or "",
        )
        return postmark_events(body), _nothing

    async def mailgun(self, request: Request, body: bytes) -> tuple[Batch, Undo]:
        data = read_mailgun(body)
        now = self.clock()
        token, until = verify_mailgun(
            data,
            self.hooks.mailgun_signing_key or "",
            now=now,
            window=self.hooks.replay_window_seconds,
        )
        events = mailgun_events(data)  # read first: a body it refuses takes no token
        # the database's primary key decides between concurrent replays of one request
        if not await self.replays.claim("mailgun", token, now=now, until=until):
            raise Unauthentic("the Mailgun token was used before")

        async def undo() -> None:
            await self.replays.release("mailgun", token)

        return events, undo

    async def sendgrid(self, request: Request, body: bytes) -> tuple[Batch, Undo]:
        verify_sendgrid(
            self.sendgrid_key,
            request.headers.get(SENDGRID_SIGNATURE),
            request.headers.get(SENDGRID_TIMESTAMP),
            body,
            now=self.clock(),
            window=self.hooks.replay_window_seconds,
        )
        return sendgrid_events(body), _nothing


def webhook_routes(
    settings: Settings,
    service: FeedbackService,
    replays: ReplayMemory,
    *,
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """The route for `create_app(settings, extra_routes=...)`; ConfigError for a bad key."""
    providers = _Providers(settings.webhooks, replays, clock)

    def plain(message: str, status: int, **headers: str) -> Response:
        return PlainTextResponse(
            message + "\n", status_code=status, headers={"Cache-Control": "no-store", **headers}
        )

    async def webhook(request: Request) -> Response:
        name = request.path_params["provider"]
        reader = providers.readers.get(name)
        if reader is None:
            return plain("No such webhook.", 404)
        client = request.client.host if request.client else None
        body = await request.body()
        try:
            batch, undo = await reader(request, body)
        except Unauthentic as exc:
            log.warning("webhook %s from %s refused: %s", name, client, printable(exc.message))
            challenge = {"WWW-Authenticate": 'Basic realm="webhooks"'} if name == "postmark" else {}
            return plain("Not authenticated.", 401, **challenge)
        except Malformed as exc:
            log.warning("webhook %s from %s: %s", name, client, printable(exc.message))
            return plain("Not a webhook body this provider sends.", 400)
        except FetchError as exc:
            log.error("webhook %s: %s", name, printable(exc.message))
            return plain("Cannot verify the message now; try again later.", 503)
        except PublisherError as exc:  # the replay memory's store
            log.error("webhook %s: cannot check it for a replay: %s", name, printable(exc.message))
            return plain("Cannot record the events now; try again later.", 503)
        for reason in batch.skipped:
            log.warning("webhook %s: skipped %s", name, printable(reason))
        try:
            applied = await service.apply(batch.events, client)
        except PublisherError as exc:
            await undo()
            log.error("webhook %s: cannot record its events: %s", name, printable(exc.message))
            return plain("Cannot record the events now; try again later.", 503)
        except BaseException:
            await undo()
            raise
        if batch.events or batch.skipped:
            log.info(
                "webhook %s: %d events acted on, %d of unknown addresses, %d skipped, %d ignored",
                name,
                applied.acted,
                applied.unknown,
                len(batch.skipped),
                batch.ignored,
            )
        return JSONResponse(
            {
                "acted": applied.acted,
                "unknown": applied.unknown,
                "skipped": len(batch.skipped),
                "ignored": batch.ignored,
            },
            headers={"Cache-Control": "no-store"},
        )

    return [Route(WEBHOOK_ROUTE, webhook, methods=["POST"])]
