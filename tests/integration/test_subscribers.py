"""`publisher subscribers ...` on a real SQLite file, checked through the library."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from publisher.app import App
from publisher.cli import cli
from publisher.model import SubscriberStatus
from tests.conftest import with_categories, write_config


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    """These subscriber-store tests run on SQLite and on PostgreSQL (when it is up)."""
    return with_categories(
        write_config(tmp_path, database_url), "Harbin Today", "Government bulletin"
    )


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_add_list_remove(config_file: Path, app: App) -> None:
    added = _run(
        config_file,
        "subscribers",
        "add",
        "Ann@Example.COM",
        "--name",
        "Ann",
        "--category",
        "Harbin Today",
        "--category",
        "Government bulletin",
        "--frequency",
        "daily",
    )
    assert added.exit_code == 0, added.output
    listed = _run(config_file, "subscribers", "list", "--json")
    [ann] = json.loads(listed.output)
    assert ann["email"] == "ann@example.com" and ann["status"] == "confirmed"
    assert ann["categories"] == ["Government bulletin", "Harbin Today"]
    assert ann["frequency"] == "daily"
    # unique case-insensitively: adding again updates the same subscriber
    assert _run(config_file, "subscribers", "add", "ANN@example.com").exit_code == 0
    assert len(app.subscribers()) == 1
    assert _run(config_file, "subscribers", "list").exit_code == 0
    assert _run(config_file, "subscribers", "remove", "ann@example.com").exit_code == 0
    assert app.subscribers() == []
    missing = _run(config_file, "subscribers", "remove", "ann@example.com")
    assert missing.exit_code == 1 and "no subscriber" in missing.output


def test_add_rejects_a_bad_address(config_file: Path) -> None:
    result = _run(config_file, "subscribers", "add", "not-an-address")
    assert result.exit_code == 1 and "error:" in result.output and "not a valid" in result.output


def test_import_reports_bad_rows_keeps_good_ones_and_is_idempotent(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,name,categories,frequency\n"
        "ann@example.com,Ann,Harbin Today,weekly\n"
        "bogus,Bad,,weekly\n"
        "bob@example.com,Bob,Harbin Today;Government bulletin,daily\n"
        "cat@example.com,Cat,,hourly\n"
        "ANN@example.com,Ann again,,\n",
        encoding="utf-8",
    )
    first = _run(config_file, "subscribers", "import", str(people))
    assert first.exit_code == 1
    assert f"{people}:3:" in first.output and f"{people}:5:" in first.output
    assert f"{people}:6:" in first.output  # the repeated address
    assert "added 2, updated 0, rejected 3" in first.output
    emails = {s.email: s for s in app.subscribers()}
    assert set(emails) == {"ann@example.com", "bob@example.com"}
    assert emails["bob@example.com"].categories == ("Government bulletin", "Harbin Today")
    assert all(s.status is SubscriberStatus.CONFIRMED for s in emails.values())
    second = _run(config_file, "subscribers", "import", str(people))
    assert "added 0, updated 2, rejected 3" in second.output
    assert {s.email: s for s in app.subscribers()} == emails


def test_export_is_csv_that_imports_back(config_file: Path, app: App, tmp_path: Path) -> None:
    app.add_subscriber("ann@example.com", name='Ann "A", Jr.', categories=["Harbin Today"])
    app.add_subscriber("bob@example.com", frequency="daily")
    exported = _run(config_file, "subscribers", "export")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["email"], r["name"], r["categories"], r["frequency"]) for r in rows] == [
        ("ann@example.com", 'Ann "A", Jr.', "Harbin Today", "weekly"),
        ("bob@example.com", "", "", "daily"),
    ]
    again = tmp_path / "again.csv"
    again.write_text(exported.output, encoding="utf-8")
    result = _run(config_file, "subscribers", "import", str(again))
    assert result.exit_code == 0 and "added 0, updated 2, rejected 0" in result.output
