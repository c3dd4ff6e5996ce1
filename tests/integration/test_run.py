"""`publisher run`: the whole process, in-process (fast) and as a real subprocess.

Real parts only: a real SQLite file, uvicorn on a free loopback port, the aiosmtpd sink,
watchfiles on a real inbox. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.errors import PublisherError
from publisher.runner import RunOptions, run
from publisher.store.locks import DatabaseLock
from publisher.tokens import Tokens
from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli

NEW_ARTICLE = """Home>Harbin Today

Harbin opens a new public ice library on the Songhua River

Updated : 2024-06-25

By Li Wei ( harbin.gov.cn )

A public library built of ice opened on the frozen Songhua River on Tuesday, the city said.

Visitors can borrow books printed on waterproof paper and read them in heated pavilions.
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def fetch(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder like a fresh clone: config, seeds, no inbox, no database."""
    write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'data' / 'publisher.db'}",
        seeds_dir=f'"{SEEDS}"',
        mailbox_dir='"mailbox"',
    )
    return tmp_path


# -- in-process --------------------------------------------------------------------


def test_first_run_seeds_ingests_builds_serves_and_picks_up_new_files(project: Path) -> None:
    settings = load_settings(project / "publisher.toml", environ={})
    port = free_port()
    app = App(settings)

    async def scenario() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run(app, stop, RunOptions(port=port), ready=ready))
        await asyncio.wait_for(ready.wait(), 20)
        atom = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/atom.xml")
        assert atom is not None and "international image development city" in atom

        (settings.inbox / "ice-library.txt").write_text(NEW_ARTICLE, encoding="utf-8")

        def served() -> bool:
            text = fetch(f"http://127.0.0.1:{port}/atom.xml")
            return text is not None and "new public ice library" in text

        await asyncio.to_thread(wait_for, served, 15, "the new article in atom.xml")
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 5

    try:
        asyncio.run(scenario())
    finally:
        app.close()
    assert sorted(p.name for p in settings.inbox.iterdir()) == sorted(
        [p.name for p in SEEDS.iterdir()] + ["ice-library.txt"]
    )


def test_the_inbox_is_seeded_only_on_a_first_run(project: Path) -> None:
    settings = load_settings(project / "publisher.toml", environ={})
    app = App(settings)
    try:
        assert app.seed_inbox() == 5
        assert app.seed_inbox() == 0  # not empty any more
        for path in settings.inbox.iterdir():
            path.unlink()
        app.ingest([SEEDS / sorted(os.listdir(SEEDS))[0]])
        assert app.seed_inbox() == 0  # empty inbox, but articles are stored
    finally:
        app.close()


def test_ingest_without_paths_on_a_fresh_checkout_ingests_the_seeds(project: Path) -> None:
    config = str(project / "publisher.toml")
    first = CliRunner().invoke(cli, ["--config", config, "ingest", "--json"], env={})
    assert first.exit_code == 0, first.output
    assert "first run: copied 5 seed articles" in first.stderr
    outcomes = [row["outcome"] for row in json.loads(first.stdout)]
    assert outcomes == ["added"] * 5
    again = CliRunner().invoke(cli, ["--config", config, "ingest", "--json"], env={})
    assert "first run" not in again.stderr
    assert {row["outcome"] for row in json.loads(again.stdout)} == {"unchanged"}


def test_run_refuses_a_second_scheduler_on_the_same_database(project: Path) -> None:
    settings = load_settings(project / "publisher.toml", environ={})
    app = App(settings)
    holder = DatabaseLock(app.store, "scheduler")
    assert holder.try_acquire()  # what the first `publisher run` holds
    try:
        with pytest.raises(PublisherError, match="refusing to start a second scheduler"):
            asyncio.run(run(app, asyncio.Event(), RunOptions(port=free_port())))
        assert not settings.inbox.exists(), "refused before touching anything"
    finally:
        holder.release()
        app.close()


def test_status_before_any_run_shows_config_and_nothing_running(project: Path) -> None:
    settings = load_settings(project / "publisher.toml", environ={})
    app = App(settings)
    try:
        found = app.status()
    finally:
        app.close()
    assert found["articles"] == {"total": 0, "last_ingest": None}
    assert found["feeds"]["last_built"] is None
    assert found["scheduler"] == {"running": False}
    assert [job["frequency"] for job in found["jobs"]] == ["weekly", "daily"]
    assert all(job["source"].startswith("config") for job in found["jobs"])


# -- as a real process --------------------------------------------------------------


def _environment(project: Path, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PUBLISHER_CONFIG"] = str(project / "publisher.toml")
    env["PUBLISHER_SMTP_PORT"] = str(smtp_port)
    return env


def _publisher(*args: str) -> list[str]:
    return [sys.executable, "-m", "publisher", *args]


@pytest.fixture
def running(project: Path) -> Iterator[tuple[subprocess.Popen[str], int, dict[str, str]]]:
    """`publisher run --smtp-debug` on free ports, up and serving."""
    port, env = free_port(), _environment(project, free_port())
    process = subprocess.Popen(
        _publisher("run", "--smtp-debug", "--port", str(port)),
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: process.poll() is not None or fetch(f"http://127.0.0.1:{port}/") is not None,
            30,
            "publisher run to serve",
        )
        assert process.poll() is None, process.communicate()[1]
        yield process, port, env
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def _terminate(process: subprocess.Popen[str]) -> tuple[int, float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    return process.returncode, time.monotonic() - started, stderr


def test_a_second_publisher_run_is_refused_but_serve_and_watch_are_fine(
    project: Path, running: tuple[subprocess.Popen[str], int, dict[str, str]]
) -> None:
    process, _port, env = running
    second = subprocess.run(
        _publisher("run", "--port", str(free_port())),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert lines[0] == (
        "error: another `publisher run` is already scheduling digests for this database "
        f"(pid {process.pid}); refusing to start a second scheduler"
    )
    assert lines[1].startswith("hint: stop it first")
    assert "Traceback" not in second.stderr

    other_port = free_port()
    helpers = [
        subprocess.Popen(command, cwd=project, env=env, stderr=subprocess.PIPE, text=True)
        for command in (_publisher("serve", "--port", str(other_port)), _publisher("watch"))
    ]
    try:
        wait_for(
            lambda: fetch(f"http://127.0.0.1:{other_port}/atom.xml") is not None,
            20,
            "a second `publisher serve`",
        )
        assert helpers[1].poll() is None, "`publisher watch` runs beside `publisher run`"
    finally:
        for helper in helpers:
            helper.send_signal(signal.SIGTERM)
            helper.communicate(timeout=10)
    assert [helper.returncode for helper in helpers] == [0, 0]

    code, seconds, _ = _terminate(process)
    assert (code, seconds < 5) == (0, True)


def test_end_to_end_article_in_feed_digest_in_mailbox_sigterm_exits_cleanly(
    project: Path, running: tuple[subprocess.Popen[str], int, dict[str, str]]
) -> None:
    process, port, env = running
    (project / "inbox" / "ice-library.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    wait_for(
        lambda: "new public ice library" in (fetch(f"http://127.0.0.1:{port}/atom.xml") or ""),
        15,
        "the dropped article in the served atom.xml",
    )

    subscribers = ["ada@example.org", "bo@example.org", "chen@example.org"]
    variables = {k: v for k, v in env.items() if k.startswith("PUBLISHER_")}
    for address in subscribers:
        added = publisher_cli("subscribers", "add", address, cwd=project, env=variables)
        assert added.returncode == 0, added.stderr
    sent = publisher_cli("send", "--frequency", "weekly", cwd=project, env=variables)
    assert sent.returncode == 0, sent.stderr

    # `send` has exited: every message it sent was saved by the sink before its 250, so
    # the mailbox holds all of them, a duplicate included, and nothing else sends now
    mailbox = project / "mailbox"
    delivered = sorted(
        line.split(":", 1)[1].strip()
        for path in mailbox.glob("*.eml")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("Delivered-To:")
    )
    assert delivered == subscribers
    assert all("new public ice library" in p.read_text() for p in mailbox.glob("*.eml"))

    code, seconds, stderr = _terminate(process)
    assert code == 0, stderr
    assert seconds < 5
    assert "Traceback" not in stderr
    assert "stopped" in stderr.splitlines()[-1]


def test_a_first_run_creates_the_secret_key_file_that_other_commands_read(
    tmp_path: Path,
) -> None:
    from publisher.secrecy import ensure_secret_key

    config = tmp_path / "publisher.toml"
    config.write_text(
        'database_url = "sqlite:///data/publisher.db"\nsecret_key_file = "data/secret_key"\n',
        encoding="utf-8",
    )
    assert load_settings(config, environ={}).secret_key is None  # `publisher send` before a run

    settings = ensure_secret_key(load_settings(config, environ={}))
    key_file = tmp_path / "data" / "secret_key"
    assert settings.secret_key and len(settings.secret_key) >= 40
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_settings(config, environ={}).secret_key == settings.secret_key
    assert ensure_secret_key(load_settings(config, environ={})) == settings  # created once
    from_environment = "from-the-environment-at-least-32-bytes"
    environment = {"PUBLISHER_SECRET_KEY": from_environment}
    assert load_settings(config, environ=environment).secret_key == from_environment


def test_a_fresh_checkout_can_preview_digests_before_any_run(tmp_path: Path) -> None:
    """The shipped config, no environment: ingest, add, send --dry-run work in that order."""
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "config", tmp_path / "config")
    shutil.copytree(SEEDS, tmp_path / "seeds")
    config = str(tmp_path / "config" / "publisher.toml")

    def publisher(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--config", config, *args], env={})
        assert result.exit_code == 0, result.output
        return result

    publisher("ingest")
    publisher("subscribers", "add", "ann@example.com", "--name", "Ann")
    out = tmp_path / "preview"
    publisher("send", "--dry-run", "--out", str(out))
    [eml] = out.glob("*.eml")
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # the links are signed with that file's key, which `serve` and `run` read too
    message = eml.read_text(encoding="utf-8")
    [token] = re.findall(r"/unsubscribe/([\w.\-]+)", message)[:1]
    secret = key_file.read_text(encoding="utf-8").strip()
    # (a preview's links are inert preview tokens: tests/integration/test_preview_links.py)
    claim = Tokens(secret).check_preview(token, max_age=3600)
    assert claim is not None and claim.email == "ann@example.com"
    assert Tokens("another-key").check_preview(token, max_age=3600) is None
