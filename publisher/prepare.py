"""Read, parse and sign article files: all that ingest does before it asks the store.

Nothing here depends on what is stored, so when a call brings more than one batch of
files, the later batches are prepared in worker processes while this process does the
store's part of the batch before them. A single batch (the watcher's, a few files) is
prepared in place: a worker process would only add its start-up.
"""

from __future__ import annotations

import logging
import os
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

from publisher.dedup import Signer, trailing_teaser
from publisher.errors import ParseError
from publisher.model import Incoming
from publisher.parse import parse_article, slugify

__all__ = ["Prepared", "prepare", "prepared_batches"]

log = logging.getLogger("publisher.ingest")


@dataclass(frozen=True, slots=True)
class Prepared:
    """One file, read and parsed; or why it is quarantined; or that it vanished."""

    path: Path
    raw_hash: str
    incoming: Incoming | None = None
    rows: np.ndarray | None = None  # Signer.block_rows of the title and blocks
    problem: str | None = None  # why the file goes to quarantine
    data: bytes = b""  # a quarantined file's bytes, to copy it across filesystems
    vanished: bool = False


def prepare(name: str | Path, signer: Signer, zone: ZoneInfo) -> Prepared:
    path = Path(name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Prepared(path, "", vanished=True)
    except OSError as exc:
        reason = f"cannot read file: {exc.strerror}"
        return Prepared(path, xxhash.xxh3_128_hexdigest(b""), problem=reason)
    raw_hash = xxhash.xxh3_128_hexdigest(data)
    try:
        article = parse_article(data, source_file=path.name, zone=zone)
    except ParseError as exc:
        return Prepared(path, raw_hash, problem=exc.message, data=data)
    teaser = trailing_teaser(article.blocks)
    rows = signer.block_rows(article.title, [block.text for block in article.blocks])
    slug = slugify(article.published, article.title)
    incoming = Incoming(article, teaser.headline if teaser else None, slug)
    return Prepared(path, raw_hash, incoming, rows)


def prepare_all(paths: Sequence[str], signer: Signer, zone: ZoneInfo) -> list[Prepared]:
    return [prepare(path, signer, zone) for path in paths]


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
    files: Sequence[str], batch_size: int, signer: Signer, zone: ZoneInfo, processes: int
) -> Iterator[list[Prepared]]:
    """The files prepared, a batch at a time, in order.

    The first batch is prepared here while the workers start; then each worker has one
    batch in flight, never more (prepared files cost memory until they are stored).
    """
    batches = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    if len(batches) < 2 or processes < 1:
        for batch in batches:
            yield prepare_all(batch, signer, zone)
        return
    # spawn, not fork: the caller may be `publisher run`, whose threads hold locks
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        ahead: deque[Future[list[Prepared]]] = deque()
        upcoming = iter(batches[1:])
        for batch in upcoming:
            ahead.append(pool.submit(prepare_all, batch, signer, zone))
            if len(ahead) == processes:  # one batch per worker: enough to keep them busy
                break
        yield prepare_all(batches[0], signer, zone)
        position = 1
        while ahead:
            try:
                prepared = ahead.popleft().result()
            except BrokenProcessPool:
                # a worker was killed (out of memory, a signal): go on without them
                log.warning("ingest worker process died; preparing the rest in this process")
                for batch in batches[position:]:
                    yield prepare_all(batch, signer, zone)
                return
            following = next(upcoming, None)
            if following is not None:
                ahead.append(pool.submit(prepare_all, following, signer, zone))
            position += 1
            yield prepared
