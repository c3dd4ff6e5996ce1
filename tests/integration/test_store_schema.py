"""Schema creation and upgrade on a real database: never lose data."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import inspect, select, text

from publisher.app import App
from publisher.model import ConsentSource
from publisher.store import Store
from publisher.store.schema import SCHEMA_VERSION, schema_version
from tests.conftest import SEEDS


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


# schema 1, as publisher created it: blocks referred to their article by id, and articles
# had two indexes since dropped
_SCHEMA_1 = [
    "CREATE INDEX ix_articles_category ON articles (category)",
    "CREATE INDEX ix_articles_content_hash ON articles (content_hash)",
    "DROP INDEX ix_blocks_key",
    "ALTER TABLE blocks RENAME TO blocks_v2",
    "CREATE TABLE blocks (article_id VARCHAR(400) NOT NULL REFERENCES articles (id) "
    'ON DELETE CASCADE, position INTEGER NOT NULL, "key" VARCHAR(32) NOT NULL, '
    "text TEXT NOT NULL, UNIQUE (article_id, position))",
    'CREATE INDEX ix_blocks_key ON blocks ("key")',
    'INSERT INTO blocks (article_id, position, "key", text) '
    'SELECT articles.id, b.position, b."key", b.text '
    "FROM blocks_v2 AS b JOIN articles ON articles.seq = b.article_seq",
    "DROP TABLE blocks_v2",
    "DELETE FROM schema_version",
    "INSERT INTO schema_version (version, applied) VALUES (1, CURRENT_TIMESTAMP)",
]


def test_a_schema_1_database_keeps_every_block_on_upgrade(store_app: App) -> None:
    for seed in sorted(SEEDS.iterdir()):
        shutil.copy(seed, store_app.settings.inbox / seed.name)
    store_app.ingest()
    before = [a.as_dict() for a in store_app.articles()]
    with store_app.store.begin() as connection:
        count = connection.execute(text("SELECT count(*) FROM blocks")).scalar_one()
        for statement in _SCHEMA_1:
            connection.execute(text(statement))
    store_app.close()

    upgraded = App(store_app.settings)
    try:
        assert [a.as_dict() for a in upgraded.articles()] == before
        columns = {c["name"] for c in inspect(upgraded.store.engine).get_columns("blocks")}
        assert "article_seq" in columns and "article_id" not in columns
        with upgraded.store.read() as connection:
            assert connection.execute(text("SELECT count(*) FROM blocks")).scalar_one() == count
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))
        indexes = {i["name"] for i in inspect(upgraded.store.engine).get_indexes("articles")}
        assert "ix_articles_title_key" in indexes
        assert not indexes & {"ix_articles_category", "ix_articles_content_hash"}
        # and it goes on working: a corrected copy of a seed updates its article in place
        seed = sorted(SEEDS.iterdir())[1]
        lines = seed.read_text(encoding="utf-8").splitlines()
        date_line = next(i for i, line in enumerate(lines) if line.startswith("Updated"))
        lines[date_line] = "Updated : 2030-01-01"
        (upgraded.settings.inbox / "corrected.txt").write_text("\n".join(lines), encoding="utf-8")
        report = upgraded.ingest([upgraded.settings.inbox / "corrected.txt"])
        assert report.summary()["updated"] == 1
        assert len(upgraded.articles()) == len(before)
    finally:
        upgraded.close()


def test_a_schema_7_database_gains_the_consent_tables_and_keeps_its_subscribers(
    store_app: App,
) -> None:
    """Schema 11 (consent_events, suppressions) on a database written by schema 7."""
    store_app.add_subscriber("ann@example.org", name="Ann")
    with store_app.store.begin() as connection:
        connection.execute(text("DROP TABLE consent_events"))
        connection.execute(text("DROP TABLE suppressions"))
        connection.execute(text("DELETE FROM schema_version"))
        connection.execute(
            text("INSERT INTO schema_version (version, applied) VALUES (7, CURRENT_TIMESTAMP)")
        )
    store_app.close()

    upgraded = App(store_app.settings)
    try:
        [ann] = upgraded.subscribers()
        assert (ann.email, ann.name) == ("ann@example.org", "Ann")
        tables = set(inspect(upgraded.store.engine).get_table_names())
        assert {"consent_events", "suppressions"} <= tables
        with upgraded.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert sorted(versions) == list(range(7, SCHEMA_VERSION + 1))
        assert upgraded.subscriber_admin.remove("ann@example.org") is None
        assert [e.kind.value for e in upgraded.subscriber_history("ann@example.org")] == ["removed"]
    finally:
        upgraded.close()


def test_a_schema_11_database_gains_the_new_tables_and_keeps_its_data(
    store_app: App, tmp_path: Path
) -> None:
    """Schemas 13 (pauses, the preference centre's pause) and 15 (websub_subscriptions) on
    a database written by 11."""
    articles = shutil.copytree(SEEDS, tmp_path / "inbox" / "seeds")
    store_app.ingest([articles])
    store_app.add_subscriber("ann@example.org", name="Ann", frequency="daily")
    with store_app.store.begin() as connection:
        connection.execute(text("DROP TABLE pauses"))
        connection.execute(text("DROP TABLE websub_subscriptions"))
        connection.execute(text("DELETE FROM schema_version"))
        connection.execute(
            text("INSERT INTO schema_version (version, applied) VALUES (11, CURRENT_TIMESTAMP)")
        )
    store_app.close()

    upgraded = App(store_app.settings)
    try:
        assert len(upgraded.articles()) == 5
        [ann] = upgraded.subscribers()
        assert (ann.email, ann.name, ann.frequency.value) == ("ann@example.org", "Ann", "daily")
        assert ann.paused_until is None
        tables = set(inspect(upgraded.store.engine).get_table_names())
        assert {"pauses", "websub_subscriptions"} <= tables
        with upgraded.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert sorted(versions) == list(range(11, SCHEMA_VERSION + 1))
        until = datetime(2030, 1, 1, tzinfo=UTC)
        paused = upgraded.subscriber_admin.change_preferences(
            "ann@example.org", paused_until=until, source=ConsentSource.WEB
        )
        assert paused is not None and paused.paused_until == until
    finally:
        upgraded.close()
