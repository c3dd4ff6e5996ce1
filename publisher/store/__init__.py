"""Adapter: SQLAlchemy Core storage. SQLite by default, PostgreSQL by URL."""

from publisher.store.articles import Articles
from publisher.store.engine import Store

__all__ = ["Articles", "Store"]
