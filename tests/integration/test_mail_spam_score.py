"""Every mail type scores below 1.0 with SpamAssassin (local tests: `spamassassin -L -t`),
as bench/mail_quality.py measures it; skipped where the Debian package is absent."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TARGET = 1.0


def test_every_mail_type_scores_below_one() -> None:
    if shutil.which("spamassassin") is None:
        pytest.skip("spamassassin is not installed (Debian package spamassassin)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mail_quality.py"), "--json", "--no-baseline"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert sorted(figures) == ["confirmation", "data", "digest", "welcome"]
    for kind, figure in figures.items():
        assert figure["score"] < TARGET, (kind, figure["rules"])
