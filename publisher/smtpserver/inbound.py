"""Adapter: the `[inbound]` SMTP (or LMTP) listener of `publisher run` (aiosmtpd).

The MTA hands it the bounces, complaints and mailto unsubscribes it receives for us.
Messages that arrive while the previous batch commits (a few milliseconds) go to
`receive_many` together (in a worker thread: one database commit for all of them), and
each message's 250 reply is written only after that call has returned, that is after its
change is committed or it is kept on disk. A crash before that leaves the message in the
MTA's queue, which retries it; a failure answers 451 for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from publisher.smtpserver import SmtpServer

__all__ = ["InboundListener", "Receive", "ReceiveMany"]

log = logging.getLogger("publisher.listener")

# Called with the raw message; returns once it is committed or kept (True: acted on).
Receive = Callable[[bytes], bool]
# The same for several messages at once: one result each, in order; all committed or
# kept when it returns, or it raises.
ReceiveMany = Callable[[Sequence[bytes]], Sequence[bool]]

# a message this many times over inbound.max_message_bytes is refused (552) unread:
# up to it, `receive` keeps an oversized one as "too large"
HARD_LIMIT_FACTOR = 4
# How long a batch waits for more messages before it starts; none by default: a batch
# is what arrived while the previous one committed (group commit), so a lone message is
# never held back, and under a storm the batches grow by themselves. A fixed wait keeps
# the MTA's sessions in lockstep, which measured slower (bench/results.md).
BATCH_WINDOW_SECONDS = 0.0
BATCH_MAX = 200


class _Batches:
    """Gathers the messages of every open session into calls of `receive_many`: one
    call at a time, each with what arrived while the previous one ran (and within the
    window, if one is set). A batch that fails is tried again message by message, so one
    message that cannot be stored never costs the others their 250."""

    def __init__(self, receive_many: ReceiveMany, window: float, most: int) -> None:
        self.receive_many = receive_many
        self.window = window
        self.most = most
        self.waiting: list[tuple[bytes, asyncio.Future[bool]]] = []
        self.worker: asyncio.Task[None] | None = None

    async def receive(self, data: bytes) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting.append((data, done))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        while self.waiting:
            if len(self.waiting) < self.most:
                await asyncio.sleep(self.window)
            batch, self.waiting = self.waiting[: self.most], self.waiting[self.most :]
            try:
                await self._run(batch)
            except BaseException:  # cancelled: no session waits for an answer forever
                for _, done in batch + self.waiting:
                    done.cancel()
                self.waiting = []
                raise

    async def _run(self, batch: list[tuple[bytes, asyncio.Future[bool]]]) -> None:
        try:
            results = await asyncio.to_thread(self.receive_many, [data for data, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} messages")
        except Exception as exc:
            if len(batch) > 1:
                for one in batch:
                    await self._run([one])
                return
            _, done = batch[0]
            if not done.done():
                done.set_exception(exc)
            return
        for (_, done), handled in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(handled)


class _Handler:
    def __init__(self, batches: _Batches, lmtp: bool) -> None:
        self.batches = batches
        self.lmtp = lmtp

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        try:
            handled = await self.batches.receive(content)
        except Exception:
            log.exception("inbound message not stored; the MTA will retry it")
            reply = "451 4.3.0 not stored, try again later"
        else:
            reply = "250 2.0.0 OK: " + ("handled" if handled else "kept")
        if self.lmtp:  # RFC 2033: one reply per recipient
            return "\r\n".join([reply] * max(1, len(envelope.rcpt_tos)))
        return reply


class InboundListener(SmtpServer):
    """An SMTP/LMTP server on the caller's event loop that hands the messages to `receive_many`."""

    def __init__(
        self,
        receive: Receive | None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        receive_many: ReceiveMany | None = None,
        lmtp: bool = False,
        max_message_bytes: int = 10 * 1024 * 1024,
        batch_window: float = BATCH_WINDOW_SECONDS,
        batch_max: int = BATCH_MAX,
    ) -> None:
        """`receive_many` (messages gathered into one call) or `receive` (one by one)."""
        if receive_many is None:
            if receive is None:
                raise ValueError("InboundListener needs receive or receive_many")
            one = receive

            def receive_many(messages: Sequence[bytes]) -> list[bool]:
                return [one(data) for data in messages]

        self.max_message_bytes = max_message_bytes
        self.batches = _Batches(receive_many, batch_window, batch_max)
        super().__init__(
            _Handler(self.batches, lmtp),
            host,
            port,
            hostname="publisher-inbound",
            ident="publisher inbound",
            lmtp=lmtp,
            data_size_limit=max_message_bytes * HARD_LIMIT_FACTOR,
        )

    @property
    def queued(self) -> int:
        """Messages received in full that wait for a batch to start (not yet answered)."""
        return len(self.batches.waiting)

    async def start(self) -> Self:
        """Listen (port 0 picks a free port; `self.port` is then the real one)."""
        await super().start()
        log.info(
            "inbound %s listener on %s:%s", "LMTP" if self.lmtp else "SMTP", self.host, self.port
        )
        return self
