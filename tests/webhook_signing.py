"""Provider stand-ins for webhook tests: keys made here, signatures made as each provider
documents them (written apart from publisher's own code, so one mistake is not made twice),
and a real HTTPS server that answers as sns.<region>.amazonaws.com does.

- `SnsSigner`: an RSA key and a certificate for it (what SigningCertURL serves); `sign`
  fills Signature for SignatureVersion 1 (SHA1withRSA) or 2 (SHA256withRSA) over the
  canonical string of the SNS developer guide ("Verifying the signatures of Amazon SNS
  messages").
- `FakeSns`: HTTPS on 127.0.0.1 port 0 with a trustme certificate for SNS_HOST; serves the
  signing certificate and records SubscribeURL visits. Point `webhooks.ses_connect_to` at
  it and `webhooks.ses_trust_file` at its CA: no request leaves the machine.
- `mailgun_signature`, `SendgridSigner`: HMAC-SHA256 of timestamp + token; ECDSA P-256
  SHA-256 over timestamp + body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

DATA = Path(__file__).resolve().parent / "data" / "webhooks"
REGION = "us-east-1"
SNS_HOST = f"sns.{REGION}.amazonaws.com"
CERT_PATH = "/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
CERT_URL = f"https://{SNS_HOST}{CERT_PATH}"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"


def fixture(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def iso_now(offset: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SnsSigner:
    def __init__(self, *, valid_days: int = 30) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=valid_days))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    @staticmethod
    def string_to_sign(message: dict[str, Any]) -> bytes:
        if message["Type"] == "Notification":
            keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            keys = [
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ]
        return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        signed = {**message, "SignatureVersion": version}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(self.string_to_sign(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(
        self, ses: dict[str, Any] | str, *, version: str = "1", **fields: Any
    ) -> dict[str, Any]:
        """The documented Notification envelope around an SES notification, signed now."""
        message = fixture("sns_notification.json")
        message.update(
            MessageId=str(uuid.uuid4()),
            TopicArn=TOPIC,
            Subject="Amazon SES Email Event Notification",
            Message=ses if isinstance(ses, str) else json.dumps(ses),
            Timestamp=iso_now(),
            SigningCertURL=CERT_URL,
            UnsubscribeURL=f"https://{SNS_HOST}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1",
        )
        message.update(fields)
        return self.sign(message, version)

    def subscription_confirmation(self, *, version: str = "1", **fields: Any) -> dict[str, Any]:
        message = fixture("sns_subscription_confirmation.json")
        token = uuid.uuid4().hex
        message.update(
            MessageId=str(uuid.uuid4()),
            TopicArn=TOPIC,
            Token=token,
            SubscribeURL=(
                f"https://{SNS_HOST}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
            ),
            Timestamp=iso_now(),
            SigningCertURL=CERT_URL,
        )
        message.update(fields)
        return self.sign(message, version)


class FakeSns:
    """A real HTTPS server that answers as SNS_HOST: the certificate, SubscribeURL visits."""

    def __init__(self, folder: Path, signer: SnsSigner) -> None:
        self.ca = trustme.CA()
        self.trust_file = folder / "sns-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.trust_file))
        self.signer = signer
        self.requests: list[str] = []
        self.confirmed = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(SNS_HOST).configure_cert(context)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if self.path == CERT_PATH:
                    self.answer(200, fake.signer.pem)
                elif self.path.startswith("/?Action=ConfirmSubscription"):
                    self.answer(200, b"<ConfirmSubscriptionResponse/>")
                    fake.confirmed.set()
                else:
                    self.answer(404, b"not found")

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeSns:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def settings(self) -> str:
        """The [webhooks] lines that trust this server as SNS."""
        return (
            f'ses_topic_arns = "{TOPIC}"\n'
            f'ses_trust_file = "{self.trust_file}"\n'
            f'ses_connect_to = "127.0.0.1:{self.port}"\n'
        )


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def mailgun_body(name: str, signing_key: str, *, timestamp: float | None = None) -> dict[str, Any]:
    """A Mailgun fixture with a fresh token and a genuine signature."""
    data = fixture(name)
    stamp = str(int(time.time() if timestamp is None else timestamp))
    token = uuid.uuid4().hex + uuid.uuid4().hex[:18]
    data["signature"] = {
        "timestamp": stamp,
        "token": token,
        "signature": mailgun_signature(signing_key, stamp, token),
    }
    return data


class SendgridSigner:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if timestamp is None else timestamp))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
        }


def body_of(data: Any) -> bytes:
    return json.dumps(data).encode()
