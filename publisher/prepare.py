"""Read, parse and sign article files: all that ingest does before it asks the store.

Nothing here depends on what is stored, so when a call brings more than one batch of
files, the later batches are prepared in worker processes while this process does the
store's part of the batch before them. A single batch (the watcher's, a few files) is
prepared in place: a worker process would only add its start-up.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import xxhash

from publisher.dedup.minhash import Signer
from publisher.dedup.rules import Incoming
from publisher.errors import ParseError
from publisher.inbox import FileTooLarge, Folders, read_article_file, safe_name
from publisher.parse import parse_article, slugify

__all__ = ["Prepared", "exit_with_parent", "prepare", "prepared_batches"]

log = logging.getLogger("publisher.ingest")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One file, read and parsed; or why it is quarantined; or that it vanished."""

    path: Path
    raw_hash: str
    incoming: Incoming | None = None
    rows: np.ndarray | None = None  # Signer.block_rows of the title and blocks
    problem: str | None = None  # why the file goes to quarantine
    vanished: bool = False

    @property
    def name(self) -> str:
        """The file's name as stored and shown (see inbox.safe_name)."""
        return safe_name(self.path.name)


def prepare(
    name: str | Path,
    signer: Signer,
    zone: ZoneInfo,
    max_bytes: int,
    folders: Folders | None = None,
) -> Prepared:
    path = Path(name)
    try:
        data = read_article_file(path, max_bytes, folders)
    except FileNotFoundError:
        return Prepared(path, "", vanished=True)
    except FileTooLarge as exc:
        return Prepared(path, xxhash.xxh3_128_hexdigest(b""), problem=str(exc))
    except OSError as exc:
        reason = f"cannot read file: {exc.strerror}"
        return Prepared(path, xxhash.xxh3_128_hexdigest(b""), problem=reason)
    raw_hash = xxhash.xxh3_128_hexdigest(data)
    try:
        article = parse_article(data, source_file=safe_name(path.name), zone=zone)
    except ParseError as exc:
        return Prepared(path, raw_hash, problem=exc.message)
    except Exception as exc:  # a parser bug costs this file, never the batch or the watcher
        log.exception("cannot parse %s", safe_name(path.name))
        return Prepared(path, raw_hash, problem=f"cannot be parsed ({type(exc).__name__})")
    rows = signer.block_rows(article.title, [block.text for block in article.blocks])
    incoming = Incoming.of(article, slugify(article.published, article.title))
    return Prepared(path, raw_hash, incoming, rows)


def prepare_all(
    paths: Sequence[str], signer: Signer, zone: ZoneInfo, max_bytes: int
) -> list[Prepared]:
    with Folders() as folders:  # the walk's files come folder by folder
        return [prepare(path, signer, zone, max_bytes, folders) for path in paths]


def worker_processes(configured: int = -1) -> int:
    """As configured (`ingest_processes`), or by default one per core this process may use
    but one (that one is ingest's own), at most 4."""
    if configured >= 0:
        return configured
    if hasattr(os, "sched_getaffinity"):  # Linux: the cores this process may run on
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return min(4, cores - 1)


def prepared_batches(
    files: Sequence[str],
    batch_size: int,
    signer: Signer,
    zone: ZoneInfo,
    processes: int,
    max_bytes: int,
) -> Iterator[list[Prepared]]:
    """The files prepared, a batch at a time, in order.

    The first batch is prepared here while the workers start; then each worker has one
    batch in flight, never more (prepared files cost memory until they are stored).
    """
    batches = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    if len(batches) < 2 or processes < 1:
        for batch in batches:
            yield prepare_all(batch, signer, zone, max_bytes)
        return
    # spawn, not fork: the caller may be `publisher run`, whose threads hold locks
    with ProcessPoolExecutor(
        processes,
        mp_context=get_context("spawn"),
        initializer=exit_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        ahead: deque[Future[list[Prepared]]] = deque()
        upcoming = iter(batches[1:])
        for batch in upcoming:
            ahead.append(pool.submit(prepare_all, batch, signer, zone, max_bytes))
            if len(ahead) == processes:  # one batch per worker: enough to keep them busy
                break
        yield prepare_all(batches[0], signer, zone, max_bytes)
        position = 1
        while ahead:
            try:
                prepared = ahead.popleft().result()
            except BrokenProcessPool:
                # a worker was killed (out of memory, a signal): go on without them
                log.warning("ingest worker process died; preparing the rest in this process")
                for batch in batches[position:]:
                    yield prepare_all(batch, signer, zone, max_bytes)
                return
            following = next(upcoming, None)
            if following is not None:
                ahead.append(pool.submit(prepare_all, following, signer, zone, max_bytes))
            position += 1
            yield prepared


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PARENT_POLL_SECONDS = 1.0


def exit_with_parent(parent: int) -> None:
    """A worker's first call: end when the ingesting process ends, even by SIGKILL.

    Each worker holds its own copy of the task queue's write end, so an orphan never sees
    the queue close and would wait on it forever. On Linux the kernel sends SIGKILL when
    the parent goes (PR_SET_PDEATHSIG: tied to the thread that started the worker, which is
    the one iterating the batches, alive as long as the pool); elsewhere, and as a second
    guard, a thread notices the parent's pid is no longer its parent's.
    """
    if sys.platform == "linux":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the polling thread below still covers it
    if os.getppid() != parent:  # it died while this worker started
        os._exit(1)
    threading.Thread(
        target=_exit_when_orphaned, args=(parent,), name="watch-parent", daemon=True
    ).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)
