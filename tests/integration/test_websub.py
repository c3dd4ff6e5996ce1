"""WebSub: hub links in every feed, publish pings to external hubs, and the built-in hub
of a running `publisher run` delivering a new article to a real subscriber.

Real parts only: a real SQLite file, `publisher run` serving on a free loopback port,
watchfiles on a real inbox, a real HTTP subscriber and hub on 127.0.0.1 (websub_peer.py),
feedparser on what arrives. Every wait is for a positive signal, bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.runner import RunOptions, run
from publisher.store.websub import HubSubscriptions
from publisher.web import create_app, serve
from tests.conftest import SEEDS, write_config
from tests.integration.in_process import publisher_cli
from tests.integration.test_run import NEW_ARTICLE, free_port, wait_for
from tests.integration.websub_peer import websub_peer

SECRET = "a subscriber's own secret"


def _project(folder: Path, websub: str) -> Path:
    config = write_config(
        folder,
        f"sqlite:///{folder / 'data' / 'publisher.db'}",
        seeds_dir=f'"{SEEDS}"',
        mailbox_dir='"mailbox"',
    )
    with config.open("a", encoding="utf-8") as out:
        out.write("\n[watch]\nsettle_seconds = 0.2\n\n[websub]\n" + websub + "\n")
    return config


def test_a_subscriber_gets_the_new_atom_signed_soon_after_a_file_lands(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with websub_peer() as peer:
        config = _project(
            tmp_path,
            f'builtin = true\nallow_private_callbacks = true\nhubs = ["{peer.url}/hub"]',
        )
        settings = load_settings(config, environ={"PUBLISHER_BASE_URL": base})
        app = App(settings)
        topic = base + "atom.xml"
        callback = f"{peer.url}/callback?feed=site"

        def subscribed() -> bool:
            with app.store.read() as connection:
                return HubSubscriptions(connection).exists(topic, callback, datetime.now(UTC))

        async def scenario() -> None:
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(run(app, stop, RunOptions(port=port), ready=ready))
            await asyncio.wait_for(ready.wait(), 20)
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    base + "websub",
                    data={
                        "hub.mode": "subscribe",
                        "hub.topic": topic,
                        "hub.callback": callback,
                        "hub.secret": SECRET,
                        "hub.lease_seconds": "3600",
                    },
                )
            assert answer.status_code == 202, answer.text
            await asyncio.to_thread(wait_for, subscribed, 10, "the verified subscription")
            check = peer.seen("GET", "/callback")[0].query
            assert check["hub.mode"] == "subscribe" and check["hub.topic"] == topic
            assert check["feed"] == "site" and check["hub.lease_seconds"] == "3600"
            peer.clear()

            (settings.inbox / "ice-library.txt").write_text(NEW_ARTICLE, encoding="utf-8")
            landed = time.monotonic()

            def delivered() -> bool:
                return any(
                    b"new public ice library" in r.body for r in peer.seen("POST", "/callback")
                )

            await asyncio.to_thread(peer.wait, delivered, 10, "the new Atom at the callback")
            elapsed = time.monotonic() - landed

            def pinged() -> bool:
                forms = [httpx.QueryParams(r.body.decode()) for r in peer.seen("POST", "/hub")]
                return any(f.get("hub.url") == topic for f in forms)

            await asyncio.to_thread(peer.wait, pinged, 10, "the publish ping of atom.xml")
            stop.set()
            await asyncio.wait_for(task, 5)
            assert elapsed < 10

        try:
            asyncio.run(scenario())
        finally:
            app.close()

        delivery = next(r for r in peer.seen("POST", "/callback") if b"ice library" in r.body)
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-hub-signature"] == expected
        assert delivery.headers["content-type"].startswith("application/atom+xml")
        assert f'<{topic}>; rel="self"' in delivery.headers["link"]
        parsed = feedparser.parse(delivery.body)
        assert not parsed.bozo
        assert (
            parsed.entries[0].title == "Harbin opens a new public ice library on the Songhua River"
        )
        assert {link.href for link in parsed.feed.links if link.rel == "hub"} == {
            f"{peer.url}/hub",
            base + "websub",
        }


@pytest.mark.parametrize(
    "callback",
    [
        "http://127.0.0.1:9/cb",
        "http://localhost:9/cb",
        "http://[::1]:9/cb",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/cb",
        "http://[::ffff:127.0.0.1]/cb",
    ],
)
def test_a_callback_to_a_private_address_is_refused(tmp_path: Path, callback: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    settings = load_settings(
        _project(tmp_path, "builtin = true"), environ={"PUBLISHER_BASE_URL": base}
    )
    app = App(settings)

    async def scenario() -> httpx.Response:
        stop, ready = asyncio.Event(), asyncio.Event()
        web = create_app(settings, extra_routes=app.web_routes())
        task = asyncio.create_task(serve(web, "127.0.0.1", port, stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        try:
            async with httpx.AsyncClient() as client:
                return await client.post(
                    base + "websub",
                    data={
                        "hub.mode": "subscribe",
                        "hub.topic": base + "atom.xml",
                        "hub.callback": callback,
                    },
                )
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)

    try:
        answer = asyncio.run(scenario())
        with app.store.read() as connection:
            assert not HubSubscriptions(connection).exists(
                base + "atom.xml", callback, datetime.now(UTC)
            )
    finally:
        app.close()
    assert answer.status_code == 400
    assert "hub.callback refused" in answer.text and "non-public" in answer.text


def test_an_external_hub_is_pinged_once_per_changed_feed(tmp_path: Path) -> None:
    with websub_peer() as peer:
        config = _project(tmp_path, f'hubs = ["{peer.url}/hub"]')
        environment = {"PUBLISHER_CONFIG": str(config)}
        first = publisher_cli("ingest", env=environment, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert peer.seen("POST", "/hub")  # the first build changed every feed
        peer.clear()

        (tmp_path / "inbox" / "ice-library.txt").write_text(NEW_ARTICLE, encoding="utf-8")
        second = publisher_cli("ingest", env=environment, cwd=tmp_path)
        assert second.returncode == 0, second.stderr

    base = "http://127.0.0.1:8080/"
    feeds = ("atom.xml", "rss.xml", "feed.json")
    expected = sorted(
        [base + name for name in feeds] + [f"{base}category/harbin-today/{name}" for name in feeds]
    )
    pings = peer.seen("POST", "/hub")
    forms = [httpx.QueryParams(r.body.decode()) for r in pings]
    assert all(form["hub.mode"] == "publish" for form in forms)
    assert sorted(form["hub.url"] for form in forms) == expected
    assert all(r.headers["content-type"] == "application/x-www-form-urlencoded" for r in pings)

    public = tmp_path / "public"
    for name in ("atom.xml", "rss.xml", "category/harbin-today/atom.xml"):
        parsed = feedparser.parse((public / name).read_bytes())
        rels = {(link.rel, link.href) for link in parsed.feed.links}
        assert ("hub", f"{peer.url}/hub") in rels
        assert any(rel == "self" and href == base + name for rel, href in rels)
    feed = httpx.Response(200, content=(public / "feed.json").read_bytes()).json()
    assert feed["hubs"] == [{"type": "WebSub", "url": f"{peer.url}/hub"}]


def test_hubs_are_a_list_of_urls_and_anything_else_is_refused(tmp_path: Path) -> None:
    good = load_settings(
        _project(tmp_path, 'hubs = ["https://a.example/", "http://b.example/hub"]'), environ={}
    )
    assert good.websub.hub_urls == ("https://a.example/", "http://b.example/hub")
    (tmp_path / "bad").mkdir()
    bad = _project(tmp_path / "bad", 'hubs = ["not a url"]')
    result = publisher_cli("build", env={"PUBLISHER_CONFIG": str(bad)}, cwd=tmp_path / "bad")
    assert result.returncode == 2
    assert "websub.hubs: 'not a url' is not an http(s) URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
