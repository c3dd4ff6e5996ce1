"""The rule where no close event tells that a writer finished: a file is taken once its size
and mtime have not changed for `seconds`. Used by the polling watcher for every file, and by
the inotify watcher for files it found already there (their writer may be gone or paused)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path

__all__ = ["Settling", "everything", "first_line", "pause"]


class Settling:
    """Paths waiting for their size and mtime to stay the same for `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # path -> (when its size and mtime were last seen to change, what they were then)
        self._since: dict[Path, tuple[float, tuple[int, int] | None]] = {}

    def __bool__(self) -> bool:
        return bool(self._since)

    def __contains__(self, path: object) -> bool:
        return path in self._since

    def changed(self, path: Path) -> None:
        """The path was written to: its wait starts again."""
        self._since[path] = (time.monotonic(), None)

    def found(self, path: Path) -> None:
        """The path was seen; a wait already running goes on."""
        self._since.setdefault(path, (time.monotonic(), None))

    def forget(self, path: Path) -> None:
        self._since.pop(path, None)

    def forget_under(self, folder: Path) -> None:
        for path in [path for path in self._since if folder in path.parents]:
            del self._since[path]

    def settled(self) -> list[Path]:
        """The regular files whose size and mtime did not change for `seconds`; they leave."""
        now = time.monotonic()
        ready = []
        for path, (since, last_seen) in list(self._since.items()):
            current = regular_file_state(path)
            if current is None:  # gone, a link, a folder now
                del self._since[path]
            elif current != last_seen:
                self._since[path] = (now, current)
            elif now - since >= self.seconds:
                ready.append(path)
                del self._since[path]
        return sorted(ready)


def regular_file_state(path: Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a regular file, not through a link; None for anything else."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(found.st_mode):
        return None
    return found.st_size, found.st_mtime_ns


def everything(top: Path) -> list[Path]:
    """Every entry under a folder; links not followed, unreadable folders skipped. A stack,
    not os.walk: folders may nest deeper than Python's recursion limit."""
    found: list[Path] = []
    folders = [top]
    while folders:
        try:
            with os.scandir(folders.pop()) as scan:
                for entry in scan:
                    found.append(Path(entry.path))
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(Path(entry.path))
        except OSError:
            continue
    return found


def first_line(exc: BaseException) -> str:
    """An exception (or the first of a group) as one quoted line for the log."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return repr(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
