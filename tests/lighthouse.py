"""Lighthouse (npm package in tests/.node) against Debian's chromium, on the site as served.

Shared by tests/integration/test_lighthouse.py and bench/lighthouse.py: the seeds are
ingested and built by the CLI, `publisher serve` runs as a subprocess on a free port that
is also the config's base_url (Lighthouse's canonical audit checks a canonical link against
the page's own origin only, so a base_url on another port would hide a wrong one), and the
lighthouse CLI is run on one URL at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
LIGHTHOUSE = ROOT / "tests" / ".node" / "node_modules" / "lighthouse" / "cli" / "index.js"
CHROMIUM = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
# lighthouse 12's package.json: "engines": {"node": ">=18.16"}
NODE_AT_LEAST = (18, 16)
CHROME_FLAGS = "--headless=new --no-sandbox"
# one page is 10-30 s on a quiet machine; a loaded one (2 cores, many jobs) is slower
RUN_SECONDS = 240
SECRET_KEY = "lighthouse-secret-key-for-signing-links-0123456789"
PAGES = ("index", "article", "category", "archive")

__all__ = [
    "CHROMIUM",
    "LIGHTHOUSE",
    "PAGES",
    "Audit",
    "ServedSite",
    "failing_audits",
    "lighthouse",
    "missing",
    "served_site",
]


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    try:
        return tuple(int(part) for part in done.stdout.strip().lstrip("v").split(".")[:2])
    except ValueError:
        return None


def missing() -> str | None:
    """Why Lighthouse cannot run on this machine, or None when it can."""
    node = shutil.which("node")
    if node is None:
        return "node not found on PATH (lighthouse needs Node >= 18.16)"
    version = _node_version(node)
    if version is None or version < NODE_AT_LEAST:
        return f"node at {node} is not >= 18.16 (lighthouse 12 needs it)"
    if not LIGHTHOUSE.exists():
        return f"lighthouse not installed ({LIGHTHOUSE}); run: npm ci --prefix tests/.node"
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (set CHROME_PATH)"
    return None


def lighthouse(url: str, categories: tuple[str, ...]) -> dict[str, Any]:
    """The JSON report of one lighthouse run on url; RuntimeError with its stderr if none."""
    command = [
        "node",
        str(LIGHTHOUSE),
        url,
        "--output=json",
        "--quiet",
        f"--chrome-flags={CHROME_FLAGS}",
        f"--only-categories={','.join(categories)}",
    ]
    environment = {**os.environ, "CHROME_PATH": CHROMIUM}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=RUN_SECONDS, env=environment
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"lighthouse on {url} did not finish in {RUN_SECONDS} s") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(
            f"lighthouse on {url} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    report: dict[str, Any] = json.loads(done.stdout)
    error = report.get("runtimeError")
    if error:
        raise RuntimeError(f"lighthouse on {url}: {error.get('code')}: {error.get('message')}")
    return report


@dataclass(frozen=True)
class Audit:
    id: str
    title: str
    score: float | None
    explanation: str

    def line(self) -> str:
        why = f" ({self.explanation})" if self.explanation else ""
        return f"{self.id}: {self.title} [score {self.score}]{why}"


def failing_audits(report: dict[str, Any], category: str) -> list[Audit]:
    """The audits that cost the category points, and those that could not run at all."""
    found = []
    for ref in report["categories"][category]["auditRefs"]:
        audit = report["audits"][ref["id"]]
        scored_low = audit["score"] is not None and audit["score"] < 1 and ref["weight"] > 0
        if scored_low or audit["scoreDisplayMode"] == "error":
            explanation = audit.get("explanation") or audit.get("errorMessage") or ""
            found.append(Audit(ref["id"], audit["title"], audit["score"], explanation))
    return found


@dataclass
class ServedSite:
    folder: Path
    base: str
    urls: dict[str, str] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "publisher", "--config", str(config), *args]


def _environment() -> dict[str, str]:
    """This environment without PUBLISHER_* variables, which would beat the config file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def served_site(folder: Path) -> Iterator[ServedSite]:
    """The seeds ingested and built into folder by the CLI, served by `publisher serve`."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    config = folder / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder}/db.sqlite"\n'
        'inbox = "inbox"\n'
        'output_dir = "public"\n'
        f'base_url = "{base}"\n'
        f'secret_key = "{SECRET_KEY}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    shutil.copytree(SEEDS, folder / "inbox")
    for command in ("ingest", "build"):
        done = subprocess.run(
            _command(config, command),
            cwd=folder,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"publisher {command} exited {done.returncode}: {done.stderr}")
    output_dir = folder / "public"
    article = sorted(output_dir.glob("articles/*.html"))[0]
    category = sorted(output_dir.glob("category/*/index.html"))[0]
    site = ServedSite(folder, base)
    site.urls["index"] = base
    site.urls["article"] = f"{base}articles/{article.name}"
    site.urls["category"] = f"{base}category/{category.parent.name}/"
    site.urls["archive"] = f"{base}archive/"

    server = subprocess.Popen(
        _command(config, "serve", "--host", "127.0.0.1", "--port", str(port)),
        cwd=folder,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def collect() -> None:
        assert server.stdout is not None
        lines.extend(server.stdout)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        started = time.monotonic()
        while not _answers(base):
            if server.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"publisher serve did not answer on {base}: {''.join(lines)}")
            time.sleep(0.1)
        yield site
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        reader.join(5)
