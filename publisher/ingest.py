"""Use case: article files -> parse -> dedup -> store, one transaction per file.

A file that is not an article is moved to <inbox>/quarantine/ with <name>.error.txt
beside it; it is never deleted and never stops the rest of the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import xxhash

from publisher.config import Settings
from publisher.dedup import NearDuplicateIndex, NearMatch, Outcome, Signer, decide, trailing_teaser
from publisher.errors import ParseError
from publisher.parse import parse_article
from publisher.store import Articles, Store

__all__ = ["FileResult", "IngestReport", "Ingestor", "inbox_files", "is_candidate"]

log = logging.getLogger("publisher.ingest")

_TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload", "~", ".error.txt")


def is_candidate(path: Path, quarantine: Path) -> bool:
    """Hidden, temporary and half-written files are not articles (yet); nor is the quarantine."""
    name = path.name
    if name.startswith((".", "~")) or name.endswith(_TEMPORARY_SUFFIXES):
        return False
    return path != quarantine and quarantine not in path.parents


def inbox_files(paths: Iterable[Path], quarantine: Path) -> Iterator[Path]:
    """Article candidates under the given files/folders, sorted, skipping the quarantine."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and is_candidate(child, quarantine):
                    yield child
        elif path.is_file() and is_candidate(path, quarantine):
            yield path


@dataclass(frozen=True, slots=True)
class FileResult:
    file: str
    outcome: str  # added | updated | duplicate | unchanged | quarantined | vanished
    detail: str
    article_id: str | None = None
    category: str | None = None


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def changed(self) -> list[FileResult]:
        return [r for r in self.results if r.outcome in ("added", "updated")]

    @property
    def failed(self) -> bool:
        return any(r.outcome == "quarantined" for r in self.results)

    def summary(self) -> dict[str, int]:
        return {
            o: self.count(o) for o in ("added", "updated", "duplicate", "unchanged", "quarantined")
        }


class Ingestor:
    """Holds the near-duplicate index between files; one per process."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.signer = Signer(settings.dedup.num_perm, settings.dedup.shingle_size)
        self.index = NearDuplicateIndex(self.signer, settings.dedup.near_duplicate_threshold)
        self._synced_seq = 0

    def ingest(
        self,
        paths: Iterable[Path] | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest files and folders (default: the inbox)."""
        inbox = self.settings.inbox
        files = list(inbox_files(paths if paths is not None else [inbox], self.settings.quarantine))
        report = IngestReport()
        for done, path in enumerate(files, 1):
            report.results.append(self.ingest_file(path, now()))
            if progress is not None:
                progress(done, len(files))
        return report

    def ingest_file(self, path: Path, now: datetime) -> FileResult:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return FileResult(path.name, "vanished", "file disappeared before it could be read")
        except OSError as exc:
            return self._quarantine(path, f"cannot read file: {exc.strerror}", b"", now)
        raw_hash = xxhash.xxh3_128_hexdigest(data)
        with self.store.begin() as connection:
            repo = Articles(connection)
            self._sync(repo)
            if repo.seen_file(path.name, raw_hash) is not None:
                return FileResult(path.name, "unchanged", "already ingested")
            try:
                article = parse_article(data, source_file=path.name, zone=self.settings.zone)
            except ParseError as exc:
                repo.log(
                    file=path.name,
                    raw_hash=raw_hash,
                    outcome="quarantined",
                    reason=exc.message,
                    now=now,
                )
                return self._quarantine(path, exc.message, data, now)
            teaser = trailing_teaser(article.blocks)
            headline = teaser.headline if teaser else None
            facts = repo.facts(article, headline)
            signature = b""
            near: list[NearMatch] = []
            if facts.exact_article_id is None:
                signature = self.signer.sign(article, frozenset(facts.boilerplate))
                matches = self.index.query(signature)
                if matches:
                    updated = repo.updated({article_id for article_id, _ in matches})
                    zone = self.settings.zone
                    near = [
                        NearMatch(aid, sim, updated[aid].astimezone(zone).date().isoformat())
                        for aid, sim in matches
                        if aid in updated
                    ]
            decision = decide(article, facts, near, self.settings.dedup.boilerplate_min_articles)
            if decision.outcome is Outcome.DUPLICATE:
                repo.log(
                    file=path.name,
                    raw_hash=raw_hash,
                    outcome="duplicate",
                    now=now,
                    content_hash=article.content_hash,
                    article_id=decision.target_id,
                    reason=decision.reason,
                )
                return FileResult(
                    path.name, "duplicate", decision.reason, decision.target_id, article.category
                )
            article_id = repo.apply(
                decision,
                article,
                signature=signature,
                teaser_headline=headline,
                id_host=self.settings.host,
                now=now,
            )
            repo.log(
                file=path.name,
                raw_hash=raw_hash,
                outcome=decision.outcome.value,
                now=now,
                content_hash=article.content_hash,
                article_id=article_id,
                reason=decision.reason,
            )
            if decision.outcome is Outcome.ADDED:
                self._synced_seq = repo.max_seq()
        # the index follows the database only once the transaction committed
        self.index.add(article_id, signature)
        log.info("%s %s: %s", decision.outcome.value, path.name, article_id)
        return FileResult(
            path.name, decision.outcome.value, decision.reason, article_id, article.category
        )

    def _sync(self, repo: Articles) -> None:
        for seq, article_id, signature in repo.signatures(self._synced_seq):
            self.index.add(article_id, signature)
            self._synced_seq = seq

    def _quarantine(self, path: Path, reason: str, data: bytes, now: datetime) -> FileResult:
        folder = self.settings.quarantine
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        n = 1
        while target.exists():
            target = folder / f"{path.stem}.{n}{path.suffix}"
            n += 1
        try:
            path.replace(target)
        except OSError:
            # another filesystem: copy the bytes we read, then remove the original
            target.write_bytes(data)
            path.unlink(missing_ok=True)
        target.with_name(target.name + ".error.txt").write_text(
            f"{reason}\nfile: {path}\nquarantined: {now.isoformat()}\n", encoding="utf-8"
        )
        log.warning("quarantined %s: %s", path.name, reason)
        return FileResult(path.name, "quarantined", reason)
