"""The web archive of sent digests: each distinct digest content of a run that was sent
gets one unpersonalized copy, `digests/<id>.html` in the output folder, listed on
`digests/index.html` and in `digests/atom.xml`.

The producer renders a content's copy with the mail and hands it here with the rows that
carry it; the copy is written when the first of those messages is accepted by the SMTP
server (`ArchivingLedger`), so a run that sent nothing leaves no copy and a dry run,
which has no ledger, none at all. Each process writes what it sent: workers sharing a run
write the same bytes under the same name, and the index is remade from the records on
disk, so a crashed sender's copies are listed by whoever writes next.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from publisher.config import Settings
from publisher.errors import SendError
from publisher.feeds import Issue, issues_atom
from publisher.links import absolute
from publisher.mailer import Ledger, Outgoing
from publisher.output import OutputDir
from publisher.render import render
from publisher.webcopies import (
    ARCHIVE_FOLDER,
    FEED_ENTRIES,
    RECORDS_FOLDER,
    ArchivedDigest,
    copy_path,
    newest_first,
    record_path,
)

__all__ = ["ArchivingLedger", "WebArchive", "WebCopy"]

log = logging.getLogger("publisher.send")

INDEX = f"{ARCHIVE_FOLDER}/index.html"
FEED = f"{ARCHIVE_FOLDER}/atom.xml"
RECORD_BYTES = 64 * 1024  # a record larger than this was not written by us


@dataclass(frozen=True, slots=True)
class WebCopy:
    record: ArchivedDigest
    page: str


class WebArchive:
    """The copies of this process's rendered contents, waiting for a first accepted message."""

    def __init__(self, settings: Settings, environment: Any) -> None:
        self.settings = settings
        self.environment = environment
        self._waiting: dict[str, WebCopy] = {}
        self._rows: dict[int, str] = {}  # delivery id -> copy id
        self._open: dict[str, int] = {}  # copy id -> rows still in flight
        self._written: set[str] = set()
        self._lock = asyncio.Lock()

    def url(self, name: str) -> str:
        return absolute(self.settings.base_url, copy_path(name))

    @property
    def index_url(self) -> str:
        return absolute(self.settings.base_url, f"{ARCHIVE_FOLDER}/")

    def waiting(self, name: str) -> WebCopy | None:
        """The copy rendered here and not written yet."""
        return self._waiting.get(name)

    def written(self, name: str) -> bool:
        return name in self._written

    def expect(self, delivery_id: int, copy: WebCopy) -> None:
        """Row `delivery_id` carries `copy`: its acceptance publishes the copy."""
        name = copy.record.id
        if name in self._written:
            return
        self._waiting.setdefault(name, copy)
        if delivery_id not in self._rows:
            self._rows[delivery_id] = name
            self._open[name] = self._open.get(name, 0) + 1

    async def accepted(self, delivery_id: int) -> None:
        name = self._rows.pop(delivery_id, None)
        if name is None:
            return
        self._close(name)
        copy = self._waiting.pop(name, None)
        if copy is None:
            return
        async with self._lock:
            self._written.add(name)
            await asyncio.to_thread(self.publish, copy)

    def given_up(self, delivery_id: int) -> None:
        name = self._rows.pop(delivery_id, None)
        if name is not None and self._close(name) == 0:
            self._waiting.pop(name, None)  # nobody got it (yet): no copy from this process

    def _close(self, name: str) -> int:
        left = self._open.get(name, 1) - 1
        if left <= 0:
            self._open.pop(name, None)
        else:
            self._open[name] = left
        return left

    def publish(self, copy: WebCopy) -> None:
        """Write the copy and its record, then the index and the feed anew."""
        out = OutputDir(self.settings.output_dir)
        name = copy.record.id
        out.write(copy_path(name), copy.page.encode("utf-8"))
        out.write(record_path(name), copy.record.to_json())
        self.rebuild(out)
        log.info("web copy of digest run %s: %s", copy.record.run_id, self.url(name))

    def rebuild(self, out: OutputDir) -> None:
        """digests/index.html and digests/atom.xml from every record on disk."""
        records = newest_first(self._records(out))
        page = render(
            self.environment,
            "digests_index.html.j2",
            issues=[(self.url(r.id), r) for r in records],
            feed_url=absolute(self.settings.base_url, FEED),
            zone=self.settings.zone,
            root="../",
        )
        out.write(INDEX, page.encode("utf-8"))
        title = f"{self.settings.site.title}: past digests"
        issues = [
            Issue(r.id, self.url(r.id), r.subject, r.as_of, " · ".join(r.headlines))
            for r in records[:FEED_ENTRIES]
        ]
        feed = issues_atom(
            title=title,
            atom_url=absolute(self.settings.base_url, FEED),
            home=self.index_url,
            language=self.settings.site.language,
            issues=issues,
        )
        out.write(FEED, feed)

    def _records(self, out: OutputDir) -> list[ArchivedDigest]:
        records = []
        for file_name in sorted(out.names(RECORDS_FOLDER)):
            if not file_name.endswith(".json") or file_name.startswith("."):
                continue
            relative = f"{RECORDS_FOLDER}/{file_name}"
            data = out.read(relative)
            if data is None or len(data) > RECORD_BYTES:
                continue
            try:
                records.append(ArchivedDigest.from_json(data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("digest archive: skipping %s (%s)", relative, exc)
        return records


class ArchivingLedger:
    """A mailer ledger that also tells the archive which rows were accepted."""

    def __init__(self, ledger: Ledger, archive: WebArchive) -> None:
        self.ledger = ledger
        self.archive = archive

    async def sending(self, item: Outgoing) -> bool:
        going = await self.ledger.sending(item)
        if not going:
            self.archive.given_up(item.key)
        return going

    async def sent(self, item: Outgoing, attempts: int) -> None:
        await self.ledger.sent(item, attempts)
        try:
            await self.archive.accepted(item.key)
        except OSError as exc:  # the mail went; a full disk must not fail the send
            log.error("digest archive: could not write the web copy: %s", exc)

    async def failed(self, item: Outgoing, error: SendError, attempts: int) -> None:
        await self.ledger.failed(item, error, attempts)
        self.archive.given_up(item.key)
