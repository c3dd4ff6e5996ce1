"""bounces.classify on real-shaped inbound mail: Postfix, Exim, Gmail, Microsoft and Yahoo
bounces, a full and a redacted ARF report, a mailto unsubscribe, and hostile input.

The fixtures in tests/data/inbound/ follow each sender's published format; `@@VERP@@` and
`@@UNSUB@@` stand for the signed tokens, filled in here with the test secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.bounces import EventKind, InboundEvent, Mailboxes, Target, classify
from publisher.tokens import UNSUBSCRIBE, Tokens
from tests.conftest import TEST_SECRET_KEY

DATA = Path(__file__).resolve().parent.parent / "data" / "inbound"
TOKENS = Tokens(TEST_SECRET_KEY)
BOXES = Mailboxes(
    bounce_address="bounces@news.example.org",
    unsubscribe_address="unsubscribe@news.example.org",
)
SUBSCRIBER, DELIVERY = 42, 7
VERP = TOKENS.bounce(SUBSCRIBER, DELIVERY)
UNSUB = TOKENS.make(UNSUBSCRIBE, SUBSCRIBER, "heidi@example.net")


def fixture(name: str, verp: str = VERP, unsub: str = UNSUB) -> bytes:
    text = (DATA / name).read_text(encoding="utf-8")
    text = text.replace("@@VERP@@", verp).replace("@@UNSUB@@", unsub)
    return text.replace("\n", "\r\n").encode("utf-8")


def event(name: str, **kwargs: str) -> InboundEvent:
    return classify(fixture(name, **kwargs), tokens=TOKENS, mailboxes=BOXES)


def only(found: InboundEvent) -> Target:
    assert len(found.targets) == 1, found
    return found.targets[0]


def test_the_bounce_token_is_short_case_blind_and_signed() -> None:
    token = TOKENS.bounce(2**40, 2**40)
    assert len("bounces+" + token) <= 64
    claim = TOKENS.check_bounce(token.upper())
    assert claim is not None and (claim.subscriber_id, claim.delivery_id) == (2**40, 2**40)
    forged = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert TOKENS.check_bounce(forged) is None
    assert Tokens("another-secret-key-of-enough-length-0123456").check_bounce(token) is None


@pytest.mark.parametrize(
    ("name", "status", "email"),
    [
        ("postfix-hard.eml", "5.1.1", "ann@example.net"),
        ("exim-dsn.eml", "5.0.0", "carol@example.com"),
        ("gmail.eml", "5.1.1", "erin.nobody@gmail.com"),
        ("microsoft.eml", "5.1.10", "frank@contoso.com"),
    ],
)
def test_a_dsn_hard_bounce_maps_to_the_subscriber_of_its_token(
    name: str, status: str, email: str
) -> None:
    found = event(name)
    assert (found.kind, found.format) == (EventKind.BOUNCE, "dsn")
    target = only(found)
    assert (target.subscriber_id, target.reported, target.status) == (SUBSCRIBER, email, status)
    assert target.hard
    assert status in target.detail


def test_a_yahoo_text_bounce_without_a_dsn_is_a_hard_bounce() -> None:
    found = event("yahoo-text.eml")
    assert (found.kind, found.format) == (EventKind.BOUNCE, "text-bounce")
    target = only(found)
    assert (target.subscriber_id, target.reported, target.status) == (
        SUBSCRIBER,
        "grace@yahoo.com",
        "5.0.0",
    )
    assert target.hard and "doesn't have a yahoo.com account" in target.detail


def test_a_classic_exim_text_bounce_without_a_token_names_the_failed_address() -> None:
    no_verp = Mailboxes(unsubscribe_address=BOXES.unsubscribe_address)
    found = classify(fixture("exim-text.eml"), tokens=TOKENS, mailboxes=no_verp)
    assert found.kind is EventKind.BOUNCE
    target = only(found)
    assert (target.subscriber_id, target.email, target.status) == (
        None,
        "dave@example.com",
        "5.2.1",
    )
    assert target.hard


def test_a_queue_expiry_is_a_soft_bounce_and_a_delay_warning_is_only_a_notice() -> None:
    expired = only(event("postfix-expired.eml"))
    assert (expired.subscriber_id, expired.status, expired.hard) == (SUBSCRIBER, "4.4.1", False)
    delayed = event("postfix-delayed.eml")
    assert delayed.kind is EventKind.NOTICE and "delayed" in delayed.reason


def test_a_class_5_policy_rejection_is_soft_it_says_nothing_of_the_address() -> None:
    data = fixture("postfix-hard.eml").replace(b"5.1.1", b"5.7.26")
    target = only(classify(data, tokens=TOKENS, mailboxes=BOXES))
    assert (target.status, target.hard) == ("5.7.26", False)


def test_a_mangled_dsn_still_maps_by_its_token() -> None:
    data = fixture("postfix-hard.eml", verp=VERP.upper())
    data = data.replace(b"ann@example.net", b"forwarded@elsewhere.example")
    target = only(classify(data, tokens=TOKENS, mailboxes=BOXES))
    assert (target.subscriber_id, target.hard) == (SUBSCRIBER, True)


def test_with_verp_on_a_bounce_without_a_token_is_not_believed() -> None:
    found = event("exim-text.eml")
    assert found.kind is EventKind.NOT_OURS and "without our bounce token" in found.reason


def test_a_forged_bounce_token_is_not_ours() -> None:
    forged = VERP[:-4] + "aaaa"
    found = event("postfix-hard.eml", verp=forged)
    assert found.kind is EventKind.NOT_OURS and "does not verify" in found.reason
    assert found.targets == ()


def test_an_arf_complaint_maps_by_the_verp_address() -> None:
    found = event("arf.eml")
    assert (found.kind, found.format) == (EventKind.COMPLAINT, "arf")
    target = only(found)
    assert target.subscriber_id == SUBSCRIBER and "abuse" in target.detail


def test_a_redacted_arf_complaint_maps_by_the_signed_list_unsubscribe_token() -> None:
    found = event("arf-redacted.eml")
    assert found.kind is EventKind.COMPLAINT
    target = only(found)
    assert (target.subscriber_id, target.email) == (SUBSCRIBER, "heidi@example.net")


def test_a_redacted_arf_with_a_forged_token_is_not_ours() -> None:
    forged = UNSUB[:-3] + "xyz"
    found = event("arf-redacted.eml", unsub=forged)
    assert found.kind is EventKind.NOT_OURS and "none of our signed tokens" in found.reason


def test_a_mail_to_the_mailto_address_with_its_token_is_an_unsubscribe() -> None:
    found = event("mailto.eml")
    assert (found.kind, found.format) == (EventKind.UNSUBSCRIBE, "mailto")
    target = only(found)
    assert (target.subscriber_id, target.email) == (SUBSCRIBER, "heidi@example.net")
    assert "ivan@example.net" in target.detail


def test_a_mailto_token_in_the_body_counts_too() -> None:
    data = fixture("mailto.eml").replace(
        f"Subject: unsubscribe {UNSUB}".encode(), b"Subject: please remove me"
    )
    data = data.replace(b"automatically generated by Gmail.", f"unsubscribe {UNSUB}".encode())
    assert classify(data, tokens=TOKENS, mailboxes=BOXES).kind is EventKind.UNSUBSCRIBE


def test_a_mailto_without_a_valid_token_is_not_ours() -> None:
    found = event("mailto.eml", unsub=UNSUB[:-2] + "zz")
    assert found.kind is EventKind.NOT_OURS and "without a valid token" in found.reason


def test_an_out_of_office_reply_is_not_ours() -> None:
    found = event("vacation.eml")
    assert found.kind is EventKind.NOT_OURS and "automatic reply" in found.reason


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x00\xff\xfe garbage \r\n\r\n", "not a bounce"),
        (b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno parts", "without"),
        (b"Subject: hi\r\n\r\n" + b"x" * 2000, "over the"),
    ],
)
def test_hostile_or_unknown_input_is_not_ours_with_a_reason(data: bytes, reason: str) -> None:
    found = classify(data, tokens=TOKENS, mailboxes=BOXES, max_bytes=1000)
    assert found.kind is EventKind.NOT_OURS and reason in found.reason


def test_a_reason_never_carries_a_line_break_into_a_log() -> None:
    data = fixture("postfix-hard.eml").replace(
        b"Recipient address rejected:", b"Recipient\x1b[31m \xe2\x80\xa8 rejected:"
    )
    target = only(classify(data, tokens=TOKENS, mailboxes=BOXES))
    assert "\x1b" not in target.detail and "\u2028" not in target.detail


FIXTURES = sorted(p.name for p in DATA.glob("*.eml"))


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(FIXTURES),
    cut=st.integers(min_value=0, max_value=5000),
    junk=st.binary(max_size=64),
)
def test_a_truncated_or_spliced_report_never_raises(name: str, cut: int, junk: bytes) -> None:
    data = fixture(name)
    spliced = data[:cut] + junk + data[cut + len(junk) :]
    found = classify(spliced, tokens=TOKENS, mailboxes=BOXES)
    assert isinstance(found, InboundEvent)
    assert all("\n" not in t.detail for t in found.targets) and "\n" not in found.reason
