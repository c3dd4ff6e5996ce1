"""Sending digests through a real aiosmtpd sink: who gets what, once; faults; dry run."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.store.schema import deliveries
from tests.conftest import SEEDS
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
TEASER = "Harbin ramps up childcare services"
HARBIN_TODAY = {
    "Digital management helps Harbin compete for National Civilized City Award",
    "Harbin recognized as international image development city",
}


def _make_app(tmp_path: Path, sqlite_url: str, sink: SmtpSink, **smtp: object) -> App:
    path = send_config(tmp_path, sqlite_url, sink, **smtp)
    return App(load_settings(path, environ={}))


@pytest.fixture
def sending(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[App]:
    """Seeds ingested at INGESTED; ann (Harbin Today, weekly), bob (daily), cat (left).

    On SQLite and on PostgreSQL (where `send` claims its rows like a worker)."""
    app = _make_app(tmp_path, database_url, smtp_sink)
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("Ann@Example.com", name="Ann", categories=["Harbin Today"])
    app.add_subscriber("bob@example.com", name="Bob", frequency="daily")
    cat, _ = app.add_subscriber("cat@example.com", name="Cat")
    with app.store.begin() as connection:
        from publisher.store.subscribers import Subscribers

        Subscribers(connection).set_status(cat.id, SubscriberStatus.UNSUBSCRIBED, NOW)
    yield app
    app.close()


def _titles(received: object) -> list[str]:
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    return [line for line in text.splitlines() if line in TITLES]


TITLES = {
    "Harbin regains ‘National Civilized City’ title",
    *HARBIN_TODAY,
    "Harbin to further improve people's livelihoods",
    "Harbin sets up development goals for 2022",
}


def test_the_right_people_get_one_message_each_with_the_right_articles(
    sending: App, smtp_sink: SmtpSink
) -> None:
    report = sending.send_digests(now=NOW)
    assert (report.sent, report.failed) == (2, 0)
    assert smtp_sink.per_recipient() == {"ann@example.com": 1, "bob@example.com": 1}
    [ann] = smtp_sink.to("ann@example.com")
    [bob] = smtp_sink.to("bob@example.com")
    assert set(_titles(ann)) == HARBIN_TODAY
    assert len(_titles(bob)) == 5
    for received in (ann, bob):
        message = received.message
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        for header in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "List-Id",
        ):
            assert message[header], header
        assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8080/unsubscribe/")
        assert "mailto:" in message["List-Unsubscribe"]
        html = message.get_body(("html",)).get_content()
        styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S | re.I)
        assert all(s.strip().startswith("@media") for s in styles)  # the rest is inlined
        body = received.data.decode("ascii")
        assert TEASER not in message.get_body(("plain",)).get_content() and TEASER not in html
        assert "childcare" not in body.lower()
    lead = "Harbin recognized as international image development city"  # printed last
    assert ann.message["Subject"] == f"Harbin News weekly — {lead} (+1 more)"
    assert bob.message["Subject"] == f"Harbin News daily — {lead} (+4 more)"


def test_dry_run_writes_eml_and_sends_nothing_then_real_send_sends_all(
    sending: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    config = sending.settings.config_file
    out = tmp_path / "preview"
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "send", "--dry-run", "--out", str(out), "--now", NOW.isoformat()],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.eml")) == [
        "ann@example.com.eml",
        "bob@example.com.eml",
    ]
    assert "ann@example.com" in (out / "index.html").read_text()
    assert "ann@example.com" in result.output and "recipient" in result.output
    assert smtp_sink.messages == []
    with sending.store.read() as connection:
        assert connection.execute(select(deliveries)).all() == []
    preview = (out / "ann@example.com.eml").read_bytes()
    assert set(_titles(type("R", (), {"message": _msg(preview)})())) == HARBIN_TODAY

    result = CliRunner().invoke(cli, ["--config", str(config), "send", "--now", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert smtp_sink.per_recipient() == {"ann@example.com": 1, "bob@example.com": 1}
    assert "sent" in result.output


def _msg(data: bytes) -> object:
    from email import message_from_bytes, policy

    return message_from_bytes(data, policy=policy.default)


def test_second_send_with_nothing_new_sends_nothing(sending: App, smtp_sink: SmtpSink) -> None:
    assert sending.send_digests(now=NOW).sent == 2
    again = sending.send_digests(now=NOW + timedelta(hours=1))
    assert (again.sent, again.skipped_empty) == (0, 2)
    assert len(smtp_sink.messages) == 2
    # a later article goes out, but never the ones already sent
    later = NOW + timedelta(hours=3)
    sending.ingest([SEEDS / "000_b64ba5016e854707.txt"], now=lambda: later)  # unchanged: no news
    assert sending.send_digests(now=later + timedelta(minutes=1)).sent == 0


def test_a_corrected_republication_is_not_sent_again(
    sending: App, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    assert sending.send_digests(now=NOW).sent == 2
    source = (SEEDS / "004_a6205c5f8add672a.txt").read_text(encoding="utf-8")
    corrected = tmp_path / "004-corrected.txt"
    corrected.write_text(source.replace("unveiled", "presented"), encoding="utf-8")
    report = sending.ingest([corrected], now=lambda: NOW + timedelta(hours=1))
    assert [r.outcome for r in report.results] == ["updated"]
    again = sending.send_digests(now=NOW + timedelta(hours=2))
    assert again.sent == 0 and len(smtp_sink.messages) == 2


def test_451_once_is_retried_and_delivered_once(sending: App, smtp_sink: SmtpSink) -> None:
    smtp_sink.fail_once.add("bob@example.com")
    report = sending.send_digests(now=NOW)
    assert (report.sent, report.failed, report.retried) == (2, 0, 1)
    assert smtp_sink.attempts["bob@example.com"] == 2
    assert smtp_sink.per_recipient() == {"ann@example.com": 1, "bob@example.com": 1}


def test_the_retry_log_line_masks_the_address(
    sending: App, smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    smtp_sink.fail_once.add("bob@example.com")
    caplog.set_level(logging.INFO, logger="publisher.mailer")
    assert sending.send_digests(now=NOW).retried == 1
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == 1 and "b***@example.com #" in retries[0]
    assert "bob@example.com" not in retries[0]


def test_550_marks_failed_others_delivered_and_bounces_after_n(
    sending: App, smtp_sink: SmtpSink
) -> None:
    smtp_sink.reject.add("bob@example.com")
    report = sending.send_digests(now=NOW)
    assert (report.sent, report.failed, report.retried) == (1, 1, 0)
    assert smtp_sink.attempts["bob@example.com"] == 1  # a 5xx is not retried
    assert smtp_sink.per_recipient() == {"ann@example.com": 1}
    with sending.store.read() as connection:
        rows = connection.execute(select(deliveries.c.status, deliveries.c.error)).all()
    assert sorted(r.status for r in rows) == ["failed", "sent"]
    bob = next(s for s in sending.subscribers() if s.email == "bob@example.com")
    assert bob.last_digest is None and bob.hard_failures == 1
    ann = next(s for s in sending.subscribers() if s.email == "ann@example.com")
    assert ann.last_digest == NOW
    # bounce_after (3) hard failures in a row: bounced, no more attempts
    for hours in (1, 2):
        sending.send_digests(now=NOW + timedelta(hours=hours))
    bob = next(s for s in sending.subscribers() if s.email == "bob@example.com")
    assert bob.status is SubscriberStatus.BOUNCED
    sending.send_digests(now=NOW + timedelta(hours=3))
    assert smtp_sink.attempts["bob@example.com"] == 3


@pytest.mark.parametrize(
    "reply",
    [
        "552 5.3.4 Message size exceeds fixed maximum message size",
        "552 Requested mail action aborted: exceeded storage allocation",
        "554 5.3.4 Message too big for system",
        "550 5.2.3 Message length exceeds administrative limit",
    ],
)
def test_a_message_refused_for_its_size_never_counts_toward_a_bounce(
    sending: App, smtp_sink: SmtpSink, reply: str
) -> None:
    smtp_sink.data_reply["bob@example.com"] = reply
    for hours in range(4):  # more refusals than bounce_after (3)
        report = sending.send_digests(now=NOW + timedelta(hours=hours))
        assert report.failed == 1
    bob = next(s for s in sending.subscribers() if s.email == "bob@example.com")
    assert bob.status is SubscriberStatus.CONFIRMED
    assert bob.hard_failures == 0
    with sending.store.read() as connection:
        errors = (
            connection.execute(select(deliveries.c.error).where(deliveries.c.status == "failed"))
            .scalars()
            .all()
        )
    assert len(errors) == 4 and all(reply.split()[0] in e for e in errors)


def test_sink_dropping_connections_after_3_messages_still_sends_each_once(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    smtp_sink.drop_after = 3
    app = _make_app(tmp_path, database_url, smtp_sink, pool_size=2)
    app.ingest([SEEDS], now=lambda: INGESTED)
    for n in range(20):
        app.add_subscriber(f"reader{n}@example.com")
    report = app.send_digests(now=NOW)
    app.close()
    assert (report.sent, report.failed) == (20, 0)
    assert smtp_sink.per_recipient() == {f"reader{n}@example.com": 1 for n in range(20)}
    assert smtp_sink.connections >= 20 // 3


def test_failed_send_exits_1_and_lists_the_failure(sending: App, smtp_sink: SmtpSink) -> None:
    smtp_sink.reject.add("ann@example.com")
    result = CliRunner().invoke(
        cli, ["--config", str(sending.settings.config_file), "send", "--now", NOW.isoformat()]
    )
    assert result.exit_code == 1
    assert "ann@example.com" in result.output and "550" in result.output


def test_no_smtp_server_is_a_clear_error(tmp_path: Path, sqlite_url: str) -> None:
    dead = SmtpSink(port=1)  # nothing listens on port 1
    app = _make_app(tmp_path, sqlite_url, dead, attempts=2)
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("ann@example.com")
    report = app.send_digests(now=NOW)
    app.close()
    # the server's fault is not the row's: it stays open for the next run
    assert (report.sent, report.failed, report.deferred) == (0, 0, 1)
    assert report.unreachable and "cannot reach SMTP server 127.0.0.1:1" in report.unreachable
