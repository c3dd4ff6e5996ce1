"""Screenshots of what subscribers see, for the README: the digest as mailed (600 and 375 px
wide, and 600 px in dark mode), its web copy, the digest archive, the index, an article, the
preference centre, the unsubscribe page and the confirmed page (1280 and 390 px), in
docs/screenshots/.

    python bench/screenshots.py            # needs chromium at /usr/bin/chromium

The five seeds are ingested and built, one digest is really sent through the project's
embedded SMTP sink (so its web copy and the archive exist as after any send), and Debian's
chromium renders the received HTML part, the pages of the output folder and the pages the
real server (`publisher serve`'s app, in a thread) answers. Site pages are viewport shots,
not full page, to keep the PNGs small.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app import App
from publisher.config import load_settings
from publisher.model import SubscriberStatus
from publisher.smtpserver.sink import SmtpSink
from publisher.store.subscribers import Subscribers
from publisher.tokens import CONFIRM, PREFERENCES, UNSUBSCRIBE, Tokens
from publisher.web import create_app, serve

CHROMIUM = "/usr/bin/chromium"
OUT = ROOT / "docs" / "screenshots"
CONFIG = """database_url = "sqlite:///{folder}/db.sqlite"
inbox = "{folder}/inbox"
output_dir = "{folder}/public"
base_url = "https://news.harbin-example.org/"
secret_key = "bench-screenshots-secret-key-0123456789"

[site]
title = "Harbin News"
postal_address = "Harbin News, 1 Zhongshan Road, Nangang District, Harbin 150001, China"

[digest]
welcome = false

[smtp]
host = "127.0.0.1"
port = {port}
from_address = "Harbin News <news@harbin-example.org>"
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _send(folder: Path) -> str:
    """One digest sent for real; the HTML part as received."""
    port = _free_port()
    shutil.copytree(ROOT / "seeds", folder / "inbox")
    config = folder / "publisher.toml"
    config.write_text(CONFIG.format(folder=folder, port=port), encoding="utf-8")
    config.chmod(0o600)
    async with SmtpSink(folder / "mailbox", port=port) as sink:
        app = App(load_settings(config, environ={}))
        try:
            app.ingest()
            app.build_feeds()
            app.add_subscriber("li.na@example.com", name="Li Na")
            await app.send_digests_async()
        finally:
            app.close()
        (saved,) = sink.saved
    message = message_from_bytes(saved.read_bytes(), policy=policy.default)
    part = message.get_body(("html",))  # type: ignore[attr-defined]
    return str(part.get_content())


@contextmanager
def _served(folder: Path) -> Iterator[tuple[App, str]]:
    """The site's real server (static output and the subscriber pages) in a thread."""
    app = App(load_settings(folder / "publisher.toml", environ={}))
    web = create_app(app.settings, extra_routes=app.web_routes())
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def run() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(serve(web, "127.0.0.1", 0, stop, ready=started))
        await started.wait()
        ready.set()
        await task

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the server did not start")
        yield app, f"http://127.0.0.1:{web.state.port}/"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        app.close()


def _site_pages(app: App, base: str, folder: Path) -> dict[str, str]:
    """The URL of each page to shoot; the confirm page is opened and its button pressed."""
    tokens = Tokens(app.settings.secret_key)
    (reader,) = [s for s in app.subscribers() if s.email == "li.na@example.com"]
    pending, _ = app.add_subscriber("wang.wei@example.com", name="Wang Wei")
    with app.store.begin() as connection:
        Subscribers(connection).set_status(pending.id, SubscriberStatus.PENDING, datetime.now(UTC))
    article = sorted((folder / "public" / "articles").glob("*.html"))[0]
    return {
        "index": base,
        "article": f"{base}articles/{article.name}",
        "preferences": f"{base}preferences/{tokens.make(PREFERENCES, reader.id, reader.email)}",
        "unsubscribe": f"{base}unsubscribe/{tokens.make(UNSUBSCRIBE, reader.id, reader.email)}",
        "confirmed": f"{base}confirm/{tokens.make(CONFIRM, pending.id, pending.email)}",
    }


def _shoot_site(browser: object, folder: Path) -> None:
    with _served(folder) as (app, base):
        for page_name, url in _site_pages(app, base, folder).items():
            for width, height in ((1280, 900), (390, 844)):
                page = browser.new_page(viewport={"width": width, "height": height})  # type: ignore[attr-defined]
                page.goto(url)
                if page_name == "confirmed":
                    if width == 1280:
                        page.get_by_role("button", name="Confirm subscription").click()
                        page.wait_for_load_state()
                        confirmed = page.content()
                    page.set_viewport_size({"width": width, "height": height})
                    page.set_content(confirmed, wait_until="load")
                name = f"{page_name}-{width}.png"
                page.screenshot(path=str(OUT / name))
                page.close()
                print(OUT / name)


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        print(f"chromium not found at {CHROMIUM}", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as temporary:
        folder = Path(temporary)
        mail = asyncio.run(_send(folder))
        archive = folder / "public" / "digests"
        (copy,) = [p for p in archive.glob("*.html") if p.name != "index.html"]
        shots = [
            ("digest-mail-600.png", 600, None, mail),
            ("digest-mail-600-dark.png", 600, None, mail),
            ("digest-mail-375.png", 375, None, mail),
            ("digest-web-copy-1280.png", 1280, copy, None),
            ("digest-web-copy-390.png", 390, copy, None),
            ("digest-archive-1280.png", 1280, archive / "index.html", None),
            ("digest-archive-390.png", 390, archive / "index.html", None),
        ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                for name, width, path, html in shots:
                    scheme = "dark" if "-dark" in name else "light"
                    page = browser.new_page(
                        viewport={"width": width, "height": 800}, color_scheme=scheme
                    )
                    if path is not None:
                        page.goto(path.as_uri())
                    else:
                        page.set_content(html or "", wait_until="load")
                    page.screenshot(path=str(OUT / name), full_page=True)
                    page.close()
                    print(OUT / name)
                _shoot_site(browser, folder)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
