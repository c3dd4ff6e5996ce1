"""The links of a `send --dry-run` preview are inert: every one of them, fetched and posted
against a real server, answers "this is a preview" and changes nothing; the links of the
digest really sent still work."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.store.subscribers import Subscribers
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS
from tests.integration.test_web import Served, served
from tests.smtp_sink import SmtpSink, send_config

INGESTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
NOW = INGESTED + timedelta(hours=2)
BASE = "http://127.0.0.1:8080/"  # base_url of tests/conftest.write_config
LINK = re.compile(r"""https?://[^\s"'<>]+/(?:unsubscribe|confirm|preferences)/[^\s"'<>]+""")


@pytest.fixture
def server(tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink) -> Iterator[tuple[App, Served]]:
    app = App(load_settings(send_config(tmp_path, sqlite_url, smtp_sink), environ={}))
    app.ingest([SEEDS], now=lambda: INGESTED)
    app.add_subscriber("ann@example.com", name="Ann")
    for running in served(app, app.web_routes()):
        yield app, running
    app.close()


def _parse(data: bytes) -> EmailMessage:
    parsed: EmailMessage = message_from_bytes(data, policy=policy.default)  # type: ignore[assignment]
    return parsed


def _links(message: EmailMessage) -> set[str]:
    """Every confirm / unsubscribe / preferences link: List-Unsubscribe and both bodies."""
    found = set(LINK.findall(str(message["List-Unsubscribe"])))
    for kind in ("plain", "html"):
        part = message.get_body((kind,))
        assert part is not None
        found |= set(LINK.findall(part.get_content().replace("&amp;", "&")))
    return found


def _status(app: App, email: str) -> SubscriberStatus:
    found = next(s for s in app.subscribers() if s.email == email)
    return found.status


def _token(link: str) -> str:
    return link.rstrip("/").rsplit("/", 1)[1]


def test_every_link_of_a_dry_run_preview_is_inert_and_the_sent_digest_links_work(
    server: tuple[App, Served], smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    app, running = server
    config = str(app.settings.config_file)
    out = tmp_path / "preview"
    dry = CliRunner().invoke(
        cli, ["--config", config, "send", "--dry-run", "--out", str(out), "--now", NOW.isoformat()]
    )
    assert dry.exit_code == 0, dry.output
    preview = _parse((out / "ann@example.com.eml").read_bytes())
    links = _links(preview)
    assert any("/unsubscribe/" in link for link in links), links
    mailto = re.search(r"subject=unsubscribe%20([^>\s]+)", str(preview["List-Unsubscribe"]))
    assert mailto is not None
    tokens = Tokens(app.settings.secret_key)
    # the mailto form's token is no unsubscribe token either: a reply to it acts on nobody
    assert tokens.check(UNSUBSCRIBE, mailto.group(1), 10**9) is None

    for link in links:
        live = link.replace(BASE, running.url)
        shown = httpx.get(live, timeout=10)
        assert shown.status_code == 200 and "This is a preview" in shown.text, live
        assert "ann@example.com" in shown.text and "Nothing was changed" in shown.text
        # a mail client's RFC 8058 one-click POST, and a plain form POST
        for posted in (
            httpx.post(live, data={"List-Unsubscribe": "One-Click"}, timeout=10),
            httpx.post(live, timeout=10),
        ):
            assert posted.status_code == 200 and "This is a preview" in posted.text
        # the same token on the other routes acts there neither
        for route in ("confirm", "unsubscribe"):
            other = f"{running.url}{route}/{_token(link)}"
            assert "This is a preview" in httpx.post(other, timeout=10).text
    assert _status(app, "ann@example.com") is SubscriberStatus.CONFIRMED

    # a preview of a confirm link (a pending reader) is just as inert
    pat, _ = app.add_subscriber("pat@example.com")
    with app.store.begin() as connection:
        Subscribers(connection).set_status(pat.id, SubscriberStatus.PENDING, NOW)
    inert = tokens.make_preview(CONFIRM, pat.id, pat.email)
    answer = httpx.post(f"{running.url}confirm/{inert}", timeout=10)
    assert answer.status_code == 200 and "confirms the subscription of" in answer.text
    assert _status(app, "pat@example.com") is SubscriberStatus.PENDING

    # the digest really sent carries working links
    sent = CliRunner().invoke(cli, ["--config", config, "send", "--now", NOW.isoformat()])
    assert sent.exit_code == 0, sent.output
    [received] = smtp_sink.to("ann@example.com")
    [real] = [link for link in LINK.findall(str(received.message["List-Unsubscribe"]))]
    assert _token(real) not in {_token(link) for link in links}
    answer = httpx.post(
        real.replace(BASE, running.url), data={"List-Unsubscribe": "One-Click"}, timeout=10
    )
    assert answer.status_code == 200 and "Unsubscribed" in answer.text
    assert _status(app, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_a_preview_token_is_never_a_confirm_or_unsubscribe_token() -> None:
    tokens = Tokens("k" * 40)
    for link in (CONFIRM, UNSUBSCRIBE):
        inert = tokens.make_preview(link, 7, "ann@example.com")
        assert tokens.check(CONFIRM, inert, 10**9) is None
        assert tokens.check(UNSUBSCRIBE, inert, 10**9) is None
        claim = tokens.check_preview(inert, 10**9)
        assert claim is not None and (claim.link, claim.email) == (link, "ann@example.com")
    real = tokens.make(UNSUBSCRIBE, 7, "ann@example.com")
    assert tokens.check_preview(real, 10**9) is None
