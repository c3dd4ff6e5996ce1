"""Open a database by URL, apply connection settings, create and migrate the schema."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from publisher.config import redact_url
from publisher.dedup.rules import source_key
from publisher.errors import ConfigError, MissingDatabase, StoreError
from publisher.model import FileOutcome
from publisher.store.schema import (
    SCHEMA_VERSION,
    articles,
    blocks,
    ingest_log,
    metadata,
    schema_version,
)

__all__ = ["Store", "sqlite_file"]


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


def _article_language(connection: Connection) -> None:
    """Schema 5: articles.language, NULL (the site's language) for every stored article."""
    if "language" not in {c["name"] for c in inspect(connection).get_columns("articles")}:
        connection.exec_driver_sql("ALTER TABLE articles ADD COLUMN language VARCHAR(35)")


def _article_source_keys(connection: Connection) -> None:
    """Schema 6: articles.source_key, from each article's newest file in ingest_log (its
    name: all the older publisher kept of its path). A name whose newest article is another
    one is that one's: a key belongs to one article."""
    if "source_key" not in {c["name"] for c in inspect(connection).get_columns("articles")}:
        connection.exec_driver_sql("ALTER TABLE articles ADD COLUMN source_key TEXT")
    connection.exec_driver_sql(
        "CREATE UNIQUE INDEX IF NOT EXISTS uq_articles_source_key ON articles (source_key)"
    )
    newest: dict[str, tuple[int, str]] = {}  # article id -> (log seq, file)
    for seq, file, article_id in connection.execute(
        select(ingest_log.c.seq, ingest_log.c.file, ingest_log.c.article_id).where(
            ingest_log.c.article_id.is_not(None),
            ingest_log.c.outcome.in_([FileOutcome.ADDED.value, FileOutcome.UPDATED.value]),
        )
    ):
        if article_id not in newest or newest[article_id][0] < seq:
            newest[article_id] = (seq, file)
    owner: dict[str, tuple[int, str]] = {}  # source key -> (log seq, article id)
    for article_id, (seq, file) in newest.items():
        key = source_key(None, file)
        if key not in owner or owner[key][0] < seq:
            owner[key] = (seq, article_id)
    existing = set(connection.execute(select(articles.c.id)).scalars())
    rows = [
        {"target": article_id, "key": key}
        for key, (_, article_id) in owner.items()
        if article_id in existing
    ]
    if rows:
        connection.execute(
            update(articles)
            .where(articles.c.id == bindparam("target"))
            .values(source_key=bindparam("key")),
            rows,
        )


def _kept_and_withheld(connection: Connection) -> None:
    """Schema 9: the kept_blocks and withheld_removals tables, made by create_all before
    migrations run; nothing was kept or withheld before they existed."""


# version -> migration from the version before it; each must keep every row.
def _block_markup(connection: Connection) -> None:
    """Schema 7: blocks.markup, NULL (plain text) for every stored block."""
    if "markup" not in {c["name"] for c in inspect(connection).get_columns("blocks")}:
        connection.exec_driver_sql("ALTER TABLE blocks ADD COLUMN markup TEXT")


def _no_op(connection: Connection) -> None:
    """A version whose change is a new table: create_all has made it already."""


def _deletions(connection: Connection) -> None:
    """Schema 8: the deletions table, made by create_all before migrations run; nothing was
    deleted before it existed."""


def _warmup(connection: Connection) -> None:
    """Schema 17: deliveries.warmup_day, NULL for every row (sent before warm-up existed;
    its day 1 is found from the oldest sent row, see store/warmup.py); the warmup_days
    table and the column's index come from create_all and the index pass."""
    if "warmup_day" not in {c["name"] for c in inspect(connection).get_columns("deliveries")}:
        connection.exec_driver_sql("ALTER TABLE deliveries ADD COLUMN warmup_day VARCHAR(10)")


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _blocks_by_article_seq,
    3: _drop_unused_article_indexes,
    4: _site_builds,
    5: _article_language,
    6: _article_source_keys,
    7: _block_markup,
    8: _deletions,
    9: _kept_and_withheld,
    10: _no_op,  # placeholder: merged from another branch
    11: _no_op,  # consent_events
    12: _no_op,  # placeholder: merged from another branch
    13: _no_op,  # pauses (a new table: create_all makes it)
    14: _no_op,  # placeholder: merged from another branch
    15: _no_op,  # websub_subscriptions
    16: _no_op,  # pacing_slots (a new table: create_all makes it)
    17: _warmup,
    18: _no_op,  # placeholder: another branch
    19: _no_op,  # placeholder: another branch
    20: _no_op,  # webhook_replays
}

# Serializes writers on PostgreSQL the way BEGIN IMMEDIATE does on SQLite.
_WRITE_LOCK = 0x7075626C  # "publ"


class Store:
    """One database: SQLite file by default, PostgreSQL by URL."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0, read_only: bool = False) -> None:
        """`read_only`: never create, migrate or write (status, list, export); a database
        that does not exist yet is MissingDatabase, a read-only file can still be read."""
        self.url = url
        self.read_only = read_only
        if read_only and (missing := _missing_file(url)) is not None:
            raise MissingDatabase(
                f"no database yet at {missing}",
                "`publisher ingest` or `publisher run` creates it",
            )
        self.engine = _open(url, busy_timeout, read_only=read_only)
        self.dialect = self.engine.dialect.name
        self._file: Path | None = None
        self._identity: tuple[int, int] | None = None
        try:
            if read_only:
                self._check_schema()
            else:
                self._migrate()
        except BaseException:
            self.engine.dispose()
            raise
        # from here on, a vanished or swapped file is an error, not a fresh database
        self._file = sqlite_file(url)
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

    def _current(self) -> bool:
        try:
            return self._schema_is_current()
        except DatabaseError as exc:
            if _is_damaged(exc):
                raise ConfigError(
                    f"database {redact_url(self.url)} is not a SQLite database, or it is "
                    f"damaged ({_first_line(exc)})",
                    "point database_url at the publisher database, or restore it from a backup",
                ) from exc
            raise _store_error(exc, self.url) from exc

    def _check_schema(self) -> None:
        """Read-only opening: the schema must be there and current, as nothing may be written."""
        if self._current():
            return
        with self.engine.connect().execution_options(publisher_read=True) as connection:
            existing = set(inspect(connection).get_table_names())
        if not existing & set(metadata.tables):
            raise MissingDatabase(
                f"no database yet in {redact_url(self.url)}",
                "`publisher ingest` or `publisher run` creates it",
            )
        raise StoreError(
            f"the database {redact_url(self.url)} has an older schema than this publisher",
            "run `publisher ingest` once to upgrade it",
        )

    def has_table(self, name: str) -> bool:
        with self.engine.connect().execution_options(publisher_read=True) as connection:
            return inspect(connection).has_table(name)

    def _migrate(self) -> None:
        if self._current():
            return
        with self.begin() as connection:
            metadata.create_all(connection, checkfirst=True)
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
            # create_all adds indexes only with new tables; an index added to an existing
            # table (a speed-up, never data) is created here, idempotently, after the
            # migrations have added the columns it covers.
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(connection, checkfirst=True)


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (query string left out); None for PostgreSQL
    or an in-memory database."""
    if not url.startswith("sqlite") or "///" not in url:
        return None
    path = url.split("///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _identity(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


def _missing_file(url: str) -> Path | None:
    path = sqlite_file(url)
    return path if path is not None and not path.exists() else None


def _open(url: str, busy_timeout: float, *, read_only: bool = False) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = sqlite_file(url)
            if read_only and path is not None:
                engine = create_engine(url, creator=lambda: _read_only_connection(path))
            else:
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": busy_timeout})
            _sqlite_pragmas(engine, busy_timeout, read_only=read_only)
            return engine
        if read_only:
            # every transaction of this engine is refused a write by the server itself
            options = {"options": "-c default_transaction_read_only=on"}
            return create_engine(url, pool_pre_ping=True, connect_args=options)
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"cannot use database URL {redact_url(url)}: {_first_line(exc)}",
            "use sqlite:///path.db, or postgresql+psycopg://user@host/db with the extra "
            "installed: pip install 'publisher[postgres]'",
        ) from exc
    except (OSError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open database {redact_url(url)}: {exc}") from exc


def _read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that cannot write the file: `mode=ro`. A WAL database needs its -shm
    file, which a process that may not write the folder cannot create; then, if no WAL
    content waits to be read, the file is opened `immutable` (no locks, no -shm)."""
    uri = f"file:{quote(str(path))}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        wal = path.with_name(path.name + "-wal")
        cannot_share = "readonly" in str(exc) or "unable to open" in str(exc)
        if not cannot_share or (wal.exists() and wal.stat().st_size > 0):
            raise
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, check_same_thread=False)


def _sqlite_pragmas(engine: Engine, busy_timeout: float, *, read_only: bool = False) -> None:
    # pysqlite's own transaction handling defers BEGIN; take control so writers
    # use BEGIN IMMEDIATE and wait on busy_timeout instead of failing mid-transaction.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:  # setting the journal mode writes the file header
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
        reading = read_only or connection.get_execution_options().get("publisher_read", False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).splitlines() or [type(cause).__name__])[0]


def _is_damaged(exc: DatabaseError) -> bool:
    text = str(exc.orig or exc).lower()
    return "file is not a database" in text or "malformed" in text


def _store_error(exc: DBAPIError, url: str) -> StoreError:
    return StoreError(f"database error ({redact_url(url)}): {_first_line(exc)}")
