"""Faults in the output folder: read-only and full. The feeds already there must stay whole.

The folder is a real tmpfs the test mounts (root can write through chmod, so a read-only
*mount* is the honest way to make writes fail). Without the right to mount (not root, a
container without CAP_SYS_ADMIN) the read-only case falls back to chmod 0555, which does
stop a non-root user, and the disk-full case is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli

FEEDS = ("atom.xml", "rss.xml", "feed.json", "index.html")
NEW_ARTICLE = """Home>Harbin Today

Harbin opens a new ice festival park

Updated : 2024-12-20

By Li Na ( chinadaily.com.cn )

The park opens on Friday with sculptures carved from river ice.
"""


def publisher(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return publisher_cli("--config", str(config), *args)


def _mount(target: Path, options: str) -> str | None:
    """Mount a tmpfs; the reason it cannot be done here, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    return None if done.returncode == 0 else f"mount -t tmpfs failed: {done.stderr.strip()}"


def _remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, Path, str | None]]:
    """(config, output folder, why no tmpfs) with four seeds ingested and built."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for seed in sorted(SEEDS.glob("*.txt"))[:4]:
        shutil.copy(seed, inbox / seed.name)
    public = tmp_path / "public"
    public.mkdir()
    why = _mount(public, "size=8m,mode=0755")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'data' / 'p.db'}")
    try:
        assert publisher(config, "ingest").returncode == 0
        assert publisher(config, "build").returncode == 0
        yield config, public, why
    finally:
        if why is None:
            subprocess.run(["umount", "-l", str(public)], check=False)
        else:
            public.chmod(0o755)


def _snapshot(public: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(public)): p.read_bytes()
        for p in public.rglob("*")
        if p.is_file() and ".build" not in p.parts
    }


def _assert_whole(public: Path, before: dict[str, bytes]) -> None:
    """Every file exactly as before, no temporary leftovers, the feeds parse cleanly."""
    assert _snapshot(public) == before
    assert not [p for p in public.rglob("*.tmp")]
    for name in ("atom.xml", "rss.xml"):
        parsed = feedparser.parse((public / name).read_bytes())
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert len(parsed.entries) == 4


def _assert_one_error_line(done: subprocess.CompletedProcess[str], reason: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "cannot write the feeds into" in errors[0] and reason in errors[0], errors[0]
    assert "hint: the files already there are unchanged" in done.stderr


def test_read_only_output_folder_fails_clearly_and_keeps_the_old_feeds(
    site: tuple[Path, Path, str | None], tmp_path: Path
) -> None:
    config, public, why = site
    before = _snapshot(public)
    if why is None:
        _remount(public, "ro")
    elif os.geteuid() != 0:
        public.chmod(0o555)
    else:
        pytest.skip(f"no way to make the folder read-only for root here: {why}")

    # a new article: stored, but the rebuild after ingest cannot write (one log line)
    new = tmp_path / "new.txt"
    new.write_text(NEW_ARTICLE, encoding="utf-8")
    ingested = publisher(config, "ingest", str(new))
    assert ingested.returncode == 0, ingested.stderr
    assert "rebuilding the feeds failed: cannot write the feeds into" in ingested.stderr
    assert "Traceback" not in ingested.stderr

    built = publisher(config, "build")
    _assert_one_error_line(built, "ead-only file system" if why is None else "ermission denied")
    _assert_whole(public, before)

    # writable again: the next build catches up
    if why is None:
        _remount(public, "rw")
    else:
        public.chmod(0o755)
    again = publisher(config, "build")
    assert again.returncode == 0, again.stderr
    parsed = feedparser.parse((public / "atom.xml").read_bytes())
    assert parsed.bozo == 0 and len(parsed.entries) == 5
    assert "Harbin opens a new ice festival park" in {e.title for e in parsed.entries}


def test_full_disk_fails_clearly_and_keeps_the_old_feeds(
    site: tuple[Path, Path, str | None], tmp_path: Path
) -> None:
    config, public, why = site
    if why is not None:
        pytest.skip(f"disk full needs a small tmpfs: {why}")
    before = _snapshot(public)
    # fill the filesystem to the last block
    filler = public / ".filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(100_000):  # bounded: 8 MiB in 4 KiB writes is 2,048
            os.write(descriptor, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
    finally:
        os.close(descriptor)
    new = tmp_path / "new.txt"
    new.write_text(NEW_ARTICLE, encoding="utf-8")
    assert publisher(config, "ingest", str(new)).returncode == 0

    built = publisher(config, "build")
    _assert_one_error_line(built, "No space left on device")
    filler_size = filler.stat().st_size
    filler.unlink()
    _assert_whole(public, before)
    assert filler_size > 0

    again = publisher(config, "build")
    assert again.returncode == 0, again.stderr
    parsed = feedparser.parse((public / "atom.xml").read_bytes())
    assert parsed.bozo == 0 and len(parsed.entries) == 5
