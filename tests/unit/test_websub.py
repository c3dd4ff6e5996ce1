"""The pure WebSub decisions: topics, requests, leases, signatures, addresses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from publisher.websub import (
    InvalidHubRequest,
    changed_topics,
    is_public_address,
    lease_seconds,
    parse_request,
    retry_delays,
    signature,
    topic_path,
)

BASE = "https://news.example/"


def test_only_subscription_feeds_are_topics_never_archives_or_pages() -> None:
    written = [
        "atom.xml",
        "archive/3.xml",
        "index.html",
        "category/harbin-today/rss.xml",
        "articles/x.html",
        "feed.json",
        "sitemap.xml",
    ]
    assert changed_topics(written) == ["atom.xml", "category/harbin-today/rss.xml", "feed.json"]


@pytest.mark.parametrize(
    ("topic", "path"),
    [
        (BASE + "atom.xml", "atom.xml"),
        (BASE + "category/%E5%93%88/feed.json", "category/哈/feed.json"),
        ("https://other.example/atom.xml", None),
        (BASE + "archive/1.xml", None),
        (BASE + "category/../atom.xml", None),
        (BASE + "atom.xml?x=1", None),
    ],
)
def test_a_topic_must_be_one_of_our_feeds(topic: str, path: str | None) -> None:
    assert topic_path(topic, BASE) == path


def test_a_request_is_refused_with_a_reason() -> None:
    good = {
        "hub.mode": "subscribe",
        "hub.topic": BASE + "atom.xml",
        "hub.callback": "https://r.example/cb",
    }
    request = parse_request(good, BASE, default_lease=600, max_lease=3600)
    assert (request.path, request.host, request.lease_seconds) == ("atom.xml", "r.example", 600)
    bad = [
        {**good, "hub.mode": "publish"},
        {**good, "hub.topic": "https://evil.example/atom.xml"},
        {**good, "hub.callback": "ftp://r.example/cb"},
        {**good, "hub.callback": "https://user:pw@r.example/cb"},
        {**good, "hub.callback": "https://r.example/c b"},
        {**good, "hub.secret": "x" * 200},
        {**good, "hub.lease_seconds": "-5"},
    ]
    for form in bad:
        with pytest.raises(InvalidHubRequest):
            parse_request(form, BASE, default_lease=600, max_lease=3600)


def test_leases_are_bounded() -> None:
    assert lease_seconds("999999", 600, 3600) == 3600
    assert lease_seconds("1", 600, 3600) == 60
    assert lease_seconds(None, 600, 3600) == 600


def test_the_signature_is_the_hmac_sha256_of_the_body() -> None:
    body = b"<feed/>"
    assert signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_private_loopback_and_link_local_addresses_are_not_public(
    address: str, public: bool
) -> None:
    assert is_public_address(address) is public


def test_retries_back_off() -> None:
    assert retry_delays(3, 0.5) == [0.5, 1.0, 2.0]
