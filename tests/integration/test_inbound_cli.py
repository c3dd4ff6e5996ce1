"""`publisher inbound`: a digest really sent through aiosmtpd carries a VERP envelope sender
and a mailto; the bounce, complaint and unsubscribe mail that come back for it, fed to the
real CLI, change the subscriber through the consent API. Unmatched mail is kept.

On a real SQLite file and on PostgreSQL when it is up.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource, SubscriberStatus
from publisher.tokens import Tokens
from tests.conftest import SEEDS, TEST_SECRET_KEY
from tests.smtp_sink import Received, SmtpSink, send_config

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)


@pytest.fixture
def sent(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[App, Path]]:
    """Seeds ingested; ann, bob and cat got a digest with bounces to bounces@..."""
    path = send_config(
        tmp_path,
        database_url,
        smtp_sink,
        from_address='"Harbin News <news@news.example.org>"',
        bounce_address='"bounces@news.example.org"',
    )
    app = App(load_settings(path, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    for name in ("ann", "bob", "cat"):
        app.add_subscriber(f"{name}@example.net", name=name.title())
    report = app.send_digests(now=NOW)
    assert report.sent == 3
    yield app, path
    app.close()


def verp_token(received: Received) -> str:
    match = re.fullmatch(r"bounces\+([0-9a-z.]+)@news\.example\.org", received.mail_from)
    assert match is not None, received.mail_from
    return match[1]


def mailto_token(received: Received) -> str:
    header = str(received.message["List-Unsubscribe"])
    match = re.search(r"<mailto:unsubscribe@news\.example\.org\?subject=([^>]+)>", header)
    assert match is not None, header
    return unquote(match[1]).removeprefix("unsubscribe ")


def fill(name: str, verp: str = "", unsub: str = "", recipient: str = "") -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    text = text.replace("@@VERP@@", verp).replace("@@UNSUB@@", unsub)
    if recipient:
        text = text.replace("ann@example.net", recipient)
    return text.replace("\n", "\r\n").encode("utf-8")


def inbound(path: Path, data: bytes, tmp_path: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--config", str(path), "inbound"], input=data)
    return result.exit_code, result.stdout, result.stderr


def status(app: App, email: str) -> SubscriberStatus:
    [found] = [s for s in app.subscribers() if s.email == email]
    return found.status


def test_every_digest_has_a_verp_sender_naming_its_recipient(
    sent: tuple[App, Path], smtp_sink: SmtpSink
) -> None:
    app, _ = sent
    tokens = Tokens(TEST_SECRET_KEY)
    by_email = {s.email: s.id for s in app.subscribers()}
    for received in smtp_sink.messages:
        claim = tokens.check_bounce(verp_token(received))
        assert claim is not None
        assert claim.subscriber_id == by_email[received.rcpt_tos[0]]
        assert len(received.mail_from.split("@")[0]) <= 64


def test_a_hard_bounce_through_publisher_inbound_suppresses_the_recipient(
    sent: tuple[App, Path], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, path = sent
    [ann] = smtp_sink.to("ann@example.net")
    code, out, err = inbound(path, fill("postfix-hard.eml", verp=verp_token(ann)), tmp_path)
    assert code == 0, err
    assert "bounce -> bounced" in out
    assert status(app, "ann@example.net") is SubscriberStatus.BOUNCED
    [event] = [e for e in app.subscriber_admin.history("ann@example.net") if e.kind == "bounced"]
    assert event.source is ConsentSource.INBOUND and "5.1.1" in event.detail
    assert status(app, "bob@example.net") is SubscriberStatus.CONFIRMED


def test_the_third_soft_bounce_in_a_week_suppresses(
    sent: tuple[App, Path], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, path = sent
    [bob] = smtp_sink.to("bob@example.net")
    expired = fill("postfix-expired.eml", verp=verp_token(bob))
    for _ in range(2):
        assert inbound(path, expired, tmp_path)[0] == 0
        assert status(app, "bob@example.net") is SubscriberStatus.CONFIRMED
    assert inbound(path, expired, tmp_path)[0] == 0
    assert status(app, "bob@example.net") is SubscriberStatus.BOUNCED
    kinds = [e.kind for e in app.subscriber_admin.history("bob@example.net")]
    assert kinds.count(ConsentKind.SOFT_BOUNCED) == 3 and ConsentKind.BOUNCED in kinds


def test_a_complaint_suppresses_as_complained(
    sent: tuple[App, Path], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, path = sent
    [cat] = smtp_sink.to("cat@example.net")
    report = fill("arf-redacted.eml", unsub=mailto_token(cat))
    code, _, err = inbound(path, report, tmp_path)
    assert code == 0, err
    assert status(app, "cat@example.net") is SubscriberStatus.COMPLAINED


def test_a_mailto_unsubscribe_from_stdin_unsubscribes(
    sent: tuple[App, Path], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, path = sent
    [bob] = smtp_sink.to("bob@example.net")
    code, _, err = inbound(path, fill("mailto.eml", unsub=mailto_token(bob)), tmp_path)
    assert code == 0, err
    assert status(app, "bob@example.net") is SubscriberStatus.UNSUBSCRIBED
    [event] = app.subscriber_admin.history("bob@example.net")[-1:]
    assert (event.kind, event.source) == (ConsentKind.UNSUBSCRIBED, ConsentSource.INBOUND)


def test_a_forged_or_foreign_message_is_kept_with_its_reason_and_changes_nothing(
    sent: tuple[App, Path], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, path = sent
    [ann] = smtp_sink.to("ann@example.net")
    forged = fill("postfix-hard.eml", verp=verp_token(ann)[:-4] + "aaaa")
    code, _, err = inbound(path, forged, tmp_path)
    assert code == 1 and "not matched" in err and "does not verify" in err
    kept = sorted((tmp_path / "data" / "inbound" / "unmatched").glob("*.eml"))
    assert [p.read_bytes() for p in kept] == [forged]
    reason = kept[0].with_suffix(".reason").read_text(encoding="utf-8")
    assert "reason: the bounce token does not verify" in reason
    assert status(app, "ann@example.net") is SubscriberStatus.CONFIRMED

    untokened = fill("exim-text.eml").replace(b"dave@example.com", b"ann@example.net")
    code, _, err = inbound(path, untokened, tmp_path)  # could name anyone: not believed
    assert code == 1 and "without our bounce token" in err
    assert status(app, "ann@example.net") is SubscriberStatus.CONFIRMED
    assert len(list((tmp_path / "data" / "inbound" / "unmatched").glob("*.eml"))) == 2


def test_an_oversized_message_is_kept_whole_unread(sent: tuple[App, Path], tmp_path: Path) -> None:
    _, path = sent
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[inbound]\nmax_message_bytes = 2048\n")
    data = b"Subject: big\r\n\r\n" + b"y" * 5000
    code, _, err = inbound(path, data, tmp_path)
    assert code == 1 and "2048-byte limit" in err
    [kept] = (tmp_path / "data" / "inbound" / "unmatched").glob("*.eml")
    assert kept.read_bytes() == data


def test_a_missing_file_is_bad_usage(sent: tuple[App, Path], tmp_path: Path) -> None:
    _, path = sent
    result = CliRunner().invoke(cli, ["--config", str(path), "inbound", str(tmp_path / "nope.eml")])
    assert result.exit_code == 2


def test_without_verp_a_bounce_is_matched_by_the_address_it_reports(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    path = send_config(tmp_path, sqlite_url, smtp_sink)
    app = App(load_settings(path, environ={}))
    try:
        app.add_subscriber("dave@example.com")
        code, out, err = inbound(path, fill("exim-text.eml"), tmp_path)
        assert code == 0, err
        assert "bounce -> bounced" in out
        assert status(app, "dave@example.com") is SubscriberStatus.BOUNCED
    finally:
        app.close()


def test_a_message_that_cannot_be_kept_exits_75_so_the_mta_retries(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    path = send_config(tmp_path, sqlite_url, smtp_sink)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the data folder should be", encoding="utf-8")
    with path.open("r+", encoding="utf-8") as out:
        text = out.read()
        out.seek(0)
        out.write(f'data_dir = "{blocked}"\n' + text)
    code, _, err = inbound(path, fill("vacation.eml"), tmp_path)
    assert code == 75
    assert err.startswith("error: message not stored, try again later")


def test_with_the_mailto_off_a_digest_offers_only_the_one_click_url(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    path = send_config(tmp_path, sqlite_url, smtp_sink)
    with path.open("a", encoding="utf-8") as out:
        out.write('\n[digest]\nunsubscribe_mailto = "off"\n')
    app = App(load_settings(path, environ={}))
    try:
        app.ingest([SEEDS], now=lambda: INGESTED)
        app.add_subscriber("ann@example.net")
        assert app.send_digests(now=NOW).sent == 1
    finally:
        app.close()
    [digest] = smtp_sink.messages
    header = str(digest.message["List-Unsubscribe"])
    assert header.startswith("<http://127.0.0.1:8080/unsubscribe/") and header.endswith(">")
    assert "mailto:" not in header and "," not in header
    assert digest.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
