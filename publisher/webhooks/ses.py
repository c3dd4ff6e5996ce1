"""Amazon SES through SNS: the signed SNS envelope, and the SES notification it carries.

SNS signs each message (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a
canonical string of its fields, with the key of a certificate published at
`SigningCertURL`; that URL must be https on an `sns.<region>.amazonaws.com` host, and the
adapter fetches it over verified TLS. A valid signature proves only that SNS sent the
message, not whose topic it was: any AWS account can point a topic at us, so the
`TopicArn` must also be one we were told to trust. Fetching the certificate and the
SubscribeURL is the adapter's (web/sns.py); this module checks and reads.

The SES notification (`notificationType`) and SES event publishing (`eventType`) formats
are both read: Bounce (Permanent: hard; Transient or Undetermined: soft) and Complaint
(every `complaintFeedbackType` but `not-spam`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from publisher.webhooks import (
    Batch,
    FeedbackKind,
    Malformed,
    ProviderEvent,
    Unauthentic,
    address,
    collect,
    joined,
    read_json,
    text,
)

__all__ = [
    "SnsMessage",
    "canonical_string",
    "check_envelope",
    "check_sns_url",
    "is_sns_host",
    "parse_envelope",
    "ses_events",
    "verify_envelope",
]

PROVIDER = "ses"
NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
TYPES = (NOTIFICATION, SUBSCRIPTION_CONFIRMATION, UNSUBSCRIBE_CONFIRMATION)

# the host pattern AWS's own SNS message validators accept
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]{3,}\.amazonaws\.com(\.cn)?")
_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# a message this far in the future is a clock problem, not a retry
FUTURE_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SnsMessage:
    """The fields of an SNS HTTP(S) delivery that the signature covers, and the rest we use."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    signature_version: str
    signature: str
    signing_cert_url: str
    subject: str | None = None
    subscribe_url: str | None = None
    token: str | None = None


def parse_envelope(body: bytes) -> SnsMessage:
    """The SNS envelope of a request body; Malformed if not JSON, Unauthentic if unsigned.

    A raw-delivery subscription (no envelope) carries no signature: refused as unsigned."""
    data = read_json(body)
    if not isinstance(data, dict):
        raise Malformed("the body is not an SNS message (not a JSON object)")

    def field(name: str, required: bool = True) -> str | None:
        value = data.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise Unauthentic(f"the SNS message has no {name}")
        return value

    kind = field("Type")
    if kind not in TYPES:
        raise Unauthentic(f"unknown SNS message type {text(kind, 40)!r}")
    confirmation = kind != NOTIFICATION
    return SnsMessage(
        type=str(kind),
        message_id=str(field("MessageId")),
        topic_arn=str(field("TopicArn")),
        message=str(field("Message")),
        timestamp=str(field("Timestamp")),
        signature_version=str(field("SignatureVersion")),
        signature=str(field("Signature")),
        signing_cert_url=str(field("SigningCertURL")),
        subject=field("Subject", required=False) if not confirmation else None,
        subscribe_url=field("SubscribeURL") if confirmation else None,
        token=field("Token") if confirmation else None,
    )


def canonical_string(message: SnsMessage) -> bytes:
    """What SNS signs: `name\\nvalue\\n` for each covered field, in this order."""
    if message.type == NOTIFICATION:
        pairs = [
            ("Message", message.message),
            ("MessageId", message.message_id),
            ("Subject", message.subject),
            ("Timestamp", message.timestamp),
            ("TopicArn", message.topic_arn),
            ("Type", message.type),
        ]
    else:
        pairs = [
            ("Message", message.message),
            ("MessageId", message.message_id),
            ("SubscribeURL", message.subscribe_url),
            ("Timestamp", message.timestamp),
            ("Token", message.token),
            ("TopicArn", message.topic_arn),
            ("Type", message.type),
        ]
    return "".join(f"{name}\n{value}\n" for name, value in pairs if value is not None).encode(
        "utf-8"
    )


def is_sns_host(host: str) -> bool:
    return _SNS_HOST.fullmatch(host) is not None


def check_sns_url(url: str, what: str) -> None:
    """Unauthentic unless `url` is https on an sns.<region>.amazonaws.com host, port 443,
    without credentials: only then do we fetch it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Unauthentic(f"the {what} is not a URL") from None
    if parts.scheme != "https" or parts.username is not None or port not in (None, 443):
        raise Unauthentic(f"the {what} is not https on the default port")
    if not is_sns_host(parts.hostname or ""):
        raise Unauthentic(f"the {what} is not on an sns.<region>.amazonaws.com host")


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Unauthentic("the SNS Timestamp is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise Unauthentic("the SNS Timestamp has no time zone")
    return moment


def check_envelope(
    message: SnsMessage, *, topics: Collection[str], now: datetime, max_age: timedelta
) -> None:
    """The checks that need no certificate (done first: nothing is fetched for a message
    that fails them): a trusted topic, a fresh Timestamp, a known SignatureVersion and a
    SigningCertURL we may fetch."""
    if message.topic_arn not in topics:
        raise Unauthentic("the SNS TopicArn is not one of webhooks.ses_topic_arns")
    moment = _timestamp(message.timestamp)
    if now - moment > max_age or moment - now > FUTURE_SKEW:
        raise Unauthentic("the SNS message is stale (Timestamp outside the accepted window)")
    if message.signature_version not in _HASHES:
        raise Unauthentic(f"unknown SNS SignatureVersion {text(message.signature_version, 8)!r}")
    check_sns_url(message.signing_cert_url, "SigningCertURL")
    if message.subscribe_url is not None:
        check_sns_url(message.subscribe_url, "SubscribeURL")


def replayable_until(message: SnsMessage, max_age: timedelta) -> datetime:
    """When `check_envelope` starts refusing this message as stale: until then a
    redelivery is told apart from a new message only by its MessageId."""
    return _timestamp(message.timestamp) + max_age


def verify_envelope(
    message: SnsMessage,
    certificate_pem: bytes,
    *,
    topics: Collection[str],
    now: datetime,
    max_age: timedelta,
) -> None:
    """Unauthentic unless `check_envelope` passes, the certificate is valid now and its
    RSA key signed the canonical string with the algorithm the SignatureVersion names."""
    check_envelope(message, topics=topics, now=now, max_age=max_age)
    algorithm = _HASHES[message.signature_version]
    try:
        signature = base64.b64decode(message.signature, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthentic("the SNS Signature is not base64") from None
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise Unauthentic("the SNS signing certificate cannot be read") from None
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Unauthentic("the SNS signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unauthentic("the SNS signing certificate has no RSA key")
    try:
        key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise Unauthentic("the SNS signature does not match") from None


def ses_events(message: str) -> Batch:
    """The bounce and complaint events of one SES notification (the SNS `Message`)."""
    try:
        data = read_json(message.encode("utf-8", "surrogatepass"))
    except Malformed:
        return Batch(skipped=("the SNS Message is not SES JSON",))
    if not isinstance(data, dict):
        return Batch(skipped=("the SNS Message is not a JSON object",))
    kind = data.get("notificationType") or data.get("eventType")
    if kind == "Bounce":
        return collect(_bounces(data.get("bounce")))
    if kind == "Complaint":
        return collect(_complaints(data.get("complaint")))
    if isinstance(kind, str):
        return Batch(ignored=1)  # Delivery, Send, Open, Click, DeliveryDelay...
    return Batch(skipped=("the SES notification names no notificationType or eventType",))


def _bounces(bounce: Any) -> Iterator[ProviderEvent | str | None]:
    if not isinstance(bounce, dict) or not isinstance(bounce.get("bouncedRecipients"), list):
        yield "a Bounce without bouncedRecipients"
        return
    bounce_type = bounce.get("bounceType")
    if bounce_type == "Permanent":
        kind = FeedbackKind.HARD_BOUNCE
    elif bounce_type in ("Transient", "Undetermined"):
        kind = FeedbackKind.SOFT_BOUNCE
    else:
        yield f"a Bounce of unknown bounceType {text(bounce_type, 40)!r}"
        return
    for number, recipient in enumerate(bounce["bouncedRecipients"], 1):
        found = address(recipient.get("emailAddress")) if isinstance(recipient, dict) else None
        if found is None:
            yield f"bounced recipient {number}: no emailAddress"
            continue
        detail = joined(
            f"SES {bounce_type} bounce ({text(bounce.get('bounceSubType'), 40) or 'General'})",
            recipient.get("status"),
            recipient.get("diagnosticCode"),
        )
        yield ProviderEvent(PROVIDER, kind, found, detail)


def _complaints(complaint: Any) -> Iterator[ProviderEvent | str | None]:
    if not isinstance(complaint, dict) or not isinstance(
        complaint.get("complainedRecipients"), list
    ):
        yield "a Complaint without complainedRecipients"
        return
    feedback = complaint.get("complaintFeedbackType")
    if feedback == "not-spam":
        yield None  # the reader says it is not spam: nothing to act on
        return
    for number, recipient in enumerate(complaint["complainedRecipients"], 1):
        found = address(recipient.get("emailAddress")) if isinstance(recipient, dict) else None
        if found is None:
            yield f"complained recipient {number}: no emailAddress"
            continue
        detail = joined(
            f"SES complaint ({text(feedback, 40) or 'no feedback type'})",
            complaint.get("userAgent"),
        )
        yield ProviderEvent(PROVIDER, FeedbackKind.COMPLAINT, found, detail)
