"""Digest messages: parts, headers, inlined CSS, safe names, the render-once fast path."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from publisher.config import Settings
from publisher.messages import (
    PLACEHOLDER,
    _qp,
    _qp_fill,
    _qp_template,
    build_message,
    digest_message_id,
    display_name,
    personalize,
    prepare_digest,
)
from publisher.model import Article, Block
from publisher.render import template_environment

AS_OF = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)


def _article(n: int, title: str, summary: str) -> Article:
    when = datetime(2026, 11, 20, tzinfo=UTC)
    return Article(
        id=f"tag:x,2026:{n}",
        slug=f"article-{n}",
        title=title,
        category_path=("Harbin Today",),
        published=when,
        updated=when,
        author=None,
        source=None,
        blocks=(Block(summary),),
        summary=summary,
        content_hash=str(n),
        source_file=f"{n}.txt",
        ingested=when,
    )


@pytest.fixture
def settings() -> Settings:
    return Settings(secret_key="k", base_url="https://news.example.org/")


def _parse(data: bytes) -> EmailMessage:
    parsed: EmailMessage = message_from_bytes(data, policy=policy.default)  # type: ignore[assignment]
    return parsed


def _one(settings: Settings, name: str | None = "Ann", address: str = "ann@example.com") -> bytes:
    articles = [
        _article(1, "Snow & <ice> festival", "Ice sculptures — “big” ones."),
        _article(2, "Harbin Today", "Second."),
    ]
    prepared = prepare_digest(
        template_environment(settings),
        settings,
        articles=articles,
        frequency="weekly",
        categories=(),
        as_of=AS_OF,
        article_url=lambda a: settings.url(f"articles/{a.slug}.html"),
    )
    return personalize(
        prepared,
        to_name=name,
        to_address=address,
        message_id=digest_message_id(7, 3, "news.example.org"),
        unsubscribe_url="https://news.example.org/unsubscribe/TOKEN.abc",
        unsubscribe_mail="mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN.abc",
    )


def test_digest_is_multipart_alternative_text_then_html(settings: Settings) -> None:
    data = _one(settings)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    message = _parse(data)
    assert message.get_content_type() == "multipart/alternative"
    text, page = list(message.iter_parts())
    assert text.get_content_type() == "text/plain" and page.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8"
    assert "Snow & <ice> festival" in text.get_content()  # plain text is not escaped
    assert "Snow &amp; &lt;ice&gt; festival" in page.get_content()
    assert "“big”" in text.get_content()
    assert "https://news.example.org/unsubscribe/TOKEN.abc" in text.get_content()
    assert 'href="https://news.example.org/unsubscribe/TOKEN.abc"' in page.get_content()
    assert "https://news.example.org/articles/article-1.html" in page.get_content()


def test_digest_headers(settings: Settings) -> None:
    message = _parse(_one(settings))
    assert message["Subject"] == "Harbin News weekly — Snow & <ice> festival (+1 more)"
    assert message["From"] == "Harbin News <news@localhost>"
    assert message["To"] == "Ann <ann@example.com>"
    assert message["Date"] is None  # the mailer writes it at hand-off
    assert message["Message-ID"] == digest_message_id(7, 3, "news.example.org")
    assert message["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/TOKEN.abc>, "
        "<mailto:unsubscribe@example.org?subject=unsubscribe%20TOKEN.abc>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "digest.publisher.localhost" in message["List-Id"]


def test_css_is_inlined_only_media_queries_left_in_a_style_block(settings: Settings) -> None:
    page = _parse(_one(settings)).get_body(("html",))
    assert page is not None
    html = page.get_content()
    # clients that drop <style> still get every colour and font; dark mode needs @media
    blocks = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S | re.I)
    assert blocks and all(b.strip().startswith("@media") for b in blocks)
    assert "td.item" not in html.split("@media", 1)[0]
    assert 'style="' in html


def test_a_name_with_crlf_cannot_add_a_header_or_recipient(settings: Settings) -> None:
    data = _one(settings, name="Eve\r\nBcc: victim@example.com")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and not head.startswith(b"Bcc:")
    message = _parse(data)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com"]
    assert display_name("Eve\r\nBcc: x") == "Eve Bcc: x"


@pytest.mark.parametrize("name", ['Ann "the" O\'Neil', "Zoë Ünïcode", "a,b <c@d>", '\\ "'])
def test_names_round_trip_as_one_address(settings: Settings, name: str) -> None:
    message = _parse(_one(settings, name=name))
    [address] = message["To"].addresses
    assert address.addr_spec == "ann@example.com"
    assert address.display_name == display_name(name)


def test_message_id_is_stable_per_run_and_subscriber() -> None:
    assert digest_message_id(3, 9, "h") == digest_message_id(3, 9, "h")
    assert digest_message_id(3, 9, "h") != digest_message_id(4, 9, "h")
    assert digest_message_id(3, 9, "h") != digest_message_id(3, 8, "h")


def test_fast_path_matches_the_stdlib_build(settings: Settings) -> None:
    """personalize() must say what an EmailMessage built the slow way says."""
    fast = _parse(_one(settings))
    text = fast.get_body(("plain",))
    page = fast.get_body(("html",))
    assert text is not None and page is not None
    slow = _parse(
        bytes(
            build_message(
                settings=settings,
                subject=str(fast["Subject"]),
                to_name="Ann",
                to_address="ann@example.com",
                text=text.get_content(),
                html_body=page.get_content(),
                date=AS_OF,
                message_id=str(fast["Message-ID"]),
            )
        )
    )
    for header in ("From", "To", "Subject", "Message-ID"):
        assert str(fast[header]) == str(slow[header])
    slow_text, slow_page = slow.get_body(("plain",)), slow.get_body(("html",))
    assert slow_text is not None and slow_page is not None
    assert text.get_content().replace("\r\n", "\n") == slow_text.get_content().replace("\r\n", "\n")
    assert page.get_content().rstrip() == slow_page.get_content().rstrip()


_LINE = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n")
    | st.sampled_from([" ", "\t", ".", "="]),
    max_size=200,
)


@settings_(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(_LINE, _LINE.map(lambda line: line + PLACEHOLDER + line[:5])), max_size=12),
    st.sampled_from(
        [
            "https://news.example.org/unsubscribe/eyJhIjoxfQ.abc-_x",
            "https://n.example.org/u/" + "x" * 150,
            "https://n.example.org/u/a=b c.",
        ]
    ),
)
def test_quoted_printable_template_equals_encoding_the_whole(lines: list[str], url: str) -> None:
    """Encoding once per content, filling per recipient, gives the bytes of encoding it all."""
    text = "\r\n".join(lines)
    assert _qp_fill(_qp_template(text), url) == _qp(text.replace(PLACEHOLDER, url))


def test_operator_templates_override_builtin(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("CUSTOM {{ count }} {{ unsubscribe_url }}\n")
    custom = Settings(secret_key="k", templates_dir=tmp_path)
    text = _parse(_one(custom)).get_body(("plain",))
    assert text is not None and text.get_content().startswith(
        "CUSTOM 2 https://news.example.org/unsubscribe/"
    )
