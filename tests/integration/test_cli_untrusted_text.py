"""Text from outside (titles, names, file names, SMTP replies) printed by the real CLI:
rich markup in it is shown, not parsed; control characters are escapes, never raw."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from click.testing import CliRunner, Result

from publisher import console
from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.console import setup_logging
from tests.conftest import write_config
from tests.smtp_sink import SmtpSink, send_config

# the parser drops C0 controls from the text; C1 (\x9b is CSI, the 8-bit ESC [) stays
ESC_TITLE = "Markup [/] and [bold]tags[/bold] \x9b2J title"
ARTICLE = """Home>City news

{title}

Updated : 2020-09-01

By ( e.my399.com )

The city opened a new park on Tuesday, with a lake and two playgrounds for children.
"""


@pytest.fixture(autouse=True)
def wide_tables() -> Iterator[None]:
    """Tables as wide as their cells, so a value is found whole in the output."""
    saved = console.out._width
    console.out.width = 400
    yield
    console.out._width = saved


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _no_raw_controls(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b\r"), repr(text)
    assert "Traceback" not in text


def test_articles_list_shows_a_title_with_markup_and_escape_sequences_as_text(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(tmp_path, sqlite_url)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "park.txt").write_text(ARTICLE.format(title=ESC_TITLE), "utf-8")
    assert _run(config, "ingest").exit_code == 0

    listed = _run(config, "articles", "list")
    assert listed.exit_code == 0, listed.output
    _no_raw_controls(listed.output)
    assert "[/]" in listed.output and "[bold]tags[/bold]" in listed.output
    assert "\\x9b2J" in listed.output  # the sequence is visible, and inert
    shown = _run(
        config,
        "articles",
        "show",
        json.loads(_run(config, "articles", "list", "--json").stdout)[0]["id"],
    )
    assert shown.exit_code == 0, shown.output
    _no_raw_controls(shown.output)
    assert "Markup [/] and" in shown.output


def test_ingest_output_escapes_a_file_name_with_escape_sequences_and_newlines(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(tmp_path, sqlite_url)
    (tmp_path / "inbox").mkdir()
    name = "evil\x1b[2J\nforged [bold] line.txt"
    (tmp_path / "inbox" / name).write_bytes(b"not an article")  # quarantined: listed by name

    result = _run(config, "ingest")
    assert result.exit_code == 1, result.output  # one file quarantined
    _no_raw_controls(result.output)
    assert "evil\\x1b[2J\\nforged [bold] line.txt" in result.output


def test_subscribers_list_shows_a_name_with_markup(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, sqlite_url)
    app = App(load_settings(config, environ={}))
    try:
        app.add_subscriber(
            "ann@example.org", name="[/] Ann [link=http://x]", categories=["[/]"], force=True
        )
    finally:
        app.close()
    listed = _run(config, "subscribers", "list")
    assert listed.exit_code == 0, listed.output
    assert "[/] Ann [link=http://x]" in listed.output
    _no_raw_controls(listed.output)


def test_send_prints_an_smtp_reply_with_markup_and_exits_one(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse_with_markup(
        server: SMTPServer, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        return "550 5.1.1 [/] user unknown \x1b[2J"

    monkeypatch.setattr(smtp_sink, "handle_RCPT", refuse_with_markup)
    config = send_config(tmp_path, sqlite_url, smtp_sink, attempts=1)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "park.txt").write_text(ARTICLE.format(title="Park"), "utf-8")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        app.add_subscriber("ann@example.org")
    finally:
        app.close()

    result = _run(config, "send")
    assert result.exit_code == 1, result.output  # a message failed: reported, not a crash
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "[/] user unknown" in result.output
    _no_raw_controls(result.output)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_log_record_with_a_newline_and_an_escape_sequence_is_one_visible_line(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(logging.INFO, as_json)
    try:
        logging.getLogger("publisher.ingest").warning(
            "quarantined %s: %s", "a.txt\n2026-12-01T00:00:00 INFO publisher: forged", "\x1b[2J"
        )
        logged = capsys.readouterr().err
    finally:
        logging.getLogger("publisher").handlers.clear()
    assert logged.count("\n") == 1 and "\x1b" not in logged
    message = json.loads(logged)["message"] if as_json else logged
    assert "a.txt\\n2026-12-01T00:00:00 INFO publisher: forged: \\x1b[2J" in message
