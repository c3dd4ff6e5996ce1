"""Reading an inbox file without following a link at any step: every folder on the way is
opened with O_NOFOLLOW from `/`, and the file itself with a size limit checked first."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"too large ({size} bytes, limit {limit})")
        self.size = size
        self.limit = limit


class Folders:
    """The descriptor of the folder the last file was read from, kept for the next file in
    the same folder: opening a path without following links costs one open per component."""

    def __init__(self) -> None:
        self._folder: Path | None = None
        self._fd: int | None = None

    def __enter__(self) -> Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def parent(self, path: Path) -> int:
        folder = Path(os.path.abspath(path)).parent
        if folder != self._folder or self._fd is None:
            self.close()
            self._fd = open_parent(path)
            self._folder = folder
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._folder = None


def read_article_file(path: Path, limit: int, folders: Folders | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, its size checked before reading.

    `path` is a real path (the walk's): no component is followed, so an entry swapped for a
    link after the walk fails with ELOOP, and a FIFO never blocks. FileTooLarge, or the
    OSError of the entry.
    """
    if folders is None:
        fd = _open_file(path)
    else:
        fd = os.open(path.name, READ_FILE, dir_fd=folders.parent(path))
    with open(fd, "rb") as file:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if found.st_size > limit:
            raise FileTooLarge(found.st_size, limit)
        # a buffer of the file's size, not of the limit; read on if it grew since fstat
        data = file.read(found.st_size + 1)
        if found.st_size < len(data) <= limit:
            data += file.read(limit + 1 - len(data))
    if len(data) > limit:
        raise FileTooLarge(len(data), limit)
    return data


def open_parent(path: Path) -> int:
    """A descriptor of the folder holding `path`, each component opened from / with
    O_NOFOLLOW: a folder swapped for a link after it was checked is refused."""
    absolute = Path(os.path.abspath(path))
    fd = os.open(absolute.anchor, OPEN_FOLDER)
    try:
        for part in absolute.parent.parts[1:]:
            inner = os.open(part, OPEN_FOLDER, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(path: Path) -> int:
    parent = open_parent(path)
    try:
        return os.open(path.name, READ_FILE, dir_fd=parent)
    finally:
        os.close(parent)
