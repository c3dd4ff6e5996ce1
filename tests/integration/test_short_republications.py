"""A short story re-published under another file name is the same article (design.md,
"Identity, corrections and duplicates" item 2): through the real CLI, on SQLite and
PostgreSQL, read back from the Atom feed it builds."""

from __future__ import annotations

import json
from pathlib import Path

import feedparser
import pytest

from tests.conftest import write_config
from tests.integration.in_process import publisher_cli

LEDE = "A crane fell on Xuefu Road on Tuesday and two workers were hurt, one of them badly."
SECOND = "The site was closed, the district said."
MORE = (
    "Witnesses said the crane swayed in strong wind for several minutes before it fell.",
    "The company that runs the site said it would cooperate fully with investigators.",
)
CLOSING = "Police said the investigation is ongoing."


def story(*paragraphs: str, title: str = "Crane collapse injures workers", day: int = 2) -> str:
    header = f"Home>Harbin Today\n\n{title}\n\nUpdated : 2026-12-{day:02}\n\nBy ( Harbin Daily )\n"
    return header + "\n" + "\n\n".join(paragraphs) + "\n"


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    (tmp_path / "inbox").mkdir()
    return write_config(tmp_path, database_url)


def run(config: Path, *args: str) -> str:
    result = publisher_cli("--config", str(config), *args, cwd=config.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ingest(config: Path, name: str, text: str) -> list[dict[str, str]]:
    """Write one file into the inbox and ingest it alone; its results as JSON."""
    path = config.parent / "inbox" / name
    path.write_text(text, encoding="utf-8")
    results: list[dict[str, str]] = json.loads(run(config, "ingest", "--json", str(path)))
    return results


def feed_entries(config: Path) -> list[feedparser.FeedParserDict]:
    run(config, "build")
    entries: list[feedparser.FeedParserDict] = feedparser.parse(
        (config.parent / "public" / "atom.xml").read_bytes()
    ).entries
    return entries


def test_a_two_paragraph_story_corrected_under_a_new_file_name_updates_it(config: Path) -> None:
    [first] = ingest(config, "crane.txt", story(LEDE, SECOND))
    assert first["outcome"] == "added"
    corrected = LEDE.replace("two workers", "three workers")

    [second] = ingest(config, "crane-corrected.txt", story(corrected, SECOND))

    assert second["outcome"] == "updated", second["detail"]
    assert second["article_id"] == first["article_id"]
    [entry] = feed_entries(config)
    assert entry.id == first["article_id"]
    assert "three workers" in entry.content[0].value
    assert "two workers" not in entry.content[0].value


def test_a_short_story_with_two_paragraphs_appended_under_a_new_name_updates_it(
    config: Path,
) -> None:
    [first] = ingest(config, "crane.txt", story(LEDE, SECOND))

    [second] = ingest(config, "crane-update-1.txt", story(LEDE, SECOND, *MORE, day=3))

    assert second["outcome"] == "updated", second["detail"]
    assert second["article_id"] == first["article_id"]
    shown = json.loads(run(config, "articles", "show", first["article_id"], "--json"))
    assert shown["blocks"] == [LEDE, SECOND, *MORE]
    [entry] = feed_entries(config)
    assert all(paragraph in entry.content[0].value for paragraph in (LEDE, SECOND, *MORE))


def test_the_original_and_its_longer_version_in_one_batch_make_one_article(config: Path) -> None:
    inbox = config.parent / "inbox"
    (inbox / "a-crane.txt").write_text(story(LEDE, SECOND), encoding="utf-8")
    (inbox / "b-crane-update.txt").write_text(story(LEDE, SECOND, *MORE, day=3), encoding="utf-8")

    results = json.loads(run(config, "ingest", "--json"))

    assert [r["outcome"] for r in results] == ["added", "updated"]
    [entry] = feed_entries(config)
    assert all(paragraph in entry.content[0].value for paragraph in (LEDE, SECOND, *MORE))


def test_unrelated_short_stories_sharing_a_title_prefix_and_closing_sentence_stay_two(
    config: Path,
) -> None:
    fire = story(
        "A fire broke out in a noodle shop on Zhongshan Road late on Monday night.",
        "Firefighters put it out within an hour and nobody was hurt.",
        CLOSING,
        title="Harbin police report: fire in Nangang",
    )
    theft = story(
        "Two bicycles were stolen from a courtyard in Daoli district on Sunday morning.",
        "The owners reported the theft to the local station the same day.",
        CLOSING,
        title="Harbin police report: theft in Daoli",
    )
    [one] = ingest(config, "fire.txt", fire)
    [two] = ingest(config, "theft.txt", theft)

    assert (one["outcome"], two["outcome"]) == ("added", "added"), two["detail"]
    assert sorted(e.title for e in feed_entries(config)) == [
        "Harbin police report: fire in Nangang",
        "Harbin police report: theft in Daoli",
    ]
