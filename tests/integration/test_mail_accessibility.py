"""Mails and the digest archive in real Chromium with axe-core injected: no serious or
critical violation, in light and dark colour schemes; and what every mail must carry
(preheader, headings, the postal address).

axe-core comes from npm (tests/.node: `npm ci --prefix tests/.node`, .ci/run does it).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from tests.conftest import ROOT, SEEDS
from tests.integration.test_browser import browser  # noqa: F401 - the Chromium fixture
from tests.integration.test_web import served
from tests.smtp_sink import Received, SmtpSink, send_config

AXE = ROOT / "tests" / ".node" / "node_modules" / "axe-core" / "axe.min.js"
ADDRESS = "Harbin News, 1 Zhongshan Road, Nangang District, Harbin 150001, China"
BLOCKING = {"serious", "critical"}


@dataclass
class Mails:
    base: str
    digest: str  # the HTML part of a received digest
    confirmation: str  # the HTML part of a received confirmation mail
    digest_mail: Received
    confirmation_mail: Received


def _html(received: Received) -> str:
    part = received.message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def mails(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[Mails]:
    """A digest sent and a confirmation mail asked for, both through the sink; the site
    (with the digest's web copy and archive) served by the real server."""
    config = send_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", smtp_sink)
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[site]\ntitle = "Harbin News"\npostal_address = "{ADDRESS}"\n')
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        app.build_feeds()
        app.add_subscriber("reader@example.org", name="Reader")
        app.send_digests()
        (digest,) = smtp_sink.to("reader@example.org")
        for running in served(app, app.web_routes()):
            answer = httpx.post(
                running.url + "subscribe", data={"email": "new@example.org"}, timeout=10
            )
            assert answer.status_code == 200, answer.text
            smtp_sink.wait_for(2)
            (confirmation,) = smtp_sink.to("new@example.org")
            yield Mails(running.url, _html(digest), _html(confirmation), digest, confirmation)
    finally:
        app.close()


def _violations(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@pytest.fixture
def axe(mails: Mails, browser: Any) -> Iterator[Any]:  # noqa: F811 - the imported fixture
    """Chromium, started after `mails`: the sync playwright loop must not be running
    while the send runs its own."""
    if not AXE.exists():
        pytest.skip(f"axe-core not installed ({AXE}); run: npm ci --prefix tests/.node")
    yield browser


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("kind", ["digest", "confirmation"])
def test_mail_html_has_no_serious_accessibility_violation(
    axe: Any, mails: Mails, kind: str, scheme: str
) -> None:
    context = axe.new_context(color_scheme=scheme, viewport={"width": 600, "height": 900})
    try:
        page = context.new_page()
        page.set_content(getattr(mails, kind), wait_until="load")
        assert _violations(page) == []
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("which", ["web copy", "archive index"])
def test_digest_pages_have_no_serious_accessibility_violation(
    axe: Any, mails: Mails, which: str, scheme: str
) -> None:
    view = re.search(r'href="([^"]+)"[^>]*>View in browser<', mails.digest)
    assert view is not None
    name = view.group(1).rsplit("/digests/", 1)[1]  # base_url is not where the test serves
    url = mails.base + "digests/" + (name if which == "web copy" else "")
    # the site's CSP forbids scripts; axe is injected by the test, not by the page
    context = axe.new_context(color_scheme=scheme, bypass_csp=True)
    try:
        page = context.new_page()
        assert page.goto(url).status == 200
        assert _violations(page) == []
    finally:
        context.close()


@pytest.mark.parametrize("kind", ["digest", "confirmation"])
def test_every_mail_has_headings_a_preheader_and_the_postal_address(
    mails: Mails, kind: str
) -> None:
    page = getattr(mails, kind)
    received: Received = getattr(mails, f"{kind}_mail")
    assert re.search(r"<h1[^>]*>", page) and re.search(r"<h2[^>]*>", page)
    assert ADDRESS in page
    text = received.message.get_body(("plain",))
    assert text is not None and ADDRESS in text.get_content()
    hidden = re.search(r'<div class="preheader"[^>]*display: ?none[^>]*>([^<]*)', page)
    assert hidden is not None and hidden.group(1).strip()
    assert 'content="light dark"' in page  # color-scheme / supported-color-schemes


def test_the_digest_preheader_shows_the_lead_headlines(mails: Mails) -> None:
    hidden = re.search(r'<div class="preheader"[^>]*>([^<]*)', mails.digest)
    assert hidden is not None
    titles = re.findall(r'<a class="title"[^>]*>([^<]+)</a>', mails.digest)
    lead = hidden.group(1).split("·")[0].strip()
    assert titles and lead == titles[0].replace("&#39;", "'").strip()


def test_text_cells_carry_their_own_font_and_colour(mails: Mails) -> None:
    for page in (mails.digest, mails.confirmation):
        cells = re.findall(r"<td\b[^>]*>", page)
        assert cells
        for cell in cells:
            assert "font-family:" in cell and "color:" in cell, cell


def test_axe_here_does_catch_the_old_grey_text(axe: Any) -> None:
    """The checks above pass because the colours are right, not because axe is blind:
    the meta-line grey of before (#7b8794 on white, 3.66:1) is a serious violation."""
    context = axe.new_context()
    try:
        page = context.new_page()
        page.set_content(
            '<!doctype html><html lang="en"><head><title>t</title></head><body><main>'
            '<p style="color:#7b8794;background:#ffffff">20 Nov 2026 · Harbin Today</p>'
            "</main></body></html>"
        )
        assert any(v.startswith("color-contrast (serious)") for v in _violations(page))
    finally:
        context.close()
