"""`publisher status [--json]` over a real SQLite file after real ingest, build and digest runs."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource
from publisher.status import complaint_flag
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
            "complained": 0,
        }
        # what came back, against Gmail's complaint-rate lines
        last_run = found["mail"]["last_run"]
        assert {k: v for k, v in last_run.items() if k != "since"} == {
            "run": 1,
            "sent": 2,
            "hard_bounces": 1,
            "soft_bounces": 0,
            "complaints": 0,
            "unsubscribes": 0,
            "complaint_rate": 0.0,
            "complaint_flag": "ok",
        }
        assert found["mail"]["last_30_days"]["sent"] == 2
        assert found["mail"]["last_30_days"]["hard_bounces"] == 1
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
        assert "mail, last run: sent 2, hard bounces 1, soft bounces 0, complaints 0" in text.stdout
        assert "complaint rate 0.00 %: ok" in text.stdout
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


def test_status_flags_a_complaint_rate_over_gmails_lines(
    tmp_path: Path, database_url: str, inbox: Path, smtp_sink: SmtpSink
) -> None:
    """Complaints and unsubscribes that come back after a real send count against it; one
    complaint in 2 sent is far over 0.3 %, and a repeated complaint counts once."""
    config = write_config(
        tmp_path,
        database_url,
        smtp=f'{{ host = "127.0.0.1", port = {smtp_sink.port}, attempts = 1 }}',
    )
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([inbox])
        for address in ("ada@example.org", "bo@example.org"):
            app.add_subscriber(address)
        assert app.send_digests(frequency="weekly").sent == 2
        admin = app.subscriber_admin
        for _ in range(2):
            admin.suppress(
                "ada@example.org",
                ConsentKind.COMPLAINED,
                source=ConsentSource.INBOUND,
                detail="ARF",
            )
        admin.suppress(
            "bo@example.org", ConsentKind.UNSUBSCRIBED, source=ConsentSource.WEB, detail="link"
        )
        admin.soft_bounced("bo@example.org", source=ConsentSource.INBOUND, detail="4.2.2")

        result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"])
        assert result.exit_code == 0, result.output
        for window in ("last_run", "last_30_days"):
            figures = json.loads(result.stdout)["mail"][window]
            assert (figures["sent"], figures["complaints"], figures["unsubscribes"]) == (2, 1, 1)
            assert figures["soft_bounces"] == 1
            assert figures["complaint_rate"] == 0.5
            assert figures["complaint_flag"].startswith("over 0.3 %")
        shown = CliRunner().invoke(cli, ["--config", str(config), "status"])
        assert "complaint rate 50.00 %: over 0.3 %" in shown.stdout
    finally:
        app.close()


def test_the_complaint_flag_follows_gmails_lines() -> None:
    assert complaint_flag(None) == "nothing sent"
    assert complaint_flag(0.0) == complaint_flag(0.00099) == "ok"
    assert complaint_flag(0.001).startswith("over 0.1 %")
    assert complaint_flag(0.00299).startswith("over 0.1 %")
    assert complaint_flag(0.003).startswith("over 0.3 %")
