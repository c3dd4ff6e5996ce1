"""A database written by the release before deletions (schema 7) upgrades to schema 8
keeping every article, id, slug and delivery, and its articles can then be deleted and
restored. The old database is made by the old code itself (its files taken from git, run
in a subprocess), as in test_upgrade_source_keys.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from publisher.app import App
from publisher.config import load_settings
from publisher.store.schema import SCHEMA_VERSION, articles, deliveries, schema_version
from tests.conftest import SEEDS
from tests.old_release import run_old_release
from tests.smtp_sink import SmtpSink, send_config

SCHEMA_7_RELEASE = "e59495d"  # main when deletions were added: the last to write schema 7
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

_OLD_RUN = r"""
import shutil, sys
from datetime import datetime, timedelta
from pathlib import Path
from publisher.app import App
from publisher.config import load_settings

config, seeds, ingested = Path(sys.argv[1]), Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
app = App(load_settings(config, environ={}))
shutil.copytree(seeds, app.settings.inbox)
app.ingest(now=lambda: ingested)
app.add_subscriber("ann@example.com", name="Ann")
report = app.send_digests(now=ingested + timedelta(hours=2))
assert report.sent == 1, report
app.close()
"""


def test_a_schema_7_database_upgrades_keeping_everything_then_deletes(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    config = send_config(tmp_path, database_url, smtp_sink)
    run_old_release(
        tmp_path / "release",
        SCHEMA_7_RELEASE,
        7,
        _OLD_RUN,
        str(config),
        str(SEEDS),
        INGESTED.isoformat(),
    )

    app = App(load_settings(config, environ={}))
    try:
        with app.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
            stored = connection.execute(
                select(articles.c.id, articles.c.slug).order_by(articles.c.id)
            ).all()
            sent = connection.execute(select(deliveries.c.status, deliveries.c.article_ids)).all()
        assert max(versions) == SCHEMA_VERSION and {7, 8} <= set(versions)
        assert len(stored) == 5
        assert sorted((a.id, a.slug) for a in app.articles()) == [tuple(r) for r in stored]
        assert all(a.deleted is None for a in app.articles())
        [(status, article_ids)] = sent
        assert status == "sent" and all(row.id in article_ids for row in stored)

        victim = stored[0]
        [done] = app.delete_articles([victim.slug])
        assert done.moved_to is not None and done.moved_to.parent.name == "deleted"
        atom = (app.settings.output_dir / "atom.xml").read_text(encoding="utf-8")
        assert f'ref="{victim.id}"' in atom
        assert app.article(victim.id).deleted is not None
        app.restore_article(victim.id)
        assert app.article(victim.id).deleted is None
        with app.store.read() as connection:
            after = connection.execute(select(articles.c.id).order_by(articles.c.id)).all()
        assert [r.id for r in after] == [r.id for r in stored]
        later = app.ingest(now=lambda: INGESTED + timedelta(days=1))
        assert later.summary()["added"] == 0, later.results
    finally:
        app.close()
