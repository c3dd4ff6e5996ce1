"""Adapter: an embedded SMTP sink (aiosmtpd) that saves each received message as a .eml file.

`publisher run --smtp-debug` starts it on the configured SMTP host/port so a newcomer sees
real digests arrive without a mail server. Every message is written to
`<mailbox>/<UTC timestamp>-<n>.eml` (atomically: a temporary name, then a rename), with
`Return-Path` and `Delivered-To` lines on top, as a local delivery agent would add.
It runs on the caller's event loop; `stop()` lets a transaction in flight finish.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from publisher.secrecy import masked_address
from publisher.smtpserver import SmtpServer

__all__ = ["SmtpSink"]

log = logging.getLogger("publisher.smtpsink")


class _MailboxHandler:
    """aiosmtpd handler: one file per DATA transaction."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.counter = itertools.count(1)
        self.saved: list[Path] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        recipients = [str(r) for r in envelope.rcpt_tos]
        head = f"Return-Path: <{envelope.mail_from or ''}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in recipients
        )
        path = await asyncio.to_thread(self._save, head.encode("utf-8") + content)
        self.saved.append(path)
        shown = ", ".join(masked_address(rcpt, None) for rcpt in recipients)
        log.info("mailbox: saved %s for %s", path.name, shown)
        return "250 OK: saved"

    def _save(self, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.folder / f"{stamp}-{next(self.counter)}.eml"
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(data)
        os.replace(partial, path)
        return path


class SmtpSink(SmtpServer):
    """An SMTP server on this event loop that stores mail in a folder instead of sending it."""

    def __init__(self, mailbox: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.mailbox = mailbox
        self.mailbox_handler = _MailboxHandler(mailbox)
        super().__init__(
            self.mailbox_handler, host, port, hostname="publisher-sink", ident="publisher smtp sink"
        )

    @property
    def saved(self) -> list[Path]:
        """Files written so far, in arrival order."""
        return list(self.mailbox_handler.saved)

    async def start(self) -> Self:
        """Listen (port 0 picks a free port; `self.port` is then the real one)."""
        self.mailbox.mkdir(parents=True, exist_ok=True)
        await super().start()
        log.info(
            "smtp sink listening on %s:%s, saving mail to %s", self.host, self.port, self.mailbox
        )
        return self
