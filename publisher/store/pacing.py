"""Pacing rows: one per domain group, the slots and pauses every sending process shares.

Each call reads a group's row locked for the rest of the transaction (FOR UPDATE on
PostgreSQL; on SQLite the caller's BEGIN IMMEDIATE already holds the only write lock),
applies publisher/pacing.py's arithmetic and writes it back, so two processes never take
the same slot.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, text, update

from publisher.pacing import SlotState, reserve, slow_down
from publisher.store.schema import pacing_slots

__all__ = ["PacingSlots"]

_CREATE = text(
    "INSERT INTO pacing_slots (domain_group, next_slot, backoff_until, level) "
    "VALUES (:group, 0, 0, 0) ON CONFLICT (domain_group) DO NOTHING"
)


class PacingSlots:
    """Slot reservations and pauses of domain groups, inside the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def state(self, group: str) -> SlotState:
        """The group's row as it is (a group never used: all zero)."""
        row = self.connection.execute(
            select(
                pacing_slots.c.next_slot, pacing_slots.c.backoff_until, pacing_slots.c.level
            ).where(pacing_slots.c.domain_group == group)
        ).first()
        return SlotState(float(row[0]), float(row[1]), int(row[2])) if row else SlotState()

    def take(self, group: str, now: float, interval: float, count: int) -> list[float]:
        """Reserve the group's next `count` slots; their start times."""
        state = self._locked(group)
        after, slots = reserve(state, now, interval, count)
        self._write(group, after)
        return slots

    def slow_down(self, group: str, now: float, first: float, longest: float) -> SlotState:
        """Record a slow-down reply for the group; its state after it."""
        state = self._locked(group)
        after = slow_down(state, now, first, longest)
        if after != state:
            self._write(group, after)
        return after

    def _locked(self, group: str) -> SlotState:
        row = self._select_for_update(group)
        if row is None:
            # a first use; two processes may create it at once, hence ON CONFLICT (both
            # SQLite and PostgreSQL write it so)
            self.connection.execute(_CREATE, {"group": group})
            row = self._select_for_update(group)
        assert row is not None
        return SlotState(*row)

    def _select_for_update(self, group: str) -> tuple[float, float, int] | None:
        row = self.connection.execute(
            select(pacing_slots.c.next_slot, pacing_slots.c.backoff_until, pacing_slots.c.level)
            .where(pacing_slots.c.domain_group == group)
            .with_for_update()
        ).first()
        return None if row is None else (float(row[0]), float(row[1]), int(row[2]))

    def _write(self, group: str, state: SlotState) -> None:
        self.connection.execute(
            update(pacing_slots)
            .where(pacing_slots.c.domain_group == group)
            .values(next_slot=state.next_slot, backoff_until=state.backoff_until, level=state.level)
        )
