"""One inbound message -> a typed event: a bounce, a complaint, an unsubscribe request, a
notice that needs no action, or not ours (with the reason). Pure core: bytes in, an event
out; no files, sockets, database or clock.

What it reads:
- RFC 3464 DSNs (`multipart/report; report-type=delivery-status`): per recipient, Action
  and Status (RFC 3463) and Final-/Original-Recipient. Postfix, Exim (4.x with DSN),
  Gmail and Exchange Online all send this shape.
- Plain-text bounces of MTAs that send no DSN (classic Exim, qmail, Yahoo): the failed
  address and the SMTP reply read from the text.
- RFC 5965 ARF feedback reports (`report-type=feedback-report`). Recipients are often
  redacted (RFC 6590), so the report is matched by our signed tokens in what it returns:
  the VERP address (Original-Mail-From, Return-Path) or the List-Unsubscribe token.
- A mail to the List-Unsubscribe `mailto:` address with its signed token in the subject
  or the body.

A bounce carrying a VERP token is mapped by the token alone (a forwarded or mangled
recipient address cannot mislead it); a token that does not verify makes the message not
ours, and so does a bounce without a token once VERP is on (`bounce_address` set): the
address a report names is believed only where no token can be expected. Everything is
hostile: the message is size-bounded, its parts counted, its fields
clipped, and any parse failure is "not ours" with the reason, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum

from publisher.tokens import UNSUBSCRIBE, Tokens

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EventKind",
    "InboundEvent",
    "Mailboxes",
    "Target",
    "classify",
]

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_PARTS = 200  # MIME parts looked at in one message
MAX_RECIPIENTS = 100  # per-recipient blocks read from one DSN
DETAIL_CHARS = 300  # a diagnostic kept for the consent record
SCAN_CHARS = 256 * 1024  # text searched for tokens and plain-text bounce lines
MAX_TOKENS = 50  # token-like strings checked per message (each costs an HMAC)


class EventKind(StrEnum):
    """What an inbound message is."""

    BOUNCE = "bounce"  # a delivery failed; each target says hard or soft
    COMPLAINT = "complaint"  # the recipient marked a digest as spam (ARF abuse/fraud)
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe mailto address
    NOTICE = "notice"  # ours, nothing to do: a delay warning, a "delivered" report, not-spam
    NOT_OURS = "not_ours"  # kept for a person to look at, with the reason


@dataclass(frozen=True, slots=True)
class Target:
    """Whom an event is about: a subscriber named by a verified token, or an address the
    report names (only when no token was present), with the status for a bounce."""

    subscriber_id: int | None = None
    email: str | None = None  # the address to act on: a token's, or a report's without one
    reported: str | None = None  # the address the report itself names (may be forwarded)
    hard: bool = False
    status: str = ""  # RFC 3463 code, e.g. 5.1.1
    detail: str = ""  # the diagnostic, clipped


@dataclass(frozen=True, slots=True)
class InboundEvent:
    kind: EventKind
    format: str  # dsn, arf, mailto, text-bounce, or unknown
    targets: tuple[Target, ...] = ()
    reason: str = ""  # for NOTICE and NOT_OURS: why; else a one-line summary


@dataclass(frozen=True, slots=True)
class Mailboxes:
    """Our own addresses: where bounces (VERP) and mailto unsubscribes arrive."""

    bounce_address: str | None = None  # e.g. bounces@example.org
    unsubscribe_address: str | None = None  # e.g. unsubscribe@example.org
    unsubscribe_max_age: int = 400 * 24 * 3600  # seconds an unsubscribe token stays valid


def classify(
    data: bytes,
    *,
    tokens: Tokens,
    mailboxes: Mailboxes,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> InboundEvent:
    """The event one RFC 5322 message stands for; never raises on hostile input."""
    if len(data) > max_bytes:
        return _not_ours(f"message is {len(data)} bytes, over the {max_bytes}-byte limit")
    if not data.strip():
        return _not_ours("empty message")
    try:
        message = message_from_bytes(data, policy=policy.compat32)
        return _classify(message, data, tokens, mailboxes)
    except (RecursionError, MemoryError):
        return _not_ours("message nests too deep to read")
    except Exception as exc:  # hostile input: any parser failure is a reason, not a crash
        return _not_ours(f"message cannot be parsed: {type(exc).__name__}")


def _not_ours(reason: str, format: str = "unknown") -> InboundEvent:
    return InboundEvent(EventKind.NOT_OURS, format, reason=_clip(reason))


def _classify(message: Message, data: bytes, tokens: Tokens, boxes: Mailboxes) -> InboundEvent:
    text = data[:SCAN_CHARS].decode("utf-8", "replace")
    report_type = _report_type(message)
    if report_type == "delivery-status":
        return _dsn(message, text, tokens, boxes)
    if report_type == "feedback-report":
        return _arf(message, text, tokens, boxes)
    if _looks_like_bounce(message):
        return _text_bounce(message, tokens, boxes)
    if boxes.unsubscribe_address and _addressed_to(message, boxes.unsubscribe_address):
        return _mailto(message, tokens, boxes)
    if _looks_auto_submitted(message):
        return _not_ours("an automatic reply (Auto-Submitted), not a bounce or complaint")
    return _not_ours("not a bounce, complaint or unsubscribe request")


# -- tokens ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verp:
    found: bool  # a token-like local part of our bounce address was present
    target: Target | None  # the verified one


def _verp(text: str, tokens: Tokens, boxes: Mailboxes) -> _Verp:
    """Our VERP address anywhere in the text (envelope headers, the DSN's fields, the
    returned headers): the first one that verifies."""
    if not boxes.bounce_address:
        return _Verp(False, None)
    local, _, domain = boxes.bounce_address.rpartition("@")
    pattern = re.compile(
        re.escape(local) + r"\+([0-9A-Za-z.]{1,60})@" + re.escape(domain), re.IGNORECASE
    )
    found = False
    for count, match in enumerate(pattern.finditer(text)):
        if count >= MAX_TOKENS:
            break
        found = True
        claim = tokens.check_bounce(match[1])
        if claim is not None:
            return _Verp(True, Target(subscriber_id=claim.subscriber_id))
    return _Verp(found, None)


# an itsdangerous URL-safe token: payload.timestamp.signature
_UNSUBSCRIBE_TOKEN = re.compile(r"[A-Za-z0-9_-]{2,200}\.[A-Za-z0-9_-]{4,12}\.[A-Za-z0-9_-]{20,90}")


def _unsubscribe_claim(text: str, tokens: Tokens, boxes: Mailboxes) -> Target | None:
    for count, match in enumerate(_UNSUBSCRIBE_TOKEN.finditer(text)):
        if count >= MAX_TOKENS:
            break
        claim = tokens.check(UNSUBSCRIBE, match[0], boxes.unsubscribe_max_age)
        if claim is not None:
            return Target(subscriber_id=claim.subscriber_id, email=claim.email)
    return None


# -- RFC 3464 delivery status notifications -------------------------------------------


def _report_type(message: Message) -> str | None:
    if message.get_content_type() != "multipart/report":
        return None
    value = message.get_param("report-type")
    return value.strip().lower() if isinstance(value, str) else None


def _parts(message: Message) -> Iterator[Message]:
    for count, part in enumerate(message.walk()):
        if count >= MAX_PARTS:
            return
        yield part


def _status_blocks(part: Message) -> list[Message]:
    """The field blocks of a message/delivery-status part: the per-message one first."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        blocks = [p for p in payload if isinstance(p, Message)]
        if len(blocks) == len(payload):
            return blocks[: MAX_RECIPIENTS + 1]
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        raw = str(payload).encode("utf-8", "replace") if isinstance(payload, str) else b""
    body = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    texts = [b for b in re.split(r"\n[ \t]*\n", body) if b.strip()]
    parser = HeaderParser(policy=policy.compat32)
    return [parser.parsestr(text.strip("\n") + "\n") for text in texts[: MAX_RECIPIENTS + 1]]


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _address_field(value: str) -> str | None:
    """`rfc822; ann@example.org` -> the address (other address types: None)."""
    kind, _, address = value.partition(";")
    if not address:
        address, kind = kind, "rfc822"
    if kind.strip().lower() not in ("rfc822", "utf-8"):
        return None
    address = parseaddr(address.strip())[1] or address.strip().strip("<>")
    return address.lower() if "@" in address else None


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"\b([245])\d\d[ :-]")


def _hard(status: str) -> bool:
    """Permanent and about the address (RFC 3463 class 5 with subject 0 other, 1 address
    or 2 mailbox, but 5.2.2 mailbox full). Class-5 codes about the message, routing or
    policy (5.3-5.7: too large, DMARC, content block) say nothing of the address and
    count as soft, so our own misconfiguration cannot suppress a whole list."""
    match = _STATUS.search(status)
    if match is None or match[1] != "5":
        return False
    return match[2] in ("0", "1", "2") and f"{match[2]}.{match[3]}" != "2.2"


def _status_of(status: str, diagnostic: str) -> str:
    """The RFC 3463 code: the Status field, else one in the diagnostic, else from the
    SMTP reply code (5xx -> 5.0.0, 4xx -> 4.0.0)."""
    for source in (status, diagnostic):
        match = _STATUS.search(source)
        if match is not None:
            return match[0]
    code = _SMTP_CODE.search(diagnostic + " ")
    return f"{code[1]}.0.0" if code is not None else ""


def _dsn(message: Message, text: str, tokens: Tokens, boxes: Mailboxes) -> InboundEvent:
    blocks: list[Message] = []
    for part in _parts(message):
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            blocks.extend(_status_blocks(part)[1:])  # the first block is per message
    recipients = [b for b in blocks if _field(b, "Final-Recipient") or _field(b, "Action")]
    if not recipients:
        return _not_ours("a delivery-status report without recipient fields", "dsn")
    failed: list[Target] = []
    notices: list[str] = []
    for block in recipients[:MAX_RECIPIENTS]:
        action = _field(block, "Action").lower()
        diagnostic = _field(block, "Diagnostic-Code")
        status = _status_of(_field(block, "Status"), diagnostic)
        email = _address_field(_field(block, "Original-Recipient")) or _address_field(
            _field(block, "Final-Recipient")
        )
        if action != "failed" and not (not action and status.startswith("5")):
            notices.append(action or "no action")
            continue
        failed.append(
            Target(
                email=email,
                reported=email,
                hard=_hard(status),
                status=status,
                detail=_clip(" ".join(x for x in (status, diagnostic) if x)),
            )
        )
    return _bounce_event("dsn", failed, notices, text, tokens, boxes)


def _bounce_event(
    format: str,
    failed: list[Target],
    notices: list[str],
    text: str,
    tokens: Tokens,
    boxes: Mailboxes,
) -> InboundEvent:
    verp = _verp(text, tokens, boxes)
    if verp.found and verp.target is None:
        return _not_ours("the bounce token does not verify (forged or altered)", format)
    if not failed:
        return InboundEvent(
            EventKind.NOTICE, format, reason=_clip("delivery report: " + ", ".join(notices))
        )
    if verp.target is not None:
        # one envelope recipient per VERP address: the worst status speaks for it
        worst = max(failed, key=lambda t: (t.hard, t.status.startswith("5")))
        target = Target(
            subscriber_id=verp.target.subscriber_id,
            reported=worst.reported,
            hard=worst.hard,
            status=worst.status,
            detail=worst.detail,
        )
        return InboundEvent(EventKind.BOUNCE, format, (target,), _summary(target))
    if boxes.bounce_address:
        # with VERP on, every digest's bounce carries a token; one without could name
        # anyone, so it is kept for a person rather than believed
        return _not_ours(
            "a bounce without our bounce token (forged, or for a mail not sent with VERP)",
            format,
        )
    named = tuple(t for t in failed if t.email)
    if not named:
        return _not_ours("a bounce naming no recipient and carrying no bounce token", format)
    return InboundEvent(EventKind.BOUNCE, format, named, _summary(named[0]))


def _summary(target: Target) -> str:
    kind = "hard" if target.hard else "soft"
    return _clip(f"{kind} bounce {target.status or '(no status)'}")


# -- plain-text bounces (no DSN) ------------------------------------------------------

_BOUNCE_SENDERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer_daemon)@", re.I)
_BOUNCE_SUBJECTS = re.compile(
    r"undeliver|returned mail|mail delivery (failed|failure)|delivery (status notification|"
    r"failure)|failure notice|delivery has failed|could not be delivered",
    re.I,
)
_DELAY = re.compile(r"has not yet been delivered|delayed|will continue trying|still trying", re.I)
_PERMANENT = re.compile(
    r"permanent error|permanent fatal|I've given up|unable to deliver your message|"
    r"could not be delivered|delivery to the following recipient.{0,20} failed permanently",
    re.I,
)
# "  ann@example.org" (Exim) or "<ann@example.org>:" (qmail, Yahoo) on a line of its own
_FAILED_LINE = re.compile(r"^[ \t]*<?([^\s<>@:]{1,64}@[A-Za-z0-9.-]{1,253})>?:?[ \t]*$", re.M)


# where the returned copy of our message starts (its addresses are not the failed ones)
_COPY_BELOW = re.compile(
    r"\n-{2,} ?(This is a copy of the message|Below this line is a copy|Original message)",
    re.I,
)


def _looks_like_bounce(message: Message) -> bool:
    sender = parseaddr(str(message.get("From", "")))[1]
    return bool(_BOUNCE_SENDERS.match(sender)) and bool(
        _BOUNCE_SUBJECTS.search(str(message.get("Subject", "")))
    )


def _plain_text(message: Message) -> str:
    texts: list[str] = []
    size = 0
    for part in _parts(message):
        if part.get_content_type() != "text/plain" or part.is_multipart():
            continue
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                chunk = raw.decode(charset, "replace")
            except LookupError:
                chunk = raw.decode("utf-8", "replace")
            texts.append(chunk[: SCAN_CHARS - size])
            size += len(texts[-1])
            if size >= SCAN_CHARS:
                break
    return "\n".join(texts).replace("\r\n", "\n")


def _text_bounce(message: Message, tokens: Tokens, boxes: Mailboxes) -> InboundEvent:
    body = _plain_text(message)
    whole = _headers_text(message) + "\n" + body
    first = _COPY_BELOW.split(body, maxsplit=1)[0]
    if _DELAY.search(first) and not _PERMANENT.search(first):
        return _bounce_event("text-bounce", [], ["delay warning"], whole, tokens, boxes)
    permanent = bool(_PERMANENT.search(first))
    failed: list[Target] = []
    for match in _FAILED_LINE.finditer(first):
        email = match[1].lower()
        if boxes.bounce_address and email.endswith("@" + boxes.bounce_address.split("@")[-1]):
            continue  # our own address quoted back
        after = first[match.end() : match.end() + 600]
        next_address = _FAILED_LINE.search(after)
        reply = " ".join((after[: next_address.start()] if next_address else after).split())
        status = _status_of("", reply) or ("5.0.0" if permanent else "4.0.0")
        failed.append(
            Target(
                email=email, reported=email, hard=_hard(status), status=status, detail=_clip(reply)
            )
        )
        if len(failed) >= MAX_RECIPIENTS:
            break
    if not failed:
        verp = _verp(whole, tokens, boxes)
        if verp.target is None:
            return _not_ours("a bounce whose failed address cannot be read", "text-bounce")
        status = "5.0.0" if permanent else "4.0.0"
        failed.append(Target(hard=False, status=status, detail="failed address not readable"))
    return _bounce_event("text-bounce", failed, [], whole, tokens, boxes)


def _headers_text(message: Message) -> str:
    return "\n".join(f"{k}: {v}" for k, v in message.items())


# -- RFC 5965 feedback reports ----------------------------------------------------------

# RFC 5965 types that are a person saying "spam"; not-spam, auth-failure, virus and
# other are reports about the mail, not about the subscription
_COMPLAINTS = ("abuse", "fraud")


def _arf(message: Message, text: str, tokens: Tokens, boxes: Mailboxes) -> InboundEvent:
    feedback: list[Message] = []
    for part in _parts(message):
        if part.get_content_type() == "message/feedback-report":
            feedback.extend(_status_blocks(part)[:1])
    if not feedback:
        return _not_ours("a feedback report without a message/feedback-report part", "arf")
    fields = feedback[0]
    kind = _field(fields, "Feedback-Type").lower()
    if kind not in _COMPLAINTS:
        return InboundEvent(EventKind.NOTICE, "arf", reason=_clip(f"feedback type {kind!r}"))
    verp = _verp(text, tokens, boxes)
    if verp.found and verp.target is None:
        return _not_ours("the bounce token in the report does not verify (forged)", "arf")
    target = verp.target or _unsubscribe_claim(text, tokens, boxes)
    if target is None:
        return _not_ours(
            "a complaint that names none of our signed tokens (recipient redacted?)", "arf"
        )
    detail = _clip(
        " ".join(
            x
            for x in (
                f"feedback {kind}",
                _field(fields, "User-Agent"),
                _field(fields, "Reported-Domain"),
            )
            if x
        )
    )
    found = Target(subscriber_id=target.subscriber_id, email=target.email, detail=detail)
    return InboundEvent(EventKind.COMPLAINT, "arf", (found,), _clip(f"complaint ({kind})"))


# -- mailto unsubscribe ---------------------------------------------------------------

_RECIPIENT_HEADERS = ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")


def _addressed_to(message: Message, address: str) -> bool:
    wanted = address.lower()
    values = [str(v) for name in _RECIPIENT_HEADERS for v in message.get_all(name, [])]
    return any(a.lower() == wanted for _, a in getaddresses(values))


def _looks_auto_submitted(message: Message) -> bool:
    value = str(message.get("Auto-Submitted", "no")).strip().lower()
    return value not in ("", "no")


def _mailto(message: Message, tokens: Tokens, boxes: Mailboxes) -> InboundEvent:
    if _looks_auto_submitted(message):
        return _not_ours("an automatic reply sent to the unsubscribe address", "mailto")
    subject = " ".join(str(message.get("Subject", "")).split())
    target = _unsubscribe_claim(subject, tokens, boxes) or _unsubscribe_claim(
        _plain_text(message), tokens, boxes
    )
    if target is None:
        return _not_ours("an unsubscribe mail without a valid token", "mailto")
    detail = _clip(f"mailto from {parseaddr(str(message.get('From', '')))[1] or 'unknown'}")
    found = Target(subscriber_id=target.subscriber_id, email=target.email, detail=detail)
    return InboundEvent(EventKind.UNSUBSCRIBE, "mailto", (found,), "unsubscribe request")


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _clip(text: str) -> str:
    """One line, control characters removed, at most DETAIL_CHARS: safe for logs."""
    line = " ".join(_UNSAFE.sub(" ", text).split())
    return line if len(line) <= DETAIL_CHARS else line[: DETAIL_CHARS - 1] + "…"
