"""What the use cases over one store share, so each states only what is its own.

`UseCase`: the settings, the store, and a clock tests can set. `MailingUseCase` adds what
the web's use cases that mail in the background need: the template environment, the
token signer, one way to send a mail (a failure is logged with the address masked), and
the background tasks `drain()` waits for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from publisher.config import Settings
from publisher.errors import SendError
from publisher.mailer import Mailer
from publisher.messages import sender_address
from publisher.render import template_environment
from publisher.secrecy import masked_address, masked_in
from publisher.store import Store
from publisher.tokens import Tokens

__all__ = ["MailingUseCase", "UseCase"]

log = logging.getLogger("publisher.subscribers")


def _now() -> datetime:
    return datetime.now(UTC)


class UseCase:
    """A use case over one store; `clock` (UTC now by default) is what tests move."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock or _now


class MailingUseCase(UseCase):
    """A use case whose mails are rendered and sent in background tasks, so a web answer
    never waits for the SMTP server."""

    @functools.cached_property
    def _background(self) -> set[asyncio.Task[None]]:
        # holds a reference to each task: the event loop keeps only weak ones
        return set()

    @functools.cached_property
    def environment(self) -> Any:
        return template_environment(self.settings)

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings.secret_key)

    async def _mail(self, what: str, to: str, build: Callable[[], EmailMessage]) -> bool:
        """Build one mail and hand it to the SMTP server; whether it was accepted. A
        failure is logged (the address masked: logs are kept and shipped elsewhere)."""
        key = self.settings.secret_key
        try:
            message = build()
            await Mailer.for_settings(self.settings).send_one(
                sender_address(self.settings), to, bytes(message)
            )
        except SendError as exc:
            log.warning(
                "%s to %s failed: %s",
                what,
                masked_address(to, key),
                masked_in(exc.message, to, key),
            )
        except Exception:
            log.exception("%s to %s failed", what, masked_address(to, key))
        else:
            return True
        return False

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the mails still being sent in the background (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
