"""The site in a real browser: Debian chromium through playwright, loopback only."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.store.subscribers import Subscribers
from publisher.tokens import CONFIRM, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS, with_categories, write_config
from tests.integration.test_web import run_server
from tests.smtp_sink import SmtpSink, send_config

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=ARGS, timeout=30_000
            )
        except Exception as exc:  # any launch failure: this machine cannot run it
            pytest.skip(f"chromium cannot start: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    app.ingest()
    app.build_feeds()
    try:
        for base, _ in run_server(app):
            yield base
    finally:
        app.close()


def test_index_lists_seeds_feeds_resolve_and_an_article_opens(browser: object, url: str) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    # loopback only: anything else the page asks for is refused
    context.route(
        "**/*",
        lambda route: route.continue_() if route.request.url.startswith(url) else route.abort(),
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url, timeout=15_000)
    titles = page.locator("ol.articles a.title").all_inner_texts()
    assert len(titles) == 5
    assert "Harbin regains ‘National Civilized City’ title" in titles

    feeds = page.eval_on_selector_all(
        'link[rel="alternate"]', "links => links.map(l => [l.type, l.href])"
    )
    assert {kind for kind, _ in feeds} == {
        "application/atom+xml",
        "application/rss+xml",
        "application/feed+json",
    }
    for kind, href in feeds:
        response = context.request.get(href)
        assert response.status == 200, href
        assert response.headers["content-type"].startswith(kind)

    form = page.locator('form[action="/subscribe"]')
    assert form.get_attribute("method") == "post"
    assert form.locator('input[name="email"]').count() == 1
    assert form.locator('input[type="checkbox"][name="categories"]').count() == 3

    page.get_by_role("link", name="Harbin sets up development goals for 2022").click()
    page.wait_for_load_state()
    assert page.url.endswith("/articles/2022-05-05-harbin-sets-up-development-goals-for-2022.html")
    assert page.locator("h1").inner_text() == "Harbin sets up development goals for 2022"
    assert "Harbin Municipal People" in page.locator("article .body").inner_text()
    # the stylesheet loaded under the CSP: the heading font is the one style.css sets
    assert "Georgia" in page.eval_on_selector("body", "b => getComputedStyle(b).fontFamily")
    assert not errors, errors
    context.close()


@pytest.fixture
def subscription_site(tmp_path: Path) -> Iterator[tuple[App, str]]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite")
    app = App(load_settings(config, environ={}))
    try:
        for base, _ in run_server(app, app.web_routes()):
            yield app, base
    finally:
        app.close()


def test_the_confirm_link_opens_a_button_that_confirms_under_the_csp(
    browser: object, subscription_site: tuple[App, str]
) -> None:
    app, url = subscription_site
    added, _ = app.add_subscriber("pat@example.com")
    with app.store.begin() as connection:
        Subscribers(connection).set_status(added.id, SubscriberStatus.PENDING, datetime.now(UTC))
    token = Tokens(app.settings.secret_key).make(CONFIRM, added.id, added.email)
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{url}confirm/{token}", timeout=15_000)
    assert _status(app, "pat@example.com") is SubscriberStatus.PENDING  # opening it: nothing
    page.get_by_role("button", name="Confirm subscription").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Subscription confirmed"
    assert _status(app, "pat@example.com") is SubscriberStatus.CONFIRMED
    context.close()


def _status(app: App, email: str) -> SubscriberStatus | None:
    found = next((s for s in app.subscribers() if s.email == email), None)
    return None if found is None else found.status


@pytest.fixture
def mail_site(tmp_path: Path, smtp_sink: SmtpSink) -> Iterator[tuple[App, str]]:
    config = with_categories(
        send_config(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", smtp_sink), "Economy"
    )
    shutil.copytree(SEEDS, tmp_path / "inbox")
    app = App(load_settings(config, environ={}))
    app.ingest()
    app.build_feeds()
    try:
        for base, _ in run_server(app, app.web_routes()):
            yield app, base
    finally:
        app.close()


def _apart(work: Callable[[], T]) -> T:
    """`work` in a thread of its own: playwright's sync API holds this thread's event loop,
    and the send and the CLI start their own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result(timeout=120)


def _mail_link(url: str, received: SmtpSink, number: int, part: str) -> str:
    """The first link holding `part` in the text of mail `number`, on the test server."""
    received.wait_for(number + 1)
    text = received.messages[number].message.get_body(("plain",)).get_content()
    link = next(u for u in re.findall(r"https?://[^\s\"<>]+", text) if part in u)
    return url + link.split("/", 3)[3]


def test_subscribe_from_an_article_confirm_welcome_then_change_preferences(
    browser: object, mail_site: tuple[App, str], smtp_sink: SmtpSink
) -> None:
    app, url = mail_site
    config = app.settings.config_file
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{url}articles/2022-05-05-harbin-sets-up-development-goals-for-2022.html")
    category = page.locator("article .category").inner_text().split(" › ")[-1]
    form = page.locator("form.subscribe")
    form.get_by_label("Email").fill("reader@example.com")
    form.get_by_label("daily").check()
    form.get_by_label(category).check()
    form.get_by_role("button", name="Subscribe").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Check your inbox"

    page.goto(_mail_link(url, smtp_sink, 0, "/confirm/"))
    button = page.get_by_role("button", name="Confirm subscription")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 44  # a touch target on a phone
    button.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Subscription confirmed"

    smtp_sink.wait_for(2)
    welcome = smtp_sink.messages[1].message.get_body(("plain",)).get_content()
    assert "daily digest" in welcome and category in welcome

    page.goto(_mail_link(url, smtp_sink, 1, "/preferences/"))
    assert page.get_by_label("daily").is_checked() and page.get_by_label(category).is_checked()
    page.get_by_label("weekly").check()
    page.get_by_label("Economy").check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.get_by_text("Saved.").is_visible()
    found = next(s for s in app.subscribers() if s.email == "reader@example.com")
    assert found.frequency.value == "weekly"
    assert sorted(found.categories) == sorted([category, "Economy"])
    for name in ("Save", "Pause", "Send me my data", "Delete me"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["height"] >= 44, name
    listed = _apart(
        lambda: CliRunner().invoke(cli, ["--config", str(config), "subscribers", "list", "--json"])
    )
    [row] = [r for r in json.loads(listed.output) if r["email"] == "reader@example.com"]
    assert row["frequency"] == "weekly" and sorted(row["categories"]) == sorted(found.categories)

    # pause from the page: a send skips them (and says so); resume: the next one mails them
    page.get_by_role("button", name="Pause").click()
    page.wait_for_load_state()
    assert page.get_by_text("Paused until").is_visible()
    paused = _apart(app.send_digests)
    assert paused.skipped_paused == 1 and paused.sent == 0
    page.get_by_role("button", name="Resume now").click()
    page.wait_for_load_state()
    assert page.get_by_text("Saved.").is_visible() and page.get_by_text("Paused until").count() == 0
    resumed = _apart(app.send_digests)
    assert resumed.skipped_paused == 0 and resumed.sent == 1
    assert smtp_sink.to("reader@example.com")[-1].message["Subject"] is not None
    context.close()


def test_unsubscribe_buttons_are_touch_targets_and_a_second_visit_offers_to_resubscribe(
    browser: object, subscription_site: tuple[App, str]
) -> None:
    app, url = subscription_site
    app.build_feeds()  # the output folder's static/style.css, as a real site has
    added, _ = app.add_subscriber("pat@example.com")
    token = Tokens(app.settings.secret_key).make(UNSUBSCRIBE, added.id, added.email)
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{url}unsubscribe/{token}", timeout=15_000)
    button = page.get_by_role("button", name="Unsubscribe")
    box = button.bounding_box()
    assert box is not None and box["height"] >= 44
    button.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Unsubscribed"
    assert _status(app, "pat@example.com") is SubscriberStatus.UNSUBSCRIBED
    page.goto(f"{url}unsubscribe/{token}", timeout=15_000)
    again = page.get_by_role("button", name="Subscribe again")
    box = again.bounding_box()
    assert box is not None and box["height"] >= 44
    assert page.get_by_role("button", name="Unsubscribe").count() == 0
    context.close()
