"""Adapter: watch the inbox with watchfiles and yield paths whose writes have settled.

A file is yielded once its size and mtime stop changing for `settle` seconds, so a
half-written file is never read. Hidden, temporary and partial files are ignored
until they are renamed. If the inbox is deleted, the watcher waits for it to come back.
One odd entry never stops it: watchfiles gives up on a name that is not UTF-8, so the
watch is started again (the pass over what is there finds that file too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from watchfiles import Change, awatch

__all__ = ["settled_files"]

log = logging.getLogger("publisher.watch")


async def settled_files(
    inbox: Path,
    wanted: Callable[[Path], bool],
    stop: asyncio.Event,
    *,
    settle: float = 0.25,
    tick: float = 0.1,
) -> AsyncIterator[list[Path]]:
    """Yield batches of settled files that `wanted` accepts, until `stop` is set."""
    pending: dict[Path, tuple[float, tuple[int, int] | None]] = {}
    while not stop.is_set():
        if not inbox.is_dir():
            await _wait(stop, 0.2)
            continue
        # One pass over what is already there catches files written while not watching.
        for path in _everything(inbox):
            if wanted(path):
                pending.setdefault(path, (time.monotonic(), None))
        try:
            async for changes in awatch(
                inbox,
                stop_event=stop,
                debounce=50,
                step=20,
                rust_timeout=int(tick * 1000),
                yield_on_timeout=True,
                recursive=True,
            ):
                now = time.monotonic()
                for change, name in changes:
                    path = Path(name)
                    if change != Change.deleted and wanted(path):
                        pending[path] = (now, None)
                    else:
                        pending.pop(path, None)
                ready = _settled(pending, settle)
                if ready:
                    yield ready
                if not inbox.is_dir():
                    log.warning("inbox %s disappeared; waiting for it to come back", inbox)
                    break
        except FileNotFoundError:
            log.warning("inbox %s disappeared; waiting for it to come back", inbox)
        except Exception as exc:  # watchfiles' own (a RuntimeError in an ExceptionGroup)
            log.warning("restarting the inbox watch after: %s", _first_line(exc))
            await _wait(stop, tick)
        ready = _settled(pending, settle)
        if ready:
            yield ready


def _everything(inbox: Path) -> list[Path]:
    """Every entry under the inbox; links not followed, unreadable folders skipped. A stack,
    not os.walk: folders may nest deeper than Python's recursion limit."""
    found: list[Path] = []
    folders = [inbox]
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


def _first_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return repr(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _settled(
    pending: dict[Path, tuple[float, tuple[int, int] | None]], settle: float
) -> list[Path]:
    """Paths whose size and mtime did not change for `settle` seconds."""
    now = time.monotonic()
    ready = []
    for path, (since, last_seen) in list(pending.items()):
        try:
            stat = path.stat()
        except OSError:  # gone, or a link to itself
            del pending[path]
            continue
        if not path.is_file():
            del pending[path]
            continue
        current = (stat.st_size, stat.st_mtime_ns)
        if current != last_seen:
            pending[path] = (now, current)
        elif now - since >= settle:
            ready.append(path)
            del pending[path]
    return sorted(ready)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
