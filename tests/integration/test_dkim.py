"""DKIM: every digest and confirmation mail a real send hands to an aiosmtpd sink verifies
with dkimpy's verifier, which looks the public key up through the real resolver path at a
dnslib server on 127.0.0.1 — RSA-2048, Ed25519 (RFC 8463) and both at once; a body changed
after signing fails; a run resumed a day later is signed afresh over its new Date."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.app import App
from publisher.config import DoctorSettings, load_settings
from publisher.resolver import Resolver
from publisher.signing import load_key, public_record
from tests.conftest import SEEDS, with_categories
from tests.dns_server import LocalDns
from tests.integration.test_web import served
from tests.resumed_send import by_recipient, date_of, kill_mid_send, resume_send
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
LATER = NOW + timedelta(days=1)
DOMAIN = "news.example.org"
FROM = f'"Harbin News <editor@{DOMAIN}>"'


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {
        "rsa": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed25519": _pem(ed25519.Ed25519PrivateKey.generate()),
    }


def dkim_config(
    folder: Path,
    database_url: str,
    sink: SmtpSink,
    zone: LocalDns,
    keys: dict[str, str],
    kinds: tuple[str, ...],
    **smtp: object,
) -> Path:
    """A send config signing with `kinds` of key; the zone publishes their public keys."""
    path = send_config(folder, database_url, sink, from_address=FROM, **smtp)
    lines = ["[dkim]", 'selector = "mail"']
    if "rsa" in kinds:
        (folder / "dkim.pem").write_text(keys["rsa"], encoding="utf-8")
        lines.append('private_key_file = "dkim.pem"')
        zone.add(
            f"mail._domainkey.{DOMAIN}", "TXT", public_record(load_key(keys["rsa"], "mail", ""))
        )
    if "ed25519" in kinds:
        (folder / "dkim-ed.pem").write_text(keys["ed25519"], encoding="utf-8")
        lines.append('ed25519_key_file = "dkim-ed.pem"')
        record = public_record(load_key(keys["ed25519"], "mail-ed25519", ""))
        zone.add(f"mail-ed25519._domainkey.{DOMAIN}", "TXT", record)
    lines += ["[doctor]", 'nameservers = "127.0.0.1"', f"port = {zone.port}"]
    with path.open("a", encoding="utf-8") as out:
        out.write("\n" + "\n".join(lines) + "\n")
    return path


def _signatures(data: bytes) -> int:
    return len(re.findall(rb"(?mi)^DKIM-Signature:", data.split(b"\r\n\r\n", 1)[0]))


def verifies(data: bytes, zone: LocalDns) -> list[bool]:
    """One result per DKIM-Signature, each looked up through the resolver at `zone`."""
    resolver = Resolver(DoctorSettings(nameservers="127.0.0.1", port=zone.port))
    checker = dkim.DKIM(data)
    results = []
    for index in range(_signatures(data)):
        try:
            results.append(bool(checker.verify(idx=index, dnsfunc=resolver.dkim_txt)))
        except dkim.DKIMException:
            results.append(False)
    return results


def _domains(data: bytes) -> set[str]:
    head = data.split(b"\r\n\r\n", 1)[0]
    return {m.decode() for m in re.findall(rb"[;\s]d=([^;\s]+)", head)}


KINDS = [("rsa",), ("ed25519",), ("rsa", "ed25519")]


@pytest.mark.parametrize("kinds", KINDS, ids=["rsa", "ed25519", "both"])
def test_every_digest_verifies_against_the_published_key_and_a_changed_body_fails(
    tmp_path: Path,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    local_dns: LocalDns,
    keys: dict[str, str],
    kinds: tuple[str, ...],
) -> None:
    config = dkim_config(tmp_path, sqlite_url, smtp_sink, local_dns, keys, kinds)
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    for n in range(5):
        app.add_subscriber(f"reader{n}@example.com", frequency="daily")
    report = app.send_digests(now=NOW)
    app.close()
    assert (report.sent, report.failed) == (5, 0)
    assert len(smtp_sink.messages) == 5
    for received in smtp_sink.messages:
        assert verifies(received.data, local_dns) == [True] * len(kinds)
        assert _domains(received.data) == {DOMAIN}  # d= is the From domain: aligned
        head = (
            received.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        )
        for name in (
            b"from",
            b"to",
            b"subject",
            b"date",
            b"message-id",
            b"list-unsubscribe",
            b"list-unsubscribe-post",
            b"list-id",
            b"mime-version",
            b"content-type",
        ):
            assert re.search(rb"h=[^;]*\b" + name + rb"\b", head), name
        body_at = received.data.index(b"\r\n\r\n")
        changed = received.data[:body_at] + received.data[body_at:].replace(b"Harbin", b"Harbln", 1)
        assert changed != received.data
        assert verifies(changed, local_dns) == [False] * len(kinds)
    assert any("TXT mail" in asked for asked in local_dns.asked)


@pytest.mark.parametrize("kinds", KINDS, ids=["rsa", "ed25519", "both"])
def test_the_confirmation_mail_verifies(
    tmp_path: Path,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    local_dns: LocalDns,
    keys: dict[str, str],
    kinds: tuple[str, ...],
) -> None:
    config = dkim_config(tmp_path, sqlite_url, smtp_sink, local_dns, keys, kinds)
    config = with_categories(config, "Harbin Today")
    app = App(load_settings(config, environ={}))
    try:
        for running in served(app, app.web_routes()):
            answer = httpx.post(
                running.url + "subscribe", data={"email": "new@example.com"}, timeout=10
            )
            assert answer.status_code == 200
            running.run(app.subscriptions.drain())
    finally:
        app.close()
    smtp_sink.wait_for(1)
    [mail] = smtp_sink.messages
    assert "/confirm/" in mail.message.get_body(("plain",)).get_content()
    assert verifies(mail.data, local_dns) == [True] * len(kinds)


def test_a_resumed_run_is_signed_afresh_over_its_new_date(
    tmp_path: Path,
    sqlite_url: str,
    smtp_sink: SmtpSink,
    local_dns: LocalDns,
    keys: dict[str, str],
) -> None:
    config = dkim_config(
        tmp_path, sqlite_url, smtp_sink, local_dns, keys, ("rsa", "ed25519"), pool_size=1
    )
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    for n in range(8):
        app.add_subscriber(f"reader{n}@example.com", frequency="daily")
    app.close()
    in_flight = kill_mid_send(config, smtp_sink, NOW, after=3)
    resume_send(config, LATER)
    old, new = by_recipient(smtp_sink)[in_flight]
    assert old.message["Message-ID"] == new.message["Message-ID"]
    assert date_of(old) < LATER <= date_of(new)
    for received in smtp_sink.messages:
        assert verifies(received.data, local_dns) == [True, True]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('selector = "mail\\r\\nBcc: all@example.com"', "dkim.selector 'mail\\r\\nBcc"),
        ('selector = "mail"\ndomain = "news example.org"', "dkim.domain 'news example.org'"),
        ('private_key_file = "dkim.pem"', "dkim.selector is unset but a DKIM key is given"),
    ],
)
def test_a_bad_dkim_setting_is_one_line_and_exit_2(
    tmp_path: Path, sqlite_url: str, keys: dict[str, str], setting: str, message: str
) -> None:
    from click.testing import CliRunner

    from publisher.cli import cli
    from tests.conftest import write_config

    (tmp_path / "dkim.pem").write_text(keys["rsa"], encoding="utf-8")
    config = write_config(tmp_path, sqlite_url)
    with config.open("a", encoding="utf-8") as out:
        out.write(f"[dkim]\n{setting}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "send", "--dry-run"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert message in line, line
