"""The pure webhook core: each provider's signature check and its documented payloads.

Signatures are made by tests/webhook_signing.py with keys made here, as each provider
documents them; the payloads are tests/data/webhooks/ (each provider's documented format).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from publisher.webhooks import Batch, FeedbackKind, Malformed, Unauthentic
from publisher.webhooks import ses as sns
from publisher.webhooks.mailgun import mailgun_events, read_mailgun, verify_mailgun
from publisher.webhooks.postmark import check_basic_auth, postmark_events
from publisher.webhooks.sendgrid import load_public_key, sendgrid_events, verify_sendgrid
from tests.webhook_signing import (
    TOPIC,
    SendgridSigner,
    SnsSigner,
    body_of,
    fixture,
    iso_now,
    mailgun_body,
)

MAX_AGE = timedelta(hours=1)


@pytest.fixture(scope="module")
def signer() -> SnsSigner:
    return SnsSigner()


def verify(signer: SnsSigner, message: dict[str, Any], **overrides: Any) -> sns.SnsMessage:
    envelope = sns.parse_envelope(body_of(message))
    options: dict[str, Any] = {"topics": (TOPIC,), "now": datetime.now(UTC), "max_age": MAX_AGE}
    options.update(overrides)
    sns.verify_envelope(envelope, signer.pem, **options)
    return envelope


def kinds(batch: Batch) -> list[tuple[FeedbackKind, str]]:
    return [(event.kind, event.email) for event in batch.events]


# -- SES through SNS ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_genuine_sns_notification_verifies_and_carries_its_ses_bounce(
    signer: SnsSigner, version: str
) -> None:
    message = signer.notification(fixture("ses_bounce_permanent.json"), version=version)
    envelope = verify(signer, message)
    batch = sns.ses_events(envelope.message)
    assert kinds(batch) == [(FeedbackKind.HARD_BOUNCE, "jane@example.com")]
    assert "5.1.1" in batch.events[0].detail and "General" in batch.events[0].detail


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_genuine_subscription_confirmation_verifies(signer: SnsSigner, version: str) -> None:
    envelope = verify(signer, signer.subscription_confirmation(version=version))
    assert envelope.type == sns.SUBSCRIPTION_CONFIRMATION
    assert envelope.subscribe_url is not None and "ConfirmSubscription" in envelope.subscribe_url


def test_a_notification_without_subject_is_signed_without_it(signer: SnsSigner) -> None:
    message = fixture("sns_notification.json")
    message.update(
        TopicArn=TOPIC,
        Timestamp=iso_now(),
        Message=json.dumps(fixture("ses_complaint.json")),
        SigningCertURL="https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem",
    )
    del message["Subject"]
    envelope = verify(signer, signer.sign(message, "2"))
    assert kinds(sns.ses_events(envelope.message)) == [
        (FeedbackKind.COMPLAINT, "richard@example.com")
    ]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.update(Message=m["Message"].replace("jane@", "ann@")),
        lambda m: m.update(MessageId="another"),
        lambda m: m.update(Subject="changed"),
        lambda m: m.update(Type="SubscriptionConfirmation"),
        lambda m: m.update(Signature=base64.b64encode(b"x" * 256).decode()),
        lambda m: m.update(Signature="not base64!"),
        lambda m: m.update(SignatureVersion="3"),
        lambda m: m.pop("Signature"),
        lambda m: m.pop("SigningCertURL"),
    ],
    ids=[
        "message",
        "message-id",
        "subject",
        "type",
        "signature",
        "not-base64",
        "version",
        "no-signature",
        "no-cert-url",
    ],
)
def test_a_tampered_sns_message_is_refused(signer: SnsSigner, tamper: Any) -> None:
    message = signer.notification(fixture("ses_bounce_permanent.json"))
    tamper(message)
    with pytest.raises(Unauthentic):
        verify(signer, message)


def test_a_message_signed_by_another_key_is_refused(signer: SnsSigner) -> None:
    forger = SnsSigner()
    message = forger.notification(fixture("ses_bounce_permanent.json"))
    with pytest.raises(Unauthentic, match="does not match"):
        verify(signer, message)


def test_a_stale_or_future_sns_message_is_refused(signer: SnsSigner) -> None:
    ses = fixture("ses_bounce_permanent.json")
    for offset in (timedelta(hours=-2), timedelta(hours=1)):
        message = signer.notification(ses, Timestamp=iso_now(offset))
        with pytest.raises(Unauthentic, match="stale"):
            verify(signer, message)
    # within the window it passes
    verify(signer, signer.notification(ses, Timestamp=iso_now(timedelta(minutes=-50))))


def test_a_topic_we_were_not_told_to_trust_is_refused(signer: SnsSigner) -> None:
    # any AWS account can have SNS sign messages of its own topic
    message = signer.notification(
        fixture("ses_bounce_permanent.json"), TopicArn="arn:aws:sns:us-east-1:666:mine"
    )
    with pytest.raises(Unauthentic, match="TopicArn"):
        verify(signer, message)


def test_an_expired_signing_certificate_is_refused(signer: SnsSigner) -> None:
    message = signer.notification(fixture("ses_bounce_permanent.json"))
    later = datetime.now(UTC) + timedelta(days=60)
    envelope = sns.parse_envelope(body_of(message))
    with pytest.raises(Unauthentic, match="not valid now"):
        sns.verify_envelope(
            envelope, signer.pem, topics=(TOPIC,), now=later, max_age=timedelta(days=61)
        )
    with pytest.raises(Unauthentic, match="cannot be read"):
        sns.verify_envelope(
            envelope, b"not a certificate", topics=(TOPIC,), now=datetime.now(UTC), max_age=MAX_AGE
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.amazonaws.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://s3.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com\\@evil.example/x.pem",
        "not a url",
    ],
)
def test_a_signing_certificate_url_off_the_sns_hosts_is_never_fetched(
    signer: SnsSigner, url: str
) -> None:
    message = signer.notification(fixture("ses_bounce_permanent.json"), SigningCertURL=url)
    envelope = sns.parse_envelope(body_of(message))
    with pytest.raises(Unauthentic):
        sns.check_envelope(envelope, topics=(TOPIC,), now=datetime.now(UTC), max_age=MAX_AGE)


def test_the_sns_hosts_of_every_region_are_accepted() -> None:
    for host in ("sns.us-east-1.amazonaws.com", "sns.ap-southeast-2.amazonaws.com",
                 "sns.cn-north-1.amazonaws.com.cn"):  # fmt: skip
        sns.check_sns_url(f"https://{host}/SimpleNotificationService-1.pem", "URL")


def test_a_subscribe_url_off_the_sns_hosts_is_refused(signer: SnsSigner) -> None:
    message = signer.subscription_confirmation(SubscribeURL="https://evil.example/?Action=x")
    with pytest.raises(Unauthentic, match="SubscribeURL"):
        verify(signer, message)


def test_a_raw_delivery_or_a_body_that_is_not_sns_is_refused() -> None:
    # raw message delivery posts the SES JSON itself: nothing signs it
    with pytest.raises(Unauthentic):
        sns.parse_envelope(body_of(fixture("ses_bounce_permanent.json")))
    with pytest.raises(Malformed):
        sns.parse_envelope(b"\xff not json")
    with pytest.raises(Malformed):
        sns.parse_envelope(b"[1, 2]")


def test_ses_notifications_map_to_feedback_kinds() -> None:
    def events(name: str) -> list[tuple[FeedbackKind, str]]:
        return kinds(sns.ses_events(json.dumps(fixture(name))))

    assert events("ses_bounce_permanent.json") == [(FeedbackKind.HARD_BOUNCE, "jane@example.com")]
    assert events("ses_bounce_transient.json") == [(FeedbackKind.SOFT_BOUNCE, "mary@example.com")]
    assert events("ses_complaint.json") == [(FeedbackKind.COMPLAINT, "richard@example.com")]
    assert events("ses_event_bounce.json") == [(FeedbackKind.HARD_BOUNCE, "recipient@example.com")]


def test_ses_notifications_we_do_not_act_on_are_ignored_and_bad_recipients_skipped() -> None:
    assert sns.ses_events(json.dumps({"notificationType": "Delivery"})) == Batch(ignored=1)
    not_spam = fixture("ses_complaint.json")
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert sns.ses_events(json.dumps(not_spam)) == Batch(ignored=1)
    several = fixture("ses_bounce_permanent.json")
    several["bounce"]["bouncedRecipients"] = [
        {"status": "5.1.1"},
        "jane@example.com",
        {"emailAddress": "two words@example.com"},
        {"emailAddress": "ok@example.com", "status": "5.1.1"},
    ]
    batch = sns.ses_events(json.dumps(several))
    assert kinds(batch) == [(FeedbackKind.HARD_BOUNCE, "ok@example.com")]
    assert len(batch.skipped) == 3
    assert sns.ses_events("not json").skipped
    assert sns.ses_events(json.dumps({"notificationType": "Bounce"})).skipped


# -- Postmark ----------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_postmark_basic_auth_accepts_only_the_configured_credentials() -> None:
    check_basic_auth(basic("hooks", "s3cret-pass"), "hooks", "s3cret-pass")
    check_basic_auth(
        basic("hooks", "s3cret-pass").replace("Basic", "basic"), "hooks", "s3cret-pass"
    )
    for header in (
        None,
        "",
        basic("hooks", "wrong"),
        basic("other", "s3cret-pass"),
        basic("hooks", "s3cret-pass") + "x",
        "Bearer abc",
        "Basic !!!",
    ):
        with pytest.raises(Unauthentic):
            check_basic_auth(header, "hooks", "s3cret-pass")


def test_postmark_records_map_to_feedback_kinds() -> None:
    def events(name: str) -> list[tuple[FeedbackKind, str]]:
        return kinds(postmark_events(body_of(fixture(name))))

    assert events("postmark_bounce.json") == [(FeedbackKind.HARD_BOUNCE, "john@example.com")]
    assert events("postmark_soft_bounce.json") == [(FeedbackKind.SOFT_BOUNCE, "paula@example.com")]
    assert events("postmark_spam_complaint.json") == [(FeedbackKind.COMPLAINT, "carla@example.com")]
    assert events("postmark_subscription_change.json") == [
        (FeedbackKind.UNSUBSCRIBE, "leaving@example.com")
    ]


def test_postmark_records_we_do_not_act_on_are_ignored() -> None:
    auto = {**fixture("postmark_bounce.json"), "Type": "AutoResponder", "TypeCode": 64}
    reactivated = {**fixture("postmark_subscription_change.json"), "SuppressSending": False}
    delivery = {"RecordType": "Delivery", "Recipient": "john@example.com"}
    batch = postmark_events(body_of([auto, reactivated, delivery]))
    assert batch == Batch(ignored=3)
    no_email = {**fixture("postmark_bounce.json"), "Email": None}
    assert postmark_events(body_of(no_email)).skipped
    with pytest.raises(Malformed):
        postmark_events(b"RecordType=Bounce")
    with pytest.raises(Malformed):
        postmark_events(b'"a string"')


# -- Mailgun -----------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def test_a_genuine_mailgun_webhook_verifies_with_its_token_and_replay_deadline() -> None:
    now = time.time()
    stamp = int(now) - 100
    data = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY, timestamp=stamp)
    token, until = verify_mailgun(data, MAILGUN_KEY, now=now, window=300)
    assert token == data["signature"]["token"]
    assert until == stamp + 300  # from then on the timestamp check refuses it
    with pytest.raises(Unauthentic, match="outside the replay window"):
        verify_mailgun(data, MAILGUN_KEY, now=until + 1, window=300)


def test_a_forged_stale_or_unsigned_mailgun_webhook_is_refused() -> None:
    now = time.time()
    forged = mailgun_body("mailgun_failed_permanent.json", "another-signing-key")
    stale = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY, timestamp=now - 301)
    future = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY, timestamp=now + 301)
    swapped = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY)
    swapped["signature"]["token"] = swapped["signature"]["token"][::-1]
    unsigned = fixture("mailgun_failed_permanent.json")
    unsigned.pop("signature")
    partial = mailgun_body("mailgun_failed_permanent.json", MAILGUN_KEY)
    partial["signature"].pop("token")
    for data in (forged, stale, future, swapped, unsigned, partial):
        with pytest.raises(Unauthentic):
            verify_mailgun(data, MAILGUN_KEY, now=now, window=300)
    with pytest.raises(Malformed):
        read_mailgun(b"signature=1")


def test_mailgun_events_map_to_feedback_kinds() -> None:
    def events(name: str) -> list[tuple[FeedbackKind, str]]:
        return kinds(mailgun_events(fixture(name)))

    assert events("mailgun_failed_permanent.json") == [
        (FeedbackKind.HARD_BOUNCE, "alice@example.com")
    ]
    assert events("mailgun_failed_temporary.json") == [
        (FeedbackKind.SOFT_BOUNCE, "dave@example.com")
    ]
    assert events("mailgun_complained.json") == [(FeedbackKind.COMPLAINT, "erin@example.com")]
    assert events("mailgun_unsubscribed.json") == [(FeedbackKind.UNSUBSCRIBE, "frank@example.com")]
    assert "550" in mailgun_events(fixture("mailgun_failed_permanent.json")).events[0].detail
    assert mailgun_events({"event-data": {"event": "delivered"}}) == Batch(ignored=1)
    assert mailgun_events({"event-data": {"event": "failed", "severity": "odd"}}).skipped
    assert mailgun_events({"event-data": {"event": "complained"}}).skipped
    assert mailgun_events({}).skipped


# -- SendGrid ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid() -> SendgridSigner:
    return SendgridSigner()


def test_a_genuine_sendgrid_batch_verifies(sendgrid: SendgridSigner) -> None:
    body = body_of(fixture("sendgrid_events.json"))
    headers = sendgrid.headers(body)
    key = load_public_key(sendgrid.public_key)
    verify_sendgrid(
        key,
        headers["X-Twilio-Email-Event-Webhook-Signature"],
        headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        body,
        now=time.time(),
        window=300,
    )
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert load_public_key(pem).public_numbers() == key.public_numbers()


def test_a_forged_stale_or_unsigned_sendgrid_batch_is_refused(sendgrid: SendgridSigner) -> None:
    key = load_public_key(sendgrid.public_key)
    body = body_of(fixture("sendgrid_events.json"))
    now = time.time()
    good = sendgrid.headers(body)
    signature, stamp = (
        good["X-Twilio-Email-Event-Webhook-Signature"],
        good["X-Twilio-Email-Event-Webhook-Timestamp"],
    )
    other = SendgridSigner().headers(body)["X-Twilio-Email-Event-Webhook-Signature"]
    stale = sendgrid.headers(body, timestamp=now - 301)
    cases = [
        (signature, stamp, body + b" "),
        (signature, str(int(stamp) + 1), body),
        (other, stamp, body),
        (None, stamp, body),
        (signature, None, body),
        ("not base64!", stamp, body),
        (
            stale["X-Twilio-Email-Event-Webhook-Signature"],
            stale["X-Twilio-Email-Event-Webhook-Timestamp"],
            body,
        ),
    ]
    for given, timestamp, payload in cases:
        with pytest.raises(Unauthentic):
            verify_sendgrid(key, given, timestamp, payload, now=now, window=300)


def test_a_sendgrid_key_that_is_not_p256_is_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = rsa_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for value in (base64.b64encode(der).decode(), "garbage!", base64.b64encode(b"x").decode()):
        with pytest.raises(ValueError):
            load_public_key(value)


def test_sendgrid_events_map_to_feedback_kinds() -> None:
    batch = sendgrid_events(body_of(fixture("sendgrid_events.json")))
    assert kinds(batch) == [
        (FeedbackKind.SOFT_BOUNCE, "deferred@example.com"),
        (FeedbackKind.HARD_BOUNCE, "bounce@example.com"),
        (FeedbackKind.SOFT_BOUNCE, "blocked@example.com"),
        (FeedbackKind.HARD_BOUNCE, "dropped@example.com"),
        (FeedbackKind.COMPLAINT, "spamreport@example.com"),
        (FeedbackKind.UNSUBSCRIBE, "unsubscribe@example.com"),
        (FeedbackKind.UNSUBSCRIBE, "group_unsubscribe@example.com"),
    ]
    # processed, delivered, open, click, group_resubscribe
    assert batch.ignored == 5 and batch.skipped == ()


def test_a_malformed_sendgrid_event_is_skipped_and_the_rest_kept() -> None:
    events = [
        "a string",
        {"event": "bounce"},
        {"email": "x@example.com"},
        {"event": "spamreport", "email": ["a@example.com"]},
        {"event": "bounce", "email": "kept@example.com", "type": "bounce", "status": "5.1.1"},
    ]
    batch = sendgrid_events(body_of(events))
    assert kinds(batch) == [(FeedbackKind.HARD_BOUNCE, "kept@example.com")]
    assert len(batch.skipped) == 4
    with pytest.raises(Malformed):
        sendgrid_events(b'{"event": "bounce"}')


def test_a_detail_is_one_bounded_line() -> None:
    event = {
        "event": "bounce",
        "email": "long@example.com",
        "reason": "550\r\nX-Injected: yes " + "y" * 1000,
    }
    detail = sendgrid_events(body_of([event])).events[0].detail
    assert "\n" not in detail and "\r" not in detail and len(detail) <= 300


def test_a_detail_names_no_address_it_is_logged() -> None:
    # the consent log line shows the address masked; the detail must not undo that
    bounce = sns.ses_events(json.dumps(fixture("ses_bounce_permanent.json"))).events[0]
    assert bounce.email == "jane@example.com"
    assert "jane@" not in bounce.detail and "<address>" in bounce.detail
    assert "5.1.1" in bounce.detail
