"""`articles delete` and `articles restore` as an editor runs them, on SQLite and PostgreSQL.

A deleted article leaves the site feed, its category's feeds, the JSON feed, the index,
the RFC 5005 archives (no other entry moves) and every digest not sent yet; the Atom
feeds carry an RFC 6721 tombstone for it, its page answers 410 from the real server, its
file is in <inbox>/deleted/, and ingesting its content again does not bring it back.
`articles restore` undoes all of it.
"""

from __future__ import annotations

import json
import os
import pty
import select as waiting
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import DeliveryStatus
from publisher.store.schema import deliveries
from tests.conftest import SEEDS
from tests.integration.test_watch import watches
from tests.integration.test_web import run_server
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
VICTIM = "2020-09-01-harbin-regains-national-civilized-city-title"
VICTIM_FILE = "000_b64ba5016e854707.txt"
SAME_CATEGORY = "2021-11-12-harbin-to-further-improve-peoples-livelihoods"
TOMBSTONE = "{http://purl.org/atompub/tombstones/1.0}deleted-entry"
ATOM_ENTRY = "{http://www.w3.org/2005/Atom}entry"


@dataclass
class Newsroom:
    config: Path
    app: App
    inbox: Path
    public: Path
    ids: dict[str, str]  # slug -> id

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.config), *args])


@pytest.fixture
def newsroom(tmp_path: Path, database_url: str, smtp_sink: SmtpSink) -> Iterator[Newsroom]:
    """The five seeds ingested from a real inbox; archive pages of 2, so two are full."""
    config = send_config(tmp_path, database_url, smtp_sink)
    with config.open("a", encoding="utf-8") as out:
        out.write("\n[feeds]\narchive_page_size = 2\n")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    report = app.ingest(now=lambda: INGESTED)
    assert report.summary()["added"] == 5, report.results
    app.build_feeds()
    ids = {a.slug: a.id for a in app.articles()}
    yield Newsroom(config, app, tmp_path / "inbox", tmp_path / "public", ids)
    app.close()


def _feed_ids(path: Path) -> set[str]:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    return {entry.id for entry in parsed.entries}


def _json_feed_ids(path: Path) -> set[str]:
    return {item["id"] for item in json.loads(path.read_text(encoding="utf-8"))["items"]}


def _tombstones(path: Path) -> dict[str, str]:
    root = ET.fromstring(path.read_bytes())
    return {element.get("ref", ""): element.get("when", "") for element in root.iter(TOMBSTONE)}


def _archive_pages(public: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((public / "archive").glob("*.xml"))}


def _reachable(public: Path) -> set[str]:
    """Every entry id in the subscription feed and the archive pages it leads to."""
    found = _feed_ids(public / "atom.xml")
    for page in (public / "archive").glob("*.xml"):
        found |= _feed_ids(page)
    return found


def _sitemap_pages(public: Path) -> set[str]:
    """The pages the sitemap lists (sitemap.xml indexes sitemap/<n>.xml), from the site root."""
    space = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    base = "http://127.0.0.1:8080/"
    index = ET.fromstring((public / "sitemap.xml").read_bytes())
    found: set[str] = set()
    for page in index.iter(f"{space}loc"):
        assert page.text is not None and page.text.startswith(base)
        urlset = ET.fromstring((public / page.text.removeprefix(base)).read_bytes())
        found |= {loc.text.removeprefix(base) for loc in urlset.iter(f"{space}loc") if loc.text}
    return found


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_delete_leaves_every_output_and_restore_brings_it_back(newsroom: Newsroom) -> None:
    public, victim = newsroom.public, newsroom.ids[VICTIM]
    others = set(newsroom.ids.values()) - {victim}
    category = public / "category" / "civilization-progress"
    assert victim in _feed_ids(public / "atom.xml") and victim in _feed_ids(category / "atom.xml")
    archives_before = _archive_pages(public)
    assert archives_before, "the seeds fill archive pages"

    deleted = newsroom.cli("articles", "delete", "2020-09-01-harbin-re", "--yes")

    assert deleted.exit_code == 0, deleted.output
    assert f"deleted {VICTIM}" in deleted.stdout
    for feed in (public / "atom.xml", public / "rss.xml", category / "atom.xml"):
        assert victim not in _feed_ids(feed), feed
    assert newsroom.ids[SAME_CATEGORY] in _feed_ids(category / "atom.xml")
    assert victim not in _json_feed_ids(public / "feed.json")
    assert victim not in _json_feed_ids(category / "feed.json")
    assert VICTIM not in (public / "index.html").read_text(encoding="utf-8")
    assert {p for p in _sitemap_pages(public) if not p.startswith(("archive/", "category/"))} == {
        f"articles/{slug}.html" for slug in newsroom.ids if slug != VICTIM
    } | {"index.html"}
    # RFC 6721 tombstones in the site feed and its category's, nowhere else
    site_stones = _tombstones(public / "atom.xml")
    assert list(site_stones) == [victim]
    assert datetime.fromisoformat(site_stones[victim]).tzinfo is not None
    assert list(_tombstones(category / "atom.xml")) == [victim]
    assert _tombstones(public / "category" / "harbin-today" / "atom.xml") == {}
    # archives: only the page that held it changed, by losing it; every other entry reachable
    archives_after = _archive_pages(public)
    assert archives_after.keys() == archives_before.keys()
    changed = [name for name in archives_before if archives_before[name] != archives_after[name]]
    assert len(changed) <= 1
    for name in changed:
        before_ids = {e.id for e in feedparser.parse(archives_before[name]).entries}
        assert _feed_ids(public / "archive" / name) == before_ids - {victim}
    assert _reachable(public) == others
    # the page is gone from the folder and answers 410 from the real server
    assert not (public / "articles" / f"{VICTIM}.html").exists()
    assert (newsroom.inbox / "deleted" / VICTIM_FILE).is_file()
    assert not (newsroom.inbox / VICTIM_FILE).exists()
    for url, _ in run_server(newsroom.app):
        assert _status(f"{url}articles/{VICTIM}.html") == 410
        assert _status(f"{url}articles/{SAME_CATEGORY}.html") == 200
    # the listings say so
    listed = {a["slug"]: a for a in json.loads(newsroom.cli("articles", "list", "--json").stdout)}
    assert listed[VICTIM]["deleted"] is not None and listed[SAME_CATEGORY]["deleted"] is None
    shown = newsroom.cli("articles", "show", "2020-09-01")
    assert shown.exit_code == 0, shown.output
    assert "deleted at" in shown.stdout
    status = json.loads(newsroom.cli("status", "--json").stdout)
    assert status["articles"]["total"] == 5 and status["articles"]["deleted"] == 1

    restored = newsroom.cli("articles", "restore", VICTIM)

    assert restored.exit_code == 0, restored.output
    assert (newsroom.inbox / VICTIM_FILE).is_file()
    assert not (newsroom.inbox / "deleted" / VICTIM_FILE).exists()
    assert victim in _feed_ids(public / "atom.xml") and victim in _feed_ids(category / "atom.xml")
    assert victim in _json_feed_ids(public / "feed.json")
    assert _tombstones(public / "atom.xml") == {} == _tombstones(category / "atom.xml")
    assert _archive_pages(public) == archives_before
    assert _reachable(public) == others | {victim}
    assert VICTIM in (public / "index.html").read_text(encoding="utf-8")
    assert f"articles/{VICTIM}.html" in _sitemap_pages(public)
    for url, _ in run_server(newsroom.app):
        assert _status(f"{url}articles/{VICTIM}.html") == 200
    # restored and ingested again: its own file again, nothing changes
    again = newsroom.cli("ingest")
    assert again.exit_code == 0, again.output
    assert victim in _feed_ids(public / "atom.xml")


def test_ingesting_its_content_again_does_not_resurrect_it(newsroom: Newsroom) -> None:
    victim = newsroom.ids[VICTIM]
    assert newsroom.cli("articles", "delete", VICTIM, "--yes").exit_code == 0
    # deleted/ is publisher's own folder: an ingest of the inbox never looks inside
    untouched = newsroom.cli("ingest", "--json")
    assert untouched.exit_code == 0, untouched.output
    assert {r["outcome"] for r in json.loads(untouched.stdout)} == {"unchanged"}
    assert len(json.loads(untouched.stdout)) == 4
    kept = newsroom.inbox / "deleted" / VICTIM_FILE
    original = kept.read_text(encoding="utf-8")
    # the same file back under its name, an exact copy elsewhere, and a corrected copy
    shutil.copyfile(kept, newsroom.inbox / VICTIM_FILE)
    shutil.copyfile(kept, newsroom.inbox / "copy-of-it.txt")
    corrected = original.replace("Harbin", "Harbin city", 1)
    assert corrected != original
    (newsroom.inbox / "corrected-copy.txt").write_text(corrected, encoding="utf-8")

    again = newsroom.cli("ingest", "--json")

    assert again.exit_code == 0, again.output
    outcomes = {r["file"]: r for r in json.loads(again.stdout)}
    for name in (VICTIM_FILE, "copy-of-it.txt", "corrected-copy.txt"):
        assert outcomes[name]["outcome"] == "deleted", outcomes[name]
        assert outcomes[name]["article_id"] == victim
        assert "deleted article" in outcomes[name]["detail"]
    public = newsroom.public
    assert victim not in _feed_ids(public / "atom.xml")
    assert not (public / "articles" / f"{VICTIM}.html").exists()
    assert len(newsroom.app.articles()) == 5  # no new article either
    # the table a person reads says it too, and it is still not an error
    shown = newsroom.cli("ingest")
    assert shown.exit_code == 0 and "deleted" in shown.stdout


def _texts(message: Message) -> str:
    parts = [message] if not message.is_multipart() else list(message.walk())
    found = []
    for part in parts:
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append(payload.decode(part.get_content_charset() or "utf-8"))
    return "\n".join(found)


def test_pending_deliveries_and_the_next_digest_leave_it_out(
    newsroom: Newsroom, smtp_sink: SmtpSink
) -> None:
    app, victim = newsroom.app, newsroom.ids[VICTIM]
    app.add_subscriber("ann@example.com", name="Ann")
    first = INGESTED + timedelta(hours=2)
    app.send_digests(now=first, deliver=False)  # fanned out, not sent yet
    with app.store.read() as connection:
        rows = connection.execute(select(deliveries.c.article_ids)).scalars().all()
    assert len(rows) == 1 and victim in json.loads(rows[0])

    app.delete_articles([VICTIM])
    sent = app.send_digests(now=first)

    assert sent.delivery.sent == 1, sent
    smtp_sink.wait_for(1)
    mail = _texts(message_from_bytes(smtp_sink.to("ann@example.com")[0].data))
    assert VICTIM not in mail and SAME_CATEGORY in mail
    # a subscriber who joins later: the next digest never holds it either
    app.add_subscriber("bob@example.com", name="Bob")
    later = app.send_digests(now=first + timedelta(minutes=5))
    assert later.delivery.sent == 1, later
    smtp_sink.wait_for(2)
    mail = _texts(message_from_bytes(smtp_sink.to("bob@example.com")[0].data))
    assert VICTIM not in mail and SAME_CATEGORY in mail
    with app.store.read() as connection:
        statuses = connection.execute(select(deliveries.c.status)).scalars().all()
    assert sorted(statuses) == [DeliveryStatus.SENT.value] * 2


def test_a_delivery_left_with_nothing_is_closed_not_sent(
    newsroom: Newsroom, smtp_sink: SmtpSink
) -> None:
    app = newsroom.app
    app.add_subscriber("ann@example.com", name="Ann")
    first = INGESTED + timedelta(hours=2)
    app.send_digests(now=first, deliver=False)

    app.delete_articles(list(newsroom.ids))
    app.send_digests(now=first)

    with app.store.read() as connection:
        row = connection.execute(select(deliveries.c.status, deliveries.c.error)).one()
    assert row.status == DeliveryStatus.FAILED.value and "deleted" in row.error
    assert smtp_sink.to("ann@example.com") == []


def test_ids_prefixes_and_the_prompt(newsroom: Newsroom) -> None:
    ambiguous = newsroom.cli("articles", "delete", "202", "--yes")
    assert ambiguous.exit_code == 2
    assert "matches 4 articles" in ambiguous.stderr and VICTIM in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    shown = newsroom.cli("articles", "show", "202")
    assert shown.exit_code == 2 and "matches 4 articles" in shown.stderr
    unknown = newsroom.cli("articles", "delete", "no-such-article", "--yes")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: no article with id or slug 'no-such-article'; see `publisher articles list`"
    ]
    # no terminal and no --yes: refused, nothing asked, nothing deleted
    refused = newsroom.cli("articles", "delete", VICTIM)
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert all(a.deleted is None for a in newsroom.app.articles())
    assert (newsroom.inbox / VICTIM_FILE).is_file()
    # one bad ID among good ones changes nothing
    mixed = newsroom.cli("articles", "delete", VICTIM, "nope", "--yes")
    assert mixed.exit_code == 2
    assert all(a.deleted is None for a in newsroom.app.articles())
    # by the id itself, twice: the second time says so
    victim = newsroom.ids[VICTIM]
    assert newsroom.cli("articles", "delete", victim, "--yes").exit_code == 0
    twice = newsroom.cli("articles", "delete", victim, "--yes")
    assert twice.exit_code == 0 and "already deleted" in twice.stdout
    not_deleted = newsroom.cli("articles", "restore", SAME_CATEGORY)
    assert not_deleted.exit_code == 1 and "not deleted" in not_deleted.stderr


def test_restore_never_overwrites_a_new_file_under_the_old_name(newsroom: Newsroom) -> None:
    assert newsroom.cli("articles", "delete", VICTIM, "--yes").exit_code == 0
    newer = "a different file the editor put there since"
    (newsroom.inbox / VICTIM_FILE).write_text(newer, encoding="utf-8")

    restored = newsroom.cli("articles", "restore", VICTIM)

    assert restored.exit_code == 0, restored.output
    assert "taken" in restored.stderr
    assert (newsroom.inbox / VICTIM_FILE).read_text(encoding="utf-8") == newer
    assert (newsroom.inbox / "deleted" / VICTIM_FILE).is_file()
    assert newsroom.ids[VICTIM] in _feed_ids(newsroom.public / "atom.xml")


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


STORY = "Home>Harbin Today\n\n{0}\n\nUpdated : 2026-11-21\n\nBy ( Harbin Daily )\n\n{1}\n"


def test_the_watcher_ignores_the_deleted_folder_and_keeps_it_deleted(
    newsroom: Newsroom, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--config", str(newsroom.config), "watch"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(
            lambda: watches(process.pid, newsroom.inbox) or process.poll() is not None,
            "the inbox watch",
        )
        assert process.poll() is None
        assert newsroom.cli("articles", "delete", VICTIM, "--yes").exit_code == 0
        # a file saved inside deleted/ is never an article, whatever it holds
        (newsroom.inbox / "deleted" / "new-in-deleted.txt").write_text(
            STORY.format("Written into deleted", "Nobody should see this."), encoding="utf-8"
        )
        # the positive signal: a later file in the inbox is ingested and built
        (newsroom.inbox / "later.txt").write_text(
            STORY.format("Ice festival opens", "The ice festival opened on Friday."),
            encoding="utf-8",
        )
        _wait_for(
            lambda: "Ice festival opens" in (newsroom.public / "index.html").read_text("utf-8"),
            "the later article in the index",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        finally:
            process.kill()
    titles = {a.title: a for a in newsroom.app.articles()}
    assert "Written into deleted" not in titles
    assert titles["Harbin regains ‘National Civilized City’ title"].deleted is not None
    # the watcher's own (incremental) build after the later file left it out too
    assert newsroom.ids[VICTIM] not in _feed_ids(newsroom.public / "atom.xml")
    assert not (newsroom.public / "articles" / f"{VICTIM}.html").exists()
    assert f"articles/{VICTIM}.html" not in _sitemap_pages(newsroom.public)
    assert (newsroom.inbox / "deleted" / VICTIM_FILE).is_file()


def _answer_prompt(command: list[str], cwd: Path, answer: bytes) -> tuple[int, str]:
    """Run `command` on a pseudo-terminal; type `answer` once it asks. (exit code, output)"""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=terminal, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    output = b""
    answered = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = waiting.select([controller], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the other end closed: the process is done
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            os.write(controller, answer)
            answered = True
    os.close(controller)
    return process.wait(timeout=30), output.decode("utf-8", "replace")


def test_on_a_terminal_it_asks_first(newsroom: Newsroom, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "publisher", "--config", str(newsroom.config)]
    command += ["articles", "delete", VICTIM]

    code, output = _answer_prompt(command, tmp_path, b"n\n")
    assert code == 1 and "Delete 1 article(s)?" in output and VICTIM in output, output
    assert all(a.deleted is None for a in newsroom.app.articles())

    code, output = _answer_prompt(command, tmp_path, b"y\n")
    assert code == 0 and f"deleted {VICTIM}" in output, output
    assert newsroom.app.article(VICTIM).deleted is not None


def test_a_new_story_saved_under_the_deleted_ones_path_is_a_new_article(
    newsroom: Newsroom,
) -> None:
    assert newsroom.cli("articles", "delete", VICTIM, "--yes").exit_code == 0
    (newsroom.inbox / VICTIM_FILE).write_text(
        STORY.format("Bridge closed for repairs", "Repairs close the Songhua bridge for a week."),
        encoding="utf-8",
    )

    added = newsroom.cli("ingest", "--json")

    assert added.exit_code == 0, added.output
    [result] = [r for r in json.loads(added.stdout) if r["file"] == VICTIM_FILE]
    assert result["outcome"] == "added" and result["article_id"] != newsroom.ids[VICTIM]
    assert result["article_id"] in _feed_ids(newsroom.public / "atom.xml")
    # the deleted article comes back beside it; the new story keeps the path
    restored = newsroom.cli("articles", "restore", VICTIM)
    assert restored.exit_code == 0 and "taken" in restored.stderr
    assert {newsroom.ids[VICTIM], result["article_id"]} <= _feed_ids(newsroom.public / "atom.xml")
    again = newsroom.cli("ingest", "--json")
    assert {r["outcome"] for r in json.loads(again.stdout)} == {"unchanged"}


def test_the_tombstone_stays_for_tombstone_days_then_goes(newsroom: Newsroom) -> None:
    from publisher.site import SiteBuilder

    [done] = newsroom.app.delete_articles([VICTIM])
    victim, public = done.article.id, newsroom.public
    assert victim in _tombstones(public / "atom.xml")
    deleted_at = newsroom.app.article(VICTIM).deleted
    assert deleted_at is not None
    settings, store = newsroom.app.settings, newsroom.app.store

    SiteBuilder(settings, store, clock=lambda: deleted_at + timedelta(days=29)).build()
    assert victim in _tombstones(public / "atom.xml")

    SiteBuilder(settings, store, clock=lambda: deleted_at + timedelta(days=30, seconds=1)).build()
    assert _tombstones(public / "atom.xml") == {}
    assert victim not in _feed_ids(public / "atom.xml")  # still deleted, only not announced


def test_tombstone_days_is_a_setting(tmp_path: Path, sqlite_url: str) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path, sqlite_url, feeds="{ tombstone_days = 0 }")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    assert CliRunner().invoke(cli, ["--config", str(config), "ingest"]).exit_code == 0
    deleted = CliRunner().invoke(
        cli, ["--config", str(config), "articles", "delete", VICTIM, "--yes"]
    )
    assert deleted.exit_code == 0, deleted.output
    assert _tombstones(tmp_path / "public" / "atom.xml") == {}
    bad = write_config(tmp_path, sqlite_url, feeds="{ tombstone_days = -1 }")
    refused = CliRunner().invoke(cli, ["--config", str(bad), "build"])
    assert refused.exit_code == 2 and "feeds.tombstone_days" in refused.stderr
