"""Adapter: polls a hosted mailbox over IMAP (stdlib imaplib, TLS) for what comes back.

Each message is fetched without marking it read, handed to `receive` (which returns once
the event is committed or the message kept on disk), and only then moved to
`processed_mailbox` or deleted. A crash in between leaves the message in the mailbox, so
the next poll hands it over again (acting on it twice records the event twice and changes
nothing else). A `receive` that fails leaves that message and ends the round.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
from collections.abc import Callable

from publisher.config import ImapSettings

__all__ = ["ImapPoller"]

log = logging.getLogger("publisher.imap")

BATCH = 500  # messages handled per poll at most


class ImapPoller:
    """One poll at a time: connect, hand over every message, disconnect."""

    def __init__(self, settings: ImapSettings, timeout: float = 60.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def _connect(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        client = imaplib.IMAP4_SSL(
            self.settings.host, self.settings.port, ssl_context=context, timeout=self.timeout
        )
        client.login(self.settings.username or "", self.settings.password or "")
        return client

    def poll_once(self, receive: Callable[[bytes], bool]) -> int:
        """Hand every message of the mailbox to `receive`; how many were handed over."""
        handled = 0
        client = self._connect()
        try:
            status, _ = client.select(_quoted(self.settings.mailbox))
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot select {self.settings.mailbox!r}")
            # UNDELETED: one flagged by a round that ended before its EXPUNGE is done
            status, found = client.uid("SEARCH", "UNDELETED")
            uids = found[0].split()[:BATCH] if status == "OK" and found and found[0] else []
            move = bool(self.settings.processed_mailbox) and "MOVE" in client.capabilities
            try:
                for uid in uids:
                    data = self._fetch(client, uid)
                    if data is None:
                        continue
                    receive(data)  # committed or kept when it returns; raises otherwise
                    handled += 1
                    self._done(client, uid, move)
            finally:
                if handled and not move:
                    client.expunge()
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
        return handled

    def _fetch(self, client: imaplib.IMAP4_SSL, uid: bytes) -> bytes | None:
        status, parts = client.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
        if status != "OK":
            return None
        for part in parts:
            if isinstance(part, tuple) and len(part) == 2:
                return bytes(part[1])
        return None

    def _done(self, client: imaplib.IMAP4_SSL, uid: bytes, move: bool) -> None:
        number = uid.decode("ascii")
        target = self.settings.processed_mailbox
        if move:
            client.uid("MOVE", number, _quoted(target))
            return
        if target:
            client.uid("COPY", number, _quoted(target))
        client.uid("STORE", number, "+FLAGS.SILENT", "(\\Deleted)")


def _quoted(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string (names may hold spaces)."""
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
