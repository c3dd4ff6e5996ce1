"""The terminal: what the CLI prints, how it logs, and how untrusted text stays harmless.

Every value from outside (a title, a file name, an SMTP reply) is shown through `text`:
never read as rich markup, control characters as visible escapes. A `Terminal` belongs to
one invocation and knows the secrets of its settings, so errors, logs and --json output
never show them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import click
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from publisher.config import Settings
from publisher.secrecy import printable, redact, secret_values

__all__ = [
    "EscapeControls",
    "JsonFormatter",
    "LazyProgress",
    "Redactor",
    "Terminal",
    "counts_table",
    "err",
    "keyed_listing",
    "out",
    "route_library_logs",
    "send_progress",
    "setup_logging",
    "text",
    "tsv_lines",
    "worker_progress",
]

# the process's two streams, like sys.stdout and sys.stderr: rich resolves the file on each
# print, so click's CliRunner captures them too
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True)

# json.dumps escapes C0 itself; these it leaves raw (or, surrogates, cannot encode)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")

LOGGERS = ("publisher", "apscheduler")  # whose handlers scrub secrets


def text(value: object, style: str = "") -> Text:
    """A value from outside for rich: never read as markup (`[/]` would raise MarkupError),
    control characters shown as escapes."""
    return Text(printable(str(value)), style=style)


class Terminal:
    """One invocation's output: stdout and stderr, with its settings' secrets scrubbed from
    errors, --json and the log."""

    def __init__(self) -> None:
        self.secrets: tuple[str, ...] = ()

    def keep_secret(self, settings: Settings) -> None:
        """Scrub these settings' secret values from errors, --json and (from now on) logs."""
        self.secrets = secret_values(settings)
        for name in LOGGERS:
            for handler in logging.getLogger(name).handlers:
                handler.filters[:] = [f for f in handler.filters if not isinstance(f, Redactor)]
                handler.addFilter(Redactor(self.secrets))

    def say(self, message: str) -> None:
        """One line on stdout; `message` may hold untrusted text."""
        out.print(text(message))

    def show(self, renderable: RenderableType) -> None:
        """A table (or blank line) on stdout; untrusted cells are already `text`."""
        out.print(renderable)

    def tell(self, message: str) -> None:
        """One line on stderr through rich, beside the progress bars (first run, worker)."""
        err.print(text(message))

    def warn(self, message: str) -> None:
        click.echo(f"warning: {printable(message)}", err=True)

    def note(self, message: str) -> None:
        click.echo(f"note: {printable(message)}", err=True)

    def complain(self, message: str) -> None:
        """A line on stderr that is neither a warning nor a note (a refused CSV row)."""
        click.echo(printable(message), err=True)

    def print_json(self, value: object) -> None:
        """`value` as indented JSON on stdout: nothing else goes there."""
        shown = json.dumps(value, ensure_ascii=False, indent=2)
        shown = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", shown)
        click.echo(redact(shown, self.secrets))

    def print_tsv(self, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        """`--format tsv` on stdout: a header line, one record a line, nothing else."""
        for line in tsv_lines(header, rows):
            click.echo(redact(line, self.secrets))

    def fail(
        self, message: str, hint: str | None, code: int, *, one_line: bool = False
    ) -> NoReturn:
        """The error on stderr, then exit. A bad setting is exactly one line, naming the
        setting, with its fix after a ';'; other errors put the hint on a line of its own."""
        shown = printable(redact(message, self.secrets))
        fix = printable(redact(hint, self.secrets)) if hint else None
        if one_line and fix:
            click.echo(f"error: {shown}; {fix}", err=True)
        else:
            click.echo(f"error: {shown}", err=True)
            if fix:
                click.echo(f"hint: {fix}", err=True)
        sys.exit(code)


def counts_table(title: str, counts: Mapping[str, int]) -> Table:
    """One row of counts under their names (an ingest or send summary)."""
    table = Table(*counts.keys(), title=title)
    table.add_row(*(str(n) for n in counts.values()))
    return table


def keyed_listing(
    title: str,
    key: str,
    others: Sequence[str],
    rows: Sequence[tuple[Text, Sequence[Text]]],
    *,
    droppable: Sequence[str],
) -> RenderableType:
    """A table whose `key` column (a slug, an email) is never cut: rich wraps the `others`,
    and the `droppable` ones (last first) are left out while the console is too narrow for
    the longest key beside them. When not even that fits, one record a block: the key on a
    line of its own, whole, the other values below it."""
    width = out.size.width
    longest = max((cell_len(k.plain) for k, _ in rows), default=0)
    key_width = max(cell_len(key), longest)
    kept = list(others)
    for name in reversed(droppable):
        if _fits(width, key_width, len(kept)):
            break
        kept.remove(name)
    if not _fits(width, key_width, len(kept)):
        return _blocks(title, others, rows)
    table = Table(Column(key, no_wrap=True, min_width=key_width), *kept, title=title)
    for key_cell, cells in rows:
        chosen = dict(zip(others, cells, strict=True))
        table.add_row(key_cell, *(chosen[name] for name in kept))
    return table


# below this a column wraps a title or a name into a word a line
_NARROWEST_COLUMN = 10


def _fits(width: int, key_width: int, others: int) -> bool:
    borders = 3 * (others + 1) + 1  # a rule and a space either side of every cell
    return key_width + borders + _NARROWEST_COLUMN * others <= width


def _blocks(
    title: str, others: Sequence[str], rows: Sequence[tuple[Text, Sequence[Text]]]
) -> Group:
    lines: list[RenderableType] = [Text(title, style="bold")]
    for key_cell, cells in rows:
        details = Text("  ").join(
            Text.assemble(f"{name}: ", cell)
            for name, cell in zip(others, cells, strict=True)
            if cell.plain
        )
        lines += [Text(""), key_cell, Text.assemble("  ", details)]
    return Group(*lines)


def tsv_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """Tab-separated lines, the header first: a tab or newline inside a value is `\\t`,
    `\\n`, every control character an escape, as everywhere else the CLI prints."""
    yield "\t".join(header)
    for row in rows:
        yield "\t".join(printable(value) for value in row)


# -- progress ------------------------------------------------------------------------


class LazyProgress:
    """A rich progress bar that only appears once a batch has taken more than a second."""

    def __init__(self, label: str, *, enabled: bool = True, delay: float = 1.0) -> None:
        self.label, self.enabled, self.delay = label, enabled, delay
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            if time.monotonic() - self.started < self.delay:
                return
            self.progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)


class RateColumn(ProgressColumn):
    """Messages per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "— msg/s", style="progress.data.speed")


def send_progress() -> Progress:
    """The bar of `publisher send`: messages done of the run, rate, time left; gone at the end."""
    return Progress(
        TextColumn("Sending"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


def worker_progress() -> Progress:
    """The bar of `publisher worker`: which run, how far, and a detail line of its own."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        console=err,
    )


# -- logging -------------------------------------------------------------------------


def setup_logging(level: int, as_json: bool) -> None:
    """Publisher's log on stderr, plain or one JSON object a line, every record one line."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    handler.addFilter(EscapeControls())
    root = logging.getLogger("publisher")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def route_library_logs(name: str) -> None:
    """Send a library's warnings through our handler (plain or JSON), not the root logger."""
    library = logging.getLogger(name)
    library.handlers[:] = logging.getLogger("publisher").handlers
    library.setLevel(logging.WARNING)
    library.propagate = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            },
            ensure_ascii=False,
        )


class EscapeControls(logging.Filter):
    """A handler filter: a record's message becomes one line with control characters escaped,
    so no logged value (a file name with a newline) can forge or hide a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = printable(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


class Redactor(logging.Filter):
    """A handler filter: scrubs the message and any traceback of a record before output."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True
