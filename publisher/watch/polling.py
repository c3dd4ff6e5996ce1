"""The watcher where the kernel does not say when a writer finished (not Linux, inotify
unavailable, or `watch.backend = "poll"` for a network filesystem): watchfiles reports
changes, and a file is taken once its size and mtime stay the same for `settle` seconds.

A file renamed from a name that is not an article (`x.part`, `x.tmp`, `.x`) is taken at
once when its earlier name was seen: the same inode, size and mtime under a new name.
watchfiles gives up on a name that is not UTF-8, so the watch is started again (the pass
over what is there finds that file too).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from watchfiles import Change, awatch

from publisher.watch.settling import Settling, everything, first_line, pause

__all__ = ["settled_files"]

log = logging.getLogger("publisher.watch")

# identities of files seen under names that are not wanted, kept for a rename to match
_REMEMBERED = 4096


async def settled_files(
    inbox: Path,
    wanted: Callable[[Path], bool],
    stop: asyncio.Event,
    *,
    settle: float,
    force_polling: bool = False,
    tick: float = 0.1,
) -> AsyncIterator[list[Path]]:
    """Yield batches of settled files that `wanted` accepts, until `stop` is set."""
    settling = Settling(settle)
    renamed = _Renames()
    while not stop.is_set():
        if not inbox.is_dir():
            await pause(stop, 0.2)
            continue
        # One pass over what is already there catches files written while not watching.
        for path in everything(inbox):
            if wanted(path):
                settling.found(path)
        log.info("inbox watch on: a file is taken once unchanged for %g s", settle)
        try:
            async for changes in awatch(
                inbox,
                stop_event=stop,
                debounce=50,
                step=20,
                rust_timeout=int(tick * 1000),
                yield_on_timeout=True,
                recursive=True,
                force_polling=force_polling,
                poll_delay_ms=int(tick * 1000),
            ):
                ready = set()
                for change, name in sorted(changes, key=lambda item: item[0] != Change.deleted):
                    path = Path(name)
                    if change == Change.deleted:
                        settling.forget(path)
                    elif not wanted(path):
                        renamed.seen(path)
                    elif renamed.arrived(path):
                        settling.forget(path)
                        ready.add(path)
                    else:
                        settling.changed(path)
                ready.update(settling.settled())
                if ready:
                    yield sorted(ready)
                if not inbox.is_dir():
                    log.warning("inbox %s disappeared; waiting for it to come back", inbox)
                    break
        except FileNotFoundError:
            log.warning("inbox %s disappeared; waiting for it to come back", inbox)
        except Exception as exc:  # watchfiles' own (a RuntimeError in an ExceptionGroup)
            log.warning("restarting the inbox watch after: %s", first_line(exc))
            await pause(stop, tick)
        ready_now = settling.settled()
        if ready_now:
            yield ready_now


class _Renames:
    """Files seen under a name that is not an article, so that the same file under an
    article name is known to have arrived by rename, complete."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[int, int, Path]] = {}

    def seen(self, path: Path) -> None:
        identity = _identity(path)
        if identity is None:
            return
        key, size, mtime = identity
        self._seen.pop(key, None)
        self._seen[key] = (size, mtime, path)
        if len(self._seen) > _REMEMBERED:
            del self._seen[next(iter(self._seen))]

    def arrived(self, path: Path) -> bool:
        identity = _identity(path)
        if identity is None:
            return False
        key, size, mtime = identity
        earlier = self._seen.get(key)
        if earlier is None or earlier[2] == path or earlier[:2] != (size, mtime):
            return False
        del self._seen[key]
        return True


def _identity(path: Path) -> tuple[tuple[int, int], int, int] | None:
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino), found.st_size, found.st_mtime_ns
