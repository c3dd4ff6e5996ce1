"""What the sender says about itself: the Date of the hand-off (also for a run resumed a
day later, whose repeat keeps its Message-ID), Feedback-ID and CFBL-Address when set, and
the EHLO name a real aiosmtpd server hears."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher.app import App
from publisher.config import SmtpSettings, ehlo_name, load_settings
from publisher.errors import ConfigError
from publisher.mailer import Mailer
from publisher.store.schema import digest_runs
from tests.conftest import SEEDS
from tests.resumed_send import by_recipient, date_of, kill_mid_send, resume_send
from tests.smtp_sink import Received, SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
LATER = NOW + timedelta(days=1)
PEOPLE = 12
SLACK = timedelta(minutes=10)  # the shifted clock ticks on while the process runs


def test_a_run_resumed_a_day_later_is_dated_when_it_is_handed_over(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    config = send_config(tmp_path, sqlite_url, smtp_sink, pool_size=1)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    for n in range(PEOPLE):
        app.add_subscriber(f"reader{n:02}@example.com", frequency="daily")
    app.close()

    in_flight = kill_mid_send(config, smtp_sink, NOW, after=4)
    before = len(smtp_sink.messages)
    assert 0 < before < PEOPLE
    assert all(NOW <= date_of(m) < NOW + SLACK for m in smtp_sink.messages)

    resume_send(config, LATER)  # the next day's schedule resumes the open run
    copies = by_recipient(smtp_sink)
    assert len(copies) == PEOPLE
    resumed = smtp_sink.messages[before:]
    assert resumed and all(LATER <= date_of(m) < LATER + SLACK for m in resumed)
    # the message in flight at the kill went again: the same Message-ID, today's Date
    old, new = copies[in_flight]
    assert old.message["Message-ID"] == new.message["Message-ID"]
    assert NOW <= date_of(old) < NOW + SLACK and LATER <= date_of(new) < LATER + SLACK


def _one_digest(tmp_path: Path, sqlite_url: str, sink: SmtpSink, **smtp: object) -> Received:
    app = App(load_settings(send_config(tmp_path, sqlite_url, sink, **smtp), environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        app.add_subscriber("ann@example.com")
        assert app.send_digests(now=NOW).sent == 1
    finally:
        app.close()
    [received] = sink.messages
    return received


def test_feedback_id_and_cfbl_address_are_on_every_digest_when_configured(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    (tmp_path / "off").mkdir()
    plain = _one_digest(tmp_path / "off", f"sqlite:///{tmp_path / 'off.db'}", smtp_sink)
    assert plain.message["Feedback-ID"] is None and plain.message["CFBL-Address"] is None
    smtp_sink.messages.clear()
    received = _one_digest(
        tmp_path,
        sqlite_url,
        smtp_sink,
        from_address='"News <news@news.example.org>"',
        feedback_id='"digest:publisher:harbin"',
        cfbl_address='"fbl@news.example.org"',
    )
    message = received.message
    assert message["Feedback-ID"] == "digest:publisher:harbin"
    assert message["CFBL-Address"] == "fbl@news.example.org; report=arf"
    assert len(message.get_all("Date") or []) == 1


def test_ehlo_names_the_from_domain_by_default(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    _one_digest(tmp_path, sqlite_url, smtp_sink, from_address='"News <news@News.Example.org>"')
    assert smtp_sink.helo_names and set(smtp_sink.helo_names) == {"news.example.org"}


def test_ehlo_says_smtp_helo_name_for_digests_and_confirmation_mails(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    config = send_config(
        tmp_path,
        sqlite_url,
        smtp_sink,
        from_address='"News <news@example.org>"',
        helo_name='"mx1.example.org"',
    )
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        app.add_subscriber("ann@example.com")
        assert app.send_digests(now=NOW).sent == 1

        async def subscribe() -> None:
            await app.subscriptions.subscribe("bob@example.com", None, [], "weekly")
            await app.subscriptions.drain()

        asyncio.run(subscribe())
    finally:
        app.close()
    assert sorted(smtp_sink.per_recipient()) == ["ann@example.com", "bob@example.com"]
    assert set(smtp_sink.helo_names) == {"mx1.example.org"}


def test_localhost_is_never_said_to_a_server_elsewhere() -> None:
    local = SmtpSettings()  # news@localhost, to localhost
    assert ehlo_name(local) == "localhost"
    assert ehlo_name(replace(local, host="127.0.0.1")) == "localhost"
    assert ehlo_name(replace(local, host="::1")) == "localhost"
    relay = replace(local, host="smtp.example.net")
    for unfit in (relay, replace(relay, helo_name="localhost"), replace(relay, helo_name="box")):
        with pytest.raises(ConfigError, match="EHLO name") as raised:
            ehlo_name(unfit)
        assert raised.value.hint and "smtp.helo_name" in raised.value.hint
    assert ehlo_name(replace(relay, from_address="N <n@news.example.org>")) == "news.example.org"
    assert ehlo_name(replace(relay, helo_name="mx1.example.org")) == "mx1.example.org"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("helo_name", '"bad name"'),
        ("helo_name", '"x\\r\\nRSET"'),
        ("feedback_id", '"a:b:c:d:e"'),
        ("feedback_id", '"digest publisher"'),
        ("cfbl_address", '"fbl@example.org\\r\\nBcc: x@example.org"'),
        ("cfbl_address", '"not an address"'),
    ],
)
def test_sender_settings_that_would_break_a_header_are_refused_at_load(
    tmp_path: Path, smtp_sink: SmtpSink, key: str, value: str
) -> None:
    config = send_config(tmp_path, "sqlite:///db.sqlite", smtp_sink, **{key: value})
    with pytest.raises(ConfigError, match=rf"smtp\.{key} .* is not"):
        load_settings(config, environ={})


def test_a_sender_that_would_say_localhost_to_a_relay_elsewhere_sends_nothing(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    settings = load_settings(send_config(tmp_path, sqlite_url, smtp_sink), environ={})
    elsewhere = replace(settings.smtp, host="smtp.example.net")
    # refused before any connection is tried: nothing here reaches the network
    with pytest.raises(ConfigError, match="EHLO name"):
        Mailer(elsewhere)
    app = App(replace(settings, smtp=elsewhere))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        app.add_subscriber("ann@example.com")
        with pytest.raises(ConfigError, match="EHLO name"):
            app.send_digests(now=NOW)
        with app.store.read() as connection:
            assert connection.execute(select(digest_runs)).all() == []  # no run was opened
    finally:
        app.close()
