"""Warm-up while sending: which rows today's allowance lets go, and what to report.

Both senders ask `WarmupGate.day_limit` at the start of a claim or page; while it says a
day is limited they take only rows let go that day (`admit`, oldest subscription first),
and the rest of the run stays 'pending' for a later day: neither failed nor skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from publisher.config import Settings
from publisher.model import Delivery, Subscriber
from publisher.store import Store
from publisher.store.warmup import WarmupDays
from publisher.warmup import WarmupState, allowance, day_number, local_day, sending_domain

__all__ = ["DayLimit", "WarmupGate"]


@dataclass(frozen=True, slots=True)
class DayLimit:
    """A limited warm-up day: its key (YYYY-MM-DD in the site's zone) and its allowance."""

    day: str
    allowance: int


class WarmupGate:
    """The `[warmup]` settings applied to one store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warmup = settings.warmup
        self.domain = sending_domain(settings.smtp.from_address)

    @property
    def enabled(self) -> bool:
        return self.warmup.enabled

    def day_limit(self, connection: Any, now: datetime) -> DayLimit | None:
        """Today's limit (day 1 recorded if it is the first), or None: no limit today."""
        if not self.enabled:
            return None
        today = local_day(now, self.settings.zone)
        first = WarmupDays(connection).first_day(
            self.domain, today, self.settings.zone, record=True
        )
        amount = allowance(day_number(first, today), self.warmup)
        return None if amount is None else DayLimit(today.isoformat(), amount)

    def admit(
        self,
        connection: Any,
        run_id: int,
        limit: DayLimit,
        count: int,
        *,
        worker: str | None = None,
        lease_seconds: float = 0.0,
    ) -> list[tuple[Delivery, Subscriber]]:
        """Let go up to `count` more rows of the run today (claimed for `worker` if given)."""
        return WarmupDays(connection).admit(
            run_id,
            self.domain,
            limit.day,
            limit.allowance,
            count,
            worker=worker,
            lease_seconds=lease_seconds,
        )

    def sendable(self, connection: Any, run_id: int, now: datetime, open_rows: int) -> int:
        """Of a run's `open_rows`, how many may go today (a progress bar's total)."""
        limit = self.day_limit(connection, now)
        if limit is None:
            return open_rows
        days = WarmupDays(connection)
        return min(open_rows, days.sendable(run_id, self.domain, limit.day, limit.allowance))

    def room_today(self, store: Store, now: datetime) -> tuple[int, int] | None:
        """(warm-up day, rows still free to go today) for a dry run; reads only, records
        no day. None: warm-up off or over, a send would not hold anything back."""
        if not self.enabled:
            return None
        today = local_day(now, self.settings.zone)
        with store.read() as connection:
            days = WarmupDays(connection)
            first = days.first_day(self.domain, today, self.settings.zone, record=False)
            day = day_number(first, today)
            amount = allowance(day, self.warmup)
            if amount is None:
                return None
            return day, max(0, amount - days.admitted_on(self.domain, today.isoformat()))

    def state(self, store: Store, now: datetime) -> WarmupState | None:
        """Today's warm-up as `send` and `status` show it; reads only. None: warm-up off."""
        if not self.enabled:
            return None
        today = local_day(now, self.settings.zone)
        with store.read() as connection:
            days = WarmupDays(connection)
            first = days.first_day(self.domain, today, self.settings.zone, record=False)
            day = day_number(first, today)
            key = today.isoformat()
            return WarmupState(
                domain=self.domain,
                day=day,
                allowance=allowance(day, self.warmup),
                sent=days.sent_on(key),
                waiting=days.waiting(key),
            )
