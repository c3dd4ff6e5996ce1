"""Settings are fixed once an object holds them: an object sets its `settings` in its own
`__init__` and nothing reassigns them later (the CLI resolves the secret key first, then
builds the App). Read from the source, like tests/test_layering.py."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publisher"


def settings_assignments(source: str) -> list[tuple[int, str]]:
    """(line, target) of every assignment to a `.settings` attribute outside an `__init__`
    that sets its own (`self.settings = ...`); starlette's `app.state` is filled where the
    web app is created, so `*.state.settings` is not an object's settings."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if not (isinstance(target, ast.Attribute) and target.attr == "settings"):
                continue
            owner = ast.unparse(target.value)
            if (owner == "self" and function == "__init__") or owner.endswith(".state"):
                continue
            found.append((node.lineno, ast.unparse(target)))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source), None)
    return found


def test_no_code_reassigns_the_settings_of_an_object() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}:{line}: {target}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, target in settings_assignments(path.read_text(encoding="utf-8"))
    }
    assert found == set()


def test_the_check_sees_a_reassignment() -> None:
    source = (
        "class A:\n"
        "    def __init__(self, settings):\n"
        "        self.settings = settings\n"
        "    def later(self, other):\n"
        "        self.settings = other\n"
        "def command(app, new):\n"
        "    settings = app.settings = new\n"
        "    web.state.settings = settings\n"
    )
    assert settings_assignments(source) == [(5, "self.settings"), (7, "app.settings")]
