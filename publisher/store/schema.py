"""SQLAlchemy Core tables: one metadata for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect

__all__ = ["SCHEMA_VERSION", "UTCDateTime", "metadata"]

# Bump with a migration in store/engine.py; an upgrade never drops data.
SCHEMA_VERSION = 1


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive storage) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value
        return stored.replace(tzinfo=UTC) if stored.tzinfo is None else stored.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
    Column("applied", UTCDateTime, nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column(
        "seq",
        Integer().with_variant(BigInteger, "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(400), nullable=False, unique=True),
    Column("slug", String(200), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("title_key", Text, nullable=False, index=True),
    Column("category", Text, nullable=False, index=True),
    Column("category_path", Text, nullable=False),  # JSON list
    Column("published", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("author", Text),
    Column("source", Text),
    Column("content_hash", String(64), nullable=False, index=True),
    Column("source_file", Text, nullable=False),
    Column("ingested", UTCDateTime, nullable=False, index=True),
    Column("teaser_key", Text, index=True),  # title_key of its trailing teaser headline
    Column("signature", LargeBinary, nullable=False),
)

blocks = Table(
    "blocks",
    metadata,
    Column(
        "article_id", String(400), ForeignKey("articles.id", ondelete="CASCADE"), nullable=False
    ),
    Column("position", Integer, nullable=False),
    Column("key", String(32), nullable=False, index=True),
    Column("text", Text, nullable=False),
    UniqueConstraint("article_id", "position"),
)

removals = Table(
    "removals",
    metadata,
    Column(
        "article_id", String(400), ForeignKey("articles.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("rule", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided", UTCDateTime, nullable=False),
    UniqueConstraint("article_id", "key"),
)

boilerplate = Table(
    "boilerplate",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("text", Text, nullable=False),
    Column("advertises", Text),  # title_key of the headline before it, if a teaser
    Column("decided", UTCDateTime, nullable=False),
)

ingest_log = Table(
    "ingest_log",
    metadata,
    Column(
        "seq",
        Integer().with_variant(BigInteger, "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("file", Text, nullable=False),
    Column("raw_hash", String(32), nullable=False),
    Column("content_hash", String(64)),
    Column("outcome", String(20), nullable=False),
    Column("article_id", String(400)),
    Column("reason", Text),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_ingest_log_file_hash", "file", "raw_hash"),
    Index("ix_ingest_log_content_hash", "content_hash"),
)
