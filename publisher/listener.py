"""Adapter: the `[inbound]` SMTP (or LMTP) listener of `publisher run` (aiosmtpd).

The MTA hands it the bounces, complaints and mailto unsubscribes it receives for us. Each
message goes to `receive` (in a worker thread: it commits to the database) and the 250
reply is written only after `receive` has returned, that is after the change is
committed or the message is kept on disk. A crash before that leaves the message in the
MTA's queue, which retries it; a failure of `receive` answers 451 for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["InboundListener", "Receive"]

log = logging.getLogger("publisher.listener")

# Called with the raw message; returns once it is committed or kept (True: acted on).
Receive = Callable[[bytes], bool]

# a message this many times over inbound.max_message_bytes is refused (552) unread:
# up to it, `receive` keeps an oversized one as "too large"
HARD_LIMIT_FACTOR = 4


class _Handler:
    def __init__(self, receive: Receive, lmtp: bool) -> None:
        self.receive = receive
        self.lmtp = lmtp

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        try:
            handled = await asyncio.to_thread(self.receive, content)
        except Exception:
            log.exception("inbound message not stored; the MTA will retry it")
            reply = "451 4.3.0 not stored, try again later"
        else:
            reply = "250 2.0.0 OK: " + ("handled" if handled else "kept")
        if self.lmtp:  # RFC 2033: one reply per recipient
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply


class _Tracked(SMTP):
    """Keeps itself in `connections` while open, so stop() can wait for sessions."""

    connections: set[SMTP]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.connections.discard(self)
        super().connection_lost(error)


class _TrackedSMTP(_Tracked):
    pass


class _TrackedLMTP(_Tracked, LMTP):
    pass


class InboundListener:
    """An SMTP/LMTP server on the caller's event loop that hands each message to `receive`."""

    def __init__(
        self,
        receive: Receive,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lmtp: bool = False,
        max_message_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.lmtp = lmtp
        self.max_message_bytes = max_message_bytes
        self._handler = _Handler(receive, lmtp)
        self._connections: set[SMTP] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        kind: type[_Tracked] = _TrackedLMTP if self.lmtp else _TrackedSMTP
        protocol = kind(
            self._handler,
            hostname="publisher-inbound",
            ident="publisher inbound",
            data_size_limit=self.max_message_bytes * HARD_LIMIT_FACTOR,
        )
        protocol.connections = self._connections
        return protocol

    async def start(self) -> InboundListener:
        """Listen (port 0 picks a free port; `self.port` is then the real one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=self.host, port=self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info(
            "inbound %s listener on %s:%s", "LMTP" if self.lmtp else "SMTP", self.host, self.port
        )
        return self

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening; give open sessions `grace` seconds, then close them (a message
        not yet answered stays with the MTA, which retries it)."""
        if self._server is None:
            return
        self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._server = None
