"""Every page a subscriber meets, and the welcome and preference-data mails, in real
Chromium with axe-core injected: no serious or critical violation.

Pages reached by GET are opened on the real server; the answers to a POST (subscribe result,
form with errors, confirmed, expired link) are fetched over HTTP and written into a page of
the same server, so their stylesheet loads as it does for a subscriber.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.tokens import PREFERENCES, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS
from tests.integration.test_browser import browser  # noqa: F401 - the Chromium fixture
from tests.integration.test_mail_accessibility import ADDRESS, AXE, _violations
from tests.integration.test_preferences import _links, _on, _text_of
from tests.integration.test_web import served
from tests.smtp_sink import Received, SmtpSink, send_config

GET_PAGES = (
    "index",
    "article",
    "category",
    "archive",
    "confirm",
    "preferences",
    "unsubscribe",
    "unsubscribed again",
)
SITE_PAGES = ("index", "article", "category", "archive")  # with the search box
POST_PAGES = ("subscribe result", "subscribe error", "confirmed", "expired link")
MAILS = ("welcome mail", "preference data mail")


@dataclass
class Site:
    base: str
    urls: dict[str, str] = field(default_factory=dict)  # pages opened by GET
    html: dict[str, str] = field(default_factory=dict)  # POST answers and mails


def _html(received: Received) -> str:
    part = received.message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


@pytest.fixture
def site(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[Site]:
    config = send_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", smtp_sink)
    with config.open("a", encoding="utf-8") as out:
        out.write(f'\n[site]\ncategories = "Economy"\npostal_address = "{ADDRESS}"\n')
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    try:
        app.ingest()
        app.build_feeds()
        for running in served(app, app.web_routes()):
            found = Site(running.url)
            article = next(app.settings.output_dir.glob("articles/*.html"))
            found.urls["index"] = running.url
            found.urls["article"] = f"{running.url}articles/{article.name}"
            category = next(app.settings.output_dir.glob("category/*/index.html"))
            found.urls["category"] = f"{running.url}category/{category.parent.name}/"
            found.urls["archive"] = f"{running.url}archive/"
            found.html["subscribe error"] = httpx.post(
                running.url + "subscribe", data={"email": "not-an-address"}, timeout=10
            ).text
            answer = httpx.post(
                running.url + "subscribe",
                data={"email": "new@example.com", "frequency": "daily", "categories": "Economy"},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            found.html["subscribe result"] = answer.text
            smtp_sink.wait_for(1)
            text = _text_of(smtp_sink.messages[0].message)
            [confirm] = [_on(running, u) for u in _links(text) if "/confirm/" in u]
            found.urls["confirm"] = confirm
            confirmed = httpx.post(confirm, timeout=10)
            assert confirmed.status_code == 200, confirmed.text
            found.html["confirmed"] = confirmed.text
            smtp_sink.wait_for(2)
            found.html["welcome mail"] = _html(smtp_sink.messages[1])

            ann, _ = app.add_subscriber("ann@example.com", name="Ann")
            tokens = Tokens(app.settings.secret_key)
            preferences = f"{running.url}preferences/{tokens.make(PREFERENCES, ann.id, ann.email)}"
            found.urls["preferences"] = preferences
            asked = httpx.post(preferences, data={"action": "data"}, timeout=10)
            assert asked.status_code == 200, asked.text
            smtp_sink.wait_for(3)
            [data_mail] = smtp_sink.to("ann@example.com")
            found.html["preference data mail"] = _html(data_mail)

            bob, _ = app.add_subscriber("bob@example.com")
            leave = f"{running.url}unsubscribe/{tokens.make(UNSUBSCRIBE, bob.id, bob.email)}"
            found.urls["unsubscribe"] = leave
            assert httpx.post(leave, timeout=10).status_code == 200
            # the same link once more: "you are unsubscribed" with a resubscribe button
            found.urls["unsubscribed again"] = leave + "?again"
            expired = httpx.get(f"{running.url}unsubscribe/not-a-token", timeout=10)
            assert expired.status_code == 400
            found.html["expired link"] = expired.text
            yield found
    finally:
        app.close()


@pytest.fixture
def axe(site: Site, browser: Any) -> Iterator[Any]:  # noqa: F811 - the imported fixture
    """Chromium, started after `site`: the sync playwright loop must not be running
    while the site's own loop sends the mails."""
    if not AXE.exists():
        pytest.skip(f"axe-core not installed ({AXE}); run: npm ci --prefix tests/.node")
    yield browser


@pytest.mark.parametrize("which", GET_PAGES + POST_PAGES + MAILS)
def test_every_page_and_mail_has_no_serious_accessibility_violation(
    axe: Any, site: Site, which: str
) -> None:
    # the site's CSP allows only its own scripts; axe is injected by the test, not the page
    context = axe.new_context(bypass_csp=True, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        if which in site.urls:
            assert page.goto(site.urls[which]).status == 200
            if which in SITE_PAGES:
                # search.js has shown the box, so axe checks it too
                page.get_by_label("Search articles").wait_for(timeout=15_000)
            if which == "unsubscribed again":
                assert page.get_by_role("button", name="Subscribe again").count() == 1
        else:
            if which not in MAILS:
                assert page.goto(site.base).status == 200  # the stylesheet's origin
            page.set_content(site.html[which], wait_until="load")
        assert page.locator("body").inner_text().strip()
        assert _violations(page) == []
    finally:
        context.close()


@pytest.mark.parametrize("which", MAILS)
def test_the_welcome_and_data_mails_have_headings_a_preheader_and_the_postal_address(
    site: Site, which: str
) -> None:
    page = site.html[which]
    assert re.search(r"<h1[^>]*>", page) and re.search(r"<h2[^>]*>", page)
    assert ADDRESS in page
    hidden = re.search(r'<div class="preheader"[^>]*display: ?none[^>]*>([^<]*)', page)
    assert hidden is not None and hidden.group(1).strip()
    for cell in re.findall(r"<td\b[^>]*>", page):
        assert "font-family:" in cell and "color:" in cell, cell
