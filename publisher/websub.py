"""WebSub (W3C Recommendation 2018) decisions. Pure: values in, values out.

Which written files are topics, which URLs are our topics, what a subscription request
says, how long a lease is, what a delivery is signed with, which addresses a callback
may not reach, and how long to wait between tries. The I/O lives in websubhttp.py
(outbound HTTP), store/websub.py (subscriptions) and websubbing.py (the use case).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from publisher.config import Settings
from publisher.feeds import ATOM_TYPE, JSON_FEED_TYPE, RSS_TYPE

__all__ = [
    "HUB_ROUTE",
    "InvalidHubRequest",
    "SubscribeRequest",
    "changed_topics",
    "content_type",
    "expires",
    "hub_urls",
    "is_public_address",
    "lease_seconds",
    "parse_request",
    "retry_delays",
    "signature",
    "topic_path",
]

HUB_ROUTE = "/websub"
_FEED_TYPES = {"atom.xml": ATOM_TYPE, "rss.xml": RSS_TYPE, "feed.json": JSON_FEED_TYPE}
# the subscription documents: the site's and each category's; archive pages never change
# in a way a subscriber must be told about, so they are no topics
_TOPIC = re.compile(r"^(?:category/[^/]+/)?(?:atom\.xml|rss\.xml|feed\.json)$")
URL_LIMIT = 1000  # ASCII characters of a topic or callback URL (the store's column size)
SECRET_LIMIT = 199  # bytes; the spec: "MUST be less than 200 bytes"


class InvalidHubRequest(ValueError):
    """A subscription request the hub refuses (answered 400 with this text)."""


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """One hub.mode=subscribe|unsubscribe request, checked for form only."""

    mode: str  # subscribe | unsubscribe
    topic: str
    path: str  # the topic's file in the output folder
    callback: str
    lease_seconds: int
    secret: str | None

    @property
    def host(self) -> str:
        return (urlsplit(self.callback).hostname or "").lower()


def hub_urls(settings: Settings) -> tuple[str, ...]:
    """The hubs every feed names: the configured ones, then the built-in one."""
    hubs = settings.websub.hub_urls
    if settings.websub.builtin:
        hubs = (*hubs, settings.url(HUB_ROUTE.lstrip("/")))
    return hubs


def changed_topics(written: Iterable[str]) -> list[str]:
    """The topic files among a build's written paths (relative), in order."""
    return [path for path in written if _TOPIC.match(path)]


def content_type(path: str) -> str:
    return _FEED_TYPES[path.rsplit("/", 1)[-1]]


def topic_path(topic: str, base_url: str) -> str | None:
    """The output file a topic URL names, or None when it is not one of our feeds."""
    base = base_url.rstrip("/") + "/"
    if not topic.startswith(base) or "?" in topic or "#" in topic:
        return None
    path = unquote(topic[len(base) :])
    if ".." in path.split("/") or not _TOPIC.match(path):
        return None
    return path


def lease_seconds(asked: str | None, default: int, maximum: int) -> int:
    """The lease granted: the asked one within [60 s, maximum], else the default."""
    if asked is None or not asked.strip():
        return min(default, maximum)
    if not asked.strip().isdigit():
        raise InvalidHubRequest("hub.lease_seconds must be a whole number of seconds")
    return max(60, min(int(asked), maximum))


def parse_request(
    form: Mapping[str, str], base_url: str, *, default_lease: int, max_lease: int
) -> SubscribeRequest:
    """A subscription request from its form fields; InvalidHubRequest when malformed."""
    mode = form.get("hub.mode", "")
    if mode not in {"subscribe", "unsubscribe"}:
        raise InvalidHubRequest("hub.mode must be subscribe or unsubscribe")
    topic, callback = form.get("hub.topic", ""), form.get("hub.callback", "")
    if not topic or len(topic) > URL_LIMIT or not topic.isascii():
        raise InvalidHubRequest("hub.topic is missing or too long")
    path = topic_path(topic, base_url)
    if path is None:
        raise InvalidHubRequest("hub.topic is not a feed of this site")
    if (
        not callback
        or len(callback) > URL_LIMIT
        or not callback.isascii()
        or any(c in callback for c in "\r\n\t ")
    ):
        raise InvalidHubRequest("hub.callback is missing, too long or malformed")
    parts = urlsplit(callback)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username:
        raise InvalidHubRequest("hub.callback must be an http(s) URL without credentials")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as exc:
        raise InvalidHubRequest("hub.callback has a bad port") from exc
    secret = form.get("hub.secret") or None
    if secret is not None and len(secret.encode()) > SECRET_LIMIT:
        raise InvalidHubRequest("hub.secret must be less than 200 bytes")
    lease = lease_seconds(form.get("hub.lease_seconds"), default_lease, max_lease)
    return SubscribeRequest(mode, topic, path, callback, lease, secret)


def signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature value of a delivery: sha256=<hex HMAC of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified
    addresses (IPv4-mapped IPv6 judged as the IPv4 it maps)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def retry_delays(retries: int, first: float) -> list[float]:
    """Waits before each retry: first, 2 x first, 4 x first, ..."""
    return [first * 2**n for n in range(retries)]


def expires(now: datetime, lease: int) -> datetime:
    return now + timedelta(seconds=lease)
