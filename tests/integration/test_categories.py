"""Categories (issue 15, case 8): matched ignoring case everywhere (CLI, CSV, web form),
stored as the site spells them, unknown ones refused with the known ones unless --force;
`send --dry-run` says why a subscriber gets nothing. Real CLI on seeds ingested into
SQLite and PostgreSQL (database_url), a real aiosmtpd sink for the send."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.messages import InvalidSubscription
from publisher.model import ConsentKind, ConsentSource, Subscriber
from tests.conftest import SEEDS, with_categories
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
KNOWN = "Civilization progress, Government bulletin, Harbin Today, Sports"


@pytest.fixture
def config_file(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Path:
    # "Sports" is configured: known before any article of it is stored
    return with_categories(send_config(tmp_path, database_url, smtp_sink), "Sports")


@pytest.fixture
def app(config_file: Path) -> Iterator[App]:
    application = App(load_settings(config_file, environ={}))
    application.ingest([SEEDS], now=lambda: INGESTED)
    yield application
    application.close()


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _who(app: App, email: str) -> Subscriber:
    return next(s for s in app.subscribers() if s.email == email)


def test_a_category_in_the_wrong_case_is_stored_as_the_site_spells_it_and_mailed(
    config_file: Path, app: App, smtp_sink: SmtpSink
) -> None:
    added = _run(config_file, "subscribers", "add", "ann@example.com", "--category", "harbin TODAY")
    assert added.exit_code == 0, added.output
    assert _who(app, "ann@example.com").categories == ("Harbin Today",)
    report = app.send_digests(now=INGESTED + timedelta(hours=2))
    assert report.sent == 1
    assert smtp_sink.per_recipient() == {"ann@example.com": 1}


def test_an_unknown_category_is_refused_with_the_known_ones_unless_forced(
    config_file: Path, app: App
) -> None:
    refused = _run(config_file, "subscribers", "add", "bob@example.com", "--category", "Harbin")
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1  # one line
    assert f"unknown category 'Harbin'; known: {KNOWN}" in refused.stderr
    assert all(s.email != "bob@example.com" for s in app.subscribers())
    forced = _run(
        config_file, "subscribers", "add", "bob@example.com", "--category", "Harbin", "--force"
    )
    assert forced.exit_code == 0, forced.output
    assert _who(app, "bob@example.com").categories == ("Harbin",)


def test_csv_import_matches_categories_and_reports_an_unknown_one_by_its_row(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,categories\n"
        "cy@example.com,government BULLETIN;sports\n"
        "dee@example.com,Weather\n"
        "eve@example.com,\n",
        encoding="utf-8",
    )
    result = _run(config_file, "subscribers", "import", str(people))
    assert result.exit_code == 1
    assert f"{people}:3: unknown category 'Weather'; known: {KNOWN}" in result.stderr
    assert "added 2, updated 0, rejected 1" in result.stdout
    assert _who(app, "cy@example.com").categories == ("Government bulletin", "Sports")
    assert _who(app, "eve@example.com").categories == ()
    forced = _run(config_file, "subscribers", "import", str(people), "--force")
    assert forced.exit_code == 0, forced.output
    assert _who(app, "dee@example.com").categories == ("Weather",)


def test_the_web_form_matches_categories_and_refuses_an_unknown_one(app: App) -> None:
    async def subscribe(email: str, categories: list[str]) -> None:
        await app.subscriptions.subscribe(email, None, categories, "weekly")

    asyncio.run(subscribe("fay@example.com", ["CIVILIZATION progress"]))
    assert _who(app, "fay@example.com").categories == ("Civilization progress",)
    with pytest.raises(InvalidSubscription, match="unknown category 'Gossip'; known: "):
        asyncio.run(subscribe("gil@example.com", ["Gossip"]))
    assert all(s.email != "gil@example.com" for s in app.subscribers())


def test_dry_run_lists_who_is_skipped_and_why(config_file: Path, app: App) -> None:
    for email, extra in (
        ("ann@example.com", ["--category", "Harbin Today"]),
        ("sam@example.com", ["--category", "sports"]),  # none of it stored
        ("dan@example.com", ["--frequency", "daily"]),  # its day holds nothing new
        ("una@example.com", []),
    ):
        assert _run(config_file, "subscribers", "add", email, *extra).exit_code == 0
    app.subscriber_admin.suppress(
        "una@example.com", ConsentKind.UNSUBSCRIBED, source=ConsentSource.WEB, detail="link"
    )
    now = (INGESTED + timedelta(days=3)).isoformat()
    result = _run(
        config_file, "send", "--dry-run", "--out", str(config_file.parent / "p"), "--now", now
    )
    assert result.exit_code == 0, result.output
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert lines["sam@example.com"] == "no matching category"
    assert lines["dan@example.com"] == "nothing new"
    assert lines["una@example.com"] == "suppressed"
    assert "ann@example.com" not in lines
    assert "Skipped: 3 subscribers" in result.stdout
