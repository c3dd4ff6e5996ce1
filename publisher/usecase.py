"""What the use cases over one store share, so each states only what is its own.

`UseCase`: the settings, the store, and a clock tests can set. `MailingUseCase` adds what
the web's use cases that mail in the background need: the template environment, the
token signer, and the background tasks `drain()` waits for.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from publisher.config import Settings
from publisher.render import template_environment
from publisher.store import Store
from publisher.tokens import Tokens

__all__ = ["MailingUseCase", "UseCase"]


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

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, store, clock=clock)
        self._background: set[asyncio.Task[None]] = set()

    @functools.cached_property
    def environment(self) -> Any:
        return template_environment(self.settings)

    @functools.cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings.secret_key)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        # the set holds a reference: the event loop keeps only weak ones to its tasks
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the mails still being sent in the background (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
