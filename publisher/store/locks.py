"""Database-wide locks held for a process's lifetime (e.g. "one scheduler per database").

SQLite: an fcntl lock on a file beside the database (`<db>.<name>.lock`, holding the
owner's pid); it is released by the kernel if the process dies. PostgreSQL: a session
advisory lock on a dedicated connection; it is released when that connection closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text

from publisher.store.engine import Store, sqlite_file

__all__ = ["DatabaseLock"]


class DatabaseLock:
    """A named, non-blocking, process-lifetime lock on one database."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._file: IO[str] | None = None
        self._connection: Connection | None = None
        found = sqlite_file(store.url)
        self._path = found.resolve() if found is not None else None

    @property
    def where(self) -> str:
        """Where the lock lives, for messages."""
        if self._path is not None:
            return str(self._lock_path(self._path))
        return f"PostgreSQL advisory lock {self.key}"

    @property
    def key(self) -> int:
        """A stable 31-bit key for the advisory lock, derived from the name."""
        return zlib.crc32(f"publisher:{self.name}".encode()) & 0x7FFFFFFF

    @property
    def held(self) -> bool:
        return self._file is not None or self._connection is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (at once) if someone does."""
        if self.held:
            return True
        if self.store.dialect == "sqlite":
            return self._path is None or self._acquire_file(self._path)
        return self._acquire_advisory()

    def holder(self) -> str | None:
        """Who holds the lock, if we can tell (the pid written into the SQLite lock file)."""
        if self._path is None:
            return None
        try:
            pid = self._lock_path(self._path).read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return f"pid {pid}" if pid.isdigit() else None

    def taken(self) -> bool:
        """Whether some process holds the lock, found without creating or taking anything."""
        if self.held:
            return True
        if self.store.dialect != "sqlite":
            if not self.try_acquire():
                return True
            self.release()
            return False
        if self._path is None:
            return False
        try:
            handle = self._lock_path(self._path).open("r", encoding="utf-8")
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._connection.close()
            self._connection = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _lock_path(self, database: Path) -> Path:
        return database.with_name(f"{database.name}.{self.name}.lock")

    def _acquire_file(self, database: Path) -> bool:
        path = self._lock_path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # "a+" never truncates: a loser must not wipe the holder's pid.
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def _acquire_advisory(self) -> bool:
        # A dedicated connection outside any transaction: the lock lives as long as it does.
        connection = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
            ).scalar()
        except Exception:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True
