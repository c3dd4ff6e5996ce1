"""`publisher --help` and a mistyped command answer without loading any service: the
database layer, numpy, the scheduler, the web stack and the mailer load only inside the
commands that use them (the start-up time itself is measured in bench/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

# what the services bring with them; none of it is needed to print help or refuse a typo
SERVICES = (
    "publisher.app",
    "publisher.ingest",
    "publisher.store",
    "publisher.subscribers",
    "publisher.subscribing",
    "publisher.sending",
    "publisher.runner",
    "publisher.web",
    "sqlalchemy",
    "numpy",
    "apscheduler",
    "starlette",
    "uvicorn",
    "aiosmtplib",
    "jinja2",
    "feedgen",
)

PROBE = """
import json, sys
from click.testing import CliRunner
from publisher.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
print(json.dumps({"exit_code": result.exit_code, "output": result.output, "loaded": list(sys.modules)}))
"""


def _run_fresh(*args: str) -> dict[str, Any]:
    """The CLI run with `args` in a fresh interpreter: exit code, output, modules loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=True
    )
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [(["--help"], 0), (["status", "--help"], 0), (["send", "--help"], 0), (["nosuch"], 2)],
)
def test_help_and_a_typo_load_no_service(args: list[str], exit_code: int) -> None:
    found = _run_fresh(*args)
    assert found["exit_code"] == exit_code, found["output"]
    assert "Usage: " in found["output"]
    loaded = set(found["loaded"])
    services = {m for m in loaded if any(m == s or m.startswith(s + ".") for s in SERVICES)}
    assert services == set(), sorted(services)
    assert "publisher.cli" in loaded  # the probe did import the CLI
