"""The watcher on Linux: inotify says when a writer has finished with a file.

A file is taken when the last write handle on it is closed (IN_CLOSE_WRITE) or when it is
renamed into place (IN_MOVED_TO: `x.part` -> `x.txt`, or a move from outside the inbox),
so a writer that pauses while holding the file open (scp, SMB, a slow save) is never read
half-way. Files found already there, whose writer the events did not see, wait until their
size and mtime have not changed for `settle` seconds (a write to one makes it wait for
its close instead).

Every real folder under the inbox is watched; links are not followed (a link to a folder
is no folder here), so no loop is possible. Names come as os.fsdecode gives them, so a name
that is not UTF-8 is a path like any other. A lost event queue (overflow) falls back to the
settle rule for every file until their writers are seen again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from inotify_simple import Event, INotify, flags

from publisher.watch.settling import Settling, pause

__all__ = ["InotifyUnavailable", "closed_files", "open_inotify"]

log = logging.getLogger("publisher.watch")

_EVENTS = (
    flags.CREATE
    | flags.MODIFY
    | flags.ATTRIB
    | flags.CLOSE_WRITE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)
_FOLDER = _EVENTS | flags.ONLYDIR | flags.EXCL_UNLINK
_SUBFOLDER = _FOLDER | flags.DONT_FOLLOW  # the inbox itself may be the operator's link
_GONE = flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED | flags.UNMOUNT


class InotifyUnavailable(OSError):
    """inotify cannot watch this inbox (no inotify, or a limit of the system reached)."""


def open_inotify() -> INotify:
    """An inotify instance, or InotifyUnavailable saying why there is none."""
    try:
        return INotify(nonblocking=True)
    except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify
        raise InotifyUnavailable(f"inotify cannot start: {_why(exc)}") from exc


async def closed_files(
    notify: INotify,
    inbox: Path,
    wanted: Callable[[Path], bool],
    stop: asyncio.Event,
    *,
    settle: float,
    tick: float = 0.1,
) -> AsyncIterator[list[Path]]:
    """Yield batches of finished files that `wanted` accepts, until `stop` is set.

    InotifyUnavailable if a folder cannot be watched (the system's watch limit): the
    caller goes on with the settle rule for everything.
    """
    try:
        while not stop.is_set():
            if not inbox.is_dir():
                await pause(stop, 0.2)
                continue
            async for batch in _watch(notify, inbox, wanted, stop, settle, tick):
                yield batch
    finally:
        notify.close()


async def _watch(
    notify: INotify,
    inbox: Path,
    wanted: Callable[[Path], bool],
    stop: asyncio.Event,
    settle: float,
    tick: float,
) -> AsyncIterator[list[Path]]:
    """One watch of the inbox; ends when the inbox goes."""
    uploads = _Uploads(_Folders(notify, inbox), Settling(settle))
    for path in uploads.folders.add_tree(inbox):
        uploads.settling.found(path)
    log.info("inbox watch on: a file is taken when its writer closes it or renames it in")
    try:
        while not stop.is_set():
            events = notify.read(timeout=0)
            for event in events:
                if not uploads.handle(event):
                    log.warning("inbox %s disappeared; waiting for it to come back", inbox)
                    return
            ready = [path for path in uploads.take_ready() if wanted(path)]
            if ready:
                yield ready
            if not events:
                await pause(stop, tick)
    finally:
        uploads.folders.drop_all()


class _Folders:
    """The watched folders: watch descriptor -> path."""

    def __init__(self, notify: INotify, root: Path) -> None:
        self.notify = notify
        self.root = root
        self.paths: dict[int, Path] = {}

    def add_tree(self, top: Path) -> list[Path]:
        """Watch `top` and every real folder under it; the other entries found there."""
        entries: list[Path] = []
        folders = [top]
        while folders:  # a stack: folders may nest deeper than Python's recursion limit
            folder = folders.pop()
            try:
                mask = _FOLDER if folder == self.root else _SUBFOLDER
                self.paths[self.notify.add_watch(folder, mask)] = folder
                with os.scandir(folder) as scan:
                    for entry in scan:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(Path(entry.path))
                        else:
                            entries.append(Path(entry.path))
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                    raise InotifyUnavailable(
                        f"inotify cannot watch {folder}: the system's limit of watches is "
                        "reached (raise fs.inotify.max_user_watches)"
                    ) from exc
                continue  # gone already, a link, or unreadable: nothing to watch there
        return entries

    def drop_tree(self, top: Path) -> None:
        for descriptor, path in list(self.paths.items()):
            if path == top or top in path.parents:
                self._drop(descriptor)

    def drop_all(self) -> None:
        for descriptor in list(self.paths):
            self._drop(descriptor)

    def _drop(self, descriptor: int) -> None:
        del self.paths[descriptor]
        with contextlib.suppress(OSError):  # the kernel dropped it already: the folder is gone
            self.notify.rm_watch(descriptor)


class _Uploads:
    """What the events tell of each file: being written, finished, or found and settling."""

    def __init__(self, folders: _Folders, settling: Settling) -> None:
        self.folders = folders
        self.settling = settling
        self.writing: set[Path] = set()
        self.finished: set[Path] = set()

    def take_ready(self) -> list[Path]:
        ready = self.finished | set(self.settling.settled())
        self.finished = set()
        return sorted(ready)

    def handle(self, event: Event) -> bool:
        """Apply one event; False when the inbox itself is gone."""
        descriptor, mask, name = event.wd, event.mask, event.name
        if mask & flags.Q_OVERFLOW:
            self._lost_events()
            return True
        folder = self.folders.paths.get(descriptor)
        if folder is None:
            return True  # a folder dropped meanwhile
        if mask & _GONE:
            if folder == self.folders.root:
                return False
            if mask & flags.IGNORED:
                del self.folders.paths[descriptor]
            return True
        path = folder / name
        if mask & flags.ISDIR:
            self._folder_event(path, mask)
        elif mask & (flags.DELETE | flags.MOVED_FROM):
            self._gone(path)
        elif mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
            self._done(path)
        elif mask & flags.CREATE and _links(path) > 1:
            self._done(path)  # a hard link to a file that exists whole: nobody writes it here
        elif mask & (flags.CREATE | flags.MODIFY):
            if _links(path):
                self.writing.add(path)
                self.settling.forget(path)
                self.finished.discard(path)
        elif mask & flags.ATTRIB and path not in self.writing and path not in self.settling:
            self._done(path)  # touched after it was written (a new mtime, a chmod)
        return True

    def _folder_event(self, path: Path, mask: int) -> None:
        if mask & flags.CREATE:
            for found in self.folders.add_tree(path):
                self.settling.found(found)  # written before its folder was watched
        elif mask & flags.MOVED_TO:
            self.finished.update(self.folders.add_tree(path))  # moved in whole: complete
        elif mask & (flags.MOVED_FROM | flags.DELETE):
            self.folders.drop_tree(path)
            for paths in (self.writing, self.finished):
                paths.difference_update([p for p in paths if path in p.parents])
            self.settling.forget_under(path)

    def _done(self, path: Path) -> None:
        self.writing.discard(path)
        self.settling.forget(path)
        self.finished.add(path)

    def _gone(self, path: Path) -> None:
        self.writing.discard(path)
        self.settling.forget(path)
        self.finished.discard(path)

    def _lost_events(self) -> None:
        log.warning("the inotify event queue overflowed; looking at every file again")
        for path in self.writing:
            self.settling.changed(path)
        self.writing.clear()
        self.folders.drop_all()
        for path in self.folders.add_tree(self.folders.root):
            self.settling.found(path)


def _links(path: Path) -> int:
    """How many names a regular file has; 0 for anything else (gone, a link, a folder)."""
    try:
        found = os.lstat(path)
    except OSError:
        return 0
    return found.st_nlink if stat.S_ISREG(found.st_mode) else 0


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
