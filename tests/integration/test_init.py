"""`publisher init DIR`: a production config an operator can start from, through the real CLI.

What the sample config gets wrong for production (localhost URLs and addresses, the demo
seeds, a zone on the other side of the world) must not be in what `init` writes, and what
it writes must load and pass the same validation every command does.
"""

from __future__ import annotations

import base64
import os
import pty
import re
import select as waiting
import stat
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from publisher.cli import cli
from publisher.config import is_loopback_host, load_settings
from publisher.scaffold import machine_timezone

FLAGS = ["--base-url", "https://news.example.org/", "--from", "Example News <news@example.org>"]


def _init(*args: str) -> Result:
    env = {k: "" for k in os.environ if k.startswith("PUBLISHER_")}
    return CliRunner().invoke(cli, ["init", *args], env=env)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_in_an_empty_folder_writes_a_production_config_that_loads(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    result = _init(str(folder), *FLAGS, "--timezone", "Europe/Berlin")
    assert result.exit_code == 0, result.output

    config = folder / "publisher.toml"
    settings = load_settings(config, environ={})
    assert settings.base_url == "https://news.example.org/"
    assert settings.smtp.from_address == "Example News <news@example.org>"
    assert settings.timezone == "Europe/Berlin"
    assert settings.digest.list_id == "digest.example.org"
    assert settings.seeds_dir is None  # the five demo articles are not published
    assert settings.site.title == "Example News"
    # the secret key exists, is strong, and only its owner may read it
    assert settings.secret_key_file == (folder / "secret_key").resolve()
    assert settings.secret_key and len(settings.secret_key) >= 32
    assert _mode(folder / "secret_key") == 0o600
    assert settings.notices == ()
    # nothing that points at this machine, and the paths stay inside the folder
    text = config.read_text(encoding="utf-8")
    for value in (settings.host, settings.digest.list_id, settings.smtp.from_address):
        assert not is_loopback_host(value.rpartition("@")[2].strip(">")), value
    assert "Asia/Shanghai" not in text
    for path in (settings.inbox, settings.output_dir, settings.data_dir):
        assert path.is_relative_to(folder.resolve()), path
    assert settings.database_url == f"sqlite:///{(folder / 'data' / 'publisher.db').resolve()}"
    # the records `publisher doctor` looks for, named for the From domain
    assert re.search(r"example\.org\.?\s+TXT\s+\"v=spf1 ", result.output), result.output
    assert re.search(r"_dmarc\.example\.org\.?\s+TXT\s+\"v=DMARC1; p=", result.output)


def _values(text: str) -> str:
    """The config's lines that set something (comments dropped)."""
    return "\n".join(
        line.split("#", 1)[0] for line in text.splitlines() if not line.lstrip().startswith("#")
    )


def test_the_written_config_sets_no_localhost_value(tmp_path: Path) -> None:
    assert _init(str(tmp_path), *FLAGS).exit_code == 0
    values = _values((tmp_path / "publisher.toml").read_text(encoding="utf-8"))
    assert "localhost" not in values and "seeds" not in values, values
    assert 'forwarded_allow_ips = "127.0.0.1"' in values  # behind the README's nginx


def test_init_never_overwrites_a_config_without_force(tmp_path: Path) -> None:
    assert _init(str(tmp_path), *FLAGS).exit_code == 0
    config = tmp_path / "publisher.toml"
    config.write_text(config.read_text(encoding="utf-8") + "# the operator's own line\n")
    key = (tmp_path / "secret_key").read_text(encoding="utf-8")

    refused = _init(str(tmp_path), "--base-url", "https://other.example.net/", *FLAGS[2:])
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1 and "--force" in refused.stderr, refused.stderr
    assert "# the operator's own line" in config.read_text(encoding="utf-8")

    forced = _init(str(tmp_path), "--force", "--base-url", "https://other.example.net/", *FLAGS[2:])
    assert forced.exit_code == 0, forced.output
    settings = load_settings(config, environ={})
    assert settings.base_url == "https://other.example.net/"
    # a new key would break every confirm and unsubscribe link already sent
    assert (tmp_path / "secret_key").read_text(encoding="utf-8") == key


def test_without_a_terminal_missing_flags_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _init(str(tmp_path), "--base-url", "https://news.example.org/")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--from" in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_localhost_values_are_refused(tmp_path: Path) -> None:
    for flags in (
        ["--base-url", "http://127.0.0.1:8080/", *FLAGS[2:]],
        [*FLAGS[:2], "--from", "News <news@localhost>"],
        [*FLAGS, "--list-id", "digest.publisher.localhost"],
    ):
        result = _init(str(tmp_path), *flags)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, (flags, result.stderr)
    assert list(tmp_path.iterdir()) == []


def test_dkim_on_request_writes_a_private_rsa_key_and_prints_its_record(tmp_path: Path) -> None:
    result = _init(str(tmp_path), *FLAGS, "--dkim", "--dkim-selector", "news2026")
    assert result.exit_code == 0, result.output
    key_file = tmp_path / "dkim.key"
    assert _mode(key_file) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    # the TXT record carries exactly this key's public half (split into <= 255-byte strings)
    record = re.search(r"news2026\._domainkey\.example\.org\.?\s+TXT\s+(.+)", result.output)
    assert record, result.output
    value = "".join(re.findall(r'"([^"]*)"', record.group(1)))
    assert all(len(s) <= 255 for s in re.findall(r'"([^"]*)"', record.group(1)))
    published = base64.b64decode(value.split("p=", 1)[1])
    assert published == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert 'private_key_file = "dkim.key"' in (tmp_path / "publisher.toml").read_text("utf-8")
    load_settings(tmp_path / "publisher.toml", environ={})
    # never printed
    assert "PRIVATE KEY" not in result.output


def _on_a_terminal(command: list[str], cwd: Path, answers: list[tuple[bytes, bytes]]) -> str:
    """Run `command` on a pseudo-terminal, typing each answer once its prompt shows."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    output, pending = b"", list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = waiting.select([controller], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the other end closed: the process is done
                break
            if not chunk:
                break
            output += chunk
        if pending and pending[0][0] in output.rsplit(b"\n", 1)[-1]:
            os.write(controller, pending.pop(0)[1])
    os.close(controller)
    assert process.wait(timeout=30) == 0, output.decode("utf-8", "replace")
    return output.decode("utf-8", "replace")


def test_on_a_terminal_it_asks_for_what_the_flags_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    output = _on_a_terminal(
        [sys.executable, "-m", "publisher", "init", str(folder)],
        tmp_path,
        [
            (b"Public URL of the site", b"ftp://wrong\n"),  # asked again
            (b"Public URL of the site", b"https://news.example.org/\n"),
            (b"From address", b"Example News <news@example.org>\n"),
            (b"Site title", b"\n"),
            (b"Time zone", b"America/Chicago\n"),
            (b"List-Id", b"\n"),
            (b"SMTP relay host", b"smtp.example.org\n"),
        ],
    )
    settings = load_settings(folder / "publisher.toml", environ={})
    assert settings.base_url == "https://news.example.org/", output
    assert settings.timezone == "America/Chicago"
    assert settings.digest.list_id == "digest.example.org"
    assert settings.smtp.host == "smtp.example.org"
    assert settings.smtp.tls.value == "starttls" and settings.smtp.port == 587
    assert settings.site.title == "Example News"


def test_a_database_password_makes_the_config_private(tmp_path: Path) -> None:
    url = "postgresql+psycopg://publisher:s3cret-pass@db.internal/publisher"
    assert _init(str(tmp_path), *FLAGS, "--database-url", url).exit_code == 0
    assert _mode(tmp_path / "publisher.toml") == 0o600
    assert load_settings(tmp_path / "publisher.toml", environ={}).notices == ()


def test_the_machines_zone_comes_from_tz_then_the_localtime_link(tmp_path: Path) -> None:
    zoneinfo = tmp_path / "usr" / "share" / "zoneinfo" / "Europe"
    zoneinfo.mkdir(parents=True)
    (zoneinfo / "Lisbon").write_bytes(b"TZif")
    link = tmp_path / "localtime"
    link.symlink_to(zoneinfo / "Lisbon")
    missing = tmp_path / "timezone"
    assert machine_timezone({"TZ": ":Asia/Tokyo"}, link, missing) == "Asia/Tokyo"
    assert machine_timezone({}, link, missing) == "Europe/Lisbon"
    assert machine_timezone({"TZ": "Not/AZone"}, tmp_path / "none", missing) == "UTC"
    missing.write_text("America/Chicago\n")
    assert machine_timezone({}, tmp_path / "none", missing) == "America/Chicago"
