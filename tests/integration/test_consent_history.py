"""Consent proof (issue 15, cases 2 and 9): every path records its consent event with time,
source and, for the web, the client address; `subscribers history` shows them, also after
`remove`; `add` changes only what it is given. Real HTTP server, real aiosmtpd sink, the
real CLI; on SQLite and on PostgreSQL (database_url)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource, Subscriber, SubscriberStatus
from tests.conftest import with_categories
from tests.integration.test_web import Served, served
from tests.smtp_sink import SmtpSink, send_config


@pytest.fixture
def config_file(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Path:
    return with_categories(
        send_config(tmp_path, database_url, smtp_sink, attempts=1), "Harbin Today", "Sports"
    )


@pytest.fixture
def app(config_file: Path) -> Iterator[App]:
    application = App(load_settings(config_file, environ={}))
    yield application
    application.close()


@pytest.fixture
def running(app: App) -> Iterator[Served]:
    yield from served(app, app.web_routes())


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _who(app: App, email: str) -> Subscriber:
    found = next(s for s in app.subscribers() if s.email == email)
    return found


def _wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _history(config: Path, email: str) -> list[dict[str, str | None]]:
    result = _run(config, "subscribers", "history", email, "--json")
    assert result.exit_code == 0, result.output
    events: list[dict[str, str | None]] = json.loads(result.stdout)
    return events


def test_history_after_web_subscribe_confirm_unsubscribe_then_remove_and_add_refused(
    config_file: Path,
    app: App,
    running: Served,
    smtp_sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="publisher.consent")
    url = running.url
    answer = httpx.post(
        url + "subscribe",
        data={"email": "Reader@Example.com", "categories": "harbin TODAY"},
        timeout=10,
    )
    assert answer.status_code == 200
    _wait_until(lambda: len(smtp_sink.messages) == 1)
    running.run(app.subscriptions.drain())
    assert _who(app, "reader@example.com").categories == ("Harbin Today",)  # the site's spelling
    text = smtp_sink.messages[0].message.get_body(("plain",)).get_content()
    [link] = re.findall(r"https?://\S+/confirm/\S+", text)
    confirmed = httpx.post(url + "confirm/" + link.rsplit("/confirm/", 1)[1], timeout=10)
    assert confirmed.status_code == 200
    token = app.subscriptions.tokens.make(
        "unsubscribe", _who(app, "reader@example.com").id, "reader@example.com"
    )
    left = httpx.post(
        url + f"unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}, timeout=10
    )
    assert left.status_code == 200
    assert _who(app, "reader@example.com").status is SubscriberStatus.UNSUBSCRIBED

    removed = _run(config_file, "subscribers", "remove", "reader@example.com")
    assert removed.exit_code == 0, removed.output
    again = _run(config_file, "subscribers", "add", "reader@example.com")
    assert again.exit_code == 1
    assert again.stderr.startswith("error: reader@example.com is unsubscribed")

    events = _history(config_file, "READER@example.com")
    shown = [(e["kind"], e["source"], e["client"]) for e in events]
    assert shown == [
        ("subscribed", "web", "127.0.0.1"),
        ("confirmation_sent", "web", None),
        ("confirmed", "web", "127.0.0.1"),
        ("unsubscribed", "web", "127.0.0.1"),
        ("removed", "cli", None),
        ("suppressed", "cli", None),
    ]
    assert "categories: Harbin Today" in str(events[0]["detail"])
    times = [str(e["at"]) for e in events]
    assert times == sorted(times) and all(t.endswith("+08:00") for t in times)  # site zone
    # one log line for each web event (the CLI prints its own line), never the address in full
    lines = [r.getMessage() for r in caplog.records if r.name == "publisher.consent"]
    assert [line.split()[1] for line in lines] == [k for k, _, _ in shown[:4]]
    assert all("r***@example.com #" in line for line in lines)
    assert not any("reader@example.com" in line for line in lines)

    table = _run(config_file, "subscribers", "history", "reader@example.com")
    assert table.exit_code == 0 and "confirmation_sent" in table.stdout


def test_history_of_a_removed_subscriber_is_still_found_by_the_address(
    config_file: Path, app: App
) -> None:
    assert _run(config_file, "subscribers", "add", "bob@example.com").exit_code == 0
    assert _run(config_file, "subscribers", "remove", "bob@example.com").exit_code == 0
    assert all(s.email != "bob@example.com" for s in app.subscribers())  # the row is gone
    events = _history(config_file, "bob@example.com")
    assert [(e["kind"], e["source"]) for e in events] == [("subscribed", "cli"), ("removed", "cli")]
    # no such address: exit 1, one line
    unknown = _run(config_file, "subscribers", "history", "nobody@example.com")
    assert unknown.exit_code == 1
    assert unknown.stderr.strip().count("\n") == 0 and "nobody@example.com" in unknown.stderr


def test_history_shows_hostile_text_escaped(config_file: Path, app: App) -> None:
    app.add_subscriber("eve@example.com")
    app.subscriber_admin.suppress(
        "eve@example.com",
        ConsentKind.COMPLAINED,
        source=ConsentSource.INBOUND,
        detail="ARF from \x1b]0;owned\x07 \u202eevil",
    )
    table = _run(config_file, "subscribers", "history", "eve@example.com")
    assert table.exit_code == 0
    assert "\x1b" not in table.stdout and "\u202e" not in table.stdout
    assert "\\x1b" in table.stdout
    raw = _run(config_file, "subscribers", "history", "eve@example.com", "--json")
    assert "\x1b" not in raw.stdout and json.loads(raw.stdout)[-1]["detail"].startswith("ARF")


def test_add_changes_only_the_fields_it_is_given(config_file: Path, app: App) -> None:
    """Case 2: adding Ann again reset her name and categories."""
    first = _run(
        config_file,
        "subscribers",
        "add",
        "ann@example.com",
        "--name",
        "Ann Lee",
        "--category",
        "Harbin Today",
        "--frequency",
        "daily",
    )
    assert first.exit_code == 0, first.output
    again = _run(config_file, "subscribers", "add", "ann@example.com")
    assert again.exit_code == 0, again.output
    ann = _who(app, "ann@example.com")
    assert (ann.name, ann.categories, ann.frequency.value) == (
        "Ann Lee",
        ("Harbin Today",),
        "daily",
    )
    weekly = _run(config_file, "subscribers", "add", "ann@example.com", "--frequency", "weekly")
    assert weekly.exit_code == 0, weekly.output
    ann = _who(app, "ann@example.com")
    assert (ann.name, ann.categories, ann.frequency.value) == (
        "Ann Lee",
        ("Harbin Today",),
        "weekly",
    )
    kinds = [(e["kind"], e["detail"]) for e in _history(config_file, "ann@example.com")]
    assert kinds[-1] == ("preferences_changed", "frequency: daily -> weekly")
    assert [k for k, _ in kinds] == ["subscribed", "preferences_changed"]  # the no-op added none

    # Ann unsubscribes: add refuses, and keeps her name and choices
    app.subscriber_admin.suppress(
        "ann@example.com", ConsentKind.UNSUBSCRIBED, source=ConsentSource.WEB, detail="link"
    )
    refused = _run(config_file, "subscribers", "add", "ann@example.com", "--name", "X")
    assert refused.exit_code == 1
    ann = _who(app, "ann@example.com")
    assert (ann.status, ann.name, ann.categories) == (
        SubscriberStatus.UNSUBSCRIBED,
        "Ann Lee",
        ("Harbin Today",),
    )
    forced = _run(config_file, "subscribers", "add", "ann@example.com", "--force")
    assert forced.exit_code == 0, forced.output
    assert _who(app, "ann@example.com").status is SubscriberStatus.CONFIRMED
    assert [e["kind"] for e in _history(config_file, "ann@example.com")][-3:] == [
        "unsubscribed",
        "suppressed",
        "forced",
    ]


def test_import_records_each_row_and_a_refusal(config_file: Path, app: App, tmp_path: Path) -> None:
    app.add_subscriber("old@example.com")
    app.subscriber_admin.suppress(
        "old@example.com", ConsentKind.BOUNCED, source=ConsentSource.SEND, detail="550"
    )
    people = tmp_path / "people.csv"
    people.write_text(
        "email,categories,status\nnew@example.com,sports,pending\nold@example.com,,confirmed\n",
        encoding="utf-8",
    )
    result = _run(config_file, "subscribers", "import", str(people))
    assert result.exit_code == 1
    new = _history(config_file, "new@example.com")
    assert [(e["kind"], e["source"]) for e in new] == [("subscribed", "import")]
    assert str(new[0]["detail"]).startswith("people.csv:2: imported as pending; categories: Sports")
    old = _history(config_file, "old@example.com")
    assert (old[-1]["kind"], old[-1]["source"]) == ("suppressed", "import")
    assert _who(app, "old@example.com").status is SubscriberStatus.BOUNCED


def test_a_hard_5xx_at_send_is_in_the_history(
    config_file: Path, app: App, smtp_sink: SmtpSink
) -> None:
    from tests.conftest import SEEDS

    app.ingest([SEEDS])
    app.add_subscriber("gone@example.com")
    smtp_sink.reject.add("gone@example.com")
    assert app.send_digests().failed == 1
    [bounce] = [e for e in _history(config_file, "gone@example.com") if e["kind"] == "bounced"]
    assert bounce["source"] == "send"
    assert str(bounce["detail"]).startswith("hard failure 1 of 3: ")
    assert "550" in str(bounce["detail"])


def test_a_fresh_checkout_hashes_with_the_key_it_writes_first(tmp_path: Path) -> None:
    """No secret key yet: `subscribers add` writes the key file (as `send` does), so a
    suppression kept by `remove` is still matched after `run` would have made the key."""
    config = tmp_path / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "p.db"}"\nsecret_key_file = "data/key"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    assert _run(config, "subscribers", "add", "ann@example.com").exit_code == 0
    assert (tmp_path / "data" / "key").is_file()
    app = App(load_settings(config, environ={}))
    try:
        app.subscriber_admin.suppress(
            "ann@example.com", ConsentKind.COMPLAINED, source=ConsentSource.INBOUND, detail="ARF"
        )
    finally:
        app.close()
    assert _run(config, "subscribers", "remove", "ann@example.com").exit_code == 0
    refused = _run(config, "subscribers", "add", "ann@example.com")
    assert refused.exit_code == 1 and "complained" in refused.stderr
    kinds = [e["kind"] for e in _history(config, "ann@example.com")]
    assert kinds == ["subscribed", "complained", "removed", "suppressed"]
