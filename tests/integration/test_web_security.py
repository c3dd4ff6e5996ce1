"""Web hardening over a real uvicorn on 127.0.0.1 port 0: same-origin form posts, body size
limit, per-IP rate limit, security headers, signed expiring tokens.

(Forged, re-keyed, wrong-purpose and expired *confirm* tokens, and the basic 429, are also
covered in test_subscribe_web.py; here: what those do not.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import time_machine

from publisher.app import App
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS
from tests.integration.test_web import Served, served
from tests.smtp_sink import SmtpSink, send_config

BASE_ORIGIN = "http://127.0.0.1:8080"  # base_url of tests/conftest.write_config


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[App, Served]]:
    app = App(load_settings(send_config(tmp_path, sqlite_url, smtp_sink), environ={}))
    app.ingest([SEEDS])  # builds index.html and the feeds
    for running in served(app, app.web_routes()):
        yield app, running
    app.close()


@pytest.fixture
def site(server: tuple[App, Served]) -> tuple[App, str]:
    app, running = server
    return app, running.url


def _status_of(app: App, email: str) -> SubscriberStatus | None:
    found = next((s for s in app.subscribers() if s.email == email), None)
    return None if found is None else found.status


# -- same origin (CSRF) ----------------------------------------------------------------------


def test_cross_site_subscribe_posts_are_refused(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    app, running = server
    url = running.url
    own = url.rstrip("/")  # the origin the browser sees for this server
    cases = [
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Referer": "https://evil.example/page.html"}, 403),
        ({"Origin": "http://127.0.0.1.evil.example"}, 403),
        ({"Origin": own}, 200),
        ({"Origin": BASE_ORIGIN}, 200),  # base_url: the public name behind a proxy
        ({"Referer": f"{own}/subscribe"}, 200),
        ({}, 200),  # curl and friends send neither header
    ]
    for number, (headers, expected) in enumerate(cases):
        email = f"reader{number}@example.com"
        answer = httpx.post(url + "subscribe", data={"email": email}, headers=headers, timeout=10)
        assert answer.status_code == expected, (headers, answer.text)
        if expected == 403:
            assert "Cross-site" in answer.text
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert _status_of(app, email) is None
        else:
            assert _status_of(app, email) is SubscriberStatus.PENDING
    running.run(app.subscriptions.drain())  # every confirmation mail the posts queued is sent
    assert len(smtp_sink.messages) == 4  # one confirmation per accepted post, none for refused


def test_one_click_unsubscribe_is_not_origin_checked(site: tuple[App, str]) -> None:
    """RFC 8058: the mail provider posts from its own servers; the signed token is the proof."""
    app, url = site
    ann, _ = app.add_subscriber("ann@example.com")
    token = Tokens(app.settings.secret_key).make(UNSUBSCRIBE, ann.id, ann.email)
    answer = httpx.post(
        url + f"unsubscribe/{token}", headers={"Origin": "https://mail.example"}, timeout=10
    )
    assert answer.status_code == 200
    assert _status_of(app, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


# -- body size ---------------------------------------------------------------------------------


def test_request_bodies_over_the_limit_get_413(site: tuple[App, str]) -> None:
    app, url = site
    limit = app.settings.server.max_body_bytes
    big = {"email": "big@example.com", "name": "x" * (limit + 1)}
    declared = httpx.post(url + "subscribe", data=big, timeout=10)
    assert declared.status_code == 413
    assert declared.headers["x-content-type-options"] == "nosniff"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b"email=chunked%40example.com&name="
        for _ in range(limit // 1024 + 2):
            yield b"y" * 1024

    streamed = httpx.post(
        url + "subscribe",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert streamed.status_code == 413
    assert _status_of(app, "big@example.com") is None
    assert _status_of(app, "chunked@example.com") is None
    # the server is fine afterwards, and a normal form is accepted
    small = httpx.post(url + "subscribe", data={"email": "small@example.com"}, timeout=10)
    assert small.status_code == 200


# -- rate limit ----------------------------------------------------------------------------------


def test_the_rate_limit_is_per_client_address(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    app, running = server
    url = running.url
    limit = app.settings.server.subscribe_per_minute
    signed_up = [
        httpx.post(url + "subscribe", data={"email": f"a{n}@example.com"}, timeout=10).status_code
        for n in range(limit + 3)
    ]
    assert signed_up == [200] * (limit + 3)  # sign-ups never count toward the limit
    codes = [
        httpx.post(url + "subscribe", data={"email": f"a{n}@"}, timeout=10).status_code
        for n in range(limit + 3)
    ]
    assert codes == [400] * limit + [429] * 3
    limited = httpx.post(url + "subscribe", data={"email": "late@example.com"}, timeout=10)
    assert limited.status_code == 429 and "Too many requests" in limited.text
    assert "default-src 'none'" in limited.headers["content-security-policy"]
    assert _status_of(app, "late@example.com") is None
    # another client address (all of 127/8 is loopback on Linux) is not affected
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with other:
        answer = other.post(url + "subscribe", data={"email": "other@example.com"}, timeout=10)
    assert answer.status_code == 200
    running.run(app.subscriptions.drain())
    assert len(smtp_sink.messages) == limit + 4


# -- headers -------------------------------------------------------------------------------------


def test_security_headers_on_pages_feeds_and_errors(site: tuple[App, str]) -> None:
    _, url = site
    html_pages = ["", "index.html", "subscribe", "no-such-page", "confirm/forged"]
    for path in html_pages:
        response = httpx.get(url + path, timeout=10)
        assert response.headers["content-type"].startswith("text/html"), path
        csp = response.headers["content-security-policy"]
        for rule in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"):
            assert rule in csp, (path, csp)
        # scripts from the site only (the search box); WebAssembly may compile, strings not
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
        assert "script-src 'self' 'wasm-unsafe-eval';" in csp, csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    for path in ("atom.xml", "rss.xml", "feed.json", "static/style.css"):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff", path


# -- tokens --------------------------------------------------------------------------------------


def test_tokens_are_signed_and_expire(site: tuple[App, str]) -> None:
    app, url = site
    ann, _ = app.add_subscriber("ann@example.com")
    tokens = Tokens(app.settings.secret_key)
    good = tokens.make(UNSUBSCRIBE, ann.id, ann.email)
    payload, rest = good.split(".", 1)
    other, _ = app.add_subscriber("bob@example.com")
    # bob's payload under ann's signature: the HMAC covers the payload
    swapped = tokens.make(UNSUBSCRIBE, other.id, other.email).split(".", 1)[0] + "." + rest
    assert httpx.post(url + f"unsubscribe/{swapped}", timeout=10).status_code == 400
    assert _status_of(app, "bob@example.com") is SubscriberStatus.CONFIRMED

    # unsubscribe links outlive a digest for a long while, but not forever
    max_age = app.settings.server.unsubscribe_token_max_age_seconds
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=max_age + 60)):
        too_old = tokens.make(UNSUBSCRIBE, ann.id, ann.email)
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=max_age - 3600)):
        old_but_valid = tokens.make(UNSUBSCRIBE, ann.id, ann.email)
    assert httpx.get(url + f"unsubscribe/{too_old}", timeout=10).status_code == 400
    assert httpx.get(url + f"unsubscribe/{old_but_valid}", timeout=10).status_code == 200

    # a confirm link lives token_max_age_seconds (7 days by default)
    pending, _ = app.add_subscriber("pat@example.com")
    with app.store.begin() as connection:
        from publisher.store.subscribers import Subscribers

        Subscribers(connection).set_status(pending.id, SubscriberStatus.PENDING, datetime.now(UTC))
    confirm_age = app.settings.server.token_max_age_seconds
    with time_machine.travel(datetime.now(UTC) - timedelta(seconds=confirm_age - 3600)):
        fresh_enough = tokens.make(CONFIRM, pending.id, pending.email)
    assert httpx.post(url + f"confirm/{fresh_enough}", timeout=10).status_code == 200
    assert _status_of(app, "pat@example.com") is SubscriberStatus.CONFIRMED
    assert payload  # the payload is readable (base64), never secret: it holds id and address
