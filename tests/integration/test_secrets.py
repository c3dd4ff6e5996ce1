"""Secrets: never printed (logs, errors, --json, status, repr), warned about when exposed,
and required before the web server starts (unless --insecure-dev).

Every command runs with distinctive secret values, and every byte it writes to stdout and
stderr (file descriptors 1 and 2 too) is searched for them. The contract commands run
in-process; the long-running servers, stopped by a signal, as real subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, LoginPassword

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import SEEDS, TEST_SECRET_KEY, write_config
from tests.integration.in_process import publisher_cli
from tests.integration.test_faults_smtp import Server

SECRET_KEY = "sk-Zebra-Quasar-7f3a9c1e5b-Walrus-2d8e4b6a"
SMTP_PASSWORD = "pw-Hunter2-Mango-9b1c4d"
DB_PASSWORD = "db-Walrus-Oboe-51e2"
SECRETS = (SECRET_KEY, SMTP_PASSWORD, DB_PASSWORD)
INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env.update(extra)
    return env


def publisher(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in (env or {}).items() if k.startswith("PUBLISHER_")}
    return publisher_cli("--config", str(config), *args, env=variables, capture="fd")


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked in:\n{text}"


# -- never printed ---------------------------------------------------------------------------


@pytest.fixture
def auth_server() -> Iterator[Server]:
    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == b"mailer"
            and data.password == SMTP_PASSWORD.encode()
        )
        return AuthResult(success=ok)

    server = Server(
        lambda sink: SMTPServer(
            sink, hostname="sink.test", authenticator=authenticator, auth_require_tls=False
        )
    )
    try:
        yield server
    finally:
        server.stop()


def test_secrets_never_appear_in_any_output(tmp_path: Path, auth_server: Server) -> None:
    config = tmp_path / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{tmp_path / "data" / "p.db"}"\n'
        'inbox = "inbox"\noutput_dir = "public"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {auth_server.port}\nusername = "mailer"\n'
        "backoff_seconds = 0.01\nattempts = 2\n",
        encoding="utf-8",
    )
    env = _env(PUBLISHER_SECRET_KEY=SECRET_KEY, PUBLISHER_SMTP_PASSWORD=SMTP_PASSWORD)
    settings = load_settings(config, environ=env)
    app = App(settings)
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("ann@example.com")
    app.close()
    assert settings.secret_key == SECRET_KEY and settings.smtp.password == SMTP_PASSWORD
    _assert_no_secret(repr(settings), str(settings), repr(settings.smtp))

    outputs: list[str] = []
    commands = [
        ("-v", "ingest", "--json"),
        ("-v", "build", "--json"),
        ("-v", "articles", "list", "--json"),
        ("-v", "subscribers", "list", "--json"),
        ("-v", "status"),
        ("-v", "--log-json", "status", "--json"),
        ("-v", "send", "--dry-run", "--out", str(tmp_path / "preview"), "--now", NOW.isoformat()),
        ("-v", "--log-json", "send", "--now", NOW.isoformat()),
    ]
    for args in commands:
        done = publisher(config, *args, env=env)
        assert done.returncode == 0, (args, done.stderr)
        outputs += [done.stdout, done.stderr]
    assert auth_server.sink.per_recipient() == {"ann@example.com": 1}
    outputs.append(auth_server.sink.messages[0].data.decode())
    outputs += [p.read_text(encoding="utf-8") for p in (tmp_path / "preview").iterdir()]

    # the SMTP error path (server gone, password still configured); then the store's
    app = App(settings)
    app.add_subscriber("bob@example.com")
    app.close()
    auth_server.stop()
    down = publisher(config, "-v", "send", "--now", NOW.isoformat(), env=env)
    assert down.returncode == 1 and "cannot reach SMTP server" in down.stderr, down.stderr
    outputs += [down.stdout, down.stderr]
    database = f"postgresql+psycopg://reader:{DB_PASSWORD}@127.0.0.1:1/news"
    for args in (("status",), ("-v", "status", "--json"), ("articles", "list", "--json")):
        done = publisher(config, *args, env=_env(PUBLISHER_DATABASE_URL=database))
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert "reader:***@127.0.0.1:1/news" in done.stderr, done.stderr
        outputs += [done.stdout, done.stderr]
    in_process = load_settings(config, environ=_env(PUBLISHER_DATABASE_URL=database))
    outputs.append(repr(in_process))

    # a secret of the wrong type is reported without its value
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[smtp]\npassword = {DB_PASSWORD.count('-')}{'1' * 7}\n", encoding="utf-8")
    rejected = publisher(bad, "status")
    assert rejected.returncode == 2 and "smtp.password" in rejected.stderr
    assert "1111111" not in rejected.stderr
    _assert_no_secret(*outputs)


# -- exposed secrets -----------------------------------------------------------------------------


def test_a_config_file_others_can_read_that_holds_a_secret_gets_one_warning(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'p.db'}")  # has secret_key
    assert publisher(config, "status").stderr == ""
    config.chmod(0o644)
    warned = publisher(config, "status", "--json")
    assert warned.returncode == 0
    [line] = warned.stderr.splitlines()
    assert line.startswith(f"warning: config file {config} is readable by other users")
    assert "secret_key" in line and "chmod 600" in line
    assert "test-secret-key" not in line

    plain = tmp_path / "plain.toml"  # no secret in it: nothing to warn about
    plain.write_text(f'database_url = "sqlite:///{tmp_path / "p2.db"}"\n', encoding="utf-8")
    plain.chmod(0o644)
    assert publisher(plain, "status").stderr == ""


# -- the web server needs a secret key -------------------------------------------------------------


def _no_key_config(tmp_path: Path, **extra: str) -> Path:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'p.db'}", **extra)
    text = config.read_text(encoding="utf-8").replace(f'secret_key = "{TEST_SECRET_KEY}"\n', "")
    config.write_text(text, encoding="utf-8")
    return config


def _start(config: Path, *args: str, ready: str) -> tuple[subprocess.Popen[str], str]:
    """Start a long-running command; returns once `ready` appears on stderr (30 s at most)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    seen = ""
    deadline = time.monotonic() + 30
    assert process.stderr is not None
    while ready not in seen and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen += line
    return process, seen


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def test_serve_and_run_refuse_to_start_without_a_secret_key(tmp_path: Path) -> None:
    config = _no_key_config(tmp_path)
    for args in (("serve", "--port", "0"), ("run", "--no-send", "--port", "0")):
        refused = publisher(config, *args)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines()[0] == (
            "error: no secret key is set; refusing to start the web server "
            "(it signs confirm and unsubscribe links)"
        )
        assert "--insecure-dev" in refused.stderr and "Traceback" not in refused.stderr

    process, seen = _start(config, "serve", "--port", "0", "--insecure-dev", ready="serving")
    try:
        assert "serving" in seen, seen
        assert "warning: --insecure-dev: no secret key set; using a throwaway key" in seen
    finally:
        _stop(process)


def test_the_demo_run_creates_its_own_private_key_file(tmp_path: Path) -> None:
    """`publisher run` with secret_key_file (the default config) makes the key: 0600, random."""
    config = _no_key_config(tmp_path, secret_key_file='"data/secret_key"')
    key_file = tmp_path / "data" / "secret_key"
    assert publisher(config, "serve", "--port", "0").returncode == 2  # serve does not make it

    process, seen = _start(config, "run", "--no-send", "--port", "0", ready="publisher run is up")
    try:
        assert "publisher run is up" in seen, seen
        assert "created a secret key in" in seen
    finally:
        _stop(process)
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text(encoding="utf-8").strip()
    assert len(key) >= 40 and key not in seen

    process, seen = _start(config, "serve", "--port", "0", ready="serving")  # now it has one
    try:
        assert "serving" in seen and "warning" not in seen, seen
    finally:
        _stop(process)
