"""Adapter: DNS look-ups with dnspython (the only dnspython import), and the organizational
domain of a name from the Public Suffix List (the only publicsuffixlist import; the list
ships inside the package, nothing is fetched).

Asks the nameservers `[doctor]` names (tests: a local server on 127.0.0.1 and a port),
else the system's resolver. An absent name or record is an empty answer; a server that
does not answer is `LookupFailed`, which `doctor` reports as such, never as "missing".
"""

from __future__ import annotations

import dns.exception
import dns.resolver
import dns.reversename
from publicsuffixlist import PublicSuffixList

from publisher.config import DoctorSettings
from publisher.errors import PublisherError

__all__ = ["LookupFailed", "Resolver"]


class LookupFailed(PublisherError):
    """No nameserver answered (timeout, refused, SERVFAIL)."""


class Resolver:
    def __init__(self, settings: DoctorSettings) -> None:
        servers = [s.strip() for s in settings.nameservers.split(",") if s.strip()]
        self._resolver = dns.resolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = servers
            self._resolver.port = settings.port
        self._resolver.lifetime = settings.timeout_seconds
        self._suffixes: PublicSuffixList | None = None

    def _answer(self, name: str, kind: str) -> list[dns.rdata.Rdata]:
        try:
            answer = self._resolver.resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            raise LookupFailed(f"no DNS answer for {kind} {name}: {exc}") from exc
        except (dns.exception.DNSException, ValueError) as exc:
            raise LookupFailed(f"DNS look-up of {kind} {name} failed: {exc}") from exc
        return list(answer)

    def txt(self, name: str) -> list[str]:
        """Each TXT record at `name`, its strings joined."""
        return [
            b"".join(record.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
            for record in self._answer(name, "TXT")
        ]

    def addresses(self, host: str) -> list[str]:
        """A and AAAA addresses of `host`."""
        return [record.to_text() for kind in ("A", "AAAA") for record in self._answer(host, kind)]

    def ptr(self, address: str) -> list[str]:
        """The names the reverse zone gives for an IP address (no final dot, lower case)."""
        name = dns.reversename.from_address(address).to_text()
        return [record.to_text().rstrip(".").lower() for record in self._answer(name, "PTR")]

    def organizational(self, name: str) -> str:
        """DMARC's organizational domain (RFC 7489 3.2): the public suffix plus one label,
        so news.example.co.uk -> example.co.uk, not co.uk. A name that is itself a public
        suffix stands for itself."""
        if self._suffixes is None:  # parsed on first use: a few hundred kB of rules
            self._suffixes = PublicSuffixList()
        name = name.lower().rstrip(".")
        return self._suffixes.privatesuffix(name) or name

    def dkim_txt(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's `dnsfunc`: the first TXT record at `name`, or None."""
        found = self.txt(name.decode("ascii").rstrip("."))
        return found[0].encode("utf-8") if found else None
