"""SMTP faults: a server down for a whole run, and TLS (STARTTLS, implicit) with a test CA.

Real aiosmtpd servers on 127.0.0.1; certificates made by trustme for this test only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from click.testing import CliRunner, Result
from sqlalchemy import select

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.store.schema import deliveries, subscribers
from tests.conftest import SEEDS, write_config
from tests.smtp_sink import SmtpSink

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
PEOPLE = ("ann@example.com", "bob@example.com", "cat@example.com")


class Server:
    """An aiosmtpd server on its own loop and thread; `ssl` for implicit TLS."""

    def __init__(
        self,
        factory: Callable[[SmtpSink], SMTPServer],
        *,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sink = SmtpSink()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        created = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(lambda: factory(self.sink), "127.0.0.1", port, ssl=tls),
            self.loop,
        )
        self.server = created.result(timeout=5)
        self.port = int(self.server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(tmp_path: Path, port: int, **smtp: object) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'p.db'}")
    values: dict[str, object] = {
        "host": '"127.0.0.1"',
        "port": port,
        "backoff_seconds": 0.01,
        "attempts": 3,
        "timeout_seconds": 5,
        "pool_size": 2,
    }
    values.update(smtp)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[smtp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


def _prepare(config: Path) -> None:
    """Seeds ingested, three confirmed subscribers."""
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        for email in PEOPLE:
            app.add_subscriber(email)
    finally:
        app.close()


def _send(config: Path, password: str | None = None) -> Result:
    env = {"PUBLISHER_SMTP_PASSWORD": password} if password else {}
    return CliRunner().invoke(
        cli, ["--config", str(config), "send", "--now", NOW.isoformat()], env=env
    )


def _rows(config: Path) -> list[tuple[str, int]]:
    app = App(load_settings(config, environ={}))
    try:
        with app.store.read() as connection:
            found = connection.execute(select(deliveries.c.status, deliveries.c.attempts)).all()
            bounced = connection.execute(select(subscribers.c.hard_failures)).scalars().all()
        assert set(bounced) == {0}  # the server's fault never counts against a subscriber
        return [(str(status), int(attempts or 0)) for status, attempts in found]
    finally:
        app.close()


# -- server down ---------------------------------------------------------------------


def test_server_down_for_the_whole_run_leaves_every_delivery_for_the_next_run(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nothing listens here
    config = _config(tmp_path, port)
    _prepare(config)

    down = _send(config)
    assert down.exit_code == 1, down.output
    assert "Traceback" not in down.output
    [error] = [line for line in down.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in error
    assert "3 messages not sent (still pending)" in error
    assert "hint: the next `publisher send` sends them, each once" in down.stderr
    rows = _rows(config)
    assert len(rows) == 3 and {status for status, _ in rows} <= {"pending", "sending"}
    status = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"], env={})
    assert json.loads(status.stdout)["deliveries"] == {"pending": 3, "failed": 0}

    # the server is back on the same port: the next run sends each message once
    server = Server(lambda sink: SMTPServer(sink, hostname="sink.test"), port=port)
    try:
        up = _send(config)
        assert up.exit_code == 0, up.output
        assert "resumed unfinished run" in up.stdout
        assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)
        assert {status for status, _ in _rows(config)} == {"sent"}
        again = _send(config)
        assert again.exit_code == 0
        assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)
    finally:
        server.stop()


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _starttls_server(context: ssl.SSLContext) -> Server:
    def factory(sink: SmtpSink) -> SMTPServer:
        # require_starttls: MAIL before STARTTLS is refused, so a delivery proves TLS
        return SMTPServer(sink, hostname="sink.test", tls_context=context, require_starttls=True)

    return Server(factory)


def _implicit_tls_server(context: ssl.SSLContext) -> Server:
    return Server(lambda sink: SMTPServer(sink, hostname="sink.test"), tls=context)


SERVERS: dict[str, Callable[[ssl.SSLContext], Server]] = {
    "starttls": _starttls_server,
    "tls": _implicit_tls_server,
}


@pytest.fixture(params=sorted(SERVERS))
def tls_server(request: pytest.FixtureRequest, server_context: ssl.SSLContext) -> Iterator[Any]:
    # the server side logs the refused handshake with a traceback; only the client is tested
    server_log = logging.getLogger("mail.log")
    level, server_log.level = server_log.level, logging.CRITICAL
    server = SERVERS[request.param](server_context)
    try:
        yield request.param, server
    finally:
        server.stop()
        server_log.setLevel(level)


def test_tls_with_the_configured_ca_delivers(
    tls_server: tuple[str, Server], ca_file: str, tmp_path: Path
) -> None:
    mode, server = tls_server
    config = _config(tmp_path, server.port, tls=f'"{mode}"', ca_file=f'"{ca_file}"')
    _prepare(config)
    sent = _send(config)
    assert sent.exit_code == 0, sent.output
    assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)


def test_a_certificate_that_does_not_verify_is_refused_with_a_clear_error(
    tls_server: tuple[str, Server], tmp_path: Path
) -> None:
    mode, server = tls_server
    config = _config(tmp_path, server.port, tls=f'"{mode}"')  # system CAs only
    _prepare(config)
    refused = _send(config)
    assert refused.exit_code == 1, refused.output
    assert "Traceback" not in refused.output
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "its TLS certificate did not verify" in error
    assert "set smtp.ca_file" in error
    assert server.sink.messages == []
    assert {status for status, _ in _rows(config)} <= {"pending", "sending"}


def test_verification_can_be_switched_off_explicitly(
    tls_server: tuple[str, Server], tmp_path: Path
) -> None:
    mode, server = tls_server
    config = _config(tmp_path, server.port, tls=f'"{mode}"', verify_certificate="false")
    _prepare(config)
    sent = _send(config)
    assert sent.exit_code == 0, sent.output
    assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)


# -- login ---------------------------------------------------------------------------------

USER, PASSWORD = "mailer", "s3cret-Pa55word-for-the-sink"


class Credentials:
    """aiosmtpd authenticator: one user; records each attempt's outcome."""

    def __init__(self) -> None:
        self.attempts: list[bool] = []

    def __call__(
        self, server: SMTPServer, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == PASSWORD.encode()
        )
        self.attempts.append(ok)
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client hanging)
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_server(server_context: ssl.SSLContext) -> Iterator[tuple[Server, Credentials]]:
    credentials = Credentials()
    server = Server(
        lambda sink: SMTPServer(
            sink,
            hostname="sink.test",
            authenticator=credentials,
            auth_required=True,
            tls_context=server_context,  # aiosmtpd offers AUTH only after STARTTLS
            require_starttls=True,
        )
    )
    try:
        yield server, credentials
    finally:
        server.stop()


def test_login_with_the_configured_password_delivers(
    auth_server: tuple[Server, Credentials], ca_file: str, tmp_path: Path
) -> None:
    server, credentials = auth_server
    config = _config(
        tmp_path, server.port, tls='"starttls"', ca_file=f'"{ca_file}"', username=f'"{USER}"'
    )
    _prepare(config)
    sent = _send(config, PASSWORD)
    assert sent.exit_code == 0, sent.output
    assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)
    assert credentials.attempts and all(credentials.attempts)


def test_a_refused_login_leaves_every_delivery_pending_and_never_shows_the_password(
    auth_server: tuple[Server, Credentials], ca_file: str, tmp_path: Path
) -> None:
    server, credentials = auth_server
    wrong = "not-the-Pa55word-" + "x" * 8
    config = _config(
        tmp_path, server.port, tls='"starttls"', ca_file=f'"{ca_file}"', username=f'"{USER}"'
    )
    _prepare(config)
    refused = _send(config, wrong)
    assert refused.exit_code == 1, refused.output
    assert "Traceback" not in refused.output
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot reach SMTP server 127.0.0.1:{server.port}" in error
    assert "check smtp.username and PUBLISHER_SMTP_PASSWORD" in refused.stderr
    assert wrong not in refused.output
    assert credentials.attempts and not any(credentials.attempts)
    assert server.sink.messages == []
    assert {status for status, _ in _rows(config)} <= {"pending", "sending"}

    # the password is fixed: the next run sends each message once
    fixed = _send(config, PASSWORD)
    assert fixed.exit_code == 0, fixed.output
    assert server.sink.per_recipient() == dict.fromkeys(PEOPLE, 1)
