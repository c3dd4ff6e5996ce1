"""Use case: article files -> parse -> dedup -> store, one transaction per batch of files.

A file that is not an article is moved to <inbox>/quarantine/ with <name>.error.txt
beside it (publisher/inbox/: what may be read and moved, and how); it is never deleted,
and neither it nor one that cannot be moved stops the rest of the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from publisher.config import Settings
from publisher.dedup.minhash import NearDuplicateIndex, ShortTextIndex, Signer
from publisher.dedup.near import MAX_CANDIDATES, ContainmentRule, contained_matches
from publisher.dedup.rules import Incoming, NearMatch, Outcome, decide, source_key
from publisher.errors import StoreError
from publisher.inbox import Inbox, InboxError, safe_name
from publisher.model import FileOutcome
from publisher.prepare import Prepared, prepared_batches, worker_processes
from publisher.store import Articles, Store
from publisher.store.builds import SiteBuilds
from publisher.store.deletions import Deletions
from publisher.store.ingest_batch import IngestBatch

__all__ = ["FileResult", "IngestReport", "Ingestor", "Withheld"]

log = logging.getLogger("publisher.ingest")


@dataclass(frozen=True, slots=True)
class FileResult:
    file: str
    outcome: FileOutcome
    detail: str
    article_id: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Withheld:
    """A removal a dedup rule planned but that was not applied: it would have left the
    article with an empty body (kept, and shown by `articles show`)."""

    article_id: str
    text: str
    rule: str
    reason: str


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    withheld: list[Withheld] = field(default_factory=list)
    # the site build each transaction that changed articles asked for (store/builds.py)
    build_requests: list[int] = field(default_factory=list)

    def count(self, outcome: FileOutcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def changed(self) -> list[FileResult]:
        return [r for r in self.results if r.outcome in (FileOutcome.ADDED, FileOutcome.UPDATED)]

    @property
    def failed(self) -> bool:
        return any(r.outcome is FileOutcome.QUARANTINED for r in self.results)

    def summary(self) -> dict[str, int]:
        shown = [
            o
            for o in FileOutcome
            if o is not FileOutcome.VANISHED and (o is not FileOutcome.DELETED or self.count(o))
        ]
        return {o.value: self.count(o) for o in shown}


class Ingestor:
    """Holds the near-duplicate index between batches; one per process."""

    # a batch is one transaction: larger batches write each index page touched by random
    # keys (block and content hashes, article ids) once for more articles; 2,000 files
    # hold the write lock for about a second
    batch_size = 2000

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.signer = Signer(settings.dedup.num_perm, settings.dedup.shingle_size)
        self.index = NearDuplicateIndex(self.signer, settings.dedup.near_duplicate_threshold)
        self.short_index = ShortTextIndex(self.signer, settings.dedup.short_text_words)
        dedup = settings.dedup
        self.containment = ContainmentRule(
            dedup.containment_threshold,
            dedup.republication_days,
            dedup.short_text_words,
            dedup.shingle_size,
        )
        self._synced_seq = 0
        self.inbox = Inbox(settings.inbox)

    def ingest(
        self,
        paths: Iterable[Path] | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest files and folders (default: the inbox), a transaction per batch of files.

        The whole inbox is first looked at for quarantined files completed since
        (Inbox.release_finished), which go back into it.
        """
        if paths is None or any(self.inbox.relative(path) == Path() for path in paths):
            self.inbox.release_finished()
        # a str is a fifth of a Path's memory
        files = [str(path) for path in self.inbox.files(paths)]
        report = IngestReport()
        processes = worker_processes(self.settings.ingest_processes)
        batches = prepared_batches(
            files,
            self.batch_size,
            self.signer,
            self.settings.zone,
            processes,
            self.settings.max_file_bytes,
        )
        for batch in batches:
            results, build_request, withheld = self._stored_batch(batch, now())
            report.results.extend(results)
            report.withheld.extend(withheld)
            if build_request is not None:
                report.build_requests.append(build_request)
            if progress is not None:
                progress(len(report.results), len(files))
        return report

    def ingest_batch(self, batch: Sequence[Prepared], now: datetime) -> list[FileResult]:
        """One transaction for the batch. If the database fails, nothing of the batch is
        kept and its files stay where they are, to be ingested on the next try."""
        return self._stored_batch(batch, now)[0]

    def _stored_batch(
        self, batch: Sequence[Prepared], now: datetime
    ) -> tuple[list[FileResult], int | None, list[Withheld]]:
        try:
            return self._ingest_batch(batch, now)
        except StoreError:
            self._reset_index()
            raise

    def _ingest_batch(
        self, batch: Sequence[Prepared], now: datetime
    ) -> tuple[list[FileResult], int | None, list[Withheld]]:
        results: dict[Path, FileResult] = {}
        parsed: list[tuple[Prepared, Incoming]] = []
        for item in batch:
            if item.vanished:
                detail = "file disappeared before it was read"
                results[item.path] = FileResult(item.name, FileOutcome.VANISHED, detail)
            elif item.problem is not None:
                results[item.path] = FileResult(item.name, FileOutcome.QUARANTINED, item.problem)
            else:
                assert item.incoming is not None
                parsed.append((item, self._with_source(item, item.incoming)))
        quarantined = [item for item in batch if item.problem is not None]
        with self.store.begin() as connection:
            self._sync(Articles(connection))
            writes = IngestBatch(
                connection, [incoming for _, incoming in parsed], self.settings.host
            )
            for item in quarantined:
                writes.log(
                    file=item.name,
                    raw_hash=item.raw_hash,
                    outcome=FileOutcome.QUARANTINED,
                    reason=item.problem,
                    now=now,
                )
            seen = writes.seen_files((item.name, item.raw_hash) for item, _ in parsed)
            deleted = Deletions(connection).ids()
            for item, incoming in parsed:
                if (item.name, item.raw_hash) in seen:
                    target = writes.seen_article(item.name)
                    if target is not None and target in deleted:
                        results[item.path] = _of_deleted(item.name, target, "the same file")
                        continue
                    results[item.path] = FileResult(
                        item.name, FileOutcome.UNCHANGED, "already ingested"
                    )
                    continue
                results[item.path] = self._decide(writes, item, incoming, now, deleted)
            writes.flush()
            withheld = [
                Withheld(str(r["article_id"]), str(r["text"]), str(r["rule"]), str(r["reason"]))
                for r in writes.withheld
            ]
            for w in withheld:
                log.info(
                    "not removed from %s, as it would leave it empty: %r", w.article_id, w.text
                )
            # asked for in the same transaction: a process killed before it builds leaves
            # the build owed, and the next command that builds does it (site.py)
            changed = any(r.outcome in ("added", "updated") for r in results.values())
            build_request = SiteBuilds(connection).request() if changed else None
            # every article stored after _sync is this batch's own (writers are serialized)
            # and the index has it already: the next _sync need not read it again
            synced_seq = Articles(connection).max_seq()
        self._synced_seq = synced_seq
        # files move and the index grows only once the transaction committed
        reported: set[str] = set()  # an unsafe quarantine folder: one line, not one per file
        for item in quarantined:
            assert item.problem is not None
            try:
                self.inbox.quarantine(item.path, item.problem, now)
            except InboxError as exc:
                # that file's problem alone: it stays, the batch and the build go on
                if exc.message not in reported:
                    log.error("not quarantined: %s", exc.message)
                    reported.add(exc.message)
                result = results[item.path]
                results[item.path] = FileResult(
                    result.file, result.outcome, f"{result.detail} (not moved: {exc.message})"
                )
        return [results[item.path] for item in batch], build_request, withheld

    def _with_source(self, prepared: Prepared, item: Incoming) -> Incoming:
        """The incoming article with its source key: its Id: header, else its path below
        the inbox (a file given from elsewhere: its name)."""
        relative = self.inbox.relative(prepared.path)
        inside = relative is not None and relative.parts
        place = relative.as_posix() if inside and relative is not None else prepared.path.name
        key = source_key(item.article.editor_id, safe_name(place))
        return replace(item, source_key=key)

    def _decide(
        self,
        batch: IngestBatch,
        prepared: Prepared,
        item: Incoming,
        now: datetime,
        deleted: frozenset[str] = frozenset(),
    ) -> FileResult:
        article, name, raw_hash = item.article, prepared.name, prepared.raw_hash
        facts = batch.facts(item)
        signature = b""
        near: list[NearMatch] = []
        own = facts.source_article_id
        if facts.exact_article_id is None or (own is not None and not facts.source_unchanged):
            assert prepared.rows is not None
            signature = self.signer.signature(_kept_rows(prepared.rows, item, facts.boilerplate))
            # its own file saved again needs no near-duplicate: it is that article
            matches = self.index.query(signature) if own is None else []
            if matches:
                updated = batch.updated_dates(article_id for article_id, _ in matches)
                zone = self.settings.zone
                near = [
                    NearMatch(aid, similarity, updated[aid].astimezone(zone).date().isoformat())
                    for aid, similarity in matches
                    if aid in updated
                ]
            if own is None and not near and self.containment.threshold:
                # what the estimate misses: a short story corrected, paragraphs appended
                zone = self.settings.zone
                near = contained_matches(
                    item,
                    facts,
                    lambda ids: batch.versions(ids, zone),
                    self.containment,
                    self.short_index.holding(signature, MAX_CANDIDATES),
                )
        decision = decide(item, facts, near, self.settings.dedup.boilerplate_min_articles)
        if decision.target_id is not None and decision.target_id in deleted:
            # its copy, correction or own file again: a deleted article stays deleted
            how = "a copy" if decision.outcome is Outcome.DUPLICATE else "a version"
            result = _of_deleted(name, decision.target_id, how)
            batch.log(
                file=name,
                raw_hash=raw_hash,
                outcome=FileOutcome.DELETED,
                now=now,
                content_hash=article.content_hash,
                article_id=decision.target_id,
                reason=result.detail,
            )
            return result
        if decision.outcome is Outcome.DUPLICATE:
            batch.log(
                file=name,
                raw_hash=raw_hash,
                outcome=FileOutcome.DUPLICATE,
                now=now,
                content_hash=article.content_hash,
                article_id=decision.target_id,
                reason=decision.reason,
            )
            return FileResult(
                name, FileOutcome.DUPLICATE, decision.reason, decision.target_id, article.category
            )
        write = batch.add if decision.outcome is Outcome.ADDED else batch.update
        article_id = write(decision, item, signature=signature, now=now)
        batch.log(
            file=name,
            raw_hash=raw_hash,
            outcome=FileOutcome(decision.outcome.value),
            now=now,
            content_hash=article.content_hash,
            article_id=article_id,
            reason=decision.reason,
        )
        # later files of this batch must find this one as a near-duplicate candidate
        self.index.add(article_id, signature)
        self.short_index.add(article_id, signature)
        return FileResult(
            name, FileOutcome(decision.outcome.value), decision.reason, article_id, article.category
        )

    def _sync(self, repo: Articles) -> None:
        """Add articles other processes stored since the last look to the index.

        A signature of another scheme (an older publisher, other dedup settings) is made
        again from the stored title and blocks, and stored, inside the batch's transaction.
        """
        stale: list[str] = []
        for seq, article_id, signature in repo.signatures(self._synced_seq):
            if self.signer.is_current(signature):
                self.index.add(article_id, signature)
                self.short_index.add(article_id, signature)
            else:
                stale.append(article_id)
            self._synced_seq = seq
        resigned = []
        skip = repo.boilerplate_keys() if stale else frozenset()  # one read for all of them
        for article_id, title, body in repo.bodies(stale):
            signature = self.signer.sign_text(title, [t for k, t in body if k not in skip])
            self.index.add(article_id, signature)
            self.short_index.add(article_id, signature)
            resigned.append((article_id, signature))
        if resigned:
            repo.set_signatures(resigned)
            log.info("re-made %d near-duplicate signatures of another scheme", len(resigned))

    def _reset_index(self) -> None:
        """After a rollback the index may hold articles that were never stored: rebuild it."""
        self.index = NearDuplicateIndex(self.signer, self.settings.dedup.near_duplicate_threshold)
        self.short_index = ShortTextIndex(self.signer, self.settings.dedup.short_text_words)
        self._synced_seq = 0


def _of_deleted(name: str, article_id: str, how: str) -> FileResult:
    detail = (
        f"{how} of deleted article {article_id}: not published again "
        "(`publisher articles restore` brings it back)"
    )
    return FileResult(name, FileOutcome.DELETED, detail, article_id)


def _kept_rows(rows: np.ndarray, item: Incoming, boilerplate: Mapping[str, object]) -> np.ndarray:
    """The title's row and those of the blocks that are not boilerplate."""
    if not boilerplate:
        return rows
    kept = [0] + [
        position + 1 for position, key in enumerate(item.block_keys) if key not in boilerplate
    ]
    return rows[kept]
