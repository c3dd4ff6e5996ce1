"""The `[inbound.imap]` poller of `publisher run` against a real IMAP server over TLS
(tests/imap_server.py, trustme certificate): messages are acted on, then moved or
deleted; one that could not be stored stays in the mailbox."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import ImapSettings, load_settings
from publisher.imappoll import ImapPoller
from publisher.model import SubscriberStatus
from publisher.runner import RunOptions, run
from publisher.tokens import UNSUBSCRIBE, Tokens
from tests.conftest import TEST_SECRET_KEY, write_config
from tests.imap_server import ImapServer
from tests.integration.test_run import free_port

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"


@pytest.fixture
def imap(tmp_path: Path) -> Iterator[ImapServer]:
    server = ImapServer().start(tmp_path)
    yield server
    server.stop()


def _settings(server: ImapServer, **extra: object) -> ImapSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.username,
        "password": server.password,
        "ca_file": str(server.ca_file),
    }
    values.update(extra)
    return ImapSettings(**values)  # type: ignore[arg-type]


def test_publisher_run_polls_the_mailbox_acts_and_moves_what_it_handled(
    tmp_path: Path, imap: ImapServer
) -> None:
    (tmp_path / "inbox").mkdir()
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'publisher.db'}")
    with path.open("a", encoding="utf-8") as out:
        out.write(
            '\n[smtp]\nfrom_address = "News <news@news.example.org>"\n'
            "\n[inbound.imap]\n"
            f'host = "127.0.0.1"\nport = {imap.port}\nusername = "{imap.username}"\n'
            f'ca_file = "{imap.ca_file}"\nprocessed_mailbox = "Processed"\npoll_seconds = 0.2\n'
        )
    settings = load_settings(path, environ={"PUBLISHER_IMAP_PASSWORD": imap.password})
    assert "secret-imap-password" not in repr(settings)
    app = App(settings)
    ann, _ = app.add_subscriber("ann@example.net")
    token = Tokens(TEST_SECRET_KEY).make(UNSUBSCRIBE, ann.id, ann.email)
    mailto = (DATA / "mailto.eml").read_bytes().replace(b"@@UNSUB@@", token.encode())
    vacation = (DATA / "vacation.eml").read_bytes()
    imap.deliver(mailto)
    imap.deliver(vacation)

    async def scenario() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run(app, stop, RunOptions(port=free_port(), send=False), ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        deadline = time.monotonic() + 30
        while len(imap.held("Processed")) < 2:
            assert time.monotonic() < deadline, "the poller moved nothing in 30 s"
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(scenario())
        [found] = app.subscribers()
        assert found.status is SubscriberStatus.UNSUBSCRIBED
    finally:
        app.close()
    assert imap.held("INBOX") == []
    assert sorted(imap.held("Processed")) == sorted([mailto, vacation])
    [kept] = (tmp_path / "data" / "inbound" / "unmatched").glob("*.eml")
    assert kept.read_bytes() == vacation


def test_the_messages_of_a_poll_are_handed_over_in_one_batch_then_moved(
    imap: ImapServer,
) -> None:
    for n in range(3):
        imap.deliver(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())
    poller = ImapPoller(_settings(imap, processed_mailbox="Processed"))
    calls: list[int] = []

    def receive_many(messages: Sequence[bytes]) -> list[bool]:
        # nothing has left the mailbox while the batch is being committed
        assert len(imap.held("INBOX")) == 3 and imap.held("Processed") == []
        calls.append(len(messages))
        return [True] * len(messages)

    assert poller.poll_once(receive_many) == 3
    assert calls == [3]  # one call: one transaction for the whole poll
    assert imap.held("INBOX") == [] and len(imap.held("Processed")) == 3


def test_without_move_a_handled_message_is_deleted_and_a_failed_one_stays(
    imap: ImapServer, caplog: pytest.LogCaptureFixture
) -> None:
    imap.move = False
    imap.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    imap.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    imap.deliver(b"Subject: three\r\n\r\nthird\r\n")
    poller = ImapPoller(_settings(imap))
    seen: list[bytes] = []

    def fails_on_second(messages: Sequence[bytes]) -> list[bool]:
        if any(b"second" in data for data in messages):
            raise OSError("cannot store this one")
        seen.extend(messages)
        return [True] * len(messages)

    # the batch fails; alone, the others are stored, and the bad one is its own problem
    with caplog.at_level(logging.WARNING, logger="publisher.imap"):
        assert poller.poll_once(fails_on_second) == 2
    assert [d.split(b"\r\n")[0] for d in seen] == [b"Subject: one", b"Subject: three"]
    assert imap.held("INBOX") == [b"Subject: two\r\n\r\nsecond\r\n"]  # the failed one stays
    assert any("stays in the mailbox" in r.getMessage() for r in caplog.records)

    def keeps(messages: Sequence[bytes]) -> list[bool]:
        seen.extend(messages)
        return [True] * len(messages)

    assert poller.poll_once(keeps) == 1
    assert imap.held("INBOX") == []
    assert b"second" in seen[-1]


def test_when_nothing_can_be_stored_the_poll_fails_and_every_message_stays(
    imap: ImapServer,
) -> None:
    imap.move = False
    imap.deliver(b"Subject: one\r\n\r\nfirst\r\n")
    imap.deliver(b"Subject: two\r\n\r\nsecond\r\n")
    poller = ImapPoller(_settings(imap))

    def database_down(messages: Sequence[bytes]) -> list[bool]:
        raise OSError("database is down")

    with pytest.raises(OSError, match="database is down"):
        poller.poll_once(database_down)
    assert len(imap.held("INBOX")) == 2


def test_an_imap_password_in_a_readable_config_file_is_flagged(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'publisher.db'}")
    with path.open("a", encoding="utf-8") as out:
        out.write('\n[inbound.imap]\nhost = "imap.example.org"\nusername = "b"\npassword = "pw"\n')
    path.chmod(0o644)
    settings = load_settings(path, environ={})
    assert any("inbound.imap.password" in notice for notice in settings.notices)
    path.chmod(0o600)
    with path.open("w", encoding="utf-8") as out:
        out.write('[inbound.imap]\nhost = "imap.example.org"\nusername = "b"\n')
    path.chmod(0o644)
    from_environment = load_settings(path, environ={"PUBLISHER_IMAP_PASSWORD": "pw"})
    assert from_environment.inbound.imap.password == "pw"
    assert not any("password" in notice for notice in from_environment.notices)
