"""Per recipient domain group pacing, the pure part: which group a recipient is in and its
limit, when the next messages of a group may start, and how long a group pauses after a
"slow down" reply.

The state of a group is shared by every sending process through the database
(store/pacing.py holds it, sending/pacing.py takes slots from it); the arithmetic on it is
here, values in and values out, so SQLite and PostgreSQL run the same rules.

A group's slots are spaced `interval` seconds apart (a token bucket with no burst): a
process reserves the next `count` slots at once, so it asks the database once per batch,
not once per message, and processes sharing a group interleave their batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from publisher.config import PacingSettings, parse_rate

__all__ = [
    "DEFAULT_GROUP",
    "Group",
    "Groups",
    "SlotState",
    "domain_of",
    "is_slow_down",
    "reserve",
    "slow_down",
]

DEFAULT_GROUP = "default"
# 4.7.x: the enhanced status codes of policy deferrals ("4.7.0 Try again later" at Gmail,
# "4.7.650" / "4.7.500" at Microsoft)
_POLICY_STATUS = re.compile(r"(?<![\d.])4\.7\.\d{1,3}(?![\d.])")


@dataclass(frozen=True, slots=True)
class Group:
    """A domain group: its name (the `|`-joined domains, or "default") and the seconds
    between two of its messages (0.0: unlimited)."""

    name: str
    interval: float

    @property
    def limited(self) -> bool:
        return self.interval > 0


class Groups:
    """Recipient -> its domain group, from the [pacing] settings."""

    def __init__(self, settings: PacingSettings) -> None:
        self.default = Group(DEFAULT_GROUP, _interval(settings.default))
        self.by_domain: dict[str, Group] = {}
        self.all: dict[str, Group] = {DEFAULT_GROUP: self.default}
        for name, limit in settings.groups:
            group = Group(name, _interval(limit))
            self.all[name] = group
            for domain in name.split("|"):
                # the first group naming a domain wins: given groups come before defaults
                self.by_domain.setdefault(domain_of("@" + domain), group)

    def of(self, recipient: str) -> Group:
        return self.by_domain.get(domain_of(recipient), self.default)


def _interval(limit: str) -> float:
    rate = parse_rate(limit)
    return 1.0 / rate if rate > 0 else 0.0


def domain_of(recipient: str) -> str:
    """The domain of an address, compared the way DNS does: case-insensitive, and an
    internationalized name in its ASCII (IDNA) form, so "Bücher.example" and
    "xn--bcher-kva.example" are one domain."""
    domain = recipient.rpartition("@")[2].strip().rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain  # not a name IDNA can write: compared as given


def is_slow_down(code: int | None, text: str) -> bool:
    """A reply that asks the sender to slow down for the domain, not a refusal of the
    recipient: 421 (service not available, try later), or 451 with a 4.7.x status."""
    if code == 421:
        return True
    return code == 451 and _POLICY_STATUS.search(text) is not None


@dataclass(frozen=True, slots=True)
class SlotState:
    """A group's shared row: the next free slot, the end of its pause after a slow-down
    reply and how many pauses in a row it has had; times are seconds since the epoch."""

    next_slot: float = 0.0
    backoff_until: float = 0.0
    level: int = 0


# A group whose next slot passed less than this long ago keeps its schedule: the slots
# missed while a reservation was slow (a busy database, a loaded machine) are used at once,
# so the long-run rate stays the limit. An idle group starts again from now.
CATCH_UP_SECONDS = 1.0


def reserve(
    state: SlotState, now: float, interval: float, count: int
) -> tuple[SlotState, list[float]]:
    """The next `count` slots of a group (their start times) and its state after them.

    Never inside a pause; in the past only by CATCH_UP_SECONDS at most (slots missed by a
    group sending all along), so a group idle for longer starts at once, without the
    burst a bucket that filled while idle would allow.
    """
    resumes = state.next_slot if now - state.next_slot < CATCH_UP_SECONDS else now
    start = max(resumes, state.backoff_until)
    slots = [start + i * interval for i in range(max(0, count))]
    after = SlotState(start + max(0, count) * interval, state.backoff_until, state.level)
    return after, slots


def slow_down(state: SlotState, now: float, first: float, longest: float) -> SlotState:
    """The state after a slow-down reply: a pause of `first` seconds, doubled for each
    pause that follows the last one within `longest` seconds, at most `longest`.

    A reply that arrives during a pause belongs to a message started before it (another
    connection, another process): it does not lengthen the pause.
    """
    if now < state.backoff_until:
        return state
    level = state.level + 1 if state.level and now < state.backoff_until + longest else 1
    pause = min(longest, first * 2 ** (level - 1))
    until = now + pause
    return SlotState(max(state.next_slot, until), until, level)
