"""The DKIM signer (RFC 6376 relaxed/simple, RFC 8463 Ed25519) against dkimpy's verifier,
for the shapes a header or a body can take: folded and unfolded headers, tabs and runs of
spaces, trailing whitespace, names in any case, repeated headers, 8-bit bytes, an empty
body, whitespace-only and very long lines, trailing empty lines, LF line ends. The public
key comes straight from the signer (the integration tests look it up over DNS)."""

from __future__ import annotations

import re

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.signing import Signer, load_key, public_record

DOMAIN = "news.example.org"


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


RSA = load_key(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "r", "t")
ED = load_key(_pem(ed25519.Ed25519PrivateKey.generate()), "e", "t")
RECORDS = {
    f"{key.selector.decode()}._domainkey.{DOMAIN}.".encode(): public_record(key).encode()
    for key in (RSA, ED)
}
SIGNERS = {
    "rsa": Signer(DOMAIN, (RSA,)),
    "ed25519": Signer(DOMAIN, (ED,)),
    "both": Signer(DOMAIN, (ED, RSA)),
}


def _dns(name: bytes, timeout: int = 5) -> bytes:
    return RECORDS.get(name, b"")


def verifies(data: bytes) -> list[bool]:
    """One result per DKIM-Signature, in header order."""
    count = len(re.findall(rb"(?mi)^DKIM-Signature:", data.split(b"\r\n\r\n", 1)[0]))
    checker = dkim.DKIM(data)
    results = []
    for index in range(count):
        try:
            results.append(bool(checker.verify(idx=index, dnsfunc=_dns)))
        except dkim.DKIMException:
            results.append(False)
    return results


SAMPLE = (
    b"From: Harbin News <editor@news.example.org>\r\n"
    b"To: reader@example.com\r\n"
    b"Subject:  Weekly\t digest  \r\n"
    b"Message-ID: <1.2@news.example.org>\r\n"
    b"List-Unsubscribe: <https://news.example.org/u/abc>,\r\n <mailto:u@news.example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello\r\n  \r\nworld \t\r\n\r\n\r\n"
)


@pytest.mark.parametrize("kind", sorted(SIGNERS))
def test_a_message_verifies_and_fails_once_changed(kind: str) -> None:
    signed = SIGNERS[kind].sign(SAMPLE)
    count = len(SIGNERS[kind].keys)
    assert verifies(signed) == [True] * count
    assert verifies(signed.replace(b"world", b"w0rld")) == [False] * count
    assert verifies(signed.replace(b"Weekly", b"Daily")) == [False] * count
    # a second To or Subject on top is caught: both are signed once more than present
    assert verifies(b"To: other@example.com\r\n" + signed) == [False] * count
    assert verifies(b"Subject: other\r\n" + signed) == [False] * count


def test_both_signatures_name_their_algorithm_and_selector() -> None:
    signed = SIGNERS["both"].sign(SAMPLE)
    head = signed.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")
    tags = re.findall(rb"(?m)^DKIM-Signature:(.*?)(?=\r\n\S|\Z)", head, re.S)
    assert len(tags) == 2
    assert b"a=rsa-sha256" in tags[0] and b"s=r;" in tags[0]  # RSA on top
    assert b"a=ed25519-sha256" in tags[1] and b"s=e;" in tags[1]
    for tag in tags:
        assert b"c=relaxed/simple" in tag and f"d={DOMAIN};".encode() in tag
    # RFC 5322 2.1.1: lines of at most 78 characters, folded at spaces only
    lines = signed.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in lines if not line.startswith(b"List-Unsub")) <= 78


def test_the_body_hash_is_rfc_6376s_example_for_an_empty_body() -> None:
    # RFC 6376 3.4.3: an empty body is canonicalized to one CRLF; its SHA-256 is this
    signed = SIGNERS["ed25519"].sign(b"From: a@news.example.org\r\n\r\n")
    assert b"bh=frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=" in signed.replace(b"\r\n ", b"")
    assert verifies(signed) == [True]


def test_a_header_line_that_is_not_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="not a header line"):
        SIGNERS["rsa"].sign(b"From: a@news.example.org\r\nno colon here\r\n\r\nbody\r\n")


# -- many shapes -------------------------------------------------------------------------

# printable ASCII, tab and 8-bit bytes: what a header or body line may hold (no CR, LF)
_CHARS = st.sampled_from([bytes([c]) for c in (*range(0x20, 0x7F), 0x09, *range(0x80, 0x100))])
_WSP = st.sampled_from([b" ", b"\t", b"  ", b" \t ", b"\t\t"])


@st.composite
def _value(draw: st.DrawFn) -> bytes:
    """A header value: words with runs of spaces and tabs, folds, trailing whitespace."""
    parts = [draw(_WSP) if draw(st.booleans()) else b""]
    for _ in range(draw(st.integers(0, 6))):
        parts.append(b"".join(draw(st.lists(_CHARS, max_size=30))))
        parts.append(draw(st.sampled_from([b" ", b"\r\n ", b"\r\n\t", b"\r\n  "])) + draw(_WSP))
    if draw(st.booleans()):
        parts.append(draw(_WSP))  # trailing whitespace
    return b"".join(parts)


_NAMES = st.sampled_from(
    [
        b"To",
        b"tO",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"List-Unsubscribe",
        b"List-Id",
        b"Content-Type",
        b"MIME-Version",
        b"X-Other",
        b"Received",
    ]
)

_LINE = st.one_of(
    st.lists(_CHARS, max_size=80).map(b"".join),
    _WSP,  # whitespace only
    st.just(b""),
    st.integers(990, 3000).map(lambda n: b"x" * n),  # longer than SMTP's 998
    st.lists(st.sampled_from([b"\xc3\xa9", b"\xe2\x82\xac", b"\xff"]), max_size=20).map(b"".join),
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    # one From: a verifier counts every From, so a second one would fail on purpose
    sender = draw(st.sampled_from([b"From", b"FROM", b"from"]))
    headers = [sender + b":" + draw(_value()) + b"@news.example.org"]
    headers += [n + b":" + draw(_value()) for n in draw(st.lists(_NAMES, max_size=8))]
    headers = draw(st.permutations(headers))
    lines = draw(st.lists(_LINE, max_size=12))
    body = b"\r\n".join(lines) + draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n\r\n"]))
    message = b"\r\n".join(headers) + b"\r\n\r\n" + body
    if draw(st.booleans()):
        message = message.replace(b"\r\n", b"\n")  # as a file on disk would have it
    return message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.sampled_from(sorted(SIGNERS)))
def test_every_shape_verifies_with_dkimpy(message: bytes, kind: str) -> None:
    signer = SIGNERS[kind]
    signed = signer.sign(message)
    assert verifies(signed) == [True] * len(signer.keys), signed[:2000]
    assert signed.endswith(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.binary(min_size=1, max_size=3).filter(lambda b: b"\r" not in b))
def test_every_shape_fails_once_its_body_changes(message: bytes, extra: bytes) -> None:
    signed = SIGNERS["both"].sign(message)
    head, _, body = signed.partition(b"\r\n\r\n")
    changed = head + b"\r\n\r\n" + extra.replace(b"\n", b"\r\n") + b"\r\n" + body
    assert verifies(changed) == [False, False]
