"""Adapter: SMTP (or LMTP) served with aiosmtpd on the caller's event loop.

`SmtpServer` is the part every server of ours shares: listen (port 0 picks a free one),
keep track of open sessions, and stop with a grace period for the transactions in
flight. What a server does with a message is its handler's business: the `[inbound]`
listener (`smtpserver.inbound`) stores bounces and complaints, the `--smtp-debug` sink
(`smtpserver.sink`) writes .eml files.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Self

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

__all__ = ["SmtpServer"]


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


class SmtpServer:
    """An SMTP/LMTP server on this event loop that hands each transaction to `handler`
    (an aiosmtpd handler: `handle_DATA` and friends)."""

    def __init__(
        self,
        handler: Any,
        host: str,
        port: int,
        *,
        hostname: str,
        ident: str,
        lmtp: bool = False,
        data_size_limit: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.lmtp = lmtp
        self._handler = handler
        self._options: dict[str, Any] = {"hostname": hostname, "ident": ident}
        if data_size_limit is not None:
            self._options["data_size_limit"] = data_size_limit
        self._connections: set[SMTP] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        kind: type[_Tracked] = _TrackedLMTP if self.lmtp else _TrackedSMTP
        protocol = kind(self._handler, **self._options)
        protocol.connections = self._connections
        return protocol

    async def start(self) -> Self:
        """Listen (port 0 picks a free port; `self.port` is then the real one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host=self.host, port=self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening; give open sessions `grace` seconds to finish, then close them
        (a message not yet answered stays with the client, which tries again)."""
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

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
