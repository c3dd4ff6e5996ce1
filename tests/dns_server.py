"""A real DNS server for tests: dnslib on 127.0.0.1 (UDP and TCP, one free port) answering
from a zone the test holds and may change while it runs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from dnslib import PTR, QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

__all__ = ["LocalDns", "local_dns", "txt_strings"]


def txt_strings(text: str) -> list[bytes]:
    """A TXT value as DNS carries it: strings of at most 255 bytes."""
    data = text.encode("utf-8")
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


@dataclass
class LocalDns(BaseResolver):  # type: ignore[misc]
    port: int = 0
    # (lower-case name without final dot, "TXT" | "A" | "PTR") -> values
    records: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def add(self, name: str, kind: str, *values: str) -> None:
        self.records.setdefault((name.lower().rstrip("."), kind), []).extend(values)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        self.asked.append(f"{kind} {name}")
        for value in self.records.get((name, kind), []):
            if kind == "TXT":
                data = TXT(txt_strings(value))
            elif kind == "A":
                data = A(value)
            elif kind == "PTR":
                data = PTR(value)
            else:
                continue
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=data, ttl=60))
        if not any(key[0] == name for key in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@pytest.fixture
def local_dns() -> Iterator[LocalDns]:
    zone = LocalDns(port=_free_port())
    quiet = DNSLogger(log="-recv,-send,-request,-reply,-truncated,-data,-error")
    servers = [
        DNSServer(zone, port=zone.port, address="127.0.0.1", tcp=tcp, logger=quiet)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    try:
        yield zone
    finally:
        for server in servers:
            server.stop()
