"""`publisher doctor`: what mailbox providers check before they accept bulk mail.

DNS (SPF, DKIM, DMARC and its alignment, the relay's PTR), the relay's TLS, the values a
copied sample config leaves behind (localhost, example.*, seeds), the secret key, and the
last 30 days' complaint and bounce rates. Each check is pass / warn / fail with the fix;
`publisher send` refuses a real send while one fails (cli.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from publisher.config import (
    Settings,
    SmtpSettings,
    TlsMode,
    ehlo_name,
    is_loopback_host,
    relay_chain,
)
from publisher.errors import ConfigError, MissingDatabase
from publisher.links import UNSUBSCRIBE_ROUTE
from publisher.mailer import probe_relay
from publisher.resolver import LookupFailed, Resolver
from publisher.signing import DkimKey, from_domain, load_key, public_record
from publisher.status import COMPLAINT_RATE_LIMIT, COMPLAINT_RATE_WARN, mail_health
from publisher.store import Store
from publisher.webprobe import post_status

__all__ = ["FAIL", "PASS", "WARN", "Check", "exempt_from_doctor", "run_checks"]

PASS, WARN, FAIL = "pass", "warn", "fail"
# Amazon SES: a bounce rate of 5 % puts an account under review, 10 % pauses it
BOUNCE_RATE_WARN = 0.05
BOUNCE_RATE_LIMIT = 0.10
# RFC 7208 4.6.4: at most 10 DNS-querying mechanisms per SPF evaluation
_SPF_LOOKUPS = 10
_DEMO = re.compile(r"(^|\.)(localhost|example\.[a-z]+|example)$")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, warn or fail
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def is_demo_host(host: str) -> bool:
    """localhost, a loopback address, or an example.* name: never a production value."""
    name = host.strip().strip("[]").lower().rstrip(".")
    return is_loopback_host(name) or bool(_DEMO.search(name))


def exempt_from_doctor(settings: Settings) -> bool:
    """Loopback relays (every one of them) sending for a demo domain (the --smtp-debug
    sink, a local test sink): no mail leaves this machine, so `send` does not ask doctor
    first."""
    local = all(is_loopback_host(relay.host) for relay in relay_chain(settings.smtp))
    return local and is_demo_host(from_domain(settings))


def run_checks(
    settings: Settings,
    resolver: Resolver,
    open_store: Callable[[], Store] | None = None,
    *,
    probe: bool = True,
) -> list[Check]:
    """Every check, in the order the operator fixes them."""
    checks: list[Check] = []
    checks += _placeholders(settings)
    chain = relay_chain(settings.smtp)  # [smtp], then each [[smtp.relays]]
    found = [_relay_addresses(smtp, index, resolver, checks) for index, smtp in enumerate(chain)]
    relay = list(dict.fromkeys(address for addresses in found for address in addresses))
    domains = [from_domain(settings)]
    bounce = settings.smtp.bounce_address
    if bounce:
        rp_domain = bounce.rpartition("@")[2].lower()
        if rp_domain not in domains:
            domains.append(rp_domain)
    for domain in domains:
        checks.append(_guard(f"spf {domain}", partial(_spf, domain, resolver, relay)))
    checks += _dkim(settings, resolver)
    checks += _dmarc(settings, resolver, domains[-1])
    for index, smtp in enumerate(chain):
        name = _named("ptr", index, smtp)
        checks.append(_guard(name, partial(_ptr, smtp, index, resolver, found[index])))
    if probe:
        checks += [_tls(smtp, index) for index, smtp in enumerate(chain)]
    checks.append(_https(settings))
    if probe:
        checks.append(_guard("one-click", partial(_one_click, settings, resolver)))
    checks.append(_secret(settings))
    checks.append(_postal_address(settings))
    if open_store is not None:
        checks += _rates(open_store)
    return checks


def _guard(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except LookupFailed as exc:
        return Check(name, FAIL, exc.message, "check [doctor] nameservers, or the network")


# -- the values a sample config leaves ---------------------------------------------------


def _placeholders(settings: Settings) -> list[Check]:
    found = []
    sender = from_domain(settings)
    values = {
        "smtp.from_address": sender,
        "base_url": settings.host,
        "digest.list_id": settings.digest.list_id,
        "Message-ID host (base_url)": settings.host,
    }
    for name, value in values.items():
        if is_demo_host(value) or not value:
            found.append(f"{name} is {value or 'empty'!r}")
    checks = []
    if found:
        checks.append(
            Check(
                "placeholders",
                FAIL,
                "; ".join(found),
                "set smtp.from_address, base_url and digest.list_id to your own domain",
            )
        )
    else:
        checks.append(Check("placeholders", PASS, "no localhost or example.* values"))
    if settings.seeds_dir is not None:
        checks.append(
            Check(
                "seeds",
                FAIL,
                f"seeds_dir is set ({settings.seeds_dir}): the demo articles get published",
                "remove seeds_dir from the config",
            )
        )
    else:
        checks.append(Check("seeds", PASS, "seeds_dir is off"))
    return checks


# -- SPF ----------------------------------------------------------------------------------


def _named(check: str, index: int, smtp: SmtpSettings) -> str:
    """A relay check's name: "ptr" for [smtp], "ptr host:port" for each [[smtp.relays]]."""
    return check if index == 0 else f"{check} {smtp.name}"


def _setting(index: int) -> str:
    """Where relay `index` is configured, for the fix lines."""
    return "smtp" if index == 0 else f"smtp.relays[{index}]"


def _relay_addresses(
    smtp: SmtpSettings, index: int, resolver: Resolver, checks: list[Check]
) -> list[str]:
    """The relay's IP addresses; empty for a relay on this machine or one DNS does not know."""
    host = smtp.host.strip("[]")
    if is_loopback_host(host):
        return []
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return resolver.addresses(host)
    except LookupFailed as exc:
        checks.append(Check(_named("relay address", index, smtp), WARN, exc.message))
        return []


def _spf_records(domain: str, resolver: Resolver) -> list[str]:
    return [t for t in resolver.txt(domain) if t.lower().split(" ", 1)[0] == "v=spf1"]


def _spf(domain: str, resolver: Resolver, relay: list[str]) -> Check:
    name = f"spf {domain}"
    mechanism = f"ip4:{relay[0]}" if relay else "include:<your relay's SPF domain>"
    records = _spf_records(domain, resolver)
    if not records:
        return Check(
            name,
            FAIL,
            f"no SPF record at {domain}",
            f"add TXT `v=spf1 {mechanism} ~all` at {domain}",
        )
    if len(records) > 1:
        return Check(
            name,
            FAIL,
            f"{len(records)} SPF records at {domain}: receivers treat that as an error",
            f"merge them into one TXT `v=spf1 … ~all` at {domain}",
        )
    [record] = records
    terms = record.split()[1:]
    if any(t.lower() in ("+all", "all", "?all") for t in terms):
        return Check(
            name,
            FAIL,
            f"SPF at {domain} ends in {next(t for t in terms if t.lower().endswith('all'))}: "
            "anyone may send as this domain",
            f"end the TXT record at {domain} with ~all or -all",
        )
    if relay:
        missing = [a for a in relay if not _spf_allows(domain, a, resolver, [0])]
        if missing:
            return Check(
                name,
                WARN,
                f"SPF at {domain} does not list the relay's address {missing[0]}",
                f"add ip4:{missing[0]} (or your relay's include:) to the TXT record at {domain}",
            )
    return Check(name, PASS, f"one SPF record at {domain}: {record}")


def _spf_allows(domain: str, address: str, resolver: Resolver, lookups: list[int]) -> bool:
    """Whether the SPF record of `domain` names `address` through ip4/ip6/a/include/redirect."""
    ip = ipaddress.ip_address(address)
    records = _spf_records(domain, resolver)
    if len(records) != 1:
        return False
    for term in records[0].split()[1:]:
        kind, _, value = term.lstrip("+").partition(":")
        kind, _, redirect = kind.partition("=")
        kind = kind.lower()
        if kind in ("ip4", "ip6"):
            try:
                if ip in ipaddress.ip_network(value, strict=False):
                    return True
            except ValueError:
                continue
        elif kind in ("include", "a") or (kind == "redirect" and redirect):
            lookups[0] += 1
            if lookups[0] > _SPF_LOOKUPS:
                return False
            target = redirect or value or domain
            if kind == "a":
                if address in resolver.addresses(target.split("/")[0]):
                    return True
            elif _spf_allows(target, address, resolver, lookups):
                return True
    return False


# -- DKIM and DMARC -----------------------------------------------------------------------


def _keys(settings: Settings) -> Iterator[DkimKey | Check]:
    dkim = settings.dkim
    for key, selector, origin in (
        (dkim.private_key, dkim.selector, "dkim.private_key"),
        (dkim.ed25519_key, dkim.ed25519_name, "dkim.ed25519_key"),
    ):
        if not key:
            continue
        try:
            yield load_key(key, selector, origin)
        except ConfigError as exc:
            yield Check("dkim key", FAIL, exc.message, exc.hint or "")


def _dkim(settings: Settings, resolver: Resolver) -> list[Check]:
    domain = settings.dkim.domain or from_domain(settings)
    found = list(_keys(settings))
    if not found:
        return [
            Check(
                "dkim",
                FAIL,
                "mail goes out unsigned: no DKIM key is configured",
                "set [dkim] selector and private_key_file (`openssl genrsa -out dkim.pem "
                "2048`), then publish the record doctor prints",
            )
        ]
    checks = []
    for key in found:
        if isinstance(key, Check):
            checks.append(key)
            continue
        where = f"{key.selector.decode()}._domainkey.{domain}"
        wanted = public_record(key)
        checks.append(_guard(f"dkim {where}", partial(_dkim_record, key, where, wanted, resolver)))
    return checks


def _dkim_record(key: DkimKey, where: str, wanted: str, resolver: Resolver) -> Check:
    name = f"dkim {where}"
    records = [t for t in resolver.txt(where) if "p=" in t]
    if not records:
        return Check(name, FAIL, f"no DKIM record at {where}", f"add TXT `{wanted}` at {where}")
    published = [_tag(r, "p").replace(" ", "") for r in records]
    if key.public.decode("ascii") not in published:
        return Check(
            name,
            FAIL,
            f"the DKIM record at {where} does not match our private key",
            f"replace it with TXT `{wanted}` at {where}",
        )
    return Check(name, PASS, f"the DKIM record at {where} matches our key")


def _tag(record: str, tag: str) -> str:
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == tag:
            return value.strip()
    return ""


def _aligned(one: str, other: str, strict: bool, resolver: Resolver) -> bool:
    """RFC 7489 3.1: strict is the same name, relaxed the same organizational domain."""
    if strict:
        return one == other
    return resolver.organizational(one) == resolver.organizational(other)


def _dmarc(settings: Settings, resolver: Resolver, return_path: str) -> list[Check]:
    sender = from_domain(settings)
    try:
        where = f"_dmarc.{sender}"
        records = [t for t in resolver.txt(where) if t.lower().startswith("v=dmarc1")]
        organizational = resolver.organizational(sender)
        if not records and organizational != sender:
            where = f"_dmarc.{organizational}"
            records = [t for t in resolver.txt(where) if t.lower().startswith("v=dmarc1")]
    except LookupFailed as exc:
        return [Check("dmarc", FAIL, exc.message, "check [doctor] nameservers, or the network")]
    if not records:
        return [
            Check(
                "dmarc",
                FAIL,
                f"no DMARC record at _dmarc.{sender}",
                f"add TXT `v=DMARC1; p=none; rua=mailto:dmarc@{sender}` at _dmarc.{sender}",
            )
        ]
    if len(records) > 1:
        return [
            Check(
                "dmarc",
                FAIL,
                f"{len(records)} DMARC records at {where}",
                f"keep one TXT `v=DMARC1; …` at {where}",
            )
        ]
    [record] = records
    policy = _tag(record, "p").lower()
    checks = []
    if policy in ("quarantine", "reject"):
        checks.append(Check("dmarc", PASS, f"DMARC at {where}: p={policy}"))
    elif policy == "none":
        checks.append(
            Check(
                "dmarc",
                WARN,
                f"DMARC at {where} has p=none: it only reports",
                f"once the reports are clean, set p=quarantine in the TXT record at {where}",
            )
        )
    else:
        checks.append(
            Check("dmarc", FAIL, f"DMARC at {where} has no valid p= tag", f"add p=none to {where}")
        )
    dkim_domain = settings.dkim.domain or sender
    strict_dkim = _tag(record, "adkim").lower() == "s"
    strict_spf = _tag(record, "aspf").lower() == "s"
    if not _aligned(sender, dkim_domain, strict_dkim, resolver):
        checks.append(
            Check(
                "alignment dkim",
                FAIL,
                f"From domain {sender} is not aligned with DKIM d={dkim_domain}",
                f'set dkim.domain = "{sender}" (and publish its key there), '
                f"or send From an address at {dkim_domain}",
            )
        )
    else:
        checks.append(Check("alignment dkim", PASS, f"From {sender} aligned with d={dkim_domain}"))
    if not _aligned(sender, return_path, strict_spf, resolver):
        checks.append(
            Check(
                "alignment return path",
                WARN,
                f"From domain {sender} is not aligned with the return path {return_path}: "
                "SPF cannot pass DMARC, only DKIM can",
                f"set smtp.bounce_address to an address at {sender} or a subdomain of it",
            )
        )
    else:
        checks.append(
            Check("alignment return path", PASS, f"From {sender} aligned with {return_path}")
        )
    return checks


# -- the relay ------------------------------------------------------------------------------


def _ptr(smtp: SmtpSettings, index: int, resolver: Resolver, relay: list[str]) -> Check:
    """Receivers score a sender whose address's PTR name differs from its EHLO name."""
    name, where = _named("ptr", index, smtp), _setting(index)
    if not relay:
        return Check(name, PASS, f"relay {smtp.host} is on this machine: no PTR to check")
    try:
        helo = ehlo_name(smtp)
    except ConfigError as exc:
        return Check(name, FAIL, exc.message, (exc.hint or "").replace("smtp.", f"{where}.", 1))
    names = resolver.ptr(relay[0])
    if not names:
        return Check(
            name,
            WARN,
            f"the relay's address {relay[0]} has no PTR record",
            f"ask the relay's provider for a PTR record {relay[0]} -> {helo}",
        )
    if helo.lower() not in names:
        return Check(
            name,
            WARN,
            f"PTR of {relay[0]} is {names[0]}, EHLO says {helo}",
            f'set {where}.helo_name = "{names[0]}"',
        )
    return Check(name, PASS, f"PTR of {relay[0]} is {helo}, as EHLO says")


def _tls(smtp: SmtpSettings, index: int) -> Check:
    name, where = _named("tls", index, smtp), _setting(index)
    local = is_loopback_host(smtp.host)
    if smtp.tls is TlsMode.NONE:
        if local:
            return Check(name, PASS, f"relay {smtp.host} is on this machine: plain SMTP")
        return Check(
            name,
            FAIL,
            f"mail to {smtp.host} goes in plain text ({where}.tls = none)",
            f'set {where}.tls = "starttls" (port 587) or "tls" (port 465)',
        )
    if not smtp.verify_certificate:
        return Check(
            name,
            FAIL,
            f"the certificate of {smtp.host} is not verified",
            f"set {where}.verify_certificate = true ({where}.ca_file for a private CA)",
        )
    problem = asyncio.run(probe_relay(smtp))
    if problem is not None:
        return Check(
            name,
            FAIL,
            f"cannot open a verified {smtp.tls} session to {smtp.name}: {problem}",
            f"check {where}.host, {where}.port, {where}.tls and {where}.ca_file",
        )
    return Check(name, PASS, f"{smtp.tls} to {smtp.name} with a verified certificate")


def _https(settings: Settings) -> Check:
    parts = urlsplit(settings.base_url)
    if parts.scheme != "https":
        return Check(
            "https",
            FAIL,
            f"base_url {settings.base_url} is not https: providers want the one-click "
            "unsubscribe over https",
            "set base_url to the https:// address your reverse proxy serves",
        )
    return Check("https", PASS, f"base_url is https ({parts.hostname})")


# a bogus token: the route answers 400 without touching anyone; 200 is a preview token
_PROBE_TOKEN = "doctor-probe"


def _one_click(settings: Settings, resolver: Resolver) -> Check:
    """POST to the public unsubscribe route, as a mailbox provider does (RFC 8058)."""
    parts = urlsplit(settings.base_url)
    host = parts.hostname or ""
    if parts.scheme != "https" or is_loopback_host(host):
        return Check("one-click", WARN, "not checked: base_url is not a public https URL")
    if not resolver.addresses(host):
        return Check(
            "one-click",
            WARN,
            f"not checked: {host} has no address in DNS (offline, or not published yet)",
            f"add an A/AAAA record for {host}, then run doctor again",
        )
    url = settings.url(UNSUBSCRIBE_ROUTE.format(token=_PROBE_TOKEN))
    answer = post_status(url, settings.doctor.timeout_seconds)
    if isinstance(answer, str):
        return Check(
            "one-click",
            WARN,
            f"no answer from {url}: {answer}",
            "check the reverse proxy and the certificate of base_url",
        )
    if answer in (200, 400):
        return Check("one-click", PASS, f"the one-click unsubscribe POST answers ({answer})")
    return Check(
        "one-click",
        FAIL,
        f"POST {url} answers {answer}: providers cannot unsubscribe with one click",
        "pass POST /unsubscribe/… through the reverse proxy to `publisher serve`",
    )


def _secret(settings: Settings) -> Check:
    if not settings.secret_key:
        return Check(
            "secret key",
            FAIL,
            "no secret key: unsubscribe and confirm links cannot be signed",
            "set PUBLISHER_SECRET_KEY (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')",
        )
    return Check("secret key", PASS, "a secret key is set")


def _postal_address(settings: Settings) -> Check:
    address = settings.site.postal_address.strip()
    if not address:
        return Check(
            "postal address",
            WARN,
            "site.postal_address is empty: CAN-SPAM wants the sender's postal address in "
            "every commercial mail, and GDPR says who sends it",
            'set site.postal_address = "Street 1, 12345 City, Country" (every mail\'s footer)',
        )
    return Check("postal address", PASS, f"{address} (in every mail's footer)")


def _rates(open_store: Callable[[], Store]) -> list[Check]:
    try:
        store = open_store()
    except MissingDatabase:
        return [Check("rates", PASS, "nothing sent yet")]
    figures: dict[str, Any] = mail_health(store, datetime.now(UTC))["last_30_days"]
    sent = figures["sent"]
    if not sent:
        return [Check("rates", PASS, "nothing sent in the last 30 days")]
    complaints = figures["complaints"] / sent
    bounces = figures["hard_bounces"] / sent
    checks = []
    shown = f"{complaints * 100:.2f} % complaints of {sent} sent in 30 days"
    if complaints >= COMPLAINT_RATE_LIMIT:
        checks.append(
            Check("complaints", FAIL, f"{shown}: over Gmail's 0.3 % line", "send less, to fewer")
        )
    elif complaints >= COMPLAINT_RATE_WARN:
        checks.append(
            Check(
                "complaints",
                WARN,
                f"{shown}: over Gmail's 0.1 % line",
                "remove inactive subscribers; make unsubscribing easy",
            )
        )
    else:
        checks.append(Check("complaints", PASS, shown))
    shown = f"{bounces * 100:.2f} % hard bounces of {sent} sent in 30 days"
    if bounces >= BOUNCE_RATE_LIMIT:
        checks.append(Check("bounces", FAIL, f"{shown}: SES pauses at 10 %", "clean the list"))
    elif bounces >= BOUNCE_RATE_WARN:
        checks.append(Check("bounces", WARN, f"{shown}: SES reviews at 5 %", "clean the list"))
    else:
        checks.append(Check("bounces", PASS, shown))
    return checks
