"""Fetching from SNS for the SES webhook: the signing certificate and the SubscribeURL.

Only URLs that webhooks.ses.check_sns_url accepted come here (https, an
sns.<region>.amazonaws.com host). TLS is verified against `webhooks.ses_trust_file` (else
the system's trust store) for the URL's own host name, whatever address
`webhooks.ses_connect_to` sends the connection to; no redirect is followed, and an answer
is bounded in size and time. Certificates are kept by URL: SNS signs with a handful of
them, so a webhook costs no fetch once its certificate is known.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import ssl
from collections import OrderedDict
from urllib.parse import urlsplit

from publisher.config import WebhookSettings
from publisher.errors import ConfigError, PublisherError

__all__ = ["FetchError", "SnsFetcher"]

MAX_CERTIFICATE_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 64 * 1024
TIMEOUT_SECONDS = 10.0
KEPT_CERTIFICATES = 32
# fetches under way at once: forged messages naming made-up certificate URLs (on SNS's own
# hosts, for a trusted topic) cannot make us open many connections
CONCURRENT_FETCHES = 2


class FetchError(PublisherError, ConnectionError):
    """SNS could not be reached or answered wrongly: the request may be genuine (503)."""


class _Connection(http.client.HTTPSConnection):
    """HTTPS to `address`, with TLS (SNI and the certificate check) for the URL's host."""

    def __init__(self, host: str, port: int, address: tuple[str, int], tls: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=TIMEOUT_SECONDS, context=tls)
        self.address = address
        self.tls = tls

    def connect(self) -> None:
        raw = socket.create_connection(self.address, TIMEOUT_SECONDS)
        try:
            self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise


class SnsFetcher:
    """GETs to SNS, in a thread; the certificates it fetched, by URL."""

    def __init__(self, settings: WebhookSettings) -> None:
        try:
            self.tls = ssl.create_default_context(cafile=settings.ses_trust_file or None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"webhooks.ses_trust_file {settings.ses_trust_file} holds no usable "
                f"certificate: {exc}",
                "give a PEM file of CA certificates, or unset it to use the system's",
            ) from exc
        self.connect_to: tuple[str, int] | None = None
        if settings.ses_connect_to:
            host, _, port = settings.ses_connect_to.rpartition(":")
            self.connect_to = (host.strip("[]"), int(port))
        self.certificates: OrderedDict[str, bytes] = OrderedDict()
        self.fetching = asyncio.Semaphore(CONCURRENT_FETCHES)

    async def certificate(self, url: str) -> bytes:
        """The PEM at SigningCertURL `url`."""
        kept = self.certificates.get(url)
        if kept is not None:
            self.certificates.move_to_end(url)
            return kept
        async with self.fetching:
            # another request may have fetched it while this one waited
            pem = self.certificates.get(url)
            if pem is None:
                pem = await asyncio.to_thread(self.get, url, MAX_CERTIFICATE_BYTES)
        self.certificates[url] = pem
        while len(self.certificates) > KEPT_CERTIFICATES:
            self.certificates.popitem(last=False)
        return pem

    async def confirm(self, url: str) -> None:
        """Visit a SubscribeURL: SNS then starts delivering the topic's messages."""
        async with self.fetching:
            await asyncio.to_thread(self.get, url, MAX_ANSWER_BYTES)

    def get(self, url: str, limit: int) -> bytes:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connection = _Connection(host, port, self.connect_to or (host, port), self.tls)
        try:
            connection.request("GET", target, headers={"User-Agent": "publisher-webhooks"})
            answer = connection.getresponse()
            body = answer.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"cannot fetch {host}: {exc}") from exc
        finally:
            connection.close()
        if answer.status != 200:
            raise FetchError(f"{host} answered {answer.status} for an SNS URL")
        if len(body) > limit:
            raise FetchError(f"{host} answered more than {limit} bytes")
        return body
