"""Imports point one way: cli -> app -> adapters and core -> model, errors (design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publisher"

CORE = {"model", "errors", "config", "parse", "dedup", "digest", "render", "feeds", "messages", "tokens"}
ADAPTERS = {"store", "mailer", "watch", "schedule", "web", "smtpsink", "inbox"}
# third-party libraries only their adapter (or core renderer) may import
OWNERS = {
    "sqlalchemy": {"store"},
    "aiosmtplib": {"mailer"},
    "apscheduler": {"schedule"},
    "watchfiles": {"watch"},
    "starlette": {"web"},
    "uvicorn": {"web"},
    "jinja2": {"render"},
    "feedgen": {"feeds"},
    "aiosmtpd": {"smtpsink"},
}


def _module_of(path: Path, package: Path) -> str:
    relative = path.relative_to(package).with_suffix("")
    return relative.parts[0]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _violations(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in package.rglob("*.py"):
        module = _module_of(path, package)
        for name in _imports(path):
            top = name.split(".")[0]
            if top in OWNERS and module not in OWNERS[top]:
                problems.append(f"{path.name}: {module} imports {top} (only {OWNERS[top]} may)")
            if top != "publisher":
                continue
            target = name.split(".")[1] if "." in name else ""
            if module in CORE and target and target not in CORE:
                problems.append(f"{path.name}: core module {module} imports {target}")
            if module in ADAPTERS and target in ADAPTERS and target != module:
                problems.append(f"{path.name}: adapter {module} imports adapter {target}")
            if module not in {"cli", "__main__"} and target == "cli":
                problems.append(f"{path.name}: {module} imports the CLI")
    return problems


def test_imports_point_inward() -> None:
    assert _violations() == []


def test_layering_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    fake = tmp_path / "publisher"
    fake.mkdir()
    (fake / "parse.py").write_text("import sqlalchemy\nfrom publisher.store import Store\n")
    (fake / "web.py").write_text("from publisher.mailer import send\n")
    problems = _violations(fake)
    assert any("parse imports sqlalchemy" in p for p in problems)
    assert any("core module parse imports store" in p for p in problems)
    assert any("adapter web imports adapter mailer" in p for p in problems)
