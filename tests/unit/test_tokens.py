"""Signed, expiring confirm/unsubscribe tokens: what is valid, and everything that is not."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from itsdangerous import URLSafeTimedSerializer

from publisher.errors import ConfigError
from publisher.tokens import CONFIRM, UNSUBSCRIBE, TokenClaim, Tokens

SECRET = "a long random test secret"
DAY = 86400


def signed(payload: Any, purpose: str = CONFIRM, secret: str = SECRET) -> str:
    """A token signed with the right key and salt by stock itsdangerous: a valid signature
    over whatever payload; links already mailed must stay readable, so the salts are fixed."""
    token: str = URLSafeTimedSerializer(secret, salt=f"publisher.{purpose}").dumps(payload)
    return token


def test_a_token_round_trips_its_subscriber() -> None:
    tokens = Tokens(SECRET)
    for purpose in (CONFIRM, UNSUBSCRIBE):
        token = tokens.make(purpose, 42, "ann@example.com")
        assert tokens.check(purpose, token, max_age=DAY) == TokenClaim(42, "ann@example.com")


def test_a_token_made_by_another_instance_with_the_same_secret_is_valid() -> None:
    token = Tokens(SECRET).make(UNSUBSCRIBE, 7, "bob@example.com")
    assert Tokens(SECRET).check(UNSUBSCRIBE, token, max_age=DAY) == TokenClaim(7, "bob@example.com")


def test_the_payload_is_plain_signed_json_and_stock_itsdangerous_tokens_are_read() -> None:
    tokens = Tokens(SECRET)
    token = tokens.make(CONFIRM, 3, "c@example.com")
    payload = token.split(".", 1)[0]
    assert not payload.startswith(".")  # not zlib-compressed
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert json.loads(decoded) == [3, "c@example.com"]
    assert tokens.check(CONFIRM, signed([3, "c@example.com"]), max_age=DAY) == TokenClaim(
        3, "c@example.com"
    )


def test_a_token_is_valid_only_for_its_purpose() -> None:
    tokens = Tokens(SECRET)
    confirm = tokens.make(CONFIRM, 1, "a@example.com")
    unsubscribe = tokens.make(UNSUBSCRIBE, 1, "a@example.com")
    assert tokens.check(UNSUBSCRIBE, confirm, max_age=DAY) is None
    assert tokens.check(CONFIRM, unsubscribe, max_age=DAY) is None


def test_another_secret_forged_altered_or_garbage_tokens_are_not_valid() -> None:
    tokens = Tokens(SECRET)
    token = tokens.make(CONFIRM, 1, "a@example.com")
    assert Tokens("another secret").check(CONFIRM, token, max_age=DAY) is None
    assert tokens.check(CONFIRM, signed([1, "a@example.com"], secret="other"), DAY) is None
    _, rest = token.split(".", 1)
    other = tokens.make(CONFIRM, 2, "b@example.com").split(".", 1)[0]
    assert tokens.check(CONFIRM, other + "." + rest, max_age=DAY) is None
    for garbage in ("", "x", "a.b.c", token[:-2], token + "A"):
        assert tokens.check(CONFIRM, garbage, max_age=DAY) is None


def test_an_unknown_purpose_is_not_valid() -> None:
    token = Tokens(SECRET).make(CONFIRM, 1, "a@example.com")
    assert Tokens(SECRET).check("delete-everything", token, max_age=DAY) is None


def test_a_token_expires_after_max_age() -> None:
    tokens = Tokens(SECRET)
    now = datetime.now(UTC)
    with time_machine.travel(now - timedelta(seconds=DAY + 60), tick=False):
        old = tokens.make(UNSUBSCRIBE, 1, "a@example.com")
    with time_machine.travel(now - timedelta(seconds=DAY - 3600), tick=False):
        recent = tokens.make(UNSUBSCRIBE, 1, "a@example.com")
    assert tokens.check(UNSUBSCRIBE, old, max_age=DAY) is None
    assert tokens.check(UNSUBSCRIBE, recent, max_age=DAY) == TokenClaim(1, "a@example.com")
    assert tokens.check(UNSUBSCRIBE, old, max_age=2 * DAY) == TokenClaim(1, "a@example.com")


@pytest.mark.parametrize(
    "payload",
    [
        None,
        7,
        "ab",
        {"0": 1, "1": "a@example.com"},
        [],
        [1],
        [1, "a@example.com", "extra"],
        ["1", "a@example.com"],
        [1, 2],
        [None, None],
        [1.5, "a@example.com"],
    ],
    ids=repr,
)
def test_a_correctly_signed_token_with_a_malformed_payload_is_not_valid(payload: Any) -> None:
    assert Tokens(SECRET).check(CONFIRM, signed(payload), max_age=DAY) is None


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_is_a_configuration_error_with_a_fix(secret: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        Tokens(secret)
    assert caught.value.message == (
        "secret_key is not set; confirm and unsubscribe links cannot be signed"
    )
    assert caught.value.hint == "set PUBLISHER_SECRET_KEY (any long random string)"
