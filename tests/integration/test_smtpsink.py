"""The --smtp-debug sink: a real aiosmtpd server on 127.0.0.1 port 0, real SMTP clients."""

from __future__ import annotations

import asyncio
import email
import logging
import smtplib
import socket
import time
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from publisher.smtpserver.sink import SmtpSink


def _message(to: str, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Harbin News <news@localhost>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Bonjour — ünïcode body\n")
    return message


def _send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)


def test_each_message_becomes_one_eml_file(tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"

    async def scenario() -> list[Path]:
        async with SmtpSink(mailbox, "127.0.0.1", 0) as sink:
            assert sink.port != 0
            for n, to in enumerate(["a@example.org", "b@example.org"]):
                await asyncio.to_thread(_send, sink.port, _message(to, f"digest {n}"))
            return sink.saved

    saved = asyncio.run(scenario())

    files = sorted(mailbox.glob("*.eml"))
    assert files == sorted(saved) and len(files) == 2
    assert [f.name.split("-")[-1] for f in saved] == ["1.eml", "2.eml"]
    parsed = [email.message_from_bytes(f.read_bytes(), policy=default) for f in saved]
    assert [p["Delivered-To"] for p in parsed] == ["a@example.org", "b@example.org"]
    assert parsed[0]["Return-Path"] == "<news@localhost>"
    assert parsed[1]["Subject"] == "digest 1"
    assert "ünïcode" in parsed[0].get_content()
    assert not list(mailbox.glob(".*")), "no partial files left behind"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stop_lets_a_transaction_in_flight_finish(tmp_path: Path) -> None:
    mailbox = tmp_path / "mailbox"

    def slow_client(port: int, started: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            client.mail("news@localhost")
            client.rcpt("late@example.org")
            loop.call_soon_threadsafe(started.set)
            # the sink is stopping once it refuses new connections; this transaction,
            # begun before, must still be accepted
            deadline = time.monotonic() + 30
            while not _refused(port):
                assert time.monotonic() < deadline, "the sink did not stop listening"
                time.sleep(0.02)
            code, _ = client.data(_message("late@example.org", "in flight").as_bytes())
            assert code == 250

    async def scenario() -> None:
        sink = await SmtpSink(mailbox, "127.0.0.1", 0).start()
        started = asyncio.Event()
        client = asyncio.create_task(
            asyncio.to_thread(slow_client, sink.port, started, asyncio.get_running_loop())
        )
        await asyncio.wait_for(started.wait(), 30)
        await sink.stop(grace=30.0)  # returns as soon as the client is done
        await asyncio.wait_for(client, 30)
        # and nothing listens any more
        try:
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", sink.port), 10)
        except ConnectionRefusedError:
            return
        raise AssertionError("the sink still accepts connections after stop()")

    asyncio.run(scenario())
    [saved] = mailbox.glob("*.eml")
    assert "in flight" in saved.read_text(encoding="utf-8")


def test_the_sink_logs_recipients_masked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="publisher.smtpsink")

    async def scenario() -> None:
        async with SmtpSink(tmp_path / "mailbox", "127.0.0.1", 0) as sink:
            await asyncio.to_thread(_send, sink.port, _message("reader@example.org", "hi"))

    asyncio.run(scenario())
    [line] = [r.getMessage() for r in caplog.records if "mailbox: saved" in r.getMessage()]
    assert "r***@example.org #" in line and "reader@example.org" not in line
