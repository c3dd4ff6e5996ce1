"""Schema creation and upgrade on a real database: never lose data."""

from __future__ import annotations

from sqlalchemy import inspect, select, text

from publisher.store import Store
from publisher.store.schema import SCHEMA_VERSION, schema_version


def test_reopening_keeps_rows_and_records_the_version(database_url: str) -> None:
    store = Store(database_url)
    with store.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO boilerplate (key, text, decided) VALUES ('k', 'kept text', CURRENT_TIMESTAMP)"
            )
        )
    store.close()
    again = Store(database_url)
    with again.read() as connection:
        assert connection.execute(text("SELECT text FROM boilerplate")).scalar_one() == "kept text"
        versions = connection.execute(select(schema_version.c.version)).scalars().all()
    assert versions == [SCHEMA_VERSION]
    again.close()


def test_an_index_missing_from_an_older_database_is_added_on_open(database_url: str) -> None:
    store = Store(database_url)
    with store.begin() as connection:
        connection.execute(text("DROP INDEX ix_articles_title_key"))
    store.close()
    again = Store(database_url)
    names = {index["name"] for index in inspect(again.engine).get_indexes("articles")}
    assert "ix_articles_title_key" in names
    again.close()
