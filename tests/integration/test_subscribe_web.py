"""Double opt-in and one-click unsubscribe through the real server (uvicorn) and sink."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import time_machine

from publisher.app import App
from publisher.config import load_settings
from publisher.model import Subscriber, SubscriberStatus
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS, with_categories
from tests.integration.test_web import Served, served
from tests.smtp_sink import SmtpSink, send_config


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[App, Served]]:
    config = with_categories(send_config(tmp_path, sqlite_url, smtp_sink), "Harbin Today")
    app = App(load_settings(config, environ={}))
    for running in served(app, app.web_routes()):
        yield app, running
    app.close()


@pytest.fixture
def site(server: tuple[App, Served]) -> tuple[App, str]:
    app, running = server
    return app, running.url


def _who(app: App, email: str) -> Subscriber | None:
    return next((s for s in app.subscribers() if s.email == email), None)


def _wait_until(condition: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _subscribe(url: str, email: str, **extra: str) -> httpx.Response:
    return httpx.post(url + "subscribe", data={"email": email, **extra}, timeout=10)


def test_double_opt_in_round_trip_then_one_click_unsubscribe(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    app, running = server
    url = running.url
    answer = _subscribe(url, "New.Reader@Example.com", name="New", categories="Harbin Today")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    _wait_until(lambda: len(smtp_sink.messages) == 1)
    pending = _who(app, "new.reader@example.com")
    assert pending is not None and pending.status is SubscriberStatus.PENDING
    assert pending.categories == ("Harbin Today",)

    mail = smtp_sink.messages[0].message
    assert mail["To"].addresses[0].addr_spec == "new.reader@example.com"
    text = mail.get_body(("plain",)).get_content()
    [link] = re.findall(r"https?://\S+/confirm/\S+", text)
    confirm_path = "confirm/" + link.rsplit("/confirm/", 1)[1]
    styles = re.findall(r"<style[^>]*>(.*?)</style>", mail.get_body(("html",)).get_content(), re.S)
    assert all(s.strip().startswith("@media") for s in styles)  # the rest is inlined

    # the same address again: no second mail within the cool-down, and it says so
    again = _subscribe(url, "new.reader@example.com")
    assert again.status_code == 200 and "A confirmation was sent" in again.text
    running.run(app.subscriptions.drain())  # every confirmation mail the posts queued is sent
    assert len(smtp_sink.messages) == 1

    # the link opens a page with a button (scanners fetch links); only its POST confirms
    button = httpx.get(url + confirm_path, timeout=10)
    assert button.status_code == 200 and 'method="post"' in button.text
    assert _who(app, "new.reader@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]
    confirmed = httpx.post(url + confirm_path, timeout=10)
    assert confirmed.status_code == 200 and "confirmed" in confirmed.text.lower()
    assert _who(app, "new.reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]

    running.run(app.subscriptions.drain())  # the welcome mail follows the confirm button
    assert len(smtp_sink.messages) == 2
    assert "Welcome" in str(smtp_sink.messages[1].message["Subject"])

    # a confirmed address subscribing again: same answer, no mail, nothing changed
    third = _subscribe(url, "new.reader@example.com", frequency="daily")
    assert third.text == answer.text
    running.run(app.subscriptions.drain())
    assert len(smtp_sink.messages) == 2
    assert _who(app, "new.reader@example.com").frequency.value == "weekly"  # type: ignore[union-attr]

    # the digest carries the one-click link; GET shows a button and changes nothing
    app.ingest([SEEDS])
    report = app.send_digests()
    assert report.sent == 1
    digest = smtp_sink.messages[-1].message
    [unsubscribe_url] = re.findall(r"<(https?://[^>]+)>", digest["List-Unsubscribe"])
    path = "unsubscribe/" + unsubscribe_url.rsplit("/unsubscribe/", 1)[1]
    page = httpx.get(url + path, timeout=10)
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    assert _who(app, "new.reader@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]

    # RFC 8058: a POST without cookies unsubscribes and answers 200, not a redirect
    with httpx.Client(follow_redirects=False, timeout=10) as fresh:
        done = fresh.post(url + path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "Unsubscribed" in done.text
    assert "set-cookie" not in done.headers
    gone = _who(app, "new.reader@example.com")
    assert gone is not None and gone.status is SubscriberStatus.UNSUBSCRIBED


def test_forged_and_expired_tokens_get_400_and_change_nothing(site: tuple[App, str]) -> None:
    app, url = site
    ann, _ = app.add_subscriber("ann@example.com")
    pending, _ = app.add_subscriber("pat@example.com")
    with app.store.begin() as connection:
        from publisher.store.subscribers import Subscribers

        Subscribers(connection).set_status(pending.id, SubscriberStatus.PENDING, datetime.now(UTC))
    tokens = Tokens(app.settings.secret_key)
    good = tokens.make(UNSUBSCRIBE, ann.id, ann.email)
    forged = [
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        Tokens("another-secret").make(UNSUBSCRIBE, ann.id, ann.email),
        tokens.make(CONFIRM, ann.id, ann.email),  # a confirm token is no unsubscribe token
        "not-a-token",
    ]
    for token in forged:
        assert httpx.get(url + f"unsubscribe/{token}", timeout=10).status_code == 400
        assert httpx.post(url + f"unsubscribe/{token}", timeout=10).status_code == 400
    with time_machine.travel(datetime.now(UTC) - timedelta(days=8)):
        expired = tokens.make(CONFIRM, pending.id, pending.email)
    answer = httpx.get(url + f"confirm/{expired}", timeout=10)
    assert answer.status_code == 400 and "not valid" in answer.text
    assert _who(app, "ann@example.com").status is SubscriberStatus.CONFIRMED  # type: ignore[union-attr]
    assert _who(app, "pat@example.com").status is SubscriberStatus.PENDING  # type: ignore[union-attr]


def test_subscribe_is_rate_limited_per_ip_and_validates_the_address(
    site: tuple[App, str], smtp_sink: SmtpSink
) -> None:
    app, url = site
    bad = _subscribe(url, "not an address")
    assert bad.status_code == 400 and "not a valid email address" in bad.text
    assert "&lt;" not in bad.text or "<script" not in bad.text
    limit = app.settings.server.subscribe_per_minute
    codes = [_subscribe(url, f"r{n}@").status_code for n in range(limit + 1)]
    assert codes[: limit - 1] == [400] * (limit - 1)  # the first bad one was above
    assert codes[-1] == 429


def test_user_input_on_the_page_is_escaped(site: tuple[App, str]) -> None:
    _, url = site
    answer = _subscribe(url, "<script>alert(1)</script>")
    assert answer.status_code == 400
    assert "<script>alert(1)</script>" not in answer.text


def _last_confirmation_was(app: App, email: str, ago: timedelta) -> None:
    from publisher.store.schema import subscribers

    with app.store.begin() as connection:
        connection.execute(
            subscribers.update()
            .where(subscribers.c.email == email)
            .values(confirmation_sent=datetime.now(UTC) - ago)
        )


def test_a_repeated_request_within_the_cooldown_says_when_the_last_confirmation_went(
    site: tuple[App, str], smtp_sink: SmtpSink
) -> None:
    app, url = site
    cooldown = app.settings.server.subscribe_cooldown_seconds
    assert cooldown == 600  # the default is minutes: a lost mail can be asked for again soon
    first = _subscribe(url, "pat@example.com")
    assert "Check your inbox" in first.text and "was sent" not in first.text
    _wait_until(lambda: len(smtp_sink.messages) == 1)

    again = _subscribe(url, "Pat@Example.com")
    assert again.status_code == 200
    assert "A confirmation was sent less than a minute ago; check your inbox" in again.text
    assert "ask for a new one in 10 minutes" in again.text
    _last_confirmation_was(app, "pat@example.com", timedelta(minutes=3, seconds=5))
    later = _subscribe(url, "pat@example.com")
    assert "A confirmation was sent 3 minutes ago; check your inbox" in later.text
    assert "ask for a new one in 7 minutes" in later.text
    assert len(smtp_sink.messages) == 1  # no second mail within the cool-down

    _last_confirmation_was(app, "pat@example.com", timedelta(seconds=cooldown + 60))
    after = _subscribe(url, "pat@example.com")
    assert "was sent" not in after.text
    _wait_until(lambda: len(smtp_sink.messages) == 2)

    # a confirmed address gets the answer a new one gets: nothing is told about it
    app.add_subscriber("ann@example.com")
    known = _subscribe(url, "ann@example.com")
    assert known.status_code == 200 and known.text == _subscribe(url, "new@example.com").text


def test_failed_confirmation_and_welcome_mails_log_the_address_masked(
    server: tuple[App, Served], smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    app, running = server
    caplog.set_level(logging.WARNING, logger="publisher.subscribers")
    address = "secret.reader@example.com"
    smtp_sink.reject.add(address)
    _subscribe(running.url, address, categories="Harbin Today")
    running.run(app.subscriptions.drain())
    smtp_sink.reject.discard(address)
    _subscribe(running.url, address, categories="Harbin Today")  # not sent: no cool-down
    _wait_until(lambda: len(smtp_sink.to(address)) == 1)
    text = smtp_sink.to(address)[0].message.get_body(("plain",)).get_content()
    [link] = re.findall(r"https?://\S+/confirm/\S+", text)
    smtp_sink.reject.add(address)
    httpx.post(running.url + "confirm/" + link.rsplit("/confirm/", 1)[1], timeout=10)
    running.run(app.subscriptions.drain())

    lines = [r.getMessage() for r in caplog.records if r.name == "publisher.subscribers"]
    failed = [line for line in lines if "mail to" in line and "failed" in line]
    assert any(line.startswith("confirmation mail") for line in failed), lines
    assert any(line.startswith("welcome mail") for line in failed), lines
    assert all("s***@example.com #" in line for line in failed), failed
    assert not any(address in line or "secret.reader" in line for line in lines), lines


def test_a_dropped_confirmation_mail_logs_the_address_masked(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    path = send_config(tmp_path, sqlite_url, smtp_sink)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[server]\nconfirmation_senders = 1\nconfirmation_backlog = 0\n")
    app = App(load_settings(path, environ={}))
    caplog.set_level(logging.WARNING, logger="publisher.subscribers")
    held = threading.Event()
    smtp_sink.on_mail = lambda: held.wait(30) and None  # the one sender is busy
    try:
        for running in served(app, app.web_routes()):
            _subscribe(running.url, "first.reader@example.com")
            _subscribe(running.url, "secret.reader@example.com")  # one sender, no backlog
            held.set()
            running.run(app.subscriptions.drain())
    finally:
        app.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "publisher.subscribers"]
    dropped = [line for line in lines if "dropped" in line]
    assert dropped and dropped[0].startswith("confirmation mail to s***@example.com #"), lines
    assert not any("secret.reader" in line for line in lines), lines
