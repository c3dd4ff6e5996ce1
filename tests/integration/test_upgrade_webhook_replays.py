"""A database written by the release before durable webhook replays (schema 15, as main
was then) upgrades to schema 20 keeping its subscribers, and then remembers a token."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from publisher.app import App
from publisher.config import load_settings
from publisher.inbound import WebhookReplays
from publisher.store.schema import SCHEMA_VERSION, schema_version
from tests.conftest import write_config
from tests.old_release import run_old_release

SCHEMA_15_RELEASE = "cbac879"  # main before webhook_replays: the last to write schema 15

_OLD_RUN = r"""
import sys
from pathlib import Path
from publisher.app import App
from publisher.config import load_settings

app = App(load_settings(Path(sys.argv[1]), environ={}))
app.add_subscriber("ann@example.com", name="Ann")
app.close()
"""


def test_a_schema_15_database_upgrades_and_remembers_webhook_tokens(
    tmp_path: Path, database_url: str
) -> None:
    config = write_config(tmp_path, database_url)
    run_old_release(tmp_path / "release", SCHEMA_15_RELEASE, 15, _OLD_RUN, str(config))

    app = App(load_settings(config, environ={}))
    try:
        with app.store.read() as connection:
            versions = connection.execute(select(schema_version.c.version)).scalars().all()
        assert max(versions) == SCHEMA_VERSION == 20 and 15 in versions
        assert [s.email for s in app.subscribers()] == ["ann@example.com"]
        replays = WebhookReplays(app.settings, app.store)
        assert replays.claim_now("mailgun", "a-token", now=1000.0, until=1300.0)
        assert not replays.claim_now("mailgun", "a-token", now=1001.0, until=1301.0)
    finally:
        app.close()
