"""Webhook latency: signed provider requests against a real `publisher serve`, over HTTP.

Starts `publisher serve` (its own process, SQLite in a temp dir, every provider configured,
--subscribers imported with the real CLI) and, in this process, a local HTTPS stand-in for
sns.us-east-1.amazonaws.com (tests/webhook_signing.py: trusted through
webhooks.ses_trust_file, so nothing leaves the machine). Every request is signed before
the clock starts and names its own subscriber, so each one changes a status and stores a
consent event (a hard bounce: the common case of a bounce storm). Cases, interleaved
round by round on one kept-alive connection per client:

- `baseline`: POST /webhooks/nosuch, answered 404 by the same route: HTTP and routing only;
- `ses` (SNS SignatureVersion 2, RSA verify; the certificate is fetched by one untimed
  first request, whose time is shown on its own line),
  `postmark` (basic auth), `mailgun` (HMAC), `sendgrid` (ECDSA P-256; a batch of 1 event).

Then --batches SendGrid batches of --batch events each (a bounce storm arrives so), timed
whole: SendGrid waits for one answer per batch.

Prints p50 / p95 / p99 / max per case and appends them to bench/results.md with the
machine and its load; target p99 < 50 ms.

    python bench/webhooks.py                      # 400 requests per case, 1 client
    python bench/webhooks.py --requests 200 --clients 4
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.webhook_signing import (  # (run as a script: the project root on sys.path)
    FakeSns,
    SendgridSigner,
    SnsSigner,
    fixture,
    mailgun_body,
)

RESULTS = ROOT / "bench" / "results.md"
POSTMARK_USER, POSTMARK_PASSWORD = "bench-hooks", "bench-postmark-password-0123"
MAILGUN_KEY = "key-bench-0123456789abcdef0123456789ab"
CASES = ("baseline", "ses", "postmark", "mailgun", "sendgrid")
Request = tuple[str, bytes, dict[str, str]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"publisher serve exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise SystemExit("publisher serve did not start within 60 s")


def configure(folder: Path, port: int, sns: FakeSns, sendgrid: SendgridSigner) -> Path:
    config = folder / "publisher.toml"
    config.write_text(
        f'database_url = "sqlite:///{folder / "publisher.db"}"\n'
        f'inbox = "{folder / "inbox"}"\noutput_dir = "{folder / "public"}"\n'
        f'base_url = "http://127.0.0.1:{port}/"\n'
        'secret_key = "bench-webhooks-secret-of-at-least-32-bytes"\n'
        "[inbound]\nsoft_bounce_limit = 1000\n"
        f"[webhooks]\n{sns.settings()}"
        f'postmark_user = "{POSTMARK_USER}"\npostmark_password = "{POSTMARK_PASSWORD}"\n'
        f'mailgun_signing_key = "{MAILGUN_KEY}"\nsendgrid_public_key = "{sendgrid.public_key}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


def import_subscribers(config: Path, folder: Path, emails: list[str]) -> None:
    csv = folder / "subscribers.csv"
    csv.write_text("email\n" + "\n".join(emails) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "publisher", "--config", str(config)]
    subprocess.run([*command, "subscribers", "import", str(csv)], check=True, capture_output=True)


def requests_for(
    case: str, emails: Iterator[str], signer: SnsSigner, sendgrid: SendgridSigner
) -> Callable[[], Request]:
    """A maker of one signed request of `case`, each naming the next address."""
    json_headers = {"Content-Type": "application/json"}
    auth = "Basic " + base64.b64encode(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}".encode()).decode()

    def ses() -> Request:
        bounce = fixture("ses_bounce_permanent.json")
        bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = next(emails)
        body = json.dumps(signer.notification(bounce, version="2")).encode()
        return "/webhooks/ses", body, json_headers

    def postmark() -> Request:
        record = {**fixture("postmark_bounce.json"), "Email": next(emails)}
        return (
            "/webhooks/postmark",
            json.dumps(record).encode(),
            {**json_headers, "Authorization": auth},
        )

    def mailgun() -> Request:
        data = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY)
        data["event-data"]["recipient"] = next(emails)
        return "/webhooks/mailgun", json.dumps(data).encode(), json_headers

    def sendgrid_batch() -> Request:
        event = {**fixture("sendgrid_events.json")[5], "email": next(emails)}
        body = json.dumps([event]).encode()
        return "/webhooks/sendgrid", body, sendgrid.headers(body)

    def baseline() -> Request:
        return "/webhooks/nosuch", b"[]", json_headers

    makers = {"ses": ses, "postmark": postmark, "mailgun": mailgun, "sendgrid": sendgrid_batch}
    return makers.get(case, baseline)


def client(
    port: int,
    work: list[tuple[str, Request]],
    timings: dict[str, list[float]],
    acted: int = 1,
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for case, (path, body, headers) in work:
        started = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        reply = answer.read()
        elapsed = time.perf_counter() - started
        expected = 404 if case == "baseline" else 200
        if answer.status != expected:
            raise SystemExit(f"{case}: answered {answer.status}, expected {expected}")
        if case != "baseline" and json.loads(reply)["acted"] != acted:
            raise SystemExit(f"{case}: the event was not acted on: {reply!r}")
        timings[case].append(elapsed * 1000)
    connection.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per case")
    parser.add_argument("--clients", type=int, default=1, help="concurrent connections")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per SendGrid batch")
    parser.add_argument("--batches", type=int, default=3, help="SendGrid batches (0: none)")
    parser.add_argument("--no-append", action="store_true", help="leave results.md alone")
    args = parser.parse_args()
    needed = args.requests * (len(CASES) - 1) + 1 + args.batch * args.batches
    if args.subscribers < needed:
        raise SystemExit(f"--subscribers must be at least {needed} (one per request)")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_name:
        tmp = Path(tmp_name)
        signer, sendgrid = SnsSigner(), SendgridSigner()
        with FakeSns(tmp, signer) as sns:
            port = free_port()
            config = configure(tmp, port, sns, sendgrid)
            emails = [
                f"reader{n}.{uuid.uuid4().hex[:6]}@example.com" for n in range(args.subscribers)
            ]
            print(f"importing {args.subscribers} subscribers ...")
            import_subscribers(config, tmp, emails)
            addresses = iter(emails)
            makers = {case: requests_for(case, addresses, signer, sendgrid) for case in CASES}
            # interleaved: every round sends one request of each case
            work = [(case, makers[case]()) for _ in range(args.requests) for case in CASES]
            shares = [work[i :: args.clients] for i in range(args.clients)]
            timings: dict[str, list[float]] = {case: [] for case in CASES}
            serve = [
                sys.executable, "-m", "publisher", "--config", str(config),
                "serve", "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
            log = tmp / "serve.log"
            with process(serve, log) as proc:
                wait_listening(port, proc, log)
                first: dict[str, list[float]] = {"ses": []}
                client(port, [("ses", makers["ses"]())], first)
                print(f"{len(work)} signed requests, {args.clients} client(s) ...")
                started = time.perf_counter()
                threads = [
                    threading.Thread(target=client, args=(port, share, timings)) for share in shares
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                wall = time.perf_counter() - started
                batches: dict[str, list[float]] = {"batch": []}
                for _ in range(args.batches):
                    events = [
                        {**fixture("sendgrid_events.json")[5], "email": next(addresses)}
                        for _ in range(args.batch)
                    ]
                    body = json.dumps(events).encode()
                    request = ("/webhooks/sendgrid", body, sendgrid.headers(body))
                    client(port, [("batch", request)], batches, acted=args.batch)
            if any(len(timings[case]) != args.requests for case in CASES):
                raise SystemExit(f"a client failed; see the output above and {log}")
    load_after = os.getloadavg()

    header = "| case | requests | p50 ms | p95 ms | p99 ms | max ms | verdict (p99 < 50 ms) |"
    rows = [header, "|---|---:|---:|---:|---:|---:|---|"]
    for case in CASES:
        values = timings[case]
        p99 = percentile(values, 0.99)
        verdict = "" if case == "baseline" else ("ok" if p99 < 50 else "OVER")
        rows.append(
            f"| {case} | {len(values)} | {statistics.median(values):.1f} | "
            f"{percentile(values, 0.95):.1f} | {p99:.1f} | {max(values):.1f} | {verdict} |"
        )
    rows.append(
        f"| ses, first request (fetches the certificate) | 1 | | | | {first['ses'][0]:.1f} | |"
    )
    if batches["batch"]:
        each = batches["batch"]
        rows.append(
            f"| sendgrid, batches of {args.batch} events | {len(each)} | "
            f"{statistics.median(each):.0f} | | | {max(each):.0f} | "
            f"{args.batch / (statistics.median(each) / 1000):.0f} events/s |"
        )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = (
        f"## webhooks — {when}, {args.requests} requests per case, {args.clients} client(s), "
        f"{args.subscribers:,} subscribers, SQLite, Python {platform.python_version()} on "
        f"{platform.machine()} ({os.cpu_count()} CPUs), load {load_before[0]:.1f} → "
        f"{load_after[0]:.1f}, {len(work) / wall:.0f} requests/s overall"
    )
    section = "\n".join([title, "", *rows, ""])
    print(section)
    if not args.no_append:
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write("\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
