"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, port 0, with a recording handler.

Failure cases swap behaviour on the same real socket (aiosmtplib's own test style):
`fail_once` answers 451 to a recipient's first RCPT, `reject` answers 550, `data_reply` answers DATA as given, `drop_after`
closes each connection after N accepted messages, `login` offers AUTH and refuses (535)
any other login, `slow_down` answers a domain's next N RCPTs with a 421 "slow down" reply,
and `on_data` runs inside DATA before the reply (the kill tests SIGKILL the sender there: a
message in flight). `arrivals` records when each message was accepted
(time.monotonic(), recipient), for rates per domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SmtpSink", "closed_port", "running_sink", "smtp_sink"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = message_from_bytes(self.data, policy=policy.default)  # type: ignore[assignment]
        return parsed


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)
    fail_once: set[str] = field(default_factory=set)
    reject: set[str] = field(default_factory=set)
    data_reply: dict[str, str] = field(default_factory=dict)  # recipient -> reply to DATA
    drop_after: int | None = None
    on_data: Callable[[Received], None] | None = None
    on_mail: Callable[[], None] | None = None
    attempts: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    helo_names: list[str] = field(default_factory=list)  # what each MAIL's session said
    slow_down: dict[str, int] = field(default_factory=dict)  # domain -> 421s still to give
    slowed: Counter[str] = field(default_factory=Counter)  # 421s given, per recipient
    slowed_at: list[float] = field(default_factory=list)  # time.monotonic() of each 421
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    # set: AUTH is offered (without TLS) and only this (username, password) logs in
    login: tuple[str, str] | None = None
    logins: list[tuple[str, bool]] = field(default_factory=list)  # (username, accepted)

    # -- aiosmtpd handler hooks ---------------------------------------------------

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.on_mail is not None:
            self.on_mail()
        self.helo_names.append(str(session.host_name))
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.attempts[address] += 1
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        domain = address.rpartition("@")[2].lower()
        if self.slow_down.get(domain, 0) > 0:
            self.slow_down[domain] -= 1
            self.slowed[address] += 1
            self.slowed_at.append(time.monotonic())
            return "421 4.7.0 Try again later, closing connection"
        if address in self.fail_once:
            self.fail_once.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            if recipient in self.data_reply:
                return self.data_reply[recipient]
        received = Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
        if self.on_data is not None:
            self.on_data(received)
        self.messages.append(received)
        self.arrivals.append((time.monotonic(), received.rcpt_tos[0]))
        count = getattr(session, "sink_count", 0) + 1
        session.sink_count = count  # type: ignore[attr-defined]
        if self.drop_after is not None and count >= self.drop_after and server.transport:
            # close right after the 250 is written: the client learns on its next command
            asyncio.get_running_loop().call_soon(server.transport.close)
        return "250 OK queued"

    def authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd's authenticator: a wrong login gets its 535."""
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            accepted = (user, password) == self.login
            self.logins.append((user, accepted))
            return AuthResult(success=accepted, handled=False)
        return AuthResult(success=False, handled=False)

    # -- queries ------------------------------------------------------------------

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def per_recipient(self) -> Counter[str]:
        return Counter(r for m in self.messages for r in m.rcpt_tos)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"sink got {len(self.messages)} messages, wanted {count}")
            time.sleep(0.01)


class _Thread:
    """Runs the server in its own event loop on a thread, so sync and async tests can use it."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.AbstractServer | None = None

    def start(self) -> None:
        self.thread.start()

        def factory() -> SMTPServer:
            self.sink.connections += 1
            if self.sink.login is None:
                return SMTPServer(self.sink, hostname="sink.test", data_size_limit=10_000_000)
            return SMTPServer(
                self.sink,
                hostname="sink.test",
                data_size_limit=10_000_000,
                authenticator=self.sink.authenticate,
                auth_require_tls=False,
            )

        future = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(factory, self.sink.host, 0), self.loop
        )
        self.server = future.result(timeout=5)
        self.sink.port = int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@contextlib.contextmanager
def running_sink(sink: SmtpSink | None = None) -> Iterator[SmtpSink]:
    """`sink` (a fresh one by default) served on a free 127.0.0.1 port while inside."""
    sink = sink or SmtpSink()
    runner = _Thread(sink)
    runner.start()
    try:
        yield sink
    finally:
        runner.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A recording aiosmtpd server on a free 127.0.0.1 port."""
    with running_sink() as sink:
        yield sink


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released): a relay that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send_config(folder: Any, database_url: str, sink: SmtpSink, **smtp: object) -> Any:
    """A test config (tests/conftest.write_config) whose [smtp] points at `sink`."""
    from tests.conftest import write_config

    path = write_config(folder, database_url)
    values = {"host": '"127.0.0.1"', "port": sink.port, "backoff_seconds": 0.01, "pool_size": 4}
    values.update(smtp)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path
