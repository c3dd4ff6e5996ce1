"""Who a web subscription or a confirm link may change, and what a subscribe costs.

Confirm moves pending -> confirmed only (never an unsubscribed or bounced address back);
GET and HEAD change nothing; every subscribe runs the same statements whatever the
address; a confirmation mail that is not accepted gives the cool-down back; confirmation
mails queue behind a fixed number of SMTP connections; unconfirmed subscribers expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from publisher.app import App
from publisher.config import load_settings
from publisher.model import Subscriber, SubscriberStatus
from publisher.store.subscribers import Subscribers
from publisher.subscribing import Subscriptions
from publisher.tokens import CONFIRM, Tokens
from tests.conftest import SEEDS, with_categories
from tests.integration.test_web import run_server
from tests.smtp_sink import SmtpSink, send_config


def _config(folder: Path, database_url: str, sink: SmtpSink, **sections: dict[str, object]) -> Path:
    path: Path = with_categories(send_config(folder, database_url, sink), "Harbin Today")
    with path.open("a", encoding="utf-8") as out:
        for name, values in sections.items():
            out.write(f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return path


@pytest.fixture
def store_site(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[App, str]]:
    app = App(load_settings(_config(tmp_path, database_url, smtp_sink), environ={}))
    for url, _ in run_server(app, app.web_routes()):
        yield app, url
    app.close()


def _who(app: App, email: str) -> Subscriber:
    found = next((s for s in app.subscribers() if s.email == email), None)
    assert found is not None, email
    return found


def _with_status(app: App, email: str, status: SubscriberStatus, failures: int = 0) -> Subscriber:
    subscriber, _ = app.add_subscriber(email)
    with app.store.begin() as connection:
        people = Subscribers(connection)
        people.set_status(subscriber.id, status, datetime.now(UTC))
        if failures:
            from publisher.store.schema import subscribers

            connection.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber.id)
                .values(hard_failures=failures)
            )
    return _who(app, email)


def _confirm_url(app: App, url: str, subscriber: Subscriber) -> str:
    return (
        url
        + "confirm/"
        + Tokens(app.settings.secret_key).make(CONFIRM, subscriber.id, subscriber.email)
    )


# -- confirm ---------------------------------------------------------------------------------


def test_an_old_confirm_link_never_brings_back_an_unsubscribed_or_bounced_address(
    store_site: tuple[App, str],
) -> None:
    app, url = store_site
    left = _with_status(app, "left@example.com", SubscriberStatus.UNSUBSCRIBED)
    bounced = _with_status(app, "gone@example.com", SubscriberStatus.BOUNCED, failures=3)
    for subscriber in (left, bounced):
        link = _confirm_url(app, url, subscriber)  # signed, inside its 7 days
        assert httpx.get(link, timeout=10).status_code == 400
        assert httpx.post(link, timeout=10).status_code == 400
    assert _who(app, "left@example.com").status is SubscriberStatus.UNSUBSCRIBED
    after = _who(app, "gone@example.com")
    assert after.status is SubscriberStatus.BOUNCED and after.hard_failures == 3


def test_get_and_head_of_a_confirm_link_change_nothing_and_post_confirms_once(
    store_site: tuple[App, str],
) -> None:
    app, url = store_site
    pending = _with_status(app, "pat@example.com", SubscriberStatus.PENDING)
    link = _confirm_url(app, url, pending)
    assert httpx.head(link, timeout=10).status_code == 200
    page = httpx.get(link, timeout=10)
    assert page.status_code == 200 and 'method="post"' in page.text and "<button" in page.text
    assert _who(app, "pat@example.com").status is SubscriberStatus.PENDING

    # the button's POST comes from our own page; one from another site is refused
    refused = httpx.post(link, headers={"Origin": "https://evil.example"}, timeout=10)
    assert refused.status_code == 403
    assert _who(app, "pat@example.com").status is SubscriberStatus.PENDING

    first = httpx.post(link, headers={"Origin": url.rstrip("/")}, timeout=10)
    assert first.status_code == 200 and "confirmed" in first.text.lower()
    confirmed = _who(app, "pat@example.com")
    assert confirmed.status is SubscriberStatus.CONFIRMED
    again = httpx.post(link, timeout=10)  # a second click: same answer, nothing moves
    assert again.status_code == 200
    assert _who(app, "pat@example.com").confirmed == confirmed.confirmed

    # and once that address unsubscribes, the same link is dead
    with app.store.begin() as connection:
        Subscribers(connection).set_status(
            confirmed.id, SubscriberStatus.UNSUBSCRIBED, datetime.now(UTC)
        )
    assert httpx.post(link, timeout=10).status_code == 400
    assert _who(app, "pat@example.com").status is SubscriberStatus.UNSUBSCRIBED


# -- the same work for every address ---------------------------------------------------------


def test_subscribe_runs_the_same_statements_whether_the_address_is_known_or_not(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    app = App(load_settings(_config(tmp_path, database_url, smtp_sink), environ={}))
    try:
        _with_status(app, "confirmed@example.com", SubscriberStatus.CONFIRMED)
        _with_status(app, "left@example.com", SubscriberStatus.UNSUBSCRIBED)
        _with_status(app, "gone@example.com", SubscriberStatus.BOUNCED)
        statements: list[str] = []
        written: list[int] = []  # rows the subscriber update wrote, per subscribe

        def record(*args: Any) -> None:
            statements.append(args[2])

        def count_writes(connection: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if statement.startswith("UPDATE subscribers SET name"):
                written.append(cursor.rowcount)

        service = app.subscriptions

        async def subscribe_each() -> dict[str, list[str]]:
            seen: dict[str, list[str]] = {}
            for label, address in [
                ("new", "new@example.com"),
                ("pending in cool-down", "new@example.com"),
                ("confirmed", "confirmed@example.com"),
                ("unsubscribed", "left@example.com"),
                ("bounced", "gone@example.com"),
            ]:
                await service.drain()  # the confirmation mail's own transaction is no answer's
                statements.clear()
                await service.subscribe(address, "Reader", ["Harbin Today"], "weekly")
                seen[label] = list(statements)
            await service.drain()
            return seen

        event.listen(app.store.engine, "before_cursor_execute", record)
        event.listen(app.store.engine, "after_cursor_execute", count_writes)
        try:
            seen = asyncio.run(subscribe_each())
        finally:
            event.remove(app.store.engine, "before_cursor_execute", record)
            event.remove(app.store.engine, "after_cursor_execute", count_writes)
        reference = seen["new"]
        assert reference, "no statements recorded"
        for label, ran in seen.items():
            assert ran == reference, label
        assert written == [1] * len(seen)  # each commits a write, known address or not
        # what differs is only what happens later, in the background
        assert sorted(smtp_sink.per_recipient()) == ["left@example.com", "new@example.com"]
        assert _who(app, "confirmed@example.com").status is SubscriberStatus.CONFIRMED
        assert _who(app, "gone@example.com").status is SubscriberStatus.BOUNCED
    finally:
        app.close()


# -- cool-down and a failed mail ---------------------------------------------------------------


def test_a_rejected_confirmation_mail_does_not_start_the_cooldown(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    app = App(load_settings(_config(tmp_path, sqlite_url, smtp_sink), environ={}))
    try:
        service = app.subscriptions

        async def subscribe() -> None:
            await service.subscribe("reader@example.com", None, [], "weekly")
            await service.drain()

        smtp_sink.reject.add("reader@example.com")  # 550 at RCPT
        asyncio.run(subscribe())
        assert smtp_sink.attempts["reader@example.com"] == 1 and not smtp_sink.messages
        smtp_sink.reject.clear()
        asyncio.run(subscribe())  # at once, well inside subscribe_cooldown_seconds
        assert len(smtp_sink.to("reader@example.com")) == 1
        asyncio.run(subscribe())  # an accepted mail does start it
        assert len(smtp_sink.to("reader@example.com")) == 1
    finally:
        app.close()


# -- a hanging SMTP server ---------------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections and never says a word (no SMTP greeting)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        # shutdown wakes the blocked accept(); close alone would leave it listening
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.listener.close()
        for connection in self.accepted:
            connection.close()


async def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_confirmation_mails_to_a_hanging_server_hold_only_the_bounded_connections(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    silent = SilentServer()
    config = _config(
        tmp_path,
        sqlite_url,
        smtp_sink,
        server={"confirmation_senders": 2, "confirmation_backlog": 3},
    )
    # the [smtp] of send_config points at the sink; this one at the silent server
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            f"port = {smtp_sink.port}\n",
            f"port = {silent.port}\nattempts = 1\ntimeout_seconds = 60\n",
        ),
        encoding="utf-8",
    )
    app = App(load_settings(config, environ={}))
    service = app.subscriptions
    caplog.set_level(logging.WARNING, logger="publisher.send")

    def dropped() -> int:
        return sum("dropped" in record.getMessage() for record in caplog.records)

    async def flood() -> None:
        for n in range(20):
            await service.subscribe(f"r{n}@example.com", None, [], "weekly")
        await _until(lambda: len(silent.accepted) >= 2)
        # 2 hang in the greeting, 3 wait behind them, the other 15 were dropped and logged
        await _until(lambda: dropped() == 15)
        assert len(silent.accepted) == 2
        silent.close()  # the two fail; the three waiting then find nobody listening
        await service.drain()

    try:
        asyncio.run(flood())
        assert len(silent.accepted) == 2
        # every mail that was not accepted gave its cool-down back
        with app.store.read() as connection:
            people = Subscribers(connection)
            assert all(people.last_confirmation(s.id) is None for s in people.all())
    finally:
        silent.close()
        app.close()


# -- expiry ------------------------------------------------------------------------------------


def test_unconfirmed_subscribers_expire_and_a_pending_one_never_gets_a_digest(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    config = _config(tmp_path, database_url, smtp_sink, server={"pending_expiry_days": 2})
    app = App(load_settings(config, environ={}))
    try:
        start = datetime.now(UTC)
        clock = [start]
        service = Subscriptions(app.settings, app.store, clock=lambda: clock[0])
        left = _with_status(app, "left@example.com", SubscriberStatus.UNSUBSCRIBED)
        _with_status(app, "reader@example.com", SubscriberStatus.CONFIRMED)

        async def subscribe(address: str) -> None:
            await service.subscribe(address, None, [], "weekly")
            await service.drain()

        asyncio.run(subscribe("late@example.com"))
        asyncio.run(subscribe("left@example.com"))  # asks to come back, never confirms
        assert _who(app, "left@example.com").status is SubscriberStatus.PENDING
        late = _who(app, "late@example.com")
        token = Tokens(app.settings.secret_key).make(CONFIRM, late.id, late.email)

        # a digest while they are pending goes to the confirmed reader only
        app.ingest([SEEDS])
        before = len(smtp_sink.messages)
        assert app.send_digests().sent == 1
        assert [r for m in smtp_sink.messages[before:] for r in m.rcpt_tos] == [
            "reader@example.com"
        ]

        clock[0] = start + timedelta(days=1)
        asyncio.run(subscribe("fresh@example.com"))
        assert _who(app, "late@example.com").status is SubscriberStatus.PENDING  # not yet

        clock[0] = start + timedelta(days=3)
        # its link is still inside token_max_age (7 days), but the subscription has expired
        assert asyncio.run(service.confirm(token)) is None
        emails = {s.email: s for s in app.subscribers()}
        assert "late@example.com" not in emails
        assert emails["left@example.com"].status is SubscriberStatus.UNSUBSCRIBED
        assert emails["left@example.com"].id == left.id  # its suppression is kept
        assert emails["fresh@example.com"].status is SubscriberStatus.PENDING
        assert emails["reader@example.com"].status is SubscriberStatus.CONFIRMED
    finally:
        app.close()
