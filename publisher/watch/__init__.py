"""Adapter: watch the inbox and yield files whose writers have finished.

On Linux inotify says so: a file is taken when its writer closes it or when it is renamed
into place (closewrite.py), so a writer that pauses with the file open is never read
half-way. Elsewhere, when inotify cannot start or runs out of watches, or with
`watch.backend = "poll"` (a network filesystem, where no events come from other machines),
a file is taken once its size and mtime have not changed for `watch.settle_seconds`
(polling.py). Either way a file renamed from a name that is not an article (`x.part`,
`x.tmp`, a dotfile) is complete at once, links are not followed, a name that is not UTF-8
does not stop the watch, and a deleted inbox is waited for.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from publisher.watch.polling import settled_files

__all__ = ["finished_files"]

log = logging.getLogger("publisher.watch")


async def finished_files(
    inbox: Path,
    wanted: Callable[[Path], bool],
    stop: asyncio.Event,
    *,
    settle: float,
    backend: str = "auto",
) -> AsyncIterator[list[Path]]:
    """Yield batches of finished files that `wanted` accepts, until `stop` is set.

    `backend`: "auto" (inotify where it works, else the settle rule) or "poll" (the settle
    rule, the folder polled: for network filesystems).
    """
    if backend == "auto" and sys.platform == "linux":
        from publisher.watch.closewrite import InotifyUnavailable, closed_files, open_inotify

        try:
            async for batch in closed_files(open_inotify(), inbox, wanted, stop, settle=settle):
                yield batch
            return
        except InotifyUnavailable as exc:
            log.warning(
                "%s; a file is taken once its size and mtime are unchanged for %g s",
                exc,
                settle,
            )
    async for batch in settled_files(
        inbox, wanted, stop, settle=settle, force_polling=backend == "poll"
    ):
        yield batch
