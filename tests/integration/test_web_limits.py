"""Connection-level limits of the real uvicorn server: proxy headers, idle and slow clients,
request framing, redirects. Raw sockets where httpx would tidy the request up."""

from __future__ import annotations

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


def _post(url: str, email: str, forwarded_for: str) -> int:
    answer = httpx.post(
        url + "subscribe",
        data={"email": email},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    return answer.status_code


# -- X-Forwarded-For -----------------------------------------------------------------------


def test_made_up_forwarded_for_addresses_do_not_dodge_the_rate_limit(serve_with: object) -> None:
    url = serve_with()  # type: ignore[operator]
    codes = [_post(url, f"r{n}@example.com", f"203.0.113.{n}") for n in range(12)]
    assert codes == [200] * 5 + [429] * 7  # subscribe_per_minute = 5, all from 127.0.0.1


def test_forwarded_for_is_believed_from_the_named_proxy(serve_with: object) -> None:
    url = serve_with(forwarded_allow_ips='"127.0.0.1"')  # type: ignore[operator]
    codes = [_post(url, f"r{n}@example.com", f"203.0.113.{n}") for n in range(12)]
    assert codes == [200] * 12  # twelve clients behind the proxy, one request each
    same = [_post(url, f"s{n}@example.com", "198.51.100.7") for n in range(6)]
    assert same == [200] * 5 + [429]  # one client behind the proxy is limited as itself


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
