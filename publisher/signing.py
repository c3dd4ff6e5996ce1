"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463): pure, bytes in, header bytes out.

c=relaxed/simple, written out here from RFC 6376 (header selection 5.4.2, relaxed header
canonicalization 3.4.2, simple body 3.4.3) over the few headers a message has; the
private-key operation goes to `cryptography` (OpenSSL). dkimpy verifies in the tests;
signing with it re-parsed the whole header block through regexes per message, and its own
RSA is pure Python.
A message is signed as handed over (after its Date is written), so a resumed run's
message is signed afresh with its new Date.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from publisher.config import DkimSettings, Settings
from publisher.errors import ConfigError

__all__ = [
    "SIGNED_HEADERS",
    "DkimKey",
    "Signer",
    "from_domain",
    "load_key",
    "public_record",
    "signer_for",
]

# what a receiver checks and a forwarder must not change; a header a message lacks is left
# out of h=, and From, Subject and To are named twice so none can be added after signing
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"feedback-id",
    b"cfbl-address",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)
_OVERSIGNED = (b"from", b"subject", b"to")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")  # RFC 5322 ftext: printable, no colon
_WSP_RUN = re.compile(rb"[ \t]+")
_MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class DkimKey:
    """One signing key: its algorithm tag, selector and the private-key operation."""

    algorithm: bytes  # b"rsa-sha256" or b"ed25519-sha256"
    selector: bytes
    sign_digest: Callable[[bytes], bytes]
    public: bytes  # the p= value of its DNS record


def load_key(text: str, selector: str, origin: str) -> DkimKey:
    """A PEM key (RSA or Ed25519), or a bare base64 Ed25519 seed as dkimpy writes one."""
    data = text.strip().encode("ascii", "replace")
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(
            f"{origin} is not a PEM private key (RSA or Ed25519) without a passphrase",
            "make one with `openssl genrsa -out dkim.pem 2048` or "
            "`openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem`",
        ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigError(
                f"{origin} is a {key.key_size}-bit RSA key; receivers want {_MIN_RSA_BITS}",
                "make one with `openssl genrsa -out dkim.pem 2048`",
            )
        rsa_key = key
        public = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        def sign_rsa(digest: bytes) -> bytes:
            return rsa_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

        return DkimKey(b"rsa-sha256", selector.encode(), sign_rsa, base64.b64encode(public))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DkimKey(b"ed25519-sha256", selector.encode(), key.sign, base64.b64encode(raw))
    raise ConfigError(f"{origin} is neither an RSA nor an Ed25519 key")


def public_record(key: DkimKey) -> str:
    """The TXT record to publish at <selector>._domainkey.<domain>."""
    kind = "rsa" if key.algorithm == b"rsa-sha256" else "ed25519"
    return f"v=DKIM1; k={kind}; p={key.public.decode('ascii')}"


class Signer:
    """Adds one DKIM-Signature per key (Ed25519 first, RSA on top) to a whole message."""

    def __init__(self, domain: str, keys: tuple[DkimKey, ...]) -> None:
        self.domain = domain.encode("ascii")
        self.keys = keys
        # the folded tags before bh= of each key for one t= and one h= list: they repeat
        # for every message of a digest run; emptied each new second
        self._tags: dict[tuple[int, bytes, tuple[bytes, ...]], bytes] = {}
        self._tags_stamp = b""

    @classmethod
    def from_settings(cls, settings: DkimSettings, from_domain: str) -> Signer | None:
        """None when DKIM is not configured (no key)."""
        keys = []
        if settings.ed25519_key:
            keys.append(load_key(settings.ed25519_key, settings.ed25519_name, "dkim.ed25519_key"))
        if settings.private_key:
            keys.append(load_key(settings.private_key, settings.selector, "dkim.private_key"))
        if not keys:
            return None
        return cls(settings.domain or from_domain, tuple(keys))

    def sign(self, message: bytes) -> bytes:
        """`message` (CRLF or LF) with its DKIM-Signature headers in front, in CRLF form.
        ValueError for a header block with a line that is neither a header nor a fold."""
        if b"\r\n" not in message or message.count(b"\n") != message.count(b"\r\n"):
            message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if message.startswith(b"\r\n"):
            head, body = b"", message[2:]
        else:
            head, _, body = message.partition(b"\r\n\r\n")
        include, canonical = _signed_headers(_parse_headers(head))
        body_hash = base64.b64encode(_body_hash(body))
        stamp = str(int(time.time())).encode("ascii")
        if stamp != self._tags_stamp:
            self._tags.clear()
            self._tags_stamp = stamp
        signatures = []
        for number, key in enumerate(self.keys):
            tags = self._tags.get((number, stamp, include))
            if tags is None:
                tags = self._tags[number, stamp, include] = self._tag_lines(key, stamp, include)
            value = tags + b"\r\n bh=" + body_hash + b";\r\n b="
            # a later signature covers none of the earlier ones: each verifies alone
            hashed = canonical + b"dkim-signature:" + _relaxed(value)  # no CRLF after it
            signature = base64.b64encode(key.sign_digest(hashlib.sha256(hashed).digest()))
            signatures.append(b"DKIM-Signature:" + value + _folded(signature) + b"\r\n")
        return b"".join(reversed(signatures)) + message

    def _tag_lines(self, key: DkimKey, stamp: bytes, include: tuple[bytes, ...]) -> bytes:
        """The tags before bh=, folded at spaces only (never inside a tag or a header
        name) to lines of at most 76; bh= and b= follow on lines of their own."""
        fields = [
            (b"v", b"1"),
            (b"a", key.algorithm),
            (b"c", b"relaxed/simple"),
            (b"d", self.domain),
            (b"s", key.selector),
            (b"t", stamp),
            (b"h", b" : ".join(include)),
        ]
        lines: list[bytes] = []
        line = b"DKIM-Signature:"
        for word in (b"; ".join(b"=".join(f) for f in fields) + b";").split(b" "):
            if len(line) + 1 + len(word) > 76 and line.strip():
                lines.append(line)
                line = b""
            line += b" " + word
        lines.append(line)
        return b"\r\n".join(lines).removeprefix(b"DKIM-Signature:")


def _parse_headers(head: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, value with its folds) for each header of a CRLF header block."""
    headers: list[tuple[bytes, bytes]] = []
    if not head:
        return headers
    for line in head.removesuffix(b"\r\n").split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"not a header line: {line[:60]!r}")
        headers.append((name.lower(), value))
    return headers


def _signed_headers(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, ...], bytes]:
    """The h= names (SIGNED_HEADERS the message has, then the oversigned ones) and their
    relaxed forms in that order (RFC 6376 5.4.2: each name takes the instance nearest
    the bottom not yet taken; an oversigned name with none left adds nothing)."""
    present: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        present.setdefault(name, []).append(value)
    include = tuple(name for name in (*SIGNED_HEADERS, *_OVERSIGNED) if name in present)
    lines = []
    for name in include:
        values = present[name]
        if values:
            lines.append(name + b":" + _relaxed(values.pop()) + b"\r\n")
    return include, b"".join(lines)


def _relaxed(value: bytes) -> bytes:
    """A header value in relaxed form (RFC 6376 3.4.2): unfolded, each run of WSP (space,
    tab) one space, none at either end."""
    if b"\r\n" in value:
        value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return value.strip(b" ")


def _body_hash(body: bytes) -> bytes:
    """SHA-256 of the body in "simple" canonical form (RFC 6376 3.4.3): trailing empty
    lines removed, one CRLF at the end. No copy of the body and no regex: a regex
    anchored at the end tries every position of a 50 kB digest."""
    end = len(body)
    while end >= 2 and body.endswith(b"\r\n", 0, end):
        end -= 2
    hasher = hashlib.sha256(memoryview(body)[:end])
    hasher.update(b"\r\n")
    return hasher.digest()


def _folded(signature: bytes) -> bytes:
    """b= in lines of 72 after its own: receivers accept folding whitespace inside it."""
    return b"\r\n  ".join(signature[i : i + 72] for i in range(0, len(signature), 72))


def from_domain(settings: Settings) -> str:
    """The domain of the From address (lower case)."""
    return parseaddr(settings.smtp.from_address)[1].rpartition("@")[2].lower()


def signer_for(settings: Settings) -> Signer | None:
    """The signer every outgoing mail of these settings goes through; None: unsigned."""
    return Signer.from_settings(settings.dkim, from_domain(settings))
