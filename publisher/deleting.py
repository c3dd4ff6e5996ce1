"""Use case: `articles delete` and `articles restore`, and finding an article by ID.

A deleted article keeps its row (store/deletions.py says why); it leaves every output and
every digest not sent yet, and its source file moves to <inbox>/deleted/ (never destroyed).
Restore undoes both. Each asks for a site build in its own transaction, so a process
killed before it builds leaves the build owed (store/builds.py); the caller then builds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from publisher.config import Settings
from publisher.dedup.rules import source_key
from publisher.errors import BadReference, PublisherError
from publisher.inbox import DELETED, Inbox, InboxError, safe_name
from publisher.model import Article
from publisher.store import Articles, Store
from publisher.store.builds import SiteBuilds
from publisher.store.deletions import Deletions

__all__ = ["ArticleDeleter", "Deleted", "Restored", "find_article"]

log = logging.getLogger("publisher.articles")


@dataclass(frozen=True, slots=True)
class Deleted:
    """What `delete` did to one article."""

    article: Article
    already: bool  # it was deleted before: nothing changed
    moved_to: Path | None  # its file, now in <inbox>/deleted/
    note: str = ""  # why no file was moved, if none was
    pending_rows: int = 0  # undelivered digests it was taken out of


@dataclass(frozen=True, slots=True)
class Restored:
    """What `restore` did."""

    article: Article
    moved_back: Path | None
    note: str = ""


def find_article(store: Store, reference: str) -> Article:
    """The article whose id or slug is `reference`, or starts with it (deleted ones too).

    BadReference when none matches or a prefix matches several (they are listed)."""
    with store.read() as connection:
        repo = Articles(connection)
        matches = repo.resolve(reference)
        if len(matches) == 1:
            found = repo.detail(matches[0][0])
            if found is not None:
                return found
    if not matches:
        raise BadReference(
            f"no article with id or slug '{reference}'", "see `publisher articles list`"
        )
    shown = ", ".join(slug for _, slug in matches[:10])
    more = " and more" if len(matches) > 10 else ""
    raise BadReference(
        f"'{reference}' matches {len(matches) if not more else 'over 10'} articles: {shown}{more}",
        "give more of the id or slug",
    )


class ArticleDeleter:
    """Deletes and restores articles of one Settings' store and inbox."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.inbox = Inbox(settings.inbox)
        self.clock = clock

    def delete(self, references: Sequence[str]) -> list[Deleted]:
        """Delete every article named (all are found first: one bad ID changes nothing)."""
        chosen: dict[str, Article] = {}
        for reference in references:
            article = find_article(self.store, reference)
            chosen.setdefault(article.id, article)
        return [self._delete(article) for article in chosen.values()]

    def _delete(self, article: Article) -> Deleted:
        if article.deleted is not None:
            return Deleted(article, already=True, moved_to=None)
        source, note = self._source_file(article)
        moved: Path | None = None
        if source is not None:
            try:
                moved = self.inbox.move_to(source, DELETED)
            except InboxError as exc:
                note = exc.message
            if moved is None and not note:
                note = "its file vanished before it was moved"
        relative = self.inbox.relative(source) if source is not None and moved else None
        now = self.clock().replace(microsecond=0)  # RFC 6721 `when`: to the second
        try:
            with self.store.begin() as connection:
                deletions = Deletions(connection)
                if article.id in deletions.ids():  # another process was first
                    already = True
                    pending = 0
                else:
                    already = False
                    deletions.add(
                        article.id,
                        now,
                        moved.name if moved else None,
                        relative.as_posix() if relative else None,
                    )
                    pending = deletions.drop_from_pending([article.id])
                    SiteBuilds(connection).request()
        except PublisherError:
            self._undo_move(moved, relative)
            raise
        if already:
            self._undo_move(moved, relative)
            return Deleted(article, already=True, moved_to=None)
        log.info("deleted %s (%s)", safe_name(article.id), safe_name(article.slug))
        return Deleted(article, False, moved, note, pending)

    def restore(self, reference: str) -> Restored:
        """Publish a deleted article again; its file goes back where it was, if free."""
        article = find_article(self.store, reference)
        if article.deleted is None:
            raise PublisherError(
                f"article {article.slug} is not deleted", "nothing to restore; see `articles show`"
            )
        with self.store.begin() as connection:
            deletions = Deletions(connection)
            record = deletions.get(article.id)
            deletions.remove(article.id)
            SiteBuilds(connection).request()
        moved_back: Path | None = None
        note = ""
        if record is not None and record.moved_to and record.moved_from:
            try:
                moved_back = self.inbox.move_back(DELETED, record.moved_to, Path(record.moved_from))
            except InboxError as exc:
                note = exc.message
        elif record is not None and not record.moved_to:
            note = "no file was moved when it was deleted"
        log.info("restored %s (%s)", safe_name(article.id), safe_name(article.slug))
        with self.store.read() as connection:
            current = Articles(connection).get(article.id)
        return Restored(current or article, moved_back, note)

    # -- its file ----------------------------------------------------------------------

    def _source_file(self, article: Article) -> tuple[Path | None, str]:
        """The inbox file the article came from, or None and why not."""
        root = self.inbox.root
        with self.store.read() as connection:
            key = Articles(connection).source_key_of(article.id)
        if key and key.startswith("file:"):
            relative = Path(key.removeprefix("file:"))
            if source_key(None, relative.as_posix()) == key:  # not a cut long key
                path = root / relative
                if self.inbox.is_candidate(path):
                    return path, ""
        # an Id: header (or a cut key): a file of the inbox that was ingested into it
        with self.store.read() as connection:
            names = Articles(connection).logged_files(article.id)
        for path in self.inbox.files():
            if path.name == article.source_file and safe_name(path.name) in names:
                return path, ""
        return None, "its file is no longer in the inbox"

    def _undo_move(self, moved: Path | None, relative: Path | None) -> None:
        if moved is None or relative is None:
            return
        try:
            self.inbox.move_back(DELETED, moved.name, relative)
        except InboxError as exc:
            log.error("%s", exc.message)
