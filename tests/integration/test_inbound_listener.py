"""The `[inbound]` listener over real sockets (in-process), and the settings around it:
LMTP replies, 451 when nothing could be stored, the mailto and VERP settings."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.errors import ConfigError
from publisher.messages import envelope_sender, unsubscribe_mailto
from publisher.model import SubscriberStatus
from publisher.runner import RunOptions, run
from publisher.smtpserver.inbound import InboundListener
from publisher.tokens import UNSUBSCRIBE, Tokens
from tests.conftest import TEST_SECRET_KEY, write_config
from tests.integration.test_run import free_port

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"


def _config(tmp_path: Path, extra: str) -> Path:
    path = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'publisher.db'}")
    with path.open("a", encoding="utf-8") as out:
        out.write(extra)
    return path


def test_an_lmtp_listener_in_publisher_run_unsubscribes_and_answers_per_recipient(
    tmp_path: Path,
) -> None:
    (tmp_path / "inbox").mkdir()
    port = free_port()
    path = _config(
        tmp_path,
        '\n[smtp]\nfrom_address = "News <news@news.example.org>"\n'
        f"\n[inbound]\nport = {port}\nlmtp = true\n",
    )
    app = App(load_settings(path, environ={}))
    ann, _ = app.add_subscriber("ann@example.net")
    token = Tokens(TEST_SECRET_KEY).make(UNSUBSCRIBE, ann.id, ann.email)
    mail = (DATA / "mailto.eml").read_text(encoding="utf-8").replace("@@UNSUB@@", token)

    def deliver() -> list[int]:
        """RFC 2033 by hand (smtplib's LMTP reads one DATA reply): one reply a recipient."""
        with smtplib.LMTP("127.0.0.1", port) as client:
            client.ehlo()  # sends LHLO
            client.mail("ivan@example.net")
            for recipient in ("unsubscribe@news.example.org", "postmaster@news.example.org"):
                client.rcpt(recipient)
            first, _ = client.data(mail.encode("utf-8"))
            second, _ = client.getreply()
            return [first, second]

    async def scenario() -> list[int]:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run(app, stop, RunOptions(port=free_port(), send=False), ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 30)
        try:
            return await asyncio.to_thread(deliver)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    try:
        assert asyncio.run(scenario()) == [250, 250]
        [found] = app.subscribers()
        assert found.status is SubscriberStatus.UNSUBSCRIBED
    finally:
        app.close()


def test_a_message_that_could_not_be_stored_gets_451_so_the_mta_keeps_it() -> None:
    calls: list[bytes] = []

    def broken(data: bytes) -> bool:
        calls.append(data)
        raise OSError("disk full")

    async def scenario() -> None:
        listener = await InboundListener(broken, "127.0.0.1", 0).start()
        try:

            def deliver() -> None:
                with smtplib.SMTP("127.0.0.1", listener.port) as client:
                    client.sendmail("", ["bounces@news.example.org"], b"Subject: x\r\n\r\nx\r\n")

            with pytest.raises(smtplib.SMTPDataError) as raised:
                await asyncio.to_thread(deliver)
            assert raised.value.smtp_code == 451
        finally:
            await listener.stop(grace=0.1)

    asyncio.run(scenario())
    assert len(calls) == 1


def test_the_mailto_is_configurable_or_off_and_the_verp_sender_signed(tmp_path: Path) -> None:
    base = '\n[smtp]\nfrom_address = "News <news@news.example.org>"\n'
    auto = load_settings(_config(tmp_path, base), environ={})
    assert unsubscribe_mailto(auto, "T") == (
        "mailto:unsubscribe@news.example.org?subject=unsubscribe%20T"
    )
    assert envelope_sender(auto, "abc") == "news@news.example.org"  # no bounce address: From
    (tmp_path / "publisher.toml").unlink()
    chosen = load_settings(
        _config(
            tmp_path,
            base + 'bounce_address = "bounces@mx.example.org"\n'
            '[digest]\nunsubscribe_mailto = "leave@lists.example.org"\n',
        ),
        environ={},
    )
    assert unsubscribe_mailto(chosen, "T") == (
        "mailto:leave@lists.example.org?subject=unsubscribe%20T"
    )
    assert envelope_sender(chosen, "1.2.abc") == "bounces+1.2.abc@mx.example.org"
    (tmp_path / "publisher.toml").unlink()
    off = load_settings(
        _config(tmp_path, base + '[digest]\nunsubscribe_mailto = "off"\n'), environ={}
    )
    assert unsubscribe_mailto(off, "T") is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('[smtp]\nbounce_address = "bounces+x@example.org"', "not a plain address"),
        ('[smtp]\nbounce_address = "a-very-long-bounce-local-part@example.org"', "over 20"),
        ('[digest]\nunsubscribe_mailto = "nobody"', "is not an address"),
        ('[digest]\nunsubscribe_mailto = "a@b.org\\r\\nBcc: x@y.org"', "is not an address"),
        ("[inbound]\nport = 70000", "inbound.port"),
        ('[inbound.imap]\nhost = "imap.example.org"', "username or password is not"),
        ("[inbound.imap]\nnope = 1", "unknown setting 'inbound.imap.nope'"),
        ('[inbound]\nimap = "x"', "[inbound.imap] must be a table"),
    ],
)
def test_bad_inbound_settings_are_refused_at_load(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_config(tmp_path, "\n" + line + "\n"), environ={})
    assert message in str(raised.value)
