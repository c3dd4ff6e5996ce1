"""Open a database by URL, apply connection settings, create and migrate the schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError

from publisher.errors import StoreError
from publisher.store.schema import SCHEMA_VERSION, metadata, schema_version

__all__ = ["Store"]

# version -> migration from the version before it; each must keep every row.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}

# Serializes writers on PostgreSQL the way BEGIN IMMEDIATE does on SQLite.
_WRITE_LOCK = 0x7075626C  # "publ"


class Store:
    """One database: SQLite file by default, PostgreSQL by URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _open(url)
        self.dialect = self.engine.dialect.name
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction; writers are serialized so dedup decisions never race."""
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_WRITE_LOCK})")
                yield connection
        except OperationalError as exc:
            raise _store_error(exc, self.url) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(publisher_read=True) as connection:
                yield connection
        except OperationalError as exc:
            raise _store_error(exc, self.url) from exc

    def _migrate(self) -> None:
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


def _open(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            _sqlite_pragmas(engine)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(
            f"cannot use database URL {_redact(url)}: {exc}",
            "for PostgreSQL install the extra: pip install 'publisher[postgres]'",
        ) from exc
    except (OSError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open database {_redact(url)}: {exc}") from exc


def _sqlite_pragmas(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN; take control so writers
    # use BEGIN IMMEDIATE and wait on busy_timeout instead of failing mid-transaction.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
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


def _store_error(exc: OperationalError, url: str) -> StoreError:
    detail = str(exc.orig).splitlines()[0] if exc.orig else str(exc).splitlines()[0]
    return StoreError(f"database error ({_redact(url)}): {detail}")
