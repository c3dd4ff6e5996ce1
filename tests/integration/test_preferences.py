"""The subscriber's side over the real server (uvicorn), the real SMTP sink and the CLI:
the preference centre, the welcome mail, the one subscribe form and the unsubscribe states."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from publisher.app import App
from publisher.cli import cli
from publisher.config import load_settings
from publisher.model import ConsentKind, ConsentSource, Subscriber, SubscriberStatus
from publisher.tokens import PREFERENCES, UNSUBSCRIBE, Tokens
from tests.conftest import SEEDS, with_categories
from tests.integration.test_web import Served, served
from tests.smtp_sink import SmtpSink, send_config

CATEGORIES = ("Harbin Today", "Civilization progress", "Economy")


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink) -> Path:
    return with_categories(send_config(tmp_path, sqlite_url, smtp_sink), *CATEGORIES)


@pytest.fixture
def server(config: Path) -> Iterator[tuple[App, Served]]:
    app = App(load_settings(config, environ={}))
    for running in served(app, app.web_routes()):
        yield app, running
    app.close()


def _run(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def _listed(config: Path, email: str) -> dict[str, Any] | None:
    result = _run(config, "subscribers", "list", "--json")
    assert result.exit_code == 0, result.output
    return next((row for row in json.loads(result.output) if row["email"] == email), None)


def _summary(output: str) -> dict[str, str]:
    """The send summary table of `publisher send` as {column: value}."""
    lines = output.splitlines()
    names = next(line for line in lines if "skipped-paused" in line)
    values = next(line for line in lines if line.startswith("│"))
    return dict(
        zip(
            [cell.strip() for cell in names.strip("┃").split("┃")],
            [cell.strip() for cell in values.strip("│").split("│")],
            strict=True,
        )
    )


def _who(app: App, email: str) -> Subscriber | None:
    return next((s for s in app.subscribers() if s.email == email), None)


def _preferences_url(app: App, running: Served, who: Subscriber) -> str:
    token = Tokens(app.settings.secret_key).make(PREFERENCES, who.id, who.email)
    return f"{running.url}preferences/{token}"


def _links(text: str) -> list[str]:
    return re.findall(r"https?://[^\s\"<>]+", text)


def _on(running: Served, link: str) -> str:
    """A link of a mail (under base_url) on the test server."""
    return running.url + link.split("/", 3)[3]


def _text_of(message: Any) -> str:
    body = message.get_body(("plain",))
    return str(body.get_content())


def test_preferences_change_frequency_categories_and_pause_then_send_skips_them(
    server: tuple[App, Served], config: Path, smtp_sink: SmtpSink
) -> None:
    app, running = server
    ann, _ = app.add_subscriber("ann@example.com", frequency="weekly")
    page_url = _preferences_url(app, running, ann)

    shown = httpx.get(page_url, timeout=10)
    assert shown.status_code == 200
    assert 'method="post"' in shown.text and "<script" not in shown.text
    for name in CATEGORIES:
        assert f'value="{name}"' in shown.text
    assert 'value="weekly" checked' in shown.text

    saved = httpx.post(
        page_url,
        data={"frequency": "daily", "categories": ["economy", "Harbin Today"], "action": "save"},
        timeout=10,
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    assert 'value="daily" checked' in saved.text
    row = _listed(config, "ann@example.com")
    assert row is not None and row["frequency"] == "daily"
    assert sorted(row["categories"]) == ["Economy", "Harbin Today"]  # the site's spelling

    # an unknown category is refused, shown on the page, nothing changes
    refused = httpx.post(
        page_url, data={"frequency": "weekly", "categories": "Nope", "action": "save"}, timeout=10
    )
    assert refused.status_code == 400 and "unknown category" in refused.text
    assert _listed(config, "ann@example.com")["frequency"] == "daily"  # type: ignore[index]

    # pause for two weeks: a send now skips them and says so
    paused = httpx.post(
        page_url,
        data={
            "frequency": "daily",
            "categories": ["Economy", "Harbin Today"],
            "action": "pause",
            "pause_weeks": "2",
        },
        timeout=10,
    )
    assert paused.status_code == 200 and "Paused until" in paused.text
    assert _listed(config, "ann@example.com")["paused_until"] is not None  # type: ignore[index]
    app.ingest([SEEDS])
    app.add_subscriber("bob@example.com", frequency="daily")  # not paused: gets one
    sent = _run(config, "send")
    assert sent.exit_code == 0, sent.output
    summary = _summary(sent.output)
    assert summary["skipped-paused"] == "1" and summary["sent"] == "1", sent.output
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["bob@example.com"]]

    # resume: the next send mails them, with a preference link in the footer
    resumed = httpx.post(
        page_url,
        data={"frequency": "daily", "categories": ["Economy", "Harbin Today"], "action": "resume"},
        timeout=10,
    )
    assert resumed.status_code == 200 and "Paused until" not in resumed.text
    assert _listed(config, "ann@example.com")["paused_until"] is None  # type: ignore[index]
    again = _run(config, "send")
    assert again.exit_code == 0, again.output
    [digest] = smtp_sink.to("ann@example.com")
    links = _links(_text_of(digest.message))
    [preference_link] = [link for link in links if "/preferences/" in link]
    assert httpx.get(_on(running, preference_link), timeout=10).status_code == 200

    kinds = [e.kind for e in app.subscriber_history("ann@example.com")]
    assert kinds.count(ConsentKind.PREFERENCES_CHANGED) == 3  # choices, pause, resume
    details = [e.detail for e in app.subscriber_history("ann@example.com")]
    assert any("frequency: weekly -> daily" in d for d in details)
    assert any(d.startswith("paused until") for d in details) and "resumed" in details


def test_send_me_my_data_mails_a_json_of_what_we_hold_and_never_shows_it(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    app, running = server
    ann, _ = app.add_subscriber("ann@example.com", name="Ann", categories=["Economy"])
    page_url = _preferences_url(app, running, ann)
    answer = httpx.post(page_url, data={"action": "data"}, timeout=10)
    assert answer.status_code == 200 and "on its way" in answer.text
    assert "consent_history" not in answer.text and "Economy" not in answer.text
    smtp_sink.wait_for(1)
    [mail] = smtp_sink.to("ann@example.com")
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_content_type() == "application/json"
    held = json.loads(attachment.get_content())
    assert held["subscriber"]["email"] == "ann@example.com"
    assert held["subscriber"]["name"] == "Ann"
    assert held["subscriber"]["categories"] == ["Economy"]
    assert [e["kind"] for e in held["consent_history"]][:1] == ["subscribed"]


def test_delete_me_erases_the_subscriber_and_keeps_the_suppression(
    server: tuple[App, Served], config: Path
) -> None:
    app, running = server
    ann, _ = app.add_subscriber("ann@example.com", name="Ann")
    page_url = _preferences_url(app, running, ann)
    unsure = httpx.post(page_url, data={"action": "delete"}, timeout=10)
    assert unsure.status_code == 400 and "Tick the box" in unsure.text
    assert _listed(config, "ann@example.com") is not None
    gone = httpx.post(page_url, data={"action": "delete", "sure": "yes"}, timeout=10)
    assert gone.status_code == 200 and "erased" in gone.text
    assert _listed(config, "ann@example.com") is None
    # the suppression stays: the operator cannot re-add it by accident
    readd = _run(config, "subscribers", "add", "ann@example.com")
    assert readd.exit_code == 1 and "unsubscribed" in readd.output
    kinds = [e.kind for e in app.subscriber_history("ann@example.com")]
    assert ConsentKind.UNSUBSCRIBED in kinds and ConsentKind.REMOVED in kinds
    # the old link now answers as an expired one
    stale = httpx.get(page_url, timeout=10)
    assert stale.status_code == 400 and "fresh link" in stale.text


def test_a_cross_site_post_to_the_preferences_is_refused(server: tuple[App, Served]) -> None:
    app, running = server
    ann, _ = app.add_subscriber("ann@example.com")
    page_url = _preferences_url(app, running, ann)
    refused = httpx.post(
        page_url,
        data={"action": "delete", "sure": "yes"},
        headers={"Origin": "https://evil.example"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert _who(app, "ann@example.com") is not None


def test_the_welcome_mail_and_confirmed_page_name_the_choices_and_the_first_digest(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    _app, running = server
    answer = httpx.post(
        running.url + "subscribe",
        data={"email": "new@example.com", "frequency": "daily", "categories": "Economy"},
        timeout=10,
    )
    assert answer.status_code == 200
    smtp_sink.wait_for(1)
    [confirm_url] = [u for u in _links(_text_of(smtp_sink.messages[0].message)) if "/confirm/" in u]
    confirmed = httpx.post(_on(running, confirm_url), timeout=10)
    assert confirmed.status_code == 200 and "Subscription confirmed" in confirmed.text
    assert "<strong>daily</strong>" in confirmed.text and "Economy" in confirmed.text
    assert "Your first digest comes on" in confirmed.text
    smtp_sink.wait_for(2)
    welcome = smtp_sink.messages[1].message
    assert "Welcome" in str(welcome["Subject"])
    text = _text_of(welcome)
    assert "daily digest" in text and "Economy" in text
    assert "Your first digest comes on" in text
    [preference_link] = [u for u in _links(text) if "/preferences/" in u]
    assert "Economy" in httpx.get(_on(running, preference_link), timeout=10).text


def test_welcome_false_sends_no_welcome_mail(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    path = with_categories(send_config(tmp_path, sqlite_url, smtp_sink), *CATEGORIES)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[digest]\nwelcome = false\n")
    app = App(load_settings(path, environ={}))
    try:
        for running in served(app, app.web_routes()):
            httpx.post(running.url + "subscribe", data={"email": "new@example.com"}, timeout=10)
            smtp_sink.wait_for(1)
            [link] = [
                u for u in _links(_text_of(smtp_sink.messages[0].message)) if "/confirm/" in u
            ]
            page = httpx.post(_on(running, link), timeout=10)
            assert page.status_code == 200 and "welcome mail" not in page.text
            # the positive signal: every background mail of the confirm has been sent
            running.run(app.subscriptions.drain())
            assert len(smtp_sink.messages) == 1
    finally:
        app.close()


def test_the_subscribe_form_and_its_error_page_keep_what_was_entered(
    server: tuple[App, Served],
) -> None:
    _app, running = server
    empty = httpx.get(running.url + "subscribe", timeout=10)
    assert empty.status_code == 200
    for name in CATEGORIES:
        assert f'value="{name}"' in empty.text
    assert 'name="frequency" value="daily"' in empty.text
    bad = httpx.post(
        running.url + "subscribe",
        data={
            "email": "not-an-address<script>",
            "name": "<b>Ann</b>",
            "frequency": "daily",
            "categories": "Economy",
        },
        timeout=10,
    )
    assert bad.status_code == 400
    assert 'value="not-an-address&lt;script&gt;"' in bad.text
    assert "&lt;b&gt;Ann&lt;/b&gt;" in bad.text and "<b>Ann</b>" not in bad.text
    assert 'value="daily" checked' in bad.text
    assert 'value="Economy" checked' in bad.text


def test_the_index_and_article_pages_carry_the_same_form(server: tuple[App, Served]) -> None:
    app, running = server
    app.ingest([SEEDS])
    app.build_feeds()
    index = httpx.get(running.url, timeout=10).text
    article = next(app.settings.output_dir.glob("articles/*.html")).read_text(encoding="utf-8")
    for html in (index, article):
        assert '<form class="subscribe" method="post" action="/subscribe">' in html
        assert 'name="frequency" value="daily"' in html
        assert 'type="checkbox" name="categories"' in html


def test_unsubscribe_states_already_left_offers_resubscribe_and_expired_mails_a_link(
    server: tuple[App, Served], smtp_sink: SmtpSink
) -> None:
    app, running = server
    ann, _ = app.add_subscriber("ann@example.com")
    token = Tokens(app.settings.secret_key).make(UNSUBSCRIBE, ann.id, ann.email)
    link = f"{running.url}unsubscribe/{token}"
    first = httpx.get(link, timeout=10)
    assert "Stop sending" in first.text
    done = httpx.post(link, timeout=10)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    later = httpx.get(link, timeout=10)
    assert "Stop sending" not in later.text and "You are unsubscribed" in later.text
    assert "Subscribe again" in later.text and 'name="email" value="ann@example.com"' in later.text
    # the button is a fresh double opt-in: a confirmation mail, still unsubscribed until clicked
    again = httpx.post(running.url + "subscribe", data={"email": "ann@example.com"}, timeout=10)
    assert again.status_code == 200
    smtp_sink.wait_for(1)
    assert any("/confirm/" in u for u in _links(_text_of(smtp_sink.messages[0].message)))
    assert _who(app, "ann@example.com").status is not SubscriberStatus.CONFIRMED  # type: ignore[union-attr]

    # a broken link: a form that mails fresh links; the answer never tells who is known
    broken = httpx.get(f"{running.url}unsubscribe/not-a-token", timeout=10)
    assert broken.status_code == 400 and 'action="' in broken.text and "/links" in broken.text
    known = httpx.post(running.url + "links", data={"email": "ann@example.com"}, timeout=10)
    unknown = httpx.post(running.url + "links", data={"email": "who@example.com"}, timeout=10)
    assert known.status_code == unknown.status_code == 200 and known.text == unknown.text
    smtp_sink.wait_for(2)
    fresh = smtp_sink.messages[1]
    assert fresh.rcpt_tos == ["ann@example.com"]
    [preference_link] = [u for u in _links(_text_of(fresh.message)) if "/preferences/" in u]
    assert httpx.get(_on(running, preference_link), timeout=10).status_code == 200
    running.run(app.preferences.drain())
    assert smtp_sink.to("who@example.com") == []


def test_a_failed_fresh_link_mail_logs_the_address_masked(
    server: tuple[App, Served], smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    app, running = server
    caplog.set_level(logging.WARNING, logger="publisher.subscribers")
    app.add_subscriber("secret.reader@example.com")
    smtp_sink.reject.add("secret.reader@example.com")
    httpx.post(running.url + "links", data={"email": "secret.reader@example.com"}, timeout=10)
    running.run(app.preferences.drain())
    lines = [r.getMessage() for r in caplog.records if r.name == "publisher.subscribers"]
    assert any(line.startswith("fresh link to s***@example.com #") for line in lines), lines
    assert not any("secret.reader" in line for line in lines), lines


def test_the_fresh_link_form_is_rate_limited(
    tmp_path: Path, sqlite_url: str, smtp_sink: SmtpSink
) -> None:
    path = send_config(tmp_path, sqlite_url, smtp_sink)
    with path.open("a", encoding="utf-8") as out:
        out.write("\n[server]\nsubscribe_per_minute = 2\n")
    app = App(load_settings(path, environ={}))
    try:
        for running in served(app, app.web_routes()):
            codes = [
                httpx.post(running.url + "links", data={"email": "x@example.com"}, timeout=10)
                for _ in range(3)
            ]
            assert [c.status_code for c in codes] == [200, 200, 429]
    finally:
        app.close()


def test_a_paused_subscriber_is_skipped_on_every_backend_until_the_pause_ends(
    tmp_path: Path, database_url: str, smtp_sink: SmtpSink
) -> None:
    """The pause through SubscriberAdmin on SQLite and PostgreSQL (where send claims rows
    the way `publisher worker` does); after it, the next digest holds what it held back."""
    app = App(load_settings(send_config(tmp_path, database_url, smtp_sink), environ={}))
    seeds = sorted(SEEDS.glob("*.txt"))
    try:
        app.ingest(seeds[:2])
        app.add_subscriber("ann@example.com", frequency="daily")
        app.add_subscriber("bob@example.com", frequency="daily")
        assert app.send_digests("daily").sent == 2
        admin = app.subscriber_admin
        now = datetime.now(UTC)
        admin.change_preferences(
            "ann@example.com", paused_until=now + timedelta(days=3), source=ConsentSource.WEB
        )
        app.ingest(seeds[2:3])
        paused = app.send_digests("daily", datetime.now(UTC) + timedelta(days=1))
        assert (paused.sent, paused.skipped_paused) == (1, 1)
        assert (
            len(smtp_sink.to("ann@example.com")) == 1 and len(smtp_sink.to("bob@example.com")) == 2
        )
        # four days on the pause is over: ann's next digest holds the article it held back
        later = app.send_digests("daily", datetime.now(UTC) + timedelta(days=4))
        assert (later.sent, later.skipped_paused) == (1, 0)
        assert len(smtp_sink.to("ann@example.com")) == 2
    finally:
        app.close()
