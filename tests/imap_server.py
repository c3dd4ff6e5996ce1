"""A small real IMAP4rev1 server over TLS for tests (127.0.0.1, port 0, trustme certificate).

Speaks what a mailbox poller needs, over a real socket: CAPABILITY, LOGIN, SELECT,
UID SEARCH ALL, UID FETCH (BODY.PEEK[]), UID STORE +FLAGS.SILENT (\\Deleted), UID COPY,
UID MOVE (RFC 6851, when `move` is on), EXPUNGE, LOGOUT. Mailboxes are lists in memory
the test reads and fills.
"""

from __future__ import annotations

import re
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

__all__ = ["ImapServer"]


@dataclass
class Stored:
    uid: int
    data: bytes
    deleted: bool = False


@dataclass
class ImapServer:
    username: str = "bounces"
    password: str = "secret-imap-password"
    move: bool = True
    mailboxes: dict[str, list[Stored]] = field(default_factory=lambda: {"INBOX": []})
    port: int = 0
    ca_file: Path | None = None
    next_uid: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: Any = None

    def deliver(self, data: bytes, mailbox: str = "INBOX") -> None:
        with self.lock:
            self.mailboxes.setdefault(mailbox, []).append(Stored(self.next_uid, data))
            self.next_uid += 1

    def held(self, mailbox: str = "INBOX") -> list[bytes]:
        with self.lock:
            return [m.data for m in self.mailboxes.get(mailbox, [])]

    def start(self, folder: Path) -> ImapServer:
        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.ca_file = folder / "imap-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                self.request = context.wrap_socket(self.request, server_side=True)
                super().setup()

            def handle(self) -> None:
                _Session(owner, self.rfile, self.wfile).run()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Session:
    def __init__(self, server: ImapServer, rfile: Any, wfile: Any) -> None:
        self.server = server
        self.rfile = rfile
        self.wfile = wfile
        self.selected: str | None = None

    def send(self, line: bytes | str) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def run(self) -> None:
        self.send("* OK IMAP4rev1 test server ready")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
            words = rest.split(" ")
            command = words[0].upper()
            if command == "UID":
                command = "UID " + words[1].upper()
                words = words[1:]
            if not self.dispatch(tag, command, words[1:]):
                return
            self.wfile.flush()

    def dispatch(self, tag: str, command: str, args: list[str]) -> bool:
        server = self.server
        if command == "CAPABILITY":
            self.send("* CAPABILITY IMAP4rev1" + (" MOVE" if server.move else ""))
        elif command == "LOGIN":
            if args[0].strip('"') != server.username or args[1].strip('"') != server.password:
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] wrong")
                return True
        elif command == "SELECT":
            self.selected = args[0].strip('"')
            with server.lock:
                count = len(server.mailboxes.setdefault(self.selected, []))
            self.send(f"* {count} EXISTS")
            self.send("* 0 RECENT")
            self.send("* OK [UIDVALIDITY 1] UIDs valid")
            self.send(f"{tag} OK [READ-WRITE] SELECT completed")
            return True
        elif command == "UID SEARCH":
            with server.lock:
                uids = [str(m.uid) for m in self._box() if not m.deleted]
            self.send("* SEARCH" + "".join(f" {u}" for u in uids))
        elif command == "UID FETCH":
            found = self._find(int(args[0]))
            if found is not None:
                number = self._box().index(found) + 1
                self.send(f"* {number} FETCH (UID {found.uid} BODY[] {{{len(found.data)}}}")
                self.wfile.write(found.data)
                self.send(")")
        elif command == "UID STORE":
            found = self._find(int(args[0]))
            if found is not None and "\\Deleted" in " ".join(args):
                found.deleted = True
        elif command in ("UID COPY", "UID MOVE"):
            if command == "UID MOVE" and not server.move:
                self.send(f"{tag} BAD no MOVE here")
                return True
            found = self._find(int(args[0]))
            target = " ".join(args[1:]).strip('"')
            if found is not None:
                with server.lock:
                    server.mailboxes.setdefault(target, []).append(Stored(found.uid, found.data))
                    if command == "UID MOVE":
                        self._box().remove(found)
        elif command == "EXPUNGE":
            with server.lock:
                box = self._box()
                box[:] = [m for m in box if not m.deleted]
        elif command == "LOGOUT":
            self.send("* BYE logging out")
            self.send(f"{tag} OK LOGOUT completed")
            self.wfile.flush()
            return False
        elif command == "NOOP":
            pass
        else:
            self.send(f"{tag} BAD unknown command {re.sub(r'[^A-Z ]', '', command)}")
            return True
        self.send(f"{tag} OK {command} completed")
        return True

    def _box(self) -> list[Stored]:
        return self.server.mailboxes.setdefault(self.selected or "INBOX", [])

    def _find(self, uid: int) -> Stored | None:
        with self.server.lock:
            return next((m for m in self._box() if m.uid == uid), None)
