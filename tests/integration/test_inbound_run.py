"""The `[inbound]` listener of a real `publisher run` process.

- A user's mailto unsubscribe goes through a real MTA path: the user's client submits it
  to an aiosmtpd relay, which delivers it to the listener (store-and-forward: the relay
  answers 250 only once the listener has), and the subscriber ends up unsubscribed and
  suppressed.
- kill -9 of `publisher run` while the listener receives 500 bounces loses none: every
  bounce the listener acknowledged is acted on, and the ones it did not acknowledge are
  still the MTA's to retry, which the test then does against a restarted process.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from publisher.app import App
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource, SubscriberStatus
from publisher.store.subscribers import Subscribers
from publisher.tokens import Tokens
from tests.conftest import SEEDS, TEST_SECRET_KEY, write_config
from tests.integration.in_process import publisher_cli
from tests.integration.test_run import fetch, free_port, wait_for
from tests.smtp_sink import SmtpSink

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"
BOUNCES = 500


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'data' / 'publisher.db'}",
        seeds_dir=f'"{SEEDS}"',
    )
    with (tmp_path / "publisher.toml").open("a", encoding="utf-8") as out:
        out.write(
            '\n[smtp]\nhost = "127.0.0.1"\nport = 1\nbackoff_seconds = 0.01\n'
            'from_address = "Harbin News <news@news.example.org>"\n'
            'bounce_address = "bounces@news.example.org"\n'
            f"\n[inbound]\nport = {free_port()}\n"
        )
    return tmp_path


def _start(project: Path) -> tuple[subprocess.Popen[str], int]:
    settings = load_settings(project / "publisher.toml", environ={})
    web = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PUBLISHER_CONFIG"] = str(project / "publisher.toml")
    log = project / "run.log"  # a file, not a pipe: a full pipe would block the process
    with log.open("a", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "publisher", "run", "--no-send", "--port", str(web)],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )

    def up() -> bool:
        return process.poll() is not None or fetch(f"http://127.0.0.1:{web}/") is not None

    wait_for(up, 60, "publisher run to serve")
    assert process.poll() is None, log.read_text(encoding="utf-8")
    return process, settings.inbound.port


@pytest.fixture
def running(project: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    process, port = _start(project)
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


class Relay:
    """A minimal MTA: accepts mail on its own port and relays it to `target` before it
    answers, so a 250 from it means the next hop has the message."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.relayed = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        try:
            await asyncio.to_thread(self._forward, str(envelope.mail_from), envelope.rcpt_tos, data)
        except (OSError, smtplib.SMTPException):
            return "451 4.4.1 next hop not reachable, queued"
        self.relayed += 1
        return "250 2.0.0 relayed"

    def _forward(self, sender: str, recipients: list[str], data: bytes) -> None:
        with smtplib.SMTP("127.0.0.1", self.target, timeout=30) as client:
            client.sendmail(sender, recipients, data)

    def __enter__(self) -> Relay:
        self.thread.start()
        server = asyncio.run_coroutine_threadsafe(
            self.loop.create_server(lambda: SMTPServer(self), "127.0.0.1", 0), self.loop
        ).result(timeout=5)
        self.port = int(server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def _status(project: Path, email: str) -> SubscriberStatus | None:
    app = App(load_settings(project / "publisher.toml", environ={}))
    try:
        with app.store.read() as connection:
            found = Subscribers(connection).by_email(email)
        return found.status if found is not None else None
    finally:
        app.close()


def test_a_mailto_unsubscribe_through_a_relay_reaches_the_listener_and_suppresses(
    project: Path, running: tuple[subprocess.Popen[str], int], smtp_sink: SmtpSink
) -> None:
    _, inbound_port = running
    environ = {
        "PUBLISHER_CONFIG": str(project / "publisher.toml"),
        "PUBLISHER_SMTP_PORT": str(smtp_sink.port),
    }
    added = publisher_cli("subscribers", "add", "ann@example.net", cwd=project, env=environ)
    assert added.returncode == 0, added.stderr
    sent = publisher_cli("send", "--frequency", "weekly", cwd=project, env=environ)
    assert sent.returncode == 0, sent.stderr
    [digest] = smtp_sink.to("ann@example.net")
    header = str(digest.message["List-Unsubscribe"])
    mailto = header.split("<mailto:", 1)[1].split(">", 1)[0]
    address, _, query = mailto.partition("?")
    assert address == "unsubscribe@news.example.org"
    subject = unquote(query.removeprefix("subject="))

    request = EmailMessage()  # what a mail client makes of the mailto: URL
    request["From"] = "Ann <ann@example.net>"
    request["To"] = address
    request["Subject"] = subject
    request.set_content("Sent by the unsubscribe button of my mail client.")
    with Relay(inbound_port) as relay, smtplib.SMTP("127.0.0.1", relay.port) as client:
        client.send_message(request)
        wait_for(
            lambda: _status(project, "ann@example.net") is SubscriberStatus.UNSUBSCRIBED,
            30,
            "ann to be unsubscribed",
        )
        assert relay.relayed == 1

    app = App(load_settings(project / "publisher.toml", environ={}))
    try:
        last = app.subscriber_admin.history("ann@example.net")[-1]
    finally:
        app.close()
    assert (last.kind, last.source) == (ConsentKind.UNSUBSCRIBED, ConsentSource.INBOUND)
    again = publisher_cli("subscribers", "add", "ann@example.net", cwd=project, env=environ)
    assert again.returncode == 1  # suppressed: not made confirmed again without --force


def _bounces(project: Path) -> list[tuple[str, bytes]]:
    """BOUNCES subscribers imported, and one Postfix hard-bounce DSN for each."""
    rows = "".join(f"user{n}@example.net,User {n},,weekly\n" for n in range(BOUNCES))
    csv = project / "people.csv"
    csv.write_text("email,name,categories,frequency\n" + rows, encoding="utf-8")
    imported = publisher_cli(
        "subscribers",
        "import",
        str(csv),
        cwd=project,
        env={"PUBLISHER_CONFIG": str(project / "publisher.toml")},
    )
    assert imported.returncode == 0, imported.stderr
    app = App(load_settings(project / "publisher.toml", environ={}))
    try:
        people = {s.email: s.id for s in app.subscribers()}
    finally:
        app.close()
    tokens = Tokens(TEST_SECRET_KEY)
    template = (DATA / "postfix-hard.eml").read_text(encoding="utf-8").replace("\n", "\r\n")
    found = []
    for n in range(BOUNCES):
        email = f"user{n}@example.net"
        token = tokens.bounce(people[email], n + 1)
        text = template.replace("@@VERP@@", token).replace("ann@example.net", email)
        found.append((email, text.encode("utf-8")))
    return found


def _deliver(port: int, items: list[tuple[str, bytes]], acknowledged: set[str]) -> None:
    """Like an MTA's delivery agent: one connection, one message after another; a message
    counts as delivered only when the 250 came back."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            for email, data in items:
                client.sendmail("", ["bounces@news.example.org"], data)
                acknowledged.add(email)
    except (OSError, smtplib.SMTPException):
        return  # the process died: the rest stays in the "queue"


def test_kill_9_while_receiving_500_bounces_loses_none(project: Path) -> None:
    bounces = _bounces(project)
    process, port = _start(project)
    acknowledged: set[str] = set()
    try:
        lanes = [bounces[n::4] for n in range(4)]
        senders = [
            threading.Thread(target=_deliver, args=(port, lane, acknowledged)) for lane in lanes
        ]
        for sender in senders:
            sender.start()
        wait_for(lambda: len(acknowledged) >= BOUNCES // 4, 60, "a quarter acknowledged")
        process.kill()  # SIGKILL: no clean-up of any kind
        process.communicate(timeout=10)
        for sender in senders:
            sender.join(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert BOUNCES // 4 <= len(acknowledged) < BOUNCES, "the kill came mid-storm"
    statuses = {email: _status(project, email) for email, _ in bounces}
    lost = [e for e in acknowledged if statuses[e] is not SubscriberStatus.BOUNCED]
    assert lost == []

    # the MTA retries what was never acknowledged, against the restarted process
    queued = [(e, d) for e, d in bounces if e not in acknowledged]
    process, port = _start(project)
    try:
        retried: set[str] = set()
        _deliver(port, queued, retried)
        assert len(retried) == len(queued)
    finally:
        process.kill()
        process.communicate(timeout=10)
    assert all(_status(project, email) is SubscriberStatus.BOUNCED for email, _ in bounces)
