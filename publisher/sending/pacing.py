"""The mailer's pacer over the database: per domain group slots and pauses that every
sending process (`publisher send`, each `publisher worker`) takes from the same rows, so a
limit holds for all of them together.

Slots are reserved a batch at a time (half a second of a group's messages), so a group
at 50/s costs two short transactions a second, and an unlimited group none at all.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from publisher.config import PacingSettings
from publisher.pacing import Group, Groups
from publisher.store import Store
from publisher.store.ledger import in_ledger_transaction
from publisher.store.pacing import PacingSlots

__all__ = ["DatabasePacer"]

# seconds of a limited group's messages a process keeps rendered and waiting; more of them
# are left pending in the database and read again when these have gone
HORIZON_SECONDS = 10.0
# seconds of a group's slots reserved per transaction
BATCH_SECONDS = 0.5
# messages of an unlimited group kept waiting while it pauses after a slow-down reply
PAUSED_CAPACITY = 200


class DatabasePacer:
    """`publisher.mailer.Pacer` backed by the store's pacing rows."""

    def __init__(
        self,
        settings: PacingSettings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.groups = Groups(settings)
        # pauses this process has recorded: an unlimited group is paced only during one
        self._paused: dict[str, float] = {}

    def _group(self, name: str) -> Group:
        return self.groups.all.get(name, self.groups.default)

    def group(self, recipient: str) -> str:
        return self.groups.of(recipient).name

    def paced(self, group: str) -> bool:
        return self._group(group).limited or self._paused.get(group, 0.0) > self.clock()

    def capacity(self, group: str) -> int:
        interval = self._group(group).interval
        if not interval:
            return PAUSED_CAPACITY
        return max(8, math.ceil(HORIZON_SECONDS / interval))

    async def reserve(self, group: str, count: int) -> list[float]:
        interval = self._group(group).interval
        if interval:
            count = min(count, max(1, math.ceil(BATCH_SECONDS / interval)))
        count = max(1, count)

        def take() -> list[float]:
            return in_ledger_transaction(
                self.store,
                lambda connection: PacingSlots(connection).take(
                    group, self.clock(), interval, count
                ),
            )

        return await asyncio.to_thread(take)

    async def slow_down(self, group: str) -> None:
        first, longest = self.settings.backoff_seconds, self.settings.backoff_max_seconds

        def record() -> float:
            state = in_ledger_transaction(
                self.store,
                lambda connection: PacingSlots(connection).slow_down(
                    group, self.clock(), first, longest
                ),
            )
            return state.backoff_until

        self._paused[group] = await asyncio.to_thread(record)
