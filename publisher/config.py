"""Settings: one typed, frozen object from TOML plus PUBLISHER_* environment variables.

Lookup order for the file: --config, then $PUBLISHER_CONFIG, then config/publisher.toml.
Environment beats file. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from email.utils import parseaddr
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.errors import ConfigError
from publisher.links import absolute

__all__ = [
    "DedupSettings",
    "DigestSettings",
    "DkimSettings",
    "DoctorSettings",
    "FeedSettings",
    "ImapSettings",
    "InboundSettings",
    "RelaySettings",
    "ScheduleSettings",
    "ServerSettings",
    "Settings",
    "SiteSettings",
    "SmtpSettings",
    "TlsMode",
    "WatchBackend",
    "WatchSettings",
    "WebSubSettings",
    "WebhookSettings",
    "ehlo_name",
    "forwarded_ips",
    "is_loopback_host",
    "load_settings",
    "relay_chain",
]

DEFAULT_CONFIG = Path("config/publisher.toml")


class TlsMode(StrEnum):
    """How the SMTP connection is protected."""

    NONE = "none"  # plain text: localhost only
    STARTTLS = "starttls"  # upgrade after connecting (port 587)
    TLS = "tls"  # TLS from the first byte (port 465)


class WatchBackend(StrEnum):
    """How the watcher learns that an upload is complete."""

    AUTO = "auto"  # inotify's close and rename events on Linux, else the settle rule
    POLL = "poll"  # the settle rule on a polled folder: network filesystems


@dataclass(frozen=True)
class SiteSettings:
    title: str = "Harbin News"  # the site's name in pages, feeds and digest subjects
    # shown under the title, and the feeds' subtitle
    subtitle: str = "Articles from the Harbin newsroom"
    # BCP 47 tag of pages and feeds; an article's own `Language:` line overrides it
    language: str = "en"
    icon: str | None = None  # URL of the feeds' icon (Atom icon, JSON Feed favicon); unset: none
    # URL of the feeds' logo (Atom logo, RSS image, JSON Feed icon); unset: none
    logo: str | None = None
    # categories subscribers may choose before any article of them is stored,
    # comma-separated; the categories of stored articles are always known
    categories: str = ""
    # the sender's postal address, printed in the footer of every mail (CAN-SPAM asks for it)
    postal_address: str = ""
    # a search box on every page, its Pagefind index under search/; false: neither, no script
    search: bool = True

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.categories.split(",") if c.strip())


@dataclass(frozen=True)
class RelaySettings:
    """One `[[smtp.relays]]` table: a relay taken, in order, after [smtp] (relay 1) when
    the one in use is down or refuses the login; the rest of [smtp] applies to all."""

    host: str = ""  # the relay's name or address (required)
    port: int = 587  # its port: 587 (submission, starttls), 465 (tls), 25 (an MTA)
    tls: TlsMode = TlsMode.STARTTLS  # none (this machine only), starttls or tls
    username: str | None = None  # its SMTP login; unset: no AUTH
    # its password; better kept in the environment variable named by password_env
    password: str | None = field(default=None, repr=False)
    # the environment variable holding its password, e.g. "PUBLISHER_SMTP_BACKUP_PASSWORD"
    password_env: str = ""
    # check its TLS certificate and name (turn off only for a test relay)
    verify_certificate: bool = True
    # PEM file of the CA that signs its certificate (a private CA)
    ca_file: str | None = None
    # the name said in EHLO to it; unset: smtp.helo_name, else the From address's domain
    helo_name: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"  # the SMTP relay digests and confirmation mails are handed to
    port: int = 1025  # its port: 25 (an MTA), 587 (submission, starttls), 465 (tls)
    tls: TlsMode = TlsMode.NONE  # none (this machine only), starttls or tls
    username: str | None = None  # SMTP login; unset: no AUTH
    password: str | None = field(default=None, repr=False)  # its password (PUBLISHER_SMTP_PASSWORD)
    # the From of every mail, `Name <address>`; its domain is the one DKIM and DMARC check
    from_address: str = "Harbin News <news@localhost>"
    pool_size: int = 8  # SMTP connections a send uses at once
    messages_per_connection: int = 500  # messages sent over one connection before it is reopened
    # messages a second one process starts, over all its connections; 0: no limit
    rate_per_second: float = 0.0
    attempts: int = 5  # tries per message for 4xx replies and connection errors
    backoff_seconds: float = 0.5  # wait before the first retry, doubling each time
    timeout_seconds: float = 30.0  # a connection or reply slower than this fails the attempt
    # check the relay's TLS certificate and name (turn off only for a test relay)
    verify_certificate: bool = True
    bounce_after: int = 3  # 5xx refusals of one subscriber at send before they are marked bounced
    # PEM file of the CA that signs the server's certificate (a private CA)
    ca_file: str | None = None
    # the name said in EHLO; unset: the From address's domain (see `ehlo_name`)
    helo_name: str | None = None
    # Gmail's feedback loop: "a:b:c:SenderId" on every digest; unset: no header
    feedback_id: str | None = None
    # RFC 9477 complaint feedback address on every digest; unset: no header
    cfbl_address: str | None = None
    # VERP: digests go out with envelope sender `<local>+<signed token>@<domain>` of this
    # address, so each bounce names its delivery; route it to `publisher inbound`.
    # Unset: the From address is the envelope sender, as before
    bounce_address: str | None = None
    # `[[smtp.relays]]`: the relays tried after this one, in order (see below)
    relays: tuple[RelaySettings, ...] = ()

    @property
    def name(self) -> str:
        """host:port, as the operator wrote it: how logs and reports name this relay."""
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DkimSettings:
    """DKIM signing of every outgoing mail; no selector or no key: mail goes out unsigned."""

    selector: str = ""  # the s= selector: its key is published at <selector>._domainkey.<domain>
    # the d= domain; unset: the From address's domain (aligned with From for DMARC)
    domain: str = ""
    # PEM RSA (2048 bits or more) or Ed25519 key; PUBLISHER_DKIM_PRIVATE_KEY holds it instead
    private_key_file: Path | None = None
    # a second signature, Ed25519 (RFC 8463), under its own selector
    ed25519_key_file: Path | None = None
    # unset: "<selector>-ed25519"
    ed25519_selector: str = ""
    # the keys themselves, read from the files or the environment; never shown
    private_key: str | None = field(default=None, repr=False)
    ed25519_key: str | None = field(default=None, repr=False)  # PUBLISHER_DKIM_ED25519_KEY

    @property
    def ed25519_name(self) -> str:
        return self.ed25519_selector or f"{self.selector}-ed25519"


@dataclass(frozen=True)
class DoctorSettings:
    """Where `publisher doctor` asks DNS; unset nameservers: the system's resolver."""

    nameservers: str = ""  # comma-separated IP addresses
    port: int = 53  # the port of those nameservers
    timeout_seconds: float = 5.0  # per DNS question and per TLS or HTTP probe
    # true: a digest `publisher run` schedules goes out even while a check fails (as
    # `send --skip-doctor`); false: it waits, with one error line, until doctor passes
    skip_scheduled: bool = False


@dataclass(frozen=True)
class DedupSettings:
    # MinHash Jaccard at or above which a file from another source is a re-publication
    near_duplicate_threshold: float = 0.8
    # a single repeated block is boilerplate once this many articles hold it (a run of two
    # or more consecutive blocks already at its second copy): see config/publisher.toml
    boilerplate_min_articles: int = 5
    num_perm: int = 128  # MinHash permutations: estimate sd 0.027 at Jaccard 0.9
    shingle_size: int = 3  # words per shingle of the re-publication signature
    # what the MinHash estimate misses (dedup/near.py): a stored article of a similar title,
    # dated within republication_days, holding this share of the shorter text (0: off)
    containment_threshold: float = 0.8
    republication_days: int = 7  # at most this many days between the two versions' dates
    short_text_words: int = 200  # below: runs of 2 words count as shared, else shingle_size


@dataclass(frozen=True)
class FeedSettings:
    # entries in atom.xml, rss.xml and feed.json (older ones are in the archive pages)
    max_entries: int = 50
    archive_page_size: int = 50  # articles a full RFC 5005 archive page (archive/<n>.xml) holds
    tombstone_days: int = 30  # how long Atom feeds list a deleted article (RFC 6721)


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"  # the interface `serve` and `run` listen on
    port: int = 8080  # their port; 0: any free one
    # malformed subscribe forms one client may send a minute (sign-ups never count)
    subscribe_per_minute: int = 5
    # a repeated request for the same address within this gets no second mail
    subscribe_cooldown_seconds: int = 600
    token_max_age_seconds: int = 7 * 24 * 3600  # how long a confirmation link works
    # one-click unsubscribe links in old digests must keep working (RFC 8058)
    unsubscribe_token_max_age_seconds: int = 400 * 24 * 3600
    max_body_bytes: int = 16 * 1024  # larger request bodies get 413
    # the reverse proxy's address(es), comma-separated IPs or networks: only requests from
    # them may name the client in X-Forwarded-For; empty: those headers are ignored
    forwarded_allow_ips: str = ""
    header_timeout_seconds: float = 10.0  # a request (head and body) slower than this: closed
    keep_alive_seconds: int = 5  # an idle kept-alive connection is closed after this
    limit_concurrency: int = 512  # open connections and requests; beyond it, 503
    confirmation_senders: int = 2  # confirmation mails sent at once
    confirmation_backlog: int = 100  # mails waiting for a sender; beyond it, dropped (logged)
    pending_expiry_days: int = 7  # unconfirmed subscribers are deleted after this


@dataclass(frozen=True)
class ScheduleSettings:
    weekly_day: str = "mon"  # the weekly digest's day: mon to sun
    weekly_time: str = "08:00"  # its time, HH:MM in `timezone`; empty: no weekly digest
    daily_time: str = "07:00"  # the daily digest's, HH:MM in `timezone`; empty: none
    # a digest missed while stopped is sent on start if at most this late
    misfire_grace_seconds: int = 12 * 3600


@dataclass(frozen=True)
class DigestSettings:
    # {lead}: the newest article's title; {more}: " (+N more)", or nothing for one article
    subject: str = "{site} {frequency} — {lead}{more}"
    # the List-Id header (RFC 2919) of every digest: a dotted name on your domain
    list_id: str = "digest.publisher.localhost"
    max_items: int = 20  # articles listed in full; the rest is one link to the site
    include_corrections: bool = True  # list articles corrected since they were sent
    # the List-Unsubscribe mailto address, routed by the operator to `publisher inbound`:
    # "auto" = unsubscribe@<From domain>, "off" = no mailto (the one-click URL stays)
    unsubscribe_mailto: str = "auto"
    welcome: bool = True  # a welcome mail after the confirm button (choices, first digest)


@dataclass(frozen=True)
class WatchSettings:
    # where no close event says a writer finished (or backend = "poll"), a file is taken
    # once its size and mtime have not changed for this long: longer than an upload stalls
    settle_seconds: float = 3.0
    # "auto": inotify close and rename events on Linux; "poll": the settle rule (NFS, SMB)
    backend: WatchBackend = WatchBackend.AUTO


@dataclass(frozen=True)
class ImapSettings:
    """`[inbound.imap]`: a hosted mailbox that `publisher run` polls for what comes back."""

    host: str = ""  # empty: no poller
    port: int = 993  # IMAP over TLS from the first byte (RFC 8314)
    username: str | None = None  # the mailbox login
    password: str | None = field(default=None, repr=False)  # its password (PUBLISHER_IMAP_PASSWORD)
    mailbox: str = "INBOX"  # the folder read
    # where a message goes once acted on or kept on disk; empty: it is deleted
    processed_mailbox: str = ""
    poll_seconds: float = 60.0  # how often the mailbox is read
    # PEM file of the CA that signs the server's certificate (a private CA)
    ca_file: str | None = None


@dataclass(frozen=True)
class InboundSettings:
    """What comes back (bounces, complaints, unsubscribe mail): the suppression policy."""

    # this many soft (4.x.x) bounces of one address within soft_bounce_days: bounced
    soft_bounce_limit: int = 3
    soft_bounce_days: float = 7.0  # the window soft_bounce_limit counts in
    # the SMTP (or LMTP) listener of `publisher run` that the MTA hands bounces and mailto
    # unsubscribes to; 0: no listener. It answers 250 only once the event is committed
    port: int = 0
    host: str = "127.0.0.1"  # the interface the listener binds
    lmtp: bool = False  # speak LMTP (RFC 2033) instead of SMTP: Postfix's lmtp transport
    # a larger message is kept unread in <data_dir>/inbound/unmatched/ ("too large")
    max_message_bytes: int = 10 * 1024 * 1024
    imap: ImapSettings = field(default_factory=ImapSettings)


@dataclass(frozen=True)
class WebhookSettings:
    """POST /webhooks/<provider>: each provider answers 404 until its credentials are set."""

    max_body_bytes: int = 1024 * 1024  # SendGrid posts batches of up to 768 KB
    # Mailgun and SendGrid: a signed timestamp older (or newer) than this is refused
    replay_window_seconds: int = 300
    # SES (SNS): the topics whose messages are believed, comma-separated ARNs; any AWS
    # account can sign messages of its own topic, so only these count
    ses_topic_arns: str = ""
    ses_max_age_seconds: int = 3600  # SNS retries a delivery for up to an hour by default
    # PEM CA bundle that TLS to sns.<region>.amazonaws.com is checked against; none: the
    # system's trust store
    ses_trust_file: str | None = None
    # host:port the SigningCertURL and SubscribeURL fetches connect to instead of the
    # URL's host (which TLS still verifies): an egress proxy, or a test's local server
    ses_connect_to: str = ""
    # Postmark: basic-auth user in the webhook URL; with postmark_password
    postmark_user: str | None = None
    # its password (PUBLISHER_WEBHOOKS_POSTMARK_PASSWORD)
    postmark_password: str | None = field(default=None, repr=False)
    # Mailgun: the webhook signing key (PUBLISHER_WEBHOOKS_MAILGUN_SIGNING_KEY)
    mailgun_signing_key: str | None = field(default=None, repr=False)
    # the "Verification Key" SendGrid shows when signing is on (base64 DER or PEM)
    sendgrid_public_key: str | None = None

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.ses_topic_arns.split(",") if t.strip())


# Conservative starting points (messages per second per sending host); the providers
# publish no numbers, they slow a sender down with 421 / 451 4.7.x replies instead, which
# the pacing also honours. Microsoft is the quickest to defer a new sender.
DEFAULT_PACING = (
    "gmail.com|googlemail.com = 20/s; "
    "outlook.com|hotmail.com|live.com|msn.com = 10/s; "
    "yahoo.com|ymail.com|aol.com = 10/s; "
    "icloud.com|me.com|mac.com = 10/s"
)
PACING_KEYS = frozenset({"default", "backoff_seconds", "backoff_max_seconds"})
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
_PER = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """Messages per second of a limit such as "20/s", "600/min" or "unlimited" (0.0);
    ValueError for anything else."""
    if text.strip().lower() == "unlimited":
        return 0.0
    found = _RATE.fullmatch(text.lower())
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(text)
    return float(found.group(1)) / _PER[found.group(2)]


def pacing_groups(limits: str) -> tuple[tuple[str, str], ...]:
    """("a.com|b.com", "20/s") pairs of the `limits` string, in order."""
    pairs = []
    for part in limits.split(";"):
        if part.strip():
            group, _, limit = part.partition("=")
            pairs.append((group.strip().lower(), limit.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class PacingSettings:
    """`[pacing]`: how fast mail goes to each recipient domain group, over all workers.

    Each key of the table other than those below is a `|`-separated domain group and its
    value a limit: `"gmail.com|googlemail.com" = "20/s"`, `"600/min"`, `"unlimited"`.
    """

    # the domain groups and their limits; a key given in [pacing] replaces the group of
    # the same name here (or adds one, checked first), e.g. "outlook.com|hotmail.com" = "5/s"
    limits: str = DEFAULT_PACING
    # the limit of every domain in no group
    default: str = "unlimited"
    # the first pause of a domain group after a 421 or 451 4.7.x reply; doubles while
    # they go on
    backoff_seconds: float = 2.0
    # the longest such pause
    backoff_max_seconds: float = 300.0

    @property
    def groups(self) -> tuple[tuple[str, str], ...]:
        return pacing_groups(self.limits)


@dataclass(frozen=True)
class WebSubSettings:
    """`[websub]`: hubs the feeds name and ping, and the built-in hub at /websub."""

    # external hubs (a TOML list, or comma-separated): each feed links them and is pinged
    # (hub.mode=publish) when a build changes it
    hubs: str = ""
    builtin: bool = False  # `publisher run` / `serve` answer WebSub subscriptions at /websub
    # callbacks on private, loopback or link-local addresses are refused unless set (tests)
    allow_private_callbacks: bool = False
    max_subscriptions_per_host: int = 20  # active subscriptions of one callback host
    lease_seconds: int = 10 * 24 * 3600  # granted when the subscriber asks for none
    max_lease_seconds: int = 30 * 24 * 3600  # a longer lease asked for is cut to this
    timeout_seconds: float = 5.0  # every outbound call: ping, challenge, delivery
    max_response_bytes: int = 64 * 1024  # read of any reply, then the connection is closed
    retries: int = 4  # after the first try; waits double from retry_seconds
    retry_seconds: float = 1.0  # the first wait before a ping or delivery is retried

    @property
    def hub_urls(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.hubs.split(",") if h.strip())


@dataclass(frozen=True)
class WarmupSettings:
    """`[warmup]`: a daily cap on digests while a new sending domain builds its reputation.

    Off without the section; a `[warmup]` table turns it on unless it says enabled = false.
    """

    # on when the [warmup] section is present; false turns it off (no section: off)
    enabled: bool = True
    start: int = 200  # messages on the first day the From domain sent
    growth: float = 1.5  # each later day allows this many times the day before
    # the cap on one day's messages; the day after the first capped day warm-up ends
    until: int = 200_000


# -- scale-out workers --
@dataclass(frozen=True)
class WorkerSettings:
    """`publisher worker` on PostgreSQL: claims of delivery rows and their lease."""

    lease_seconds: float = 60.0  # a dead worker's rows are reclaimed after this
    claim_batch: int = 200  # rows claimed per SELECT ... FOR UPDATE SKIP LOCKED
    concurrency: int = 0  # SMTP connections per worker; 0: smtp.pool_size
    poll_seconds: float = 1.0  # an idle worker looks for new rows this often
    # False: `publisher send` and the scheduler only create the run and its rows
    # (fan-out) and leave sending to `publisher worker` processes (PostgreSQL)
    deliver_locally: bool = True


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; passed in, never global."""

    config_file: Path | None = None
    # the database: sqlite:///path.db, or postgresql+psycopg://user@host/db shared by hosts
    database_url: str = "sqlite:///data/publisher.db"
    # how long a writer waits for another one before "database is locked" (SQLite)
    database_busy_timeout: float = 30.0
    # the folder editors drop article files into (quarantine/ and deleted/ live inside it)
    inbox: Path = Path("inbox")
    # processes that read, parse and sign files for an ingest of more than one batch:
    # -1 = one per core but one (at most 4); 0 = none, all in the ingesting process
    # (slower, and no worker process's memory: ~150 MB each)
    ingest_processes: int = -1
    # a larger file is quarantined "too large" before it is read: every file is held
    # whole in memory, signed, and written into pages and feeds
    max_file_bytes: int = 4 * 1024 * 1024
    # where feeds, pages and the sitemap are written; serve it with nginx or `publisher serve`
    output_dir: Path = Path("public")
    # a folder of Jinja2 templates overriding the built-in ones by name; unset: built-in
    templates_dir: Path | None = None
    # sample articles copied into an empty inbox on a first run (the demo); unset: none
    seeds_dir: Path | None = None
    # where `publisher run --smtp-debug` saves received mail
    mailbox_dir: Path = Path("mailbox")
    # where the publisher keeps its own files: inbound mail it could not match is kept in
    # <data_dir>/inbound/unmatched/ with a reason file
    data_dir: Path = Path("data")
    # read when secret_key is unset; the first `run` or `send` creates it (local setups)
    secret_key_file: Path | None = None
    # the public URL of the site: every link in feeds, pages and mail starts with it
    base_url: str = "http://127.0.0.1:8080/"
    # IANA zone of the dates in article files and of the digest schedule
    timezone: str = "Asia/Shanghai"
    # signs confirm, unsubscribe and preference links and keys address hashes; 32 bytes or more
    secret_key: str | None = field(default=None, repr=False)
    site: SiteSettings = field(default_factory=SiteSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    # daily limits for a new sending domain; off unless the config has a [warmup] section
    warmup: WarmupSettings = field(default_factory=lambda: WarmupSettings(enabled=False))
    watch: WatchSettings = field(default_factory=WatchSettings)
    inbound: InboundSettings = field(default_factory=InboundSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    doctor: DoctorSettings = field(default_factory=DoctorSettings)
    websub: WebSubSettings = field(default_factory=WebSubSettings)
    pacing: PacingSettings = field(default_factory=PacingSettings)

    # notes for the operator found while loading (a config file others
    # can read holds a secret); the CLI prints each once on stderr
    notices: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def __repr__(self) -> str:
        """The dataclass repr, minus secrets and a password in database_url."""
        shown = []
        for f in fields(self):
            if f.repr:
                value = getattr(self, f.name)
                shown.append(
                    f"{f.name}={redact_url(value) if f.name == 'database_url' else value!r}"
                )
        return f"Settings({', '.join(shown)})"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def quarantine(self) -> Path:
        return self.inbox / "quarantine"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "localhost"

    def url(self, path: str) -> str:
        """Absolute URL of a path under base_url."""
        return absolute(self.base_url, path)


# environment variable -> (section or "", key)
ENVIRONMENT: Mapping[str, tuple[str, str]] = {
    "PUBLISHER_DATABASE_URL": ("", "database_url"),
    "PUBLISHER_INBOX": ("", "inbox"),
    "PUBLISHER_INGEST_PROCESSES": ("", "ingest_processes"),
    "PUBLISHER_MAX_FILE_BYTES": ("", "max_file_bytes"),
    "PUBLISHER_OUTPUT_DIR": ("", "output_dir"),
    "PUBLISHER_TEMPLATES_DIR": ("", "templates_dir"),
    "PUBLISHER_BASE_URL": ("", "base_url"),
    "PUBLISHER_SECRET_KEY": ("", "secret_key"),
    "PUBLISHER_TIMEZONE": ("", "timezone"),
    "PUBLISHER_MAILBOX_DIR": ("", "mailbox_dir"),
    "PUBLISHER_DATA_DIR": ("", "data_dir"),
    "PUBLISHER_SMTP_HOST": ("smtp", "host"),
    "PUBLISHER_SMTP_PORT": ("smtp", "port"),
    "PUBLISHER_SMTP_USERNAME": ("smtp", "username"),
    "PUBLISHER_SMTP_PASSWORD": ("smtp", "password"),
    "PUBLISHER_SMTP_TLS": ("smtp", "tls"),
    "PUBLISHER_FROM": ("smtp", "from_address"),
    "PUBLISHER_WEBHOOKS_SES_TOPIC_ARNS": ("webhooks", "ses_topic_arns"),
    "PUBLISHER_WEBHOOKS_POSTMARK_USER": ("webhooks", "postmark_user"),
    "PUBLISHER_WEBHOOKS_POSTMARK_PASSWORD": ("webhooks", "postmark_password"),
    "PUBLISHER_WEBHOOKS_MAILGUN_SIGNING_KEY": ("webhooks", "mailgun_signing_key"),
    "PUBLISHER_WEBHOOKS_SENDGRID_PUBLIC_KEY": ("webhooks", "sendgrid_public_key"),
    "PUBLISHER_IMAP_PASSWORD": ("inbound.imap", "password"),
    "PUBLISHER_DKIM_PRIVATE_KEY": ("dkim", "private_key"),
    "PUBLISHER_DKIM_ED25519_KEY": ("dkim", "ed25519_key"),
}

_SECTIONS: Mapping[str, type] = {
    "site": SiteSettings,
    "smtp": SmtpSettings,
    "dedup": DedupSettings,
    "feeds": FeedSettings,
    "server": ServerSettings,
    "schedule": ScheduleSettings,
    "digest": DigestSettings,
    "workers": WorkerSettings,
    "warmup": WarmupSettings,
    "watch": WatchSettings,
    "inbound": InboundSettings,
    "webhooks": WebhookSettings,
    "dkim": DkimSettings,
    "doctor": DoctorSettings,
    "websub": WebSubSettings,
}
_PATHS = (
    "inbox",
    "output_dir",
    "templates_dir",
    "seeds_dir",
    "mailbox_dir",
    "secret_key_file",
    "data_dir",
)


def load_settings(
    config: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the config file (if any) and the environment into Settings; ConfigError if wrong."""
    env = os.environ if environ is None else environ
    path = _config_path(config, env)
    raw: dict[str, Any] = {}
    file_raw: dict[str, Any] = raw  # what the file itself holds
    if path is not None:
        try:
            raw = tomllib.loads(path.read_bytes().decode("utf-8"))
            # copies: the environment is merged into raw below
            file_raw = {
                **raw,
                **{
                    name: dict(raw[name]) if isinstance(raw.get(name), dict) else {}
                    for name in ("smtp", "webhooks")
                },
            }
            inbound = raw.get("inbound")
            if isinstance(inbound, dict):  # a copy: the environment may add imap.password
                imap = inbound.get("imap")
                file_raw["inbound"] = {
                    **inbound,
                    "imap": dict(imap) if isinstance(imap, dict) else {},
                }
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {path}: {exc.strerror}",
                "pass --config FILE or set PUBLISHER_CONFIG",
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {path} is not UTF-8 text (byte {exc.start})",
                "save it as UTF-8",
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    for variable, (section, key) in ENVIRONMENT.items():
        if variable in env and env[variable] != "":
            table = raw
            for part in section.split(".") if section else ():
                table = table.setdefault(part, {})
            table[key] = env[variable]
    base = path.parent.resolve() if path is not None else Path.cwd()
    settings = _build(raw, base, path)
    settings, unset = _relay_passwords(settings, env)
    notices = (*_exposed_secrets(path, file_raw, settings), *unset)
    return replace(settings, notices=notices) if notices else settings


def _relay_passwords(
    settings: Settings, env: Mapping[str, str]
) -> tuple[Settings, tuple[str, ...]]:
    """Each relay's password from the variable its password_env names (it beats a password
    in the file); a note for each such variable that is unset."""
    relays, notices = [], []
    for n, relay in enumerate(settings.smtp.relays, 1):
        if relay.password_env and env.get(relay.password_env):
            relay = replace(relay, password=env[relay.password_env])
        elif relay.password_env and not relay.password:
            notices.append(
                f"smtp.relays[{n}] ({relay.host}): {relay.password_env} is unset, "
                "so it is used without a password"
            )
        relays.append(relay)
    if not settings.smtp.relays:
        return settings, ()
    return replace(settings, smtp=replace(settings.smtp, relays=tuple(relays))), tuple(notices)


def relay_chain(smtp: SmtpSettings) -> tuple[SmtpSettings, ...]:
    """[smtp] and then each [[smtp.relays]], in order, each as whole SmtpSettings: a relay
    takes its own connection and login, and [smtp]'s pool, retry and sender settings."""
    first = replace(smtp, relays=())
    return (
        first,
        *(
            replace(
                first,
                host=r.host,
                port=r.port,
                tls=r.tls,
                username=r.username,
                password=r.password,
                verify_certificate=r.verify_certificate,
                ca_file=r.ca_file,
                helo_name=r.helo_name or smtp.helo_name,
            )
            for r in smtp.relays
        ),
    )


def _config_path(config: Path | str | None, env: Mapping[str, str]) -> Path | None:
    if config is not None:
        return Path(config)
    if env.get("PUBLISHER_CONFIG"):
        return Path(env["PUBLISHER_CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _build(raw: dict[str, Any], base: Path, path: Path | None) -> Settings:
    where = f" in {path}" if path else ""
    values: dict[str, Any] = {"config_file": path}
    known_top = {f.name for f in fields(Settings)} - {"config_file"}
    for key, value in raw.items():
        if key == "pacing":
            values[key] = _pacing(value, where)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table{where}")
            values[key] = _section(_SECTIONS[key], key, value, where)
        elif key in known_top:
            values[key] = _coerce(Settings, key, value, where)
        else:
            raise ConfigError(
                f"unknown setting '{key}'{where}", f"known: {', '.join(sorted(known_top))}"
            )
    defaults = Settings()
    for key in _PATHS:
        value = values.get(key, getattr(defaults, key))
        if value is not None:
            values[key] = _resolve(base, Path(value))
    settings = Settings(**values)
    if settings.database_url.startswith("sqlite:///") and not settings.database_url.startswith(
        "sqlite:////"
    ):
        relative = settings.database_url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            settings = replace(settings, database_url=f"sqlite:///{_resolve(base, Path(relative))}")
    elif "://" not in settings.database_url:
        raise ConfigError(
            f"database_url '{settings.database_url}' is not a URL{where}",
            "use sqlite:///path.db or postgresql+psycopg://user@host/db",
        )
    settings = _secret_from_file(settings)
    if settings.smtp.ca_file:  # relative to the config file, like other paths
        ca_file = str(_resolve(base, Path(settings.smtp.ca_file)))
        settings = replace(settings, smtp=replace(settings.smtp, ca_file=ca_file))
    if any(relay.ca_file for relay in settings.smtp.relays):
        relays = tuple(
            replace(r, ca_file=str(_resolve(base, Path(r.ca_file)))) if r.ca_file else r
            for r in settings.smtp.relays
        )
        settings = replace(settings, smtp=replace(settings.smtp, relays=relays))
    if settings.webhooks.ses_trust_file:
        trust = str(_resolve(base, Path(settings.webhooks.ses_trust_file)))
        settings = replace(settings, webhooks=replace(settings.webhooks, ses_trust_file=trust))
    imap = settings.inbound.imap
    if imap.ca_file:
        imap = replace(imap, ca_file=str(_resolve(base, Path(imap.ca_file))))
        settings = replace(settings, inbound=replace(settings.inbound, imap=imap))
    settings = _dkim_keys(settings, base, where)
    _validate(settings, where)
    return settings


def _pacing(raw: Any, where: str) -> PacingSettings:
    """[pacing]: domain group keys become `limits` (given groups first), the rest are
    ordinary settings; every limit checked here, naming its key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"[pacing] must be a table{where}")
    given: list[tuple[str, str]] = []
    others: dict[str, Any] = {}
    for key, value in raw.items():
        if key in PACING_KEYS or key == "limits":
            others[key] = value
            continue
        names = [name.strip() for name in str(key).lower().split("|")]
        if not all(_DOMAIN.fullmatch(name) for name in names):
            raise ConfigError(
                f"pacing key {key!r} is not a domain group{where}",
                'write domains separated by |, e.g. "gmail.com|googlemail.com" = "20/s"',
            )
        given.append(("|".join(names), str(value)))
    settings: PacingSettings = _section(PacingSettings, "pacing", others, where)
    named = {group for group, _ in given}
    kept = [pair for pair in settings.groups if pair[0] not in named]
    limits = "; ".join(f"{group} = {limit}" for group, limit in [*given, *kept])
    settings = replace(settings, limits=limits)
    for group, limit in [*given, *kept, ("default", settings.default)]:
        try:
            parse_rate(limit)
        except ValueError:
            raise ConfigError(
                f"pacing {group!r} = {limit!r} is not a limit{where}",
                'write e.g. "20/s", "600/min" or "unlimited"',
            ) from None
    if settings.backoff_seconds <= 0 or settings.backoff_max_seconds < settings.backoff_seconds:
        raise ConfigError(
            f"pacing.backoff_seconds must be more than 0 and at most "
            f"pacing.backoff_max_seconds{where}"
        )
    return settings


def _dkim_keys(settings: Settings, base: Path, where: str) -> Settings:
    """Key files resolved against the config folder and read; the environment wins."""
    dkim = settings.dkim
    values: dict[str, Any] = {}
    for path_name, key_name in (
        ("private_key_file", "private_key"),
        ("ed25519_key_file", "ed25519_key"),
    ):
        path = getattr(dkim, path_name)
        if path is None:
            continue
        path = _resolve(base, path)
        values[path_name] = path
        if getattr(dkim, key_name):
            continue
        try:
            values[key_name] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read dkim.{path_name} {path}: {exc.strerror}{where}",
                "make one with `openssl genrsa -out dkim.pem 2048` (chmod 600 it)",
            ) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"dkim.{path_name} {path} is not a PEM text file{where}") from exc
    if (dkim.private_key or values.get("private_key")) and not dkim.selector:
        raise ConfigError(f"dkim.selector is unset but a DKIM key is given{where}")
    return replace(settings, dkim=replace(dkim, **values)) if values else settings


def _secret_from_file(settings: Settings) -> Settings:
    """A local secret key file stands in for an unset secret_key."""
    path = settings.secret_key_file
    if settings.secret_key or path is None or not path.is_file():
        return settings
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret_key_file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"secret_key_file {path} is not UTF-8 text") from exc
    if secret:
        _check_secret_key(secret, f"the key in secret_key_file {path}")
    return replace(settings, secret_key=secret or None)


# -- secrets -------------------------------------------------------------------------

SECRET_SETTINGS = (
    "secret_key",
    "smtp.password",
    "smtp.relays.password",
    "webhooks.postmark_password",
    "webhooks.mailgun_signing_key",
    "inbound.imap.password",
    "dkim.private_key",
    "dkim.ed25519_key",
)
# the key signs every confirm, unsubscribe and preference link: 256 bits, like HMAC-SHA256's
MIN_SECRET_KEY_BYTES = 32


def _check_secret_key(key: str, origin: str) -> None:
    size = len(key.encode("utf-8"))
    if size < MIN_SECRET_KEY_BYTES:
        raise ConfigError(
            f"{origin} is {size} bytes long; at least {MIN_SECRET_KEY_BYTES} are needed",
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )


def redact_url(url: str) -> str:
    """A URL with its password replaced by ***, for messages, logs and status."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        if ":" in credentials:
            return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url


def _exposed_secrets(
    path: Path | None, file_raw: Mapping[str, Any], settings: Settings
) -> tuple[str, ...]:
    """Warnings for secrets kept in files that other users may read (mode & 0o044)."""
    notices = []
    if path is not None:
        smtp = file_raw.get("smtp")
        hooks = file_raw.get("webhooks")
        held = [
            name
            for name, present in (
                ("secret_key", bool(file_raw.get("secret_key"))),
                ("smtp.password", isinstance(smtp, dict) and bool(smtp.get("password"))),
                (
                    "smtp.relays password",
                    isinstance(smtp, dict)
                    and isinstance(smtp.get("relays"), list)
                    and any(isinstance(r, dict) and r.get("password") for r in smtp["relays"]),
                ),
                *(
                    (f"webhooks.{key}", isinstance(hooks, dict) and bool(hooks.get(key)))
                    for key in ("postmark_password", "mailgun_signing_key")
                ),
                ("inbound.imap.password", _nested(file_raw, "inbound", "imap", "password")),
                (
                    "database_url password",
                    redact_url(str(file_raw.get("database_url", "")))
                    != str(file_raw.get("database_url", "")),
                ),
            )
            if present
        ]
        if held and _readable_by_others(path):
            notices.append(
                f"config file {path} is readable by other users and holds "
                f"{', '.join(held)}; chmod 600 it, or move the secret to the environment "
                "(PUBLISHER_SECRET_KEY, PUBLISHER_SMTP_PASSWORD)"
            )
    key_file = settings.secret_key_file
    if key_file is not None and key_file.is_file() and _readable_by_others(key_file):
        notices.append(f"secret_key_file {key_file} is readable by other users; chmod 600 it")
    return tuple(notices)


def _nested(raw: Mapping[str, Any], *keys: str) -> bool:
    """Whether raw[k1][k2]... holds a non-empty value."""
    value: Any = raw
    for key in keys:
        if not isinstance(value, Mapping):
            return False
        value = value.get(key)
    return bool(value)


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o044)
    except OSError:
        return False


def _resolve(base: Path, value: Path) -> Path:
    value = value.expanduser()
    return (value if value.is_absolute() else base / value).resolve()


def _section(cls: type, name: str, raw: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"unknown setting '{name}.{key}'{where}", f"known: {', '.join(sorted(known))}"
            )
    values = {}
    for key, value in raw.items():
        kind = str(next(f for f in fields(cls) if f.name == key).type)
        if kind in _NESTED:  # a sub-table such as [inbound.imap]
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}.{key}] must be a table{where}")
            values[key] = _section(_NESTED[kind], f"{name}.{key}", value, where)
        elif kind in _ARRAYS:  # an array of tables such as [[smtp.relays]]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ConfigError(
                    f"{name}.{key} must be a list of tables{where}",
                    f"write each one as a [[{name}.{key}]] table",
                )
            values[key] = tuple(
                _section(_ARRAYS[kind], f"{name}.{key}[{n}]", item, where)
                for n, item in enumerate(value, 1)
            )
        else:
            values[key] = _coerce(cls, key, value, where, prefix=f"{name}.")
    return cls(**values)


_NESTED: Mapping[str, type] = {"ImapSettings": ImapSettings}
_ARRAYS: Mapping[str, type] = {"tuple[RelaySettings, ...]": RelaySettings}


def _coerce(cls: type, key: str, value: Any, where: str, prefix: str = "") -> Any:
    default = next(f for f in fields(cls) if f.name == key)
    kind = str(default.type)
    try:
        if kind == "bool":
            if isinstance(value, str):
                if value.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(value)
                return value.lower() in {"1", "true", "yes"}
            return bool(value)
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind == "float":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if kind.startswith("Path"):
            return None if value in (None, "") else Path(value)
        if kind in _ENUMS:
            return _ENUMS[kind](value)
        if f"{prefix}{key}" in _LISTS and isinstance(value, list):
            if not all(isinstance(item, str) and "," not in item for item in value):
                raise ValueError(value)
            return ",".join(value)
        if value is not None and not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError, OverflowError) as exc:
        # never echo a secret's value
        secret = re.sub(r"\[\d+\]", "", f"{prefix}{key}") in SECRET_SETTINGS
        shown = "a secret" if secret else repr(value)
        raise ConfigError(
            f"setting '{prefix}{key}' must be {_expected(kind)}, got {shown}{where}",
            _KIND_HINTS.get(kind, "write it as a quoted string"),
        ) from exc


_LISTS = frozenset({"websub.hubs"})  # a TOML list of strings, or one comma-separated string
_ENUMS: Mapping[str, type[StrEnum]] = {"TlsMode": TlsMode, "WatchBackend": WatchBackend}


def _expected(kind: str) -> str:
    if kind in _ENUMS:
        return "one of " + ", ".join(member.value for member in _ENUMS[kind])
    return kind.split(" |")[0]


_KIND_HINTS = {
    "TlsMode": "write none, starttls or tls",
    "WatchBackend": "write auto or poll",
    "bool": "write true or false",
    "int": "write a whole number without quotes, e.g. 25",
    "float": "write a finite number, e.g. 2.5",
}


def _validate(settings: Settings, where: str) -> None:
    try:
        settings.zone  # noqa: B018 - raises for an unknown zone
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown timezone '{settings.timezone}'{where}",
            "use an IANA name such as Asia/Shanghai",
        ) from exc
    if not 0 < settings.dedup.near_duplicate_threshold <= 1:
        raise ConfigError(f"dedup.near_duplicate_threshold must be in (0, 1]{where}")
    if settings.ingest_processes < -1:
        raise ConfigError(f"ingest_processes must be -1 (one per core), 0 or more{where}")
    if settings.max_file_bytes < 1:
        raise ConfigError(f"max_file_bytes must be at least 1{where}")
    if settings.dedup.boilerplate_min_articles < 2:
        raise ConfigError(f"dedup.boilerplate_min_articles must be at least 2{where}")
    scheme = urlsplit(settings.base_url).scheme
    if scheme not in {"http", "https"}:
        raise ConfigError(f"base_url must be an http(s) URL, got '{settings.base_url}'{where}")
    if not 0 < settings.smtp.port < 65536 or not 0 <= settings.server.port < 65536:
        raise ConfigError(
            f"port out of range{where}", "smtp.port is 1 to 65535, server.port 0 to 65535"
        )
    _validate_ranges(settings, where)
    _validate_server(settings.server, where)
    _validate_database_url(settings.database_url, where)
    _validate_digest(settings.digest, where)
    _validate_sender(settings.smtp, where)
    _validate_relays(settings.smtp.relays, where)
    _validate_dkim(settings.dkim, where)
    _validate_webhooks(settings.webhooks, where)
    for hub in settings.websub.hub_urls:
        if urlsplit(hub).scheme not in {"http", "https"} or not urlsplit(hub).hostname:
            raise ConfigError(f"websub.hubs: '{hub}' is not an http(s) URL{where}")
    _validate_bounce_address(settings.smtp.bounce_address, where)
    imap = settings.inbound.imap
    if imap.host and not (imap.username and imap.password):
        raise ConfigError(
            f"[inbound.imap] host is set but username or password is not{where}",
            "set inbound.imap.username, and the password in PUBLISHER_IMAP_PASSWORD",
        )
    if settings.secret_key is not None:
        _check_secret_key(
            settings.secret_key, "the secret key (PUBLISHER_SECRET_KEY or secret_key)"
        )
    if settings.templates_dir is not None and not settings.templates_dir.is_dir():
        raise ConfigError(
            f"templates_dir {settings.templates_dir} is not a folder{where}",
            "create it, or remove templates_dir to use the built-in templates",
        )


# setting -> (least, greatest or None): numbers outside are refused at load, not met later
# as a crash (num_perm = 0) or as silence (attempts = 0 sends nothing, and says nothing)
_RANGES: Mapping[str, tuple[float, float | None]] = {
    "database_busy_timeout": (0, None),
    "smtp.pool_size": (1, 1000),
    "smtp.messages_per_connection": (1, None),
    "smtp.rate_per_second": (0, None),
    "smtp.attempts": (1, 100),
    "smtp.backoff_seconds": (0, 3600),
    "smtp.timeout_seconds": (0.001, None),
    "smtp.bounce_after": (1, None),
    "dedup.num_perm": (1, 1024),
    "dedup.shingle_size": (1, 64),
    "dedup.containment_threshold": (0, 1),
    "dedup.republication_days": (0, 3650),
    "dedup.short_text_words": (0, None),
    "feeds.max_entries": (1, None),
    "digest.max_items": (1, None),
    "feeds.archive_page_size": (1, None),
    "feeds.tombstone_days": (0, None),
    "server.subscribe_per_minute": (1, None),
    "server.subscribe_cooldown_seconds": (0, None),
    "server.token_max_age_seconds": (1, None),
    "server.unsubscribe_token_max_age_seconds": (1, None),
    "server.max_body_bytes": (1, None),
    "schedule.misfire_grace_seconds": (1, None),
    "workers.lease_seconds": (0.001, None),
    "workers.claim_batch": (1, None),
    "workers.concurrency": (0, 1000),
    "workers.poll_seconds": (0.001, None),
    "warmup.start": (1, None),
    "warmup.growth": (1, 100),
    "warmup.until": (1, None),
    "watch.settle_seconds": (0.1, 3600),
    "inbound.soft_bounce_limit": (1, None),
    "inbound.soft_bounce_days": (0.001, 3650),
    "webhooks.max_body_bytes": (1, None),
    "webhooks.replay_window_seconds": (1, 24 * 3600),
    "webhooks.ses_max_age_seconds": (1, None),
    "inbound.port": (0, 65535),
    "inbound.max_message_bytes": (1024, None),
    "inbound.imap.port": (1, 65535),
    "inbound.imap.poll_seconds": (0.05, None),
    "websub.max_subscriptions_per_host": (1, None),
    "websub.lease_seconds": (60, None),
    "websub.max_lease_seconds": (60, None),
    "websub.timeout_seconds": (0.1, 120),
    "websub.max_response_bytes": (1024, None),
    "websub.retries": (0, 20),
    "websub.retry_seconds": (0.01, 3600),
}


def _validate_ranges(settings: Settings, where: str) -> None:
    for name, (least, greatest) in _RANGES.items():
        value: Any = settings
        for part in name.split("."):
            value = getattr(value, part)
        if value < least or (greatest is not None and value > greatest):
            allowed = f"at least {least}" if greatest is None else f"{least} to {greatest}"
            default: Any = Settings()
            for part in name.split("."):
                default = getattr(default, part)
            raise ConfigError(
                f"setting '{name}' must be {allowed}, got {value}{where}",
                f"set it in range or remove it (default: {default})",
            )


_DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def _validate_database_url(url: str, where: str) -> None:
    scheme = url.split("://", 1)[0]
    if scheme not in _DATABASE_SCHEMES:
        raise ConfigError(
            f"database_url scheme '{scheme}' is not supported{where}",
            "use sqlite:///path.db or postgresql+psycopg://user@host/db",
        )
    try:
        urlsplit(url).port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError as exc:
        raise ConfigError(
            f"database_url has a bad port{where}: {exc}",
            "write host:port with a port from 1 to 65535",
        ) from exc


# RFC 2919: a list-id is a dot-atom (no spaces, no control characters, no angle brackets)
_LIST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# a bare ASCII address (it is written into a header and a mailto: URL unquoted)
_MAILTO_ADDRESS = re.compile(r"[A-Za-z0-9._+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


# the VERP token (tokens.py) and the "+" take up to 43 of a local part's 64 octets
BOUNCE_LOCAL_PART_CHARS = 20


def _validate_bounce_address(address: str | None, where: str) -> None:
    if address is None or address == "":
        return
    local = address.rpartition("@")[0]
    if not _MAILTO_ADDRESS.fullmatch(address) or "+" in local:
        raise ConfigError(
            f"smtp.bounce_address {address!r} is not a plain address{where}",
            'write one without "+", e.g. "bounces@news.example.org"',
        )
    if len(local) > BOUNCE_LOCAL_PART_CHARS:
        raise ConfigError(
            f"smtp.bounce_address {address!r}: the part before @ is over "
            f"{BOUNCE_LOCAL_PART_CHARS} characters{where}",
            "the signed token must fit in the 64 characters of a local part",
        )


def _validate_digest(digest: DigestSettings, where: str) -> None:
    if not _LIST_ID.fullmatch(digest.list_id):
        raise ConfigError(
            f"digest.list_id {digest.list_id!r} is not a list id{where}",
            "use dotted words without spaces or line breaks, e.g. digest.news.example.org",
        )
    mailto = digest.unsubscribe_mailto
    if mailto not in ("auto", "off") and not _MAILTO_ADDRESS.fullmatch(mailto):
        raise ConfigError(
            f"digest.unsubscribe_mailto {mailto!r} is not an address{where}",
            'write auto, off or an address such as "unsubscribe@news.example.org"',
        )
    if _CONTROL_CHARACTERS.search(digest.subject):
        raise ConfigError(
            f"digest.subject holds a line break or control character{where}",
            "write the subject on one line",
        )
    try:
        digest.subject.format(
            site="site", frequency="weekly", count=1, date="1 Jan 2026", lead="Lead", more=""
        )
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"digest.subject {digest.subject!r} cannot be filled{where}: {exc!r}",
            "use only {site}, {frequency}, {count}, {date}, {lead} and {more}; "
            "write {{ and }} for braces",
        ) from exc


# RFC 5321 EHLO: a domain (letters, digits, hyphens, dots) or an address literal
_DOMAIN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_ADDRESS_LITERAL = re.compile(r"\[(?:IPv6:)?[0-9A-Fa-f:.]+\]")
# Gmail: up to four colon-separated fields, the last the sender's own id
_FEEDBACK_ID = re.compile(r"[A-Za-z0-9._+=/-]{1,64}(?::[A-Za-z0-9._+=/-]{1,64}){0,3}")
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


# RFC 6376 3.1: a selector is dot-separated sub-domain labels
_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _validate_dkim(dkim: DkimSettings, where: str) -> None:
    for name, value in (("selector", dkim.selector), ("ed25519_selector", dkim.ed25519_selector)):
        if value and not _SELECTOR.fullmatch(value):
            raise ConfigError(
                f"dkim.{name} {value!r} is not a DKIM selector{where}",
                "letters, digits and hyphens, e.g. mail2026",
            )
    if dkim.domain and not _DOMAIN.fullmatch(dkim.domain):
        raise ConfigError(
            f"dkim.domain {dkim.domain!r} is not a domain name{where}",
            "the domain of the From address, e.g. news.example.org",
        )


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _validate_relays(relays: tuple[RelaySettings, ...], where: str) -> None:
    for n, relay in enumerate(relays, 1):
        name = f"smtp.relays[{n}]"
        if not relay.host.strip():
            raise ConfigError(f"{name} has no host{where}", "set host in each [[smtp.relays]]")
        if not 0 < relay.port < 65536:
            raise ConfigError(f"{name}.port must be 1 to 65535, got {relay.port}{where}")
        _validate_helo_name(relay.helo_name, f"{name}.helo_name", where)
        if relay.password_env and not _VARIABLE.fullmatch(relay.password_env):
            raise ConfigError(
                f"{name}.password_env {relay.password_env!r} is not a variable name{where}",
                'name an environment variable, e.g. "PUBLISHER_SMTP_BACKUP_PASSWORD"',
            )


def _validate_helo_name(helo_name: str | None, key: str, where: str) -> None:
    if helo_name and not (_DOMAIN.fullmatch(helo_name) or _ADDRESS_LITERAL.fullmatch(helo_name)):
        raise ConfigError(
            f"{key} {helo_name!r} is not a host name{where}",
            "use this host's public name, e.g. mail.example.org",
        )


def _validate_sender(smtp: SmtpSettings, where: str) -> None:
    _validate_helo_name(smtp.helo_name, "smtp.helo_name", where)
    if smtp.feedback_id and not _FEEDBACK_ID.fullmatch(smtp.feedback_id):
        raise ConfigError(
            f"smtp.feedback_id {smtp.feedback_id!r} is not a Feedback-ID{where}",
            "use one to four colon-separated words, the last your sender id, e.g. "
            '"digest:publisher:harbin"',
        )
    if smtp.cfbl_address and not _PLAIN_ADDRESS.fullmatch(smtp.cfbl_address):
        raise ConfigError(
            f"smtp.cfbl_address {smtp.cfbl_address!r} is not a plain email address{where}",
            "use an address on your From domain that receives ARF reports, e.g. fbl@example.org",
        )


def is_loopback_host(host: str) -> bool:
    """True for a name or address of this machine (no DNS is asked)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def ehlo_name(smtp: SmtpSettings) -> str:
    """The name to say in EHLO: smtp.helo_name, else the From address's domain.

    A relay elsewhere scores or refuses a client calling itself localhost (or a bare word),
    so that is allowed only towards a server on this machine.
    """
    name = smtp.helo_name
    if not name:
        domain = parseaddr(smtp.from_address)[1].rpartition("@")[2].strip().rstrip(".")
        try:
            name = domain.encode("idna").decode("ascii").lower() if domain else ""
        except UnicodeError:
            name = ""
    if is_loopback_host(smtp.host):
        return name or "localhost"
    if not name or is_loopback_host(name) or "." not in name.strip("[]"):
        raise ConfigError(
            f"the EHLO name would be {name or 'empty'!r} while the SMTP server "
            f"{smtp.host} is not on this machine",
            "set smtp.helo_name to this host's public name (or a From address on your domain)",
        )
    return name


def _validate_webhooks(hooks: WebhookSettings, where: str) -> None:
    if bool(hooks.postmark_user) != bool(hooks.postmark_password):
        raise ConfigError(
            f"webhooks.postmark_user and webhooks.postmark_password go together{where}",
            "set both (PUBLISHER_WEBHOOKS_POSTMARK_PASSWORD for the password) or neither",
        )
    if hooks.postmark_user and ":" in hooks.postmark_user:
        raise ConfigError(f"webhooks.postmark_user must not hold a colon{where}")
    if hooks.ses_connect_to:
        host, _, port = hooks.ses_connect_to.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"webhooks.ses_connect_to must be host:port, got {hooks.ses_connect_to!r}{where}"
            )
    if hooks.ses_trust_file and not Path(hooks.ses_trust_file).is_file():
        raise ConfigError(f"webhooks.ses_trust_file {hooks.ses_trust_file} is not a file{where}")


def _validate_server(server: ServerSettings, where: str) -> None:
    for name in ("keep_alive_seconds", "limit_concurrency", "confirmation_senders"):
        if getattr(server, name) < 1:
            raise ConfigError(f"server.{name} must be at least 1{where}")
    if not server.header_timeout_seconds > 0:
        raise ConfigError(f"server.header_timeout_seconds must be more than 0{where}")
    if server.confirmation_backlog < 0 or server.pending_expiry_days < 1:
        raise ConfigError(
            f"server.confirmation_backlog must be 0 or more and "
            f"server.pending_expiry_days at least 1{where}"
        )
    for item in forwarded_ips(server):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ConfigError(
                f"server.forwarded_allow_ips: '{item}' is not an IP address or network{where}",
                'name the reverse proxy, e.g. forwarded_allow_ips = "127.0.0.1"',
            ) from exc


def forwarded_ips(server: ServerSettings) -> list[str]:
    """The proxies trusted to set X-Forwarded-For (empty: nobody)."""
    return [item.strip() for item in server.forwarded_allow_ips.split(",") if item.strip()]
