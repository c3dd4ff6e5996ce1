"""Bad settings and unusable databases, through the real CLI: exit 2, one line naming the
setting (or the database) and the fix, no traceback; nothing silently accepted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import cli
from publisher.store.engine import Store
from tests.conftest import write_config


def _setting(**values: str) -> Callable[[Path], Path]:
    """A valid test config plus `values` (TOML text, dotted names become sections)."""

    def make(folder: Path) -> Path:
        top = {k: v for k, v in values.items() if "__" not in k and k != "database_url"}
        url = values.get("database_url", f'"sqlite:///{folder / "db.sqlite"}"').strip('"')
        path = write_config(folder, url, **top)
        sections: dict[str, list[str]] = {}
        for key, value in values.items():
            if "__" in key:
                section, name = key.split("__", 1)
                sections.setdefault(section, []).append(f"{name} = {value}")
        with path.open("a", encoding="utf-8") as out:
            for section, lines in sections.items():
                out.write(f"[{section}]\n" + "\n".join(lines) + "\n")
        return path

    return make


def _database_file(content: Callable[[Path], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / "db.sqlite").write_bytes(content(folder))
        return write_config(folder, f"sqlite:///{folder / 'db.sqlite'}")

    return make


def _damaged(folder: Path) -> bytes:
    """A real publisher database whose first page (the schema) is overwritten."""
    Store(f"sqlite:///{folder / 'good.sqlite'}").close()
    data = bytearray((folder / "good.sqlite").read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    return bytes(data)


def _not_utf8(folder: Path) -> Path:
    path = write_config(folder, f"sqlite:///{folder / 'db.sqlite'}")
    path.write_bytes(path.read_bytes() + b'[site]\ntitle = "Caf\xe9"\n')
    return path


def _key_file(folder: Path) -> Path:
    (folder / "key").write_text("short\n", encoding="utf-8")
    path = write_config(folder, f"sqlite:///{folder / 'db.sqlite'}", secret_key_file='"key"')
    path.write_text(
        "\n".join(line for line in path.read_text().splitlines() if "secret_key =" not in line),
        encoding="utf-8",
    )
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str, dict[str, str]]] = {
    # name: (make the config, a word the error line must hold, environment)
    "not a database": (
        _database_file(lambda _: b"hello, this is not SQLite\n" * 200),
        "database",
        {},
    ),
    "damaged database": (_database_file(_damaged), "damaged", {}),
    "mysql url": (_setting(database_url='"mysql://u@127.0.0.1/news"'), "database_url", {}),
    "port not a number": (
        _setting(database_url='"postgresql+psycopg://u@127.0.0.1:abc/news"'),
        "port",
        {},
    ),
    "port out of range": (
        _setting(database_url='"postgresql+psycopg://u@127.0.0.1:99999/news"'),
        "port",
        {},
    ),
    "config not utf-8": (_not_utf8, "UTF-8", {}),
    "port = 1e400": (_setting(smtp__port="1e400"), "smtp.port", {}),
    "port = 25.5": (_setting(smtp__port="25.5"), "smtp.port", {}),
    "timeout = nan": (_setting(smtp__timeout_seconds="nan"), "smtp.timeout_seconds", {}),
    "num_perm = 0": (_setting(dedup__num_perm="0"), "dedup.num_perm", {}),
    "shingle_size = 0": (_setting(dedup__shingle_size="0"), "dedup.shingle_size", {}),
    "containment_threshold = 1.5": (
        _setting(dedup__containment_threshold="1.5"),
        "dedup.containment_threshold",
        {},
    ),
    "republication_days = -1": (
        _setting(dedup__republication_days="-1"),
        "dedup.republication_days",
        {},
    ),
    "subject placeholder": (
        _setting(digest__subject='"{nonexistent} news"'),
        "digest.subject",
        {},
    ),
    "subject brace": (_setting(digest__subject='"news {"'), "digest.subject", {}),
    "list_id line break": (
        _setting(digest__list_id='"digest.example.org\\r\\nBcc: all@example.org"'),
        "digest.list_id",
        {},
    ),
    "pool_size = -3": (_setting(smtp__pool_size="-3"), "smtp.pool_size", {}),
    "attempts = 0": (_setting(smtp__attempts="0"), "smtp.attempts", {}),
    "max_body_bytes = -1": (_setting(server__max_body_bytes="-1"), "server.max_body_bytes", {}),
    "claim_batch = 0": (_setting(workers__claim_batch="0"), "workers.claim_batch", {}),
    "missing templates_dir": (_setting(templates_dir='"no-such-folder"'), "templates_dir", {}),
    "short secret key": (_setting(), "secret_key", {"PUBLISHER_SECRET_KEY": "zq-short-key"}),
    "short key file": (_key_file, "secret_key_file", {}),
}


@pytest.mark.parametrize("command", [("articles", "list"), ("ingest",)], ids=["read", "write"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_setting_is_one_line_and_exit_two(
    case: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    make, named, environment = CASES[case]
    config = make(tmp_path)
    (tmp_path / "inbox").mkdir(exist_ok=True)
    result = CliRunner().invoke(cli, ["--config", str(config), *command], env=environment)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # not a crash
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert named in lines[0] and "Traceback" not in result.output
    assert "; " in lines[0]  # the fix follows on the same line
    assert environment.get("PUBLISHER_SECRET_KEY", "\0") not in lines[0]


def test_a_key_of_32_bytes_and_the_embedded_default_are_accepted(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = CliRunner().invoke(
        cli, ["--config", str(config), "status"], env={"PUBLISHER_SECRET_KEY": "k" * 32}
    )
    assert result.exit_code == 0, result.output
    default = Path(__file__).resolve().parents[2] / "config" / "publisher.toml"
    assert CliRunner().invoke(cli, ["--config", str(default), "--help"]).exit_code == 0
