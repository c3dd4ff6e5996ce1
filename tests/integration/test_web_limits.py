"""Connection-level limits of the real uvicorn server: proxy headers, idle and slow clients,
request framing, redirects. Raw sockets where httpx would tidy the request up."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.errors import ConfigError
from tests.conftest import SEEDS
from tests.integration.test_web import run_server
from tests.smtp_sink import SmtpSink, send_config


def _config(folder: Path, database_url: str, sink: SmtpSink, **server: object) -> Path:
    path: Path = send_config(folder, database_url, sink)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[server]\n" + "".join(f"{k} = {v}\n" for k, v in server.items()))
    return path


@pytest.fixture
def serve_with(tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink) -> Iterator[object]:
    """serve_with(**server settings) -> base URL of a running server with the seeds built."""
    running: list[Iterator[tuple[str, int]]] = []
    apps: list[App] = []

    def start(**server: object) -> str:
        app = App(load_settings(_config(tmp_path, sqlite_url, smtp_sink, **server), environ={}))
        apps.append(app)
        app.ingest([SEEDS])
        server_iterator = run_server(app, app.web_routes())
        running.append(server_iterator)
        url, _ = next(server_iterator)
        return url

    yield start
    for server_iterator in running:
        next(server_iterator, None)  # stops the server
    for app in apps:
        app.close()


def _port(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


def _raw(url: str, request: bytes) -> bytes:
    """Send `request` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=15) as raw:
        raw.sendall(request)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    return received


def _post(url: str, email: str, forwarded_for: str | None = None, local: str | None = None) -> int:
    """POST /subscribe from 127.0.0.1 (or `local`), optionally naming a forwarded client."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport = httpx.HTTPTransport(local_address=local) if local else None
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(url + "subscribe", data={"email": email}, headers=headers).status_code


BAD = "not an address"  # a failed attempt: only those count toward the limit


# -- the limit: failed attempts, per client ------------------------------------------------


def test_sign_ups_never_lock_a_client_out_only_its_failed_attempts_do(serve_with: object) -> None:
    url = serve_with()  # type: ignore[operator]
    # an office behind one address signs up a dozen people: none refused
    assert [_post(url, f"r{n}@example.com") for n in range(12)] == [200] * 12
    # five malformed forms from that address (subscribe_per_minute = 5), then it waits
    assert [_post(url, BAD) for _ in range(5)] == [400] * 5
    assert _post(url, "late@example.com") == 429
    # another client (all of 127/8 is loopback on Linux) is not affected
    assert _post(url, "other@example.com", local="127.0.0.2") == 200
    assert _post(url, BAD, local="127.0.0.2") == 400


# -- X-Forwarded-For -----------------------------------------------------------------------


def test_made_up_forwarded_for_addresses_do_not_dodge_the_rate_limit(
    serve_with: object, caplog: pytest.LogCaptureFixture
) -> None:
    url = serve_with()  # type: ignore[operator]
    with caplog.at_level(logging.WARNING, logger="publisher.web"):
        codes = [_post(url, BAD, f"203.0.113.{n}") for n in range(12)]
    assert codes == [400] * 5 + [429] * 7  # all from 127.0.0.1
    # the operator is told once that a proxy's header is being ignored
    told = [r for r in caplog.records if "forwarded_allow_ips" in r.getMessage()]
    assert len(told) == 1 and "127.0.0.1" in told[0].getMessage()


def test_forwarded_for_is_believed_only_from_the_named_proxy(serve_with: object) -> None:
    url = serve_with(forwarded_allow_ips='"127.0.0.2"')  # type: ignore[operator]
    # 127.0.0.1 is not the proxy: what it claims is ignored, it is limited as itself
    codes = [_post(url, BAD, f"203.0.113.{n}") for n in range(7)]
    assert codes == [400] * 5 + [429] * 2
    # through the proxy, each reader is limited as itself
    proxy = "127.0.0.2"
    assert [_post(url, BAD, "198.51.100.7", proxy) for _ in range(6)] == [400] * 5 + [429]
    assert _post(url, "b@example.com", "198.51.100.8", proxy) == 200
    assert [_post(url, BAD, f"192.0.2.{n}", proxy) for n in range(8)] == [400] * 8


def test_forwarded_allow_ips_must_name_addresses(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    config = _config(tmp_path, "sqlite:///db.sqlite", smtp_sink, forwarded_allow_ips='"proxy"')
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        load_settings(config, environ={})
    good = _config(
        tmp_path, "sqlite:///db.sqlite", smtp_sink, forwarded_allow_ips='"10.0.0.0/8, ::1"'
    )
    assert load_settings(good, environ={}).server.forwarded_allow_ips == "10.0.0.0/8, ::1"


# -- idle, slow and too many connections ---------------------------------------------------


def _reads_eof(connection: socket.socket) -> bool:
    connection.settimeout(15)  # the positive signal is the close; this only bounds a failure
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_and_slow_connections_are_closed_and_the_site_keeps_answering(
    serve_with: object,
) -> None:
    url = serve_with(header_timeout_seconds=1, keep_alive_seconds=1, limit_concurrency=12)  # type: ignore[operator]
    idle = [socket.create_connection(("127.0.0.1", _port(url))) for _ in range(6)]
    slow = [socket.create_connection(("127.0.0.1", _port(url))) for _ in range(6)]
    try:
        for connection in slow:  # a head that never ends (slowloris)
            connection.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-a: 1\r\n")
        # twelve held connections fill limit_concurrency: a real visitor gets 503, not a hang
        assert httpx.get(url + "index.html", timeout=10).status_code == 503
        assert all(_reads_eof(connection) for connection in idle + slow)
        assert httpx.get(url + "index.html", timeout=10).status_code == 200
    finally:
        for connection in idle + slow:
            connection.close()
    # a kept-alive connection that goes quiet after its answer is closed as well
    with socket.create_connection(("127.0.0.1", _port(url))) as kept:
        kept.sendall(b"GET /atom.xml HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(12).startswith(b"HTTP/1.1 200")
        kept.settimeout(15)
        while chunk := kept.recv(65536):  # the rest of the answer, then the close
            assert chunk


# -- framing -------------------------------------------------------------------------------


def test_content_length_with_transfer_encoding_gets_400_and_the_connection_closes(
    serve_with: object,
) -> None:
    url = serve_with()  # type: ignore[operator]
    smuggled = (
        b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
        b"GET /atom.xml HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answer = _raw(url, smuggled)  # returns only once the server has closed
    assert answer.startswith(b"HTTP/1.1 400")
    assert answer.count(b"HTTP/1.1 ") == 1  # the request after it was not answered
    assert b"connection: close" in answer.lower()


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("//category", "/category/"),
        ("//category/harbin-today", "/category/harbin-today/"),
        ("/category//harbin-today", "/category/harbin-today/"),
        ("/category", "/category/"),
    ],
)
def test_folder_redirects_stay_on_this_site(serve_with: object, path: str, location: str) -> None:
    url = serve_with()  # type: ignore[operator]
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    head = _raw(url, request).split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 301"), head
    [found] = [line for line in head.split("\r\n") if line.lower().startswith("location:")]
    assert found.split(":", 1)[1].strip() == location
