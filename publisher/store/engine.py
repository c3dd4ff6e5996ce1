"""Open a database by URL, apply connection settings, create and migrate the schema."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, inspect, select
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from publisher.errors import StoreError
from publisher.store.schema import SCHEMA_VERSION, blocks, metadata, schema_version

__all__ = ["Store"]


def _blocks_by_article_seq(connection: Connection) -> None:
    """Schema 2: blocks refer to their article by seq (see store/schema.py)."""
    connection.exec_driver_sql("DROP INDEX ix_blocks_key")
    connection.exec_driver_sql("ALTER TABLE blocks RENAME TO blocks_v1")
    blocks.create(connection)
    connection.exec_driver_sql(
        'INSERT INTO blocks (article_seq, position, "key", text) '
        'SELECT articles.seq, old.position, old."key", old.text '
        "FROM blocks_v1 AS old JOIN articles ON articles.id = old.article_id"
    )
    connection.exec_driver_sql("DROP TABLE blocks_v1")


def _drop_unused_article_indexes(connection: Connection) -> None:
    """Schema 3: every index costs each ingested article a random insert; these two were
    never used by a query (see store/schema.py)."""
    connection.exec_driver_sql("DROP INDEX IF EXISTS ix_articles_category")
    connection.exec_driver_sql("DROP INDEX IF EXISTS ix_articles_content_hash")


def _site_builds(connection: Connection) -> None:
    """Schema 4: the site_builds table, made by create_all before migrations run; nothing
    was owed before it existed."""


# version -> migration from the version before it; each must keep every row.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _blocks_by_article_seq,
    3: _drop_unused_article_indexes,
    4: _site_builds,
}

# Serializes writers on PostgreSQL the way BEGIN IMMEDIATE does on SQLite.
_WRITE_LOCK = 0x7075626C  # "publ"


class Store:
    """One database: SQLite file by default, PostgreSQL by URL."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        self.url = url
        self.engine = _open(url, busy_timeout)
        self.dialect = self.engine.dialect.name
        self._file: Path | None = None
        self._identity: tuple[int, int] | None = None
        self._migrate()
        # from here on, a vanished or swapped file is an error, not a fresh database
        self._file = _sqlite_file(url)
        self._identity = _identity(self._file)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self, *, serialized: bool = True) -> Iterator[Connection]:
        """A write transaction. Serialized (the default) writers never race, which dedup
        decisions need; on PostgreSQL others (delivery rows) may pass `serialized=False`."""
        self._check_file()
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql" and serialized:
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
                yield connection
        except OperationalError as exc:
            raise _store_error(exc, self.url) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        self._check_file()
        try:
            with self.engine.connect().execution_options(publisher_read=True) as connection:
                yield connection
        except OperationalError as exc:
            raise _store_error(exc, self.url) from exc

    def error(self, exc: DBAPIError) -> StoreError:
        """The one-line StoreError for a database error met outside begin() and read()."""
        return _store_error(exc, self.url)

    def _check_file(self) -> None:
        """SQLite would silently create a new empty file where a deleted one was."""
        if self._file is not None and _identity(self._file) != self._identity:
            raise StoreError(
                f"database file {self._file} was deleted or replaced while publisher was running",
                "restore it from a backup, or restart publisher to start a new empty database",
            )

    def _schema_is_current(self) -> bool:
        """True when no table, index or migration is missing: opening then takes no write lock."""
        with self.engine.connect().execution_options(publisher_read=True) as connection:
            inspector = inspect(connection)
            existing = set(inspector.get_table_names())
            if not set(metadata.tables) <= existing:
                return False
            for table in metadata.sorted_tables:
                have = {index["name"] for index in inspector.get_indexes(table.name)}
                if any(index.name not in have for index in table.indexes):
                    return False
            version = connection.execute(select(func.max(schema_version.c.version))).scalar()
            return version == SCHEMA_VERSION

    def _migrate(self) -> None:
        try:
            if self._schema_is_current():
                return
        except OperationalError as exc:
            raise _store_error(exc, self.url) from exc
        with self.begin() as connection:
            metadata.create_all(connection, checkfirst=True)
            # create_all adds indexes only with new tables; an index added to an existing
            # table (a speed-up, never data) is created here, idempotently.
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(connection, checkfirst=True)
            current = connection.execute(select(func.max(schema_version.c.version))).scalar()
            if current is None:
                connection.execute(
                    insert(schema_version).values(version=SCHEMA_VERSION, applied=datetime.now(UTC))
                )
                return
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this publisher "
                    f"({SCHEMA_VERSION})",
                    "upgrade publisher",
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](connection)
                connection.execute(
                    insert(schema_version).values(version=version, applied=datetime.now(UTC))
                )


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1]
    return Path(path) if path and path != ":memory:" else None


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


def _open(url: str, busy_timeout: float) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = _sqlite_file(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": busy_timeout})
            _sqlite_pragmas(engine, busy_timeout)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(
            f"cannot use database URL {_redact(url)}: {exc}",
            "for PostgreSQL install the extra: pip install 'publisher[postgres]'",
        ) from exc
    except (OSError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open database {_redact(url)}: {exc}") from exc


def _sqlite_pragmas(engine: Engine, busy_timeout: float) -> None:
    # pysqlite's own transaction handling defers BEGIN; take control so writers
    # use BEGIN IMMEDIATE and wait on busy_timeout instead of failing mid-transaction.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # ingest inserts into several indexes with random keys (block and content hashes,
        # article ids): with SQLite's default 2 MB page cache, each batch re-read index
        # pages from the OS and a checkpoint ran at nearly every commit (1,000 pages).
        # 64 MB is an upper bound per connection, taken only as pages are read.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get("publisher_read", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _redact(url: str) -> str:
    """Never print a password that is part of the URL."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def _store_error(exc: DBAPIError, url: str) -> StoreError:
    detail = str(exc.orig).splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    return StoreError(f"database error ({_redact(url)}): {detail}")
