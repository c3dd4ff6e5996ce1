"""The mailer's SMTP dialogue is sendmail()'s: EHLO, MAIL with SIZE, RCPT, DATA; RSET after
a refusal. Checked against a server that records every command line it gets."""

from __future__ import annotations

import asyncio

import pytest

from publisher.config import SmtpSettings
from publisher.errors import SendError
from publisher.mailer import Mailer


class _Recorder:
    def __init__(self, refuse: str | None = None) -> None:
        self.commands: list[bytes] = []
        self.bodies: list[bytes] = []
        self.refuse = refuse

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 recorder ESMTP\r\n")
        try:
            while line := await reader.readline():
                self.commands.append(line.rstrip(b"\r\n"))
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-recorder\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n")
                elif verb == b"RCPT" and self.refuse and self.refuse.encode() in line:
                    writer.write(b"550 5.1.1 no such mailbox\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    self.bodies.append(await reader.readuntil(b"\r\n.\r\n"))
                    writer.write(b"250 OK\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        finally:
            writer.close()


def _send(recorder: _Recorder, recipient: str, message: bytes) -> None:
    async def run() -> None:
        server = await asyncio.start_server(recorder.session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            mailer = Mailer(SmtpSettings(host="127.0.0.1", port=port, attempts=1))
            await mailer.send_one("news@example.org", recipient, message)

    asyncio.run(run())


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: crlf\r\n\r\nbody\r\n.line\r\n",  # SMTP form already: measured by len()
        b"Subject: lf\n\nbody\n.line",  # anything else: aiosmtplib's sendmail()
    ],
    ids=["crlf", "bare-lf"],
)
def test_the_dialogue_is_sendmails(message: bytes) -> None:
    recorder = _Recorder()
    _send(recorder, "ann@example.org", message)
    normalized = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    normalized += b"" if normalized.endswith(b"\r\n") else b"\r\n"
    verbs = [c.split(b" ")[0].upper() for c in recorder.commands]
    assert verbs == [b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]
    assert (
        recorder.commands[1]
        == b"MAIL FROM:<news@example.org> size=" + str(len(normalized)).encode()
    )
    assert recorder.commands[2] == b"RCPT TO:<ann@example.org>"
    assert recorder.bodies == [normalized.replace(b"\r\n.", b"\r\n..") + b".\r\n"]


def test_a_refused_recipient_is_a_permanent_send_error_and_the_envelope_is_reset() -> None:
    recorder = _Recorder(refuse="bob@example.org")
    with pytest.raises(SendError) as caught:
        _send(recorder, "bob@example.org", b"Subject: x\r\n\r\nx\r\n")
    assert caught.value.code == 550 and caught.value.permanent
    verbs = [c.split(b" ")[0].upper() for c in recorder.commands]
    assert verbs[:4] == [b"EHLO", b"MAIL", b"RCPT", b"RSET"]
    assert b"DATA" not in verbs
