"""What `publisher init` writes, as values: the operator's answers checked, the text of a
production publisher.toml, and the DNS records that go with it (pure: scaffold.py writes).

The sample config/publisher.toml is the demo (localhost URLs, the five seed articles, a
local SMTP sink): copied into production it publishes the demo on the first run. What is
rendered here is the other kind: the operator's URL, From address and zone, no seeds, a
secret key file and, on request, the DKIM lines.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, fields
from email.utils import parseaddr
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.config import Settings, TlsMode, is_loopback_host
from publisher.errors import UsageError

__all__ = [
    "CONFIG_NAME",
    "DKIM_KEY_NAME",
    "SECRET_KEY_NAME",
    "DnsRecord",
    "InitAnswers",
    "check_base_url",
    "check_from_address",
    "check_host",
    "check_list_id",
    "check_selector",
    "check_timezone",
    "check_title",
    "default_list_id",
    "default_title",
    "dkim_settings_exist",
    "dns_records",
    "from_domain",
    "render_config",
    "smtp_defaults",
]

CONFIG_NAME = "publisher.toml"
SECRET_KEY_NAME = "secret_key"
DKIM_KEY_NAME = "dkim.key"
# one character string of a TXT record holds at most 255 bytes (RFC 1035 3.3.14)
TXT_STRING_BYTES = 255

_DOMAIN = re.compile(
    r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]"
)
_SELECTOR = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class InitAnswers:
    """What the operator said (flags or prompts), each already checked."""

    base_url: str
    from_address: str
    title: str
    timezone: str
    list_id: str
    smtp_host: str
    smtp_port: int
    smtp_tls: TlsMode
    smtp_username: str | None = None
    database_url: str = "sqlite:///data/publisher.db"
    dkim_selector: str | None = None  # None: no DKIM key is made


@dataclass(frozen=True)
class DnsRecord:
    name: str  # fully qualified, without the final dot
    kind: str
    value: str
    why: str

    def zone_line(self) -> str:
        """The record as a zone file writes it: a long TXT value in several strings."""
        data = self.value.encode("ascii")
        chunks = [data[i : i + TXT_STRING_BYTES] for i in range(0, len(data), TXT_STRING_BYTES)]
        strings = " ".join(f'"{chunk.decode("ascii")}"' for chunk in chunks)
        return f"{self.name}. {self.kind} {strings}"


# -- checks: each returns the value to write, or raises UsageError ------------------


def check_base_url(value: str) -> str:
    """The public http(s) URL of the site, ending in "/"; not this machine."""
    value = value.strip()
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host, parts = None, urlsplit("")
    if parts.scheme not in ("http", "https") or not host or _CONTROL.search(value):
        raise UsageError(
            f"base URL {value!r} is not an http(s) URL", "e.g. https://news.example.org/"
        )
    if is_loopback_host(host):
        raise UsageError(
            f"base URL {value!r} points at this machine; subscribers could not open its links",
            "give the public URL readers use, e.g. https://news.example.org/",
        )
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def from_domain(address: str) -> str:
    """The domain of a From address (lower case, IDNA), or "" when it has none."""
    domain = parseaddr(address)[1].rpartition("@")[2].strip().rstrip(".")
    try:
        return domain.encode("idna").decode("ascii").lower() if domain else ""
    except UnicodeError:
        return ""


def check_from_address(value: str) -> str:
    """`Name <local@domain>` or `local@domain`, on a public domain."""
    value = value.strip()
    address = parseaddr(value)[1]
    domain = from_domain(value)
    if not address or "@" not in address or _CONTROL.search(value) or not _DOMAIN.fullmatch(domain):
        raise UsageError(
            f"From address {value!r} is not an address on a domain",
            'e.g. "Example News <news@example.org>"',
        )
    if is_loopback_host(domain):
        raise UsageError(
            f"From address {value!r} is on {domain}; no mailbox provider accepts that",
            "use an address on your own domain, e.g. news@example.org",
        )
    return value


def check_timezone(value: str) -> str:
    value = value.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(
            f"unknown time zone {value!r}", "use an IANA name such as Europe/Berlin"
        ) from exc
    return value


def check_list_id(value: str) -> str:
    value = value.strip().lower()
    if not _DOMAIN.fullmatch(value) or is_loopback_host(value):
        raise UsageError(
            f"List-Id {value!r} is not a dotted name on a public domain",
            "e.g. digest.example.org",
        )
    return value


def check_host(value: str) -> str:
    """An SMTP relay's host name or address."""
    value = value.strip().lower()
    if not value or _CONTROL.search(value) or any(c in value for c in " /@"):
        raise UsageError(f"SMTP host {value!r} is not a host name", "e.g. smtp.example.org")
    return value


def check_title(value: str) -> str:
    value = " ".join(value.split())
    if _CONTROL.search(value) or len(value) > 200:
        raise UsageError("the site title must be one line of at most 200 characters")
    return value


def check_selector(value: str) -> str:
    value = value.strip().lower()
    if not _SELECTOR.fullmatch(value):
        raise UsageError(
            f"DKIM selector {value!r} is not one DNS label", "e.g. publisher or news2026"
        )
    return value


def default_list_id(from_address: str) -> str:
    return f"digest.{from_domain(from_address)}"


def default_title(from_address: str) -> str:
    """The From address's display name, else its domain."""
    return parseaddr(from_address)[0].strip() or from_domain(from_address)


def smtp_defaults(host: str) -> tuple[int, TlsMode]:
    """Port and TLS for a relay: plain port 25 to an MTA on this machine (Postfix relaying
    on), submission with STARTTLS (587) to one elsewhere."""
    return (25, TlsMode.NONE) if is_loopback_host(host) else (587, TlsMode.STARTTLS)


def dkim_settings_exist() -> bool:
    """Whether this publisher reads [dkim] selector, domain and private_key_file."""
    dkim = next((f for f in fields(Settings) if f.name == "dkim"), None)
    factory = getattr(dkim, "default_factory", None)
    try:
        names = {f.name for f in fields(factory)}  # type: ignore[arg-type]
    except TypeError:
        return False
    return {"selector", "domain", "private_key_file"} <= names


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def render_config(answers: InitAnswers, *, dkim_wired: bool = False) -> str:
    """The text of a production publisher.toml."""
    domain = from_domain(answers.from_address)
    username = (
        f"username = {_toml(answers.smtp_username)}"
        if answers.smtp_username
        else '# username = "news@example.org"'
    )
    lines = [
        "# A production config written by `publisher init`. Check it with `publisher doctor`",
        "# before the first send; every setting, its default and its environment variable:",
        "# docs/configuration.md. Relative paths are relative to this file's folder.",
        "# Secrets stay out of this file: the SMTP password in PUBLISHER_SMTP_PASSWORD, the",
        "# link-signing key in secret_key_file (or PUBLISHER_SECRET_KEY).",
        "",
        f"database_url = {_toml(answers.database_url)}",
        'inbox = "inbox"',
        'output_dir = "public"',
        'data_dir = "data"           # inbound mail that matched nothing, the SQLite database',
        "# no seeds_dir: an empty inbox stays empty (the demo config publishes five samples)",
        "# signs confirm, unsubscribe and preference links; written by init, mode 0600.",
        "# Replacing it breaks every such link already mailed",
        f"secret_key_file = {_toml(SECRET_KEY_NAME)}",
        f"base_url = {_toml(answers.base_url)}",
        f"timezone = {_toml(answers.timezone)}  # article dates and the digest schedule",
        "",
        "[site]",
        f"title = {_toml(answers.title)}",
        'language = "en"',
        "",
        "[smtp]",
        f"host = {_toml(answers.smtp_host)}",
        f"port = {answers.smtp_port}",
        f"tls = {_toml(answers.smtp_tls.value)}",
        f"from_address = {_toml(answers.from_address)}",
        f"{username}  # the password: PUBLISHER_SMTP_PASSWORD",
        '# VERP: route this address to `publisher inbound` (README, "Mail that comes back")',
        f"# bounce_address = {_toml('bounces@' + domain)}",
        "",
        "[server]",
        '# `publisher run` listens here, behind nginx (README, "Going to production")',
        'host = "127.0.0.1"',
        "port = 8080",
        'forwarded_allow_ips = "127.0.0.1"  # believe X-Forwarded-For from nginx only',
        "",
        "[digest]",
        f"list_id = {_toml(answers.list_id)}",
        "",
    ]
    if answers.dkim_selector:
        mark = "" if dkim_wired else "# "
        lines += [
            "# DKIM: sign with dkim.key (mode 0600); publish the TXT record init printed",
            f"{mark}[dkim]",
            f"{mark}selector = {_toml(answers.dkim_selector)}",
            f"{mark}domain = {_toml(domain)}",
            f"{mark}private_key_file = {_toml(DKIM_KEY_NAME)}",
            "",
        ]
    return "\n".join(lines)


def dns_records(
    answers: InitAnswers, key_kind: str = "rsa", public: bytes | None = None
) -> tuple[DnsRecord, ...]:
    """SPF, DKIM (when a key was made) and DMARC for the From domain: what doctor checks."""
    domain = from_domain(answers.from_address)
    relay = answers.smtp_host
    if is_loopback_host(relay):  # an MTA on this host sends: the site's host name
        relay = urlsplit(answers.base_url).hostname or domain
    if re.fullmatch(r"[0-9.]+", relay):
        sender = f"ip4:{relay}"
    elif ":" in relay:
        sender = f"ip6:{relay.strip('[]')}"
    else:
        sender = f"a:{relay}"
    records = [
        DnsRecord(
            domain,
            "TXT",
            f"v=spf1 {sender} ~all",
            "SPF: who may send as this domain (a provider's relay: its include: instead)",
        )
    ]
    if answers.dkim_selector and public is not None:
        records.append(
            DnsRecord(
                f"{answers.dkim_selector}._domainkey.{domain}",
                "TXT",
                f"v=DKIM1; k={key_kind}; p={base64.b64encode(public).decode('ascii')}",
                "DKIM: the public half of dkim.key",
            )
        )
    records.append(
        DnsRecord(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=none; rua=mailto:postmaster@{domain}",
            "DMARC: start with p=none, move to p=quarantine once the reports look right",
        )
    )
    return tuple(records)
