"""Adapter: the outbound HTTP calls of WebSub (publish pings, intent checks, deliveries).

Callback URLs come from strangers, so every call resolves the host itself, refuses the
whole name when any of its addresses is private, loopback or link-local (unless allowed),
and then connects to the address it checked: a second lookup by the HTTP library could
answer differently (DNS rebinding). Standard library `http.client` because its `connect`
can be pointed at that address while TLS still checks the URL's name; redirects are not
followed; every call has a timeout and reads at most `max_bytes` of the reply.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from publisher import __version__
from publisher.websub import is_public_address

__all__ = ["CallbackRefused", "Reply", "call", "resolve"]

USER_AGENT = f"publisher/{__version__} (WebSub)"


class CallbackRefused(ValueError):
    """The URL's host is unknown or names an address we must not reach."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """A URL and the one address its connection goes to."""

    scheme: str
    host: str
    port: int
    target: str  # path and query as sent
    address: str


def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL's checked address; CallbackRefused when any address of its host is not
    public (and private ones are not allowed) or the name does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefused(f"cannot resolve {host!r}") from exc
    addresses = [str(info[4][0]) for info in found]
    if not addresses:
        raise CallbackRefused(f"cannot resolve {host!r}")
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise CallbackRefused(f"{host!r} resolves to a non-public address")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Target(parts.scheme, host, port, target, addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.pinned = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self.tls)
        self.pinned = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self.pinned, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def call(
    target: Target,
    method: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int,
) -> Reply:
    """One request to the checked address; OSError / http.client.HTTPException on failure.

    `timeout` bounds each socket operation; a reply longer than `max_bytes` is cut there
    (the caller compares what it needs, e.g. the challenge, against the cut body)."""
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    connection = kind(target, timeout)
    try:
        sent = {"User-Agent": USER_AGENT, "Connection": "close", **(headers or {})}
        connection.request(method, target.target, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read(max_bytes)
        return Reply(response.status, data)
    finally:
        connection.close()
