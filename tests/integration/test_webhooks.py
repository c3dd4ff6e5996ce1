"""POST /webhooks/<provider> over real HTTP (uvicorn on 127.0.0.1 port 0), with genuine and
forged signatures for each provider, checking the subscriber's status and consent history.

SES's signing certificate and SubscribeURL are served by a real local HTTPS server that
holds a trustme certificate for sns.us-east-1.amazonaws.com (tests/webhook_signing.py):
the same TLS checks as in production, and no request leaves the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from publisher.app import App
from publisher.config import load_settings
from publisher.inbound import WebhookReplays
from publisher.model import ConsentEvent, ConsentSource, SubscriberStatus
from tests.conftest import write_config
from tests.integration.in_process import publisher_cli
from tests.integration.test_run import free_port, wait_for
from tests.integration.test_web import Served, served
from tests.webhook_signing import (
    CERT_PATH,
    TOPIC,
    FakeSns,
    SendgridSigner,
    SnsSigner,
    body_of,
    fixture,
    mailgun_body,
)

POSTMARK_USER, POSTMARK_PASSWORD = "postmark-hooks", "pm-password-0123456789"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
ADDRESSES = [
    # SES fixtures
    "jane@example.com",
    "mary@example.com",
    "richard@example.com",
    "recipient@example.com",
    # Postmark
    "john@example.com",
    "paula@example.com",
    "carla@example.com",
    "leaving@example.com",
    # Mailgun
    "alice@example.com",
    "dave@example.com",
    "erin@example.com",
    "frank@example.com",
    # SendGrid
    "deferred@example.com",
    "bounce@example.com",
    "blocked@example.com",
    "dropped@example.com",
    "spamreport@example.com",
    "unsubscribe@example.com",
    "group_unsubscribe@example.com",
    "delivered@example.com",
]


@dataclass
class Hooked:
    app: App
    server: Served
    sns: FakeSns
    signer: SnsSigner
    sendgrid: SendgridSigner

    def post(self, provider: str, body: bytes | Any, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else body_of(body)
        headers.setdefault("Content-Type", "application/json")
        return httpx.post(
            f"{self.server.url}webhooks/{provider}", content=content, headers=headers, timeout=30
        )

    def status(self, email: str) -> SubscriberStatus:
        found = [s for s in self.app.subscribers(search=email) if s.email == email]
        assert found, email
        return found[0].status

    def webhook_history(self, email: str) -> list[ConsentEvent]:
        return [
            event
            for event in self.app.subscriber_admin.history(email)
            if event.source is ConsentSource.WEBHOOK
        ]


def webhook_config(
    folder: Path, database_url: str, sns: FakeSns, sendgrid_key: str, *, trusted: bool = True
) -> Path:
    table = ", ".join(
        line
        for line in [
            *sns.settings().strip().splitlines(),
            f'postmark_user = "{POSTMARK_USER}"',
            f'postmark_password = "{POSTMARK_PASSWORD}"',
            f'mailgun_signing_key = "{MAILGUN_KEY}"',
            f'sendgrid_public_key = "{sendgrid_key}"',
            "max_body_bytes = 65536",
        ]
        if trusted or not line.startswith("ses_trust_file")
    )
    return write_config(folder, database_url, webhooks=f"{{ {table} }}")


def start(app: App) -> Iterator[Served]:
    yield from served(app, app.web_routes())


@pytest.fixture
def hooked(tmp_path: Path, database_url: str) -> Iterator[Hooked]:
    signer, sendgrid = SnsSigner(), SendgridSigner()
    with FakeSns(tmp_path, signer) as sns:
        config = webhook_config(tmp_path, database_url, sns, sendgrid.public_key)
        app = App(load_settings(config, environ={}))
        for address in ADDRESSES:
            app.add_subscriber(address)
        for server in start(app):
            yield Hooked(app, server, sns, signer, sendgrid)
        app.close()


# -- Amazon SES through SNS ----------------------------------------------------------------


def test_ses_subscription_confirmation_visits_the_subscribe_url(hooked: Hooked) -> None:
    answer = hooked.post(
        "ses",
        hooked.signer.subscription_confirmation(),
        **{"x-amz-sns-message-type": "SubscriptionConfirmation"},
    )
    assert answer.status_code == 200, answer.text
    assert hooked.sns.confirmed.is_set()
    visits = [r for r in hooked.sns.requests if r.startswith("/?Action=ConfirmSubscription")]
    assert len(visits) == 1 and TOPIC in visits[0]


def test_a_forged_ses_subscription_confirmation_is_refused_and_not_visited(
    hooked: Hooked,
) -> None:
    forged = SnsSigner().subscription_confirmation()
    answer = hooked.post("ses", forged)
    assert answer.status_code == 401
    # the visit would happen before the answer: none was made
    assert not [r for r in hooked.sns.requests if "ConfirmSubscription" in r]
    other_topic = hooked.signer.subscription_confirmation(TopicArn="arn:aws:sns:us-east-1:6:x")
    assert hooked.post("ses", other_topic).status_code == 401
    assert hooked.sns.requests == [CERT_PATH]  # fetched once, for the forged one


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounces_and_complaints_suppress_through_the_consent_api(
    hooked: Hooked, version: str
) -> None:
    for name in ("ses_bounce_permanent.json", "ses_complaint.json", "ses_event_bounce.json"):
        answer = hooked.post("ses", hooked.signer.notification(fixture(name), version=version))
        assert answer.status_code == 200, answer.text
        assert answer.json()["acted"] == 1
    assert hooked.status("jane@example.com") is SubscriberStatus.BOUNCED
    assert hooked.status("richard@example.com") is SubscriberStatus.COMPLAINED
    assert hooked.status("recipient@example.com") is SubscriberStatus.BOUNCED
    (event,) = hooked.webhook_history("jane@example.com")
    assert event.kind == "bounced" and "ses:" in event.detail and "5.1.1" in event.detail
    assert event.client == "127.0.0.1"
    (complaint,) = hooked.webhook_history("richard@example.com")
    assert complaint.kind == "complained" and "abuse" in complaint.detail
    # SNS signs with a handful of certificates: fetched once, not per message
    assert hooked.sns.requests.count(CERT_PATH) == 1


def test_a_transient_ses_bounce_counts_as_a_soft_bounce(hooked: Hooked) -> None:
    answer = hooked.post("ses", hooked.signer.notification(fixture("ses_bounce_transient.json")))
    assert answer.status_code == 200
    assert hooked.status("mary@example.com") is SubscriberStatus.CONFIRMED
    assert [e.kind for e in hooked.webhook_history("mary@example.com")] == ["soft_bounced"]


def test_forged_stale_and_replayed_ses_messages_change_nothing(hooked: Hooked) -> None:
    bounce = fixture("ses_bounce_permanent.json")
    forged = SnsSigner().notification(bounce)
    tampered = hooked.signer.notification(bounce)
    tampered["Message"] = tampered["Message"].replace("Permanent", "Permanent ")
    stale = hooked.signer.notification(bounce, Timestamp="2016-01-27T14:59:38.237Z")
    elsewhere = hooked.signer.notification(
        bounce, SigningCertURL="https://example.com/SimpleNotificationService-x.pem"
    )
    for message in (forged, tampered, stale, elsewhere):
        assert hooked.post("ses", message).status_code == 401
    assert hooked.post("ses", bounce).status_code == 401  # raw delivery: nothing signs it
    assert hooked.status("jane@example.com") is SubscriberStatus.CONFIRMED
    assert hooked.webhook_history("jane@example.com") == []
    # a genuine message delivered twice (SNS delivers at least once) is acted on once
    genuine = hooked.signer.notification(bounce)
    assert hooked.post("ses", genuine).json()["acted"] == 1
    assert hooked.post("ses", genuine).status_code == 200
    assert len(hooked.webhook_history("jane@example.com")) == 1


# -- Postmark --------------------------------------------------------------------------------


def test_postmark_records_with_the_right_credentials_are_acted_on(hooked: Hooked) -> None:
    auth = httpx.BasicAuth(POSTMARK_USER, POSTMARK_PASSWORD)
    for name in (
        "postmark_bounce.json",
        "postmark_spam_complaint.json",
        "postmark_subscription_change.json",
        "postmark_soft_bounce.json",
    ):
        answer = httpx.post(
            hooked.server.url + "webhooks/postmark", json=fixture(name), auth=auth, timeout=30
        )
        assert answer.status_code == 200, answer.text
    assert hooked.status("john@example.com") is SubscriberStatus.BOUNCED
    assert hooked.status("carla@example.com") is SubscriberStatus.COMPLAINED
    assert hooked.status("leaving@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert hooked.status("paula@example.com") is SubscriberStatus.CONFIRMED
    assert [e.kind for e in hooked.webhook_history("paula@example.com")] == ["soft_bounced"]


def test_postmark_without_the_right_credentials_gets_401_and_changes_nothing(
    hooked: Hooked,
) -> None:
    url = hooked.server.url + "webhooks/postmark"
    body = fixture("postmark_bounce.json")
    for auth in (None, httpx.BasicAuth(POSTMARK_USER, "wrong"), httpx.BasicAuth("x", "y")):
        answer = httpx.post(url, json=body, auth=auth, timeout=30)
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert hooked.status("john@example.com") is SubscriberStatus.CONFIRMED
    assert hooked.webhook_history("john@example.com") == []


def test_soft_bounces_over_the_limit_suppress_as_bounced(hooked: Hooked) -> None:
    auth = httpx.BasicAuth(POSTMARK_USER, POSTMARK_PASSWORD)
    limit = hooked.app.settings.inbound.soft_bounce_limit
    for _ in range(limit):
        answer = httpx.post(
            hooked.server.url + "webhooks/postmark",
            json=fixture("postmark_soft_bounce.json"),
            auth=auth,
            timeout=30,
        )
        assert answer.status_code == 200
    assert hooked.status("paula@example.com") is SubscriberStatus.BOUNCED


# -- Mailgun ---------------------------------------------------------------------------------


def test_mailgun_events_with_a_genuine_signature_are_acted_on(hooked: Hooked) -> None:
    for name in (
        "mailgun_failed_permanent.json",
        "mailgun_failed_temporary.json",
        "mailgun_complained.json",
        "mailgun_unsubscribed.json",
    ):
        answer = hooked.post("mailgun", mailgun_body(name, MAILGUN_KEY))
        assert answer.status_code == 200, answer.text
    assert hooked.status("alice@example.com") is SubscriberStatus.BOUNCED
    assert hooked.status("dave@example.com") is SubscriberStatus.CONFIRMED
    assert [e.kind for e in hooked.webhook_history("dave@example.com")] == ["soft_bounced"]
    assert hooked.status("erin@example.com") is SubscriberStatus.COMPLAINED
    assert hooked.status("frank@example.com") is SubscriberStatus.UNSUBSCRIBED


def test_forged_stale_and_replayed_mailgun_requests_get_401(hooked: Hooked) -> None:
    name = "mailgun_failed_permanent.json"
    forged = mailgun_body(name, "not-the-signing-key")
    stale = mailgun_body(name, MAILGUN_KEY, timestamp=1529006854)
    as_documented = fixture(name)  # the documentation's own signature, under another key
    for body in (forged, stale, as_documented):
        assert hooked.post("mailgun", body).status_code == 401
    assert hooked.status("alice@example.com") is SubscriberStatus.CONFIRMED
    assert hooked.webhook_history("alice@example.com") == []
    genuine = body_of(mailgun_body(name, MAILGUN_KEY))
    assert hooked.post("mailgun", genuine).status_code == 200
    assert hooked.post("mailgun", genuine).status_code == 401  # the token was used
    assert len(hooked.webhook_history("alice@example.com")) == 1


def _second_instance(hooked: Hooked) -> Iterator[str]:
    """The URL of another App (another process, say) on the same database and settings."""
    other = App(hooked.app.settings)
    try:
        for server in start(other):
            yield server.url
    finally:
        other.close()


def test_a_mailgun_replay_to_a_second_instance_on_the_same_database_is_refused(
    hooked: Hooked,
) -> None:
    genuine = body_of(mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY))
    assert hooked.post("mailgun", genuine).status_code == 200
    for url in _second_instance(hooked):
        again = httpx.post(
            f"{url}webhooks/mailgun",
            content=genuine,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert again.status_code == 401
    assert len(hooked.webhook_history("alice@example.com")) == 1


def test_an_sns_message_redelivered_to_a_second_instance_is_acted_on_once(
    hooked: Hooked,
) -> None:
    genuine = hooked.signer.notification(fixture("ses_bounce_permanent.json"))
    assert hooked.post("ses", genuine).json()["acted"] == 1
    for url in _second_instance(hooked):
        again = httpx.post(f"{url}webhooks/ses", json=genuine, timeout=30)
        assert again.status_code == 200 and again.json()["acted"] == 0
    assert len(hooked.webhook_history("jane@example.com")) == 1


def test_seen_tokens_are_kept_until_their_window_ends_then_dropped(
    tmp_path: Path, database_url: str
) -> None:
    app = App(load_settings(write_config(tmp_path, database_url), environ={}))
    replays = WebhookReplays(app.settings, app.store)
    try:
        assert replays.claim_now("mailgun", "token-1", now=1000.0, until=1300.0)
        assert not replays.claim_now("mailgun", "token-1", now=1299.0, until=1599.0)
        assert replays.claim_now("ses", "token-1", now=1299.0, until=1599.0)  # per provider
        replays.release_now("ses", "token-1")  # acting on it failed: the retry is taken
        assert replays.claim_now("ses", "token-1", now=1299.0, until=1599.0)
        # past its window the row goes (its timestamp check refuses a replay from then on)
        assert replays.claim_now("mailgun", "token-2", now=1301.0, until=1601.0)
        assert replays.kept() == 2
        assert replays.claim_now("mailgun", "token-1", now=1301.0, until=1601.0)
    finally:
        app.close()


# -- SendGrid --------------------------------------------------------------------------------


def test_a_signed_sendgrid_batch_is_acted_on_event_by_event(hooked: Hooked) -> None:
    body = body_of(fixture("sendgrid_events.json"))
    answer = hooked.post("sendgrid", body, **hooked.sendgrid.headers(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"acted": 7, "unknown": 0, "skipped": 0, "ignored": 5}
    expected = {
        "bounce@example.com": SubscriberStatus.BOUNCED,
        "dropped@example.com": SubscriberStatus.BOUNCED,
        "spamreport@example.com": SubscriberStatus.COMPLAINED,
        "unsubscribe@example.com": SubscriberStatus.UNSUBSCRIBED,
        "group_unsubscribe@example.com": SubscriberStatus.UNSUBSCRIBED,
        "deferred@example.com": SubscriberStatus.CONFIRMED,
        "blocked@example.com": SubscriberStatus.CONFIRMED,
        "delivered@example.com": SubscriberStatus.CONFIRMED,
    }
    assert {email: hooked.status(email) for email in expected} == expected
    assert [e.kind for e in hooked.webhook_history("deferred@example.com")] == ["soft_bounced"]


def test_a_forged_or_stale_sendgrid_batch_gets_401_and_changes_nothing(hooked: Hooked) -> None:
    body = body_of(fixture("sendgrid_events.json"))
    forged = SendgridSigner().headers(body)
    stale = hooked.sendgrid.headers(body, timestamp=1513299569)
    altered = hooked.sendgrid.headers(body)
    for headers, payload in ((forged, body), (stale, body), (altered, body + b"\n"), ({}, body)):
        assert hooked.post("sendgrid", payload, **headers).status_code == 401
    assert hooked.status("bounce@example.com") is SubscriberStatus.CONFIRMED
    assert hooked.webhook_history("bounce@example.com") == []


def test_a_malformed_event_is_skipped_and_the_rest_of_the_batch_acted_on(hooked: Hooked) -> None:
    events = [
        "not an event",
        {"event": "bounce", "type": "bounce"},
        {"event": "spamreport", "email": "spamreport@example.com"},
        {"event": "bounce", "email": "nobody-we-know@example.net", "type": "bounce"},
    ]
    body = json.dumps(events).encode()
    answer = hooked.post("sendgrid", body, **hooked.sendgrid.headers(body))
    assert answer.status_code == 200
    assert answer.json() == {"acted": 1, "unknown": 1, "skipped": 2, "ignored": 0}
    assert hooked.status("spamreport@example.com") is SubscriberStatus.COMPLAINED
    assert hooked.app.subscriber_admin.history("nobody-we-know@example.net") == []


# -- the route itself -------------------------------------------------------------------------


def test_unknown_providers_get_404_and_big_bodies_413(hooked: Hooked) -> None:
    assert hooked.post("sparkpost", b"[]").status_code == 404
    assert hooked.post("", b"[]").status_code in (404, 405)
    big = b"[" + b" " * 70_000 + b"]"
    assert hooked.post("sendgrid", big, **hooked.sendgrid.headers(big)).status_code == 413
    # not JSON at all, signed or not
    assert hooked.post("ses", b"Type=Notification").status_code == 400


def test_a_provider_without_credentials_is_off(tmp_path: Path, sqlite_url: str) -> None:
    app = App(load_settings(write_config(tmp_path, sqlite_url), environ={}))
    app.add_subscriber("alice@example.com")
    try:
        for server in start(app):
            for provider in ("ses", "postmark", "mailgun", "sendgrid"):
                answer = httpx.post(f"{server.url}webhooks/{provider}", content=b"{}", timeout=30)
                assert answer.status_code == 404, provider
    finally:
        app.close()


def test_credentials_come_from_the_environment(tmp_path: Path, sqlite_url: str) -> None:
    environ = {
        "PUBLISHER_WEBHOOKS_MAILGUN_SIGNING_KEY": MAILGUN_KEY,
        "PUBLISHER_WEBHOOKS_POSTMARK_USER": POSTMARK_USER,
        "PUBLISHER_WEBHOOKS_POSTMARK_PASSWORD": POSTMARK_PASSWORD,
    }
    app = App(load_settings(write_config(tmp_path, sqlite_url), environ=environ))
    assert MAILGUN_KEY not in repr(app.settings) and POSTMARK_PASSWORD not in repr(app.settings)
    app.add_subscriber("alice@example.com")
    try:
        for server in start(app):
            body = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY)
            answer = httpx.post(f"{server.url}webhooks/mailgun", json=body, timeout=30)
            assert answer.status_code == 200
    finally:
        app.close()
    found = app.subscribers(search="alice@example.com")
    assert found[0].status is SubscriberStatus.BOUNCED


def _a_bounce_answers_503_and_changes_nothing(config: Path, signer: SnsSigner) -> None:
    """A signed SES bounce for a subscriber, to a server that cannot verify it."""
    app = App(load_settings(config, environ={}))
    app.add_subscriber("jane@example.com")
    try:
        for server in start(app):
            message = signer.notification(fixture("ses_bounce_permanent.json"))
            answer = httpx.post(f"{server.url}webhooks/ses", json=message, timeout=30)
            assert answer.status_code == 503
        assert app.subscribers(search="jane@example.com")[0].status is SubscriberStatus.CONFIRMED
    finally:
        app.close()


def test_an_sns_impostor_without_a_trusted_certificate_is_not_believed(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The same local server, but its CA is not in the trust store: TLS fails, so its
    "signing certificate" is never read, and nothing changes (503: SNS would retry)."""
    signer = SnsSigner()
    with FakeSns(tmp_path, signer) as sns:
        config = webhook_config(
            tmp_path, sqlite_url, sns, SendgridSigner().public_key, trusted=False
        )
        _a_bounce_answers_503_and_changes_nothing(config, signer)
        assert sns.requests == []  # the TLS handshake failed before any request


def test_an_unreachable_sns_answers_503_so_sns_retries(tmp_path: Path, sqlite_url: str) -> None:
    signer = SnsSigner()
    sns = FakeSns(tmp_path, signer)  # never started: its port refuses connections
    sns.server.server_close()
    config = webhook_config(tmp_path, sqlite_url, sns, SendgridSigner().public_key)
    _a_bounce_answers_503_and_changes_nothing(config, signer)


# -- settings ---------------------------------------------------------------------------------


def _config(tmp_path: Path, sqlite_url: str, table: str) -> Path:
    return write_config(tmp_path, sqlite_url, webhooks=f"{{ {table} }}")


@pytest.mark.parametrize(
    ("table", "command", "named"),
    [
        ('postmark_user = "hooks"', "status", "webhooks.postmark_password"),
        ('postmark_user = "a:b", postmark_password = "pw-123456"', "status", "postmark_user"),
        ('ses_connect_to = "nowhere"', "status", "webhooks.ses_connect_to"),
        ('ses_trust_file = "missing.pem"', "status", "webhooks.ses_trust_file"),
        ("replay_window_seconds = 0", "status", "webhooks.replay_window_seconds"),
        ('sendgrid_public_key = "bm90IGEga2V5"', "serve", "webhooks.sendgrid_public_key"),
        (
            'ses_topic_arns = "arn:aws:sns:us-east-1:1:t", ses_trust_file = "junk.pem"',
            "serve",
            "webhooks.ses_trust_file",
        ),
    ],
)
def test_a_bad_webhook_setting_is_one_line_and_exit_two(
    tmp_path: Path, sqlite_url: str, table: str, command: str, named: str
) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n", encoding="utf-8")
    config = _config(tmp_path, sqlite_url, table)
    args = ["serve", "--port", "0"] if command == "serve" else [command]
    result = publisher_cli("--config", str(config), *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the line and its hint


def test_a_webhook_secret_in_a_readable_config_file_is_warned_about_and_never_shown(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = _config(tmp_path, sqlite_url, f'mailgun_signing_key = "{MAILGUN_KEY}"')
    config.chmod(0o644)
    result = publisher_cli("--config", str(config), "status")
    assert "webhooks.mailgun_signing_key" in result.stderr
    assert MAILGUN_KEY not in result.stderr + result.stdout


# -- the main job, as the operator runs it -----------------------------------------------------


def test_publisher_run_takes_webhooks_with_secrets_from_the_environment(
    tmp_path: Path, sqlite_url: str
) -> None:
    """`publisher run` as a real process, the signing secrets only in its environment: a
    signed Mailgun bounce and a signed SendGrid complaint change the statuses that
    `publisher subscribers list --json` shows; a forged one does not."""
    sendgrid = SendgridSigner()
    config = write_config(tmp_path, sqlite_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env.update(
        PUBLISHER_CONFIG=str(config),
        PUBLISHER_WEBHOOKS_MAILGUN_SIGNING_KEY=MAILGUN_KEY,
        PUBLISHER_WEBHOOKS_SENDGRID_PUBLIC_KEY=sendgrid.public_key,
    )
    cli = [sys.executable, "-m", "publisher"]
    for address in ("alice@example.com", "spamreport@example.com", "erin@example.com"):
        subprocess.run([*cli, "subscribers", "add", address], env=env, check=True, cwd=tmp_path)
    process = subprocess.Popen(
        [*cli, "run", "--no-send", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/webhooks/"

    def up() -> bool:
        assert process.poll() is None, process.communicate()[1]
        try:
            return httpx.post(url + "nosuch", content=b"{}", timeout=2).status_code == 404
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, 60, "publisher run to serve")
        bounce = httpx.post(
            url + "mailgun", json=mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY)
        )
        assert bounce.status_code == 200, bounce.text
        complaint = body_of([{"event": "spamreport", "email": "spamreport@example.com"}])
        answer = httpx.post(
            url + "sendgrid", content=complaint, headers=sendgrid.headers(complaint)
        )
        assert answer.status_code == 200 and answer.json()["acted"] == 1
        forged = mailgun_body("mailgun_complained.json", "a-key-we-never-gave-out")
        assert httpx.post(url + "mailgun", json=forged).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert MAILGUN_KEY not in stderr
    listed = subprocess.run(
        [*cli, "subscribers", "list", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    statuses = {row["email"]: row["status"] for row in json.loads(listed.stdout)}
    assert statuses == {
        "alice@example.com": "bounced",
        "spamreport@example.com": "complained",
        "erin@example.com": "confirmed",
    }
