"""SQLAlchemy Core tables: one metadata for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect

__all__ = ["SCHEMA_VERSION", "UTCDateTime", "metadata"]

# Bump with a migration in store/engine.py; an upgrade never drops data.
SCHEMA_VERSION = 20


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite (naive storage) too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stored: datetime = value
        return stored.replace(tzinfo=UTC) if stored.tzinfo is None else stored.astimezone(UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
    Column("applied", UTCDateTime, nullable=False),
)

articles = Table(
    "articles",
    metadata,
    Column(
        "seq",
        Integer().with_variant(BigInteger, "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(400), nullable=False, unique=True),
    Column("slug", String(200), nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("title_key", Text, nullable=False, index=True),
    # no index of its own: ix_articles_category_published_seq leads with it (schema 3)
    Column("category", Text, nullable=False),
    Column("category_path", Text, nullable=False),  # JSON list
    Column("published", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("author", Text),
    Column("source", Text),
    # not indexed (schema 3): exact copies are found through ingest_log.content_hash
    Column("content_hash", String(64), nullable=False),
    Column("source_file", Text, nullable=False),
    Column("ingested", UTCDateTime, nullable=False, index=True),
    Column("teaser_key", Text, index=True),  # title_key of its trailing teaser headline
    Column("signature", LargeBinary, nullable=False),
    # schema 5: the file's Language: header (BCP 47); NULL means the site's site.language
    Column("language", String(35)),
    # schema 6: where it comes from (dedup.rules.source_key); NULL for none known. A unique
    # constraint, not an index: create_all makes it, while the upgrade makes it with the column
    Column("source_key", Text, unique=True),
)

# -- schema 2 --: blocks belong to an article by its integer seq, not its ~100-character
# id: the unique (article, position) index grows at its right end instead of at random
# places, and every row is smaller (ingest at 100k articles: blocks written in about half
# the time). Version 1 databases are rebuilt on open (store/engine.py).
blocks = Table(
    "blocks",
    metadata,
    Column(
        "article_seq",
        Integer().with_variant(BigInteger, "postgresql"),
        ForeignKey("articles.seq", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("key", String(32), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("markup", Text),  # the block's Markdown source; NULL for plain text
    UniqueConstraint("article_seq", "position"),
)

removals = Table(
    "removals",
    metadata,
    Column(
        "article_id", String(400), ForeignKey("articles.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("rule", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided", UTCDateTime, nullable=False),
    UniqueConstraint("article_id", "key"),
)

boilerplate = Table(
    "boilerplate",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("text", Text, nullable=False),
    Column("advertises", Text),  # title_key of the headline before it, if a teaser
    Column("decided", UTCDateTime, nullable=False),
)

# Schema 8: an article the editor deleted (`publisher articles delete`). Its row stays in
# `articles`, so archive pages (which count positions over every row) never shift and a
# later copy of it is recognised; outputs leave it out while a row is here.
deletions = Table(
    "deletions",
    metadata,
    Column(
        "article_id", String(400), ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("at", UTCDateTime, nullable=False),
    # where its file went, relative to <inbox>/deleted/; NULL when none was moved
    Column("moved_to", Text),
    Column("moved_from", Text),  # that file's path relative to the inbox
    # its articles.source_key, released while it is deleted so that a new story saved under
    # its old path is a new article (a copy of it is still found by content)
    Column("source_key", Text),
)

# -- schema 9 --: a block the editor kept (`publisher boilerplate keep`): no rule removes
# it again, whatever later articles hold it.
kept_blocks = Table(
    "kept_blocks",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("text", Text, nullable=False),
    Column("kept", UTCDateTime, nullable=False),
)

# -- schema 9 --: a removal a rule planned but that was not applied, as it would have left
# the article with an empty body; shown by `articles show`.
withheld_removals = Table(
    "withheld_removals",
    metadata,
    Column(
        "article_id", String(400), ForeignKey("articles.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("rule", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided", UTCDateTime, nullable=False),
    UniqueConstraint("article_id", "key"),
)

ingest_log = Table(
    "ingest_log",
    metadata,
    Column(
        "seq",
        Integer().with_variant(BigInteger, "postgresql"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("file", Text, nullable=False),
    Column("raw_hash", String(32), nullable=False),
    Column("content_hash", String(64)),
    Column("outcome", String(20), nullable=False),
    Column("article_id", String(400)),
    Column("reason", Text),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_ingest_log_file_hash", "file", "raw_hash"),
    Index("ix_ingest_log_content_hash", "content_hash"),
)

# One row (id 1): every ingest transaction that changes an article bumps `requested`; a
# build that covered the store as of `requested` = n sets `built` to n. requested > built
# is a build still owed (the ingesting process was killed before it built), which the next
# command that builds finishes. Schema 4; a missing row is requested = built = 0.
site_builds = Table(
    "site_builds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("requested", Integer().with_variant(BigInteger, "postgresql"), nullable=False),
    Column("built", Integer().with_variant(BigInteger, "postgresql"), nullable=False),
)


# -- subscribers and the delivery ledger --------------------------------------------

_ID = Integer().with_variant(BigInteger, "postgresql")

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),  # normalized, lower-cased
    Column("name", Text),
    Column("status", String(16), nullable=False),  # SubscriberStatus
    Column("categories", Text, nullable=False),  # JSON list; empty: every category
    Column("frequency", String(16), nullable=False),  # Frequency
    Column("timezone", String(64), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("confirmed", UTCDateTime),
    Column("unsubscribed", UTCDateTime),
    Column("last_digest", UTCDateTime),  # moves only when a digest was accepted by SMTP
    Column("hard_failures", Integer, nullable=False),
    Column("confirmation_sent", UTCDateTime),  # the subscribe cool-down
    Index("ix_subscribers_status_frequency", "status", "frequency", "id"),
)

digest_runs = Table(
    "digest_runs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("frequency", String(16), nullable=False),  # weekly | daily | all
    Column("as_of", UTCDateTime, nullable=False),  # the `now` every selection of the run uses
    Column("status", String(16), nullable=False),  # fanout | sending | done
    Column("fanned_out_through", _ID, nullable=False),  # last subscriber id fanned out
    Column("skipped_empty", Integer, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("finished", UTCDateTime),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("run_id", _ID, ForeignKey("digest_runs.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", _ID, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # DeliveryStatus
    Column("attempts", Integer, nullable=False),
    Column("message_id", String(255), nullable=False),
    Column("article_ids", Text, nullable=False),  # JSON list, newest first
    Column("error", Text),
    Column("created", UTCDateTime, nullable=False),
    Column("sending_at", UTCDateTime),  # committed BEFORE the SMTP transaction starts
    Column("finished_at", UTCDateTime),
    # claims for several workers (PostgreSQL, FOR UPDATE SKIP LOCKED); unused on one process
    Column("claimed_by", String(200)),
    Column("lease_until", UTCDateTime),
    # schema 17: the local day (YYYY-MM-DD) warm-up let this row go; NULL: warm-up off,
    # or held back for a later day while it is pending
    Column("warmup_day", String(10)),
    UniqueConstraint("run_id", "subscriber_id"),
    Index("ix_deliveries_run_status", "run_id", "status", "id"),
    Index("ix_deliveries_subscriber", "subscriber_id"),
    # what a day sent under warm-up is counted from; installs without warm-up index nothing
    Index(
        "ix_deliveries_warmup_day",
        "warmup_day",
        "status",
        sqlite_where=text("warmup_day IS NOT NULL"),
        postgresql_where=text("warmup_day IS NOT NULL"),
    ),
)

# One row per `publisher worker` (or PostgreSQL `publisher send`) process, renewed with
# its leases; `publisher status` lists live ones.
workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),  # host:pid:random, = deliveries.claimed_by
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", UTCDateTime, nullable=False),
    Column("seen", UTCDateTime, nullable=False),  # the last heartbeat
    Column("state", String(16), nullable=False),  # idle | sending | stopping | stopped
    Column("run_id", _ID),  # the run it works on
    Column("sent", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
)

# Schema 11: every consent event of an address (subscribers history), kept after the
# subscriber row is deleted: `email_hash` (secrecy.address_hash, keyed) still finds it.
consent_events = Table(
    "consent_events",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("subscriber_id", _ID, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("email_hash", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),  # ConsentKind
    Column("source", String(16), nullable=False),  # ConsentSource
    Column("detail", String(500), nullable=False),
    Column("client", String(64)),  # the web client's IP address
    Index("ix_consent_events_hash_at", "email_hash", "at"),
    Index("ix_consent_events_subscriber", "subscriber_id"),
    Index("ix_consent_events_kind_at", "kind", "at"),
)

# Schema 11: an address that was suppressed (unsubscribed, bounced, complained) when the
# operator removed it: its row is deleted, only this keyed hash and its status stay, so no
# add, import or form subscribes it again unasked.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # SubscriberStatus, a suppressed one
    Column("since", UTCDateTime, nullable=False),  # when it unsubscribed (or was removed)
    Column("removed", UTCDateTime, nullable=False),
)

# Schema 13: a subscriber who paused digests from the preference centre, until when; a
# table of its own (create_all makes it), so no subscriber row is rewritten.
pauses = Table(
    "pauses",
    metadata,
    Column(
        "subscriber_id",
        _ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("until", UTCDateTime, nullable=False),
    Column("since", UTCDateTime, nullable=False),
)

sent_articles = Table(
    "sent_articles",
    metadata,
    Column(
        "subscriber_id",
        _ID,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("article_id", String(400), primary_key=True),
    Column("run_id", _ID, nullable=False),
)

# Schema 15: the built-in WebSub hub's verified subscriptions. The secret is kept as
# given: every delivery is signed with it (HMAC needs the key itself).
websub_subscriptions = Table(
    "websub_subscriptions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("topic", String(1000), nullable=False),
    Column("callback", String(1000), nullable=False),
    Column("host", String(255), nullable=False),  # the callback's, for the per-host cap
    Column("secret", String(200)),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    UniqueConstraint("topic", "callback", name="uq_websub_topic_callback"),
    Index("ix_websub_topic_expires", "topic", "expires"),
    Index("ix_websub_host", "host"),
)


# Schema 17: warm-up, per sending domain and local day, the rows let go that day (the
# allowance used). Its earliest day is the domain's day 1. Every sender takes the row of
# the day FOR UPDATE before it lets rows go, so workers together stay within the day.
warmup_days = Table(
    "warmup_days",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD in the site's zone
    Column("admitted", Integer, nullable=False),
)


# Schema 20: the webhook tokens (Mailgun) and SNS message ids already acted on, so a
# replay is refused by every process on the database and after a restart. Kept as a
# SHA-256 digest (fixed width, whatever the provider sends) until the signature's
# timestamp window ends: from then on the timestamp check alone refuses a replay.
webhook_replays = Table(
    "webhook_replays",
    metadata,
    Column("provider", String(16), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("expires", UTCDateTime, nullable=False),
    Index("ix_webhook_replays_expires", "expires"),
)


# -- feeds and pages ----------------------------------------------------------------
# Feeds read "newest N" (per category too) and incremental builds look up recent
# removal decisions; without these every rebuild scans the whole table.
Index("ix_articles_published_seq", articles.c.published, articles.c.seq)
Index(
    "ix_articles_category_published_seq", articles.c.category, articles.c.published, articles.c.seq
)
Index("ix_removals_decided", removals.c.decided)
# listing pages go by ingest order within a category: its newest page, and ranks in it
Index("ix_articles_category_seq", articles.c.category, articles.c.seq)

# Per domain group pacing shared by every sending process (publisher/pacing.py): times
# are seconds since the epoch, as every process's clock reads them (schema 16)
pacing_slots = Table(
    "pacing_slots",
    metadata,
    Column("domain_group", String(2000), primary_key=True),
    Column("next_slot", Double, nullable=False),
    Column("backoff_until", Double, nullable=False),
    Column("level", Integer, nullable=False),
)
