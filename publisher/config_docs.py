"""docs/configuration.md from the Settings dataclasses: every setting, its type, default,
environment variable and meaning.

The meaning is the comment written beside the field in config.py (the lines right above
it and the one after it on its line), so a setting documented where it is defined is
documented here too, and a new field in any section appears without touching this file.
Regenerate with `python -m publisher.config_docs docs/configuration.md`.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import io
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from publisher.config import ENVIRONMENT, SECRET_SETTINGS, Settings

__all__ = ["DOC_PATH", "REGENERATE", "SettingDoc", "field_comments", "render", "setting_docs"]

DOC_PATH = Path("docs/configuration.md")
REGENERATE = f"python -m publisher.config_docs {DOC_PATH}"
# fields of Settings that the loader fills in itself; no file or variable sets them
NOT_SETTINGS = frozenset({"config_file", "notices"})


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    section: str  # "" for the top level, else "smtp", "inbound.imap"
    name: str
    kind: str
    default: str
    environment: str | None
    meaning: str
    secret: bool

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment above it (contiguous comment lines) and after it on its
    line, from the class's source."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, alone on its line)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            alone = not token.line[: token.start[1]].strip()
            comments[token.start[0]] = (token.string.lstrip("#").strip(), alone)
    found: dict[str, str] = {}
    definition = ast.parse(source).body[0]
    assert isinstance(definition, ast.ClassDef)
    for node in definition.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and comments[line][1]:
            above.insert(0, comments[line][0])
            line -= 1
        after = comments.get(node.end_lineno or node.lineno)
        parts = [*above, after[0]] if after and not after[1] else above
        found[node.target.id] = " ".join(part for part in parts if part)
    return found


def setting_docs(root: type = Settings) -> list[SettingDoc]:
    """One entry per setting of `root` and of every section dataclass below it."""
    return list(_walk(root, ""))


def _walk(cls: type, section: str) -> Iterator[SettingDoc]:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    nested: list[tuple[type, str]] = []
    for f in dataclasses.fields(cls):
        if not section and f.name in NOT_SETTINGS:
            continue
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            nested.append((kind, f"{section}.{f.name}" if section else f.name))
            continue
        if _table_of(kind) is not None:  # an array of tables: one [[x.y]] per item
            nested.append((_table_of(kind), f"{section}.{f.name}" if section else f.name))
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        dotted = f"{section}.{f.name}" if section else f.name
        yield SettingDoc(
            section=section,
            name=f.name,
            kind=_kind(kind),
            default=_default(default),
            environment=_ENVIRONMENT_OF.get((section, f.name)),
            meaning=comments.get(f.name, ""),
            secret=dotted in SECRET_SETTINGS,
        )
    for child, name in nested:
        yield from _walk(child, name)


def _table_of(kind: Any) -> Any:
    """The dataclass D of a `tuple[D, ...]` field (written [[section.name]]), else None."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple and args and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def array_sections(root: type = Settings) -> set[str]:
    """The sections written as arrays of tables ([[smtp.relays]])."""
    found: set[str] = set()

    def walk(cls: type, section: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, name = hints[f.name], f"{section}.{f.name}" if section else f.name
            if isinstance(kind, type) and dataclasses.is_dataclass(kind):
                walk(kind, name)
            elif _table_of(kind) is not None:
                found.add(name)
                walk(_table_of(kind), name)

    walk(root, "")
    return found


_ENVIRONMENT_OF = {place: variable for variable, place in ENVIRONMENT.items()}


def _kind(kind: Any) -> str:
    optional = False
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        members = [k for k in typing.get_args(kind) if k is not type(None)]
        optional = len(members) < len(typing.get_args(kind))
        kind = members[0] if len(members) == 1 else kind
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        shown = " \\| ".join(f'`"{member.value}"`' for member in kind)
    else:
        shown = {str: "string", int: "integer", float: "number", bool: "boolean"}.get(kind, "")
        if not shown:
            shown = "path" if kind is Path else getattr(kind, "__name__", str(kind))
    return f"{shown}, optional" if optional else shown


def _default(value: Any) -> str:
    if value is None or value == "":
        return "unset" if value is None else '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str | Path):
        shown = str(value).replace("|", "\\|").replace("`", "'")
        return f'`"{shown}"`'
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(root: type = Settings) -> str:
    """The whole of docs/configuration.md."""
    out = [
        "# Configuration",
        "",
        f"<!-- generated from publisher/config.py by `{REGENERATE}`; do not edit -->",
        "",
        "Every setting of `publisher.toml`, read from `--config FILE`, else `$PUBLISHER_CONFIG`,",
        "else `config/publisher.toml`. A variable in the environment beats the file. Relative",
        "paths are relative to the config file's folder. The defaults below are what applies",
        "when a setting is left out; `config/publisher.toml` is the demo (localhost URLs, the",
        "seed articles, a local SMTP sink) and sets some of them differently, while",
        "`publisher init DIR` writes a config for production. A *secret* belongs in the",
        "environment (or a file only its owner may read), not in the config file.",
        "",
    ]
    by_section: dict[str, list[SettingDoc]] = {}
    for doc in setting_docs(root):
        by_section.setdefault(doc.section, []).append(doc)
    arrays = array_sections(root)
    for section, docs in by_section.items():
        if section in arrays:
            out += [f"## `[[{section}]]`", "", _ARRAY_NOTE, ""]
        else:
            out += [f"## `[{section}]`" if section else "## Top level", ""]
        out += ["| setting | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for doc in docs:
            variable = f"`{doc.environment}`" if doc.environment else ""
            meaning = _cell(doc.meaning) + (" (*secret*)" if doc.secret else "")
            out.append(f"| `{doc.name}` | {doc.kind} | {doc.default} | {variable} | {meaning} |")
        out.append("")
    return "\n".join(out)


_ARRAY_NOTE = (
    "Written once per item, in order. `[[smtp.relays]]`: the relays tried after `[smtp]` "
    "(relay 1): when the relay in use cannot be reached or refuses the login, the next one "
    "takes over for the rest of the run (a recipient's 5xx reply is that recipient's, never "
    "a reason to change relays); when every relay is down the run is left open for the next "
    "`send`. A relay's password comes from the environment variable its `password_env` "
    "names; `[smtp]`'s pool, retry and sender settings apply to every relay."
)


def main(argv: list[str] | None = None) -> int:
    """`python -m publisher.config_docs [FILE]`: write FILE, or print to stdout."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
