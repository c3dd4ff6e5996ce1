"""HTTP/1.1 connections: uvicorn's h11 protocol with a deadline for each request.

uvicorn closes a kept-alive connection that stays idle after a response, but a client
that connects and sends nothing, or dribbles a header line now and then, holds its
connection (and a file descriptor) forever. Here each request, head and body, must
arrive whole within `server.header_timeout_seconds` of the connection opening (the first
request) or of its first byte (later ones), else the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["with_header_timeout"]


class _DeadlineProtocol(H11Protocol):
    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_deadline()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_deadline()  # the next request on a kept-alive connection
        super().data_received(data)
        if not self._receiving():
            self._cancel_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _receiving(self) -> bool:
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

    def _arm_deadline(self) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._receiving() and not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`, with this request deadline."""
    return type("RequestDeadlineProtocol", (_DeadlineProtocol,), {"header_timeout": seconds})
