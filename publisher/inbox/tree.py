"""Adapter: the inbox folder on disk — which entries are article files, and moving them.

Nothing inside the inbox is followed: a symbolic link (to a file, to a folder, to itself)
is skipped with one log line, so an inbox writer can make ingest neither read a file
outside the inbox (and publish it) nor move one out of its real place. The folders
publisher keeps inside the inbox (`quarantine/`, `deleted/`) must be real directories:
when a link or a plain file has that name, nothing is moved and one error line says why.
A path named on the command line outside the inbox is read through its own links (links
inside a folder it names are skipped too) but never moved.

Names reach the database, the logs and the `.error.txt` files through `safe_name`:
a file name need not be UTF-8 and may hold a newline or an ESC sequence.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from publisher.inbox.moves import (
    QUARANTINE,
    RESERVED,
    InboxError,
    move_into,
    open_subfolder,
    release_finished_file,
    write_reason,
)
from publisher.inbox.names import REASON_SUFFIX, is_article_name, safe_name

log = logging.getLogger("publisher.ingest")


class Inbox:
    """The inbox of one Settings. Every path method works on the inbox's real path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def root(self) -> Path:
        """The inbox's real path (the configured inbox may itself be a link: the operator's)."""
        return Path(os.path.realpath(self.folder))

    def relative(self, path: Path) -> Path | None:
        """The path below the inbox as written (no link resolved), or None if outside."""
        absolute = Path(os.path.abspath(path))
        for base in (Path(os.path.abspath(self.folder)), self.root):
            if absolute == base or base in absolute.parents:
                return absolute.relative_to(base)
        return None

    def plain_file(self, relative: Path) -> bool:
        """A regular file below the inbox with no link on its way there, and not in a
        folder of publisher's."""
        if not relative.parts or relative.parts[0] in RESERVED:
            return False
        return self._kind(relative) == "file"

    def is_candidate(self, path: Path) -> bool:
        """A file of the inbox that may be an article (the watcher asks this per event)."""
        relative = self.relative(path)
        return relative is not None and is_article_name(path.name) and self.plain_file(relative)

    def is_quarantined(self, path: Path) -> bool:
        """A file in the quarantine (not its reason): changes there may bring it back."""
        relative = self.relative(path)
        return (
            relative is not None
            and len(relative.parts) == 2
            and relative.parts[0] == QUARANTINE
            and not path.name.endswith(REASON_SUFFIX)
        )

    # -- walking ---------------------------------------------------------------------

    def files(self, paths: Iterable[Path] | None = None) -> Iterator[Path]:
        """Article candidates under the given files and folders (default: the inbox), in
        path order. Inbox entries are never followed; other paths are (to their real path)."""
        root = self.root
        for given in [root] if paths is None else paths:
            relative = self.relative(given)
            if relative is None:
                real = Path(os.path.realpath(given))
                if real != root and root not in real.parents:
                    yield from _walk_outside(real, self._reserved(root))
                    continue
                relative = real.relative_to(root)
            yield from self._walk_inside(root, relative)

    def _walk_inside(self, root: Path, relative: Path) -> Iterator[Path]:
        if relative.parts and relative.parts[0] in RESERVED:
            return
        kind = self._kind(relative)
        path = root / relative
        if kind == "folder":
            yield from _walk(path, self._reserved(root))
        elif kind == "file":
            if is_article_name(path.name):
                yield path
        elif kind is not None:
            log.warning("skipped %s: %s", safe_name(str(path)), kind)

    @staticmethod
    def _reserved(root: Path) -> frozenset[str]:
        return frozenset(str(root / name) for name in RESERVED)

    def _kind(self, relative: Path) -> str | None:
        """'file', 'folder', why else it is skipped, or None if it is not there."""
        path = self.root
        mode = os.lstat(path).st_mode if os.path.isdir(path) else None
        for part in relative.parts:
            if mode is None or not stat.S_ISDIR(mode):
                return None
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return None
            except OSError as exc:
                return f"cannot read it: {exc.strerror}"
            if stat.S_ISLNK(mode):
                return "a symbolic link (links in the inbox are not followed)"
        if mode is None:
            return None
        if stat.S_ISDIR(mode):
            return "folder"
        return "file" if stat.S_ISREG(mode) else "not a regular file"

    # -- moving ----------------------------------------------------------------------

    def quarantine(self, path: Path, reason: str, now: datetime) -> Path | None:
        """Move a file that is not an article to <inbox>/quarantine/, its reason beside it.

        As `move_to`: the new path, None if it vanished, InboxError if it stays where it is.
        """
        moved = self.move_to(path, QUARANTINE, reason=(reason, now))
        if moved is not None:
            log.warning("quarantined %s: %s", safe_name(moved.name), safe_name(reason))
        return moved

    def move_to(
        self, path: Path, folder: str, *, reason: tuple[str, datetime] | None = None
    ) -> Path | None:
        """Move a plain file of the inbox into one of publisher's folders in it (quarantine,
        deleted) under a free name, with <name>.error.txt beside it if a reason is given.

        The new path; None if it vanished (another process moved it first). InboxError, and
        the file stays where it is, if it is not a plain file inside the inbox (outside files
        are never moved) or the folder is not a real directory. It is never deleted.
        """
        relative = self.relative(path)
        if relative is None:
            raise InboxError(f"{safe_name(str(path))} is outside the inbox: left where it is")
        if not self.plain_file(relative):
            kind = self._kind(relative)
            if kind is None:
                return None
            raise InboxError(f"{safe_name(str(path))} is {kind}: left where it is")
        root, shown = self.root, safe_name(str(relative))
        try:
            descriptor = open_subfolder(root, folder)
            try:
                name = move_into(root / relative, descriptor)
                if name is None:
                    return None
                if reason is not None:
                    write_reason(descriptor, name, reason[0], relative, reason[1])
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise InboxError(f"cannot move {shown} into {folder}: {exc.strerror or exc}") from exc
        return root / folder / name

    def move_back(self, folder: str, name: str, relative: Path) -> Path:
        """Move <inbox>/<folder>/<name> back to <inbox>/<relative> (a restored article's
        file), never over another file: InboxError, and it stays where it is, if that name
        is taken, its folder is gone, or either end is not a plain file and a real folder."""
        root = self.root
        shown = safe_name(relative.as_posix())
        if not relative.parts or relative.parts[0] in RESERVED or ".." in relative.parts:
            raise InboxError(f"{shown} is not a place in the inbox: the file stays in {folder}/")
        parent = relative.parent
        if parent.parts and self._kind(parent) != "folder":
            raise InboxError(f"the folder of {shown} is gone: the file stays in {folder}/")
        descriptor = open_subfolder(root, folder)
        try:
            try:
                found = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
            except FileNotFoundError:
                raise InboxError(f"{safe_name(name)} is no longer in {folder}/") from None
            if not stat.S_ISREG(found.st_mode):
                raise InboxError(f"{folder}/{safe_name(name)} is not a file: left where it is")
            target = root / relative
            try:
                # a hard link never replaces a file that appeared there meanwhile
                os.link(name, target, src_dir_fd=descriptor, follow_symlinks=False)
            except FileExistsError:
                raise InboxError(
                    f"{shown} is taken by another file: the restored article's file stays "
                    f"in {folder}/{safe_name(name)}"
                ) from None
            except OSError as exc:
                raise InboxError(f"cannot move {safe_name(name)} back: {exc.strerror}") from exc
            os.unlink(name, dir_fd=descriptor)
        finally:
            os.close(descriptor)
        return target

    def release_finished(self) -> list[Path]:
        """Quarantined files written to after they were quarantined (a stalled upload that
        completed there) go back to the inbox, under the same name, for another look; their
        reason goes. A name taken in the inbox leaves the file where it is."""
        root = self.root
        try:
            if not stat.S_ISDIR(os.lstat(root / QUARANTINE).st_mode):
                return []
            folder = open_subfolder(root, QUARANTINE)
        except (OSError, InboxError):
            return []  # nothing was quarantined, or quarantine() reports the folder
        released: list[Path] = []
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            for entry in entries:
                target = release_finished_file(folder, entry, root)
                if target is not None:
                    released.append(target)
        finally:
            os.close(folder)
        return released

    def seed(self, seeds: Path) -> int:
        """Copy the seed articles into the inbox; an existing entry (or link) is kept."""
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        copied = 0
        for seed in _walk_outside(Path(os.path.realpath(seeds)), frozenset()):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(root / seed.name, flags, 0o644)
            except FileExistsError:
                continue
            with open(fd, "wb") as copy:
                copy.write(seed.read_bytes())
            copied += 1
        return copied


def _walk_outside(real: Path, reserved: frozenset[str]) -> Iterator[Path]:
    """A path named outside the inbox, already resolved: a file, or a folder to walk."""
    if real.is_dir():
        yield from _walk(real, reserved)
    elif real.is_file() and is_article_name(real.name):
        yield real


def _walk(top: Path, reserved: frozenset[str]) -> Iterator[Path]:
    """Regular files under a folder in the order of their paths' parts (as sorted Paths
    are), never following a link nor entering a `reserved` folder (absolute paths). An entry
    that cannot be read is skipped with a line. A stack, not recursion: folders may nest
    deeper than Python's recursion limit."""
    stack = [iter(_entries(top))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.path in reserved:
            continue
        why = ""
        try:
            if entry.is_symlink():
                why = "a symbolic link (links in the inbox are not followed)"
            elif entry.is_dir(follow_symlinks=False):
                stack.append(iter(_entries(Path(entry.path))))
                continue
            elif entry.is_file(follow_symlinks=False):
                if is_article_name(entry.name):
                    yield Path(entry.path)
                continue
            else:
                why = "not a regular file"
        except OSError as exc:
            why = f"cannot read it: {exc.strerror}"
        log.warning("skipped %s: %s", safe_name(entry.path), why)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        log.warning("skipped folder %s: %s", safe_name(str(folder)), exc.strerror)
        return []
