"""WebSub for the editing commands: `articles delete`, `articles restore` and
`boilerplate keep` change feeds, and each change reaches the built-in hub's subscriber
and the external hub, also while `publisher run` serves the hub beside them.

Real parts: a real SQLite file, `publisher run` on a free loopback port, the CLI as a
separate App on the same database, a real HTTP subscriber and hub on 127.0.0.1
(websub_peer.py). Every wait is for a positive signal, bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from publisher.app import App
from publisher.config import load_settings
from publisher.runner import RunOptions, run
from publisher.store.websub import HubSubscriptions
from tests.integration.in_process import publisher_cli
from tests.integration.test_run import free_port, wait_for
from tests.integration.test_websub import SECRET, _project
from tests.integration.websub_peer import Peer, Received, websub_peer


def _deliveries(peer: Peer, check: Callable[[bytes], bool]) -> list[Received]:
    return [r for r in peer.seen("POST", "/callback") if check(r.body)]


def _pinged(peer: Peer, topic: str) -> bool:
    forms = [httpx.QueryParams(r.body.decode()) for r in peer.seen("POST", "/hub")]
    return any(f.get("hub.url") == topic for f in forms)


def test_delete_restore_and_keep_from_the_cli_are_announced_while_run_serves_the_hub(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with websub_peer() as peer:
        config = _project(
            tmp_path,
            f'builtin = true\nallow_private_callbacks = true\nhubs = ["{peer.url}/hub"]',
        )
        environment = {"PUBLISHER_CONFIG": str(config), "PUBLISHER_BASE_URL": base}
        settings = load_settings(config, environ={"PUBLISHER_BASE_URL": base})
        app = App(settings)
        topic = base + "atom.xml"
        callback = f"{peer.url}/callback?feed=site"

        def subscribed() -> bool:
            with app.store.read() as connection:
                return HubSubscriptions(connection).exists(topic, callback, datetime.now(UTC))

        def command(*args: str) -> str:
            done = publisher_cli(*args, env=environment, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            return done.stdout

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
                    },
                )
            assert answer.status_code == 202, answer.text
            await asyncio.to_thread(wait_for, subscribed, 10, "the verified subscription")
            victim = app.articles()[0]
            tombstone = f'ref="{victim.id}"'.encode()

            peer.clear()
            await asyncio.to_thread(command, "articles", "delete", victim.slug, "--yes")
            await asyncio.to_thread(
                peer.wait,
                lambda: bool(_deliveries(peer, lambda body: tombstone in body)),
                10,
                "the Atom feed with the deleted article's tombstone",
            )
            await asyncio.to_thread(peer.wait, lambda: _pinged(peer, topic), 10, "a ping")

            peer.clear()
            await asyncio.to_thread(command, "articles", "restore", victim.slug)
            entry = f"<id>{victim.id}</id>".encode()
            await asyncio.to_thread(
                peer.wait,
                lambda: bool(_deliveries(peer, lambda body: entry in body)),
                10,
                "the Atom feed with the restored article",
            )
            await asyncio.to_thread(peer.wait, lambda: _pinged(peer, topic), 10, "a ping")

            blocks = json.loads(await asyncio.to_thread(command, "boilerplate", "list", "--json"))
            assert blocks, "the seeds share a block"
            text = " ".join(blocks[0]["text"].split()).encode()
            peer.clear()
            await asyncio.to_thread(command, "boilerplate", "keep", blocks[0]["key"])
            await asyncio.to_thread(
                peer.wait,
                lambda: bool(_deliveries(peer, lambda body: text in b" ".join(body.split()))),
                10,
                "the Atom feed with the kept block back in",
            )
            await asyncio.to_thread(peer.wait, lambda: _pinged(peer, topic), 10, "a ping")
            stop.set()
            await asyncio.wait_for(task, 5)

        try:
            asyncio.run(scenario())
        finally:
            app.close()

    for delivery in peer.seen("POST", "/callback"):
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-hub-signature"] == expected
