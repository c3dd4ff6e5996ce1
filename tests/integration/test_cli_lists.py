"""`articles list` and `subscribers list` on a real store: the key column is whole in an
80-column terminal, --limit, --category and --search filter (--json too), and --format tsv
is one escaped record a line."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, update

from publisher import console
from publisher.store.schema import articles
from tests.conftest import with_categories, write_config
from tests.integration.in_process import publisher_cli

ARTICLE = """Home>{category}

{title}

Updated : {date}

By ( e.my399.com )

{body}
"""

LONG_TITLE = "Riverside renewal programme approved by council"
LONGER_TITLE = "Municipal council approves the riverside infrastructure renewal programme at last"
LONG_EMAIL = "subscriptions.desk.evening@newsroom.example.org"
LONGER_EMAIL = "the.editor.in.chief.of.the.evening.edition@newsroom-subscribers.example.org"


@pytest.fixture(autouse=True)
def console_width_from_environment() -> Iterator[None]:
    """The stdout console sized by COLUMNS at print time, as in a real terminal."""
    saved = console.out._width
    console.out._width = None
    yield
    console.out._width = saved


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    return with_categories(write_config(tmp_path, database_url), "Sports", "Culture")


def _run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = publisher_cli("--config", str(config), *args, env={"COLUMNS": "80"})
    assert "Traceback" not in result.stderr, result.stderr
    return result


def _ingest(config: Path, *articles: tuple[str, str, str]) -> None:
    inbox = config.parent / "inbox"
    inbox.mkdir(exist_ok=True)
    for n, (category, title, date) in enumerate(articles):
        body = f"Article number {n} tells of {title.lower()} in some detail, for the readers."
        (inbox / f"a{n}.txt").write_text(
            ARTICLE.format(category=category, title=title, date=date, body=body), "utf-8"
        )
    ingested = _run(config, "ingest")
    assert ingested.returncode == 0, ingested.stderr


def _newsroom(config: Path) -> None:
    _ingest(
        config,
        ("City news", LONG_TITLE, "2020-09-01"),
        ("Sports", "Harbour regatta won by a rowing club", "2020-09-02"),
        ("sports", "Ice hockey final goes to overtime", "2020-09-03"),
        ("Culture", "A new museum of winter opens", "2020-09-04"),
    )


def _json(config: Path, *args: str) -> list[dict[str, object]]:
    result = _run(config, *args, "--json")
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, object]] = json.loads(result.stdout)
    return listed


def _tsv(stdout: str) -> list[list[str]]:
    return list(csv.reader(stdout.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))


def _slug(config: Path, title: str) -> str:
    return next(str(a["slug"]) for a in _json(config, "articles", "list") if a["title"] == title)


def test_a_long_slug_is_whole_in_an_80_column_table(config: Path) -> None:
    _newsroom(config)
    slug = _slug(config, LONG_TITLE)
    assert len(slug) > 55

    listed = _run(config, "articles", "list")

    assert listed.returncode == 0, listed.stderr
    assert slug in listed.stdout
    assert "riverside" in listed.stdout.lower() and "Sports" not in listed.stdout  # title kept
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80


def test_a_slug_wider_than_the_terminal_is_whole_on_a_line_of_its_own(config: Path) -> None:
    _ingest(config, ("City news", LONGER_TITLE, "2020-09-01"))
    slug = _slug(config, LONGER_TITLE)
    assert len(slug) > 80

    listed = _run(config, "articles", "list")

    assert listed.returncode == 0, listed.stderr
    assert slug in listed.stdout.splitlines()
    assert LONGER_TITLE in listed.stdout


def test_a_long_email_is_whole_in_80_columns(config: Path) -> None:
    for email in (LONG_EMAIL, LONGER_EMAIL):
        added = _run(config, "subscribers", "add", email, "--name", "Evening Desk")
        assert added.returncode == 0, added.stderr

    table = _run(config, "subscribers", "list", "--search", "desk.evening")
    blocks = _run(config, "subscribers", "list")

    assert table.returncode == 0 and blocks.returncode == 0, table.stderr + blocks.stderr
    assert LONG_EMAIL in table.stdout and "confirmed" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    assert LONG_EMAIL in blocks.stdout.splitlines()
    assert LONGER_EMAIL in blocks.stdout.splitlines()


def test_articles_filter_by_category_any_case(config: Path) -> None:
    _newsroom(config)

    titles = {a["title"] for a in _json(config, "articles", "list", "--category", "SPORTS")}

    assert titles == {"Harbour regatta won by a rowing club", "Ice hockey final goes to overtime"}


def test_articles_search_the_title_slug_and_id_any_case(config: Path) -> None:
    _newsroom(config)
    every = _json(config, "articles", "list")
    museum = next(a for a in every if "museum" in str(a["title"]))

    by_title = _json(config, "articles", "list", "--search", "RIVERSIDE")
    by_id = _json(config, "articles", "list", "--search", str(museum["id"]).upper())
    by_slug = _json(config, "articles", "list", "--search", "ice-hockey")

    assert [a["title"] for a in by_title] == [LONG_TITLE]
    assert [a["id"] for a in by_id] == [museum["id"]]
    assert [a["title"] for a in by_slug] == ["Ice hockey final goes to overtime"]


def test_articles_limit_keeps_the_newest_and_json_keeps_its_shape(config: Path) -> None:
    _newsroom(config)
    every = _json(config, "articles", "list")

    newest = _json(config, "articles", "list", "--limit", "2")
    newest_sport = _json(config, "articles", "list", "--limit", "1", "--category", "sports")

    assert newest == every[:2]
    assert [a["title"] for a in newest_sport] == ["Ice hockey final goes to overtime"]
    assert _run(config, "articles", "list", "--limit", "0").returncode == 2


def _subscribers(config: Path) -> None:
    for email, name, categories in (
        ("ann@example.com", "Ann Lee", ("Sports",)),
        ("bob@example.com", "Bob Stone", ("Culture",)),
        ("cy@example.com", "Cy Hockey", ()),
        ("dee@example.com", None, ("Culture", "sports")),
    ):
        args = [f"--category={c}" for c in categories] + (["--name", name] if name else [])
        added = _run(config, "subscribers", "add", email, *args)
        assert added.returncode == 0, added.stderr


def test_subscribers_filter_by_category_includes_those_who_chose_all(config: Path) -> None:
    _subscribers(config)

    sporty = _json(config, "subscribers", "list", "--category", "SPORTS")

    assert [s["email"] for s in sporty] == ["ann@example.com", "cy@example.com", "dee@example.com"]
    assert set(sporty[0]) == {
        "email",
        "name",
        "status",
        "categories",
        "frequency",
        "created",
        "confirmed",
        "last_digest",
        "hard_failures",
        "paused_until",
    }


def test_subscribers_search_the_email_and_name_any_case_with_a_limit(config: Path) -> None:
    _subscribers(config)

    by_name = _json(config, "subscribers", "list", "--search", "hOCKEY")
    by_email = _json(config, "subscribers", "list", "--search", "BOB@")
    first = _json(config, "subscribers", "list", "--search", "example.com", "--limit", "2")

    assert [s["email"] for s in by_name] == ["cy@example.com"]
    assert [s["email"] for s in by_email] == ["bob@example.com"]
    assert [s["email"] for s in first] == ["ann@example.com", "bob@example.com"]


def test_subscribers_tsv_is_one_record_a_line_under_a_header(config: Path) -> None:
    _subscribers(config)

    listed = _run(config, "subscribers", "list", "--format", "tsv", "--category", "culture")

    assert listed.returncode == 0, listed.stderr
    rows = _tsv(listed.stdout)
    assert rows[0] == ["email", "name", "status", "categories", "frequency", "last_digest"]
    assert rows[1:] == [
        ["bob@example.com", "Bob Stone", "confirmed", "Culture", "weekly", ""],
        ["cy@example.com", "Cy Hockey", "confirmed", "", "weekly", ""],
        ["dee@example.com", "", "confirmed", "Culture;Sports", "weekly", ""],
    ]


def test_articles_tsv_escapes_a_tab_and_shows_markup_as_text(
    config: Path, database_url: str
) -> None:
    _ingest(config, ("Culture", "A title to be edited", "2020-09-04"))
    # the parser folds whitespace, so the tab and newline arrive the way another writer of
    # the database could put them there
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            update(articles).values(title="Tabbed\ttitle with [/] and\n[bold]markup[/bold]")
        )
    engine.dispose()
    stored = _json(config, "articles", "list")[0]

    listed = _run(config, "articles", "list", "--format", "tsv")

    assert listed.returncode == 0, listed.stderr
    assert "\x1b" not in listed.stdout
    rows = _tsv(listed.stdout)
    assert rows[0] == ["id", "slug", "published", "title", "category", "author"]
    assert len(rows) == 2 and len(rows[1]) == 6
    assert rows[1][0] == stored["id"] and rows[1][1] == stored["slug"]
    assert rows[1][3] == "Tabbed\\ttitle with [/] and\\n[bold]markup[/bold]"
    assert rows[1][4] == "Culture"


def test_json_and_tsv_together_is_bad_usage(config: Path) -> None:
    listed = _run(config, "articles", "list", "--json", "--format", "tsv")

    assert listed.returncode == 2
    assert "--json" in listed.stderr
