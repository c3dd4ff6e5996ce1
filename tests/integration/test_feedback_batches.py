"""The batch path of what comes back: many bounces, complaints and unsubscribes in one
transaction, with the rules of one at a time (never a weaker status, one event and one
log line each, the soft-bounce limit), from mail (`InboundMail.receive_many`, the
listener) and from a provider's webhook batch (`ProviderFeedback`). On SQLite and on
PostgreSQL (store_app); the listener over real sockets."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from publisher.app import App
from publisher.config import load_settings
from publisher.inbound import POLICY, InboundMail, ProviderFeedback
from publisher.model import ConsentKind, ConsentSource, SubscriberStatus
from publisher.smtpserver.inbound import InboundListener
from publisher.store import Store
from publisher.subscribers import Feedback
from publisher.tokens import Tokens
from publisher.webhooks import FeedbackKind, ProviderEvent
from tests.conftest import TEST_SECRET_KEY, write_config

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"


@contextmanager
def write_transactions(store: Store) -> Iterator[list[int]]:
    """Counts the write transactions begun on the store while inside."""
    begun: list[int] = []

    def on_begin(connection: Any) -> None:
        if not connection.get_execution_options().get("publisher_read", False):
            begun.append(1)

    event.listen(store.engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(store.engine, "begin", on_begin)


def kinds(app: App, email: str) -> list[ConsentKind]:
    return [
        e.kind
        for e in app.subscriber_admin.history(email)
        if e.source in (ConsentSource.INBOUND, ConsentSource.WEBHOOK)
    ]


def test_one_transaction_for_a_batch_with_the_rules_of_one_at_a_time(
    store_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    admin = store_app.subscriber_admin
    for name in ("ann", "bo", "cy"):
        admin.add(f"{name}@example.org")
    hook = ConsentSource.WEBHOOK

    def report(email: str, kind: ConsentKind) -> Feedback:
        return Feedback(email, kind, hook, f"{kind.value} of {email}", "192.0.2.7")

    batch = [
        report("Ann@Example.org", ConsentKind.COMPLAINED),
        report("ann@example.org", ConsentKind.UNSUBSCRIBED),  # never weaker than complained
        report("bo@example.org", ConsentKind.SOFT_BOUNCED),
        report("bo@example.org", ConsentKind.SOFT_BOUNCED),
        report("nobody@example.org", ConsentKind.BOUNCED),
        report("not an address", ConsentKind.BOUNCED),
        report("bo@example.org", ConsentKind.SOFT_BOUNCED),  # the third within 7 days
        report("cy@example.org", ConsentKind.BOUNCED),
        report("cy@example.org", ConsentKind.BOUNCED),  # a repeat: only history
    ]
    caplog.set_level(logging.INFO, logger="publisher.consent")
    with write_transactions(store_app.store) as begun:
        found = admin.record_feedback(batch)
    assert len(begun) == 1
    assert [f.status if f is not None else None for f in found] == [
        SubscriberStatus.COMPLAINED,
        SubscriberStatus.COMPLAINED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.BOUNCED,
        None,
        None,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.BOUNCED,
    ]
    assert kinds(store_app, "ann@example.org") == [
        ConsentKind.COMPLAINED,
        ConsentKind.UNSUBSCRIBED,
    ]
    assert kinds(store_app, "bo@example.org") == [ConsentKind.SOFT_BOUNCED] * 3 + [
        ConsentKind.BOUNCED
    ]
    [*_, limit] = admin.history("bo@example.org")
    assert limit.detail == "3 soft bounces within 7 days" and limit.client == "192.0.2.7"
    assert kinds(store_app, "cy@example.org") == [ConsentKind.BOUNCED] * 2
    assert admin.history("nobody@example.org") == []
    lines = [r for r in caplog.records if r.getMessage().startswith("consent ")]
    assert len(lines) == 2 + 4 + 2  # one log line per stored event
    by_email = {s.email: s for s in store_app.subscribers()}
    assert by_email["ann@example.org"].unsubscribed is not None  # a complaint unsubscribes


def test_the_soft_bounce_limit_counts_those_stored_before_the_batch(store_app: App) -> None:
    admin = store_app.subscriber_admin
    admin.add("di@example.org")
    admin.soft_bounced("di@example.org", source=ConsentSource.INBOUND, detail="4.2.2")
    admin.soft_bounced("di@example.org", source=ConsentSource.INBOUND, detail="4.2.2")
    [found] = admin.record_feedback(
        [Feedback("di@example.org", ConsentKind.SOFT_BOUNCED, ConsentSource.INBOUND, "4.2.2")]
    )
    assert found is not None and found.status is SubscriberStatus.BOUNCED
    assert kinds(store_app, "di@example.org")[-1] is ConsentKind.BOUNCED


def bounce_config(tmp_path: Path, database_url: str) -> App:
    path = write_config(tmp_path, database_url)
    with path.open("a", encoding="utf-8") as out:
        out.write(
            '\n[smtp]\nfrom_address = "News <news@news.example.org>"\n'
            'bounce_address = "bounces@news.example.org"\n'
        )
    return App(load_settings(path, environ={}))


def hard_bounce(subscriber_id: int, email: str, delivery: int = 1) -> bytes:
    text = (DATA / "postfix-hard.eml").read_text(encoding="utf-8")
    text = text.replace("@@VERP@@", Tokens(TEST_SECRET_KEY).bounce(subscriber_id, delivery))
    return text.replace("ann@example.net", email).replace("\n", "\r\n").encode("utf-8")


@pytest.fixture
def bounce_app(tmp_path: Path, database_url: str) -> Iterator[App]:
    (tmp_path / "inbox").mkdir()
    application = bounce_config(tmp_path, database_url)
    yield application
    application.close()


def test_receive_many_acts_on_each_message_in_one_transaction_and_keeps_the_rest(
    bounce_app: App, tmp_path: Path
) -> None:
    people = [bounce_app.add_subscriber(f"p{n}@example.net")[0] for n in range(20)]
    gone, _ = bounce_app.add_subscriber("gone@example.net")
    bounce_app.remove_subscriber("gone@example.net")
    messages = [hard_bounce(p.id, p.email, n + 1) for n, p in enumerate(people)]
    messages.insert(5, b"Subject: hello\r\n\r\nnot a bounce at all\r\n")
    messages.insert(9, hard_bounce(gone.id, gone.email))
    inbound: InboundMail = bounce_app.inbound
    with write_transactions(bounce_app.store) as begun:
        outcomes = inbound.receive_many(messages)
    assert len(begun) == 1
    assert [o.handled for o in outcomes] == [True] * 5 + [False] + [True] * 3 + [False] + [
        True
    ] * 12
    assert outcomes[9].reason == f"subscriber #{gone.id} no longer exists"
    assert all(o.kept is not None and o.kept.exists() for o in (outcomes[5], outcomes[9]))
    assert {s.status for s in bounce_app.subscribers()} == {SubscriberStatus.BOUNCED}
    assert [o.done[0].endswith("bounce -> bounced") for o in outcomes if o.handled] == [True] * 20


def test_a_webhook_batch_is_one_transaction_under_the_same_policy(store_app: App) -> None:
    admin = store_app.subscriber_admin
    emails = [f"w{n}@example.org" for n in range(60)]
    for email in emails:
        admin.add(email)
    kinds_in_turn = list(FeedbackKind)
    events = [
        ProviderEvent("sendgrid", kinds_in_turn[n % 4], email, "event")
        for n, email in enumerate(emails)
    ] + [ProviderEvent("sendgrid", FeedbackKind.HARD_BOUNCE, "stranger@example.org", "x")]
    with write_transactions(store_app.store) as begun:
        applied = ProviderFeedback(admin).apply_now(events, "198.51.100.4")
    assert len(begun) == 1
    assert (applied.acted, applied.unknown) == (60, 1)
    expected = {
        FeedbackKind.HARD_BOUNCE: SubscriberStatus.BOUNCED,
        FeedbackKind.SOFT_BOUNCE: SubscriberStatus.CONFIRMED,  # one of three
        FeedbackKind.COMPLAINT: SubscriberStatus.COMPLAINED,
        FeedbackKind.UNSUBSCRIBE: SubscriberStatus.UNSUBSCRIBED,
    }
    statuses = {s.email: s.status for s in store_app.subscribers()}
    for n, email in enumerate(emails):
        kind = kinds_in_turn[n % 4]
        assert statuses[email] is expected[kind], email
        assert kinds(store_app, email) == [POLICY[kind]]


def test_the_listener_answers_each_message_after_the_batch_that_committed_it() -> None:
    """Eight sessions at once: the first message is held in its commit while the other
    seven arrive; they go to one call together, and no 250 comes before its commit."""
    gate = threading.Event()
    calls: list[list[bytes]] = []
    committed: set[bytes] = set()
    answered: list[tuple[bytes, bool]] = []  # (message, committed before its 250)
    lock = threading.Lock()

    def receive_many(messages: Sequence[bytes]) -> list[bool]:
        calls.append(list(messages))
        if len(calls) == 1:
            assert gate.wait(60)
        committed.update(messages)
        return [True] * len(messages)

    async def scenario() -> None:
        listener = await InboundListener(None, "127.0.0.1", 0, receive_many=receive_many).start()

        def deliver(n: int) -> None:
            data = f"Subject: bounce {n}\r\n\r\nbody {n}\r\n".encode()
            with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as client:
                client.sendmail("", ["bounces@news.example.org"], data)
            with lock:
                answered.append((data, any(data.strip() in m for m in committed)))

        def storm() -> None:
            first = threading.Thread(target=deliver, args=(0,))
            first.start()
            while not calls:  # the first message is in its commit
                time.sleep(0.01)
            rest = [threading.Thread(target=deliver, args=(n,)) for n in range(1, 8)]
            for thread in rest:
                thread.start()
            deadline = time.monotonic() + 60
            while listener.queued < 7 and time.monotonic() < deadline:
                time.sleep(0.01)
            gate.set()
            for thread in (first, *rest):
                thread.join(60)

        try:
            await asyncio.to_thread(storm)
        finally:
            gate.set()
            await listener.stop(grace=0.5)

    asyncio.run(scenario())
    assert [len(c) for c in calls] == [1, 7]
    assert len(answered) == 8 and all(done for _, done in answered)
