"""`publisher doctor` against a real dnslib server on 127.0.0.1: a correct zone passes;
each broken zone fails with the fix that repairs it; `send` refuses a real send while a
check fails (unless --skip-doctor), and a sample-style config fails on its localhost
values and its seeds."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP as SMTPServer
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.signing import load_key, public_record
from tests.conftest import SEEDS, TEST_SECRET_KEY
from tests.dns_server import LocalDns
from tests.integration.test_faults_smtp import Server
from tests.smtp_sink import SmtpSink, closed_port

DOMAIN = "news.harbin-daily.net"
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


@pytest.fixture(scope="module")
def pems() -> tuple[str, str]:
    return _rsa_pem(), _rsa_pem()  # ours, and someone else's


def production_config(
    folder: Path, sink: Any, zone: LocalDns, pem: str, *smtp: str, **top: str
) -> Path:
    (folder / "dkim.pem").write_text(pem, encoding="utf-8")
    (folder / "dkim.pem").chmod(0o600)
    settings = {
        "database_url": f'"sqlite:///{folder / "publisher.db"}"',
        "inbox": '"inbox"',
        "output_dir": '"public"',
        "base_url": f'"https://{DOMAIN}/"',
        "secret_key": f'"{TEST_SECRET_KEY}"',
        **top,
    }
    dkim_domain = settings.pop("dkim_domain", f'"{DOMAIN}"')
    lines = [f"{k} = {v}" for k, v in settings.items()]
    lines += [
        "[digest]",
        f'list_id = "digest.{DOMAIN}"',
        "[smtp]",
        'host = "127.0.0.1"',
        f"port = {sink.port}",
        f'from_address = "Harbin Daily <editor@{DOMAIN}>"',
        "backoff_seconds = 0.01",
        *smtp,
        "[dkim]",
        'selector = "mail"',
        f"domain = {dkim_domain}",
        'private_key_file = "dkim.pem"',
        "[doctor]",
        'nameservers = "127.0.0.1"',
        f"port = {zone.port}",
        "timeout_seconds = 5",
    ]
    path = folder / "publisher.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def good_zone(
    zone: LocalDns, pem: str, domain: str = DOMAIN, *, dmarc_at: str | None = None
) -> None:
    """SPF, DKIM and DMARC for `domain` (DMARC at `dmarc_at`, its organizational domain)."""
    zone.add(domain, "TXT", "v=spf1 ip4:192.0.2.10 -all")
    zone.add(f"mail._domainkey.{domain}", "TXT", public_record(load_key(pem, "mail", "")))
    zone.add(
        f"_dmarc.{dmarc_at or domain}", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@" + domain
    )


def _doctor(config: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), "doctor", *extra])
    return result.exit_code, result.output


def test_a_correct_zone_passes(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    good_zone(local_dns, pems[0])
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])
    code, output = _doctor(config)
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines and all(line.startswith(("pass", "warn")) for line in lines), output
    assert f"pass  dkim mail._domainkey.{DOMAIN}: the DKIM record" in output
    # the public one-click POST cannot be tried offline: a warning, not a failure
    assert f"warn  one-click: not checked: {DOMAIN} has no address in DNS" in output
    code, output = _doctor(config, "--json")
    assert code == 0
    checks = json.loads(output)
    assert {c["status"] for c in checks} <= {"pass", "warn"}
    names = {c["name"] for c in checks}
    assert {f"spf {DOMAIN}", f"dkim mail._domainkey.{DOMAIN}", "dmarc", "alignment dkim"} <= names
    assert any(asked == f"TXT _dmarc.{DOMAIN}" for asked in local_dns.asked)


def _drop(zone: LocalDns, name: str) -> None:
    zone.records.pop((name, "TXT"), None)


BROKEN: dict[str, tuple[Callable[[LocalDns, str], None], str, str]] = {
    "no SPF": (
        lambda z, other: _drop(z, DOMAIN),
        f"spf {DOMAIN}: no SPF record at {DOMAIN}",
        f"add TXT `v=spf1 include:<your relay's SPF domain> ~all` at {DOMAIN}",
    ),
    "two SPF": (
        lambda z, other: z.add(DOMAIN, "TXT", "v=spf1 include:_spf.relay.net ~all"),
        f"spf {DOMAIN}: 2 SPF records at {DOMAIN}",
        f"merge them into one TXT `v=spf1 … ~all` at {DOMAIN}",
    ),
    "+all": (
        lambda z, other: z.records.update({(DOMAIN, "TXT"): ["v=spf1 ip4:192.0.2.10 +all"]}),
        f"spf {DOMAIN}: SPF at {DOMAIN} ends in +all",
        f"end the TXT record at {DOMAIN} with ~all or -all",
    ),
    "wrong DKIM key": (
        lambda z, other: z.records.update(
            {(f"mail._domainkey.{DOMAIN}", "TXT"): [public_record(load_key(other, "mail", ""))]}
        ),
        f"the DKIM record at mail._domainkey.{DOMAIN} does not match our private key",
        "replace it with TXT `v=DKIM1; k=rsa; p=",
    ),
    "no DMARC": (
        lambda z, other: _drop(z, f"_dmarc.{DOMAIN}"),
        f"dmarc: no DMARC record at _dmarc.{DOMAIN}",
        f"add TXT `v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}` at _dmarc.{DOMAIN}",
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_each_broken_zone_fails_with_its_fix(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    local_dns: LocalDns,
    pems: tuple[str, str],
    broken: str,
) -> None:
    good_zone(local_dns, pems[0])
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])
    assert _doctor(config)[0] == 0
    breaking, message, fix = BROKEN[broken]
    breaking(local_dns, pems[1])
    code, output = _doctor(config)
    assert code == 1, output
    [line] = [line for line in output.splitlines() if message in line]
    assert line.startswith("fail") and f"fix: {fix}" in line, output
    assert sum(line.startswith("fail") for line in output.splitlines()) == 1, output


def test_a_from_domain_not_aligned_with_the_dkim_domain_fails(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    good_zone(local_dns, pems[0])
    other = "mailer-relay.org"  # a relay's own domain signs: DKIM passes, DMARC does not
    local_dns.add(f"mail._domainkey.{other}", "TXT", public_record(load_key(pems[0], "mail", "")))
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0], dkim_domain=f'"{other}"')
    code, output = _doctor(config)
    assert code == 1, output
    [line] = [line for line in output.splitlines() if "alignment dkim" in line]
    assert line.startswith("fail"), output
    assert f"From domain {DOMAIN} is not aligned with DKIM d={other}" in line
    assert f'fix: set dkim.domain = "{DOMAIN}"' in line


def test_send_refuses_while_a_check_fails(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    good_zone(local_dns, pems[0])
    _drop(local_dns, f"_dmarc.{DOMAIN}")
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("reader@example.com", frequency="daily")
    app.close()
    send = ["--config", str(config), "send", "--now", NOW.isoformat()]
    refused = CliRunner().invoke(cli, send)
    assert refused.exit_code == 1, refused.output
    assert "not sending: `publisher doctor` has 1 failing check(s)" in refused.output
    assert "--skip-doctor" in refused.output
    assert smtp_sink.messages == []
    # fixed zone: the same command sends
    local_dns.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=reject")
    sent = CliRunner().invoke(cli, send)
    assert sent.exit_code == 0, sent.output
    assert smtp_sink.per_recipient() == {"reader@example.com": 1}


def test_skip_doctor_sends_anyway(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])  # empty zone
    app = App(load_settings(config, environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("reader@example.com", frequency="daily")
    app.close()
    result = CliRunner().invoke(
        cli, ["--config", str(config), "send", "--skip-doctor", "--now", NOW.isoformat()]
    )
    assert result.exit_code == 0, result.output
    assert smtp_sink.per_recipient() == {"reader@example.com": 1}


def test_a_sample_style_config_fails_on_localhost_values_and_seeds(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    config = production_config(
        tmp_path,
        smtp_sink,
        local_dns,
        pems[0],
        seeds_dir=f'"{SEEDS}"',
        base_url='"http://127.0.0.1:8080/"',
    )
    text = config.read_text(encoding="utf-8").replace(DOMAIN, "localhost")
    config.write_text(text, encoding="utf-8")
    code, output = _doctor(config)
    assert code == 1
    placeholders = next(line for line in output.splitlines() if "placeholders:" in line)
    assert placeholders.startswith("fail")
    assert "smtp.from_address is 'localhost'" in placeholders
    assert "base_url is '127.0.0.1'" in placeholders
    assert "digest.list_id is 'digest.localhost'" in placeholders
    assert any(line.startswith("fail  seeds: seeds_dir is set") for line in output.splitlines())
    assert any(line.startswith("fail  https:") for line in output.splitlines())


def test_the_relay_must_offer_tls_with_a_certificate_that_verifies(
    tmp_path: Path, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_log = logging.getLogger("mail.log")
    level, server_log.level = server_log.level, logging.CRITICAL  # the refused handshake
    relay = Server(
        lambda sink: SMTPServer(
            sink, hostname="relay.test", tls_context=context, require_starttls=True
        )
    )
    good_zone(local_dns, pems[0])
    try:
        untrusted = production_config(tmp_path, relay, local_dns, pems[0], 'tls = "starttls"')
        code, output = _doctor(untrusted)
        assert code == 1, output
        [line] = [line for line in output.splitlines() if " tls: " in line]
        assert line.startswith("fail  tls: cannot open a verified starttls session"), output
        assert "fix: check smtp.host, smtp.port, smtp.tls and smtp.ca_file" in line
        trusted = production_config(
            tmp_path, relay, local_dns, pems[0], 'tls = "starttls"', f'ca_file = "{ca_file}"'
        )
        code, output = _doctor(trusted)
        assert code == 0, output
        assert "pass  tls: starttls to 127.0.0.1" in output
    finally:
        relay.stop()
        server_log.setLevel(level)


def test_a_dkim_key_is_never_printed(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    good_zone(local_dns, pems[0])
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])
    # a key the environment holds that is no key: the error names the setting, not the value
    broken = pems[1].replace("A", "!", 3)
    result = CliRunner().invoke(
        cli, ["--config", str(config), "doctor"], env={"PUBLISHER_DKIM_PRIVATE_KEY": broken}
    )
    assert result.exit_code == 1, result.output
    assert "fail  dkim key: dkim.private_key is not a PEM private key" in result.output
    lines = [line for line in broken.splitlines() if not line.startswith("-")]
    assert not any(line in result.output for line in lines)
    settings = load_settings(config, environ={"PUBLISHER_DKIM_PRIVATE_KEY": broken})
    assert broken not in repr(settings) and lines[1] not in repr(settings)
    from publisher.secrecy import redact, secret_values

    assert redact(f"oops: {lines[2]}", secret_values(settings)) == "oops: ***"


def _lines(output: str, name: str) -> list[str]:
    """The output lines of the check called `name` ("fail  dmarc: ...")."""
    return [line for line in output.splitlines() if line[6:].startswith(f"{name}: ")]


def test_alignment_takes_the_organizational_domain_from_the_public_suffix_list(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    """news.harbin.co.uk belongs to harbin.co.uk, not to co.uk: another paper's .co.uk
    domain signing is not aligned; harbin.co.uk signing is (relaxed)."""
    uk, other = "news.harbin.co.uk", "other-paper.co.uk"
    good_zone(local_dns, pems[0], uk, dmarc_at="harbin.co.uk")
    record = public_record(load_key(pems[0], "mail", ""))
    for signer in (other, "harbin.co.uk"):
        local_dns.add(f"mail._domainkey.{signer}", "TXT", record)
    outputs = {}
    for signer in (other, "harbin.co.uk"):
        folder = tmp_path / signer
        folder.mkdir()
        config = production_config(folder, smtp_sink, local_dns, pems[0], dkim_domain=f'"{signer}"')
        config.write_text(config.read_text(encoding="utf-8").replace(DOMAIN, uk), "utf-8")
        outputs[signer] = _doctor(config)
    code, output = outputs[other]
    assert code == 1, output
    [line] = _lines(output, "alignment dkim")
    assert (
        line.startswith("fail") and f"From domain {uk} is not aligned with DKIM d={other}" in line
    )
    # the DMARC record is found at the organizational domain, not at _dmarc.co.uk
    [dmarc] = _lines(output, "dmarc")
    assert dmarc.startswith("pass  dmarc: DMARC at _dmarc.harbin.co.uk: p=quarantine"), output
    assert "TXT _dmarc.co.uk" not in local_dns.asked
    code, output = outputs["harbin.co.uk"]
    assert code == 0, output
    [line] = _lines(output, "alignment dkim")
    assert line.startswith(f"pass  alignment dkim: From {uk} aligned with d=harbin.co.uk")


def test_an_empty_postal_address_is_a_warning_with_its_fix(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    good_zone(local_dns, pems[0])
    config = production_config(tmp_path, smtp_sink, local_dns, pems[0])
    code, output = _doctor(config)
    assert code == 0, output
    [line] = _lines(output, "postal address")
    assert line.startswith("warn  postal address: site.postal_address is empty"), output
    assert "CAN-SPAM" in line and 'fix: set site.postal_address = "' in line
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + '[site]\npostal_address = "1 Zhongshan Road, Harbin 150001, China"\n', "utf-8"
    )
    code, output = _doctor(config)
    assert code == 0, output
    [line] = _lines(output, "postal address")
    assert line.startswith("pass  postal address: 1 Zhongshan Road"), output


# TEST-NET-1 (RFC 5737) addresses: never routed, and with probe=False never connected to
RELAY_ONE, RELAY_TWO, RELAY_THREE = "192.0.2.25", "192.0.2.26", "192.0.2.27"


def _ptr_name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + ".in-addr.arpa"


def test_each_relays_ptr_is_checked_against_its_ehlo_name(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    from publisher.doctor import run_checks
    from publisher.resolver import Resolver

    good_zone(local_dns, pems[0])
    mx = f"mx.{DOMAIN}"
    local_dns.add(mx, "A", RELAY_ONE)
    local_dns.add(_ptr_name(RELAY_ONE), "PTR", mx + ".")
    local_dns.add(_ptr_name(RELAY_TWO), "PTR", "out.relay-provider.net.")
    config = production_config(
        tmp_path, smtp_sink, local_dns, pems[0], f'helo_name = "{mx}"', 'tls = "starttls"'
    )
    config.write_text(
        config.read_text(encoding="utf-8").replace('host = "127.0.0.1"', f'host = "{mx}"')
        + f'[[smtp.relays]]\nhost = "{RELAY_TWO}"\n[[smtp.relays]]\nhost = "{RELAY_THREE}"\n',
        "utf-8",
    )
    settings = load_settings(config, environ={})
    checks = {c.name: c for c in run_checks(settings, Resolver(settings.doctor), probe=False)}
    assert checks["ptr"].status == "pass", checks["ptr"]
    assert checks["ptr"].message == f"PTR of {RELAY_ONE} is {mx}, as EHLO says"
    second = checks[f"ptr {RELAY_TWO}:587"]
    assert second.status == "warn"
    assert second.message == f"PTR of {RELAY_TWO} is out.relay-provider.net, EHLO says {mx}"
    assert second.fix == 'set smtp.relays[1].helo_name = "out.relay-provider.net"'
    third = checks[f"ptr {RELAY_THREE}:587"]
    assert third.status == "warn" and f"{RELAY_THREE} has no PTR record" in third.message
    assert third.fix == f"ask the relay's provider for a PTR record {RELAY_THREE} -> {mx}"
    # SPF must let every relay send, not only the first
    spf = checks[f"spf {DOMAIN}"]
    assert spf.status == "warn" and RELAY_ONE in spf.message
    assert f"PTR {_ptr_name(RELAY_ONE)}" in local_dns.asked


def test_every_relay_gets_its_tls_check(
    tmp_path: Path, local_dns: LocalDns, pems: tuple[str, str]
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_log = logging.getLogger("mail.log")
    level, server_log.level = server_log.level, logging.CRITICAL
    relay = Server(
        lambda sink: SMTPServer(
            sink, hostname="relay.test", tls_context=context, require_starttls=True
        )
    )
    good_zone(local_dns, pems[0])
    down = closed_port()
    try:
        config = production_config(
            tmp_path, relay, local_dns, pems[0], 'tls = "starttls"', f'ca_file = "{ca_file}"'
        )
        with config.open("a", encoding="utf-8") as out:
            out.write(
                f'[[smtp.relays]]\nhost = "127.0.0.1"\nport = {relay.port}\n'
                f'ca_file = "{ca_file}"\n'
                f'[[smtp.relays]]\nhost = "127.0.0.1"\nport = {down}\n'
            )
        code, output = _doctor(config)
    finally:
        relay.stop()
        server_log.setLevel(level)
    assert code == 1, output
    [first] = _lines(output, "tls")
    assert first.startswith(f"pass  tls: starttls to 127.0.0.1:{relay.port}"), output
    [second] = _lines(output, f"tls 127.0.0.1:{relay.port}")
    assert second.startswith("pass"), output
    [third] = _lines(output, f"tls 127.0.0.1:{down}")
    assert third.startswith("fail") and "cannot open a verified starttls session" in third
    assert "fix: check smtp.relays[2].host, smtp.relays[2].port, smtp.relays[2].tls" in third
