"""The site build the store owes: ingest asks for one in its transaction, a build settles it."""

from __future__ import annotations

from sqlalchemy import Connection, case, insert, select, update

from publisher.store.schema import site_builds

__all__ = ["SiteBuilds"]

_ROW = 1


class SiteBuilds:
    """requested / built counters of the one site_builds row (store/schema.py)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def request(self) -> int:
        """Inside the transaction that changed articles: one more build is owed."""
        bumped = self.connection.execute(
            update(site_builds)
            .where(site_builds.c.id == _ROW)
            .values(requested=site_builds.c.requested + 1)
        )
        if bumped.rowcount == 0:  # writers are serialized: no other insert races this one
            self.connection.execute(insert(site_builds).values(id=_ROW, requested=1, built=0))
        return self.requested()

    def requested(self) -> int:
        return self.counters()[0]

    def pending(self) -> bool:
        requested, built = self.counters()
        return requested > built

    def counters(self) -> tuple[int, int]:
        """(requested, built); (0, 0) before the first ingest."""
        row = self.connection.execute(
            select(site_builds.c.requested, site_builds.c.built).where(site_builds.c.id == _ROW)
        ).first()
        return (int(row.requested), int(row.built)) if row else (0, 0)

    def mark_built(self, requested: int) -> None:
        """A build covered every change up to `requested` (never moves backwards)."""
        self.connection.execute(
            update(site_builds)
            .where(site_builds.c.id == _ROW)
            .values(
                built=case((site_builds.c.built < requested, requested), else_=site_builds.c.built)
            )
        )
