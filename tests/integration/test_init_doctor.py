"""The operator's first day as the README tells it: `publisher init` in an empty folder,
its printed DNS records published, then `publisher doctor` passes; the demo config fails on
its localhost values and its seeds."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from publisher.cli import cli
from tests.dns_server import LocalDns
from tests.smtp_sink import SmtpSink

DOMAIN = "news.harbin-daily.net"
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "publisher.toml"
RECORD = re.compile(r'^\s*(\S+)\.\s+TXT\s+((?:"[^"]*"\s*)+)$')
STRING = re.compile(r'"([^"]*)"')


def _publish(zone: LocalDns, printed: str) -> int:
    """Put every zone-file line init printed into the local DNS server; how many."""
    published = 0
    for line in printed.splitlines():
        if (found := RECORD.match(line)) is not None:
            # a long TXT value is printed as several <= 255-byte strings: one value
            zone.add(found[1], "TXT", "".join(STRING.findall(found[2])))
            published += 1
    return published


def test_a_config_from_init_passes_doctor_once_its_records_are_published(
    tmp_path: Path, smtp_sink: SmtpSink, local_dns: LocalDns
) -> None:
    folder = tmp_path / "newsroom"
    init = CliRunner().invoke(
        cli,
        [
            "init",
            str(folder),
            "--base-url",
            f"https://{DOMAIN}/",
            "--from",
            f"Harbin Daily <editor@{DOMAIN}>",
            "--dkim",
            "--dkim-selector",
            "mail",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(smtp_sink.port),
        ],
    )
    assert init.exit_code == 0, init.output
    config = folder / "publisher.toml"
    with config.open("a", encoding="utf-8") as out:  # where this test's DNS answers
        out.write(f'\n[doctor]\nnameservers = "127.0.0.1"\nport = {local_dns.port}\n')
    doctor = ["--config", str(config), "doctor"]

    before = CliRunner().invoke(cli, doctor)
    assert before.exit_code == 1, before.output  # nothing published yet
    assert _publish(local_dns, init.output) == 3  # SPF, DKIM, DMARC
    after = CliRunner().invoke(cli, doctor)
    assert after.exit_code == 0, after.output
    lines = after.output.strip().splitlines()
    assert lines and all(line.startswith(("pass", "warn")) for line in lines), after.output
    assert f"pass  dkim mail._domainkey.{DOMAIN}" in after.output


def test_the_demo_config_fails_doctor_on_localhost_values_and_seeds() -> None:
    result = CliRunner().invoke(cli, ["--config", str(DEMO_CONFIG), "doctor"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("fail")]
    assert any("localhost" in line for line in failed), result.output
    assert any("seeds" in line for line in failed), result.output
