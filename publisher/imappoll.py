"""Adapter: polls a hosted mailbox over IMAP (stdlib imaplib, TLS) for what comes back.

Messages are fetched without marking them read and handed to `receive_many` a batch at a
time (one database transaction for the batch; it returns once every event is committed or
its message kept on disk); only then are they moved to `processed_mailbox` or deleted. A
crash in between leaves them in the mailbox, so the next poll hands them over again
(acting on a message twice records the event twice and changes nothing else). A batch
that fails is tried again message by message, so a message that cannot be stored stays in
the mailbox without costing the others; when none of them can be stored (the database is
down) the round ends with that error.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
from collections.abc import Callable, Iterator, Sequence

from publisher.config import ImapSettings

__all__ = ["ImapPoller"]

log = logging.getLogger("publisher.imap")

BATCH = 500  # messages handled per poll at most
# one call of receive_many (one transaction) takes at most this many messages, or bytes:
# a batch is held in memory while it commits
CHUNK = 100
CHUNK_BYTES = 32 * 1024 * 1024

# the messages in order, one result each; all committed or kept when it returns, or it
# raises (then none is)
ReceiveMany = Callable[[Sequence[bytes]], Sequence[bool]]


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

    def poll_once(self, receive_many: ReceiveMany) -> int:
        """Hand every message of the mailbox to `receive_many`; how many were handed over."""
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
                for chunk in self._chunks(client, uids):
                    for uid in self._store(receive_many, chunk):
                        handled += 1
                        self._done(client, uid, move)
            finally:
                if handled and not move:
                    client.expunge()
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()
        return handled

    def _chunks(
        self, client: imaplib.IMAP4_SSL, uids: Sequence[bytes]
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        chunk: list[tuple[bytes, bytes]] = []
        size = 0
        for uid in uids:
            data = self._fetch(client, uid)
            if data is None:
                continue
            chunk.append((uid, data))
            size += len(data)
            if len(chunk) >= CHUNK or size >= CHUNK_BYTES:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    def _store(self, receive_many: ReceiveMany, chunk: list[tuple[bytes, bytes]]) -> list[bytes]:
        """The uids of `chunk` whose messages are committed or kept (in order)."""
        try:
            results = receive_many([data for _, data in chunk])
            if len(results) != len(chunk):
                raise RuntimeError(f"{len(results)} results for {len(chunk)} messages")
            return [uid for uid, _ in chunk]
        except Exception:
            if len(chunk) == 1:
                raise
        stored: list[bytes] = []
        failure: Exception | None = None
        for uid, data in chunk:
            try:
                receive_many([data])
            except Exception as exc:
                failure = failure or exc
                log.warning(
                    "imap message %s not stored; it stays in the mailbox: %s",
                    uid.decode("ascii"),
                    exc,
                )
            else:
                stored.append(uid)
        if not stored and failure is not None:
            raise failure  # not one message's problem: the round ends
        return stored

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
