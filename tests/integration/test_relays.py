"""Relay failover on the `send` CLI path, through real aiosmtpd sinks on free ports.

[smtp] is relay 1, each `[[smtp.relays]]` the next: a relay that is down or refuses the
login hands the rest of the run to the next one; a recipient's 5xx stays the recipient's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from publisher.app import App
from publisher.cli import cli
from publisher.config import RelaySettings, SmtpSettings, TlsMode, load_settings, relay_chain
from publisher.errors import ConfigError
from publisher.mailer import Mailer
from publisher.store.schema import deliveries
from tests.conftest import SEEDS, _fresh_postgres_database
from tests.smtp_sink import SmtpSink, closed_port, running_sink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
READERS = [f"reader{n}@example.com" for n in range(6)]


def _relay(port: int, **extra: str) -> str:
    lines = ["[[smtp.relays]]", 'host = "127.0.0.1"', f"port = {port}", 'tls = "none"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n" + "\n".join(lines) + "\n"


def _config(tmp_path: Path, url: str, first: SmtpSink, *relays: str, **smtp: object) -> Path:
    """Relay 1 is `first` ([smtp]); `relays` are appended as [[smtp.relays]] tables."""
    path: Path = send_config(tmp_path, url, first, **smtp)
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(relays))
    app = App(load_settings(path, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        for reader in READERS:
            app.add_subscriber(reader, frequency="daily")
    finally:
        app.close()
    return path


def _send(config: Path, **env: str) -> Result:
    runner = CliRunner(env={"PUBLISHER_CONFIG": "", **env})
    return runner.invoke(cli, ["--config", str(config), "send", "--now", NOW.isoformat()])


def _open_rows(config: Path) -> int:
    app = App(load_settings(config, environ={}))
    try:
        with app.store.begin() as connection:
            query = select(func.count()).where(deliveries.c.status.in_(["pending", "sending"]))
            return int(connection.execute(query).scalar_one())
    finally:
        app.close()


@pytest.fixture
def second() -> Iterator[SmtpSink]:
    with running_sink() as sink:
        yield sink


def test_a_relay_that_is_down_hands_every_message_to_the_next_once(
    tmp_path: Path, database_url: str, second: SmtpSink
) -> None:
    """On SQLite, and on PostgreSQL where `send` claims its rows like a worker."""
    down = SmtpSink(port=closed_port())
    config = _config(tmp_path, database_url, down, _relay(second.port))
    result = _send(config)
    assert result.exit_code == 0, result.output
    assert second.per_recipient() == dict.fromkeys(READERS, 1)
    assert f"relay 127.0.0.1:{down.port} unreachable" in result.output
    assert f"sent through 127.0.0.1:{second.port}" in result.output
    # a second send finds nothing left to send: nothing went twice
    assert _send(config).exit_code == 0
    assert second.per_recipient() == dict.fromkeys(READERS, 1)


def test_a_relay_refusing_the_login_hands_over_to_the_next(
    tmp_path: Path, sqlite_url: str, second: SmtpSink
) -> None:
    second.login = ("backup", "s3cret-backup")
    with running_sink(SmtpSink(login=("news", "right"))) as first:
        config = _config(
            tmp_path,
            sqlite_url,
            first,
            _relay(second.port, username='"backup"', password_env='"BACKUP_RELAY_PASSWORD"'),
            username='"news"',
            password='"wrong"',
        )
        result = _send(config, BACKUP_RELAY_PASSWORD="s3cret-backup")
        assert result.exit_code == 0, result.output
        assert ("news", False) in first.logins
        assert not first.messages
    assert second.logins and set(second.logins) == {("backup", True)}
    assert second.per_recipient() == dict.fromkeys(READERS, 1)
    assert f"relay 127.0.0.1:{first.port} unreachable" in result.output
    assert "535" in result.output


def test_a_recipients_550_on_the_first_relay_is_not_a_failover(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink, second: SmtpSink
) -> None:
    refused = READERS[2]
    smtp_sink.reject.add(refused)
    config = _config(tmp_path, sqlite_url, smtp_sink, _relay(second.port))
    result = _send(config)
    assert result.exit_code == 1, result.output  # one recipient failed
    assert smtp_sink.per_recipient() == {r: 1 for r in READERS if r != refused}
    assert smtp_sink.attempts[refused] == 1
    assert second.connections == 0 and not second.messages
    assert "unreachable" not in result.output


def test_every_relay_down_leaves_the_run_open_for_the_next_send(
    tmp_path: Path, sqlite_url: str, second: SmtpSink
) -> None:
    down = SmtpSink(port=closed_port())
    config = _config(tmp_path, sqlite_url, down, _relay(closed_port()), attempts="2")
    result = _send(config)
    assert result.exit_code == 1
    assert "still pending" in result.output
    assert _open_rows(config) == len(READERS)
    # the relays come back (here: the second now points at a live sink): each sent once
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(text[text.index("[[smtp.relays]]") :], _relay(second.port)), "utf-8"
    )
    assert _send(config).exit_code == 0
    assert second.per_recipient() == dict.fromkeys(READERS, 1)


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('port = 2525\ntls = "none"', "smtp.relays[1] has no host"),
        ('host = "b.example.org"\nport = 0', "smtp.relays[1].port must be 1 to 65535"),
        ('host = "b.example.org"\npassword_env = "NOT A NAME"', "is not a variable name"),
        ('host = "b.example.org"\nsmtp_port = 25', "unknown setting 'smtp.relays[1].smtp_port'"),
        ('host = "b.example.org"\npassword = 12345', "must be str, got a secret"),
    ],
)
def test_a_wrong_relay_table_is_refused_at_load(tmp_path: Path, table: str, error: str) -> None:
    path = tmp_path / "publisher.toml"
    path.write_text(f"[[smtp.relays]]\n{table}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={})
    assert error in raised.value.message
    assert "12345" not in raised.value.message


def test_a_relay_password_comes_from_its_variable_and_one_in_the_file_is_noted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "publisher.toml"
    path.write_text(
        '[[smtp.relays]]\nhost = "a.example.org"\npassword_env = "RELAY_A"\n'
        '[[smtp.relays]]\nhost = "b.example.org"\npassword = "in-the-file"\n'
        '[[smtp.relays]]\nhost = "c.example.org"\npassword_env = "RELAY_C"\n',
        encoding="utf-8",
    )
    path.chmod(0o644)
    settings = load_settings(path, environ={"RELAY_A": "from-env"})
    a, b, c = settings.smtp.relays
    assert (a.password, b.password, c.password) == ("from-env", "in-the-file", None)
    notes = " ".join(settings.notices)
    assert "smtp.relays password" in notes and "RELAY_C is unset" in notes
    assert "from-env" not in repr(settings) and "in-the-file" not in repr(settings)
    chain = relay_chain(settings.smtp)
    assert [r.name for r in chain] == [
        "localhost:1025",
        "a.example.org:587",
        "b.example.org:587",
        "c.example.org:587",
    ]
    assert chain[1].password == "from-env" and chain[1].pool_size == settings.smtp.pool_size


def test_a_confirmation_mail_fails_over_too(second: SmtpSink) -> None:
    """One-off mail (confirmation, welcome) opens its session through the same chain."""
    smtp = SmtpSettings(
        host="127.0.0.1",
        port=closed_port(),
        backoff_seconds=0.01,
        relays=(RelaySettings(host="127.0.0.1", port=second.port, tls=TlsMode.NONE),),
    )
    message = b"Subject: confirm\r\nFrom: news@localhost\r\n\r\nconfirm here\r\n"
    asyncio.run(Mailer(smtp).send_one("news@localhost", "new@example.com", message))
    assert second.per_recipient() == {"new@example.com": 1}


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    """Workers exist only on PostgreSQL; skipped when it is down."""
    yield from _fresh_postgres_database(postgres_admin_url)


def test_the_worker_summary_says_which_relay_took_over(
    tmp_path: Path, pg_url: str, second: SmtpSink
) -> None:
    down = SmtpSink(port=closed_port())
    workers = "\n[workers]\npoll_seconds = 0.2\ndeliver_locally = false\n"
    config = _config(tmp_path, pg_url, down, _relay(second.port), workers)
    queued = _send(config)  # fan-out only: the worker sends
    assert queued.exit_code == 0, queued.output
    runner = CliRunner(env={"PUBLISHER_CONFIG": ""})
    result = runner.invoke(cli, ["--config", str(config), "worker", "--exit-when-idle"])
    assert result.exit_code == 0, result.output
    assert second.per_recipient() == dict.fromkeys(READERS, 1)
    assert f"relay 127.0.0.1:{down.port} unreachable" in result.output
    assert f"sent through 127.0.0.1:{second.port}" in result.output
