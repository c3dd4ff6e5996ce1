"""Consent survives the operator's tools: export -> import round-trips every field, an
address that unsubscribed or bounced is never confirmed again without --force, `remove`
keeps the suppression, and exported cells never run as spreadsheet formulas.
On SQLite and on PostgreSQL (database_url)."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from publisher.app import App
from publisher.cli import cli
from publisher.model import Subscriber, SubscriberStatus
from publisher.store.subscribers import Subscribers
from tests.conftest import with_categories, write_config

SUPPRESSED = [SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED]


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    return with_categories(write_config(tmp_path, database_url), "Harbin Today")


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _set_status(app: App, email: str, status: SubscriberStatus) -> None:
    with app.store.begin() as connection:
        people = Subscribers(connection)
        found = people.by_email(email)
        assert found is not None
        people.set_status(found.id, status, datetime(2026, 11, 2, 9, 30, tzinfo=UTC))


def _by_email(app: App) -> dict[str, Subscriber]:
    return {s.email: s for s in app.subscribers()}


def _without_ids(people: dict[str, Subscriber]) -> dict[str, Subscriber]:
    return {email: dataclasses.replace(s, id=0) for email, s in people.items()}


def test_export_then_import_round_trips_every_field_and_status(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    app.add_subscriber("conf@example.org", name="Conf", categories=["Harbin Today"])
    app.subscriber_admin.add("pend@example.org", status=SubscriberStatus.PENDING, frequency="daily")
    for email, status in [
        ("unsub@example.org", SUPPRESSED[0]),
        ("bounce@example.org", SUPPRESSED[1]),
    ]:
        app.add_subscriber(email, name=f'=HYPERLINK("http://evil","{email}")')
        _set_status(app, email, status)
    before = _by_email(app)

    exported = _run(config_file, "subscribers", "export")
    assert exported.exit_code == 0, exported.output
    saved = tmp_path / "subscribers.csv"
    saved.write_text(exported.stdout, encoding="utf-8")
    with app.store.begin() as connection:  # an empty database, as after a migration
        connection.exec_driver_sql("DELETE FROM subscribers")

    imported = _run(config_file, "subscribers", "import", str(saved))
    assert imported.exit_code == 0, imported.output
    assert "added 4, updated 0, rejected 0" in imported.output
    after = _by_email(app)
    assert after["pend@example.org"].status is SubscriberStatus.PENDING
    assert after["unsub@example.org"].status is SubscriberStatus.UNSUBSCRIBED
    assert after["bounce@example.org"].status is SubscriberStatus.BOUNCED
    assert _without_ids(after) == _without_ids(before)  # names, times, failures: all of it

    again = _run(config_file, "subscribers", "import", str(saved))  # into the same database
    assert again.exit_code == 0 and "added 0, updated 4, rejected 0" in again.output
    assert _without_ids(_by_email(app)) == _without_ids(before)


def test_exported_cells_never_start_a_formula_and_import_restores_them(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    names = [
        '=HYPERLINK("http://evil","x")',
        "+1 555",
        "-x",
        "@SUM(A1)",
        "\tTab",
        "'=quoted",
        "O'Hara",
    ]
    for n, name in enumerate(names):
        app.add_subscriber(f"p{n}@example.org", name=name)
    stored = {s.email: s.name for s in app.subscribers()}

    exported = _run(config_file, "subscribers", "export")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert {r["name"] for r in rows} >= {
        '\'=HYPERLINK("http://evil","x")',
        "'+1 555",
        "''=quoted",
        "O'Hara",
    }

    saved = tmp_path / "people.csv"
    saved.write_text(exported.stdout, encoding="utf-8")
    with app.store.begin() as connection:
        connection.exec_driver_sql("DELETE FROM subscribers")
    assert _run(config_file, "subscribers", "import", str(saved)).exit_code == 0
    assert {s.email: s.name for s in app.subscribers()} == stored


@pytest.mark.parametrize("status", SUPPRESSED, ids=lambda s: s.value)
def test_a_suppressed_address_is_not_confirmed_again_without_force(
    status: SubscriberStatus, config_file: Path, app: App, tmp_path: Path
) -> None:
    app.add_subscriber("gone@example.org", name="Gone")
    _set_status(app, "gone@example.org", status)

    added = _run(config_file, "subscribers", "add", "gone@example.org")
    assert added.exit_code == 1
    assert added.stderr.splitlines()[0] == (
        f"error: gone@example.org is {status.value}: not subscribing it again"
    )
    assert _by_email(app)["gone@example.org"].status is status

    people = tmp_path / "people.csv"
    people.write_text(
        "email,name\ngone@example.org,Gone\n", encoding="utf-8"
    )  # no status: confirmed
    refused = _run(config_file, "subscribers", "import", str(people))
    assert refused.exit_code == 1
    assert f"{people}:2: gone@example.org is {status.value}" in refused.stderr
    people.write_text("email,status\ngone@example.org,pending\n", encoding="utf-8")
    assert _run(config_file, "subscribers", "import", str(people)).exit_code == 1
    assert _by_email(app)["gone@example.org"].status is status

    forced = _run(config_file, "subscribers", "import", "--force", str(people))
    assert forced.exit_code == 0, forced.output
    assert _by_email(app)["gone@example.org"].status is SubscriberStatus.PENDING
    _set_status(app, "gone@example.org", status)
    assert _run(config_file, "subscribers", "add", "--force", "gone@example.org").exit_code == 0
    assert _by_email(app)["gone@example.org"].status is SubscriberStatus.CONFIRMED


@pytest.mark.parametrize("status", SUPPRESSED, ids=lambda s: s.value)
def test_remove_keeps_the_suppression(
    status: SubscriberStatus, config_file: Path, app: App, tmp_path: Path
) -> None:
    app.add_subscriber("gone@example.org", name="Gone Person", categories=["Harbin Today"])
    _set_status(app, "gone@example.org", status)

    removed = _run(config_file, "subscribers", "remove", "gone@example.org")
    assert removed.exit_code == 0, removed.output
    assert "kept as suppressed" in removed.stdout
    assert "gone@example.org" not in _by_email(app)  # the address itself is erased
    exported = _run(config_file, "subscribers", "export")
    assert "gone@example.org" not in exported.stdout and "#hash:" in exported.stdout

    old_list = tmp_path / "old.csv"
    old_list.write_text("email,name,status\ngone@example.org,Gone,confirmed\n", encoding="utf-8")
    assert _run(config_file, "subscribers", "import", str(old_list)).exit_code == 1
    assert _run(config_file, "subscribers", "add", "gone@example.org").exit_code == 1
    assert "gone@example.org" not in _by_email(app)
    # the web form makes it pending at most, held until its own confirmation
    import asyncio

    asyncio.run(app.subscriptions.subscribe("gone@example.org", None, [], "weekly"))
    asyncio.run(app.subscriptions.drain())
    again = _by_email(app)["gone@example.org"]
    held = SubscriberStatus.PENDING if status is SubscriberStatus.UNSUBSCRIBED else status
    assert again.status is held
    assert _run(config_file, "subscribers", "add", "gone@example.org").exit_code == 1
    history = _run(config_file, "subscribers", "history", "gone@example.org", "--json")
    assert '"removed"' in history.stdout


@pytest.mark.parametrize("status", SUPPRESSED, ids=lambda s: s.value)
def test_a_removed_suppression_moves_with_export_and_import(
    status: SubscriberStatus, config_file: Path, app: App, tmp_path: Path, database_url: str
) -> None:
    app.add_subscriber("gone@example.org")
    _set_status(app, "gone@example.org", status)
    assert _run(config_file, "subscribers", "remove", "gone@example.org").exit_code == 0
    exported = tmp_path / "export.csv"
    exported.write_text(_run(config_file, "subscribers", "export").stdout, encoding="utf-8")

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    other = write_config(fresh, f"sqlite:///{fresh / 'other.db'}")
    imported = _run(other, "subscribers", "import", str(exported))
    assert imported.exit_code == 0, imported.output
    assert _run(other, "subscribers", "add", "gone@example.org").exit_code == 1
    again = _run(other, "subscribers", "export").stdout
    assert again.splitlines()[1:] == exported.read_text(encoding="utf-8").splitlines()[1:]


def test_import_honours_pending_and_never_undoes_a_confirmation(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    app.add_subscriber("ann@example.org")
    people = tmp_path / "people.csv"
    people.write_text(
        "email,status\nann@example.org,pending\nnew@example.org,pending\nno@example.org,unsubscribed\n",
        encoding="utf-8",
    )
    result = _run(config_file, "subscribers", "import", str(people))
    assert result.exit_code == 0, result.output
    found = _by_email(app)
    assert found["ann@example.org"].status is SubscriberStatus.CONFIRMED
    assert found["new@example.org"].status is SubscriberStatus.PENDING
    assert found["no@example.org"].status is SubscriberStatus.UNSUBSCRIBED  # a suppression list
    bad = tmp_path / "bad.csv"
    bad.write_text("email,status\nx@example.org,maybe\n", encoding="utf-8")
    refused = _run(config_file, "subscribers", "import", str(bad))
    assert refused.exit_code == 1 and f"{bad}:2: status must be one of" in refused.stderr


def test_a_web_resubscribe_of_an_unsubscribed_address_is_still_suppressed_until_it_confirms(
    config_file: Path, app: App, tmp_path: Path
) -> None:
    """Anyone can type an address into the form: that makes it pending, never confirmable
    by the operator's tools without --force."""
    import asyncio

    app.add_subscriber("ann@example.org", name="Ann")
    _set_status(app, "ann@example.org", SubscriberStatus.UNSUBSCRIBED)

    async def web_subscribe() -> None:
        await app.subscriptions.subscribe("ann@example.org", None, [], "weekly")
        await app.subscriptions.drain()

    asyncio.run(web_subscribe())
    assert _by_email(app)["ann@example.org"].status is SubscriberStatus.PENDING
    added = _run(config_file, "subscribers", "add", "ann@example.org")
    assert added.exit_code == 1, added.output
    people = tmp_path / "old-list.csv"
    people.write_text("email,status\nann@example.org,confirmed\n", encoding="utf-8")
    imported = _run(config_file, "subscribers", "import", str(people))
    assert imported.exit_code == 1, imported.output
    assert _by_email(app)["ann@example.org"].status is SubscriberStatus.PENDING
    forced = _run(config_file, "subscribers", "add", "ann@example.org", "--force")
    assert forced.exit_code == 0, forced.output
    assert _by_email(app)["ann@example.org"].status is SubscriberStatus.CONFIRMED
