"""An article is the file it comes from: its Id: header, else its path inside the inbox.
Saving that file again updates the article, whatever the similarity (real files, SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.app import App
from publisher.model import FileOutcome

FIRST = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
LATER = FIRST + timedelta(hours=1)

LEDE = "A crane fell on Xuefu Road on Tuesday and two workers were hurt, one of them badly."
SECOND = "The site was closed, the district said."
MORE = (
    "Witnesses said the crane swayed in strong wind for several minutes before it fell.",
    "The company that runs the site said it would cooperate fully with investigators.",
    "Work on the tower, due to open next year, will not resume before the inquiry ends.",
)


def _story(*paragraphs: str, title: str = "Crane collapse injures workers", extra: str = "") -> str:
    header = f"Home>Harbin Today\n\n{title}\n\nUpdated : 2026-12-02\n\nBy ( Harbin Daily )\n"
    return header + extra + "\n" + "\n\n".join(paragraphs) + "\n"


def _ingest(app: App, path: Path, text: str, now: datetime) -> FileOutcome:
    path.write_text(text, encoding="utf-8")
    [result] = app.ingest([path], now=lambda: now).results
    return result.outcome


def test_a_short_story_corrected_in_its_own_file_updates_it(store_app: App) -> None:
    path = store_app.settings.inbox / "crane.txt"
    assert _ingest(store_app, path, _story(LEDE, SECOND), FIRST) is FileOutcome.ADDED
    [before] = store_app.articles()
    corrected = LEDE.replace("two workers", "three workers")
    assert _ingest(store_app, path, _story(corrected, SECOND), LATER) is FileOutcome.UPDATED
    [after] = store_app.articles()
    assert (after.id, after.slug) == (before.id, before.slug)
    assert after.updated > before.updated
    assert [b.text for b in after.blocks] == [corrected, SECOND]
    # saved once more, unchanged: nothing happens
    assert _ingest(store_app, path, _story(corrected, SECOND), LATER) is FileOutcome.UNCHANGED
    assert store_app.articles()[0].updated == after.updated


def test_paragraphs_appended_to_a_developing_story_update_it_and_remove_nothing(
    store_app: App,
) -> None:
    path = store_app.settings.inbox / "crane.txt"
    _ingest(store_app, path, _story(LEDE, SECOND), FIRST)
    [before] = store_app.articles()
    assert _ingest(store_app, path, _story(LEDE, SECOND, *MORE), LATER) is FileOutcome.UPDATED
    [after] = store_app.articles()
    assert after.id == before.id
    assert [b.text for b in after.blocks] == [LEDE, SECOND, *MORE]
    assert store_app.article(after.id).removed == ()


def test_an_id_header_keeps_the_article_across_a_rename_with_new_text(store_app: App) -> None:
    inbox = store_app.settings.inbox
    first = inbox / "crane.txt"
    _ingest(store_app, first, _story(LEDE, SECOND, extra="Id: hd-2026-1202-crane\n"), FIRST)
    [before] = store_app.articles()
    first.unlink()
    rewritten = _story(
        "A tower crane fell onto a street in Nangang district, hurting three people.",
        "Officials have ordered checks on every tower crane in the city.",
        title="City orders crane checks after Nangang accident",
        extra="Id: hd-2026-1202-crane\n",
    )
    assert _ingest(store_app, inbox / "nangang-0412.txt", rewritten, LATER) is FileOutcome.UPDATED
    [after] = store_app.articles()
    assert (after.id, after.slug) == (before.id, before.slug)
    assert after.title == "City orders crane checks after Nangang accident"


def test_a_renamed_file_keeps_its_article_as_an_exact_or_near_copy(store_app: App) -> None:
    inbox = store_app.settings.inbox
    long_story = _story(LEDE, SECOND, *MORE)
    _ingest(store_app, inbox / "crane.txt", long_story, FIRST)
    [before] = store_app.articles()
    (inbox / "crane.txt").unlink()
    renamed = inbox / "crane-final.txt"
    assert _ingest(store_app, renamed, long_story, LATER) is FileOutcome.DUPLICATE
    near = long_story.replace("several minutes", "a few minutes")
    assert _ingest(store_app, renamed, near, LATER) is FileOutcome.UPDATED
    [after] = store_app.articles()
    assert after.id == before.id
    # the article now comes from the new name: a change there updates it whatever it is
    grown = _story(LEDE.replace("two", "four"), "The inquiry will report in March.")
    assert _ingest(store_app, renamed, grown, LATER) is FileOutcome.UPDATED
    assert [a.id for a in store_app.articles()] == [before.id]


def test_files_of_one_batch_see_the_sources_of_the_files_before_them(store_app: App) -> None:
    inbox = store_app.settings.inbox
    (inbox / "a.txt").write_text(_story(LEDE, SECOND, extra="Id: same\n"), encoding="utf-8")
    other = _story("Something else entirely happened.", title="Another", extra="Id: same\n")
    (inbox / "b.txt").write_text(other, encoding="utf-8")
    outcomes = [r.outcome for r in store_app.ingest(now=lambda: FIRST).results]
    assert outcomes == [FileOutcome.ADDED, FileOutcome.UPDATED]
    [article] = store_app.articles()
    assert article.title == "Another"


def test_a_file_saved_back_to_its_first_version_updates_the_article_again(
    store_app: App,
) -> None:
    path = store_app.settings.inbox / "crane.txt"
    _ingest(store_app, path, _story(LEDE, SECOND), FIRST)
    corrected = _story(LEDE.replace("two workers", "three workers"), SECOND)
    _ingest(store_app, path, corrected, LATER)
    assert _ingest(store_app, path, _story(LEDE, SECOND), LATER) is FileOutcome.UPDATED
    [article] = store_app.articles()
    assert [b.text for b in article.blocks] == [LEDE, SECOND]
