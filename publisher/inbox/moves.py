"""Moving files into the folders publisher keeps inside the inbox (`quarantine/`,
`deleted/`): only into a real directory, never through a link, never losing bytes
across filesystems (the current bytes are copied and compared before the unlink)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

from publisher.errors import PublisherError
from publisher.inbox.names import REASON_SUFFIX, safe_name
from publisher.inbox.reading import OPEN_FOLDER, READ_FILE, open_parent

log = logging.getLogger("publisher.ingest")


QUARANTINE = "quarantine"


DELETED = "deleted"


RESERVED = frozenset({QUARANTINE, DELETED})


class InboxError(PublisherError):
    """An inbox entry or folder of publisher's that must not be touched as it is."""


def safe_subfolder(inbox: Path, name: str) -> Path:
    """<inbox>/<name>, made if missing: InboxError unless it is a real directory.

    `inbox` is the inbox's real path; the one component below it is checked with lstat,
    so a link planted under that name is never written through.
    """
    folder = inbox / name
    try:
        os.mkdir(folder)
    except FileExistsError:
        pass
    except OSError as exc:
        raise InboxError(f"cannot make {safe_name(str(folder))}: {exc.strerror}") from exc
    try:
        found = os.lstat(folder)
    except OSError as exc:
        raise InboxError(f"cannot use {safe_name(str(folder))}: {exc.strerror}") from exc
    if stat.S_ISLNK(found.st_mode):
        raise InboxError(
            f"{safe_name(str(folder))} is a symbolic link, not a folder: nothing is moved into it",
            "remove the link; publisher makes the folder itself",
        )
    if not stat.S_ISDIR(found.st_mode):
        raise InboxError(
            f"{safe_name(str(folder))} is not a folder: nothing is moved into it",
            "rename or remove that file; publisher makes the folder itself",
        )
    return folder


def open_subfolder(inbox: Path, name: str) -> int:
    """A descriptor of the checked folder: moves into it cannot be redirected by a link
    swapped in after the check (O_NOFOLLOW refuses one)."""
    folder = safe_subfolder(inbox, name)
    try:
        return os.open(folder, OPEN_FOLDER)
    except OSError as exc:
        raise InboxError(f"cannot use {safe_name(str(folder))}: {exc.strerror}") from exc


def _free_name(folder: int, name: str) -> str:
    """`name`, or name.1, name.2 … (before the suffix) if taken in the folder."""
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    candidate, n = name, 1
    while _exists(folder, candidate) or _exists(folder, candidate + REASON_SUFFIX):
        candidate = f"{stem}.{n}{dot}{suffix}" if dot else f"{name}.{n}"
        n += 1
    return candidate


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def move_into(source: Path, folder: int) -> str | None:
    """Move a plain file into the open folder under a free name: that name, or None if the
    file is gone. Both ends are reached through descriptors, never through a link."""
    parent = open_parent(source)
    try:
        try:
            found = os.stat(source.name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise InboxError(f"{safe_name(str(source))} is no longer a file: left where it is")
        name = _free_name(folder, source.name)
        try:
            if found is not None:
                os.rename(source.name, name, src_dir_fd=parent, dst_dir_fd=folder)
        except FileNotFoundError:
            found = None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_then_remove(parent, source, folder, name)
    finally:
        os.close(parent)
    if found is None:
        log.info("%s was already quarantined by another process", safe_name(source.name))
        return None
    return name


def _read_current(parent: int, name: str) -> bytes:
    with open(os.open(name, READ_FILE, dir_fd=parent), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # a FIFO reads as b""
            raise OSError(errno.EINVAL, "not a regular file")
        return file.read()


def _copy_then_remove(parent: int, source: Path, folder: int, name: str) -> None:
    """Quarantine across filesystems: copy the file's current bytes, and remove it only if
    it still holds exactly those afterwards. InboxError, the file left in place, else."""
    shown = safe_name(str(source))
    try:
        data = _read_current(parent, source.name)
    except OSError as exc:
        raise InboxError(f"{shown} is left where it is: cannot read it ({exc.strerror})") from exc
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        with open(os.open(name, flags, 0o644, dir_fd=folder), "wb") as copy:
            copy.write(data)
            copy.flush()
            os.fsync(copy.fileno())
        same = _read_current(parent, source.name) == data
    except OSError as exc:
        _remove(folder, name)
        raise InboxError(f"{shown} is left where it is: copy failed ({exc.strerror})") from exc
    if not same:
        _remove(folder, name)
        raise InboxError(f"{shown} is left where it is: it changed while it was copied")
    os.unlink(source.name, dir_fd=parent)


def _remove(folder: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def write_reason(folder: int, name: str, reason: str, relative: Path, now: datetime) -> None:
    text = (
        f"{safe_name(reason)}\nfile: {safe_name(str(relative))}\nquarantined: {now.isoformat()}\n"
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(name + REASON_SUFFIX, flags, 0o644, dir_fd=folder), "wb") as file:
        file.write(text.encode("utf-8"))


def release_finished_file(folder: int, entry: os.DirEntry[str], root: Path) -> Path | None:
    if entry.name.endswith(REASON_SUFFIX) or not entry.is_file(follow_symlinks=False):
        return None
    reason = entry.name + REASON_SUFFIX
    try:
        written = os.stat(reason, dir_fd=folder, follow_symlinks=False).st_mtime_ns
        changed = entry.stat(follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return None  # no reason beside it: not one of ours
    if changed <= written:
        return None
    target = root / entry.name
    if os.path.lexists(target):
        log.warning(
            "%s changed in quarantine, but %s is taken in the inbox: left in quarantine",
            safe_name(entry.name),
            safe_name(entry.name),
        )
        return None
    try:
        os.rename(entry.name, target, src_dir_fd=folder)
    except OSError as exc:
        log.warning("cannot move %s back to the inbox: %s", safe_name(entry.name), exc.strerror)
        return None
    _remove(folder, reason)
    log.info("%s changed in quarantine: back in the inbox for another look", safe_name(entry.name))
    return target
