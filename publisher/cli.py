"""Command line: a thin click layer over App. Errors are caught once, in PublisherGroup."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from publisher.app import App, run_until_signal
from publisher.config import load_settings
from publisher.errors import ConfigError, PublisherError
from publisher.ingest import IngestReport

__all__ = ["main"]

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class PublisherGroup(click.Group):
    """Turns every PublisherError into one line on stderr and an exit code (rss2email's way)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PublisherError as exc:
            _fail(exc.message, exc.hint, 2 if isinstance(exc, ConfigError) else 1)
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), None, 1)


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def _app(ctx: click.Context) -> App:
    """The App for this invocation, created on first use so --help never touches config."""
    state: dict[str, Any] = ctx.ensure_object(dict)
    if "app" not in state:
        app = App(load_settings(state.get("config")))
        ctx.call_on_close(app.close)
        state["app"] = app
    return state["app"]  # type: ignore[no-any-return]


def _print_json(value: object) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


@click.group(cls=PublisherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (else $PUBLISHER_CONFIG, else config/publisher.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every event.")
@click.option("--log-json", is_flag=True, help="Log one JSON object a line.")
@click.version_option(package_name="publisher")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, verbose: bool, log_json: bool) -> None:
    """Publish an inbox of article files as feeds and digest emails.

    Example: publisher ingest && publisher build && publisher serve
    """
    ctx.ensure_object(dict)["config"] = config
    _setup_logging(logging.DEBUG if verbose else logging.INFO, log_json)


def _setup_logging(level: int, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
            )
        )
    root = logging.getLogger("publisher")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _JsonFormatter(logging.Formatter):
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


# -- ingest ------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print each file's outcome as JSON.")
@click.pass_context
def ingest(ctx: click.Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Ingest article files or folders (default: the inbox).

    Prints added / updated / duplicate / quarantined counts; exits 1 if any file
    was quarantined (moved to <inbox>/quarantine/ with a .error.txt reason).

    Example: publisher ingest ~/Downloads/new-articles/
    """
    app = _app(ctx)
    logging.getLogger("publisher.ingest").setLevel(logging.WARNING)
    with _LazyProgress("Ingesting", enabled=not as_json) as progress:
        report = app.ingest(list(paths) or None, progress=progress.update)
    if as_json:
        _print_json([dataclasses.asdict(r) for r in report.results])
    else:
        _print_ingest_report(report)
    if report.failed:
        sys.exit(1)


def _print_ingest_report(report: IngestReport) -> None:
    notable = [r for r in report.results if r.outcome in ("duplicate", "quarantined", "updated")]
    if notable:
        table = Table("file", "outcome", "detail", title="Files needing a look")
        for r in notable:
            style = "red" if r.outcome == "quarantined" else "yellow"
            table.add_row(r.file, f"[{style}]{r.outcome}[/]", r.detail)
        out.print(table)
    summary = Table(*report.summary().keys(), title="Ingest summary")
    summary.add_row(*(str(n) for n in report.summary().values()))
    out.print(summary)


class _LazyProgress:
    """A rich progress bar that only appears once a batch has taken more than a second."""

    def __init__(self, label: str, *, enabled: bool = True, delay: float = 1.0) -> None:
        self.label, self.enabled, self.delay = label, enabled, delay
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task: Any = None

    def __enter__(self) -> _LazyProgress:
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
                console=console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total)
        self.progress.update(self.task, completed=done, total=total)


@cli.command()
@click.pass_context
def watch(ctx: click.Context) -> None:
    """Watch the inbox; ingest every new or changed file once its writes settle.

    Temporary, hidden and partial files (*.tmp, *.part, *~, .*) are ignored until
    renamed. Stops cleanly on Ctrl-C or SIGTERM.

    Example: publisher watch
    """
    app = _app(ctx)
    run_until_signal(app.watch)


# -- articles ----------------------------------------------------------------------


@cli.group(cls=PublisherGroup)
def articles() -> None:
    """What is stored, normalized."""


@articles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def articles_list(ctx: click.Context, as_json: bool) -> None:
    """List stored articles, newest first.

    Example: publisher articles list --json | jq '.[].title'
    """
    found = _app(ctx).articles()
    if as_json:
        _print_json([a.as_dict(body=False) for a in found])
        return
    table = Table(
        "published", "title", "category", "author", "slug", title=f"{len(found)} articles"
    )
    zone = _app(ctx).settings.zone
    for a in found:
        table.add_row(
            a.published.astimezone(zone).date().isoformat(),
            a.title,
            a.category,
            a.author or "",
            a.slug,
        )
    out.print(table)


@articles.command("show")
@click.argument("article_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def articles_show(ctx: click.Context, article_id: str, as_json: bool) -> None:
    """Show one article (by id or slug) and the boilerplate removed from it.

    Example: publisher articles show 2020-09-01-harbin-regains-national-civilized-city-title
    """
    article = _app(ctx).article(article_id)
    if as_json:
        _print_json(article.as_dict())
        return
    zone = _app(ctx).settings.zone
    out.print(f"[bold]{article.title}[/]", markup=True)
    for label, value in [
        ("id", article.id),
        ("slug", article.slug),
        ("category", " > ".join(article.category_path)),
        ("published", article.published.astimezone(zone).isoformat()),
        ("updated", article.updated.astimezone(zone).isoformat()),
        ("ingested", article.ingested.astimezone(zone).isoformat()),
        ("author", article.author or "—"),
        ("source", article.source or "—"),
        ("file", article.source_file),
    ]:
        out.print(f"{label:>10}: {value}", markup=False)
    out.print("")
    for block in article.blocks:
        out.print(block.text, markup=False)
        out.print("")
    if article.removed:
        table = Table("rule", "text", "reason", title="Removed boilerplate")
        for r in article.removed:
            table.add_row(r.rule, r.text, r.reason)
        out.print(table)


# -- feeds and pages ---------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_context
def build(ctx: click.Context, as_json: bool) -> None:
    """Write the feeds, archives and pages into the output folder.

    Writes atom.xml, rss.xml, feed.json, index.html, category/<slug>/*, articles/*.html
    and archive/<n>.xml; files whose bytes would not change are left alone.

    Example: publisher build && ls public/
    """
    app = _app(ctx)
    result = app.build_feeds()
    if as_json:
        _print_json(result.as_dict())
        return
    out.print(
        f"{len(result.written)} files written, {result.unchanged} unchanged "
        f"in {result.seconds:.2f}s -> {app.settings.output_dir}",
        markup=False,
    )


@cli.command()
@click.option("--host", help="Interface to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port; 0: any).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the output folder and the subscribe / unsubscribe pages over HTTP.

    Feeds get ETag / Last-Modified (304 when unchanged), gzip and their own content
    types. Stops cleanly on Ctrl-C or SIGTERM.

    Example: publisher serve --host 0.0.0.0 --port 8080
    """
    from publisher.web import create_app
    from publisher.web import serve as serve_http

    app = _app(ctx)
    settings = app.settings
    if not (settings.output_dir / "index.html").is_file():
        click.echo(f"note: no index.html in {settings.output_dir}; run `publisher build`", err=True)
    web = create_app(settings, extra_routes=app.web_routes())
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    run_until_signal(lambda stop: serve_http(web, bind_host, bind_port, stop))


def main() -> None:
    cli(prog_name="publisher")
