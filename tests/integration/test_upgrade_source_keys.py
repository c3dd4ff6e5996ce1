"""A database written by the release before source keys (schema 5) upgrades to schema 6
keeping every article, id, slug and delivery, and each article gets its file as its source.

The old database is made by the old code itself: that release's files, taken from git, run
in a subprocess against the same database the test then opens with today's code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from publisher.app import App
from publisher.config import load_settings
from publisher.model import FileOutcome
from publisher.store.schema import SCHEMA_VERSION, articles, deliveries, schema_version
from tests.conftest import SEEDS
from tests.old_release import run_old_release
from tests.smtp_sink import SmtpSink, send_config

SCHEMA_5_RELEASE = "eb72079"  # the last commit that wrote schema 5
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)

_OLD_RUN = r"""
import sys
from datetime import datetime, timedelta
from pathlib import Path
from publisher.app import App
from publisher.config import load_settings

config, seeds, ingested = Path(sys.argv[1]), Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3])
app = App(load_settings(config, environ={}))
app.ingest([seeds], now=lambda: ingested)
# one file name, two unrelated articles (the old code keyed nothing by name): the name's
# newest article gets it
story = "Home>Harbin Today\n\n{0}\n\nUpdated : 2026-11-19\n\nBy ( Harbin Daily )\n\n{1}\n"
reused = app.settings.inbox / "reused.txt"
reused.parent.mkdir(exist_ok=True)
reused.write_text(story.format("Ice festival opens", "The ice festival opened on Friday."))
app.ingest([reused], now=lambda: ingested)
reused.write_text(story.format("Bridge closed for repairs", "Repairs close the bridge."))
app.ingest([reused], now=lambda: ingested + timedelta(minutes=1))
app.add_subscriber("ann@example.com", name="Ann")
report = app.send_digests(now=ingested + timedelta(hours=2))
assert report.sent == 1, report
app.close()
"""


def test_a_schema_5_database_upgrades_keeping_everything(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    config = send_config(tmp_path, database_url, smtp_sink)
    run_old_release(
        tmp_path / "release",
        SCHEMA_5_RELEASE,
        5,
        _OLD_RUN,
        str(config),
        str(SEEDS),
        INGESTED.isoformat(),
    )

    app = App(load_settings(config, environ={}))
    try:
        with app.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
            assert sorted(versions) == list(range(5, SCHEMA_VERSION + 1)) and 6 in versions
            stored = connection.execute(
                select(articles.c.id, articles.c.slug, articles.c.source_key).order_by(
                    articles.c.id
                )
            ).all()
            sent = connection.execute(
                select(deliveries.c.subscriber_id, deliveries.c.status, deliveries.c.article_ids)
            ).all()
            logged = dict(
                connection.execute(
                    text(
                        "SELECT article_id, file FROM ingest_log "
                        "WHERE outcome IN ('added', 'updated')"
                    )
                ).all()
            )
        assert len(stored) == len(app.articles()) == 7
        keys = {app.article(row.id).title: row.source_key for row in stored}
        assert keys.pop("Ice festival opens") is None
        assert keys.pop("Bridge closed for repairs") == "file:reused.txt"
        seeds = [row for row in stored if row.source_key != "file:reused.txt" and row.source_key]
        assert len(seeds) == 5
        assert all(row.source_key == f"file:{logged[row.id]}" for row in seeds)
        [(_, status, article_ids)] = sent
        assert status == "sent" and all(row.id in article_ids for row in seeds)

        # and the key works: the seed saved again with a small change updates its article
        seed = next(s for s in sorted(SEEDS.iterdir()) if s.name == logged[seeds[0].id])
        app.settings.inbox.mkdir(exist_ok=True)
        copy = app.settings.inbox / seed.name
        copy.write_text(seed.read_text(encoding="utf-8") + "\nA line added.\n", encoding="utf-8")
        later = INGESTED + timedelta(days=1)
        [result] = app.ingest([copy], now=lambda: later).results
        assert (result.outcome, result.article_id) == (FileOutcome.UPDATED, seeds[0].id)
        assert sorted(a.id for a in app.articles()) == [row.id for row in stored]
    finally:
        app.close()
