"""The web adapter over a real uvicorn on 127.0.0.1 port 0, driven by httpx and raw sockets."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import feedparser
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route

from publisher.app import App
from publisher.config import load_settings
from publisher.web import create_app, serve
from tests.conftest import SEEDS, write_config

T = TypeVar("T")

NEW_ARTICLE = """Home>Harbin Today

Harbin opens a new ice festival park

Updated : 2024-12-20

By Li Na ( chinadaily.com.cn )

The park opens on Friday with sculptures carved from river ice.
"""


@dataclass
class Running:
    url: str
    port: int
    app: App
    public: Path


@dataclass
class Served:
    """A server run by `served`: its base URL and port, and a way into its event loop."""

    url: str
    port: int
    loop: asyncio.AbstractEventLoop

    def run(self, work: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Await `work` on the server's loop (where its background tasks live)."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)


def run_server(app: App, extra_routes: list[BaseRoute] | None = None) -> Iterator[tuple[str, int]]:
    """serve() in a thread with its own loop; yields the base URL once it listens."""
    for server in served(app, extra_routes):
        yield server.url, server.port


def served(app: App, extra_routes: list[BaseRoute] | None = None) -> Iterator[Served]:
    """serve() in a thread with its own loop; yields it once it listens."""
    web = create_app(app.settings, extra_routes=extra_routes or [])
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(serve(web, "127.0.0.1", 0, stop, ready=started))
        await started.wait()
        ready.set()
        await task

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(10), "server did not start"
    assert not failure, failure
    port = web.state.port
    try:
        yield Served(f"http://127.0.0.1:{port}/", port, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        assert not thread.is_alive(), "server did not stop"
        loop.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    # a page of 5: the seeds fill archive/1.xml, so an archive document is served too
    config = write_config(
        tmp_path, f"sqlite:///{tmp_path}/db.sqlite", feeds="{ archive_page_size = 5 }"
    )
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    app.ingest()
    app.build_feeds()
    (tmp_path / "secret.txt").write_text("outside the output folder", encoding="utf-8")
    for url, port in run_server(app):
        yield Running(url, port, app, app.settings.output_dir)
    app.close()


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """A request line sent exactly as written (httpx would normalize `..` away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_feeds_are_served_with_their_content_types(running: Running) -> None:
    expected = {
        "atom.xml": "application/atom+xml",
        "rss.xml": "application/rss+xml",
        "feed.json": "application/feed+json",
        "category/harbin-today/atom.xml": "application/atom+xml",
        "archive/1.xml": "application/atom+xml",
        "index.html": "text/html",
        "static/style.css": "text/css",
    }
    with httpx.Client(base_url=running.url) as client:
        for path, kind in expected.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"].split(";")[0] == kind, path
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["cache-control"].startswith("public, max-age=")
            assert response.headers["etag"].startswith('"')  # strong
            assert response.headers["last-modified"].endswith("GMT")
        parsed = feedparser.parse(client.get("atom.xml").content)
        assert parsed.bozo == 0 and len(parsed.entries) == 5


def test_root_serves_the_index_with_a_content_security_policy(running: Running) -> None:
    response = httpx.get(running.url)
    assert response.status_code == 200
    assert "Latest articles" in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    # scripts from the site only (the search box); WebAssembly may compile, strings not
    assert "script-src 'self' 'wasm-unsafe-eval';" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp


def test_conditional_get_304_then_200_with_a_new_etag_after_a_new_article(running: Running) -> None:
    with httpx.Client(base_url=running.url) as client:
        first = client.get("atom.xml")
        etag = first.headers["etag"]
        again = client.get("atom.xml", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        since = client.get(
            "atom.xml", headers={"If-Modified-Since": first.headers["last-modified"]}
        )
        assert since.status_code == 304

        new = running.app.settings.inbox / "new.txt"
        new.write_text(NEW_ARTICLE, encoding="utf-8")
        running.app.ingest([new])

        changed = client.get("atom.xml", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert b"Harbin opens a new ice festival park" in changed.content
        assert (
            client.get("atom.xml", headers={"If-None-Match": changed.headers["etag"]}).status_code
            == 304
        )


def test_gzip_when_asked_with_its_own_etag(running: Running) -> None:
    with httpx.Client(base_url=running.url) as client:
        plain = client.get("atom.xml", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        zipped = client.build_request("GET", "atom.xml", headers={"Accept-Encoding": "gzip"})
        response = client.send(zipped, stream=True)
        raw = b"".join(response.iter_raw())
        response.close()
        assert response.headers["content-encoding"] == "gzip"
        # Accept too: a browser asking for HTML gets the feed as application/xml (feed.xsl)
        assert response.headers["vary"] == "Accept, Accept-Encoding"
        assert gzip.decompress(raw) == plain.content
        assert len(raw) < len(plain.content)
        assert response.headers["etag"] != plain.headers["etag"]
        refused = client.get("atom.xml", headers={"Accept-Encoding": "gzip;q=0"})
        assert "content-encoding" not in refused.headers
        revalidated = client.get(
            "atom.xml",
            headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["etag"]},
        )
        assert revalidated.status_code == 304


def test_head_has_the_headers_and_no_body(running: Running) -> None:
    response = httpx.head(running.url + "rss.xml", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == (running.public / "rss.xml").stat().st_size


def test_unknown_path_gets_the_404_page_never_a_traceback(running: Running) -> None:
    response = httpx.get(running.url + "no/such/page.html?<script>")
    assert response.status_code == 404
    assert "Not found" in response.text
    assert "Traceback" not in response.text
    assert response.headers["content-security-policy"]
    escaped = httpx.get(running.url + "%3Cscript%3Ealert(1)%3C/script%3E")
    assert escaped.status_code == 404
    assert "<script>alert" not in escaped.text
    assert "&lt;script&gt;" in escaped.text
    assert httpx.post(running.url + "atom.xml").status_code == 405


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/archive/..%2f..%2fsecret.txt",
        "/articles/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/.build/state.json",
        "/%2ebuild/pages.json",
    ],
)
def test_path_traversal_and_dot_files_are_refused(running: Running, target: str) -> None:
    status, body = raw_get(running.port, target)
    assert status in (400, 404)
    assert b"outside the output folder" not in body
    assert b"fingerprint" not in body


def test_a_symlink_out_of_the_folder_is_not_followed(running: Running) -> None:
    (running.public / "escape.txt").symlink_to(running.public.parent / "secret.txt")
    assert httpx.get(running.url + "escape.txt").status_code == 404


def test_extra_routes_come_before_the_static_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    app = App(load_settings(config, environ={}))
    app.build_feeds()

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['token']}")

    try:
        for url, _ in run_server(app, [Route("/confirm/{token}", hello)]):
            assert httpx.get(url + "confirm/abc").text == "hello abc"
            assert httpx.get(url + "index.html").status_code == 200
            assert httpx.get(url + "confirm").status_code == 404
    finally:
        app.close()


def test_serve_reports_a_port_in_use(running: Running) -> None:
    web = create_app(running.app.settings)

    async def main() -> None:
        await serve(web, "127.0.0.1", running.port, asyncio.Event())

    from publisher.errors import PublisherError

    with pytest.raises(PublisherError, match="cannot listen"):
        asyncio.run(asyncio.wait_for(main(), 10))
