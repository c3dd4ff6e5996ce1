"""SpamAssassin scores of every mail type, as sent, against the templates of a base revision.

    python bench/mail_quality.py               # score, print, append to bench/results.md
    python bench/mail_quality.py --json        # figures as JSON on stdout, nothing written
    python bench/mail_quality.py --baseline REV   # compare with REV's templates (default: main)

Each mail (the digest, the confirmation, the welcome mail, the preference data mail) is
made by the project's own code from the five seeds: the digest as `publisher send` sends it
to one reader (its dry run, with Date and Message-ID), the others as the web pages mail them. `spamassassin -L -t` (local
tests only: no DNS, no network) scores it; the target is below 1.0 each. NO_RECEIVED and
NO_RELAYS fire on any message that has not yet crossed an MTA; they are shown, as scored.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher.app import App
from publisher.config import load_settings
from publisher.messages import confirmation_message, data_message, welcome_message
from publisher.render import template_environment

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
TARGET = 1.0
TEMPLATES = (
    "digest.html.j2",
    "digest.txt.j2",
    "confirm.html.j2",
    "confirm.txt.j2",
    "welcome.html.j2",
    "welcome.txt.j2",
    "data.html.j2",
    "data.txt.j2",
)
CONFIG = """database_url = "sqlite:///{folder}/db.sqlite"
inbox = "{folder}/inbox"
output_dir = "{folder}/public"
base_url = "https://news.harbin-example.org/"
secret_key = "bench-mail-quality-secret-key-0123456789"
{templates}
[site]
title = "Harbin News"
postal_address = "Harbin News, 1 Zhongshan Road, Nangang District, Harbin 150001, China"

[smtp]
from_address = "Harbin News <news@harbin-example.org>"
"""


def make_mails(folder: Path, templates: Path | None = None) -> dict[str, bytes]:
    """Every mail type, bytes as they go to the SMTP server."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "seeds", folder / "inbox", dirs_exist_ok=True)
    config = folder / "publisher.toml"
    line = f'templates_dir = "{templates}"' if templates else ""
    config.write_text(CONFIG.format(folder=folder, templates=line), encoding="utf-8")
    config.chmod(0o600)
    app = App(load_settings(config, environ={}))
    try:
        app.ingest(now=lambda: NOW)
        app.add_subscriber("li.na@example.com", name="Li Na")
        app.send_digests(now=NOW, dry_run=True, out_dir=folder / "preview")
        settings = app.settings
        confirmation = confirmation_message(
            template_environment(settings),
            settings,
            to_name="Li Na",
            to_address="li.na@example.com",
            confirm_url=settings.url("confirm/IjEi.example-confirmation-token"),
            categories=["Harbin Today"],
            frequency="weekly",
            now=NOW,
        )
        preferences_url = settings.url("preferences/IjEi.example-preferences-token")
        welcome = welcome_message(
            template_environment(settings),
            settings,
            to_name="Li Na",
            to_address="li.na@example.com",
            preferences_url=preferences_url,
            categories=["Harbin Today"],
            frequency="weekly",
            first_digest="on Monday 30 November 2026 at 08:00 UTC",
            now=NOW,
        )
        held = {"subscriber": {"email": "li.na@example.com", "name": "Li Na"}}
        data = data_message(
            template_environment(settings),
            settings,
            to_name="Li Na",
            to_address="li.na@example.com",
            preferences_url=preferences_url,
            data=json.dumps(held, indent=2).encode("utf-8"),
            now=NOW,
        )
    finally:
        app.close()
    return {
        "digest": (folder / "preview" / "li.na@example.com.eml").read_bytes(),
        "confirmation": bytes(confirmation),
        "welcome": bytes(welcome),
        "data": bytes(data),
    }


def score(message: bytes, prefs: Path) -> tuple[float, list[str]]:
    """SpamAssassin's score and the rules that fired."""
    done = subprocess.run(
        ["spamassassin", "-L", "-t", "-p", str(prefs)],
        input=message,
        capture_output=True,
        check=True,
        timeout=120,
    )
    head = done.stdout.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status:(.*(?:\n[ \t].*)*)", head, re.M)
    if status is None:
        raise RuntimeError("spamassassin gave no X-Spam-Status")
    text = " ".join(status.group(1).split())
    found = re.search(r"score=(-?[\d.]+)", text)
    rules = re.search(r"tests=(\S*)", text)
    assert found is not None
    return float(found.group(1)), [r for r in (rules.group(1) if rules else "").split(",") if r]


def base_templates(revision: str, into: Path) -> Path | None:
    """The mail templates of `revision` in a folder (None if git cannot give them)."""
    into.mkdir(parents=True, exist_ok=True)
    known = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
    )
    if known.returncode != 0:
        return None
    for name in TEMPLATES:
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:templates/{name}"],
            capture_output=True,
        )
        if shown.returncode != 0:
            continue  # not in the base: the current template stands in (render falls back)
        (into / name).write_bytes(shown.stdout)
    return into


def measure(baseline: str | None) -> dict[str, dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="mail-quality-") as temporary:
        folder = Path(temporary)
        prefs = folder / "user_prefs"
        prefs.write_text("", encoding="utf-8")
        figures: dict[str, dict[str, object]] = {}
        for kind, data in make_mails(folder / "now").items():
            value, rules = score(data, prefs)
            figures[kind] = {"score": value, "rules": rules, "bytes": len(data)}
        old = base_templates(baseline, folder / "old-templates") if baseline else None
        if old is not None:
            for kind, data in make_mails(folder / "base", old).items():
                value, rules = score(data, prefs)
                figures[kind]["baseline"] = {"score": value, "rules": rules}
        return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="JSON on stdout, write nothing")
    parser.add_argument("--baseline", default="main", help="git revision of the baseline")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    if shutil.which("spamassassin") is None:
        print("spamassassin not found (Debian: apt-get install spamassassin)", file=sys.stderr)
        return 2
    figures = measure(None if args.no_baseline else args.baseline)
    if args.json:
        print(json.dumps(figures))
        return 0
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    version = subprocess.run(["spamassassin", "--version"], capture_output=True, text=True)
    sa = version.stdout.split("\n", 1)[0].strip()
    lines = [
        f"## mail quality — {when}, `spamassassin -L -t` ({sa}), Python "
        f"{platform.python_version()}; baseline: templates of `{args.baseline}`",
        "",
        "| mail | score | rules | baseline score | baseline rules |",
        "|------|-------|-------|----------------|----------------|",
    ]
    for kind, figure in figures.items():
        base = figure.get("baseline") or {}
        assert isinstance(base, dict)
        lines.append(
            f"| {kind} | {figure['score']} | {', '.join(figure['rules'])} "  # type: ignore[arg-type]
            f"| {base.get('score', '—')} | {', '.join(base.get('rules', []))} |"
        )
    lines.append(f"\nTarget: below {TARGET} each.\n")
    report = "\n".join(lines)
    print(report)
    with (ROOT / "bench" / "results.md").open("a", encoding="utf-8") as out:
        out.write("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
