"""Email messages from rendered templates: the digest and the confirmation mail. Pure core.

A digest is rendered and CSS-inlined ONCE per distinct content (`prepare_digest`): building
and serializing an `EmailMessage` costs milliseconds, which would cap sending near
200 messages/s. The common headers are serialized once by the stdlib (`email.policy.SMTP`,
CRLF); `personalize` then only writes what differs per recipient — To, Message-ID, the
unsubscribe links — and quoted-printable-encodes the two bodies (binascii, C speed); the
mailer prepends `Date` at hand-off (`date_header`).
`build_message` is the plain EmailMessage equivalent, used for one-off mails and to check
the fast path against the stdlib.
"""

from __future__ import annotations

import binascii
import hashlib
import html
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any

import css_inline
from email_validator import EmailNotValidError, validate_email

from publisher.config import Settings
from publisher.errors import PublisherError
from publisher.model import Article, Frequency
from publisher.render import render

__all__ = [
    "HTML_PART_BUDGET",
    "PLACEHOLDER",
    "PREFERENCES_PLACEHOLDER",
    "InvalidSubscription",
    "PreparedDigest",
    "build_message",
    "clip",
    "confirmation_message",
    "data_message",
    "date_header",
    "digest_message_id",
    "display_name",
    "envelope_sender",
    "mailbox",
    "normalize_email",
    "parse_frequency",
    "personalize",
    "preheader",
    "prepare_digest",
    "render_web_copy",
    "sender_address",
    "subject_line",
    "unsubscribe_address",
    "unsubscribe_mailto",
    "welcome_message",
]

# Stands in for the per-recipient unsubscribe URL while rendering once per content;
# plain letters so neither autoescape nor CSS inlining can alter it.
PLACEHOLDER = "https://unsubscribe.invalid/PUBLISHERUNSUBSCRIBEPLACEHOLDER"
# the same for the recipient's preference centre link
PREFERENCES_PLACEHOLDER = "https://preferences.invalid/PUBLISHERPREFERENCESPLACEHOLDER"

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
# @media rules (dark mode, narrow screens) cannot be inlined: they stay in a <style>
_INLINER = css_inline.CSSInliner(
    load_remote_stylesheets=False, keep_style_tags=False, keep_at_rules=True
)


class InvalidSubscription(PublisherError, ValueError):
    """A malformed address or frequency (from a form, a CSV row or the command line)."""


def normalize_email(address: str) -> str:
    """Validated and normalized (IDNA domain, lower case: unique case-insensitively)."""
    try:
        valid = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidSubscription(f"'{address}' is not a valid email address: {exc}") from exc
    return valid.normalized.lower()


def parse_frequency(value: str | None) -> Frequency:
    try:
        return Frequency((value or "weekly").strip().lower())
    except ValueError:
        raise InvalidSubscription(f"frequency must be weekly or daily, got '{value}'") from None


def display_name(name: str | None) -> str:
    """A name safe for a header: control characters (CR, LF, tabs...) become one space."""
    return " ".join(_CONTROL.sub(" ", name or "").split())


def mailbox(name: str | None, address: str) -> str:
    """`"Name" <address>` with the name quoted or RFC 2047-encoded; never injects a header."""
    return formataddr((display_name(name), address), charset="utf-8")


def sender_address(settings: Settings) -> str:
    """The bare From address (the SMTP envelope sender)."""
    return parseaddr(settings.smtp.from_address)[1] or f"news@{settings.host}"


def unsubscribe_address(settings: Settings) -> str | None:
    """The List-Unsubscribe mailto address (`digest.unsubscribe_mailto`), None when off."""
    configured = settings.digest.unsubscribe_mailto
    if configured == "off":
        return None
    if configured != "auto":
        return configured
    domain = sender_address(settings).rpartition("@")[2] or settings.host
    return f"unsubscribe@{domain}"


def unsubscribe_mailto(settings: Settings, token: str) -> str | None:
    """The List-Unsubscribe mailto URL for one token, None when the mailto is off."""
    address = unsubscribe_address(settings)
    if address is None:
        return None
    return f"mailto:{address}?subject=unsubscribe%20{token}"


def envelope_sender(settings: Settings, bounce_token: str | None) -> str:
    """The SMTP envelope sender (Return-Path) of a digest: the VERP address
    `<local>+<token>@<domain>` of `smtp.bounce_address` when one is set, else From."""
    bounce = settings.smtp.bounce_address
    if not bounce or bounce_token is None:
        return sender_address(settings)
    local, _, domain = bounce.rpartition("@")
    return f"{local}+{bounce_token}@{domain}"


def date_header(when: datetime) -> bytes:
    """A `Date:` header line (CRLF) for a message handed over at `when`."""
    return b"Date: " + format_datetime(when).encode("ascii") + b"\r\n"


def digest_message_id(run_id: int | str, subscriber_id: int, host: str) -> str:
    """Derived from (run, subscriber): a repeat of the same delivery carries the same id."""
    digest = hashlib.sha256(f"{run_id}:{subscriber_id}".encode()).hexdigest()[:12]
    return f"<digest.{run_id}.{subscriber_id}.{digest}@{host}>"


@dataclass(frozen=True, slots=True)
class PreparedDigest:
    """One rendered digest content: headers and bodies shared by many recipients."""

    subject: str
    count: int
    # common headers, CRLF-terminated, without To/Message-ID/List-Unsubscribe/Date
    head: bytes
    boundary: str
    # the text and HTML bodies (CRLF, PLACEHOLDER where the unsubscribe URL goes),
    # quoted-printable-encoded once except the lines holding the PLACEHOLDER
    text_qp: tuple[bytes | str, ...]
    html_qp: tuple[bytes | str, ...]
    render_seconds: float


# Gmail clips a message whose HTML passes ~102 KB, hiding what follows: the footer and its
# unsubscribe link. The shared HTML part, quoted-printable as sent, stays within this, with
# room for the per-recipient unsubscribe URL; items are dropped into "and N more" to fit.
HTML_PART_BUDGET = 90_000
# Bounds on what one item can weigh whatever an article holds (the summary is already
# trimmed at parse time; these hold for stored articles and templates of any age).
TITLE_CHARS = 200
SUMMARY_CHARS = 300
CATEGORY_CHARS = 80
CATEGORIES_CHARS = 300  # the footer's list of the subscriber's categories
LEAD_CHARS = 80  # the lead headline in the subject
PREHEADER_CHARS = 140  # what an inbox list shows after the subject
PREHEADER_HEADLINES = 3


def subject_line(
    settings: Settings, frequency: str, count: int, as_of: datetime, lead: str = ""
) -> str:
    """`digest.subject` filled in; {lead} is the lead headline, {more} " (+N more)"."""
    local = as_of.astimezone(settings.zone)
    return settings.digest.subject.format(
        site=settings.site.title,
        frequency=frequency,
        count=count,
        date=f"{local.day} {local:%b %Y}",
        lead=clip(display_name(lead), LEAD_CHARS),
        more=f" (+{count - 1} more)" if count > 1 else "",
    )


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when one is near, "…"
    marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    head, space, _ = cut.rpartition(" ")
    if space and len(head) >= limit // 2:
        cut = head
    return cut.rstrip(" ,;:") + "…"


def preheader(articles: Sequence[Article]) -> str:
    """The inbox preview line: the lead headlines, not the masthead's words."""
    titles = [display_name(a.title) for a in articles[:PREHEADER_HEADLINES]]
    return clip(" · ".join(t for t in titles if t), PREHEADER_CHARS)


def _fitted_names(names: Sequence[str], limit: int) -> list[str]:
    """As many of `names` as fit in about `limit` characters, "…" standing for the rest."""
    kept: list[str] = []
    used = 0
    for name in names:
        shown = clip(name, CATEGORY_CHARS)
        if kept and used + len(shown) > limit:
            return [*kept, "…"]
        kept.append(shown)
        used += len(shown) + 2
    return kept


def prepare_digest(
    environment: Any,
    settings: Settings,
    *,
    articles: Sequence[Article],
    frequency: str,
    categories: Sequence[str],
    as_of: datetime,
    article_url: Callable[[Article], str],
    corrected: Sequence[Article] = (),
    view_url: str = "",
) -> PreparedDigest:
    """Render text + HTML once, inline the CSS, serialize the shared headers.

    At most `digest.max_items` new articles are listed, and as many corrected ones; the
    rest of each is one link to the site. Fewer are listed when the HTML part would pass
    HTML_PART_BUDGET, so the footer with its unsubscribe link always arrives unclipped.
    `view_url` is the "View in browser" link (the web copy; none when empty).
    """
    started = time.perf_counter()
    zone = settings.zone
    lead = articles[0].title if articles else ""
    subject = subject_line(settings, frequency, len(articles), as_of, lead)
    items = [_item(a, article_url, zone) for a in articles[: settings.digest.max_items]]
    fixes = [
        {"title": clip(a.title, TITLE_CHARS), "url": article_url(a)}
        for a in corrected[: settings.digest.max_items]
    ]
    context = {
        "subject": subject,
        "count": len(articles),
        "frequency": frequency,
        "categories": _fitted_names(categories, CATEGORIES_CHARS),
        "unsubscribe_url": PLACEHOLDER,
        "preferences_url": PREFERENCES_PLACEHOLDER,
        "as_of": as_of.astimezone(zone),
        "more_url": settings.base_url.rstrip("/") + "/",
        "preheader": preheader(articles),
        "view_url": view_url,
        "web": False,
    }
    shown, fixed = len(items), len(fixes)
    while True:
        listing = {
            "items": items[:shown],
            "more": len(articles) - shown,
            "corrected": fixes[:fixed],
            "corrected_more": len(corrected) - fixed,
        }
        page = _INLINER.inline(render(environment, "digest.html.j2", **context, **listing))
        html_qp = _qp_template(_crlf(page))
        size = _qp_size(html_qp)
        if size <= HTML_PART_BUDGET or (shown <= 1 and fixed == 0):
            break
        shown, fixed = _fewer(shown, fixed, HTML_PART_BUDGET / size)
    text = _crlf(render(environment, "digest.txt.j2", **context, **listing))
    boundary = "=_digest_" + hashlib.sha256(page.encode()).hexdigest()[:24]

    skeleton = EmailMessage(policy=SMTP)
    skeleton["From"] = settings.smtp.from_address
    skeleton["Subject"] = subject
    # no Date: the mailer writes it when the message is handed over (date_header), so a
    # run resumed a day later does not send a day-old date
    skeleton["MIME-Version"] = "1.0"
    skeleton["List-Id"] = f"{settings.site.title} digest <{settings.digest.list_id}>"
    skeleton["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if settings.smtp.feedback_id:
        skeleton["Feedback-ID"] = settings.smtp.feedback_id
    if settings.smtp.cfbl_address:
        skeleton["CFBL-Address"] = f"{settings.smtp.cfbl_address}; report=arf"
    skeleton["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    head = b"".join(SMTP.fold_binary(name, value) for name, value in skeleton.items())
    return PreparedDigest(
        subject=subject,
        count=len(articles),
        head=head,
        boundary=boundary,
        text_qp=_qp_template(text),
        html_qp=html_qp,
        render_seconds=time.perf_counter() - started,
    )


def render_web_copy(
    environment: Any,
    settings: Settings,
    *,
    articles: Sequence[Article],
    frequency: str,
    as_of: datetime,
    article_url: Callable[[Article], str],
    corrected: Sequence[Article] = (),
    archive_url: str,
) -> str:
    """The digest's web copy: the same template, for nobody in particular (no name, no
    address, no token, no unsubscribe link, not the reader's categories), and every item
    up to `digest.max_items`, as a web page has no clipping to fear."""
    zone = settings.zone
    limit = settings.digest.max_items
    lead = articles[0].title if articles else ""
    items = [_item(a, article_url, zone) for a in articles[:limit]]
    fixes = [{"title": clip(a.title, TITLE_CHARS), "url": article_url(a)} for a in corrected]
    return render(
        environment,
        "digest.html.j2",
        subject=subject_line(settings, frequency, len(articles), as_of, lead),
        count=len(articles),
        frequency=frequency,
        categories=[],
        unsubscribe_url="",
        as_of=as_of.astimezone(zone),
        more_url=settings.base_url.rstrip("/") + "/",
        preheader=preheader(articles),
        view_url="",
        web=True,
        archive_url=archive_url,
        items=items,
        more=len(articles) - len(items),
        corrected=fixes[:limit],
        corrected_more=len(corrected) - len(fixes[:limit]),
    )


def _item(article: Article, article_url: Callable[[Article], str], zone: Any) -> dict[str, Any]:
    published = article.published.astimezone(zone)
    return {
        "title": clip(article.title, TITLE_CHARS),
        "url": article_url(article),
        "date": published.date(),
        "date_text": f"{published:%d %b %Y}",
        "category": clip(article.category, CATEGORY_CHARS),
        "summary": clip(article.summary, SUMMARY_CHARS),
    }


def _fewer(shown: int, fixed: int, ratio: float) -> tuple[int, int]:
    """Counts of new and corrected items scaled down by `ratio`, each by one at least; the
    corrections go first, one new article always stays."""
    if fixed:
        return shown, min(fixed - 1, int(fixed * ratio))
    return max(1, min(shown - 1, int(shown * ratio))), 0


def _qp_size(template: tuple[bytes | str, ...]) -> int:
    """The encoded size of a `_qp_template`, its PLACEHOLDER lines as they are."""
    return sum(len(p) if isinstance(p, bytes) else len(_qp_lines(p)) for p in template)


def personalize(
    prepared: PreparedDigest,
    *,
    to_name: str | None,
    to_address: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mail: str | None,
    preferences_url: str = "",
) -> bytes:
    """The complete message bytes (CRLF) for one recipient of a prepared digest
    (`unsubscribe_mail` None: the List-Unsubscribe header has the URL only)."""
    to_header = SMTP.fold_binary("To", mailbox(to_name, to_address))
    text_qp = _qp_fill(prepared.text_qp, unsubscribe_url, preferences_url)
    page_qp = _qp_fill(
        prepared.html_qp,
        html.escape(unsubscribe_url, quote=True),
        html.escape(preferences_url, quote=True),
    )
    b = prepared.boundary.encode()
    return b"".join(
        (
            prepared.head,
            to_header,
            b"Message-ID: " + message_id.encode("ascii") + b"\r\n",
            b"List-Unsubscribe: <"
            + unsubscribe_url.encode("ascii")
            + (b">,\r\n <" + unsubscribe_mail.encode("ascii") if unsubscribe_mail else b"")
            + b">\r\n\r\n",
            b"--" + b + b"\r\n",
            b'Content-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            text_qp,
            b"\r\n--" + b + b"\r\n",
            b'Content-Type: text/html; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            page_qp,
            b"\r\n--" + b + b"--\r\n",
        )
    )


def build_message(
    *,
    settings: Settings,
    subject: str,
    to_name: str | None,
    to_address: str,
    text: str,
    html_body: str,
    date: datetime,
    message_id: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    """A multipart/alternative EmailMessage (text first, then HTML), UTF-8, SMTP policy."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.smtp.from_address
    message["To"] = mailbox(to_name, to_address)
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or make_msgid(domain=settings.host)
    for name, value in headers:
        message[name] = value
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def confirmation_message(
    environment: Any,
    settings: Settings,
    *,
    to_name: str | None,
    to_address: str,
    confirm_url: str,
    categories: Sequence[str],
    frequency: str,
    now: datetime,
) -> EmailMessage:
    """The double opt-in mail: one link that confirms the subscription."""
    context = {
        "confirm_url": confirm_url,
        "categories": list(categories),
        "frequency": frequency,
        "max_age_days": max(1, settings.server.token_max_age_seconds // 86400),
    }
    return build_message(
        settings=settings,
        subject=f"Confirm your subscription to {settings.site.title}",
        to_name=to_name,
        to_address=to_address,
        text=render(environment, "confirm.txt.j2", **context),
        html_body=_INLINER.inline(render(environment, "confirm.html.j2", **context)),
        date=now,
    )


def welcome_message(
    environment: Any,
    settings: Settings,
    *,
    to_name: str | None,
    to_address: str,
    preferences_url: str,
    categories: Sequence[str],
    frequency: str,
    first_digest: str | None,
    now: datetime,
) -> EmailMessage:
    """After the confirm button: what they chose, when the first digest comes, the
    preference centre."""
    context = {
        "preferences_url": preferences_url,
        "categories": list(categories),
        "frequency": frequency,
        "first_digest": first_digest,
    }
    return build_message(
        settings=settings,
        subject=f"Welcome to {settings.site.title}",
        to_name=to_name,
        to_address=to_address,
        text=render(environment, "welcome.txt.j2", **context),
        html_body=_INLINER.inline(render(environment, "welcome.html.j2", **context)),
        date=now,
    )


def data_message(
    environment: Any,
    settings: Settings,
    *,
    to_name: str | None,
    to_address: str,
    preferences_url: str,
    data: bytes,
    now: datetime,
) -> EmailMessage:
    """ "Send me my data": a short mail (text and HTML) with what we hold attached as JSON."""
    file_name = "subscriber-data.json"
    context = {"email": to_address, "file_name": file_name, "preferences_url": preferences_url}
    message = build_message(
        settings=settings,
        subject=f"Your data at {settings.site.title}",
        to_name=to_name,
        to_address=to_address,
        text=render(environment, "data.txt.j2", **context),
        html_body=_INLINER.inline(render(environment, "data.html.j2", **context)),
        date=now,
    )
    message.add_attachment(data, maintype="application", subtype="json", filename=file_name)
    return message


def _crlf(text: str) -> str:
    return "\r\n".join(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True)


def _qp_template(text: str) -> tuple[bytes | str, ...]:
    """`text` (CRLF lines) as runs of lines quoted-printable-encoded once (bytes) and the
    lines holding the PLACEHOLDER left as text (str), to be filled and encoded per recipient.

    Quoted-printable is line-local (soft breaks, trailing blanks, a lone '.' are decided
    within one line; only the line break style comes from the first break), so encoding
    whole lines apart joins to the same bytes as encoding the text at once: `_qp_fill`
    with any URL equals `_qp(text.replace(PLACEHOLDER, url))` (tests/unit/test_messages.py).
    """
    lines = text.split("\r\n")
    if len(lines) == 1:
        return (text,) if _personal(text) else (_qp(text),)
    parts: list[bytes | str] = []
    run: list[str] = []
    for number, line in enumerate(lines):
        end = "" if number == len(lines) - 1 else "\r\n"
        if _personal(line):
            if run:
                parts.append(_qp_lines("".join(run)))
                run = []
            parts.append(line + end)
        else:
            run.append(line + end)
    if run:
        parts.append(_qp_lines("".join(run)))
    return tuple(parts)


def _personal(line: str) -> bool:
    return PLACEHOLDER in line or PREFERENCES_PLACEHOLDER in line


def _qp_fill(template: tuple[bytes | str, ...], url: str, preferences_url: str = "") -> bytes:
    def filled(line: str) -> str:
        return line.replace(PLACEHOLDER, url).replace(PREFERENCES_PLACEHOLDER, preferences_url)

    if len(template) == 1 and isinstance(template[0], str):
        return _qp(filled(template[0]))  # one line: its own break style
    return b"".join(
        part if isinstance(part, bytes) else _qp_lines(filled(part)) for part in template
    )


def _qp_lines(text: str) -> bytes:
    """Lines of a CRLF text: soft breaks are CRLF even in a last line without a break."""
    if "\n" in text:
        return _qp(text)
    return _qp("\r\n" + text)[2:]  # a break before it sets the style, changes nothing else
