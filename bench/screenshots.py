"""Screenshots of what subscribers see, for the README: the digest as mailed (600 and 375 px
wide, and 600 px in dark mode), its web copy and the digest archive (1280 and 390 px), in
docs/screenshots/.

    python bench/screenshots.py            # needs chromium at /usr/bin/chromium

The five seeds are ingested and built, one digest is really sent through the project's
embedded SMTP sink (so its web copy and the archive exist as after any send), and Debian's
chromium renders the received HTML part and the pages of the output folder.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from email import message_from_bytes, policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app import App
from publisher.config import load_settings
from publisher.smtpsink import SmtpSink

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
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
