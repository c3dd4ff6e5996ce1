"""Boilerplate that never eats a story: real files, a real store (SQLite, and PostgreSQL
when it is up), the real CLI, feedparser on the rebuilt feeds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import feedparser
import pytest

from publisher.app import App
from publisher.model import Article
from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli

POLICE = "Police said the investigation is ongoing."
CHILDCARE = "Harbin ramps up childcare services"
CHILDCARE_SENTENCE = (
    "A new comprehensive service center for childcare in Harbin is expected to be finished "
    "by the end of the year."
)

# unrelated stories: no two share more than the closing sentence they are given
STORIES = [
    (
        "Bridge closed after barge strike",
        "2026-11-02",
        "The Songhua river bridge was closed to traffic on Monday after a barge struck one of "
        "its piers during the morning fog.",
        "Engineers from the city transport bureau inspected the damaged pier for several hours "
        "before deciding to keep the bridge shut overnight.",
    ),
    (
        "Warehouse fire in Daoli district",
        "2026-11-03",
        "A fire broke out in a furniture warehouse in Daoli district late on Tuesday, sending "
        "thick smoke over the nearby residential blocks.",
        "Firefighters needed three hours to bring the blaze under control; nobody was hurt, the "
        "owner told reporters at the scene.",
    ),
    (
        "Stolen bicycles found in a garage",
        "2026-11-04",
        "More than two hundred stolen bicycles were found in a rented garage near the railway "
        "station, the district office announced on Wednesday.",
        "Owners can identify their bicycles at the Nangang community centre from next Monday, "
        "bringing a receipt or a photo as proof.",
    ),
    (
        "Counterfeit liquor seized at market",
        "2026-11-05",
        "Market inspectors seized four thousand bottles of counterfeit liquor at a wholesale "
        "market in Xiangfang on Thursday morning.",
        "The bottles carried forged labels of three well-known distilleries and were sold to "
        "restaurants across the province.",
    ),
    (
        "Taxi driver returns lost passport",
        "2026-11-06",
        "A taxi driver drove forty kilometres to return a passport that a tourist from Korea had "
        "left on the back seat on Friday.",
        "The tourist, who was due to fly home that evening, thanked the driver with a letter to "
        "the taxi company.",
    ),
]


def story(index: int, *closing: str) -> str:
    title, date, first, second = STORIES[index]
    paragraphs = [first, second, *closing]
    return (
        f"Home>City news\n\n{title}\n\nUpdated : {date}\n\nBy ( e.my399.com )\n\n"
        + "\n\n".join(paragraphs)
        + "\n"
    )


def drop(app: App, name: str, content: str) -> None:
    (app.settings.inbox / name).write_text(content, encoding="utf-8")


def body(article: Article) -> list[str]:
    return [block.text for block in article.blocks]


def by_title(app: App) -> dict[str, Article]:
    return {a.title: app.article(a.id) for a in app.articles()}


def test_a_closing_sentence_two_unrelated_stories_share_stays_in_both(store_app: App) -> None:
    drop(store_app, "bridge.txt", story(0, POLICE))
    store_app.ingest()
    drop(store_app, "fire.txt", story(1, POLICE))
    store_app.ingest()
    for article in by_title(store_app).values():
        assert body(article)[-1] == POLICE
        assert article.removed == ()


def test_a_single_block_goes_once_it_ends_min_articles_unrelated_stories(store_app: App) -> None:
    needed = store_app.settings.dedup.boilerplate_min_articles
    # the default: more than two stories, so one closing sentence two of them share stays
    assert 3 <= needed <= len(STORIES)
    for index in range(needed - 1):
        drop(store_app, f"story-{index}.txt", story(index, POLICE))
    store_app.ingest()
    assert all(body(a)[-1] == POLICE for a in by_title(store_app).values())
    drop(store_app, f"story-{needed - 1}.txt", story(needed - 1, POLICE))
    store_app.ingest()
    found = by_title(store_app)
    assert len(found) == needed
    for article in found.values():
        assert POLICE not in body(article)
        assert [r.text for r in article.removed] == [POLICE]


@pytest.mark.parametrize("first", [0, 2])
def test_a_two_block_run_goes_as_soon_as_its_second_copy_arrives(
    store_app: App, first: int
) -> None:
    drop(store_app, "a.txt", story(first, CHILDCARE, CHILDCARE_SENTENCE))
    store_app.ingest()
    drop(store_app, "b.txt", story(first + 1, CHILDCARE, CHILDCARE_SENTENCE))
    store_app.ingest()
    for article in by_title(store_app).values():
        assert CHILDCARE not in body(article) and CHILDCARE_SENTENCE not in body(article)
        assert len(body(article)) == 2


def test_an_article_made_only_of_boilerplate_keeps_its_body_and_is_reported(
    tmp_path: Path, database_url: str
) -> None:
    config = write_config(tmp_path, database_url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text(story(0, CHILDCARE, CHILDCARE_SENTENCE), encoding="utf-8")
    (inbox / "b.txt").write_text(story(1, CHILDCARE, CHILDCARE_SENTENCE), encoding="utf-8")
    assert publisher_cli("--config", str(config), "ingest", cwd=tmp_path).returncode == 0
    # a file that is nothing but the repeated pair: both its blocks are boilerplate
    (inbox / "only.txt").write_text(
        f"Home>City news\n\nChildcare notice\n\nUpdated : 2026-11-10\n\n"
        f"{CHILDCARE}\n\n{CHILDCARE_SENTENCE}\n",
        encoding="utf-8",
    )
    result = publisher_cli("--config", str(config), "ingest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "would leave" in result.stdout and "empty" in result.stdout
    assert "2026-11-10-childcare-notice" in result.stdout
    shown = publisher_cli(
        "--config",
        str(config),
        "articles",
        "show",
        "2026-11-10-childcare-notice",
        "--json",
        cwd=tmp_path,
    )
    article = json.loads(shown.stdout)
    assert article["blocks"] == [CHILDCARE, CHILDCARE_SENTENCE]
    assert article["removed_boilerplate"] == []
    assert {w["text"] for w in article["not_removed"]} == {CHILDCARE, CHILDCARE_SENTENCE}
    table = publisher_cli(
        "--config", str(config), "articles", "show", "2026-11-10-childcare-notice", cwd=tmp_path
    )
    assert "empty" in table.stdout
    # the others still lose the pair
    other = json.loads(
        publisher_cli(
            "--config",
            str(config),
            "articles",
            "show",
            "2026-11-02-bridge-closed-after-barge-strike",
            "--json",
            cwd=tmp_path,
        ).stdout
    )
    assert CHILDCARE not in other["blocks"]


def test_articles_show_states_the_true_count_and_the_ids(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for index in range(2):
        (inbox / f"s{index}.txt").write_text(
            story(index, CHILDCARE, CHILDCARE_SENTENCE), encoding="utf-8"
        )
    assert publisher_cli("--config", str(config), "ingest", cwd=tmp_path).returncode == 0
    for index in range(2, 5):  # three later ones: the stored reason was written at two
        (inbox / f"s{index}.txt").write_text(
            story(index, CHILDCARE, CHILDCARE_SENTENCE), encoding="utf-8"
        )
        assert publisher_cli("--config", str(config), "ingest", cwd=tmp_path).returncode == 0
    listed = json.loads(
        publisher_cli("--config", str(config), "articles", "list", "--json", cwd=tmp_path).stdout
    )
    ids = {a["id"] for a in listed}
    assert len(ids) == 5
    first = next(a for a in listed if a["title"] == STORIES[0][0])
    shown = json.loads(
        publisher_cli(
            "--config", str(config), "articles", "show", first["id"], "--json", cwd=tmp_path
        ).stdout
    )
    removed = {r["text"]: r for r in shown["removed_boilerplate"]}
    assert set(removed) == {CHILDCARE, CHILDCARE_SENTENCE}
    for removal in removed.values():
        assert removal["count"] == 5
        assert set(removal["articles"]) == ids
    table = publisher_cli("--config", str(config), "articles", "show", first["id"], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    flat = " ".join(table.stdout.split())
    assert "in 5 articles" in flat
    assert "appears in 2 articles" not in flat
    for listed_article in listed:
        assert listed_article["slug"] in flat


def test_an_articles_own_earlier_version_and_republication_are_never_boilerplate(
    store_app: App,
) -> None:
    # a developing story: the same file saved again with paragraphs appended
    drop(store_app, "developing.txt", story(0))
    store_app.ingest()
    drop(store_app, "developing.txt", story(0, "Traffic will use the old ferry crossing.", POLICE))
    report = store_app.ingest()
    assert report.summary()["updated"] == 1
    (article,) = by_title(store_app).values()
    appended = ["Traffic will use the old ferry crossing.", POLICE]
    assert body(article) == [*STORIES[0][2:], *appended]
    assert article.removed == ()
    # the seeds' long article re-published under another name, one paragraph added
    seed = next(SEEDS.glob("000_*")).read_text(encoding="utf-8")
    drop(store_app, "seed-000.txt", seed)
    store_app.ingest()
    title = "Harbin regains ‘National Civilized City’ title"
    before = body(by_title(store_app)[title])
    drop(store_app, "seed-000-again.txt", seed.rstrip("\n") + "\n\nThe city thanked residents.\n")
    report = store_app.ingest()
    assert report.summary()["updated"] == 1, report.results
    harbin = by_title(store_app)[title]
    assert harbin.removed == ()
    assert body(harbin) == [*before, "The city thanked residents."]


def _entries(public: Path) -> dict[str, str]:
    parsed = feedparser.parse((public / "atom.xml").read_bytes())
    return {e.title: e.content[0].value for e in parsed.entries}


def test_boilerplate_list_and_keep_through_the_cli(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    shutil.copytree(SEEDS, tmp_path / "inbox")
    run = lambda *args: publisher_cli("--config", str(config), *args, cwd=tmp_path)  # noqa: E731
    assert run("ingest").returncode == 0
    public = tmp_path / "public"
    assert all(CHILDCARE not in content for content in _entries(public).values())

    listed = run("boilerplate", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    blocks = {b["text"]: b for b in json.loads(listed.stdout)}
    assert set(blocks) == {CHILDCARE, CHILDCARE_SENTENCE}
    headline = blocks[CHILDCARE]
    assert headline["rule"] == "shared" and headline["count"] == 4
    assert len(headline["articles"]) == 4
    assert {a["slug"] for a in headline["articles"]} >= {
        "2020-09-01-harbin-regains-national-civilized-city-title"
    }
    table = run("boilerplate", "list")
    assert table.returncode == 0 and headline["key"] in table.stdout

    unknown = run("boilerplate", "keep", "nothing like it")
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1

    # by text, any case and spacing; then the sentence by a prefix of its key
    kept = run("boilerplate", "keep", "  harbin RAMPS up   childcare services ")
    assert kept.returncode == 0, kept.stderr
    assert run("boilerplate", "keep", blocks[CHILDCARE_SENTENCE]["key"][:8]).returncode == 0
    entries = _entries(public)
    holders = [t for t, content in entries.items() if CHILDCARE_SENTENCE in content]
    assert len(holders) == 4
    assert all(CHILDCARE in entries[t] for t in holders)
    category = feedparser.parse(
        (public / "category" / "civilization-progress" / "atom.xml").read_bytes()
    )
    assert all(CHILDCARE in e.content[0].value for e in category.entries)
    page = public / "articles" / "2022-05-05-harbin-sets-up-development-goals-for-2022.html"
    assert CHILDCARE in page.read_text(encoding="utf-8")
    assert json.loads(run("boilerplate", "list", "--json").stdout) == []

    # never removed again: a fifth article ending in the pair keeps it too
    (tmp_path / "inbox" / "new.txt").write_text(story(0, CHILDCARE, CHILDCARE_SENTENCE))
    assert run("ingest").returncode == 0
    entries = _entries(public)
    assert CHILDCARE_SENTENCE in entries[STORIES[0][0]]
    assert sum(CHILDCARE_SENTENCE in content for content in entries.values()) == 5


def test_boilerplate_list_shows_markup_and_escape_sequences_as_text(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # the parser drops C0 controls; C1 (\x9b is CSI, the 8-bit ESC [) stays
    headline, blurb = "Read [bold]more[/bold] \x9b2J", "Subscribe [/] today \x9b31m for news."
    for index in range(2):
        (inbox / f"s{index}.txt").write_text(story(index, headline, blurb), encoding="utf-8")
    assert publisher_cli("--config", str(config), "ingest", cwd=tmp_path).returncode == 0
    listed = publisher_cli("--config", str(config), "boilerplate", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert not any(c in listed.stdout for c in "\x1b\x9b"), repr(listed.stdout)
    assert "\\x9b2J" in listed.stdout and "[bold]more[/bold]" in listed.stdout
    kept = publisher_cli("--config", str(config), "boilerplate", "keep", blurb, cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    assert not any(c in kept.stdout for c in "\x1b\x9b") and "\\x9b31m" in kept.stdout


def test_a_schema_7_database_keeps_its_removals_and_can_keep_a_block(store_app: App) -> None:
    from sqlalchemy import text

    from publisher.store.schema import SCHEMA_VERSION

    for seed in sorted(SEEDS.iterdir()):
        shutil.copy(seed, store_app.settings.inbox / seed.name)
    store_app.ingest()
    before = [store_app.article(a.id).as_dict() for a in store_app.articles()]
    with store_app.store.begin() as connection:  # as the current release left it
        connection.execute(text("DROP TABLE kept_blocks"))
        connection.execute(text("DROP TABLE withheld_removals"))
        connection.execute(text("DELETE FROM schema_version WHERE version > 7"))
    store_app.close()
    upgraded = App(store_app.settings)
    try:
        assert [upgraded.article(a.id).as_dict() for a in upgraded.articles()] == before
        with upgraded.store.read() as connection:
            versions = connection.execute(text("SELECT version FROM schema_version")).scalars()
            assert max(versions) == SCHEMA_VERSION
        assert {b.text for b in upgraded.removed_boilerplate()} == {CHILDCARE, CHILDCARE_SENTENCE}
        kept, _ = upgraded.keep_boilerplate(CHILDCARE)
        assert len(kept.changed) == 4
        assert sum(CHILDCARE in body(upgraded.article(a.id)) for a in upgraded.articles()) == 4
    finally:
        upgraded.close()
