"""The pure pacing core and the [pacing] settings: limits, groups, slots, pauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.config import PacingSettings, load_settings, parse_rate
from publisher.errors import ConfigError
from publisher.pacing import Groups, SlotState, domain_of, is_slow_down, reserve, slow_down


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/s", 20.0), ("600/min", 10.0), ("3600 / hour", 1.0), ("unlimited", 0.0), ("0.5/s", 0.5)],
)
def test_limits_read_as_messages_per_second(text: str, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["20", "fast", "0/s", "-1/s", "20/day", ""])
def test_a_bad_limit_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_a_recipient_maps_to_its_group_case_insensitively_and_by_idna() -> None:
    groups = Groups(
        PacingSettings(limits="gmail.com|googlemail.com = 20/s; xn--bcher-kva.example = 1/s")
    )
    assert groups.of("Ann@GoogleMail.COM").name == "gmail.com|googlemail.com"
    assert groups.of("ann@gmail.com.").interval == pytest.approx(0.05)
    assert groups.of("ben@Bücher.example").name == "xn--bcher-kva.example"
    assert groups.of("cy@example.org").name == "default"
    assert not groups.of("cy@example.org").limited
    assert domain_of("x@BÜCHER.example") == "xn--bcher-kva.example"


def _config(tmp_path: Path, pacing: str) -> Path:
    path = tmp_path / "publisher.toml"
    path.write_text("[pacing]\n" + pacing, encoding="utf-8")
    return path


def test_a_given_group_replaces_its_default_and_comes_first(tmp_path: Path) -> None:
    settings = load_settings(
        _config(
            tmp_path, '"Outlook.com|hotmail.com|live.com|msn.com" = "5/s"\n"gmail.com" = "1/s"\n'
        ),
        environ={},
    )
    groups = dict(settings.pacing.groups)
    assert groups["outlook.com|hotmail.com|live.com|msn.com"] == "5/s"
    assert sum(1 for name in groups if "outlook.com" in name) == 1
    pacer = Groups(settings.pacing)
    assert pacer.of("a@gmail.com").name == "gmail.com"  # given first: it wins
    assert pacer.of("a@googlemail.com").name == "gmail.com|googlemail.com"


@pytest.mark.parametrize(
    ("pacing", "named"),
    [
        ('"gmail.com" = "fast"\n', "'gmail.com'"),
        ('default = "10"\n', "'default'"),
        ('"not a domain" = "1/s"\n', "'not a domain'"),
        ("backoff_seconds = 0\n", "pacing.backoff_seconds"),
    ],
)
def test_a_bad_pacing_value_is_one_line_naming_its_key(
    tmp_path: Path, pacing: str, named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_config(tmp_path, pacing), environ={})
    assert named in raised.value.message and "\n" not in raised.value.message


def test_slots_are_spaced_by_the_interval_and_never_shared() -> None:
    state, first = reserve(SlotState(), 100.0, 0.1, 3)
    assert first == pytest.approx([100.0, 100.1, 100.2])
    state, second = reserve(state, 100.05, 0.1, 2)
    assert second == pytest.approx([100.3, 100.4])
    # an idle group starts again now, without a burst for the time it was idle
    _, later = reserve(state, 200.0, 0.1, 1)
    assert later == [200.0]


def test_slots_missed_by_a_late_reservation_are_caught_up_within_a_second() -> None:
    state, _ = reserve(SlotState(), 100.0, 0.1, 5)  # next slot 100.5
    _, late = reserve(state, 100.9, 0.1, 2)
    assert late == pytest.approx([100.5, 100.6])


def test_a_pause_doubles_while_slow_downs_go_on_and_is_capped() -> None:
    state = slow_down(SlotState(), 10.0, 2.0, 5.0)
    assert (state.backoff_until, state.level) == (12.0, 1)
    # a reply to a message started before the pause does not lengthen it
    assert slow_down(state, 11.0, 2.0, 5.0) == state
    state = slow_down(state, 12.5, 2.0, 5.0)
    assert (state.backoff_until, state.level) == (16.5, 2)
    state = slow_down(state, 17.0, 2.0, 5.0)
    assert state.backoff_until == 22.0  # 8 s capped at 5
    # no slot inside a pause
    _, slots = reserve(state, 18.0, 0.1, 1)
    assert slots == [22.0]
    # quiet for longer than the longest pause: start again at the first
    assert slow_down(state, 100.0, 2.0, 5.0).level == 1


@pytest.mark.parametrize(
    ("code", "text", "slow"),
    [
        (421, "4.7.0 Try again later, closing connection", True),
        (421, "Service not available", True),
        (451, "4.7.650 The mail server has been temporarily rate limited", True),
        (451, "4.3.0 try again later", False),
        (450, "4.2.1 mailbox busy", False),
        (550, "5.7.1 rejected", False),
        (451, "14.7.650", False),
    ],
)
def test_slow_down_replies(code: int, text: str, slow: bool) -> None:
    assert is_slow_down(code, text) is slow
