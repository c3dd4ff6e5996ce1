"""Every module has a band, and imports point one way (design.md, "Layout"):

    face -> wiring -> use cases -> adapters and core -> foundation

Core never imports an adapter, an adapter never imports another adapter, a third-party
library is imported only by the modules that own it, nobody imports another module's
private names, and there is no import cycle. A module missing from BANDS fails: a new
file must say where it belongs.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publisher"

FOUNDATION, CORE, ADAPTER, USE_CASE, WIRING, FACE = (
    "foundation",
    "core",
    "adapter",
    "use case",
    "wiring",
    "face",
)
LEVEL = {FOUNDATION: 0, CORE: 1, ADAPTER: 1, USE_CASE: 2, WIRING: 3, FACE: 4}

BANDS = {
    "": FOUNDATION,  # the package's face: a version string
    "errors": FOUNDATION,
    "model": FOUNDATION,
    "config": FOUNDATION,
    "secrecy": FOUNDATION,
    "links": FOUNDATION,
    # pure core: values in, values out
    "parse": CORE,
    "body": CORE,
    "dedup": CORE,
    "dedup.minhash": CORE,
    "dedup.near": CORE,
    "dedup.overlay": CORE,
    "dedup.rules": CORE,
    "digest": CORE,
    "feeds": CORE,
    "render": CORE,
    "messages": CORE,
    "signing": CORE,
    "pacing": CORE,  # per domain group limits: which group, slot arithmetic
    "tokens": CORE,
    "webhooks": CORE,
    "webhooks.mailgun": CORE,
    "webhooks.postmark": CORE,
    "webhooks.sendgrid": CORE,
    "webhooks.ses": CORE,
    "bounces": CORE,
    "warmup": CORE,  # a new sending domain's daily allowance
    "initconfig": CORE,  # what `publisher init` writes: checked answers, config text, DNS
    "websub": CORE,
    "mailkeep": ADAPTER,
    "imappoll": ADAPTER,
    "webcopies": CORE,
    "scaffold": ADAPTER,  # `publisher init`: a production config folder and its keys
    "websubhttp": ADAPTER,
    # adapters: files, sockets, the database, the clock
    "inbox": ADAPTER,
    "inbox.moves": ADAPTER,
    "inbox.names": ADAPTER,
    "inbox.reading": ADAPTER,
    "inbox.tree": ADAPTER,
    "output": ADAPTER,
    "search": ADAPTER,  # the Pagefind search bundles under search/
    "mailer": ADAPTER,
    "resolver": ADAPTER,
    "webprobe": ADAPTER,
    "smtpserver": ADAPTER,  # aiosmtpd: the part every SMTP server of ours shares
    "smtpserver.inbound": ADAPTER,
    "smtpserver.sink": ADAPTER,
    "watch": ADAPTER,
    "watch.closewrite": ADAPTER,
    "watch.polling": ADAPTER,
    "watch.settling": ADAPTER,
    "schedule": ADAPTER,
    "store": ADAPTER,
    "store.articles": ADAPTER,
    "store.boilerplate": ADAPTER,
    "store.builds": ADAPTER,
    "store.chunks": ADAPTER,
    "store.claims": ADAPTER,
    "store.consent": ADAPTER,
    "store.deletions": ADAPTER,
    "store.engine": ADAPTER,
    "store.ingest_batch": ADAPTER,
    "store.ledger": ADAPTER,
    "store.locks": ADAPTER,
    "store.pacing": ADAPTER,
    "store.pages": ADAPTER,
    "store.replays": ADAPTER,
    "store.rows": ADAPTER,
    "store.runs": ADAPTER,
    "store.schema": ADAPTER,
    "store.status": ADAPTER,
    "store.subscribers": ADAPTER,
    "store.websub": ADAPTER,
    "store.warmup": ADAPTER,
    "web": ADAPTER,
    "web.connections": ADAPTER,
    "web.security": ADAPTER,
    "web.sns": ADAPTER,
    "web.static": ADAPTER,
    "web.subscriptions": ADAPTER,
    "web.webhooks": ADAPTER,
    "web.preferences": ADAPTER,
    "web.pages": ADAPTER,
    "web.hub": ADAPTER,
    # use cases: the only modules that open transactions
    "usecase": USE_CASE,  # what every use case over one store shares
    "boilerplate": USE_CASE,
    "consent": USE_CASE,
    "deleting": USE_CASE,
    "ingest": USE_CASE,
    "prepare": USE_CASE,
    "site": USE_CASE,
    "subscribers": USE_CASE,
    "subscribing": USE_CASE,
    "inbound": USE_CASE,
    "preferences": USE_CASE,
    "websubbing": USE_CASE,
    "status": USE_CASE,
    "doctor": USE_CASE,
    "sending": USE_CASE,
    "sending.archive": USE_CASE,
    "sending.claiming": USE_CASE,
    "sending.due": USE_CASE,
    "sending.pacing": USE_CASE,
    "sending.preview": USE_CASE,
    "sending.produce": USE_CASE,
    "sending.reports": USE_CASE,
    "sending.runs": USE_CASE,
    "sending.warmup": USE_CASE,
    # wiring and face
    "app": WIRING,
    "runner": WIRING,
    "cli": FACE,
    "config_docs": FACE,  # python -m publisher.config_docs: docs/configuration.md
    "console": FACE,
    "__main__": FACE,
}

# every runtime dependency, and the components (first part of a module name) that may
# import it
OWNERS = {
    "sqlalchemy": {"store"},
    "psycopg": {"store"},
    "aiosmtplib": {"mailer"},
    "aiosmtpd": {"smtpserver"},
    "apscheduler": {"schedule"},
    "watchfiles": {"watch"},
    "pagefind": {"search"},
    "inotify_simple": {"watch"},
    "starlette": {"web"},
    "uvicorn": {"web"},
    "h11": {"web"},
    "multipart": {"web"},
    "brotli": {"web"},
    "jinja2": {"render"},
    "markdown_it": {"body"},
    "nh3": {"body"},
    "feedgen": {"feeds"},
    "lxml": {"feeds"},
    "css_inline": {"messages"},
    "email_validator": {"messages"},
    "itsdangerous": {"tokens"},
    "cryptography": {"webhooks", "scaffold", "signing"},
    "dns": {"resolver"},
    "publicsuffixlist": {"resolver"},
    "numpy": {"dedup", "prepare", "ingest"},
    "xxhash": {"dedup", "prepare"},
    "click": {"cli", "console"},
    "rich": {"cli", "console"},
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(kind, target, names) for each import: kind 'publisher' (target: a module of ours) or
    'external' (target: the top-level distribution name)."""
    package_parts = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield _classify(alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                dotted = ".".join(["publisher", *base, *(node.module or "").split(".")])
                yield _classify(dotted.rstrip("."), names)
            elif node.module == "publisher":
                for name in names:  # `from publisher import digest`
                    yield "publisher", name, ()
            elif node.module:
                yield _classify(node.module, names)


def _classify(dotted: str, names: tuple[str, ...]) -> tuple[str, str, tuple[str, ...]]:
    if dotted == "publisher" or dotted.startswith("publisher."):
        return "publisher", dotted.removeprefix("publisher").lstrip("."), names
    return "external", dotted.split(".")[0], names


def graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the modules of ours it imports, and every problem found on the way."""
    edges: dict[str, set[str]] = {}
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        band = BANDS.get(module)
        if band is None:
            problems.append(f"{module or '(package)'}: unknown module; name its band in BANDS")
            continue
        component = module.split(".")[0]
        edges[module] = set()
        for kind, target, names in imports(path, module):
            if kind == "external":
                if target in sys.stdlib_module_names or target == "__future__":
                    continue
                owners = OWNERS.get(target)
                if owners is None:
                    problems.append(f"{module}: imports {target}, which OWNERS does not know")
                elif component not in owners:
                    problems.append(f"{module}: imports {target} (only {sorted(owners)} may)")
                continue
            edges[module].add(target)
            other = BANDS.get(target)
            if other is None:
                continue  # reported as unknown where it is defined, or a missing module
            if LEVEL[other] > LEVEL[band]:
                problems.append(f"{module} ({band}) imports {target} ({other}): upward")
            if band == CORE and other == ADAPTER:
                problems.append(f"{module}: core imports adapter {target}")
            if band == ADAPTER and other == ADAPTER and target.split(".")[0] != component:
                problems.append(f"{module}: adapter imports adapter {target}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                problems.append(f"{module}: imports private {', '.join(private)} of {target}")
    return edges, problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing
    itself (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    edges, problems = graph(package)
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(edges)]
    present = {module_name(p, package) for p in package.rglob("*.py")}
    if package == PACKAGE:
        problems += [f"{m}: in BANDS but no such module" for m in sorted(set(BANDS) - present)]
    return problems


def test_every_module_has_a_band_and_imports_point_one_way() -> None:
    assert violations() == []


def test_the_check_catches_each_kind_of_violation(tmp_path: Path) -> None:
    fake = tmp_path / "publisher"
    (fake / "store").mkdir(parents=True)
    (fake / "parse.py").write_text("import sqlalchemy\nfrom publisher.store import Store\n")
    (fake / "mailer.py").write_text("from publisher.watch import settled\n")
    (fake / "watch.py").write_text("from publisher.app import App\n")
    (fake / "store" / "__init__.py").write_text("from publisher.store.engine import Store\n")
    (fake / "store" / "engine.py").write_text("from publisher.store import Store\n")
    (fake / "feeds.py").write_text("import requests\nfrom publisher.parse import _private\n")
    (fake / "stray.py").write_text("x = 1\n")
    problems = violations(fake)
    expected = [
        "parse: imports sqlalchemy (only ['store'] may)",
        "parse: core imports adapter store",
        "mailer: adapter imports adapter watch",
        "watch (adapter) imports app (wiring): upward",
        "feeds: imports requests, which OWNERS does not know",
        "feeds: imports private _private of parse",
        "stray: unknown module; name its band in BANDS",
        "import cycle: store -> store.engine",
    ]
    for problem in expected:
        assert problem in problems, (problem, problems)
