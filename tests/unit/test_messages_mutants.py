"""Digest and confirmation mail details the other message tests leave open (found by
mutmut): the exact MIME skeleton and its closing boundary, header spelling, a site zone
that is not UTC, addresses, frequencies, the Message-ID and the confirmation mail."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from publisher.config import DigestSettings, Settings, SmtpSettings
from publisher.messages import (
    InvalidSubscription,
    PreparedDigest,
    _crlf,
    build_message,
    confirmation_message,
    date_header,
    digest_message_id,
    display_name,
    mailbox,
    normalize_email,
    parse_frequency,
    personalize,
    prepare_digest,
    sender_address,
    subject_line,
    unsubscribe_mailto,
)
from publisher.model import Article, Block, Frequency
from publisher.render import template_environment

# 20:00 UTC on the 22nd is 04:00 on the 23rd in the default site zone, Asia/Shanghai
AS_OF = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)
PUBLISHED = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)  # the 21st in Shanghai
URL = "https://news.example.org/unsubscribe/TOKEN.abc"
MAIL = "mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN.abc"


def _article(n: int = 1, title: str = "Snow festival", summary: str = "Ice.") -> Article:
    return Article(
        id=f"tag:x,2026:{n}",
        slug=f"article-{n}",
        title=title,
        category_path=("Harbin Today",),
        published=PUBLISHED,
        updated=PUBLISHED,
        author=None,
        source=None,
        blocks=(Block(summary),),
        summary=summary,
        content_hash=str(n),
        source_file=f"{n}.txt",
        ingested=PUBLISHED,
    )


# a subject that carries the date: the tests below check which zone's date it shows
DATED_SUBJECT = "{site} {frequency} — {count} new articles, {date}"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        secret_key="k",
        base_url="https://news.example.org/",
        digest=DigestSettings(subject=DATED_SUBJECT),
    )


def _prepare(settings: Settings, articles: list[Article] | None = None) -> PreparedDigest:
    return prepare_digest(
        template_environment(settings),
        settings,
        articles=[_article()] if articles is None else articles,
        frequency="weekly",
        categories=(),
        as_of=AS_OF,
        article_url=lambda a: settings.url(f"articles/{a.slug}.html"),
    )


def _send(prepared: PreparedDigest, url: str = URL) -> bytes:
    return personalize(
        prepared,
        to_name="Ann",
        to_address="ann@example.com",
        message_id="<m1@news.example.org>",
        unsubscribe_url=url,
        unsubscribe_mail=MAIL,
    )


def _parse(data: bytes) -> EmailMessage:
    parsed: EmailMessage = message_from_bytes(data, policy=policy.default)
    return parsed


def _text(message: EmailMessage, kind: str) -> str:
    part = message.get_body((kind,))
    assert part is not None
    return str(part.get_content())


# -- the MIME skeleton, byte for byte (the golden digest's bytes depend on it) ----------


def test_the_digest_head_is_spelled_as_the_rfcs_spell_it(settings: Settings) -> None:
    prepared = _prepare(settings)
    names = [line.split(b":", 1)[0] for line in prepared.head.split(b"\r\n") if line[:1] != b" "]
    assert names == [
        b"From",
        b"Subject",
        b"MIME-Version",
        b"List-Id",
        b"List-Unsubscribe-Post",
        b"Content-Type",
        b"",
    ]
    assert prepared.head.endswith(b"\r\n") and not prepared.head.endswith(b"\r\n\r\n")
    assert b"\r\nMIME-Version: 1.0\r\n" in prepared.head
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in prepared.head
    assert b"\r\nList-Id: Harbin News digest <digest.publisher.localhost>\r\n" in prepared.head
    assert prepared.head.startswith(b"From: Harbin News <news@localhost>\r\n")
    assert b"Date:" not in prepared.head  # the mailer writes it at hand-off
    assert date_header(AS_OF) == f"Date: {format_datetime(AS_OF)}\r\n".encode()
    unfolded = prepared.head.replace(b"\r\n ", b" ")
    boundary = prepared.boundary.encode()
    assert unfolded.endswith(
        b'\r\nContent-Type: multipart/alternative; boundary="' + boundary + b'"\r\n'
    )


def test_the_personal_part_and_the_mime_skeleton_are_exact(settings: Settings) -> None:
    prepared = _prepare(settings)
    data = _send(prepared)
    b = prepared.boundary.encode()
    assert data.startswith(prepared.head)
    personal, body = data[len(prepared.head) :].split(b"\r\n\r\n", 1)
    assert personal == (
        b"To: Ann <ann@example.com>\r\n"
        b"Message-ID: <m1@news.example.org>\r\n"
        b"List-Unsubscribe: <" + URL.encode() + b">,\r\n <" + MAIL.encode() + b">"
    )
    assert body.startswith(
        b"--" + b + b"\r\n"
        b'Content-Type: text/plain; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert (
        b"\r\n--" + b + b"\r\n"
        b'Content-Type: text/html; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ) in body
    assert body.endswith(b"</html>\r\n--" + b + b"--\r\n")  # the closing boundary, once
    assert body.count(b"--" + b + b"--") == 1
    assert body.count(b"--" + b) == 3


def test_the_closing_boundary_lets_a_parser_find_both_parts_and_no_defect(
    settings: Settings,
) -> None:
    message = _parse(_send(_prepare(settings)))
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert not message.defects
    assert all(not part.defects for part in message.iter_parts())
    assert message.epilogue in (None, "")


def test_prepared_digest_records_subject_count_and_render_time(settings: Settings) -> None:
    started = time.perf_counter()
    prepared = _prepare(settings, [_article(1), _article(2)])
    elapsed = time.perf_counter() - started
    assert prepared.subject == "Harbin News weekly — 2 new articles, 23 Nov 2026"
    assert prepared.count == 2
    assert 0 <= prepared.render_seconds <= elapsed


# -- a site zone other than UTC --------------------------------------------------------


def test_dates_in_a_digest_are_the_site_zone_dates(settings: Settings) -> None:
    message = _parse(_send(_prepare(settings)))
    text = _text(message, "plain")
    assert text.startswith("Harbin News — weekly digest, 23 Nov 2026")  # 22 Nov in UTC
    assert "21 Nov 2026 · Harbin Today" in text  # published 20 Nov 18:00 UTC
    assert "21 Nov 2026 · Harbin Today" in _text(message, "html")
    assert message["Subject"].endswith(", 23 Nov 2026")


def test_subject_line_uses_the_site_zone(settings: Settings) -> None:
    assert subject_line(settings, "daily", 1, AS_OF).endswith(", 23 Nov 2026")
    utc = replace(settings, timezone="UTC")
    assert subject_line(utc, "daily", 1, AS_OF).endswith(", 22 Nov 2026")
    west = replace(settings, timezone="America/New_York")
    assert subject_line(west, "daily", 1, datetime(2026, 11, 23, 3, tzinfo=UTC)).endswith(
        ", 22 Nov 2026"
    )


def test_operator_templates_get_the_item_date_and_as_of_in_the_site_zone(
    settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "{% for item in items %}{{ item.date.isoformat() }}|{{ item.date_text }}{% endfor %}"
        "|{{ as_of.isoformat() }}|{{ unsubscribe_url }}\n"
    )
    custom = replace(settings, templates_dir=tmp_path)
    text = _text(_parse(_send(_prepare(custom))), "plain")
    assert text.startswith("2026-11-21|21 Nov 2026|2026-11-23T04:00:00+08:00|" + URL)


# -- the unsubscribe link in the HTML part ---------------------------------------------


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value for name, value in attrs if name == "href" and value]


def test_an_unsubscribe_url_with_quotes_stays_one_attribute(settings: Settings) -> None:
    odd = "https://news.example.org/u/a'b\"c&d<e>"
    page = _text(_parse(_send(_prepare(settings), url=odd)), "html")
    parser = _Hrefs()
    parser.feed(page)
    assert odd in parser.hrefs
    assert "&quot;" in page and "&#x27;" in page


# -- the one-off build -------------------------------------------------------------------


def test_build_message_headers_and_parts(settings: Settings) -> None:
    message = build_message(
        settings=settings,
        subject="Hello",
        to_name="Zoë",
        to_address="z@example.com",
        text="plain é\n",
        html_body="<p>html é</p>\n",
        date=AS_OF,
        headers=[("List-Id", "x <x.example.org>")],
    )
    data = bytes(message)
    head = data.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
    assert names[:7] == [
        b"From",
        b"To",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"List-Id",
        b"MIME-Version",
    ]
    assert message["Date"] == format_datetime(AS_OF)
    assert message["List-Id"] == "x <x.example.org>"
    assert str(message["Message-ID"]).endswith(f"@{settings.host}>")
    text, page = message.iter_parts()
    for part, kind in ((text, b"plain"), (page, b"html")):
        raw = bytes(part)
        assert b"Content-Type: text/" + kind + b'; charset="utf-8"' in raw
        assert b"Content-Transfer-Encoding: quoted-printable" in raw
    parsed = _parse(data)
    assert _text(parsed, "plain").rstrip() == "plain é"
    assert _text(parsed, "html").rstrip() == "<p>html é</p>"


def test_build_message_keeps_a_given_message_id(settings: Settings) -> None:
    message = build_message(
        settings=settings,
        subject="s",
        to_name=None,
        to_address="z@example.com",
        text="t",
        html_body="<p>h</p>",
        date=AS_OF,
        message_id="<given@example.org>",
    )
    assert message["Message-ID"] == "<given@example.org>"
    assert message["To"] == "z@example.com"


def test_confirmation_message(settings: Settings) -> None:
    confirm = "https://news.example.org/confirm/TOK"
    message = confirmation_message(
        template_environment(settings),
        settings,
        to_name="Ann",
        to_address="ann@example.com",
        confirm_url=confirm,
        categories=["Harbin Today", "Culture"],
        frequency="daily",
        now=AS_OF,
    )
    assert message["Subject"] == "Confirm your subscription to Harbin News"
    assert message["To"] == "Ann <ann@example.com>"
    assert message["Date"] == format_datetime(AS_OF)
    parsed = _parse(bytes(message))
    text = _text(parsed, "plain")
    assert f"Confirm: {confirm}" in text
    assert "daily digest of Harbin News (Harbin Today, Culture)" in text
    assert "The link works for 7 days." in text
    page = _text(parsed, "html")
    parser = _Hrefs()
    parser.feed(page)
    assert confirm in parser.hrefs
    styles = re.findall(r"<style[^>]*>(.*?)</style>", page, re.S | re.I)
    assert all(s.strip().startswith("@media") for s in styles)  # the rest is inlined


@pytest.mark.parametrize(("seconds", "days"), [(3600, 1), (86400 * 2 + 1, 2), (86400 * 3 - 1, 2)])
def test_confirmation_mail_states_whole_days_at_least_one(
    settings: Settings, seconds: int, days: int
) -> None:
    short = replace(settings, server=replace(settings.server, token_max_age_seconds=seconds))
    message = confirmation_message(
        template_environment(short),
        short,
        to_name=None,
        to_address="a@example.com",
        confirm_url="https://x.example.org/c",
        categories=[],
        frequency="weekly",
        now=AS_OF,
    )
    assert f"The link works for {days} days." in _text(_parse(bytes(message)), "plain")


# -- addresses, names, frequencies, ids ------------------------------------------------


def test_normalize_email_lowers_and_encodes_the_domain() -> None:
    assert normalize_email("Ann.Lee@Example.COM") == "ann.lee@example.com"
    # no DNS look-up: a domain that does not resolve is still an address
    assert normalize_email("a@no-such-host.publisher-test.example") == (
        "a@no-such-host.publisher-test.example"
    )


@pytest.mark.parametrize("bad", ["not an address", "a@", "ännä@example.com", ""])
def test_normalize_email_refuses_with_the_address_named(bad: str) -> None:
    with pytest.raises(InvalidSubscription) as caught:
        normalize_email(bad)
    assert caught.value.message.startswith(f"'{bad}' is not a valid email address: ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Frequency.WEEKLY),
        ("", Frequency.WEEKLY),
        (" Daily ", Frequency.DAILY),
        ("WEEKLY", Frequency.WEEKLY),
    ],
)
def test_parse_frequency(value: str | None, expected: Frequency) -> None:
    assert parse_frequency(value) is expected


def test_an_unknown_frequency_is_refused_with_its_value() -> None:
    with pytest.raises(InvalidSubscription) as caught:
        parse_frequency("monthly")
    assert caught.value.message == "frequency must be weekly or daily, got 'monthly'"


def test_display_name_of_nothing_is_empty_and_mailbox_is_the_bare_address() -> None:
    assert display_name(None) == ""
    assert display_name("") == ""
    assert mailbox(None, "a@example.com") == "a@example.com"
    assert mailbox("Zoë", "a@example.com") == "=?utf-8?q?Zo=C3=AB?= <a@example.com>"


def test_sender_and_unsubscribe_mail_address(settings: Settings) -> None:
    assert sender_address(settings) == "news@localhost"
    named = replace(settings, smtp=SmtpSettings(from_address="Desk <desk@mail.example.org>"))
    assert sender_address(named) == "desk@mail.example.org"
    assert unsubscribe_mailto(named, "T.k") == (
        "mailto:unsubscribe@mail.example.org?subject=unsubscribe%20T.k"
    )
    quoted = replace(settings, smtp=SmtpSettings(from_address='"a@b"@mail.example.org'))
    assert unsubscribe_mailto(quoted, "T").startswith("mailto:unsubscribe@mail.example.org?")
    bare = replace(settings, smtp=SmtpSettings(from_address=""))
    assert sender_address(bare) == f"news@{settings.host}"
    assert (
        unsubscribe_mailto(bare, "T")
        == f"mailto:unsubscribe@{settings.host}?subject=unsubscribe%20T"
    )


def test_digest_message_id_is_derived_from_run_and_subscriber() -> None:
    tail = hashlib.sha256(b"7:3").hexdigest()[:12]
    assert digest_message_id(7, 3, "news.example.org") == f"<digest.7.3.{tail}@news.example.org>"


def test_crlf_makes_every_line_break_crlf() -> None:
    assert _crlf("a\r\nb\rc\nd\r\n") == "a\r\nb\r\nc\r\nd\r\n"
    assert _crlf("one") == "one"
