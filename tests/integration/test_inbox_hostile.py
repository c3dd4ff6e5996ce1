"""A hostile inbox: planted links, odd names, huge files, files that change while moved.

Whoever may write the inbox may make publisher read, publish and quarantine what is in it,
and nothing else: nothing outside the inbox is read through a link in it, written, or moved.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import publisher.inbox.moves
from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.inbox import DELETED, QUARANTINE, Inbox, InboxError, original_name, safe_name
from publisher.prepare import prepare
from tests.conftest import SEEDS, write_config

ARTICLE = (
    "Home>News>Society\n\n{title}\n\nUpdated : 2026-11-20\n\nBy Harbin Daily\n\n"
    "First paragraph of {title} with enough words to be an article body.\n\n"
    "Second paragraph that says something else about {title} entirely.\n"
)
NOT_AN_ARTICLE = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttacker attacker@example\n"


def article(title: str) -> bytes:
    return ARTICLE.format(title=title).encode("utf-8")


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str) -> Iterator[App]:
    (tmp_path / "inbox").mkdir()
    application = App(load_settings(write_config(tmp_path, sqlite_url), environ={}))
    yield application
    application.close()


def copy_seeds(inbox: Path) -> None:
    for seed in sorted(SEEDS.iterdir()):
        shutil.copy(seed, inbox / seed.name)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def published(output: Path) -> str:
    return "".join(p.read_text("utf-8", "replace") for p in output.rglob("*") if p.is_file())


# -- 1. the quarantine folder ------------------------------------------------------------


@pytest.mark.parametrize("planted", ["link to a folder", "link to a file", "regular file"])
def test_a_planted_quarantine_is_never_written_through_and_the_feeds_still_build(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture, planted: str
) -> None:
    inbox = app.settings.inbox
    outside = tmp_path / "home" / ".ssh"
    outside.mkdir(parents=True)
    (outside / "known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    if planted == "link to a folder":
        (inbox / "quarantine").symlink_to(outside)
    elif planted == "link to a file":
        (inbox / "quarantine").symlink_to(outside / "known_hosts")
    else:
        (inbox / "quarantine").write_text("not a folder\n")
    before = tree(outside)
    copy_seeds(inbox)
    (inbox / "authorized_keys").write_bytes(NOT_AN_ARTICLE)
    (inbox / "x.txt").write_bytes(b"")
    with caplog.at_level(logging.INFO):
        report = app.ingest()
    assert report.summary()["added"] == 5
    assert report.summary()["quarantined"] == 2
    assert tree(outside) == before  # nothing written or moved there
    assert (inbox / "authorized_keys").read_bytes() == NOT_AN_ARTICLE  # stays, whole
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "nothing is moved into it" in errors[0]
    assert (app.settings.output_dir / "atom.xml").exists()
    assert published(app.settings.output_dir).count("<entry>") >= 5


# -- 2. links in the inbox -----------------------------------------------------------------


def test_links_in_the_inbox_are_skipped_and_nothing_outside_is_read_or_moved(
    app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = app.settings.inbox
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "shadow").write_bytes(b"root:$6$SECRET-HASH:19000:0:99999:7:::\n")
    (etc / "secret-article.txt").write_bytes(article("TOPSECRET quarterly numbers"))
    before = tree(etc)
    copy_seeds(inbox)
    (inbox / "numbers.txt").symlink_to(etc / "secret-article.txt")  # a file outside
    (inbox / "etc").symlink_to(etc)  # a folder outside
    (inbox / "self.txt").symlink_to(inbox / "self.txt")  # a link to itself (ELOOP)
    (inbox / "sub").mkdir()
    (inbox / "sub" / "up").symlink_to(inbox)  # a folder loop
    (inbox / "gone.txt").symlink_to(tmp_path / "nowhere")
    with caplog.at_level(logging.INFO, logger="publisher.ingest"):
        report = app.ingest()
    assert report.summary() == {
        "added": 5,
        "updated": 0,
        "duplicate": 0,
        "unchanged": 0,
        "quarantined": 0,
    }
    assert tree(etc) == before  # nothing moved out of its real place
    skipped = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
    assert len(skipped) == 5, skipped  # one line per link
    assert not app.settings.quarantine.exists()  # no .error.txt about outside files
    site = published(app.settings.output_dir)
    assert "TOPSECRET" not in site and "SECRET-HASH" not in site


def test_a_path_named_on_the_command_line_is_read_through_its_link_but_never_moved(
    app: App, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    (elsewhere / "story.txt").write_bytes(article("A story from downloads"))
    (elsewhere / "bad.txt").write_bytes(NOT_AN_ARTICLE)
    (tmp_path / "link-to-downloads").symlink_to(elsewhere)
    report = app.ingest([tmp_path / "link-to-downloads"])
    assert [(r.file, r.outcome) for r in report.results] == [
        ("bad.txt", "quarantined"),
        ("story.txt", "added"),
    ]
    assert "not moved" in report.results[0].detail
    assert (elsewhere / "bad.txt").read_bytes() == NOT_AN_ARTICLE
    assert not app.settings.quarantine.exists()


# -- 4 and 13. odd names -------------------------------------------------------------------


def test_a_name_that_is_not_utf8_is_stored_escaped_and_reversibly(store_app: App) -> None:
    inbox = store_app.settings.inbox
    copy_seeds(inbox)
    odd = os.fsdecode(bytes(inbox) + b"/caf\xe9.txt")
    Path(odd).write_bytes(article("Coffee in Harbin"))
    Path(os.fsdecode(bytes(inbox) + b"/bad\xff.txt")).write_bytes(NOT_AN_ARTICLE)
    report = store_app.ingest()
    assert report.summary()["added"] == 6
    assert report.summary()["quarantined"] == 1
    stored = {a.source_file for a in store_app.articles()}
    assert "caf\\xe9.txt" in stored
    assert os.fsencode(original_name("caf\\xe9.txt")) == b"caf\xe9.txt"
    reason = store_app.settings.quarantine / os.fsdecode(b"bad\xff.txt.error.txt")
    assert "file: bad\\xff.txt" in reason.read_text("utf-8")
    assert store_app.ingest().summary()["unchanged"] == 6  # found again under the same name


def test_control_characters_in_names_never_reach_logs_or_reasons(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = app.settings.inbox
    name = "x\nERROR forged line\x1b]0;owned\x07\x1b[2J.txt"
    (inbox / name).write_bytes(NOT_AN_ARTICLE)
    with caplog.at_level(logging.INFO):
        report = app.ingest()
    assert report.results[0].file == "x\\nERROR forged line\\x1b]0;owned\\x07\\x1b[2J.txt"
    messages = [r.getMessage() for r in caplog.records]
    assert any("quarantined x\\nERROR" in m for m in messages)
    assert not any(c in m for m in messages for c in "\n\x1b\x07")
    reason = (app.settings.quarantine / (name + ".error.txt")).read_text("utf-8")
    assert "\x1b" not in reason and reason.count("\n") == 3


@pytest.mark.parametrize(
    "name",
    ["plain.txt", "a\\b.txt", "caf\udce9.txt", "tab\there", "nel\x85", "\u2028", "\\x41"],
)
def test_safe_names_are_printable_and_reversible(name: str) -> None:
    shown = safe_name(name)
    assert shown.isprintable()
    shown.encode("utf-8")  # storable in any database
    assert original_name(shown) == name


# -- 9. quarantine across filesystems -----------------------------------------------------


def _cross_device(monkeypatch: pytest.MonkeyPatch, before: object = None) -> None:
    """The one fake here: no second filesystem is available, so the move into quarantine
    fails as rename(2) does across devices (EXDEV); everything after it is real."""
    real = os.rename

    def rename(src: object, dst: object, **kwargs: object) -> None:
        if kwargs.get("dst_dir_fd") is not None:
            if callable(before):
                before()
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(publisher.inbox.moves.os, "rename", rename)


def test_across_filesystems_the_bytes_saved_meanwhile_are_what_is_kept(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = app.settings.inbox / "draft.txt"
    bad.write_bytes(b"Home>News\n\nDraft\n\nno date yet\n")
    fixed = b"Home>News\n\nDraft\n\nno date yet, but three more paragraphs saved meanwhile\n"
    _cross_device(monkeypatch, before=lambda: bad.write_bytes(fixed))
    report = app.ingest()
    assert report.summary()["quarantined"] == 1
    assert (app.settings.quarantine / "draft.txt").read_bytes() == fixed
    assert not bad.exists()


def test_across_filesystems_a_file_written_during_the_copy_is_left_in_place(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = app.settings.inbox / "upload.txt"
    bad.write_bytes(b"Home>News\n\nUpload\n\nfirst part")
    _cross_device(monkeypatch)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the uploader writes on while the copy is made
        real_fsync(fd)
        with bad.open("ab") as file:
            file.write(b" and the rest")

    monkeypatch.setattr(publisher.inbox.moves.os, "fsync", fsync)
    with caplog.at_level(logging.ERROR):
        report = app.ingest()
    assert "changed while it was copied" in report.results[0].detail
    assert bad.read_bytes() == b"Home>News\n\nUpload\n\nfirst part and the rest"
    assert list(app.settings.quarantine.iterdir()) == []


# the move in a process of its own: as root, without the capabilities that let root read a
# file its mode forbids (setpriv), so the file is as unreadable as it is for anyone else
UNREADABLE_ACROSS_FILESYSTEMS = """
import errno, os, sys
from datetime import UTC, datetime
from pathlib import Path
from publisher.inbox import Inbox, InboxError
real = os.rename
def rename(src, dst, **kwargs):  # no second filesystem here: rename(2) fails as across one
    if kwargs.get("dst_dir_fd") is not None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    real(src, dst, **kwargs)
os.rename = rename
try:
    Inbox(Path(sys.argv[1])).quarantine(Path(sys.argv[2]), "cannot read file", datetime.now(UTC))
except InboxError as exc:
    print(exc.message)
"""


def test_across_filesystems_an_unreadable_file_is_never_replaced_by_an_empty_one(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    locked = inbox / "locked.txt"
    locked.write_bytes(b"precious words")
    locked.chmod(0)
    command = [sys.executable, "-c", UNREADABLE_ACROSS_FILESYSTEMS, str(inbox), str(locked)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert "left where it is: cannot read it (Permission denied)" in done.stdout, done.stderr
    locked.chmod(0o600)
    assert locked.read_bytes() == b"precious words"
    assert list((inbox / "quarantine").iterdir()) == []


# -- 10. size -------------------------------------------------------------------------------


def test_a_file_over_max_file_bytes_is_quarantined_unread(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "inbox").mkdir()
    config = write_config(tmp_path, sqlite_url, max_file_bytes="2000")
    app = App(load_settings(config, environ={}))
    try:
        inbox = app.settings.inbox
        long = article("Long") + b"More words here. " * 200
        (inbox / "long.txt").write_bytes(long)
        (inbox / "short.txt").write_bytes(article("Short"))
        with (inbox / "sparse.txt").open("wb") as sparse:
            sparse.truncate(8 * 1024**3)  # 8 GiB that reading would have to allocate
        report = app.ingest()
        outcomes = {r.file: (r.outcome, r.detail) for r in report.results}
        assert outcomes["short.txt"][0] == "added"
        assert outcomes["long.txt"] == ("quarantined", f"too large ({len(long)} bytes, limit 2000)")
        assert outcomes["sparse.txt"] == (
            "quarantined",
            f"too large ({8 * 1024**3} bytes, limit 2000)",
        )
        reason = app.settings.quarantine / "long.txt.error.txt"
        assert reason.read_text().startswith("too large")
    finally:
        app.close()


def test_max_file_bytes_comes_from_the_environment_and_is_validated(config_file: Path) -> None:
    assert load_settings(config_file, environ={}).max_file_bytes == 4 * 1024 * 1024
    env = {"PUBLISHER_MAX_FILE_BYTES": "1234"}
    assert load_settings(config_file, environ=env).max_file_bytes == 1234
    result = CliRunner().invoke(
        cli,
        ["--config", str(config_file), "articles", "list"],
        env={"PUBLISHER_MAX_FILE_BYTES": "0"},
    )
    assert result.exit_code == 2
    assert "max_file_bytes must be at least 1" in result.output


# -- 20. a stalled upload completed inside the quarantine ---------------------------------


def _complete_in_quarantine(app: App, name: str, data: bytes) -> None:
    quarantined = app.settings.quarantine / name
    quarantined.write_bytes(data)
    reason = app.settings.quarantine / f"{name}.error.txt"
    written = reason.stat().st_mtime_ns
    if quarantined.stat().st_mtime_ns <= written:  # a coarse clock: it is still later
        os.utime(quarantined, ns=(written + 1_000_000, written + 1_000_000))


def test_a_quarantined_file_completed_later_is_ingested_on_the_next_run(app: App) -> None:
    inbox = app.settings.inbox
    (inbox / "stalled.txt").write_bytes(b"Home>News>Society\n\nHalf an upload\n\n")
    assert app.ingest().summary()["quarantined"] == 1
    (app.settings.quarantine / "other.txt").write_bytes(b"the operator's own note")
    assert app.ingest().summary()["quarantined"] == 0  # untouched: nothing changed
    assert (app.settings.quarantine / "stalled.txt").exists()
    _complete_in_quarantine(app, "stalled.txt", article("Half an upload"))
    report = app.ingest()
    assert [(r.file, r.outcome) for r in report.results] == [("stalled.txt", "added")]
    assert sorted(p.name for p in app.settings.quarantine.iterdir()) == ["other.txt"]


def test_inbox_release_keeps_a_taken_name(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path)
    (tmp_path / "x.txt").write_bytes(b"bad")
    moved = inbox.quarantine(tmp_path / "x.txt", "no date", datetime.now(UTC))
    assert moved == tmp_path / "quarantine" / "x.txt"
    (tmp_path / "x.txt").write_bytes(b"a new drop under the same name")
    os.utime(moved, ns=(2**62, 2**62))
    assert inbox.release_finished() == []
    assert moved.exists() and (tmp_path / "x.txt").read_bytes() == b"a new drop under the same name"


def test_a_folder_swapped_for_a_link_after_the_walk_is_not_read_or_moved_through(
    app: App, tmp_path: Path
) -> None:
    inbox = app.settings.inbox
    (inbox / "sub").mkdir()
    (inbox / "sub" / "passwd").write_bytes(NOT_AN_ARTICLE)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "passwd").write_bytes(article("TOPSECRET outside the inbox"))
    listed = list(app.ingestor.inbox.files())
    assert listed == [app.ingestor.inbox.root / "sub" / "passwd"]
    (inbox / "sub").rename(tmp_path / "moved-away")
    (inbox / "sub").symlink_to(outside)  # swapped in after the walk, before the read
    prepared = prepare(str(listed[0]), app.ingestor.signer, app.settings.zone, 10_000)
    assert prepared.incoming is None and prepared.problem is not None
    assert prepared.problem.startswith("cannot read file")  # ENOTDIR: a link, not a folder
    with pytest.raises(InboxError):
        app.ingestor.inbox.quarantine(listed[0], "no date", datetime.now(UTC))
    assert (outside / "passwd").read_bytes() == article("TOPSECRET outside the inbox")


def test_folders_nested_past_the_recursion_limit_are_walked(app: App) -> None:
    inbox = app.settings.inbox
    depth = 1200
    deepest = inbox.joinpath(*["d"] * depth)
    fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):  # os.makedirs itself recurses once per level
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(article("Found at the bottom"))
    finally:
        os.close(fd)
    (inbox / "top.txt").write_bytes(article("Found at the top"))
    try:
        report = app.ingest()
        assert sorted((r.file, r.outcome) for r in report.results) == [
            ("deep.txt", "added"),
            ("top.txt", "added"),
        ]
    finally:
        (deepest / "deep.txt").unlink()
        for level in range(depth, 0, -1):  # shutil.rmtree recurses too
            inbox.joinpath(*["d"] * level).rmdir()


def test_the_watchers_filter_takes_plain_article_files_only(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "inbox")
    root = tmp_path / "inbox"
    (root / "quarantine").mkdir(parents=True)
    (root / "sub").mkdir()
    for name in ["a.txt", "sub/b.md", "quarantine/c.txt", "quarantine/c.txt.error.txt"]:
        (root / name).write_bytes(b"x")
    for name in ["x.tmp", ".hidden", "y.txt.part", "z~", "r.error.txt"]:
        (root / name).write_bytes(b"x")
    (root / "link.txt").symlink_to(root / "a.txt")
    (root / "linked").symlink_to(root / "sub")
    wanted = sorted(str(p.relative_to(root)) for p in root.rglob("*") if inbox.is_candidate(p))
    assert wanted == ["a.txt", "sub/b.md"]
    assert [p.name for p in inbox.files()] == ["a.txt", "b.md"]
    assert inbox.is_quarantined(root / "quarantine" / "c.txt")
    assert not inbox.is_quarantined(root / "quarantine" / "c.txt.error.txt")
    assert not inbox.is_candidate(root / "linked" / "b.md")  # a link on the way


@pytest.mark.parametrize("folder", [DELETED, QUARANTINE])
def test_publishers_folders_in_the_inbox_must_be_real_directories(
    tmp_path: Path, folder: str
) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / folder).symlink_to(outside)
    (root / "x.txt").write_bytes(b"words")
    with pytest.raises(InboxError, match="is a symbolic link, not a folder"):
        Inbox(root).move_to(root / "x.txt", folder)
    assert list(outside.iterdir()) == [] and (root / "x.txt").exists()
    (root / folder).unlink()
    assert Inbox(root).move_to(root / "x.txt", folder) == root / folder / "x.txt"
