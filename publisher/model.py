"""The values that flow through the pipeline: frozen dataclasses, stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum

__all__ = [
    "Article",
    "Block",
    "ConsentEvent",
    "ConsentKind",
    "ConsentSource",
    "Delivery",
    "DeliveryStatus",
    "DigestRun",
    "FileOutcome",
    "Frequency",
    "ParsedArticle",
    "Removal",
    "RemovalRule",
    "RemovedBlock",
    "RunStatus",
    "Subscriber",
    "SubscriberStatus",
]


@dataclass(frozen=True, slots=True)
class Block:
    """One paragraph of the body; a multi-line block (a list) keeps its lines.

    `text` is plain text (what dedup compares and summaries show); `markup` is the block's
    Markdown source when the file was Markdown, None for plain text."""

    text: str
    markup: str | None = None

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.text.split("\n"))


@dataclass(frozen=True, slots=True)
class ParsedArticle:
    """What one file says, normalized, before the store gives it an identity."""

    title: str
    category_path: tuple[str, ...]
    published: datetime
    author: str | None
    source: str | None
    blocks: tuple[Block, ...]
    content_hash: str
    source_file: str
    language: str | None = None  # its Language: header (BCP 47), if valid
    editor_id: str | None = None  # its Id: header, as written

    @property
    def category(self) -> str:
        return self.category_path[-1] if self.category_path else "Uncategorized"


class RemovalRule(StrEnum):
    """Why a block was taken out of an article."""

    SHARED = "shared"  # its text is in boilerplate_min_articles or more articles
    TEASER = "teaser"  # it advertises another known article


@dataclass(frozen=True, slots=True)
class Removal:
    """A block taken out of an article, and why (shown by `articles show`)."""

    text: str
    rule: RemovalRule
    reason: str
    key: str = ""  # dedup.rules.block_key of the text
    # every article holding the block now, removed or not, oldest first (`articles show`)
    holders: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "text": self.text,
            "rule": self.rule,
            "reason": self.reason,
            "count": len(self.holders),
            "articles": list(self.holders),
        }


@dataclass(frozen=True, slots=True)
class RemovedBlock:
    """One block removed as boilerplate, with every article it was removed from
    (`publisher boilerplate list`)."""

    key: str
    text: str
    rules: tuple[RemovalRule, ...]
    articles: tuple[tuple[str, str], ...]  # (id, slug), oldest first

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "text": self.text,
            "rule": ", ".join(self.rules),
            "count": len(self.articles),
            "articles": [{"id": i, "slug": slug} for i, slug in self.articles],
        }


@dataclass(frozen=True, slots=True)
class Article:
    """A stored article as readers see it: identity, metadata and the body after dedup."""

    id: str
    slug: str
    title: str
    category_path: tuple[str, ...]
    published: datetime
    updated: datetime
    author: str | None
    source: str | None
    blocks: tuple[Block, ...]
    summary: str
    content_hash: str
    source_file: str
    ingested: datetime
    removed: tuple[Removal, ...] = field(default=())
    language: str | None = None  # None: the site's site.language
    # removals a rule planned but not applied: they would have left the body empty
    withheld: tuple[Removal, ...] = field(default=())
    deleted: datetime | None = None  # when the editor deleted it (`articles delete`)

    @property
    def category(self) -> str:
        return self.category_path[-1] if self.category_path else "Uncategorized"

    def as_dict(self, *, body: bool = True, zone: tzinfo | None = None) -> dict[str, object]:
        """JSON-ready view for `--json` output; dates ISO 8601 in `zone` (default: as stored)."""

        def when(value: datetime) -> str:
            return (value.astimezone(zone) if zone else value).isoformat()

        view: dict[str, object] = {
            "id": self.id,
            "slug": self.slug,
            "title": self.title,
            "category": self.category,
            "category_path": list(self.category_path),
            "published": when(self.published),
            "updated": when(self.updated),
            "ingested": when(self.ingested),
            "author": self.author,
            "source": self.source,
            "summary": self.summary,
            "content_hash": self.content_hash,
            "source_file": self.source_file,
            "language": self.language,
            "deleted": when(self.deleted) if self.deleted else None,
        }
        if body:
            view["blocks"] = [block.text for block in self.blocks]
            view["removed_boilerplate"] = [r.as_dict() for r in self.removed]
            view["not_removed"] = [
                {"key": r.key, "text": r.text, "rule": r.rule, "reason": r.reason}
                for r in self.withheld
            ]
        return view


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"  # marked the mail as spam: suppressed like the two above


class ConsentKind(StrEnum):
    """What happened to one address's consent (`subscribers history`)."""

    SUBSCRIBED = "subscribed"
    CONFIRMATION_SENT = "confirmation_sent"
    CONFIRMED = "confirmed"
    PREFERENCES_CHANGED = "preferences_changed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    SOFT_BOUNCED = "soft_bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"  # an add or import refused because the address is suppressed
    FORCED = "forced"  # the operator lifted a suppression with --force
    REMOVED = "removed"


class ConsentSource(StrEnum):
    """Where a consent event came from."""

    WEB = "web"
    CLI = "cli"
    IMPORT = "import"
    INBOUND = "inbound"
    WEBHOOK = "webhook"
    SEND = "send"


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One stored consent event; `client` is the web client's address, None elsewhere."""

    at: datetime
    kind: ConsentKind
    source: ConsentSource
    detail: str
    client: str | None = None


class Frequency(StrEnum):
    WEEKLY = "weekly"
    DAILY = "daily"


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    categories: tuple[str, ...]  # empty: every category
    frequency: Frequency
    timezone: str
    created: datetime
    confirmed: datetime | None = None
    unsubscribed: datetime | None = None
    last_digest: datetime | None = None
    hard_failures: int = 0
    paused_until: datetime | None = None  # no digest before then (the preference centre)


@dataclass(frozen=True, slots=True)
class Choices:
    """What a subscriber chose, as the confirmed page and the welcome mail say it."""

    email: str
    frequency: Frequency
    categories: tuple[str, ...]  # empty: every category
    first_digest: str | None  # when the schedule sends their first digest, in words


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class FileOutcome(StrEnum):
    """What an ingest did with one file."""

    ADDED = "added"
    UPDATED = "updated"  # the same article, corrected or re-published
    DUPLICATE = "duplicate"  # an exact copy of a stored article: ignored
    UNCHANGED = "unchanged"  # these bytes were ingested before
    QUARANTINED = "quarantined"
    VANISHED = "vanished"  # gone before it was read
    DELETED = "deleted"  # a copy of a deleted article: not published again


class RunStatus(StrEnum):
    FANOUT = "fanout"  # rows still being written
    SENDING = "sending"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One ledger row: (digest run, subscriber), written before the SMTP transaction."""

    id: int
    run_id: int
    subscriber_id: int
    message_id: str
    status: DeliveryStatus
    attempts: int
    article_ids: tuple[str, ...]
    error: str | None = None
    sent_at: datetime | None = None


# -- digest runs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DigestRun:
    """One sending of digests: every selection in it uses `as_of` as its `now`."""

    id: int
    frequency: str  # weekly | daily | all
    as_of: datetime
    status: RunStatus
    created: datetime
    finished: datetime | None = None
