"""Command line: a thin click layer over App. Errors are caught once, in PublisherGroup.

Each command loads what it needs when it runs (App, and through it the store, the dedup
index, the mailer), so `publisher --help` and a bad flag answer at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from publisher.config import Settings, TlsMode, load_settings
from publisher.console import (
    LazyProgress,
    Terminal,
    counts_table,
    keyed_listing,
    route_library_logs,
    send_progress,
    setup_logging,
    text,
    worker_progress,
)
from publisher.errors import ConfigError, MissingDatabase, PublisherError, UsageError
from publisher.model import Article, FileOutcome
from publisher.secrecy import ensure_secret_key, printable

if TYPE_CHECKING:  # typing only: App and the services load inside the commands
    from publisher.app import App
    from publisher.ingest import IngestReport
    from publisher.initconfig import InitAnswers

__all__ = ["main"]

# `ingest` and `build` ping the WebSub hubs once at their end, within this long
WEBSUB_ONE_SHOT_SECONDS = 5.0
EX_TEMPFAIL = 75  # sysexits.h: an MTA's pipe transport defers the message and retries
_NOTABLE = (
    FileOutcome.DUPLICATE,
    FileOutcome.QUARANTINED,
    FileOutcome.UPDATED,
    FileOutcome.DELETED,
)

T = TypeVar("T")


@dataclasses.dataclass
class Invocation:
    """What one `publisher ...` call shares between the group and its command (ctx.obj)."""

    config: Path | None = None
    terminal: Terminal = dataclasses.field(default_factory=Terminal)
    app: App | None = None


def _invocation(ctx: click.Context) -> Invocation:
    return ctx.ensure_object(Invocation)


def _terminal(ctx: click.Context) -> Terminal:
    return _invocation(ctx).terminal


class PublisherGroup(click.Group):
    """Turns every PublisherError into one line on stderr and an exit code (rss2email's way)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PublisherError as exc:
            terminal = _terminal(ctx)
            if isinstance(exc, ConfigError | UsageError):
                terminal.fail(exc.message, exc.hint, 2, one_line=True)
            terminal.fail(exc.message, exc.hint, 1)
        except OSError as exc:
            message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
            _terminal(ctx).fail(message, None, 1)


def _settings(ctx: click.Context) -> Settings:
    """The loaded settings: warns about secrets others can read, and keeps the secret
    values out of everything printed. Called once, by whatever builds the App."""
    terminal = _terminal(ctx)
    settings = load_settings(_invocation(ctx).config)
    for notice in settings.notices:
        terminal.warn(notice)
    terminal.keep_secret(settings)
    return settings


def _web_settings(
    ctx: click.Context, insecure_dev: bool, *, key_file_made_on_start: bool
) -> Settings:
    """The settings to serve with: refuse (exit 2) without a secret key to sign links,
    unless --insecure-dev, which signs with a throwaway key."""
    settings = _settings(ctx)
    if settings.secret_key or (key_file_made_on_start and settings.secret_key_file):
        return settings  # `run` writes a random secret_key_file (0600) on its first start
    terminal = _terminal(ctx)
    if not insecure_dev:
        terminal.fail(
            "no secret key is set; refusing to start the web server "
            "(it signs confirm and unsubscribe links)",
            "set PUBLISHER_SECRET_KEY or secret_key_file, or pass --insecure-dev "
            "for a throwaway key (local testing only)",
            2,
        )
    terminal.warn(
        "--insecure-dev: no secret key set; using a throwaway key, so confirm and "
        "unsubscribe links stop working when this process stops"
    )
    return dataclasses.replace(settings, secret_key=token_urlsafe(32))


def _app(ctx: click.Context, *, read_only: bool = False, settings: Settings | None = None) -> App:
    """The App for this invocation, created on first use so --help never touches config.

    `settings`: the final settings when the command resolved its secret key first (else
    the loaded ones); the App never changes them. `read_only` (status, list, show,
    export): the database is opened to read only, so these commands create nothing and
    work on a database they may not write."""
    state = _invocation(ctx)
    if state.app is None:
        from publisher.app import App

        final = settings or _settings(ctx)
        state.terminal.keep_secret(final)
        state.app = App(final, read_only=read_only)
        ctx.call_on_close(state.app.close)
    return state.app


def _keyed_app(ctx: click.Context) -> App:
    """The App of a command that stores keyed hashes of addresses (consent history,
    suppressions): a fresh checkout writes its secret key file first, as `send` does, so
    the hashes it makes are the ones every later command makes."""
    return _app(ctx, settings=ensure_secret_key(_settings(ctx)))


def _stored(ctx: click.Context, read: Callable[[App], list[T]]) -> list[T]:
    """What a read-only command lists; nothing, with a note, when no database exists yet."""
    try:
        return read(_app(ctx, read_only=True))
    except MissingDatabase as exc:
        _terminal(ctx).note(exc.message)
        return []


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
    _invocation(ctx).config = config
    setup_logging(logging.DEBUG if verbose else logging.INFO, log_json)


# -- init --------------------------------------------------------------------------


@cli.command()
@click.argument("folder", metavar="[DIR]", default=".", type=click.Path(path_type=Path))
@click.option("--base-url", help="The site's public URL, e.g. https://news.example.org/.")
@click.option("--from", "from_address", help='The From address, e.g. "News <news@example.org>".')
@click.option("--title", help="The site's title (default: the From address's name).")
@click.option(
    "--timezone", help="IANA zone of article dates and the schedule (default: this machine's)."
)
@click.option("--list-id", help="The digest's List-Id (default: digest.<From domain>).")
@click.option("--smtp-host", help="The SMTP relay (default: 127.0.0.1, an MTA on this host).")
@click.option(
    "--smtp-port", type=click.IntRange(1, 65535), help="Default: 25 on this host, else 587."
)
@click.option(
    "--smtp-tls",
    type=click.Choice(["none", "starttls", "tls"]),
    help="Default: none on this host, else starttls.",
)
@click.option("--smtp-username", help="SMTP login (the password goes in PUBLISHER_SMTP_PASSWORD).")
@click.option("--database-url", default="sqlite:///data/publisher.db", show_default=True)
@click.option("--dkim", is_flag=True, help="Make an RSA-2048 DKIM key (dkim.key, mode 0600).")
@click.option("--dkim-selector", default="publisher", show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing publisher.toml (keys are kept).")
@click.pass_context
def init(ctx: click.Context, /, folder: Path, **given: Any) -> None:
    """Write a production config into DIR (publisher.toml, secret_key, dkim.key with --dkim)
    and print the DNS records `publisher doctor` checks. On a terminal it asks for what the
    flags leave out; without one, --base-url and --from are required.

    Example: publisher init /srv/publisher --base-url https://news.example.org/
    --from "News <news@example.org>"
    """
    from publisher import initconfig, scaffold

    terminal = _terminal(ctx)
    answers = _init_answers(given)
    result = scaffold.write_production_config(folder, answers, force=given["force"])
    for path in result.written:
        private = path.name != initconfig.CONFIG_NAME
        terminal.say(f"wrote {path}{' (mode 0600)' if private else ''}")
    for path in result.kept:
        terminal.say(f"kept {path} (already there)")
    for notice in result.notices:
        terminal.warn(notice)
    if answers.base_url.startswith("http:"):
        terminal.warn("base_url is not https: doctor fails it, and mail clients warn")
    click.echo("\nDNS records `publisher doctor` looks for (zone-file lines):")
    for record in result.records:
        click.echo(f"  ; {record.why}\n  {printable(record.zone_line())}")
    if not answers.dkim_selector:
        click.echo("  ; DKIM: no key made here (--dkim makes one); your relay must sign for it")
    elif not result.dkim_wired:
        terminal.note("the [dkim] lines are written as comments: this publisher does not sign")
    click.echo(f"\nNext: publisher --config {result.config} doctor")


def _init_answers(given: dict[str, Any]) -> InitAnswers:
    """The checked answers of `init`: the flags, and on a terminal prompts for the rest."""
    from publisher import initconfig
    from publisher.scaffold import machine_timezone

    required = {"base_url": "--base-url", "from_address": "--from"}
    missing = [flag for name, flag in required.items() if not given[name]]
    ask = bool(missing) and sys.stdin.isatty()
    if missing and not ask:
        raise UsageError(
            f"missing {' and '.join(missing)} (no terminal to ask on)",
            "pass them as flags, e.g. --base-url https://news.example.org/",
        )

    def value(name: str, label: str, check: Callable[[str], str], default: str | None) -> str:
        if given.get(name):
            return check(given[name])
        if not ask:
            assert default is not None
            return check(default)

        def proc(text: str) -> str:
            try:
                return check(text)
            except UsageError as exc:
                raise click.UsageError(f"{exc.message}; {exc.hint or ''}".rstrip("; ")) from exc

        reply: str = click.prompt(label, default=default, value_proc=proc)
        return reply

    base_url = value("base_url", "Public URL of the site", initconfig.check_base_url, None)
    from_address = value("from_address", "From address", initconfig.check_from_address, None)
    title = value(
        "title", "Site title", initconfig.check_title, initconfig.default_title(from_address)
    )
    zone = value("timezone", "Time zone", initconfig.check_timezone, machine_timezone())
    list_id = value(
        "list_id", "List-Id", initconfig.check_list_id, initconfig.default_list_id(from_address)
    )
    smtp_host = value("smtp_host", "SMTP relay host", initconfig.check_host, "127.0.0.1")
    port, tls = initconfig.smtp_defaults(smtp_host)
    return initconfig.InitAnswers(
        base_url=base_url,
        from_address=from_address,
        title=title or initconfig.default_title(from_address),
        timezone=zone,
        list_id=list_id,
        smtp_host=smtp_host,
        smtp_port=given["smtp_port"] or port,
        smtp_tls=TlsMode(given["smtp_tls"]) if given["smtp_tls"] else tls,
        smtp_username=given["smtp_username"] or None,
        database_url=given["database_url"],
        dkim_selector=initconfig.check_selector(given["dkim_selector"]) if given["dkim"] else None,
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
    app, terminal = _app(ctx), _terminal(ctx)
    if not paths and (seeded := app.seed_inbox()):
        terminal.tell(f"first run: copied {seeded} seed articles into {app.settings.inbox}")
    logging.getLogger("publisher.ingest").setLevel(logging.WARNING)
    with LazyProgress("Ingesting", enabled=not as_json) as progress:
        report = app.ingest(list(paths) or None, progress=progress.update)
    app.announce_pending(WEBSUB_ONE_SHOT_SECONDS)
    if as_json:
        terminal.print_json([dataclasses.asdict(r) for r in report.results])
    else:
        _show_ingest_report(terminal, report)
    if report.failed:
        sys.exit(1)


def _show_ingest_report(terminal: Terminal, report: IngestReport) -> None:
    notable = [r for r in report.results if r.outcome in _NOTABLE]
    if notable:
        table = Table("file", "outcome", "detail", title="Files needing a look")
        for r in notable:
            style = "red" if r.outcome is FileOutcome.QUARANTINED else "yellow"
            table.add_row(text(r.file), text(r.outcome, style), text(r.detail))
        terminal.show(table)
    for w in report.withheld:
        terminal.say(
            f"not removed from {w.article_id}: '{_short(w.text)}' ({w.rule}) would leave it empty"
        )
    terminal.show(counts_table("Ingest summary", report.summary()))


@cli.command()
@click.pass_context
def watch(ctx: click.Context) -> None:
    """Watch the inbox; ingest every new or changed file once its writer has finished.

    Temporary, hidden and partial files (*.tmp, *.part, *~, .*) are ignored until
    renamed. Stops cleanly on Ctrl-C or SIGTERM.

    Example: publisher watch
    """
    from publisher.app import run_until_signal

    app = _app(ctx)
    app.seed_inbox()

    async def watch_and_announce(stop: asyncio.Event) -> None:
        await asyncio.gather(app.watch(stop), app.announce_feeds(stop))

    run_until_signal(watch_and_announce)


# -- articles ----------------------------------------------------------------------


@cli.group(cls=PublisherGroup)
def articles() -> None:
    """What is stored, normalized."""


def _list_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--limit, --category, --search and --format of a list command."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            (
                click.option(
                    "--format",
                    "output_format",
                    type=click.Choice(["table", "tsv"]),
                    default="table",
                    help="A table, or tab-separated lines with a header (tabs and newlines "
                    "in values escaped as \\t and \\n).",
                ),
                click.option("--limit", type=click.IntRange(min=1), help="At most N of them."),
                click.option("--category", help=f"Only {what} of this category (any case)."),
                click.option("--search", help="Only those containing TEXT (any case)."),
            )
        ):
            command = option(command)
        return command

    return decorate


def _one_format(as_json: bool, output_format: str) -> None:
    if as_json and output_format != "table":
        raise click.UsageError("--json and --format tsv cannot be combined")


@articles.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_list_options("articles")
@click.pass_context
def articles_list(
    ctx: click.Context,
    as_json: bool,
    output_format: str,
    limit: int | None,
    category: str | None,
    search: str | None,
) -> None:
    """List stored articles, newest first; --search looks in the title, slug and id.

    Example: publisher articles list --category sports --limit 20 --format tsv
    """
    _one_format(as_json, output_format)
    found = _stored(ctx, lambda app: app.articles(category=category, search=search, limit=limit))
    zone = _app(ctx, read_only=True).settings.zone
    terminal = _terminal(ctx)
    if as_json:
        terminal.print_json([a.as_dict(body=False, zone=zone) for a in found])
        return
    if output_format == "tsv":
        terminal.print_tsv(
            ("id", "slug", "published", "title", "category", "author"),
            (
                (
                    a.id,
                    a.slug,
                    a.published.astimezone(zone).isoformat(),
                    a.title,
                    a.category,
                    a.author or "",
                )
                for a in found
            ),
        )
        return
    terminal.show(
        keyed_listing(
            f"{len(found)} articles",
            "slug",
            ("published", "title", "category", "author"),
            [
                (
                    text(a.slug),
                    (
                        text(a.published.astimezone(zone).date().isoformat()),
                        _listed_title(a, zone),
                        text(a.category),
                        text(a.author or ""),
                    ),
                )
                for a in found
            ],
            droppable=("published", "category", "author"),
        )
    )


def _listed_title(article: Article, zone: Any) -> Text:
    if article.deleted is None:
        return text(article.title)
    shown = text(f"deleted {article.deleted.astimezone(zone).date().isoformat()}: ", "red")
    return shown.append(text(article.title))


@articles.command("show")
@click.argument("article_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def articles_show(ctx: click.Context, article_id: str, as_json: bool) -> None:
    """Show one article (by id, slug, or a unique prefix of either) and the boilerplate
    removed from it.

    Example: publisher articles show 2020-09-01-harbin-regains-national-civilized-city-title
    """
    app, terminal = _app(ctx, read_only=True), _terminal(ctx)
    try:
        article = app.article(article_id)
    except MissingDatabase:
        raise PublisherError(
            f"no article with id or slug '{article_id}'",
            "nothing is stored yet: `publisher ingest`",
        ) from None
    zone = app.settings.zone
    if as_json:
        terminal.print_json(article.as_dict(zone=zone))
        return
    terminal.show(text(article.title, "bold"))
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
        terminal.say(f"{label:>10}: {value}")
    if article.deleted is not None:
        when = article.deleted.astimezone(zone).isoformat()
        terminal.show(text(f"{'deleted':>10}: deleted at {when} (`articles restore` undoes it)"))
    terminal.show("")
    for block in article.blocks:
        for line in block.text.split("\n"):  # a block's own lines stay lines
            terminal.say(line)
        terminal.show("")
    if article.removed:
        table = Table("rule", "text", "reason", "articles", title="Removed boilerplate")
        for r in article.removed:
            table.add_row(text(r.rule), text(r.text), text(r.reason), text(len(r.holders)))
        terminal.show(table)
        for r in article.removed:  # one line each: ids are never cut by a table's width
            terminal.say(f"'{_short(r.text)}' is in {_some_ids(r.holders)}")
    if article.withheld:
        table = Table(
            "rule", "text", "reason", title="Not removed: it would leave the article empty"
        )
        for r in article.withheld:
            table.add_row(text(r.rule), text(r.text), text(r.reason))
        terminal.show(table)


@articles.command("delete")
@click.argument("references", metavar="ID...", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask (needed without a terminal).")
@click.pass_context
def articles_delete(ctx: click.Context, references: tuple[str, ...], yes: bool) -> None:
    """Unpublish articles (by id, slug, or a unique prefix of either): out of every feed,
    page and unsent digest, a tombstone in the Atom feeds, the page answers 410, the file
    moves to <inbox>/deleted/. `articles restore` undoes it.

    Example: publisher articles delete 2020-09-01-harbin-regains --yes
    """
    app, terminal = _app(ctx), _terminal(ctx)
    chosen = [app.article(reference) for reference in references]
    if not yes:
        if not sys.stdin.isatty():
            terminal.fail(
                "not deleting without confirmation: no terminal to ask on",
                "pass --yes to delete without a prompt",
                2,
                one_line=True,
            )
        for article in chosen:
            terminal.say(f"{article.slug}: {article.title}")
        if not click.confirm(f"Delete {len(chosen)} article(s)?", default=False):
            terminal.fail("nothing deleted", None, 1)
    deleted = app.delete_articles(references)
    # the hubs hear of every feed change, as after an ingest (also the built-in hub's
    # subscribers while `publisher run` serves it: they are in the database)
    app.announce_pending(WEBSUB_ONE_SHOT_SECONDS)
    for done in deleted:
        if done.already:
            terminal.say(f"already deleted: {done.article.slug}")
            continue
        where = f"; file moved to {done.moved_to}" if done.moved_to else f" ({done.note})"
        terminal.say(f"deleted {done.article.slug}{where}")


@articles.command("restore")
@click.argument("reference", metavar="ID")
@click.pass_context
def articles_restore(ctx: click.Context, reference: str) -> None:
    """Publish a deleted article again (its file goes back to the inbox if the name is free).

    Example: publisher articles restore 2020-09-01-harbin-regains
    """
    app, terminal = _app(ctx), _terminal(ctx)
    restored = app.restore_article(reference)
    app.announce_pending(WEBSUB_ONE_SHOT_SECONDS)
    where = f"; file back at {restored.moved_back}" if restored.moved_back else ""
    terminal.say(f"restored {restored.article.slug}{where}")
    if restored.note:
        terminal.warn(restored.note)


SHOWN_IDS = 20  # `--json` lists them all


def _some_ids(ids: tuple[str, ...] | list[str]) -> str:
    """'N articles: a, b, … and M more': the first SHOWN_IDS of a block's articles."""
    shown = ", ".join(ids[:SHOWN_IDS])
    more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
    return f"{len(ids)} article{'s' if len(ids) != 1 else ''}: {shown}{more}"


def _short(value: str, width: int = 60) -> str:
    """One line of at most `width` characters (a block may be long or hold newlines)."""
    flat = " ".join(value.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- boilerplate -------------------------------------------------------------------


@cli.group(cls=PublisherGroup)
def boilerplate() -> None:
    """Blocks removed as boilerplate: list them, put one back."""


@boilerplate.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, every article id.")
@click.pass_context
def boilerplate_list(ctx: click.Context, as_json: bool) -> None:
    """Every block removed as boilerplate: its key, text, rule and the articles it left.

    Example: publisher boilerplate list --json
    """
    terminal = _terminal(ctx)
    found = _stored(ctx, lambda app: app.removed_boilerplate())
    if as_json:
        terminal.print_json([block.as_dict() for block in found])
        return
    terminal.show(
        keyed_listing(
            f"{len(found)} blocks removed as boilerplate",
            "key",
            ("rule", "count", "text", "articles"),
            [
                (
                    text(block.key),
                    (
                        text(", ".join(block.rules)),
                        text(len(block.articles)),
                        text(_short(block.text)),
                        text(_some_ids([slug for _, slug in block.articles])),
                    ),
                )
                for block in found
            ],
            droppable=("articles", "rule"),
        )
    )


@boilerplate.command("keep")
@click.argument("block")
@click.pass_context
def boilerplate_keep(ctx: click.Context, block: str) -> None:
    """Put BLOCK back into every article it was removed from, and never remove it again.

    BLOCK is the block's text (any case and spacing) or a unique prefix of its key, as
    `publisher boilerplate list` shows them. The feeds and pages that show those articles
    are rebuilt.

    Example: publisher boilerplate keep "Police said the investigation is ongoing."
    """
    from publisher.boilerplate import UnknownBlock

    app, terminal = _app(ctx), _terminal(ctx)
    try:
        kept, built = app.keep_boilerplate(block)
    except UnknownBlock as exc:
        terminal.fail(exc.message, exc.hint, 2, one_line=True)
    app.announce_pending(WEBSUB_ONE_SHOT_SECONDS)
    terminal.say(
        f"kept {kept.block.key} '{_short(kept.block.text)}': back in "
        f"{len(kept.changed)} articles; {len(built.written)} files written"
    )


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
    app, terminal = _app(ctx), _terminal(ctx)
    result = app.build_feeds()
    app.announce_pending(WEBSUB_ONE_SHOT_SECONDS)
    if as_json:
        terminal.print_json(result.as_dict())
        return
    terminal.say(
        f"{len(result.written)} files written, {result.unchanged} unchanged "
        f"in {result.seconds:.2f}s -> {app.settings.output_dir}"
    )


@cli.command()
@click.option("--host", help="Interface to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port; 0: any).")
@click.option(
    "--insecure-dev", is_flag=True, help="Without a secret key: use a throwaway one (testing)."
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, insecure_dev: bool) -> None:
    """Serve the output folder and the subscribe / unsubscribe pages over HTTP.

    Feeds get ETag / Last-Modified (304 when unchanged), gzip and their own content
    types. Stops cleanly on Ctrl-C or SIGTERM.

    Example: publisher serve --host 0.0.0.0 --port 8080
    """
    from publisher.app import run_until_signal
    from publisher.web import create_app
    from publisher.web import serve as serve_http

    settings = _web_settings(ctx, insecure_dev, key_file_made_on_start=False)
    app = _app(ctx, settings=settings)
    if not (settings.output_dir / "index.html").is_file():
        _terminal(ctx).note(f"no index.html in {settings.output_dir}; run `publisher build`")
    web = create_app(settings, extra_routes=app.web_routes())
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    run_until_signal(lambda stop: serve_http(web, bind_host, bind_port, stop))


# -- subscribers -------------------------------------------------------------------


@cli.group(cls=PublisherGroup)
def subscribers() -> None:
    """Who gets the digest."""
    # each command prints what it did (an error in one line); the consent log line that
    # `run`, `serve` and `inbound` write would repeat it: shown with --verbose only
    if not logging.getLogger("publisher").isEnabledFor(logging.DEBUG):
        logging.getLogger("publisher.consent").setLevel(logging.WARNING)


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="Display name for the To: header.")
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Only this category (repeatable; any case; must be a known one unless --force).",
)
@click.option(
    "--frequency",
    type=click.Choice(["weekly", "daily"]),
    help="weekly (the default for a new subscriber) or daily.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also subscribe an address that unsubscribed, bounced or complained; accept an "
    "unknown category.",
)
@click.pass_context
def subscribers_add(
    ctx: click.Context,
    email: str,
    name: str | None,
    categories: tuple[str, ...],
    frequency: str | None,
    force: bool,
) -> None:
    """Add a confirmed subscriber (the operator vouches for the address); updates an existing one,
    changing only what is given (--name, --category, --frequency).

    An address that unsubscribed, bounced or complained is refused (exit 1) unless --force.
    Categories match ignoring case and are stored as the site spells them; an unknown one is
    refused with the known ones (exit 2) unless --force.

    Example: publisher subscribers add ann@example.com --name Ann --category "Harbin Today"
    """
    found, created = _keyed_app(ctx).add_subscriber(
        email, name=name, categories=categories, frequency=frequency, force=force
    )
    verb = "added" if created else "updated"
    _terminal(ctx).say(f"{verb} {found.email} ({found.status.value})")


@subscribers.command("remove")
@click.argument("email")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Delete a subscriber, their personal data and delivery history.

    An address that unsubscribed, bounced or complained stays suppressed as a keyed hash
    of the address with its status (no address, no name), so no import, add or form
    subscribes it again unasked. Its consent history stays (`subscribers history EMAIL`).

    Example: publisher subscribers remove ann@example.com
    """
    kept = _keyed_app(ctx).remove_subscriber(email)
    if kept is None:
        _terminal(ctx).say(f"removed {email}")
    else:
        _terminal(ctx).say(
            f"removed {kept.email}; it is {kept.status.value}: kept as suppressed (a keyed "
            "hash of the address only), so no import or add subscribes it again"
        )


@subscribers.command("history")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def subscribers_history(ctx: click.Context, email: str, as_json: bool) -> None:
    """Every consent event of one address, oldest first: subscribed, confirmation sent,
    confirmed, preferences changed, unsubscribed, bounced, complained, suppressed, forced,
    removed; with time, source (web, cli, import, inbound, webhook, send), the web client's
    address and a detail. Found by the address also after `remove`. Exit 1 if none.

    Example: publisher subscribers history ann@example.com --json
    """
    app = _app(ctx, read_only=True)
    found = app.subscriber_history(email)
    if not found:
        raise PublisherError(f"no consent history for {email}")
    zone = app.settings.zone
    terminal = _terminal(ctx)
    if as_json:
        terminal.print_json(
            [
                {
                    "at": e.at.astimezone(zone).isoformat(),
                    "kind": e.kind.value,
                    "source": e.source.value,
                    "client": e.client,
                    "detail": e.detail,
                }
                for e in found
            ]
        )
        return
    table = Table("time", "event", "source", "client", "detail", title=text(f"History of {email}"))
    for e in found:
        table.add_row(
            e.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
            e.kind.value,
            e.source.value,
            text(e.client or ""),
            text(e.detail),
        )
    terminal.show(table)


@subscribers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_list_options("subscribers")
@click.pass_context
def subscribers_list(
    ctx: click.Context,
    as_json: bool,
    output_format: str,
    limit: int | None,
    category: str | None,
    search: str | None,
) -> None:
    """List subscribers with status, categories, frequency and last digest. --category: who
    chose it or chose all; --search looks in the email and name.

    Example: publisher subscribers list --json | jq '.[] | select(.status=="confirmed")'
    """
    from publisher.subscribers import is_suppressed

    _one_format(as_json, output_format)
    found = _stored(ctx, lambda app: app.subscribers(category=category, search=search, limit=limit))
    terminal = _terminal(ctx)
    if as_json:
        terminal.print_json(
            [
                {
                    "email": s.email,
                    "name": s.name,
                    "status": s.status.value,
                    "categories": list(s.categories),
                    "frequency": s.frequency.value,
                    "created": s.created.isoformat(),
                    "confirmed": s.confirmed.isoformat() if s.confirmed else None,
                    "last_digest": s.last_digest.isoformat() if s.last_digest else None,
                    "hard_failures": s.hard_failures,
                    "paused_until": s.paused_until.isoformat() if s.paused_until else None,
                }
                for s in found
            ]
        )
        return
    zone = _app(ctx, read_only=True).settings.zone
    if output_format == "tsv":
        terminal.print_tsv(
            ("email", "name", "status", "categories", "frequency", "last_digest"),
            (
                (
                    s.email,
                    s.name or "",
                    s.status.value,
                    ";".join(s.categories),
                    s.frequency.value,
                    s.last_digest.astimezone(zone).isoformat() if s.last_digest else "",
                )
                for s in found
            ),
        )
        return
    suppressed = sum(1 for s in found if is_suppressed(s.status))
    terminal.show(
        keyed_listing(
            f"{len(found)} subscribers ({suppressed} suppressed: never mailed)",
            "email",
            ("name", "status", "categories", "frequency", "last digest"),
            [
                (
                    text(s.email),
                    (
                        text(s.name or ""),
                        text(s.status.value),
                        text(", ".join(s.categories) or "all"),
                        text(s.frequency.value),
                        text(
                            s.last_digest.astimezone(zone).strftime("%Y-%m-%d %H:%M")
                            if s.last_digest
                            else "—"
                        ),
                    ),
                )
                for s in found
            ],
            droppable=("name", "categories", "frequency", "last digest"),
        )
    )


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--force", is_flag=True, help="Also subscribe addresses that unsubscribed or bounced."
)
@click.pass_context
def subscribers_import(ctx: click.Context, file: Path, force: bool) -> None:
    """Import subscribers from CSV (header: email,name,categories,frequency,status, or all
    the columns of `export`, which it round-trips).

    Categories are separated by ';'. Without a status column rows are confirmed (the
    operator vouches); a status column is honoured (pending stays pending). An address
    that unsubscribed or bounced is not made confirmed again unless --force. Bad rows are
    reported by line number and skipped; good rows are kept. Importing the same file again
    changes nothing. Exit 1 if a row was refused.

    Example: publisher subscribers import people.csv
    """
    report = _keyed_app(ctx).import_subscribers(file, force=force)
    terminal = _terminal(ctx)
    for line, reason in report.errors:
        terminal.complain(f"{file}:{line}: {reason}")
    terminal.say(f"added {report.added}, updated {report.updated}, rejected {len(report.errors)}")
    if report.errors:
        sys.exit(1)


@subscribers.command("export")
@click.pass_context
def subscribers_export(ctx: click.Context) -> None:
    """Write every subscriber as CSV to stdout, every field, suppressed ones too (so the
    suppression moves with the file); `import` reads it back unchanged. Cells that a
    spreadsheet would run as a formula (= + - @) start with a ' that import removes.

    Example: publisher subscribers export > subscribers.csv
    """
    try:
        _app(ctx, read_only=True).export_subscribers(sys.stdout)
    except MissingDatabase as exc:
        _terminal(ctx).note(exc.message)


@cli.command()
@click.argument("file", default="-", type=click.File("rb"))
@click.pass_context
def inbound(ctx: click.Context, file: Any) -> None:
    """Read one message that came back (FILE, or stdin) and act on it: a bounce (RFC 3464
    DSN, or a plain-text one), a spam complaint (RFC 5965 ARF), or a mail to the
    List-Unsubscribe mailto address. Exit 0 handled, 1 not matched: the message is then
    kept in <data_dir>/inbound/unmatched/ with a reason file, never dropped.

    For an MTA pipe transport, procmail or fetchmail. When the message could be neither
    acted on nor kept (the database or the disk failed) the exit is 75 (EX_TEMPFAIL), so
    the MTA keeps it and retries.

    Example: publisher inbound < bounce.eml
    """
    inbound = _app(ctx).inbound
    terminal = _terminal(ctx)
    try:
        outcome = inbound.receive_stream(file)
    except ConfigError:
        raise
    except Exception as exc:  # not stored anywhere: the MTA must keep it
        terminal.complain(f"error: message not stored, try again later: {exc}")
        sys.exit(EX_TEMPFAIL)
    if outcome.handled:
        for line in outcome.done or (f"{outcome.event.kind.value}: {outcome.reason}",):
            terminal.say(line)
        return
    terminal.complain(f"not matched: {outcome.reason}; kept as {outcome.kept}")
    sys.exit(1)


# -- digests -----------------------------------------------------------------------


@cli.command()
@click.option("--dry-run", is_flag=True, help="Write .eml files; send and record nothing.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("outbox-preview"),
    show_default=True,
    help="Folder for --dry-run output.",
)
@click.option("--frequency", type=click.Choice(["weekly", "daily"]), help="Only these subscribers.")
@click.option("--now", "now_text", metavar="ISO", help="Pretend it is this time (ISO 8601).")
@click.option(
    "--fan-out-only",
    is_flag=True,
    help="Create the run and its delivery rows; leave sending to `publisher worker`s.",
)
@click.option(
    "--skip-doctor",
    is_flag=True,
    help="Send even while `publisher doctor` has a failing check.",
)
@click.pass_context
def send(
    ctx: click.Context,
    dry_run: bool,
    out_dir: Path,
    frequency: str | None,
    now_text: str | None,
    fan_out_only: bool = False,
    skip_doctor: bool = False,
) -> None:
    """Build every due digest and send it, each message exactly once.

    A run interrupted (Ctrl-C, crash) is resumed by the next `send`. Exit 1 if some
    message failed (listed). With --dry-run, writes DIR/<email>.eml and DIR/index.html.

    A real send first runs `publisher doctor` and refuses while a check fails (exit 1),
    unless --skip-doctor; a relay on this machine sending for localhost or example.*
    (the --smtp-debug sink, a test sink) is exempt: no mail leaves the machine.

    Example: publisher send --dry-run && open outbox-preview/index.html
    """
    # a fresh checkout may send (or preview) before its first `run`: the same 0600
    # key file `run` would write signs the unsubscribe links, so `serve` accepts them
    app = _app(ctx, settings=ensure_secret_key(_settings(ctx)))
    terminal = _terminal(ctx)
    from publisher.doctor import FAIL, exempt_from_doctor

    if not dry_run and not skip_doctor and not exempt_from_doctor(app.settings):
        failing = [c for c in app.doctor() if c.status == FAIL]
        if failing:
            first = failing[0]
            terminal.fail(
                f"not sending: `publisher doctor` has {len(failing)} failing check(s); "
                f"first: {first.name}: {first.message}",
                f"{first.fix}; or pass --skip-doctor" if first.fix else "pass --skip-doctor",
                1,
            )
    now = _parse_now(now_text, app.settings.zone) if now_text else None
    logging.getLogger("publisher.mailer").setLevel(logging.WARNING)
    if dry_run:
        report = app.send_digests(frequency, now, dry_run=True, out_dir=out_dir)
        table = Table(
            "recipient",
            "items",
            "subject",
            "size",
            title=text(f"Dry run: {len(report.previews)} messages in {out_dir} (nothing sent)"),
        )
        for p in report.previews:
            table.add_row(text(p.recipient), str(p.items), text(p.subject), f"{p.size:,}")
        terminal.show(table)
        if report.forecast is not None:  # the table lists only today's share
            terminal.say(report.forecast.line())
        _show_skipped(terminal, report.skipped)
        terminal.say(f"skipped (nothing new): {report.skipped_empty}")
        return
    progress = send_progress()
    task = progress.add_task("send", total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        report = app.send_digests(
            frequency, now, progress=update, deliver=False if fan_out_only else None
        )
    if report.resumed:
        terminal.say(f"resumed unfinished run {report.run_id}")
    if fan_out_only or not app.settings.workers.deliver_locally:
        terminal.say(
            f"run {report.run_id}: {report.fanned_out} messages queued for `publisher worker`"
        )
    if report.failures:
        table = Table("recipient", "error", title="Failed")
        for recipient, error in report.failures:
            table.add_row(text(recipient), text(error))
        terminal.show(table)
    terminal.show(counts_table("Send summary", report.summary()))
    if report.warmup is not None:  # the rest of the run waits, pending, for a later day
        terminal.say(report.warmup.line())
    if report.failover:
        terminal.warn(report.failover)
    if report.unreachable:  # nothing is lost: the rows wait for the next run
        terminal.fail(
            f"{report.unreachable}; {report.deferred} messages not sent (still pending)",
            "the next `publisher send` sends them, each once",
            1,
        )
    if report.failed:
        sys.exit(1)


# a dry run lists this many skipped subscribers; the rest are counted by reason
SKIPPED_SHOWN = 50


def _show_skipped(terminal: Terminal, skipped: list[tuple[str, str]]) -> None:
    """Who gets no message, and why (no matching category, nothing new, suppressed)."""
    if not skipped:
        return
    table = Table("recipient", "reason", title=text(f"Skipped: {len(skipped)} subscribers"))
    for recipient, reason in skipped[:SKIPPED_SHOWN]:
        table.add_row(text(recipient), text(reason))
    terminal.show(table)
    if len(skipped) > SKIPPED_SHOWN:
        by_reason = Counter(reason for _, reason in skipped[SKIPPED_SHOWN:])
        more = ", ".join(f"{n} {reason}" for reason, n in sorted(by_reason.items()))
        terminal.say(f"… and {len(skipped) - SKIPPED_SHOWN} more: {more}")


def _parse_now(value: str, zone: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {value}", param_hint="--now") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


# -- run and status ------------------------------------------------------------------


@cli.command()
@click.option("--host", help="Interface to listen on (default: server.host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: server.port; 0: any).")
@click.option(
    "--smtp-debug",
    is_flag=True,
    help="Start an SMTP sink on smtp.host:smtp.port that saves mail to ./mailbox/.",
)
@click.option("--no-send", is_flag=True, help="Watch and serve only; schedule no digests.")
@click.option(
    "--insecure-dev", is_flag=True, help="Without a secret key: use a throwaway one (testing)."
)
@click.pass_context
def run(
    ctx: click.Context,
    host: str | None,
    port: int | None,
    smtp_debug: bool,
    no_send: bool,
    insecure_dev: bool = False,
) -> None:
    """Watch the inbox, schedule digests and serve the site, in one process: the main job.

    At start: seeds an empty inbox from seeds/ on a first run, ingests the inbox and
    builds the feeds. Digests are sent on the schedule in the config (a run missed while
    stopped is sent once on start). Only one `publisher run` may schedule digests for a
    database. Stops cleanly on Ctrl-C or SIGTERM.

    Example: publisher run --smtp-debug
    """
    from publisher.app import run_until_signal
    from publisher.runner import RunOptions
    from publisher.runner import run as run_main_job

    settings = _web_settings(ctx, insecure_dev, key_file_made_on_start=True)
    app = _app(ctx, settings=ensure_secret_key(settings))
    route_library_logs("apscheduler")
    options = RunOptions(host=host, port=port, smtp_debug=smtp_debug, send=not no_send)
    run_until_signal(lambda stop: run_main_job(app, stop, options))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show articles, subscribers, feeds, the next digest runs and pending deliveries.

    Reads the database and the output folder; starts nothing.

    Example: publisher status --json | jq '.jobs[].next_run'
    """
    found = _app(ctx, read_only=True).status()
    if as_json:
        _terminal(ctx).print_json(found)
        return
    _show_status(_terminal(ctx), found)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of checks.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check what mailbox providers check: SPF, DKIM, DMARC and alignment (DNS), the
    relay's PTR and TLS, https, localhost / example.* values, seeds, the secret key, and
    the last 30 days' complaint and bounce rates. Exit 1 if a check fails.

    Example: publisher doctor --json | jq '.[] | select(.status != "pass")'
    """
    from publisher.doctor import FAIL, PASS

    checks = _app(ctx, read_only=True).doctor()
    terminal = _terminal(ctx)
    if as_json:
        terminal.print_json([c.as_dict() for c in checks])
    else:
        for check in checks:
            fix = f" — fix: {check.fix}" if check.fix and check.status != PASS else ""
            terminal.say(f"{check.status:4}  {check.name}: {check.message}{fix}")
    if any(c.status == FAIL for c in checks):
        sys.exit(1)


def _mail_figures(figures: dict[str, Any]) -> str:
    rate = figures["complaint_rate"]
    shown = f"{rate * 100:.2f} %" if rate is not None else "—"
    return (
        f"sent {figures['sent']}, hard bounces {figures['hard_bounces']}, soft bounces "
        f"{figures['soft_bounces']}, complaints {figures['complaints']}, unsubscribes "
        f"{figures['unsubscribes']}; complaint rate {shown}: {figures['complaint_flag']}"
        f" (since {figures['since']})"
    )


def _show_status(terminal: Terminal, found: dict[str, Any]) -> None:
    articles = found["articles"]
    feeds = found["feeds"]
    scheduler = found["scheduler"]
    database = (
        found["database"] if found["database_exists"] else f"{found['database']} (no database yet)"
    )
    lines = [
        ("database", database),
        (
            "articles",
            f"{articles['total']}"
            + (f", {articles['deleted']} of them deleted" if articles.get("deleted") else "")
            + f" (last ingest: {articles['last_ingest'] or 'never'})",
        ),
        ("feeds", f"last built: {feeds['last_built'] or 'never'} ({feeds['output_dir']})"),
        (
            "scheduler",
            f"running ({scheduler.get('holder') or 'another process'})"
            if scheduler["running"]
            else "not running",
        ),
    ]
    for job in found["jobs"]:
        lines.append(
            (f"{job['frequency']} digest", f"{job['schedule']}; next: {job['next_run'] or '—'}")
        )
    if "subscribers" in found:
        by_status = found["subscribers"].items()
        lines.append(("subscribers", ", ".join(f"{k} {v}" for k, v in by_status)))
        last = found["last_digest_run"]
        if last is None:
            lines.append(("last digest", "never"))
        else:
            counts = ", ".join(f"{k} {v}" for k, v in last["deliveries"].items()) or "no deliveries"
            lines.append(
                (
                    "last digest",
                    f"#{last['id']} {last['frequency']} {last['status']}, started "
                    f"{last['started']}: {counts}, {last['skipped_empty']} empty skipped",
                )
            )
        deliveries = found["deliveries"]
        lines.append(
            ("deliveries", f"{deliveries['pending']} pending, {deliveries['failed']} failed")
        )
        for label, key in (("mail, last run", "last_run"), ("mail, 30 days", "last_30_days")):
            if (figures := found.get("mail", {}).get(key)) is not None:
                lines.append((label, _mail_figures(figures)))
    if (warmup := found.get("warmup")) is not None:
        lines.append(("warm-up", f"{warmup['summary']} ({warmup['domain']})"))
    for open_run in found.get("open_runs", []):
        by_worker = ", ".join(f"{name} {n}" for name, n in sorted(open_run["sent_by"].items()))
        lines.append(
            (
                f"run #{open_run['id']}",
                f"{open_run['frequency']} {open_run['status']}: "
                f"{open_run['done']}/{open_run['total']} done, {open_run['claimed']} claimed"
                + (f"; sent by {by_worker}" if by_worker else ""),
            )
        )
    for live in found.get("workers", []):
        lines.append(
            (
                "worker",
                f"{live['name']} {live['state']} (run {live['run'] or '—'}): "
                f"sent {live['sent']}, failed {live['failed']}, seen {live['seen']}",
            )
        )
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        terminal.say(f"{label:>{width}}: {value}")


# -- workers ---------------------------------------------------------------------------


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    help="SMTP connections of this worker (default: workers.concurrency, else smtp.pool_size).",
)
@click.option("--exit-when-idle", is_flag=True, help="Stop once no open run has rows to claim.")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, exit_when_idle: bool) -> None:
    """Claim and send the deliveries of open digest runs (PostgreSQL); run any number, anywhere.

    Rows are claimed in batches with a lease (workers.lease_seconds); a worker that dies
    leaves its rows to the others once the lease runs out. SIGTERM or Ctrl-C: finish the
    messages in flight, give back the rest, exit 0. SQLite: refused (exit 2); use
    `publisher send`.

    Example: PUBLISHER_DATABASE_URL=postgresql+psycopg://mail@db/news publisher worker
    """
    from publisher.app import run_until_signal

    app, terminal = _app(ctx), _terminal(ctx)
    logging.getLogger("publisher.mailer").setLevel(logging.WARNING)
    progress = worker_progress()
    task = progress.add_task("waiting for work", total=None, detail="")

    def update(found: Any, sender: Any) -> None:
        mine = found.sent_by.get(sender.name, 0)
        progress.update(
            task,
            description=f"run {found.run_id} ({found.frequency})",
            completed=found.done,
            total=found.total,
            detail=(
                f"{mine:,} sent here · {len(found.sent_by)} workers · {found.claimed:,} claimed"
            ),
        )

    sender = app.worker(concurrency, on_progress=update)
    terminal.tell(f"worker {sender.name}: claiming from {app.store.url.split('@')[-1]}")

    async def main(stop: Any) -> Any:
        async with sender:
            return await sender.serve(stop, exit_when_idle=exit_when_idle)

    with progress:
        report = run_until_signal(main)
    runs = ", ".join(str(r) for r in report.runs) or "none"
    terminal.say(
        f"worker {report.name}: sent {report.sent}, failed {report.failed}, "
        f"retried {report.retried}, gave back {report.released} (runs: {runs})"
    )
    if report.warmup is not None:  # rows past today's allowance wait for a later day
        terminal.say(report.warmup.line())
    if report.failover:
        terminal.warn(report.failover)


def main() -> None:
    cli(prog_name="publisher")
