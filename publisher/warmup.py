"""Domain warm-up, pure: how many digests a new sending domain may send on its Nth day.

Mailbox providers judge a domain that has never sent by how it starts; a list mailed
whole on its first day lands in spam. Day N allows `start * growth^(N-1)` messages, cut
to `until`; the day after the first capped day warm-up is over and nothing is held back.
Days are calendar days in the site's zone, counted from the first day the domain sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from email.utils import parseaddr

from publisher.config import WarmupSettings

__all__ = [
    "WarmupForecast",
    "WarmupState",
    "allowance",
    "day_number",
    "local_day",
    "sending_domain",
]


def allowance(day: int, warmup: WarmupSettings) -> int | None:
    """Messages allowed on warm-up day `day` (1-based); None once warm-up is over."""
    amount = float(warmup.start)
    for _ in range(1, max(1, day)):
        if amount >= warmup.until:
            return None  # the capped day has passed
        amount *= warmup.growth
    # a hair over the float product: 200 * 1.5 ** 2 must stay 450, not 449
    return int(min(amount, float(warmup.until)) + 1e-9)


def day_number(first: date, today: date) -> int:
    """1 on the first day; a clock set before the first day still counts as day 1."""
    return max(1, (today - first).days + 1)


def local_day(moment: datetime, zone: tzinfo) -> date:
    return moment.astimezone(zone).date()


def sending_domain(from_address: str) -> str:
    """The From address's domain, lower-cased: the name whose reputation warms up."""
    return parseaddr(from_address)[1].rpartition("@")[2].strip().rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class WarmupState:
    """Today's warm-up of one sending domain, as `send` and `status` report it."""

    domain: str
    day: int
    allowance: int | None  # None: warm-up is over, no daily limit
    sent: int  # digests sent today under the allowance
    waiting: int  # rows held back for a later day

    def line(self) -> str:
        if self.allowance is None:
            return f"warm-up over (day {self.day} for {self.domain}): no daily limit"
        return (
            f"warm-up day {self.day}: {self.sent:,} of {self.allowance:,} sent, "
            f"{self.waiting:,} waiting"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "domain": self.domain,
            "day": self.day,
            "allowance": self.allowance,
            "sent": self.sent,
            "waiting": self.waiting,
            "over": self.allowance is None,
            "summary": self.line(),
        }


@dataclass(frozen=True, slots=True)
class WarmupForecast:
    """What a real send would do today under warm-up, as a dry run reports it."""

    day: int
    would_send: int
    would_wait: int

    def line(self) -> str:
        return (
            f"warm-up day {self.day}: {self.would_send:,} would be sent today, "
            f"{self.would_wait:,} would wait"
        )
