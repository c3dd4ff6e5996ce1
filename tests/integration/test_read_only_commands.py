"""Read-only commands create nothing and read a database they may not write.

`status`, `articles list`, `subscribers list` and `subscribers export` where no database
exists leave the folder as it was (no database, no data folder, no lock file). On a
database file the process cannot write (0444 in a 0555 folder) they still answer: run as
the unprivileged user `nobody` when the tests run as root (root ignores permissions).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import publisher.runner  # noqa: F401 - loaded before a fork drops the rights to read it
from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.errors import StoreError
from publisher.store.engine import Store
from tests.conftest import SEEDS

READS = [
    ("status", "--json"),
    ("articles", "list", "--json"),
    ("subscribers", "list", "--json"),
    ("subscribers", "export"),
]


def _clean_environment() -> dict[str, str | None]:
    return {k: None for k in os.environ if k.startswith("PUBLISHER_")}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_read_only_commands_without_a_config_or_database_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/publisher.toml here: the built-in defaults
    runner = CliRunner()
    for args in READS:
        result = runner.invoke(cli, list(args), env=_clean_environment())
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output
    status = runner.invoke(cli, ["status"], env=_clean_environment())
    assert status.exit_code == 0, status.output
    assert "no database yet" in status.stdout
    found = json.loads(runner.invoke(cli, ["status", "--json"], env=_clean_environment()).stdout)
    assert found["database_exists"] is False and found["articles"]["total"] == 0
    assert _tree(tmp_path) == []  # no data/, no publisher.db, no lock file


def _config(folder: Path, database: Path) -> Path:
    """A config others may read: it holds no secret (reading needs none)."""
    path = folder / "publisher.toml"
    path.write_text(
        f'database_url = "sqlite:///{database}"\ninbox = "inbox"\noutput_dir = "public"\n',
        encoding="utf-8",
    )
    path.chmod(0o644)
    return path


def _reads(config: Path) -> dict[str, Result]:
    runner = CliRunner()
    return {
        " ".join(args): runner.invoke(
            cli, ["--config", str(config), *args], env=_clean_environment()
        )
        for args in READS
    }


def _summary(results: dict[str, Result]) -> dict[str, object]:
    found: dict[str, object] = {"exit codes": {k: r.exit_code for k, r in results.items()}}
    status = json.loads(results["status --json"].stdout)
    found["articles"] = status["articles"]["total"]
    found["subscribers"] = status["subscribers"]
    found["titles"] = sorted(a["title"] for a in json.loads(results["articles list --json"].stdout))
    found["emails"] = [s["email"] for s in json.loads(results["subscribers list --json"].stdout)]
    found["export lines"] = len(results["subscribers export"].stdout.splitlines())
    return found


def _as_nobody(work: Callable[[], dict[str, object]]) -> dict[str, object]:
    """`work()` in a forked child that has given up root for the user nobody."""
    if os.geteuid() != 0:
        return work()  # permissions already apply to this user
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = json.dumps(work()).encode()
        except BaseException as exc:  # reported to the parent, which fails the test
            payload, code = json.dumps({"error": repr(exc)}).encode(), 1
        os.write(write_end, payload)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    found: dict[str, object] = json.loads(data)
    assert os.waitstatus_to_exitcode(status) == 0, found
    return found


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder nobody can reach (tmp_path sits under a 0700 folder of root's)."""
    folder = Path(tempfile.mkdtemp(prefix="publisher-ro-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def test_a_database_the_process_cannot_write_can_still_be_read(
    tmp_path: Path, shared_folder: Path
) -> None:
    database = tmp_path / "data" / "publisher.db"
    config = _config(tmp_path, database)
    app = App(load_settings(config, environ={}))
    try:
        app.ingest([SEEDS])
        app.add_subscriber("ann@example.org", name="Ann")
    finally:
        app.close()  # the last connection checkpoints the WAL: one file is the database
    writable = _summary(_reads(config))  # also loads every module the child will need

    data = shared_folder / "data"
    data.mkdir()
    shutil.copy(database, data / "publisher.db")
    shared_config = _config(shared_folder, data / "publisher.db")
    (data / "publisher.db").chmod(0o444)
    data.chmod(0o555)
    before = _tree(shared_folder)

    read_only = _as_nobody(lambda: _summary(_reads(shared_config)))

    assert read_only == writable
    assert writable["articles"] == 5 and writable["emails"] == ["ann@example.org"]
    assert _tree(shared_folder) == before  # no -wal, -shm or lock file was made


def test_a_read_only_store_cannot_write_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "publisher.db"
    Store(f"sqlite:///{path}").close()
    content = path.read_bytes()
    store = Store(f"sqlite:///{path}", read_only=True)
    try:
        with pytest.raises(StoreError, match="readonly"), store.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE intruder (x)")
    finally:
        store.close()
    assert path.read_bytes() == content
    assert "intruder" not in {
        row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")
    }
