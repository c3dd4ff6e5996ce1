"""A database written by an earlier release's own code: that release's `publisher` and
`templates`, taken from git, run in a subprocess against a database that a test then
opens with today's code (the upgrade tests)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

__all__ = ["REPOSITORY", "run_old_release"]

REPOSITORY = Path(__file__).resolve().parents[1]


def _unpack(release: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", release, "publisher", "templates"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(f"cannot read release {release}: {archive.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def run_old_release(folder: Path, release: str, schema: int, script: str, *arguments: str) -> None:
    """Run `script` (python -c, with `arguments`) on `release`'s code unpacked into
    `folder`; it must exit 0, and it must be that release's code writing schema `schema`
    (not the worktree's package) that ran."""
    code = _unpack(release, folder)
    environment = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        env=environment,
        cwd=code,  # its own package first, not the worktree's
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    which = subprocess.run(
        [
            sys.executable,
            "-c",
            "import publisher; from publisher.store.schema import SCHEMA_VERSION as v;"
            " print(publisher.__file__); print(v)",
        ],
        env=environment,
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    where, version = which.stdout.split()
    assert where.startswith(str(code)), where
    assert version == str(schema), version
