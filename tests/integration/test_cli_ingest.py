"""The command-line contract for ingest and articles: exit codes, stdout, --json, stderr."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli


def publisher(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return publisher_cli(*args, cwd=cwd, env=env)


def test_ingest_then_articles_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    result = publisher("--config", str(config), "ingest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "added" in result.stdout
    listed = publisher("--config", str(config), "articles", "list", "--json", cwd=tmp_path)
    articles = json.loads(listed.stdout)
    assert len(articles) == 5
    assert articles[0]["published"] == "2024-06-21T00:00:00+08:00"
    shown = publisher(
        "--config", str(config), "articles", "show", articles[0]["id"], "--json", cwd=tmp_path
    )
    article = json.loads(shown.stdout)
    assert {r["rule"] for r in article["removed_boilerplate"]} == {"shared"}
    assert all("childcare" not in block for block in article["blocks"])


def test_quarantine_makes_exit_code_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "bad.txt").write_bytes(b"")
    result = publisher("--config", str(config), "ingest", cwd=tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "inbox" / "quarantine" / "bad.txt.error.txt").exists()


def test_environment_beats_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    other = tmp_path / "other-inbox"
    shutil.copytree(SEEDS, other)
    env = {"PUBLISHER_CONFIG": str(config), "PUBLISHER_INBOX": str(other)}
    result = publisher("ingest", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    listed = publisher("articles", "list", "--json", cwd=tmp_path, env=env)
    assert len(json.loads(listed.stdout)) == 5


def test_bad_config_is_one_line_and_exit_two(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('timezone = "Mars/Olympus"\n')
    result = publisher("--config", str(bad), "articles", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown timezone 'Mars/Olympus'")
    assert "Traceback" not in result.stderr
    bad.write_text("[smtp]\nport = 'many'\n")
    result = publisher("--config", str(bad), "articles", "list", cwd=tmp_path)
    assert result.returncode == 2 and "smtp.port" in result.stderr
    missing = publisher("--config", str(tmp_path / "nope.toml"), "articles", "list", cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr


def test_unknown_article_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    result = publisher("--config", str(config), "articles", "show", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "error: no article with id or slug 'nope'"
