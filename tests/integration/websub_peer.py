"""A real WebSub peer on 127.0.0.1 for tests: a subscriber callback (echoes the challenge,
records deliveries) and an external hub (records publish pings), one HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

__all__ = ["Peer", "Received", "websub_peer"]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Peer:
    url: str
    received: list[Received] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def record(self, item: Received) -> None:
        with self.changed:
            self.received.append(item)
            self.changed.notify_all()

    def seen(self, method: str, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.method == method and r.path == path]

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
                self.changed.wait(min(left, 0.1))

    def clear(self) -> None:
        with self.lock:
            self.received.clear()


class _Handler(BaseHTTPRequestHandler):
    peer: Peer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _received(self, body: bytes) -> Received:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        return Received(self.command, parts.path, query, headers, body)

    def do_GET(self) -> None:  # the intent check: echo hub.challenge
        item = self._received(b"")
        answer = item.query.get("hub.challenge", "").encode()
        self.send_response(200 if answer else 404)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.peer.record(item)

    def do_POST(self) -> None:  # a delivery, or a publish ping to the "external hub"
        length = int(self.headers.get("Content-Length") or 0)
        item = self._received(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()
        self.peer.record(item)


@contextmanager
def websub_peer() -> Iterator[Peer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    peer = Peer(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = type("Handler", (_Handler,), {"peer": peer})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
