"""`publisher status [--json]` over a real SQLite file after real ingest, build and digest runs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.store.locks import DatabaseLock
from tests.conftest import write_config
from tests.smtp_sink import SmtpSink


def test_status_reports_articles_subscribers_feeds_jobs_and_the_last_digest(
    tmp_path: Path, sqlite_url: str, inbox: Path, smtp_sink: SmtpSink
) -> None:
    config = write_config(
        tmp_path,
        sqlite_url,
        smtp=f'{{ host = "127.0.0.1", port = {smtp_sink.port}, attempts = 1 }}',
    )
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([inbox])
        app.build_feeds()
        for address in ("ada@example.org", "bo@example.org", "gone@example.org"):
            app.add_subscriber(address)
        smtp_sink.reject.add("gone@example.org")
        report = app.send_digests(frequency="weekly")
        assert (report.sent, report.failed) == (2, 1)

        runner = CliRunner()
        result = runner.invoke(cli, ["--config", str(config), "status", "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)

        assert found["articles"]["total"] == 5
        assert found["articles"]["last_ingest"].endswith("+08:00")  # shown in Asia/Shanghai
        assert found["feeds"]["last_built"] is not None
        # one 550 (permanent) is not yet a bounce: bounce_after defaults to 3 hard failures
        assert found["subscribers"] == {
            "pending": 0,
            "confirmed": 3,
            "unsubscribed": 0,
            "bounced": 0,
        }
        last = found["last_digest_run"]
        assert (last["frequency"], last["status"]) == ("weekly", "done")
        assert last["deliveries"] == {"sent": 2, "failed": 1}
        assert found["deliveries"] == {"pending": 0, "failed": 1}
        assert [job["frequency"] for job in found["jobs"]] == ["weekly", "daily"]
        assert found["scheduler"] == {"running": False}

        # while a `publisher run` holds the scheduler lock, status says so (and who)
        with DatabaseLock(app.store, "scheduler") as lock:
            assert lock.try_acquire()
            text = runner.invoke(cli, ["--config", str(config), "status"])
        assert text.exit_code == 0, text.output
        assert "scheduler: running (pid" in text.stdout
        assert "last digest: #1 weekly done" in text.stdout
        assert "deliveries: 0 pending, 1 failed" in text.stdout
        assert "articles: 5 (last ingest: " in text.stdout
    finally:
        app.close()


def test_status_on_an_empty_database_is_not_an_error(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["articles"] == {"total": 0, "last_ingest": None}
    assert found["last_digest_run"] is None
    assert found["deliveries"] == {"pending": 0, "failed": 0}
    assert all(job["next_run"] for job in found["jobs"])  # computed from the config
