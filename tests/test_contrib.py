"""contrib/publisher.service: the unit the README installs runs `publisher run` hardened."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "publisher.service"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_runs_the_main_job_with_its_config_and_restarts_on_failure() -> None:
    service = _unit()["Service"]
    command = service["ExecStart"].split()
    assert command[0].endswith("/publisher") and command[-1] == "run"
    assert command[command.index("--config") + 1] == "/srv/publisher/publisher.toml"
    assert service["Restart"] == "on-failure"
    assert service["User"] and service["User"] != "root"


def test_the_unit_is_hardened_and_may_write_only_its_own_folder() -> None:
    service = _unit()["Service"]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ReadWritePaths"] == service["WorkingDirectory"] == "/srv/publisher"
    assert service["CapabilityBoundingSet"] == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # the program it names is not installed here: point it at this Python instead
    text = UNIT.read_text(encoding="utf-8")
    binary = "/opt/publisher/venv/bin/publisher"
    copy = tmp_path / "publisher.service"
    copy.write_text(text.replace(binary, sys.executable), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "publisher.service" not in result.stderr, result.stderr
